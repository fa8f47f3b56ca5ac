"""Rejection sampling as pure functions over records: combined scores, SFT rows, DPO pairs, carry-over and the
``selection.json`` report, with a reason for everything dropped.

A scored candidate is a dict with at least ``prompt_id``, ``candidate_id``, ``text``, ``verified`` (True, False, or
None when no verifier applies) and ``rm_score``; ``verifier_reason`` is counted by the report and
``verifier_flags`` (``off-topic``) ranks a pass lower when present. A verifier failure includes a truncated response
(``reward.verifiers.TRUNCATED``). Everything is grouped by ``prompt_id``; nothing is matched by position. Within a
prompt, candidates rank by ``score`` (highest first), then by candidate number (``p#2`` before ``p#10``), so no
result depends on input order; with ``selection.length_tiebreak``, the RM's near-ties (within ``min_margin`` of the
prompt's best, same verifier tier) go shortest first (:func:`rank_candidates`). With ``selection.rank_verified_by:
likelihood`` (the default), a prompt with a verifier ranks within each tier by ``mean_logprob`` (the generating model's
mean per-token log-prob) instead of the RM score, the likeliest first; ``least_likely``, the least likely first.

Margins are raw reward-model score differences: under Bradley-Terry, a difference d means the RM puts the chosen
answer above the rejected one with probability sigmoid(d), whatever the prompt. A pair the verifier decides (a pass
over a failure, or with ``selection.partial_credit`` a failure that met more checks over one that met fewer) needs no
RM margin; every other pair (chat, an on-topic pass over an off-topic one, whose flag is a
heuristic, or two passes when the RM ranks verified prompts) is kept when its RM margin reaches
``selection.min_margin``.

    scored = combine_scores(rows)                     # after the RM: adds tier, score and rm_percentile
    sft_rows, sft_dropped = select_sft(scored, prompts, cfg.selection)
    pairs, pair_dropped = select_pairs(scored, prompts, cfg.selection, seed=cfg.seed + round_index)
    carried = carry_over_rows([round1_sft, round2_sft], cfg.selection.carry_over_max, exclude=sft_rows)
    report = selection_report(scored, prompts, sft_rows, pairs, sft_dropped, pair_dropped, carried)
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from alignment.config import SelectionConfig
from alignment.records import candidate_order

PAIR_STRATEGIES = ("best_vs_worst", "best_vs_random")
LIKELIHOOD_RANKINGS = ("likelihood", "least_likely")
"""``selection.rank_verified_by`` values that rank a verified prompt's tiers by the generating model's log-prob."""
NO_CANDIDATES = "no candidate left after filtering"
MARGIN_TOLERANCE = 1e-9
"""A margin within this of ``min_margin`` counts as reaching it (float rounding)."""
HISTOGRAM_BINS = 10
MARGIN_SWEEP = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
"""RM margins at which ``selection.json`` reports how many reward-model-decided pairs each threshold would remove."""
TIER_PASS, TIER_FLAGGED, TIER_FAIL = 2, 1, 0
"""Verifier tiers: a pass (or no verifier) over a flagged pass (off-topic) over a failure."""


def _failed(r: dict) -> bool:
    return r["verified"] is False


def tier(r: dict) -> int:
    """A candidate's verifier tier: :data:`TIER_FAIL` when it failed, :data:`TIER_FLAGGED` when it passed with a flag
    (off-topic), else :data:`TIER_PASS` (passed, or no verifier applies)."""
    if _failed(r):
        return TIER_FAIL
    return TIER_FLAGGED if list(r.get("verifier_flags") or []) else TIER_PASS


def combine_scores(rows: list[dict]) -> list[dict]:
    """Add ``tier``, ``score`` and ``rm_percentile`` to every candidate.

    ``score``: the RM score, minus one penalty per tier below :data:`TIER_PASS`, where the penalty is larger than the
    whole RM score range ((max - min) + 1 over all rows): any failure ranks below any flagged pass, which ranks below
    any pass, and the RM orders each tier.

    ``rm_percentile``: the share of the round's candidates whose RM score is at most this one's (ties count in full):
    where the candidate stands in its own round, a quantity that compares across rounds whose reward models differ
    (carry-over ranks by it).
    """
    if not rows:
        return []
    scores = sorted(r["rm_score"] for r in rows)
    lo, hi = scores[0], scores[-1]
    penalty = (hi - lo) + 1.0
    n = len(scores)
    return [
        {
            **r,
            "tier": tier(r),
            "score": r["rm_score"] - (TIER_PASS - tier(r)) * penalty,
            "rm_percentile": round(bisect.bisect_right(scores, r["rm_score"]) / n, 6),
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


def word_count(text: str) -> int:
    """The length :data:`SelectionConfig.length_tiebreak` compares: whitespace-separated words."""
    return len(text.split())


def rank_candidates(
    cands: list[dict],
    length_tiebreak: bool = False,
    margin: float = 0.0,
    by: str = "reward_model",
    partial: bool = False,
) -> list[dict]:
    """One prompt's candidates, best first: highest score (verifier tier, then RM score), then the candidate number.

    ``by="likelihood"`` (``selection.rank_verified_by``), for a prompt with a verifier (some ``verified`` is not None):
    verifier tier first, then the highest ``mean_logprob`` (the generating model's mean per-token log-prob), then the
    candidate number; a candidate without ``mean_logprob`` is an error. ``by="least_likely"``: the same with the
    lowest ``mean_logprob`` first. A prompt without a verifier ranks by score.

    With ``length_tiebreak`` (RM ranking only), the candidates of the best one's tier whose score is within ``margin``
    of the best (RM near-ties) move to the front, the fewest words first (then score, then candidate number); the
    rest keep their order behind them.

    With ``partial`` (``selection.partial_credit``), a verified prompt's candidates rank by tier, then by
    :func:`credit` (the share of checks met: it orders failures), then as above."""
    share = credit if partial and _verified_prompt(cands) else (lambda r: 1.0)
    if by in LIKELIHOOD_RANKINGS and _verified_prompt(cands):
        sign = -1.0 if by == "likelihood" else 1.0  # least_likely: the lowest mean log-prob first
        return sorted(
            cands, key=lambda r: (-r["tier"], -share(r), sign * _logprob(r), candidate_order(r["candidate_id"]))
        )
    ranked = sorted(cands, key=lambda r: (-r["tier"], -share(r), -r["score"], candidate_order(r["candidate_id"])))
    if not length_tiebreak or not ranked:
        return ranked
    top = ranked[0]
    near = [
        c
        for c in ranked
        if c["tier"] == top["tier"]
        and share(c) == share(top)
        and c["score"] >= top["score"] - margin - MARGIN_TOLERANCE
    ]
    rest = ranked[len(near) :]  # the near-ties are a prefix of the score order
    near.sort(key=lambda r: (word_count(r["text"]), -r["score"], candidate_order(r["candidate_id"])))
    return near + rest


def credit(r: dict) -> float:
    """A candidate's share of its checks met (``verifier_credit``, :func:`reward.verifiers.partial_credit`); records
    without it (written before it existed) count 1.0 for a pass or no verifier, 0.0 for a failure."""
    value = r.get("verifier_credit")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0.0 if _failed(r) else 1.0
    return float(value)


def _verified_prompt(cands: list[dict]) -> bool:
    """Whether a verifier applies to this prompt's candidates (math, instruction; not chat)."""
    return any(c["verified"] is not None for c in cands)


def _likeliest(r: dict) -> tuple:
    """Sort key: the highest ``mean_logprob`` first, then the candidate number."""
    return (-_logprob(r), candidate_order(r["candidate_id"]))


def _logprob(r: dict) -> float:
    value = r.get("mean_logprob")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(
            f"candidate {r['candidate_id']} has no mean_logprob: a likelihood ranking (selection.rank_verified_by) "
            "needs the generation stage's log-probs (regenerate this round, or set selection.rank_verified_by="
            "reward_model)"
        )
    return float(value)


def _by_prompt(rows: list[dict], cfg: SelectionConfig) -> dict[str, list[dict]]:
    """prompt_id -> its candidates ranked by :func:`rank_candidates` (``cfg``: what ranks verified prompts, the length
    tie-break and its margin)."""
    return {
        pid: rank_candidates(
            g, cfg.length_tiebreak, cfg.min_margin, by=cfg.rank_verified_by, partial=cfg.partial_credit
        )
        for pid, g in sorted(_group(rows).items())
    }


def select_sft(scored: list[dict], prompts: dict[str, dict], cfg: SelectionConfig) -> tuple[list[dict], dict[str, str]]:
    """Best-of-K SFT rows: per prompt, up to ``cfg.sft_per_prompt`` distinct passing answers, best first.

    A prompt is dropped when its best candidate failed the verifier ("no candidate passed the verifier"), passed
    only with a flag ("best pass is off-topic": it does not answer what was asked), or its ``rm_score`` is below
    ``cfg.sft_min_score`` ("best below sft_min_score"). Further rows of a prompt must also be unflagged passes (or
    have no verifier), reach the floor, and differ from the rows already taken (after whitespace normalisation).

    Returns (rows, dropped) where dropped maps prompt_id -> reason. A row is {prompt_id, candidate_id, capability,
    messages, score, rm_score, rm_percentile, rank} where ``messages`` is the prompt followed by the assistant turn
    and ``rank`` is 0 for the prompt's best row.
    """
    floor = cfg.sft_min_score
    rows: list[dict] = []
    dropped: dict[str, str] = {}
    for pid, cands in _by_prompt(scored, cfg).items():
        if _failed(cands[0]):
            dropped[pid] = "no candidate passed the verifier"
            continue
        if cands[0]["tier"] < TIER_PASS:
            dropped[pid] = "best pass is off-topic"
            continue
        if floor is not None and max(c["rm_score"] for c in cands if c["tier"] == TIER_PASS) < floor:
            dropped[pid] = "best below sft_min_score"
            continue
        prompt, seen = prompts[pid], set()
        for c in cands:
            if len(seen) >= cfg.sft_per_prompt or c["tier"] < TIER_PASS:
                break  # ranked by tier first: every later candidate is flagged or failed too
            if floor is not None and c["rm_score"] < floor:
                continue  # a short near-tie under the floor (length_tiebreak) may precede one above it
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
                    "rm_percentile": c["rm_percentile"],
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
    the best and whose score is lower. With ``cfg.rank_verified_by`` "likelihood" or "least_likely", a prompt with a
    verifier compares tiers only: best_vs_worst rejects the most likely candidate of the lowest tier present (with
    either direction: only the chosen side turns round), best_vs_random draws among
    the lower tiers, and a prompt whose other texts all share the best one's tier is dropped as "no verifier
    contrast" (instead of "tie"). With ``cfg.partial_credit``, a verified prompt ranks its failures by the share of
    checks met (:func:`credit`): best_vs_worst rejects the failure that met the least, and a prompt where nothing
    passed pairs its best failure over one that met less (``decided_by`` "partial credit"; dropped as below when every
    failure met as much). Dropped, in this order of checks: "fewer than 2 candidates", "no candidate
    passed the verifier" (the best failed), "best pass is off-topic", "chosen and rejected identical" (every other
    text equals the best), "tie" (no other text scores lower), "RM margin below min_margin" (a pair the reward model
    alone decides (anything but a pass over a failure or a partial-credit pair), whose RM score difference is below ``cfg.min_margin``,
    with :data:`MARGIN_TOLERANCE`; a margin exactly at the minimum is kept).

    Returns (pairs, dropped) where dropped maps prompt_id -> reason. A pair is {prompt_id, capability, prompt
    (messages), chosen, rejected, chosen_id, rejected_id, margin, p_chosen, decided_by}: ``margin`` is the RM score
    difference, ``p_chosen`` = sigmoid(margin) the RM's probability that chosen is better, ``decided_by``
    "verifier" (a pass over a failure), "partial credit" (two failures) or "reward model" (anything else). Both sides answer exactly the same prompt.
    """
    if cfg.pair_strategy not in PAIR_STRATEGIES:
        raise ValueError(f"unknown pair_strategy {cfg.pair_strategy!r} (supported: {', '.join(PAIR_STRATEGIES)})")
    pairs: list[dict] = []
    dropped: dict[str, str] = {}
    for pid, cands in _by_prompt(scored, cfg).items():
        best = cands[0]
        if len(cands) < 2:
            dropped[pid] = "fewer than 2 candidates"
            continue
        different = [c for c in cands[1:] if normalise_text(c["text"]) != normalise_text(best["text"])]
        partial = cfg.partial_credit and _verified_prompt(cands)
        share = credit if partial else (lambda r: 1.0)
        if _failed(best):
            # nothing passed: with partial credit, the failure that met the most checks over one that met fewer
            below = [c for c in different if credit(c) < credit(best)] if partial else []
            if not below:
                dropped[pid] = "no candidate passed the verifier"
                continue
            least = min(credit(c) for c in below)
            # the likeliest of those that met the least (likelihood rankings), the lowest RM score (reward_model:
            # `below` keeps the score order)
            worst = [c for c in below if credit(c) == least]
            worst_one = min(worst, key=_likeliest) if cfg.rank_verified_by in LIKELIHOOD_RANKINGS else worst[-1]
            rejected = worst_one if cfg.pair_strategy == "best_vs_worst" else _rng(seed, pid).choice(below)
            pairs.append(_pair(pid, prompts[pid], best, rejected, "partial credit"))
            continue
        if best["tier"] < TIER_PASS:
            dropped[pid] = "best pass is off-topic"
            continue
        if not different:
            dropped[pid] = "chosen and rejected identical"
            continue
        if cfg.rank_verified_by in LIKELIHOOD_RANKINGS and _verified_prompt(cands):
            # Ranked by tier, then likelihood: the rejected side comes from the lowest tier present, the most likely
            # of it (best_vs_worst, with either direction of the ranking: the failure the model is nearest to giving),
            # or drawn among the lower tiers (best_vs_random). Two passes are not compared: the RM ranks them at chance.
            lower = [c for c in different if c["tier"] < best["tier"]]
            if not lower:
                dropped[pid] = "no verifier contrast"
                continue
            worst_key = min((c["tier"], share(c)) for c in lower)
            worst = min((c for c in lower if (c["tier"], share(c)) == worst_key), key=_likeliest)
            rejected = worst if cfg.pair_strategy == "best_vs_worst" else _rng(seed, pid).choice(lower)
        else:
            lower = [c for c in different if c["score"] < best["score"]]
            if not lower:
                dropped[pid] = "tie"
                continue
            # By score, whatever the tie-break did to the order: the worst is the lowest score (the later candidate on
            # ties), and best_vs_random draws from the same list with or without the tie-break.
            lower.sort(key=lambda r: (-r["tier"], -share(r), -r["score"], candidate_order(r["candidate_id"])))
            rejected = lower[-1] if cfg.pair_strategy == "best_vs_worst" else _rng(seed, pid).choice(lower)
        margin = best["rm_score"] - rejected["rm_score"]
        # Only a pass over a failure is the verifier's call; an on-topic pass over an off-topic one rests on a
        # heuristic flag, so the RM must agree by the margin too.
        decided_by = "verifier" if rejected["tier"] == TIER_FAIL < best["tier"] else "reward model"
        if decided_by == "reward model" and margin < cfg.min_margin - MARGIN_TOLERANCE:
            dropped[pid] = "RM margin below min_margin"
            continue
        pairs.append(_pair(pid, prompts[pid], best, rejected, decided_by))
    return pairs, dropped


def _sides(chosen: dict, rejected: dict) -> dict:
    """A pair's two candidates: texts, ids, the RM margin and the RM's probability that chosen is better."""
    margin = chosen["rm_score"] - rejected["rm_score"]
    return {
        "chosen": chosen["text"],
        "rejected": rejected["text"],
        "chosen_id": chosen["candidate_id"],
        "rejected_id": rejected["candidate_id"],
        "margin": margin,
        "p_chosen": 1.0 / (1.0 + math.exp(-margin)),
    }


def _pair(pid: str, prompt: dict, chosen: dict, rejected: dict, decided_by: str) -> dict:
    return {
        "prompt_id": pid,
        "capability": prompt["capability"],
        "prompt": prompt["messages"],
        **_sides(chosen, rejected),
        "decided_by": decided_by,
    }


def control_seed(cfg: SelectionConfig, run_seed: int, round_index: int) -> int:
    """The seed of round ``round_index``'s control draws (:func:`randomize_selection`): ``cfg.random_seed`` + the round
    when set, else the run's seed + the round (what every seeded draw of the select stage uses)."""
    return (run_seed if cfg.random_seed is None else cfg.random_seed) + round_index


