"""A round's report: one self-contained HTML page (``round-<N>/report.html``) to inspect what the round did.

    python -m rounds.report runs/default/round-2 [--screenshot report.png]
    alignment report runs/default/round-2

The page shows, per capability: reward-model score and DPO pair-margin histograms, verifier pass rates, kept and
dropped counts by reason (filter and selection), response lengths against the previous round, the held-out eval
of every round of the run so far (with the promotion decision where the round has ``promotion.json``), and the
best and worst scored candidates. Plots are PNGs embedded as base64 (matplotlib, Agg): the page loads nothing from
anywhere. A small inline script sets ``<body data-rendered="ok N images">`` once every image decoded (``broken
...`` otherwise), which :func:`check_in_browser` reads back from headless Chromium.

Three parts: ``data`` reads a round (:func:`load_round`) and makes the tables (:func:`pass_rates`,
:func:`eval_table`, ...), ``plots`` draws them (``plot_*``, matplotlib figures), ``page`` writes the HTML and checks it
in a browser. All are importable from here: ``notebooks/inspect_round.ipynb`` shows the same views from them.
"""

from rounds.report.data import (
    CORE_FILES,
    EVAL_COLUMNS,
    RoundData,
    eval_rounds,
    eval_table,
    examples,
    filter_drops,
    gate_check,
    length_table,
    load_round,
    margin_sweep,
    pass_rates,
    previous_round,
    promotion_decision,
    prompt_texts,
    read_json_optional,
    reward_model_trust,
    selection_outcomes,
    style_flags,
    summary,
)
from rounds.report.page import (
    SECTIONS,
    ChromiumNotFound,
    check_in_browser,
    chromium_binary,
    main,
    render_report,
    write_report,
)
from rounds.report.plots import (
    figure_png,
    plot_eval,
    plot_fluency,
    plot_lengths,
    plot_margins,
    plot_pass_rates,
    plot_scores,
)

__all__ = [
    "CORE_FILES",
    "EVAL_COLUMNS",
    "SECTIONS",
    "ChromiumNotFound",
    "RoundData",
    "check_in_browser",
    "chromium_binary",
    "eval_rounds",
    "eval_table",
    "examples",
    "figure_png",
    "filter_drops",
    "gate_check",
    "length_table",
    "load_round",
    "main",
    "margin_sweep",
    "pass_rates",
    "plot_eval",
    "plot_fluency",
    "plot_lengths",
    "plot_margins",
    "plot_pass_rates",
    "plot_scores",
    "previous_round",
    "promotion_decision",
    "prompt_texts",
    "read_json_optional",
    "reward_model_trust",
    "render_report",
    "selection_outcomes",
    "style_flags",
    "summary",
    "write_report",
]
