"""Bad input, table-driven, through the real CLI in a subprocess: each case exits 2 with one line naming the file,
flag or key and what is wrong, before any work (no model loaded, no stage started), and leaves what was there as it
was. The cases grow with issue 16; every one failed late, with a traceback, or destroyed data before."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT


@dataclass(frozen=True)
class Case:
    name: str
    args: Callable[[Path], list[str]]
    """The CLI arguments, given a scratch folder the setup filled."""
    message: str | tuple[str, ...]
    """Text(s) the error line must contain ({tmp} stands for the scratch folder)."""
    setup: Callable[[Path], None] = lambda tmp: None
    untouched: tuple[str, ...] = ()
    """Files (relative to the scratch folder) that must still hold what the setup wrote."""
    absent: tuple[str, ...] = ()
    """Paths (relative, glob patterns) that must not exist afterwards: no output, no stray temporary folder."""


def _dir_with_a_file(tmp: Path) -> None:
    (tmp / "keep").mkdir()
    (tmp / "keep" / "notes.txt").write_text("my notes")


def _file(tmp: Path) -> None:
    (tmp / "out.bin").write_text("mine")


def _baseline(tmp: Path, summary: str | None = None, settings: str | None = None, drop: str | None = None) -> None:
    keys = {"suites": ["builtin"], "max_items": 2, "max_new_tokens": 8, "backend": "vllm", "seed": 0, "samples": 1}
    keys |= {"temperature": 0.0, "top_p": 1.0}
    keys.pop(drop, None)
    (tmp / "base.json").write_text(summary if summary is not None else json.dumps({"math": {"accuracy": 1, "n": 1}}))
    (tmp / "base.settings.json").write_text(settings if settings is not None else json.dumps(keys))
    record = {"id": "math-eval-0-0", "capability": "math", "response": "1", "correct": True}
    (tmp / "base.items.jsonl").write_text(json.dumps(record) + "\n")


MODEL = str(ROOT / "tests")  # never loaded: every case fails before that


def _round(*overrides: str) -> Callable[[Path], list[str]]:
    def args(tmp: Path) -> list[str]:
        common = ["--config", str(ROOT / "configs" / "default.yaml"), f"output_dir={tmp / 'runs'}"]
        return ["round", "1", *common, f"model.cache_dir={ROOT / '.cache' / 'models'}", *overrides]

    return args


# Config values that used to be accepted and fail minutes later (after generation, inside TRL or vLLM) or never.
CONFIG_CASES = [
    (
        "selection.pair_strategy=best_vs_wrost",
        "'selection.pair_strategy' must be one of",
        "did you mean 'best_vs_worst'",
    ),
    ("sft.precision=bf61", "'sft.precision' must be one of 'auto', 'fp32', 'bf16', got 'bf61'", "did you mean 'bf16'"),
    ("report_to=[tensorbord]", "'report_to' has unknown entry 'tensorbord'", "did you mean 'tensorboard'"),
    ("generation.num_candidates=-3", "'generation.num_candidates' must be >= 1, got -3", ""),
    ("generation.temperature=-1", "'generation.temperature' must be >= 0, got -1.0", ""),
    ("generation.top_p=1.5", "'generation.top_p' must be > 0 and <= 1, got 1.5", ""),
    ("generation.backend=tensorrt", "'generation.backend' must be one of 'auto', 'vllm', 'transformers'", ""),
    ("device=tpu", "'device' must be one of 'auto', 'cpu', 'cuda', got 'tpu'", ""),
    ("sft.learning_rate=0", "'sft.learning_rate' must be > 0, got 0.0", ""),
    ("dpo.max_length=0", "'dpo.max_length' must be >= 16, got 0", ""),
    ("reward_model.heldout_fraction=0.9", "'reward_model.heldout_fraction' must be >= 0 and <= 0.5", ""),
    ("sft.start_from=prev", "'sft.start_from' must be one of 'previous', 'base'", "did you mean 'previous'"),
]

CASES = [
    Case(
        "average --out an existing folder with files in it",
        lambda t: ["average", "--models", MODEL, MODEL, "--out", str(t / "keep")],
        "--out {tmp}/keep exists and is not empty",
        setup=_dir_with_a_file,
        untouched=("keep/notes.txt",),
    ),
    Case(
        "average --out an existing file",
        lambda t: ["average", "--models", MODEL, MODEL, "--out", str(t / "out.bin")],
        "--out {tmp}/out.bin is a file",
        setup=_file,
        untouched=("out.bin",),
        absent=("out.bin.tmp",),
    ),
    Case(
        "eval --out a folder",
        lambda t: ["eval", "--model", MODEL, "--suite", "builtin", "--out", str(t / "keep")],
        "--out {tmp}/keep is a folder",
        setup=_dir_with_a_file,
        untouched=("keep/notes.txt",),
    ),
    Case(
        "regress --baseline with malformed JSON",
        lambda t: ["regress", "--model", MODEL, "--baseline", str(t / "base.json"), "--out", str(t / "r")],
        "{tmp}/base.json: not valid JSON",
        setup=lambda t: _baseline(t, summary='{"math": {"accuracy": 1,\n'),
        absent=("r",),
    ),
    Case(
        "regress --baseline whose settings miss a key",
        lambda t: ["regress", "--model", MODEL, "--baseline", str(t / "base.json"), "--out", str(t / "r")],
        "{tmp}/base.settings.json: missing max_new_tokens",
        setup=lambda t: _baseline(t, drop="max_new_tokens"),
        absent=("r",),
    ),
    Case(
        "regress --baseline whose settings are malformed",
        lambda t: ["regress", "--model", MODEL, "--baseline", str(t / "base.json"), "--out", str(t / "r")],
        "{tmp}/base.settings.json: not valid JSON",
        setup=lambda t: _baseline(t, settings="{suites: builtin"),
        absent=("r",),
    ),
    Case(
        "regress --baseline that does not exist",
        lambda t: ["regress", "--model", MODEL, "--baseline", str(t / "nope.json"), "--out", str(t / "r")],
        "{tmp}/nope.json not found",
        absent=("r",),
    ),
]


def _scores_without_verdicts(tmp: Path) -> None:
    import pandas as pd

    (tmp / "round-1").mkdir()
    pd.DataFrame({"prompt_id": ["p"], "candidate_id": ["p#0"], "text": ["hi"]}).to_parquet(
        tmp / "round-1/scores.parquet"
    )
    (tmp / "round-1" / "selection.json").write_text("{}")


def _model_folder(*files: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / "m").mkdir()
        for f in files:
            (tmp / "m" / f).write_text("{}")

    return setup


CASES += [
    Case(
        "round with a policy folder holding only config.json",
        _round("model.policy=m"),
        ("m: no tokenizer files", "tokenizer.json"),
        setup=_model_folder("config.json"),
        absent=("runs/*/round-1/stages/*.json",),
    ),
    Case(
        "round with a policy folder without weights",
        _round("model.policy=m"),
        ("m: no weights", "*.safetensors"),
        setup=_model_folder("config.json", "tokenizer.json"),
        absent=("runs/*/round-1/stages/*.json",),
    ),
    Case(
        "round --config an empty YAML file",
        lambda t: ["round", "1", "--config", str(t / "empty.yaml"), f"output_dir={t / 'runs'}"],
        "{tmp}/empty.yaml: the file is empty",
        setup=lambda t: (t / "empty.yaml").write_text("# nothing yet\n"),
        absent=("runs",),
    ),
    Case(
        "round with an override written as a flag",
        lambda t: ["round", "1", "--generation.num_candidates=8"],
        "config overrides take no dashes: generation.num_candidates=8",
        absent=("runs",),
    ),
    Case(
        "eval --max-items 0",
        lambda t: ["eval", "--model", MODEL, "--suite", "builtin", "--max-items", "0", "--out", str(t / "e.json")],
        "--max-items: must be 1 or more, got 0",
        absent=("e.json",),
    ),
    Case(
        "experiment with an arm nobody defined",
        lambda t: ["experiment", "--arms", "rs,randm", f"output_dir={t}"],
        "--arms: unknown arm 'randm' (built-in: rs, random, sft_only; define one with --arm randm:key.path=value)",
    ),
    Case(
        "experiment --arm without NAME:",
        lambda t: ["experiment", "--arm", "dpo.beta=0.05", f"output_dir={t}"],
        "--arm 'dpo.beta=0.05': expected NAME:key.path=value",
    ),
    Case(
        "experiment with an arm override that is not a valid value",
        lambda t: ["experiment", "--arms", "rs,b", "--arm", "b:dpo.epochs=0", f"output_dir={t}"],
        "'dpo.epochs' must be > 0, got 0",
        absent=("experiment-*",),
    ),
    Case(
        "experiment --rounds 0",
        lambda t: ["experiment", "--rounds", "0", f"output_dir={t}"],
        "--rounds must be 1 or more, got 0",
        absent=("experiment-*",),
    ),
    Case(
        "status --output-dir a folder that does not exist",
        lambda t: ["status", "--output-dir", str(t / "rnus")],
        "--output-dir {tmp}/rnus: no such folder",
    ),
    Case(
        "report on a round whose scores.parquet lacks the verdicts",
        lambda t: ["report", str(t / "round-1")],
        ("{tmp}/round-1/scores.parquet: no column verified, rm_score, score", "it has prompt_id, candidate_id, text"),
        setup=_scores_without_verdicts,
        absent=("round-1/report.html",),
    ),
    Case(
        "round with a relative policy path that does not exist",
        _round("model.policy=models/nope"),
        "model folder not found: models/nope",
        setup=lambda t: (t / "models").mkdir(),
        absent=("runs/*/round-1/stages/*.json",),
    ),
    Case(
        "round with a hub id that is not in the HF cache",
        _round("model.policy=NoSuchOrg/no-such-model-xyz"),
        (
            "model NoSuchOrg/no-such-model-xyz: not a local folder, and not in the Hugging Face cache",
            "ALIGNMENT_ALLOW_DOWNLOAD=1",
        ),
        absent=("runs/*/round-1/stages/*.json",),
    ),  # fmt: skip
]
CASES += [
    Case(f"round with {override}", _round(override), (message, hint), absent=("runs",))
    for override, message, hint in CONFIG_CASES
]


def _write(name: str, text: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / name).write_text(text)

    return setup


CASES += [
    Case(
        "round with an unknown config key",
        _round("generation.num_candidatez=8"),
        ("unknown key 'generation.num_candidatez'", "num_candidates"),
        absent=("runs",),
    ),
    Case(
        "round --config with malformed YAML",
        lambda t: ["round", "1", "--config", str(t / "bad.yaml")],
        "{tmp}/bad.yaml: not valid YAML",
        setup=_write("bad.yaml", "generation: [unclosed\n"),
        absent=("runs",),
    ),
    Case(
        "round --config a file that does not exist",
        lambda t: ["round", "1", "--config", str(t / "nope.yaml")],
        "config file not found: {tmp}/nope.yaml",
        absent=("runs",),
    ),
    Case(
        "round with an ill-typed value",
        _round("generation.num_candidates=four"),
        "'generation.num_candidates' must be an integer, got 'four'",
        absent=("runs",),
    ),
    Case(
        "round with a per-round override keyed by a word",
        _round("generation.per_round.two.temperature=0.5"),
        "'generation.per_round' must be an integer",
        absent=("runs",),
    ),
    Case(
        "round --force an unknown stage",
        lambda t: ["round", "1", "--force", "sftt", f"output_dir={t / 'runs'}"],
        ("unknown stage 'sftt'", "stages: prompts, generate"),
        absent=("runs",),
    ),
    Case(
        "round 0",
        lambda t: ["round", "0", f"output_dir={t / 'runs'}"],
        "round numbers start at 1, got 0",
        absent=("runs",),
    ),
    Case(
        "eval with a suite file that does not exist",
        lambda t: ["eval", "--model", MODEL, "--suite", str(t / "nope.jsonl"), "--out", str(t / "e.json")],
        "{tmp}/nope.jsonl",
        absent=("e.json",),
    ),
    Case(
        "eval with a malformed suite line",
        lambda t: ["eval", "--model", MODEL, "--suite", str(t / "s.jsonl"), "--out", str(t / "e.json")],
        "{tmp}/s.jsonl:2",
        setup=_write("s.jsonl", '{"id": "a", "capability": "math", "messages": [{"role": "user", "content": "1+1?"}], '
                     '"answer": "2"}\n{"id": "b"\n'),
        absent=("e.json",),
    ),
    Case(
        "eval with neither --suite nor --lm-eval-tasks",
        lambda t: ["eval", "--model", MODEL, "--out", str(t / "e.json")],
        "alignment eval needs --suite FILE",
        absent=("e.json",),
    ),
    Case(
        "regress with a malformed --tolerance-for",
        lambda t: ["regress", "--model", MODEL, "--baseline", str(t / "base.json"), "--tolerance-for", "math:0.1"],
        "--tolerance-for expects CAPABILITY=NUMBER, got 'math:0.1'",
        setup=_baseline,
    ),
    Case(
        "average with weights that do not match the models",
        lambda t: ["average", "--models", MODEL, MODEL, "--weights", "1", "--out", str(t / "avg")],
        "--weights has 1 values for 2 models",
        absent=("avg",),
    ),
    Case(
        "average of one model",
        lambda t: ["average", "--models", MODEL, "--out", str(t / "avg")],
        "averaging needs at least 2 models, got 1",
        absent=("avg",),
    ),
    Case(
        "report on a folder that does not exist",
        lambda t: ["report", str(t / "round-9")],
        "{tmp}/round-9: no such round folder",
    ),
    Case(
        "env --config a file that does not exist",
        lambda t: ["env", "--config", str(t / "nope.yaml")],
        "config file not found: {tmp}/nope.yaml",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_line_before_any_work(case: Case, tmp_path: Path) -> None:
    case.setup(tmp_path)
    before = {rel: (tmp_path / rel).read_bytes() for rel in case.untouched}
    proc = subprocess.run(
        [sys.executable, "-m", "alignment.cli", *case.args(tmp_path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for text in (case.message,) if isinstance(case.message, str) else case.message:
        assert text.format(tmp=tmp_path) in proc.stderr, proc.stderr[-2000:]
    for rel, data in before.items():
        assert (tmp_path / rel).read_bytes() == data, f"{rel} was changed"
    for pattern in case.absent:
        assert not list(tmp_path.glob(pattern)), f"{pattern} exists"
    assert "Loading" not in proc.stderr and "vLLM" not in proc.stderr  # no model was loaded
