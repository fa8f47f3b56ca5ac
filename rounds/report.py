"""A round's report: one self-contained HTML page (``round-<N>/report.html``) to inspect what the round did.

    python -m rounds.report runs/default/round-2 [--screenshot report.png]
    alignment report runs/default/round-2

The page shows, per capability: reward-model score and DPO pair-margin histograms, verifier pass rates, kept and
dropped counts by reason (filter and selection), response lengths against the previous round, the held-out eval
of every round of the run so far (with the promotion decision where the round has ``promotion.json``), and the
best and worst scored candidates. Plots are PNGs embedded as base64 (matplotlib, Agg): the page loads nothing from
anywhere. A small inline script sets ``<body data-rendered="ok N images">`` once every image decoded (``broken
...`` otherwise), which :func:`check_in_browser` reads back from headless Chromium.

The loading and table functions (:func:`load_round`, :func:`pass_rates`, :func:`eval_table`, ...) and the plots
(``plot_*``, returning matplotlib figures) are public: ``notebooks/inspect_round.ipynb`` shows the same views from
them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import io
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from rounds.layout import Manifest, round_index, round_path

CORE_FILES = ("scores.parquet", "selection.json")
"""Files every round with a finished select stage has; the report needs them."""
NO_VALUE = "—"
EXAMPLE_CHARS = 1200
"""Longer prompts and responses are cut in the examples section (the parquet files have them whole)."""
MAX_SCREENSHOT_HEIGHT = 16000
SCREENSHOT_WIDTH = 1280
COLORS = {"pass": "#2e7d32", "fail": "#c62828", "n/a": "#757575", "this": "#1565c0", "previous": "#ef6c00"}


@dataclass
class RoundData:
    """One round folder's records; optional files that are absent are None. Every frame with a ``prompt_id`` has a
    ``capability`` column (from the round's prompts, else from the file itself, else "unknown")."""

    dir: Path
    index: int | None
    scores: pd.DataFrame
    selection: dict
    prompts: pd.DataFrame | None = None
    candidates: pd.DataFrame | None = None
    filtered: pd.DataFrame | None = None
    verdicts: pd.DataFrame | None = None
    sft: pd.DataFrame | None = None
    dpo: pd.DataFrame | None = None
    eval: dict | None = None
    promotion: dict | None = None
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
        scores = pd.DataFrame(columns=["prompt_id", "candidate_id", "text", "verified", "rm_score", "score"])
    selection = read_json_optional(d / "selection.json") or {}
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
        eval=read_json_optional(d / "eval.json"),
        promotion=read_json_optional(d / "promotion.json"),
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
    add("prompts", sel.get("prompts", None if data.prompts is None else len(data.prompts)))
    if data.candidates is not None:
        add("candidates generated", len(data.candidates))
    if data.filtered is not None and "drop_reason" in data.filtered.columns:
        add("candidates kept by the filters", int(data.filtered["drop_reason"].isna().sum()))
    add("candidates scored", len(data.scores))
    checked = [v for v in data.scores["verified"] if _verdict(v) != "n/a"]
    if checked:
        add("verifier pass rate (verifiable candidates)", f"{sum(map(bool, checked)) / len(checked):.1%}")
    sft, dpo = sel.get("sft", {}), sel.get("dpo", {})
    add("SFT rows", sft.get("kept"))
    if sft.get("carried_over"):
        add("SFT rows carried over from earlier rounds", sft["carried_over"])
    add("DPO pairs", dpo.get("kept"))
    add("mean pair RM margin", dpo.get("mean_margin"))
    if dpo.get("decided_by"):
        add("DPO pairs decided by", ", ".join(f"{k}: {n}" for k, n in dpo["decided_by"].items()))
    removed = (dpo.get("dropped") or {}).get("RM margin below min_margin")
    if removed is not None:
        add("DPO pairs removed by the RM margin", removed)
    rm = manifest.metrics("reward_model") if manifest else {}
    if rm.get("heldout_accuracy") is not None:
        add("reward model held-out accuracy", f"{rm['heldout_accuracy']} on {rm.get('heldout_pairs', '?')} pairs")
    gen = manifest.metrics("generate") if manifest else {}
    if gen.get("backend"):
        add("generation", f"{gen['backend']}, {gen.get('tokens_per_s', '?')} tokens/s")
    if data.eval is not None:
        ev_model, ev_start = data.eval.get("model"), data.eval.get("start")
        for cap in sorted(ev_model) if isinstance(ev_model, dict) else []:
            new, old = _accuracy(ev_model, cap)[0], _accuracy(ev_start, cap)[0]
            if new is not None:
                add(f"eval {cap}", f"{new:.3f}" + (f" (start {old:.3f}, {new - old:+.3f})" if old is not None else ""))
    if data.promotion is not None:
        add("promotion", promotion_decision(data.promotion))
    if manifest:  # the report is the last stage: every other stage has run when it reads this
        add("stage time so far (s)", manifest.stages_total_s)
    return pd.DataFrame(rows, columns=["what", "value"])


def rm_auc(passed: pd.Series, failed: pd.Series) -> float | None:
    """Probability that a random passing candidate has a higher RM score than a random failing one (ties count
    half): 1.0 when the reward model agrees with the verifier on every pair, 0.5 at chance; None without both."""
    a, b = passed.dropna().to_numpy(dtype=float), failed.dropna().to_numpy(dtype=float)
    if not len(a) or not len(b):
        return None
    greater = (a[:, None] > b[None, :]).sum() + 0.5 * (a[:, None] == b[None, :]).sum()
    return round(float(greater) / (len(a) * len(b)), 4)


def _verdict_frame(data: RoundData) -> pd.DataFrame | None:
    """The round's verdicts: scores.parquet (verdicts plus RM scores), else verdicts.parquet."""
    if len(data.scores):
        return data.scores
    return data.verdicts


def pass_rates(data: RoundData, previous: RoundData | None = None) -> pd.DataFrame:
    """Verifier outcome per capability: candidates, passed, failed, unverifiable (no verifier, e.g. chat), pass rate
    (passed / verifiable), the previous round's rate (with ``previous``), how well the RM agrees with the verifier
    (:func:`rm_auc`) and the most frequent kinds of failure (numbers replaced by N)."""
    df = _verdict_frame(data)
    prev_rates: dict = {}
    if previous is not None and _verdict_frame(previous) is not None:
        prev_table = pass_rates(previous)
        if "pass rate" in prev_table.columns:
            prev_rates = prev_table["pass rate"].to_dict()
    rows = []
    for cap in data.capabilities if df is not None else []:
        sub = df[df["capability"] == cap]
        verdicts = sub["verified"].map(_verdict)
        passed, failed = int((verdicts == "pass").sum()), int((verdicts == "fail").sum())
        reasons = sub["verifier_reason"] if "verifier_reason" in sub.columns else pd.Series("unknown", index=sub.index)
        top = reasons[verdicts == "fail"].fillna("unknown").astype(str).map(_reason_kind).value_counts().head(3)
        auc = None
        if "rm_score" in sub.columns:
            auc = rm_auc(sub.loc[verdicts == "pass", "rm_score"], sub.loc[verdicts == "fail", "rm_score"])
        row = {
            "capability": cap,
            "candidates": len(sub),
            "passed": passed,
            "failed": failed,
            "unverifiable": int((verdicts == "n/a").sum()),
            "pass rate": passed / (passed + failed) if passed + failed else None,
        }
        if previous is not None:
            row["previous round"] = prev_rates.get(cap)
        row["RM AUC pass>fail"] = auc
        row["top failures"] = "; ".join(f"{k} ({n})" for k, n in top.items())
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

    for which in ("sft", "dpo"):
        part = data.selection.get(which)
        if not isinstance(part, dict):
            continue
        label = "SFT" if which == "sft" else "DPO"
        if which == "sft":
            by_cap = part.get("new_by_capability", part.get("kept_by_capability"))
            add(label, "kept (new rows)", part.get("new", part.get("kept")), by_cap)
            if part.get("carried_over"):
                by_round = ", ".join(f"round {k}: {n}" for k, n in part.get("carried_by_round", {}).items())
                add(label, f"carried over ({by_round})" if by_round else "carried over", part["carried_over"], None)
        else:
            add(label, "kept (pairs)", part.get("kept"), part.get("kept_by_capability"))
        by_cap_dropped = part.get("dropped_by_capability")
        for reason, n in sorted(part.get("dropped", {}).items()):
            per_cap = None
            if isinstance(by_cap_dropped, dict):
                per_cap = {cap: c.get(reason, 0) for cap, c in by_cap_dropped.items() if isinstance(c, dict)}
            add(label, f"dropped: {reason}", n, per_cap)
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
        ev = read_json_optional(d / "eval.json")
        if ev is not None:
            out.append({"round": d.name, "eval": ev, "promotion": read_json_optional(d / "promotion.json")})
    return out


def _accuracy(part: Any, cap: str) -> tuple[float | None, int | None]:
    item = part.get(cap) if isinstance(part, dict) else None
    if not isinstance(item, dict):
        return None, None
    acc = item.get("accuracy")
    return (float(acc) if isinstance(acc, (int, float)) else None), item.get("n")


def promotion_decision(promotion: dict | None) -> str:
    """ "promoted", "not promoted", or "—" when the round has no (readable) promotion.json."""
    if not isinstance(promotion, dict) or not isinstance(promotion.get("promoted"), bool):
        return NO_VALUE
    return "promoted" if promotion["promoted"] else "not promoted"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def gate_check(check: Any) -> str | None:
    """One capability of promotion.json's ``capabilities`` as text: the accuracy difference with its confidence
    interval and tolerance ("regressed" when the gate counted it as a regression), or a ``drop``, or what is
    missing; None when there is nothing readable."""
    if not isinstance(check, dict):
        return None
    if check.get("missing_in"):
        return f"missing from the {check['missing_in']} eval"
    parts = []
    diff, low, high, tol = (_num(check.get(k)) for k in ("diff", "ci_low", "ci_high", "tolerance"))
    drop = _num(check.get("drop"))
    if diff is not None:
        parts.append(
            f"{diff:+.3f}" + (f" CI [{low:+.3f}, {high:+.3f}]" if low is not None and high is not None else "")
        )
    elif drop is not None:
        parts.append(f"drop {drop:.3f}")
    if tol is not None:
        parts.append(f"tolerance {tol:.3f}")
    if check.get("regressed") is True:
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
        ev, promo = r["eval"], r["promotion"] if isinstance(r["promotion"], dict) else {}
        model, start = ev.get("model"), ev.get("start")
        model, start = model if isinstance(model, dict) else {}, start if isinstance(start, dict) else {}
        checks = promo.get("capabilities") if isinstance(promo.get("capabilities"), dict) else {}
        reasons = promo.get("reasons")
        start_name = _model_name(ev.get("start_model") or promo.get("compared_to"), data.dir.parent)
        for cap in sorted(set(model) | set(start)):
            new, n = _accuracy(model, cap)
            old, n_start = _accuracy(start, cap)
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
                    "promotion": promotion_decision(r["promotion"]),
                    "reasons": "; ".join(map(str, reasons)) if isinstance(reasons, list) else None,
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


def _grid(n: int, height: float = 2.8, width: float = 4.2, cols: int = 3) -> tuple[Figure, list]:
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=COLORS["n/a"])
    ax.set_xticks([])
    ax.set_yticks([])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _integer_counts(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def plot_scores(data: RoundData) -> Figure:
    """Histogram of the reward model's score per capability, stacked by verifier verdict."""
    caps = data.capabilities
    fig, axes = _grid(len(caps))
    df = data.scores
    if len(df) and "rm_score" in df.columns:
        lo, hi = float(df["rm_score"].min()), float(df["rm_score"].max())
    else:
        lo, hi = 0.0, 1.0
    bins = [lo + (hi - lo) * i / 20 for i in range(21)] if hi > lo else 10
    for ax, cap in zip(axes, caps, strict=True):
        sub = df[df["capability"] == cap]
        if sub.empty:
            _empty(ax, "no scored candidates")
        else:
            verdicts = sub["verified"].map(_verdict)
            parts = [(v, sub.loc[verdicts == v, "rm_score"]) for v in ("pass", "fail", "n/a") if (verdicts == v).any()]
            ax.hist(
                [p[1] for p in parts],
                bins=bins,
                stacked=True,
                color=[COLORS[p[0]] for p in parts],
                label=[f"{p[0]} ({len(p[1])})" for p in parts],
            )
            ax.legend(fontsize=8, title="verifier", title_fontsize=8, loc="best")
            ax.set_xlabel("RM score")
            ax.set_ylabel("candidates")
            _integer_counts(ax)
        ax.set_title(f"{cap} (n={len(sub)})")
    fig.suptitle("Reward model score per capability")
    return fig


def reward_model_trust(data: RoundData) -> pd.DataFrame | None:
    """How far the round's reward model can be trusted, as rows: held-out pairwise accuracy per pair source
    (prompt-disjoint held-out pairs) and pass-over-fail AUC per capability on this round's candidates
    (selection.json); None when neither is recorded."""
    rows = []
    rm = data.manifest.metrics("reward_model") if data.manifest else {}
    for source, r in (rm.get("heldout_by_source") or {}).items():
        rows.append({"measure": f"held-out accuracy, {source} pairs", "value": r["accuracy"], "pairs": r["pairs"]})
    for cap, r in (data.selection.get("rm_pass_over_fail_auc") or {}).items():
        rows.append({"measure": f"pass-over-fail AUC, {cap}", "value": r["auc"], "pairs": r["pairs"]})
    if rm.get("dropped_too_long"):
        rows.append(
            {"measure": "pairs left out: longer than max_length", "value": rm["dropped_too_long"], "pairs": None}
        )
    return pd.DataFrame(rows) if rows else None


def margin_sweep(data: RoundData) -> pd.DataFrame | None:
    """Reward-model-decided DPO pairs each ``min_margin`` would remove (selection.json), per capability."""
    sweep = (data.selection.get("dpo") or {}).get("margin_sweep")
    if not sweep:
        return None
    rows = [
        {"min_margin": t, "P(chosen better)": round(1 / (1 + math.exp(-float(t))), 3), "removed": r["removed"],
         "of": r["of"], **r.get("removed_by_capability", {})}
        for t, r in sweep.items()
    ]  # fmt: skip
    return pd.DataFrame(rows).fillna(0)


def plot_fluency(data: RoundData) -> Figure | None:
    """Mean log-probability per token of every generated candidate (the fluency signal), split by filter outcome,
    and against the RM score of the scored ones; None when the candidates carry no ``mean_logprob``."""
    df = data.filtered
    if df is None or "mean_logprob" not in df.columns or df["mean_logprob"].isna().all():
        return None
    fig = Figure(figsize=(10, 3.0), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    outcome = df["drop_reason"].fillna("kept").astype(str)
    for label in ["kept", *sorted(set(outcome) - {"kept"})]:
        values = df.loc[outcome == label, "mean_logprob"].dropna()
        if len(values):
            ax.hist(values, bins=20, alpha=0.6, label=f"{label} ({len(values)})")
    ax.set_xlabel("mean log-prob per token")
    ax.set_ylabel("candidates")
    ax.legend(fontsize=7)
    merged = data.scores.merge(df[["candidate_id", "mean_logprob"]], on="candidate_id", how="inner")
    merged = merged.dropna(subset=["mean_logprob", "rm_score"])
    if len(merged) > 2:
        rho = merged["mean_logprob"].rank().corr(merged["rm_score"].rank())
        ax2.scatter(merged["mean_logprob"], merged["rm_score"], s=6, color=COLORS["this"])
        ax2.set_title(f"scored candidates: Spearman {rho:.2f}")
    else:
        _empty(ax2, "too few scored candidates")
    ax2.set_xlabel("mean log-prob per token")
    ax2.set_ylabel("RM score")
    fig.suptitle("Fluency: the generating model's mean log-probability of each reply")
    return fig


def plot_margins(data: RoundData) -> Figure | None:
    """Histogram of DPO pair margins (chosen minus rejected RM score) per capability; None when the round has no
    dpo.parquet."""
    df = data.dpo
    if df is None:
        return None
    kinds = [c for c in ("margin",) if c in df.columns]
    caps = data.capabilities
    fig = Figure(figsize=(4.2 * max(len(caps), 1), 2.6 * max(len(kinds), 1)), layout="constrained")
    axes = fig.subplots(max(len(kinds), 1), max(len(caps), 1), squeeze=False)
    for row, kind in enumerate(kinds):
        for col, cap in enumerate(caps):
            ax = axes[row][col]
            values = df.loc[df["capability"] == cap, kind].dropna()
            if values.empty:
                _empty(ax, "no pairs")
            else:
                ax.hist(values, bins=10, color=COLORS["this"])
                ax.axvline(values.mean(), color="black", linestyle="--", linewidth=1, label=f"mean {values.mean():.2f}")
                ax.legend(fontsize=8)
                ax.set_ylabel("pairs")
                _integer_counts(ax)
            ax.set_xlabel("RM margin")
            ax.set_title(f"{cap}: {_plural(len(values), 'pair')}")
    if not kinds:
        _empty(axes[0][0], "dpo.parquet has no margin column")
    fig.suptitle("DPO pair margin (chosen - rejected) per capability")
    return fig


def plot_pass_rates(data: RoundData, previous: RoundData | None = None) -> Figure:
    """Verifier pass rate per capability, beside the previous round's."""
    table = pass_rates(data, previous)
    fig = Figure(figsize=(6.5, 3.0), layout="constrained")
    ax = fig.subplots()
    caps = [c for c in table.index if table.loc[c, "pass rate"] is not None and not pd.isna(table.loc[c, "pass rate"])]
    if not caps:
        _empty(ax, "no verifiable candidates")
        return fig
    series = [(data.name, "pass rate", COLORS["this"])]
    if "previous round" in table.columns and previous is not None:
        series.insert(0, (previous.name, "previous round", COLORS["previous"]))
    width = 0.8 / len(series)
    for i, (label, col, color) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(caps))]
        ys = [
            float(table.loc[c, col]) if table.loc[c, col] is not None and not pd.isna(table.loc[c, col]) else 0
            for c in caps
        ]
        bars = ax.bar(xs, ys, width=width, color=color, label=label)
        ax.bar_label(bars, labels=[f"{y:.0%}" for y in ys], fontsize=8)
    ax.set_xticks(range(len(caps)), caps)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("passed / verifiable")
    ax.legend(fontsize=8)
    ax.set_title("Verifier pass rate per capability")
    return fig


