"""``python -m synth_data.lm_eval_tasks``: regenerate the task YAMLs of the built-in suites."""

from synth_data.lm_eval_tasks import main

main()
