"""The run and round folder layout: where every artifact of a round lives, named once.

    runs/<name>/                      a run (``config.output_dir`` / ``config.name``)
        lineage.json                  every round's parent, hashes, eval, promotion
        round-<N>/                    one round; the names below are :class:`Artifacts` fields

The runner, the stages and the report build and parse round folders only through :func:`round_path`,
:func:`round_index` and :func:`round_dirs`, and name files only through :data:`ARTIFACTS`, so a renamed file is one
edit here. :class:`Round` is what a stage gets: the config, the round's folder and where the round starts from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import Self

from alignment.config import RoundConfig
from alignment.records import MESSAGES_TYPE

ROUND_PREFIX = "round-"
_ROUND_RE = re.compile(rf"{ROUND_PREFIX}(\d+)")


@dataclass(frozen=True)
class Artifacts:
    """File and folder names inside a round folder, in the order the stages write them."""

    config: str = "config.yaml"
    manifest: str = "manifest.json"
    markers: str = "stages"
    jobs: str = "jobs"
    work: str = "work"
    tensorboard: str = "tensorboard"
    prompts: str = "prompts.parquet"
    candidates: str = "candidates.parquet"
    filtered: str = "filtered.parquet"
    verdicts: str = "verdicts.parquet"
    rm_pairs: str = "rm_pairs.parquet"
    rm: str = "rm"
    rm_split: str = "rm_split.jsonl"
    scores: str = "scores.parquet"
    sft_data: str = "sft.parquet"
    dpo_data: str = "dpo.parquet"
    selection: str = "selection.json"
    sft_model: str = "sft"
    model: str = "model"
    variants: str = "variants"
    eval: str = "eval.json"
    eval_model: str = "eval_model.json"
    eval_start: str = "eval_start.json"
    promotion: str = "promotion.json"
    report: str = "report.html"


ARTIFACTS = Artifacts()
LINEAGE = "lineage.json"


# Schemas of the parquet artifacts the stages write (candidates: synth_data.generate.CANDIDATE_SCHEMA).
PAIR_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("capability", pa.string()),
        ("messages", MESSAGES_TYPE),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("source", pa.string()),
        ("margin", pa.float64()),
    ]
)


VERDICT_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("candidate_id", pa.string()),
        ("text", pa.string()),
        ("verified", pa.bool_()),
        ("verifier_reason", pa.string()),
        ("verifier_flags", pa.list_(pa.string())),
        ("mean_logprob", pa.float64()),
        ("verifier_credit", pa.float64()),
    ]
)


SFT_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("candidate_id", pa.string()),
        ("capability", pa.string()),
        ("messages", MESSAGES_TYPE),
        ("score", pa.float64()),
        ("rm_score", pa.float64()),
        ("rm_percentile", pa.float64()),
        ("carried_from", pa.int64()),
    ]
)


def round_path(run_dir: Path, index: int) -> Path:
    """``run_dir/round-<index>``."""
    return Path(run_dir) / f"{ROUND_PREFIX}{index}"


def round_label(index: int | None) -> str:
    """``round-<index>``, or ``base`` for None (the configured policy): how lineage and pair sources name a round."""
    return "base" if index is None else f"{ROUND_PREFIX}{index}"


def round_index(path: Path | str) -> int | None:
    """N for a folder named ``round-<N>``, else None."""
    m = _ROUND_RE.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def round_dirs(run_dir: Path) -> list[Path]:
    """The ``round-<N>`` folders of a run, by N (other folders ignored)."""
    found = [p for p in Path(run_dir).glob(f"{ROUND_PREFIX}*") if p.is_dir() and round_index(p) is not None]
    return sorted(found, key=lambda p: round_index(p) or 0)


@dataclass
class Round:
    """What a stage needs: the config, where to write, where the round starts from, and earlier rounds' folders."""

    cfg: RoundConfig
    index: int
    dir: Path
    start_model: str
    run_dir: Path
    start_round: int | None = None
    """The round whose model ``start_model`` is (None: the configured policy)."""
    metrics: dict = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.dir / name

    def earlier_rounds(self) -> list[Path]:
        return [round_path(self.run_dir, i) for i in range(1, self.index)]