def randomize_selection(
    scored: list[dict], sft_rows: list[dict], pairs: list[dict], seed: int
) -> tuple[list[dict], list[dict]]:
    """The control arm (``selection.strategy: random``): rejection sampling's counts, random picks.

    The same prompts keep the same number of SFT rows and DPO pairs as :func:`select_sft` and :func:`select_pairs`
    gave them, but which candidates is drawn at random (seeded by ``seed`` and prompt_id) among the eligible ones,
    with no reward-model score: SFT rows among the prompt's passing candidates (any candidate where no verifier
    applies; off-topic passes excluded), distinct texts; a pair's chosen side among those too (among the failures for
    a partial-credit pair, whose share of checks met is ranking the control does not have), its rejected side among
    the candidates of rejection sampling's rejected side's verifier tier (a failure for a pass-over-fail pair) whose
    text differs from the chosen one. What this arm lacks against rejection sampling is exactly the ranking.
    ``margin`` stays the RM score difference of the drawn pair, for the record.
    """
    by_prompt = {pid: sorted(g, key=lambda r: candidate_order(r["candidate_id"])) for pid, g in _group(scored).items()}

    def distinct(cands: list[dict]) -> list[dict]:
        seen: dict[str, dict] = {}
        for c in cands:
            seen.setdefault(normalise_text(c["text"]), c)
        return list(seen.values())

    new_sft = []
    counts = Counter(r["prompt_id"] for r in sft_rows)
    template = {r["prompt_id"]: r for r in sft_rows}
    for pid, n in sorted(counts.items()):
        eligible = distinct([c for c in by_prompt[pid] if c["tier"] == TIER_PASS])
        picks = _rng(seed, f"sft:{pid}").sample(eligible, min(n, len(eligible)))
        prompt_messages = template[pid]["messages"][:-1]
        for rank, c in enumerate(picks):
            new_sft.append(
                {
                    **template[pid],
                    "candidate_id": c["candidate_id"],
                    "messages": [*prompt_messages, {"role": "assistant", "content": c["text"]}],
                    "score": c["score"],
                    "rm_score": c["rm_score"],
                    "rm_percentile": c["rm_percentile"],
                    "rank": rank,
                }
            )
    new_pairs = []
    for pair in pairs:
        pid = pair["prompt_id"]
        rng = _rng(seed, f"dpo:{pid}")
        cands = by_prompt[pid]
        # the chosen side from rejection sampling's chosen tier: a pass, or a failure for a partial-credit pair (whose
        # share of checks met the control does not see)
        chosen_tier = next(c["tier"] for c in cands if c["candidate_id"] == pair["chosen_id"])
        chosen = rng.choice([c for c in cands if c["tier"] == chosen_tier])
        # the rejected side from rejection sampling's rejected tier: a failure for a verifier's pair, an off-topic pass
        # against an on-topic one, any other text where no verifier applies (every candidate is in one tier)
        rejected_tier = next(c["tier"] for c in cands if c["candidate_id"] == pair["rejected_id"])
        pool = [
            c
            for c in cands
            if c["tier"] == rejected_tier and normalise_text(c["text"]) != normalise_text(chosen["text"])
        ]
        if not pool:  # every other text equals the drawn chosen one: keep rejection sampling's pair
            new_pairs.append(pair)
            continue
        new_pairs.append({**pair, **_sides(chosen, rng.choice(pool))})
    return new_sft, new_pairs


