"""The report's plots: each ``plot_*`` takes :class:`rounds.report.data.RoundData` and returns a matplotlib figure
(Agg, no display); :func:`figure_png` renders one for embedding."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from rounds.report.data import RoundData, _lengths, _num, _verdict, eval_table, pass_rates

COLORS = {"pass": "#2e7d32", "fail": "#c62828", "n/a": "#757575", "this": "#1565c0", "previous": "#ef6c00"}


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
    scores = data.scores.drop(columns="mean_logprob", errors="ignore")  # newer rounds carry it there too
    merged = scores.merge(df[["candidate_id", "mean_logprob"]], on="candidate_id", how="inner")
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
            points.append((start_label, by_round[rounds[0]]["start accuracy"], False, by_round[rounds[0]]["n"]))
        for rnd in rounds:
            if rnd in by_round and _num(by_round[rnd]["accuracy"]) is not None:
                r = by_round[rnd]
                points.append((rnd, r["accuracy"], r["promotion"] == "not promoted", r["n"]))
        # 95% interval of each accuracy (normal approximation): how far noise alone moves a suite of n items
        errors = [1.96 * math.sqrt(p[1] * (1 - p[1]) / p[3]) if _num(p[3]) else 0.0 for p in points]
        line = ax.errorbar(
            [p[0] for p in points], [p[1] for p in points], yerr=errors, marker="o", capsize=3, label=cap
        ).lines[0]
        bad = [p for p in points if p[2]]
        if bad:
            rejected = True
            ax.scatter([p[0] for p in bad], [p[1] for p in bad], marker="X", s=90, color=line.get_color(), zorder=3)
    if rejected:
        ax.scatter([], [], marker="X", color="black", label="not promoted")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Held-out accuracy across rounds (95% intervals)")
    return fig


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --- HTML -----------------------------------------------------------------------------------------------------