@dataclass(frozen=True)
class Stage:
    """One stage and everything its key is made of, declared beside its body in ``rounds.stages``.

    The runner derives the stage's key from this declaration (``rounds.keys.stage_key``): the values of the
    ``config`` sections, the content of the user ``files`` it reads, the previous stage's key and output content, the
    starting model's content, earlier rounds' stages, the pipeline's code and library versions, and the stage's own
    extra ``code`` files. A stage whose key is unchanged is skipped."""

    name: str
    run: Callable[[Round], dict]
    config: tuple[str, ...] = ()
    """Config sections (or top-level keys such as ``seed``) the stage reads."""
    outputs: tuple[str, ...] = ()
    """Artifacts (``ARTIFACTS`` names) the stage writes: hashed into the next stage's key."""
    files: Callable[[RoundConfig], list[str]] | None = None
    """User files or folders the stage reads (prompt files, seed pairs, eval suites, model folders), hashed by
    content: an edit in place re-runs the stage."""
    code: tuple[str, ...] = ()
    """Source files or folders (relative to the repository) only this stage runs, kept out of every other stage's
    code hash: editing them re-runs this stage alone."""
    records: tuple[str, ...] = ()
    """What else the stage writes (stats, logs, per-item results; glob patterns relative to the round folder): not
    hashed into any key, but part of the stage: ``alignment experiment`` copies them with its outputs."""


class ManifestError(ValueError):
    """A round's manifest.json lacks a field the readers rely on (renamed or never written)."""


@dataclass(frozen=True)
class StageRecord:
    """One stage as the manifest records it."""

    key: str
    duration_s: float
    metrics: dict
    skipped: bool
    outputs: dict


@dataclass(frozen=True)
class Manifest:
    """The fields of ``manifest.json`` that readers (the report, status) use, checked on load: a field the runner
    renames fails here, naming it, instead of vanishing from a page."""

    round: int
    run: str
    start_model: str
    stages: dict[str, StageRecord]
    timings_s: dict[str, float]
    stages_total_s: float
    """Seconds of the stages that built the round so far (the report stage, last, sees all the others)."""
    code_version: str
    """The code id in every stage key (``rounds.keys.code_id``: source and library versions)."""

    @classmethod
    def from_dict(cls, data: dict, source: str = "manifest.json") -> Manifest:
        def need(obj: dict, key: str, where: str) -> Any:
            if key not in obj:
                raise ManifestError(f"{source}: no {where}{key!r} (written by rounds.runner)")
            return obj[key]

        stages = {}
        for name, rec in need(data, "stages", "").items():
            stages[name] = StageRecord(
                key=need(rec, "key", f"stages.{name}."),
                duration_s=float(need(rec, "duration_s", f"stages.{name}.")),
                metrics=dict(need(rec, "metrics", f"stages.{name}.") or {}),
                skipped=bool(rec.get("skipped", False)),
                outputs=dict(rec.get("outputs") or {}),
            )
        return cls(
            round=int(need(data, "round", "")),
            run=str(need(data, "run", "")),
            start_model=str(need(data, "start_model", "")),
            stages=stages,
            timings_s={k: float(v) for k, v in need(data, "timings_s", "").items()},
            stages_total_s=float(need(data, "stages_total_s", "")),
            code_version=str(need(data, "code_version", "")),
        )

    def metrics(self, stage: str) -> dict:
        """A stage's metrics ({} when the stage has not run)."""
        return self.stages[stage].metrics if stage in self.stages else {}


# --- Typed readers of the round's JSON artifacts -------------------------------------------------------------------
# The stages check what they write against these models (``check``), and the report reads through them (``read``):
# a key a stage renames or drops fails the stage's own tests, naming the file and key, instead of vanishing from a
# page. Extra keys are allowed (files grow; old readers keep working).