def margin_sweep(scored: list[dict], prompts: dict[str, dict], cfg: SelectionConfig, seed: int = 0) -> dict[str, dict]:
    """For each threshold of :data:`MARGIN_SWEEP` (and ``cfg.min_margin``): how many reward-model-decided pairs it
    removes, per capability: what the margin setting costs, and which capabilities rely on the RM alone. ``seed`` is
    the one :func:`select_pairs` got, so ``best_vs_random`` draws the same rejected sides."""
    import dataclasses

    # The sweep keeps rank_verified_by but not length_tiebreak: with it the chosen side can be a shorter near-tie, so
    # its counts describe score-order pairs, not exactly the pairs select_pairs kept.
    plain = dataclasses.replace(cfg, min_margin=float("-inf"), length_tiebreak=False)
    candidates, _ = select_pairs(scored, prompts, plain, seed=seed)
    rm_only = [p for p in candidates if p["decided_by"] == "reward model"]
    out = {}
    for t in sorted({*MARGIN_SWEEP, cfg.min_margin}):
        removed = [p for p in rm_only if p["margin"] < t - MARGIN_TOLERANCE]
        out[f"{t:g}"] = {
            "removed": len(removed),
            "of": len(rm_only),
            "removed_by_capability": dict(sorted(Counter(p["capability"] for p in removed).items())),
        }
    return out


