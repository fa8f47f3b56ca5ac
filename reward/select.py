"""Rejection sampling as pure functions over records: combined scores, SFT rows, DPO pairs, carry-over and the
``selection.json`` report, with a reason for everything dropped.

A scored candidate is a dict with at least ``prompt_id``, ``candidate_id``, ``text``, ``verified`` (True, False, or
None when no verifier applies) and ``rm_score``; ``verifier_reason`` is counted by the report when present. A
verifier failure includes a truncated response (``reward.verifiers.TRUNCATED``). Everything is grouped by
``prompt_id``; nothing is matched by position. Within a prompt, candidates rank by ``score`` (highest first), then
``candidate_id``, so no result depends on input order.

    scored = combine_scores(rows)                     # after the RM: adds score and norm_score
    sft_rows, sft_dropped = select_sft(scored, prompts, cfg.selection)
    pairs, pair_dropped = select_pairs(scored, prompts, cfg.selection, seed=cfg.seed + round_index)
    carried = carry_over_rows([round1_sft, round2_sft], cfg.selection.carry_over_max, exclude=sft_rows)
    report = selection_report(scored, prompts, sft_rows, pairs, sft_dropped, pair_dropped, carried)
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from alignment.config import SelectionConfig

PAIR_STRATEGIES = ("best_vs_worst", "best_vs_random")
NO_CANDIDATES = "no candidate left after filtering"
MARGIN_TOLERANCE = 1e-9
"""A normalised margin within this of ``min_margin`` counts as reaching it (z-scores carry float rounding)."""
HISTOGRAM_BINS = 10


def _failed(r: dict) -> bool:
    return r["verified"] is False


def combine_scores(rows: list[dict]) -> list[dict]:
    """Add ``score`` and ``norm_score`` to every candidate.

    ``score``: the RM score, minus a penalty for failing the verifier that is larger than the whole RM score range
    ((max - min) + 1 over all rows), so any failing candidate ranks below any passing (or unverifiable) one and the
    RM orders the rest.

    ``norm_score``: the z-score of ``rm_score`` among its prompt's candidates ((x - mean) / population std; 0 for a
    prompt with one candidate or equal scores), minus, for a verifier failure, that prompt's z range + 1. Failures
    again rank below passes, and a pass beats a failure by more than 1 normalised unit. DPO margins are taken on it,
    so ``min_margin`` means the same for every prompt whatever the RM's scale.
    """
    if not rows:
        return []
    lo = min(r["rm_score"] for r in rows)
    hi = max(r["rm_score"] for r in rows)
    penalty = (hi - lo) + 1.0
    z_by_id: dict[tuple[str, str], float] = {}
    for pid, group in _group(rows).items():
        xs = [r["rm_score"] for r in group]
        mean = math.fsum(xs) / len(xs)  # fsum: exactly rounded, so the input order cannot change a bit
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / len(xs))
        zs = [(x - mean) / std if std > 0 else 0.0 for x in xs]
        norm_penalty = (max(zs) - min(zs)) + 1.0
        for r, z in zip(group, zs, strict=True):
            z_by_id[(pid, r["candidate_id"])] = z - (norm_penalty if _failed(r) else 0.0)
    return [
        {
            **r,
            "score": r["rm_score"] - (penalty if _failed(r) else 0.0),
            "norm_score": z_by_id[(r["prompt_id"], r["candidate_id"])],
        }
        for r in rows
    ]


def normalise_text(text: str) -> str:
    """Whitespace-normalised text: two answers are the same when these are equal."""
    return " ".join(text.split())


def _group(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["prompt_id"]].append(r)
    return groups


def _by_prompt(rows: list[dict]) -> dict[str, list[dict]]:
    """prompt_id -> its candidates, highest score first; candidate_id breaks ties."""
    return {pid: sorted(g, key=lambda r: (-r["score"], r["candidate_id"])) for pid, g in sorted(_group(rows).items())}


def select_sft(scored: list[dict], prompts: dict[str, dict], cfg: SelectionConfig) -> tuple[list[dict], dict[str, str]]:
    """Best-of-K SFT rows: per prompt, up to ``cfg.sft_per_prompt`` distinct passing answers, best first.

    A prompt is dropped when its best candidate failed the verifier ("no candidate passed the verifier") or its best
    passing candidate's ``rm_score`` is below ``cfg.sft_min_score`` ("best below sft_min_score"). Further rows of a
    prompt must also pass (verified True or None), reach the floor, and differ from the rows already taken (after
    whitespace normalisation).

    Returns (rows, dropped) where dropped maps prompt_id -> reason. A row is {prompt_id, candidate_id, capability,
    messages, score, rm_score, norm_score, rank} where ``messages`` is the prompt followed by the assistant turn and
    ``rank`` is 0 for the prompt's best row.
    """
    floor = cfg.sft_min_score
    rows: list[dict] = []
    dropped: dict[str, str] = {}
    for pid, cands in _by_prompt(scored).items():
        if _failed(cands[0]):
            dropped[pid] = "no candidate passed the verifier"
            continue
        if floor is not None and cands[0]["rm_score"] < floor:
            dropped[pid] = "best below sft_min_score"
            continue
        prompt, seen = prompts[pid], set()
        for c in cands:
            if len(seen) >= cfg.sft_per_prompt or _failed(c) or (floor is not None and c["rm_score"] < floor):
                break  # ranked by score: every later candidate is lower or failed too
            key = normalise_text(c["text"])
            if key in seen:
                continue
            seen.add(key)
            rows.append(
                {
                    "prompt_id": pid,
                    "candidate_id": c["candidate_id"],
                    "capability": prompt["capability"],
                    "messages": [*prompt["messages"], {"role": "assistant", "content": c["text"]}],
                    "score": c["score"],
                    "rm_score": c["rm_score"],
                    "norm_score": c["norm_score"],
                    "rank": len(seen) - 1,
                }
            )
    return rows, dropped


def _rng(seed: int, prompt_id: str) -> random.Random:
    """A generator seeded by a stable hash of (seed, prompt_id): the same draw in every process and input order."""
    digest = hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def select_pairs(
    scored: list[dict], prompts: dict[str, dict], cfg: SelectionConfig, seed: int = 0
) -> tuple[list[dict], dict[str, str]]:
    """One DPO pair per prompt: the best candidate (chosen) vs a rejected one picked by ``cfg.pair_strategy``.

    best_vs_worst: the lowest-ranked candidate whose text differs from the best (after whitespace normalisation).
    best_vs_random: drawn uniformly, seeded by (``seed``, prompt_id), among the candidates whose text differs from
    the best and whose score is lower. Dropped, in this order of checks: "fewer than 2 candidates", "no candidate
    passed the verifier" (the best failed), "chosen and rejected identical" (every other text equals the best),
    "tie" (no other text scores lower), "margin below min_margin" (``norm_margin`` < ``cfg.min_margin``, with
    :data:`MARGIN_TOLERANCE`; a margin exactly at the minimum is kept).

    Returns (pairs, dropped) where dropped maps prompt_id -> reason. A pair is {prompt_id, capability, prompt
    (messages), chosen, rejected, chosen_id, rejected_id, margin, norm_margin}: ``margin`` is the difference of
    ``score``, ``norm_margin`` of ``norm_score``. Both sides answer exactly the same prompt.
    """
    if cfg.pair_strategy not in PAIR_STRATEGIES:
        raise ValueError(f"unknown pair_strategy {cfg.pair_strategy!r} (supported: {', '.join(PAIR_STRATEGIES)})")
    pairs: list[dict] = []
    dropped: dict[str, str] = {}
    for pid, cands in _by_prompt(scored).items():
        best = cands[0]
        if len(cands) < 2:
            dropped[pid] = "fewer than 2 candidates"
            continue
        if _failed(best):
            dropped[pid] = "no candidate passed the verifier"
            continue
        different = [c for c in cands[1:] if normalise_text(c["text"]) != normalise_text(best["text"])]
        lower = [c for c in different if c["score"] < best["score"]]
        if not different:
            dropped[pid] = "chosen and rejected identical"
            continue
        if not lower:
            dropped[pid] = "tie"
            continue
        rejected = lower[-1] if cfg.pair_strategy == "best_vs_worst" else _rng(seed, pid).choice(lower)
        norm_margin = best["norm_score"] - rejected["norm_score"]
        if norm_margin < cfg.min_margin - MARGIN_TOLERANCE:
            dropped[pid] = "margin below min_margin"
            continue
        prompt = prompts[pid]
        pairs.append(
            {
                "prompt_id": pid,
                "capability": prompt["capability"],
                "prompt": prompt["messages"],
                "chosen": best["text"],
                "rejected": rejected["text"],
                "chosen_id": best["candidate_id"],
                "rejected_id": rejected["candidate_id"],
                "margin": best["score"] - rejected["score"],
                "norm_margin": norm_margin,
            }
        )
    return pairs, dropped


def _assistant_text(row: dict) -> str:
    return normalise_text(row["messages"][-1]["content"])


def carry_over_rows(earlier: list[list[dict]], cap: int, exclude: list[dict] | None = None) -> list[dict]:
    """SFT rows of earlier rounds kept in this round's SFT set (Llama 2's fix for regressions), at most ``cap``.

    ``earlier[i]`` holds round i+1's SFT rows (oldest round first). Rows are ranked by ``score`` (highest first),
    the newest round first on ties, then prompt_id and candidate_id; a row repeating the prompt_id and normalised
    assistant text of a higher-ranked row, or of a row in ``exclude`` (this round's own SFT rows), is skipped.
    Every kept row is a copy tagged ``carried_from`` (the 1-based round it was selected in); a row that was itself
    carried keeps its original tag. Returns [] when ``cap`` <= 0.
    """
    if cap <= 0:
        return []
    candidates = []
    for i, rows in enumerate(earlier):
        for r in rows:
            origin = r.get("carried_from") or i + 1
            candidates.append((-r["score"], -(i + 1), r["prompt_id"], r["candidate_id"], origin, r))
    candidates.sort(key=lambda t: t[:4])
    seen = {(r["prompt_id"], _assistant_text(r)) for r in exclude or []}
    kept: list[dict] = []
    for *_, origin, r in candidates:
        key = (r["prompt_id"], _assistant_text(r))
        if key in seen:
            continue
        seen.add(key)
        kept.append({**r, "carried_from": origin})
        if len(kept) == cap:
            break
    return kept


def histogram(values: list[float], bins: int = HISTOGRAM_BINS) -> dict[str, list]:
    """``numpy.histogram`` with ``bins`` equal bins over the values' range, as {"edges": [...], "counts": [...]}
    (len(edges) == len(counts) + 1; the last bin includes its right edge). Empty input gives empty lists."""
    if not values:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins)
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


def _reason_kind(reason: str) -> str:
    """A verifier reason with its numbers replaced by N, so "math: expected 12, got 7" counts as one kind."""
    return re.sub(r"-?\d+(?:[,./]\d+)*", "N", reason)


def _count_by_capability(items: Any, prompts: dict[str, dict]) -> dict[str, int]:
    return dict(sorted(Counter(prompts[pid]["capability"] for pid in items).items()))


def _dropped_report(dropped: dict[str, str], prompts: dict[str, dict]) -> dict[str, Any]:
    by_cap: dict[str, Counter] = defaultdict(Counter)
    for pid, reason in dropped.items():
        by_cap[prompts[pid]["capability"]][reason] += 1
    return {
        "dropped": dict(sorted(Counter(dropped.values()).items())),
        "dropped_by_capability": {cap: dict(sorted(c.items())) for cap, c in sorted(by_cap.items())},
    }


def selection_report(
    scored: list[dict],
    prompts: dict[str, dict],
    sft_rows: list[dict],
    pairs: list[dict],
    sft_dropped: dict[str, str],
    pair_dropped: dict[str, str],
    carried: list[dict] | None = None,
) -> dict[str, Any]:
    """The round's ``selection.json``: counts by capability and reason, verifier pass rates, histograms.

    ``prompts`` is every prompt of the round; one with no scored candidate is counted as dropped from both SFT and
    DPO with reason :data:`NO_CANDIDATES`. Pass rates are passed / verified candidates per capability (unverifiable
    candidates, verified None, are left out; a capability with none verified has rate None). Histograms
    (:func:`histogram`) cover rm_score and norm_score of all candidates and the margin and norm_margin of the kept
    pairs. Plain JSON types only, keys sorted: the same inputs give the same file.
    """
    carried = carried or []
    missing = {pid: NO_CANDIDATES for pid in prompts if pid not in {r["prompt_id"] for r in scored}}
    sft_dropped, pair_dropped = {**sft_dropped, **missing}, {**pair_dropped, **missing}
    verified: dict[str, Counter] = defaultdict(Counter)
    failures: dict[str, Counter] = defaultdict(Counter)
    for r in scored:
        cap = prompts[r["prompt_id"]]["capability"]
        if r["verified"] is None:
            verified[cap]["unverifiable"] += 1
            continue
        verified[cap]["verified"] += 1
        verified[cap]["passed"] += bool(r["verified"])
        if _failed(r):
            failures[cap][_reason_kind(r.get("verifier_reason") or "unknown")] += 1
    verifier = {
        cap: {
            "verified": c["verified"],
            "passed": c["passed"],
            "unverifiable": c["unverifiable"],
            "pass_rate": round(c["passed"] / c["verified"], 4) if c["verified"] else None,
            "failures": dict(sorted(failures[cap].items())),
        }
        for cap, c in sorted(verified.items())
    }
    return {
        "prompts": len(prompts),
        "prompts_by_capability": _count_by_capability(prompts, prompts),
        "candidates": len(scored),
        "candidates_by_capability": _count_by_capability([r["prompt_id"] for r in scored], prompts),
        "verifier": verifier,
        "pass_rate_by_capability": {cap: v["pass_rate"] for cap, v in verifier.items()},
        "sft": {
            "kept": len(sft_rows) + len(carried),
            "new": len(sft_rows),
            "new_by_capability": _count_by_capability([r["prompt_id"] for r in sft_rows], prompts),
            "prompts_kept": len({r["prompt_id"] for r in sft_rows}),
            "carried_over": len(carried),
            "carried_by_round": {str(k): n for k, n in sorted(Counter(r["carried_from"] for r in carried).items())},
            **_dropped_report(sft_dropped, prompts),
        },
        "dpo": {
            "kept": len(pairs),
            "kept_by_capability": _count_by_capability([p["prompt_id"] for p in pairs], prompts),
            "mean_margin": round(sum(p["margin"] for p in pairs) / len(pairs), 4) if pairs else None,
            "mean_norm_margin": round(sum(p["norm_margin"] for p in pairs) / len(pairs), 4) if pairs else None,
            **_dropped_report(pair_dropped, prompts),
        },
        "histograms": {
            "rm_score": histogram([r["rm_score"] for r in scored]),
            "norm_score": histogram([r["norm_score"] for r in scored]),
            "pair_margin": histogram([p["margin"] for p in pairs]),
            "pair_norm_margin": histogram([p["norm_margin"] for p in pairs]),
        },
    }
