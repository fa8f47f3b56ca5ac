"""The ``alignment`` command line.

alignment round N [--config configs/default.yaml] [--force STAGE] [key.path=value ...]   run (or finish) round N
alignment status [--output-dir runs] [--verbose]                         runs, rounds, state; -v: stages, models
alignment eval --model PATH --suite FILE.jsonl [--suite ...] --out FILE.json   (or --lm-eval-tasks gsm8k,builtin)
alignment regress --model PATH --baseline FILE.json [--tolerance 0.05]   fail (exit 1) on a regression
alignment report ROUND_DIR                                               write ROUND_DIR/report.html
alignment average --models A B [...] --out DIR [--weights W ...]          average checkpoints
alignment prepare-model                                                  convert the embedded model once
alignment env [--config configs/default.yaml] [--json]                   machine, engines' dtypes, versions
alignment experiment --arms rs,random --rounds 3 [--arm NAME:key=value] [--out docs/results.md] [key=value ...]
                                                                         arms side by side, one results table
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from alignment import average, evaluate, regress
from alignment.models import PROJECT_ROOT

DEFAULT_CONFIG = str(PROJECT_ROOT / "configs" / "default.yaml")


def _round(args: argparse.Namespace) -> None:
    from alignment.config import load_config
    from rounds.runner import run_round

    cfg = load_config(args.config, args.overrides)
    manifest = run_round(cfg, args.round, force=args.force)
    print(f"round {args.round} finished: model {manifest['model']}")
    print(f"eval: {manifest['eval']['model']} (start: {manifest['eval']['start']})")
    decision = manifest["promotion"]
    if decision["promoted"]:
        print(f"promoted: round {args.round + 1} starts from this model")
    else:
        print(f"NOT promoted: {'; '.join(decision['reasons'])}")
        print(f"round {args.round + 1} starts from {decision['next_start']}")


def _status(args: argparse.Namespace) -> None:
    from rounds.runner import format_status, status

    if not Path(args.output_dir).is_dir():
        raise FileNotFoundError(
            f"--output-dir {args.output_dir}: no such folder (rounds write under the config's output_dir, default runs/)"
        )
    print(format_status(status(args.output_dir), verbose=args.verbose))


def _report(args: argparse.Namespace) -> None:

    from rounds.report import write_report

    print(write_report(Path(args.round_dir)))


def _prepare(args: argparse.Namespace) -> None:
    from alignment.models import check_model_folder, convert_gguf, resolve_model

    if args.gguf is None:
        print(resolve_model("embedded", args.cache_dir))
        return
    gguf = Path(args.gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"--gguf {gguf}: no such file")
    out = Path(args.out) if args.out else gguf.with_suffix("")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} exists and is not empty (remove it first)")
    template = None
    if args.chat_template is not None:
        if not Path(args.chat_template).is_file():
            raise FileNotFoundError(f"--chat-template {args.chat_template}: no such file")
        template = Path(args.chat_template).read_text()
    convert_gguf(gguf, out, gguf.stem, chat_template=template)
    check_model_folder(out)
    print(out)


def _experiment(args: argparse.Namespace) -> None:
    from rounds.experiment import parse_arms, run_experiment

    arms = parse_arms(args.arms, args.arm, defined_only=not args.table_only)
    out = run_experiment(
        args.config, arms, args.rounds, args.overrides, Path(args.out) if args.out else None, args.table_only
    )
    print(f"results: {out}")


def _env(args: argparse.Namespace) -> None:
    from alignment.config import load_config
    from alignment.env import collect_env, format_env, to_json

    env = collect_env(load_config(args.config))
    print(to_json(env) if args.json else format_env(env))


def build_parser() -> argparse.ArgumentParser:
    """The ``alignment`` command line: one subcommand per job, every argument documented with its default."""
    parser = argparse.ArgumentParser(
        prog="alignment", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("round", help="run round N: generate, score, select, SFT, DPO, export, eval")
    p.add_argument("round", type=int, metavar="N", help="the round to run (rounds 1..N-1 are finished first)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config (default: the project's configs/default.yaml)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.path=value",
        help="dotted overrides, e.g. generation.num_candidates=8 (anywhere on the line)",
    )
    p.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STAGE",
        help="redo this stage of round N and every stage after it (repeatable)",
    )
    p.set_defaults(func=_round)

    p = sub.add_parser("status", help="list runs, rounds, stage states and durations, and exported models")
    p.add_argument("--output-dir", default="runs", help="the folder runs are written to (default: runs)")
    p.add_argument("--verbose", "-v", action="store_true", help="every stage with its duration, the model folder")
    p.set_defaults(func=_status)

    p = sub.add_parser("report", help="write ROUND_DIR/report.html: plots, pass rates, drops, eval, examples")
    p.add_argument("round_dir", metavar="ROUND_DIR", help="a round folder, e.g. runs/default/round-2")
    p.set_defaults(func=_report)

    p = sub.add_parser("eval", help="score a model on suites in the public JSONL format")
    evaluate.add_arguments(p)
    p.set_defaults(func=evaluate.run)

    p = sub.add_parser("regress", help="evaluate a model with a baseline's settings; exit 1 if a capability regressed")
    regress.add_arguments(p)
    p.set_defaults(func=regress.run)

    p = sub.add_parser("average", help="uniform or weighted average of checkpoints of the same architecture")
    average.add_arguments(p)
    p.set_defaults(func=average.run)

    p = sub.add_parser(
        "prepare-model", help="convert the embedded SmolLM2-135M-Instruct GGUF (or --gguf FILE) to an HF folder"
    )
    p.add_argument(
        "--cache-dir", default=".cache/models", help="relative to the project folder (default .cache/models)"
    )
    p.add_argument("--gguf", default=None, help="another chat model's GGUF file to convert (default: the embedded one)")
    p.add_argument(
        "--out", default=None, help="with --gguf: the HF folder to write (default: the file name without .gguf)"
    )
    p.add_argument(
        "--chat-template",
        default=None,
        help="with --gguf: a jinja chat template for a GGUF without one (e.g. configs/chat_templates/gemma.jinja)",
    )
    p.set_defaults(func=_prepare)

    p = sub.add_parser(
        "experiment",
        help="run arms of a recipe (rs, random control, sft_only, your own) for R rounds; one results table",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config every arm starts from")
    p.add_argument(
        "--arms", default="rs,random", help="comma-separated arms (built-in: rs, random, sft_only; default rs,random)"
    )
    p.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME:key=value",
        help="an arm's own override, e.g. beta05:dpo.beta=0.05 (repeatable; a new name adds an arm)",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds per arm (default 3)")
    p.add_argument("--out", default=None, help="the results table (default <output_dir>/experiment-<name>/results.md)")
    p.add_argument(
        "--table-only",
        action="store_true",
        help="run no stage: write the table from the finished rounds (e.g. after a code edit, which re-runs stages)",
    )
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="overrides for every arm")
    p.set_defaults(func=_experiment)

    p = sub.add_parser("env", help="what a bug report needs: CPU and flags, GPUs, each engine's dtype, versions")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="the config whose engine settings are shown")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_env)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        dashed = [e for e in extra if e.startswith("--") and "=" in e and "." in e.split("=", 1)[0]]
        if dashed:
            fixed = " ".join(e.lstrip("-") for e in dashed)
            parser.error(f"unrecognized arguments: {' '.join(dashed)} (config overrides take no dashes: {fixed})")
        if args.command not in ("round", "experiment") or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from alignment.config import ConfigError
    from alignment.models import ModelError
    from synth_data.suite_format import SuiteFormatError

    try:
        args.func(args)
    except (ConfigError, ModelError, SuiteFormatError, FileNotFoundError, ValueError) as e:
        # Bad input (config, model folder, data files, an empty prompt/training set): one clear line, no traceback,
        # unless ALIGNMENT_TRACEBACK=1. Finished stages stay on disk; the same command resumes after the fix.
        if os.environ.get("ALIGNMENT_TRACEBACK"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