def _assistant_text(row: dict) -> str:
    return normalise_text(row["messages"][-1]["content"])


def carry_over_rows(earlier: list[list[dict]], cap: int, exclude: list[dict] | None = None) -> list[dict]:
    """SFT rows of earlier rounds kept in this round's SFT set (Llama 2's fix for regressions), at most ``cap``.

    ``earlier[i]`` holds round i+1's SFT rows (oldest round first). Each round scored its rows with its own reward
    model, so raw scores do not compare across rounds; rows rank by ``rm_percentile``, where a row stood among its
    own round's candidates (highest first; a row without it, from an older run, ranks last), the newest round first
    on ties, then prompt_id and candidate number. A row repeating the prompt_id and normalised assistant text of a
    higher-ranked row, or of a row in ``exclude`` (this round's own SFT rows), is skipped. Every kept row is a copy
    tagged ``carried_from`` (the 1-based round it was selected in); a row that was itself carried keeps its original
    tag. Returns [] when ``cap`` <= 0.
    """
    if cap <= 0:
        return []
    candidates = []
    for i, rows in enumerate(earlier):
        for r in rows:
            origin = r.get("carried_from") or i + 1
            pct = r.get("rm_percentile")
            key = (-(pct if pct is not None else -1.0), -(i + 1), r["prompt_id"], candidate_order(r["candidate_id"]))
            candidates.append((key, origin, r))
    candidates.sort(key=lambda t: t[0])
    seen = {(r["prompt_id"], _assistant_text(r)) for r in exclude or []}
    kept: list[dict] = []
    for _, origin, r in candidates:
        key = (r["prompt_id"], _assistant_text(r))
        if key in seen:
            continue
        seen.add(key)
        kept.append({**r, "carried_from": origin})
        if len(kept) == cap:
            break
    return kept