class ArtifactError(ValueError):
    """A round's JSON artifact lacks a field its readers rely on, or has one of the wrong type."""


class Artifact(BaseModel):
    """Base of the typed readers: extra keys allowed, read-only."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @classmethod
    def parse(cls, data: Any, source: str) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or '(top level)'}: {err['msg'].lower()}" for err in e.errors()[:5]
            )
            raise ArtifactError(f"{source}: {problems}") from None

    @classmethod
    def check(cls, data: dict, source: str) -> dict:
        """``data`` unchanged when it is a valid ``cls``; ArtifactError naming ``source`` and the key otherwise.
        Writers call this before writing."""
        cls.parse(data, source)
        return data

    @classmethod
    def read(cls, path: Path | str) -> Self:
        """The file at ``path``; ArtifactError naming the file for malformed JSON or a missing or mistyped key."""
        try:
            raw = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{path}: not JSON ({e})") from None
        return cls.parse(raw, str(path))

    @classmethod
    def read_optional(cls, path: Path | str) -> Self | None:
        """Like :meth:`read`, but None when the file does not exist."""
        return cls.read(path) if Path(path).exists() else None


class Accuracy(Artifact):
    accuracy: float
    n: int


class EvalSummary(Artifact):
    """``eval.json`` (the eval stage): the new model's and the starting model's accuracy per capability."""

    model: dict[str, Accuracy]
    start: dict[str, Accuracy]
    start_model: str
    model_eval_file: str
    """The new model's per-item results (relative to the run folder), for the gate and for tracing regressions."""
    start_eval_file: str
    delta: dict[str, float] = Field(default_factory=dict)
    identity: dict[str, Any] = Field(default_factory=dict)
    """``rounds.stages.eval_identity``: the suites, eval settings and code these evals were made with (empty in
    runs from before it was recorded: a later round does not reuse those)."""


class GateCheck(Artifact):
    """One capability of ``promotion.json`` (:func:`alignment.compare.compare`)."""

    regressed: bool = False
    tolerance: float | None = None
    missing_in: str | None = None
    new: float | None = None
    old: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    drop: float | None = None


class Promotion(Artifact):
    """``promotion.json`` (the gate stage)."""

    promoted: bool
    reasons: list[str]
    compared_to: str
    capabilities: dict[str, GateCheck] = Field(default_factory=dict)
    compared_to_round: int | None = None
    next_start: str | None = None


class VerifierCounts(Artifact):
    verified: int
    passed: int
    unverifiable: int
    pass_rate: float | None
    passed_off_topic: int = 0
    failures: dict[str, int] = Field(default_factory=dict)


class Auc(Artifact):
    auc: float
    pairs: int


class SelectedSet(Artifact):
    """``selection.json``'s ``sft`` or ``dpo`` part: what was kept, and the prompts dropped by reason."""

    kept: int
    dropped: dict[str, int] = Field(default_factory=dict)
    dropped_by_capability: dict[str, dict[str, int]] = Field(default_factory=dict)
    kept_by_capability: dict[str, int] | None = None
    # SFT only
    new: int | None = None
    new_by_capability: dict[str, int] | None = None
    carried_over: int = 0
    carried_by_round: dict[str, int] = Field(default_factory=dict)
    # DPO only
    mean_margin: float | None = None
    decided_by: dict[str, int] = Field(default_factory=dict)
    margin_sweep: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Selection(Artifact):
    """``selection.json`` (the select stage, :func:`reward.select.selection_report`)."""

    prompts: int
    sft: SelectedSet
    dpo: SelectedSet
    candidates_by_capability: dict[str, int]
    verifier: dict[str, VerifierCounts]
    """Verifier outcome per capability (pass rates are counted here, never recomputed by readers)."""
    rm_pass_over_fail_auc: dict[str, Auc]
    strategy: str = "rejection_sampling"
    """How the rows and pairs were picked: rejection_sampling, or random (the control arm, same counts)."""
    candidates: int | None = None
