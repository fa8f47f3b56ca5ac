"""``python -m rounds.report ROUND_DIR [--screenshot page.png]``."""

from rounds.report.page import main

if __name__ == "__main__":
    main()