def pass_over_fail_auc(scored: list[dict], prompts: dict[str, dict]) -> dict[str, dict]:
    """Per capability: how often the RM scores a passing candidate above a failing one of the same prompt (ties
    count half), over every such (pass, fail) pair: 0.5 is chance. The RM's agreement with the verifiers on this
    round's own candidates, which held-out accuracy on stored pairs does not show."""
    wins: dict[str, float] = defaultdict(float)
    count: Counter[str] = Counter()
    for pid, group in _group(scored).items():
        passed = [r["rm_score"] for r in group if r["verified"] is True]
        failed = [r["rm_score"] for r in group if r["verified"] is False]
        cap = prompts[pid]["capability"]
        for a in passed:
            for b in failed:
                wins[cap] += 1.0 if a > b else 0.5 if a == b else 0.0
                count[cap] += 1
    return {cap: {"auc": round(wins[cap] / n, 4), "pairs": n} for cap, n in sorted(count.items())}


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
    margins: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """The round's ``selection.json``: counts by capability and reason, verifier pass rates, histograms.

    ``prompts`` is every prompt of the round; one with no scored candidate is counted as dropped from both SFT and
    DPO with reason :data:`NO_CANDIDATES`. Pass rates are passed / verified candidates per capability (unverifiable
    candidates, verified None, are left out; a capability with none verified has rate None). Histograms
    (:func:`histogram`) cover rm_score of all candidates and the RM margin of the kept pairs; ``margins`` (from
    :func:`margin_sweep`) says how many reward-model-decided pairs each margin threshold removes. Plain JSON types
    only, keys sorted: the same inputs give the same file.
    """
    carried = carried or []
    margins = margins or {}
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
        verified[cap]["flagged"] += bool(r["verified"]) and tier(r) == TIER_FLAGGED
        if _failed(r):
            failures[cap][_reason_kind(r.get("verifier_reason") or "unknown")] += 1
    verifier = {
        cap: {
            "verified": c["verified"],
            "passed": c["passed"],
            "passed_off_topic": c["flagged"],
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
        "rm_pass_over_fail_auc": pass_over_fail_auc(scored, prompts),
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
            "decided_by": dict(sorted(Counter(p["decided_by"] for p in pairs).items())),
            "margin_sweep": margins,
            **_dropped_report(pair_dropped, prompts),
        },
        "histograms": {
            "rm_score": histogram([r["rm_score"] for r in scored]),
            "pair_margin": histogram([p["margin"] for p in pairs]),
        },
    }