def plot_lengths(data: RoundData, previous: RoundData | None = None) -> Figure | None:
    """Histogram of response length (tokens) per capability, this round against the previous one; None without
    candidates.parquet."""
    this = _lengths(data)
    if this is None:
        return None
    prev = None if previous is None else _lengths(previous)
    caps = sorted(set(this["capability"]) | (set(prev["capability"]) if prev is not None else set()))
    fig, axes = _grid(len(caps))
    top = int(max(this["num_tokens"].max(), prev["num_tokens"].max() if prev is not None else 0, 1))
    bins = list(range(0, top + max(1, top // 20), max(1, top // 20)))
    for ax, cap in zip(axes, caps, strict=True):
        for rd, df, color in ((previous, prev, COLORS["previous"]), (data, this, COLORS["this"])):
            if df is None:
                continue
            values = df.loc[df["capability"] == cap, "num_tokens"]
            if len(values):
                ax.hist(
                    values, bins=bins, histtype="step", linewidth=1.8, color=color, label=f"{rd.name} (n={len(values)})"
                )
        if "max_tokens" in this.columns and len(this["max_tokens"].dropna()):
            ax.axvline(int(this["max_tokens"].max()), color="black", linestyle=":", linewidth=1, label="max_new_tokens")
        ax.set_xlabel("response tokens")
        ax.set_ylabel("candidates")
        _integer_counts(ax)
        ax.set_title(cap)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("Response length per capability" + (f": {data.name} vs {previous.name}" if prev is not None else ""))
    return fig


def plot_eval(data: RoundData) -> Figure | None:
    """Held-out accuracy per capability across rounds (round 0 = the run's first starting model); None when no
    round has eval.json."""
    table = eval_table(data)
    if table.empty:
        return None
    fig = Figure(figsize=(6.5, 3.0), layout="constrained")
    ax = fig.subplots()
    rounds = list(dict.fromkeys(table["round"]))
    first = table[table["round"] == rounds[0]]
    start_name = first["start model"].iloc[0]
    start_label = f"start\n({Path(start_name).name})" if isinstance(start_name, str) else "start"
    rejected = False
    for cap, sub in table.groupby("capability"):
        by_round = {r["round"]: r for r in sub.to_dict("records")}
        points = []
        if rounds[0] in by_round and _num(by_round[rounds[0]]["start accuracy"]) is not None:
            points.append((start_label, by_round[rounds[0]]["start accuracy"], False))
        for rnd in rounds:
            if rnd in by_round and _num(by_round[rnd]["accuracy"]) is not None:
                points.append((rnd, by_round[rnd]["accuracy"], by_round[rnd]["promotion"] == "not promoted"))
        line = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=cap)[0]
        bad = [p for p in points if p[2]]
        if bad:
            rejected = True
            ax.scatter([p[0] for p in bad], [p[1] for p in bad], marker="X", s=90, color=line.get_color(), zorder=3)
    if rejected:
        ax.scatter([], [], marker="X", color="black", label="not promoted")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Held-out accuracy across rounds")
    return fig


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --- HTML -----------------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1240px;
       padding: 16px 24px; color: #212121; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #e0e0e0; padding-bottom: 4px;
margin-top: 1.8em; } h3 { margin-bottom: 0.3em; }
p.note { color: #616161; font-size: 0.9em; margin-top: 0.2em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #e0e0e0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.promotion { max-width: 420px; } .nowrap { white-space: nowrap; }
img { max-width: 100%; display: block; margin: 8px 0; }
.pass { color: #2e7d32; font-weight: 600; } .fail { color: #c62828; font-weight: 600; }
.na { color: #757575; font-weight: 600; }
.promoted { color: #2e7d32; font-weight: 600; } .not-promoted { color: #c62828; font-weight: 600; }
pre.text { white-space: pre-wrap; word-break: break-word; margin: 0; font-size: 0.85em; max-width: 520px;
           background: #fafafa; padding: 4px; }
table.examples td { max-width: 540px; }
nav a { margin-right: 12px; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  document.body.dataset.rendered = broken.length
    ? "broken " + broken.length + " of " + images.length + " images"
    : "ok " + images.length + " images";
  document.body.dataset.height = String(document.documentElement.scrollHeight);
});
"""

SECTIONS = [
    ("summary", "Summary"),
    ("scores", "Reward scores"),
    ("margins", "DPO pair margins"),
    ("trust", "Reward model and fluency"),
    ("verifier", "Verifier pass rates"),
    ("drops", "Kept and dropped"),
    ("lengths", "Response lengths"),
    ("eval", "Eval across rounds"),
    ("examples", "Best and worst examples"),
]


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, column: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return NO_VALUE
    if isinstance(value, float):
        if any(k in column for k in ("rate", "truncated", "previous round")):
            return f"{value:.1%}"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(df: pd.DataFrame | None, index: bool = True, css: str = "") -> str:
    """An HTML table from a frame, every cell escaped, numbers right-aligned, missing values as —."""
    if df is None or df.empty:
        return '<p class="note">nothing to show</p>'
    frame = df.reset_index() if index and not isinstance(df.index, pd.RangeIndex) else df
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row, strict=True):
            cls = ' class="num"' if _is_num(value) else ""
            cells.append(f"<td{cls}>{_esc(_fmt(value, str(col)))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(fig: Figure | None, alt: str) -> str:
    if fig is None:
        return '<p class="note">no data for this plot</p>'
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _clip(text: Any, limit: int = EXAMPLE_CHARS) -> str:
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def _verdict_html(verdict: str, reason: Any) -> str:
    cls = {"pass": "pass", "fail": "fail"}.get(verdict, "na")
    out = f'<span class="{cls}">{_esc(verdict)}</span>'
    if reason is not None and not (isinstance(reason, float) and math.isnan(reason)) and str(reason):
        out += f"<br>{_esc(reason)}"
    return out


def _examples_html(data: RoundData, k: int) -> str:
    df = examples(data, k)
    if df.empty:
        return '<p class="note">no scored candidates</p>'
    parts = []
    for cap, sub in df.groupby("capability", sort=True):
        rows = []
        for r in sub.itertuples(index=False):
            rows.append(
                "<tr>"
                f'<td class="nowrap">{_esc(r.which)}<br><small>{_esc(r.candidate_id)}</small></td>'
                f'<td><pre class="text">{_esc(_clip(r.prompt))}</pre></td>'
                f'<td><pre class="text">{_esc(_clip(r.response))}</pre></td>'
                f'<td class="num">{_esc(_fmt(r.rm_score))}</td>'
                f'<td class="num">{_esc(_fmt(r.score))}</td>'
                f"<td>{_verdict_html(r.verdict, r.verifier_reason)}</td>"
                "</tr>"
            )
        parts.append(
            f"<h3>{_esc(cap)}</h3>"
            '<table class="examples"><thead><tr><th></th><th>prompt</th><th>response</th><th>RM score</th>'
            "<th>score</th><th>verifier</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
    return "".join(parts)


def _eval_html(data: RoundData) -> str:
    table = eval_table(data)
    if table.empty:
        return '<p class="note">no round of this run has eval.json yet</p>'
    head = "".join(f"<th>{_esc(c)}</th>" for c in EVAL_COLUMNS if c != "reasons")
    body = []
    for rnd, sub in table.groupby("round", sort=False):
        first = sub.iloc[0]
        decision = first["promotion"]
        cls = {"promoted": "promoted", "not promoted": "not-promoted"}.get(decision, "")
        promo = f'<span class="{cls}">{_esc(decision)}</span>'
        if isinstance(first["reasons"], str) and first["reasons"]:
            promo += "<br><small>" + _esc(first["reasons"]) + "</small>"
        span = f' rowspan="{len(sub)}"'
        for i, r in enumerate(sub.to_dict("records")):
            change = _num(r["change"])
            cells = [
                f'<td{span} class="nowrap">{_esc(rnd)}</td><td{span}>{_esc(_fmt(r["start model"]))}</td>'
                if i == 0
                else "",
                f"<td>{_esc(r['capability'])}</td>",
                f'<td class="num">{_esc(_fmt(r["n"]))}</td>',
                f'<td class="num">{_esc(_fmt(r["start accuracy"]))}</td>',
                f'<td class="num">{_esc(_fmt(r["accuracy"]))}</td>',
                f'<td class="num">{_esc(NO_VALUE if change is None else f"{change:+.4g}" if change else "0")}</td>',
                f"<td>{_esc(_fmt(r['gate check']))}</td>",
                f'<td{span} class="promotion">{promo}</td>' if i == 0 else "",
            ]
            body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_report(round_dir: Path | str, examples_per_capability: int = 2) -> str:
    """The report page of a round folder as an HTML string (see :func:`write_report`)."""
    data = load_round(round_dir)
    previous = previous_round(data)
    run = data.dir.parent.name
    title = f"{run} / {data.name}"
    prev_note = f"against {previous.name}" if previous is not None else "(no previous round in this run folder)"
    sections = {
        "summary": _table(summary(data), index=False),
        "scores": _img(plot_scores(data), "reward model score histograms")
        + '<p class="note">Reward-model score of every candidate that passed the filters, stacked by verifier '
        "verdict. The combined score used for ranking subtracts a penalty from every verifier failure.</p>",
        "margins": _img(plot_margins(data), "pair margin histograms")
        + '<p class="note">RM margin: chosen minus rejected reward-model score; P(chosen better) = sigmoid(margin). '
        "<code>selection.min_margin</code> applies to pairs only the RM decides (same verifier tier); the table "
        "shows how many of those each threshold removes.</p>" + _table(margin_sweep(data), index=False),
        "trust": _table(reward_model_trust(data), index=False)
        + '<p class="note">Held-out pairs share no prompt and no response with training pairs. AUC: how often '
        "the RM scores a passing candidate above a failing one of the same prompt (0.5 is chance).</p>"
        + (_img(plot_fluency(data), "fluency") if plot_fluency(data) is not None else ""),
        "verifier": _img(plot_pass_rates(data, previous), "verifier pass rates") + _table(pass_rates(data, previous)),
        "drops": "<h3>Filters (candidates)</h3>"
        + _table(filter_drops(data))
        + (f"<h3>Style flags</h3>{_table(style_flags(data))}" if style_flags(data) is not None else "")
        + "<h3>Selection (selection.json)</h3>"
        + _table(selection_outcomes(data), index=False),
        "lengths": f'<p class="note">Candidates generated in {_esc(data.name)} {_esc(prev_note)}.</p>'
        + _img(plot_lengths(data, previous), "response length histograms")
        + _table(length_table(data, previous)),
        "eval": _img(plot_eval(data), "eval accuracy across rounds")
        + _eval_html(data)
        + '<p class="note">Start model: the checkpoint the round started from and was compared with (the last '
        "promoted model). Gate check and promotion: from the round's promotion.json (— when it has none).</p>",
        "examples": f'<p class="note">Per capability the {examples_per_capability} highest and lowest scored '
        "candidates (combined score).</p>" + _examples_html(data, examples_per_capability),
    }
    nav = "".join(f'<a href="#{key}">{_esc(label)}</a>' for key, label in SECTIONS)
    body = "".join(f'<section id="{key}"><h2>{_esc(label)}</h2>{sections[key]}</section>' for key, label in SECTIONS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>Round report: {_esc(title)}</h1>"
        f'<p class="note">{_esc(data.dir.resolve())}</p><nav>{nav}</nav>{body}'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_report(round_dir: Path) -> Path:
    """Write ``round_dir/report.html`` (self-contained: plots embedded, no external resources) and return its path.

    Raises FileNotFoundError naming ``scores.parquet`` or ``selection.json`` when the round folder lacks it; every
    other file is optional and its section says so when absent.
    """
    round_dir = Path(round_dir)
    page = render_report(round_dir)
    out = round_dir / "report.html"
    fd, tmp = tempfile.mkstemp(prefix=".report.html.", suffix=".tmp", dir=round_dir)
    try:
        with open(fd, "w", encoding="utf-8") as f:
            f.write(page)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


# --- headless Chromium ----------------------------------------------------------------------------------------


class ChromiumNotFound(RuntimeError):
    """No Chromium binary on PATH."""


def chromium_binary() -> str:
    """Path of ``chromium`` (or ``chromium-browser``) on PATH; raises ChromiumNotFound otherwise."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumNotFound(
        "headless check needs Chromium, and neither `chromium` nor `chromium-browser` is on PATH "
        "(Debian/Ubuntu: apt-get install -y chromium)"
    )


def _chromium(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        cmd = [
            chromium_binary(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc


def _body_attribute(dom: str, name: str) -> str | None:
    body = re.search(r"<body\b[^>]*>", dom)
    if not body:
        return None
    m = re.search(rf'\b{re.escape(name)}="([^"]*)"', body.group(0))
    return html.unescape(m.group(1)) if m else None


def check_in_browser(html_path: Path, screenshot: Path | None = None, timeout: float = 120) -> str:
    """Load the page in headless Chromium and return its ``data-rendered`` value ("ok N images", or "broken ..."
    when an image did not decode, or "not rendered" when the load script did not run). With ``screenshot``, also
    save a PNG of the whole page (1280 px wide, as tall as the page up to 16000 px)."""
    url = Path(html_path).resolve().as_uri()
    # The same width as the screenshot, so the page height measured by the load script is the screenshot's.
    dom = _chromium([f"--window-size={SCREENSHOT_WIDTH},900", "--dump-dom", url], timeout).stdout
    rendered = _body_attribute(dom, "data-rendered") or "not rendered"
    if screenshot is not None:
        height = _body_attribute(dom, "data-height")
        height = min(int(height), MAX_SCREENSHOT_HEIGHT) if height and height.isdigit() else 4000
        screenshot = Path(screenshot).resolve()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        _chromium([f"--screenshot={screenshot}", f"--window-size={SCREENSHOT_WIDTH},{height}", url], timeout)
        if not screenshot.exists():
            raise RuntimeError(f"chromium wrote no screenshot to {screenshot}")
    return rendered


def main(argv: list[str] | None = None) -> None:
    """``python -m rounds.report ROUND_DIR [--screenshot out.png]``."""
    parser = argparse.ArgumentParser(prog="python -m rounds.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("round_dir", type=Path, help="a round folder, e.g. runs/default/round-2")
    parser.add_argument("--screenshot", type=Path, help="also check the page in headless Chromium and save a PNG")
    args = parser.parse_args(argv)
    try:
        out = write_report(args.round_dir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(out)
    if args.screenshot is not None:
        try:
            rendered = check_in_browser(out, args.screenshot)
        except ChromiumNotFound as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        print(f"chromium: {rendered}; screenshot {args.screenshot}")
        if not rendered.startswith("ok"):
            sys.exit(1)


if __name__ == "__main__":
    main()
