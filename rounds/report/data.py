"""Reading a round for the report: :func:`load_round` gathers a round's files into :class:`RoundData`, and the table
functions (summary, pass rates, filter and selection outcomes, lengths, eval, examples, reward-model trust) turn it
into pandas frames. No drawing and no HTML here."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from rounds.layout import (
    Artifact,
    ArtifactError,
    EvalSummary,
    GateCheck,
    Manifest,
    Promotion,
    Selection,
    round_index,
    round_path,
)

log = logging.getLogger(__name__)
A = TypeVar("A", bound=Artifact)

CORE_FILES = ("scores.parquet", "selection.json")
"""Files every round with a finished select stage has; the report needs them."""
SCORE_COLUMNS = ("prompt_id", "candidate_id", "text", "verified", "rm_score", "score")
"""Columns of scores.parquet the report reads."""
NO_VALUE = "—"
EXAMPLE_CHARS = 1200
"""Longer prompts and responses are cut in the examples section (the parquet files have them whole)."""


@dataclass
class RoundData:
    """One round folder's records; optional files that are absent are None. Every frame with a ``prompt_id`` has a
    ``capability`` column (from the round's prompts, else from the file itself, else "unknown")."""

    dir: Path
    index: int | None
    scores: pd.DataFrame
    selection: Selection | None
    """None only for a round read with nothing required (:func:`previous_round`)."""
    prompts: pd.DataFrame | None = None
    candidates: pd.DataFrame | None = None
    filtered: pd.DataFrame | None = None
    verdicts: pd.DataFrame | None = None
    sft: pd.DataFrame | None = None
    dpo: pd.DataFrame | None = None
    eval: EvalSummary | None = None
    promotion: Promotion | None = None
    manifest: Manifest | None = None

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def capabilities(self) -> list[str]:
        """Every capability seen in the round's prompts or scored candidates, sorted."""
        caps = set(self.scores["capability"])
        if self.prompts is not None and "capability" in self.prompts.columns:
            caps |= set(self.prompts["capability"].astype(str))
        return sorted(caps)


def read_json_optional(path: Path) -> dict | None:
    """A JSON object from ``path``; None when the file is missing, unreadable, or not an object."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _read_parquet_optional(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def _with_capability(df: pd.DataFrame | None, caps: dict[str, str]) -> pd.DataFrame | None:
    if df is None or "prompt_id" not in df.columns:
        return df
    df = df.copy()
    mapped = df["prompt_id"].map(caps)
    if "capability" in df.columns:
        mapped = mapped.fillna(df["capability"])
    df["capability"] = mapped.fillna("unknown").astype(str)
    return df


def _manifest(path: Path) -> Manifest | None:
    raw = read_json_optional(path)
    return None if raw is None else Manifest.from_dict(raw, str(path))


def read_optional(kind: type[A], path: Path) -> A | None:
    """``kind.read(path)`` (a typed reader of :mod:`rounds.layout`), or None when the file is missing or unreadable:
    an optional file that is broken is left out of the page, with a warning naming the file and key."""
    try:
        return kind.read_optional(path)
    except ArtifactError as e:
        log.warning("report: %s; left out", e)
        return None


def load_round(round_dir: Path | str, require: tuple[str, ...] = CORE_FILES) -> RoundData:
    """Read a round folder's records. Raises FileNotFoundError naming the first file of ``require`` that is
    missing (by default ``scores.parquet`` and ``selection.json``, which a round has once its select stage ran)."""
    d = Path(round_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such round folder")
    for name in require:
        if not (d / name).exists():
            raise FileNotFoundError(f"{d / name}: missing (the report needs a round whose select stage finished)")
    prompts = _read_parquet_optional(d / "prompts.parquet")
    sft = _read_parquet_optional(d / "sft.parquet")
    dpo = _read_parquet_optional(d / "dpo.parquet")
    caps: dict[str, str] = {}
    for df in (sft, dpo, prompts):  # the prompts file wins: it is where the capability comes from
        if df is not None and {"prompt_id", "capability"} <= set(df.columns):
            caps.update(zip(df["prompt_id"], df["capability"], strict=True))
    scores = _read_parquet_optional(d / "scores.parquet")
    if scores is None:
        scores = pd.DataFrame(columns=list(SCORE_COLUMNS))
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(
            f"{d / 'scores.parquet'}: no column {', '.join(missing)} (not a scores file of the score stage; "
            f"it has {', '.join(map(str, scores.columns))})"
        )
    selection = Selection.read(d / "selection.json") if (d / "selection.json").exists() else None
    return RoundData(
        dir=d,
        index=round_index(d),
        scores=_with_capability(scores, caps),
        selection=selection,
        prompts=prompts,
        candidates=_with_capability(_read_parquet_optional(d / "candidates.parquet"), caps),
        filtered=_with_capability(_read_parquet_optional(d / "filtered.parquet"), caps),
        verdicts=_with_capability(_read_parquet_optional(d / "verdicts.parquet"), caps),
        sft=_with_capability(sft, caps),
        dpo=_with_capability(dpo, caps),
        eval=read_optional(EvalSummary, d / "eval.json"),
        promotion=read_optional(Promotion, d / "promotion.json"),
        manifest=_manifest(d / "manifest.json"),
    )


def previous_round(data: RoundData) -> RoundData | None:
    """Round N-1 of the same run folder, when it exists (its optional files only; nothing is required)."""
    if data.index is None or data.index < 2:
        return None
    prev = round_path(data.dir.parent, data.index - 1)
    return load_round(prev, require=()) if prev.is_dir() else None


def _verdict(value: Any) -> str:
    """pass / fail / n/a (no verifier applies) for a ``verified`` value (True, False, None/NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "n/a"
    return "pass" if bool(value) else "fail"


def _reason_kind(reason: str) -> str:
    """A verifier reason with its numbers replaced by N ("math: expected N, got N"), to count kinds of failure."""
    return re.sub(r"-?\d+(?:[,./]\d+)*", "N", reason)


def prompt_texts(data: RoundData) -> dict[str, str]:
    """prompt_id -> the prompt's turns as text ("user: ..."; a single user turn is shown bare)."""
    if data.prompts is None or "messages" not in data.prompts.columns:
        return {}
    out = {}
    for pid, messages in zip(data.prompts["prompt_id"], data.prompts["messages"], strict=True):
        turns = list(messages)
        if len(turns) == 1 and turns[0]["role"] == "user":
            out[pid] = str(turns[0]["content"])
        else:
            out[pid] = "\n\n".join(f"{t['role']}: {t['content']}" for t in turns)
    return out


def summary(data: RoundData) -> pd.DataFrame:
    """Key numbers of the round as (what, value) rows: prompts, candidates, kept, pass rate, SFT rows, DPO pairs..."""
    sel, rows = data.selection, []

    def add(what: str, value: Any) -> None:
        if value is not None:
            rows.append({"what": what, "value": value})

    manifest = data.manifest
    add("start model", manifest.start_model if manifest else None)
    add("prompts", sel.prompts if sel else None if data.prompts is None else len(data.prompts))
    if data.candidates is not None:
        add("candidates generated", len(data.candidates))
    if data.filtered is not None and "drop_reason" in data.filtered.columns:
        add("candidates kept by the filters", int(data.filtered["drop_reason"].isna().sum()))
    add("candidates scored", len(data.scores))
    checked = [v for v in data.scores["verified"] if _verdict(v) != "n/a"]
    if checked:
        add("verifier pass rate (verifiable candidates)", f"{sum(map(bool, checked)) / len(checked):.1%}")
    if sel is not None:
        sft, dpo = sel.sft, sel.dpo
        add("SFT rows", sft.kept)
        if sft.carried_over:
            add("SFT rows carried over from earlier rounds", sft.carried_over)
        add("DPO pairs", dpo.kept)
        add("mean pair RM margin", dpo.mean_margin)
        if dpo.decided_by:
            add("DPO pairs decided by", ", ".join(f"{k}: {n}" for k, n in dpo.decided_by.items()))
        add("DPO pairs removed by the RM margin", dpo.dropped.get("RM margin below min_margin"))
    rm = manifest.metrics("reward_model") if manifest else {}
    if rm.get("heldout_accuracy") is not None:
        add("reward model held-out accuracy", f"{rm['heldout_accuracy']} on {rm.get('heldout_pairs', '?')} pairs")
    gen = manifest.metrics("generate") if manifest else {}
    if gen.get("backend"):
        add("generation", f"{gen['backend']}, {gen.get('tokens_per_s', '?')} tokens/s")
    if data.eval is not None:
        for cap in sorted(data.eval.model):
            new, old = data.eval.model[cap].accuracy, data.eval.start.get(cap)
            start = "" if old is None else f" (start {old.accuracy:.3f}, {new - old.accuracy:+.3f})"
            add(f"eval {cap}", f"{new:.3f}{start}")
    if data.promotion is not None:
        add("promotion", promotion_decision(data.promotion))
    if manifest:  # the report is the last stage: every other stage has run when it reads this
        add("stage time so far (s)", manifest.stages_total_s)
    return pd.DataFrame(rows, columns=["what", "value"])


def pass_rates(data: RoundData, previous: RoundData | None = None) -> pd.DataFrame:
    """Verifier outcome per capability as the select stage counted it in ``selection.json`` (not recomputed here):
    candidates, passed, failed, unverifiable (no verifier, e.g. chat), pass rate (passed / verified), the previous
    round's rate (with ``previous``), the RM's pass-over-fail AUC on the round's candidates and the most frequent
    kinds of failure (numbers replaced by N)."""
    if data.selection is None:
        return pd.DataFrame()
    counts, auc = data.selection.verifier, data.selection.rm_pass_over_fail_auc
    candidates = data.selection.candidates_by_capability
    prev = previous.selection.verifier if previous is not None and previous.selection is not None else {}
    rows = []
    for cap in data.capabilities:
        if cap not in counts:
            continue
        c = counts[cap]
        top = sorted(c.failures.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        row = {
            "capability": cap,
            "candidates": candidates.get(cap, c.verified + c.unverifiable),
            "passed": c.passed,
            "failed": c.verified - c.passed,
            "unverifiable": c.unverifiable,
            "pass rate": c.pass_rate,
        }
        if previous is not None:
            row["previous round"] = prev[cap].pass_rate if cap in prev else None
        row["RM AUC pass>fail"] = auc[cap].auc if cap in auc else None
        row["top failures"] = "; ".join(f"{k} ({n})" for k, n in top)
        rows.append(row)
    return pd.DataFrame(rows).set_index("capability") if rows else pd.DataFrame()


def filter_drops(data: RoundData) -> pd.DataFrame | None:
    """Candidates by filter outcome ("kept" or the drop reason) and capability, with a total column; None without
    filtered.parquet."""
    df = data.filtered
    if df is None or "drop_reason" not in df.columns:
        return None
    outcome = df["drop_reason"].fillna("kept").astype(str)
    table = pd.crosstab(outcome, df["capability"])
    table["total"] = table.sum(axis=1)
    order = ["kept"] + sorted(r for r in table.index if r != "kept")
    table = table.reindex([r for r in order if r in table.index])
    table.index.name = "filter outcome"
    table.columns.name = None
    return table


def style_flags(data: RoundData) -> pd.DataFrame | None:
    """Style flags (emoji, exclamation, apology, ...) counted by capability and whether the candidate was kept;
    None when the filtered file has no ``flags`` column or nothing is flagged."""
    df = data.filtered
    if df is None or "flags" not in df.columns:
        return None
    rows = []
    for cap, flags, reason in zip(df["capability"], df["flags"], df["drop_reason"], strict=True):
        for flag in [] if flags is None else list(flags):
            rows.append({"flag": str(flag), "capability": cap, "kept": reason is None or pd.isna(reason)})
    if not rows:
        return None
    flagged = pd.DataFrame(rows)
    return flagged.groupby(["flag", "capability"]).agg(flagged=("kept", "size"), kept=("kept", "sum"))


def selection_outcomes(data: RoundData) -> pd.DataFrame:
    """Rejection sampling's kept and dropped counts (selection.json) as rows (set, outcome, total, per capability).
    SFT "kept" counts rows; every "dropped" row counts prompts, by reason."""
    caps = data.capabilities
    rows = []

    def add(which: str, outcome: str, total: Any, by_cap: dict | None) -> None:
        row = {"set": which, "outcome": outcome, "total": total}
        row.update({cap: (by_cap or {}).get(cap, 0 if by_cap is not None else None) for cap in caps})
        rows.append(row)

    for label, part in (("SFT", data.selection.sft), ("DPO", data.selection.dpo)) if data.selection else ():
        if label == "SFT":
            by_cap = part.new_by_capability if part.new_by_capability is not None else part.kept_by_capability
            add(label, "kept (new rows)", part.new if part.new is not None else part.kept, by_cap)
            if part.carried_over:
                by_round = ", ".join(f"round {k}: {n}" for k, n in part.carried_by_round.items())
                add(label, f"carried over ({by_round})" if by_round else "carried over", part.carried_over, None)
        else:
            add(label, "kept (pairs)", part.kept, part.kept_by_capability)
        for reason, n in sorted(part.dropped.items()):
            per_cap = {cap: c.get(reason, 0) for cap, c in part.dropped_by_capability.items()}
            add(label, f"dropped: {reason}", n, per_cap or None)
    return pd.DataFrame(rows, columns=["set", "outcome", "total", *caps])


def _lengths(data: RoundData) -> pd.DataFrame | None:
    df = data.candidates
    if df is None or "num_tokens" not in df.columns:
        return None
    return df


def length_table(data: RoundData, previous: RoundData | None = None) -> pd.DataFrame | None:
    """Response length in tokens (candidates.parquet ``num_tokens``) per capability and round: count, mean,
    median, 90th percentile, max, and the share cut at max_new_tokens (``finish_reason`` "length")."""
    rows = []
    for rd in (previous, data):
        df = None if rd is None else _lengths(rd)
        if df is None:
            continue
        for cap in sorted(set(df["capability"])):
            tokens = df.loc[df["capability"] == cap, "num_tokens"]
            sub = df[df["capability"] == cap]
            truncated = (sub["finish_reason"] == "length").mean() if "finish_reason" in sub.columns else None
            rows.append(
                {
                    "capability": cap,
                    "round": rd.name,
                    "candidates": len(tokens),
                    "mean": round(float(tokens.mean()), 1),
                    "median": float(tokens.median()),
                    "p90": float(tokens.quantile(0.9)),
                    "max": int(tokens.max()),
                    "truncated": truncated,
                }
            )
    if not rows:
        return None
    return pd.DataFrame(rows).sort_values(["capability", "round"], kind="stable").set_index(["capability", "round"])


def eval_rounds(data: RoundData) -> list[dict]:
    """Every round 1..N of the run folder that has eval.json, oldest first: {round, eval, promotion}."""
    if data.index is None:
        return [{"round": data.name, "eval": data.eval, "promotion": data.promotion}] if data.eval else []
    out = []
    for i in range(1, data.index + 1):
        d = round_path(data.dir.parent, i)
        ev = data.eval if i == data.index else read_optional(EvalSummary, d / "eval.json")
        promotion = data.promotion if i == data.index else read_optional(Promotion, d / "promotion.json")
        if ev is not None:
            out.append({"round": d.name, "eval": ev, "promotion": promotion})
    return out


def promotion_decision(promotion: Promotion | None) -> str:
    """ "promoted", "not promoted", or "—" when the round has no (readable) promotion.json."""
    if promotion is None:
        return NO_VALUE
    return "promoted" if promotion.promoted else "not promoted"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def gate_check(check: GateCheck | None) -> str | None:
    """One capability of promotion.json's ``capabilities`` as text: the accuracy difference with its confidence
    interval and tolerance ("regressed" when the gate counted it as a regression), or a ``drop``, or what is
    missing; None when there is nothing readable."""
    if check is None:
        return None
    if check.missing_in:
        return f"missing from the {check.missing_in} eval"
    parts = []
    diff, low, high, tol, drop = check.diff, check.ci_low, check.ci_high, check.tolerance, check.drop
    if diff is not None:
        parts.append(
            f"{diff:+.3f}" + (f" CI [{low:+.3f}, {high:+.3f}]" if low is not None and high is not None else "")
        )
    elif drop is not None:
        parts.append(f"drop {drop:.3f}")
    if tol is not None:
        parts.append(f"tolerance {tol:.3f}")
    if check.regressed:
        parts.append("regressed")
    return ", ".join(parts) or None


def _model_name(path: Any, run_dir: Path) -> str | None:
    """A model path shortened for display: relative to the run folder when inside it (``round-1/model``)."""
    if not isinstance(path, str) or not path:
        return None
    with contextlib.suppress(ValueError, OSError):
        return str(Path(path).resolve().relative_to(run_dir.resolve()))
    return path


EVAL_COLUMNS = [
    "round",
    "start model",
    "capability",
    "n",
    "start accuracy",
    "accuracy",
    "change",
    "gate check",
    "promotion",
    "reasons",
]


def eval_table(data: RoundData) -> pd.DataFrame:
    """Held-out accuracy per round of the run (up to this one) and capability: the round's starting model and its
    accuracy, the new model's accuracy, the change, n, and, where the round has promotion.json, the gate's check
    per capability, the decision and its reasons ("—" for a round without one)."""
    rows = []
    for r in eval_rounds(data):
        ev, promo = r["eval"], r["promotion"]
        checks = promo.capabilities if promo is not None else {}
        start_name = _model_name(ev.start_model, data.dir.parent)
        for cap in sorted(set(ev.model) | set(ev.start)):
            new, n = (ev.model[cap].accuracy, ev.model[cap].n) if cap in ev.model else (None, None)
            old, n_start = (ev.start[cap].accuracy, ev.start[cap].n) if cap in ev.start else (None, None)
            rows.append(
                {
                    "round": r["round"],
                    "start model": start_name,
                    "capability": cap,
                    "n": n if n is not None else n_start,
                    "start accuracy": old,
                    "accuracy": new,
                    "change": None if new is None or old is None else round(new - old, 4),
                    "gate check": gate_check(checks.get(cap)),
                    "promotion": promotion_decision(promo),
                    "reasons": "; ".join(promo.reasons) if promo is not None else None,
                }
            )
    return pd.DataFrame(rows, columns=EVAL_COLUMNS)


def examples(data: RoundData, k: int = 2) -> pd.DataFrame:
    """Per capability the ``k`` highest and ``k`` lowest scored candidates (combined ``score``: a verifier failure
    ranks below every pass) with prompt, response, scores and verdict."""
    texts = prompt_texts(data)
    rows = []
    df = data.scores
    for cap in data.capabilities:
        sub = df[df["capability"] == cap].sort_values(["score", "candidate_id"], ascending=[False, True])
        best = sub.head(k)
        worst = sub.drop(best.index).tail(k).iloc[::-1]
        for which, part in (("best", best), ("worst", worst)):
            for _, r in part.iterrows():
                rows.append(
                    {
                        "capability": cap,
                        "which": which,
                        "candidate_id": r["candidate_id"],
                        "prompt": texts.get(r["prompt_id"], r["prompt_id"]),
                        "response": r["text"],
                        "rm_score": r.get("rm_score"),
                        "score": r.get("score"),
                        "verdict": _verdict(r.get("verified")),
                        "verifier_reason": r.get("verifier_reason"),
                    }
                )
    return pd.DataFrame(
        rows,
        columns=[
            "capability",
            "which",
            "candidate_id",
            "prompt",
            "response",
            "rm_score",
            "score",
            "verdict",
            "verifier_reason",
        ],
    )


# --- plots (matplotlib figures, no pyplot state) ---------------------------------------------------------------


def reward_model_trust(data: RoundData) -> pd.DataFrame | None:
    """How far the round's reward model can be trusted, as rows: held-out pairwise accuracy per pair source
    (prompt-disjoint held-out pairs) and pass-over-fail AUC per capability on this round's candidates
    (selection.json); None when neither is recorded."""
    rows = []
    rm = data.manifest.metrics("reward_model") if data.manifest else {}
    for source, r in (rm.get("heldout_by_source") or {}).items():
        rows.append({"measure": f"held-out accuracy, {source} pairs", "value": r["accuracy"], "pairs": r["pairs"]})
    for cap, r in (data.selection.rm_pass_over_fail_auc if data.selection else {}).items():
        rows.append({"measure": f"pass-over-fail AUC, {cap}", "value": r.auc, "pairs": r.pairs})
    if rm.get("dropped_too_long"):
        rows.append(
            {"measure": "pairs left out: longer than max_length", "value": rm["dropped_too_long"], "pairs": None}
        )
    return pd.DataFrame(rows) if rows else None


def margin_sweep(data: RoundData) -> pd.DataFrame | None:
    """Reward-model-decided DPO pairs each ``min_margin`` would remove (selection.json), per capability."""
    sweep = data.selection.dpo.margin_sweep if data.selection else None
    if not sweep:
        return None
    rows = [
        {"min_margin": t, "P(chosen better)": round(1 / (1 + math.exp(-float(t))), 3), "removed": r["removed"],
         "of": r["of"], **r.get("removed_by_capability", {})}
        for t, r in sweep.items()
    ]  # fmt: skip
    return pd.DataFrame(rows).fillna(0)
