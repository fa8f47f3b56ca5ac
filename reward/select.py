"""Rejection sampling as pure functions over records: combined scores, SFT rows and DPO pairs, with reasons.

A scored candidate is a dict with at least ``prompt_id``, ``candidate_id``, ``text``, ``verified`` (True, False, or
None when no verifier applies) and ``rm_score``. Everything is grouped by ``prompt_id``; nothing is matched by
position.
"""

from __future__ import annotations

from collections import Counter, defaultdict


def combine_scores(rows: list[dict]) -> list[dict]:
    """Add ``score``: the RM score, minus a penalty for failing the verifier that is larger than the whole RM score
    range, so any failing candidate ranks below any passing (or unverifiable) one and the RM orders the rest."""
    if not rows:
        return []
    lo = min(r["rm_score"] for r in rows)
    hi = max(r["rm_score"] for r in rows)
    penalty = (hi - lo) + 1.0
    return [{**r, "score": r["rm_score"] - (penalty if r["verified"] is False else 0.0)} for r in rows]


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _by_prompt(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["prompt_id"]].append(r)
    # Highest score first; candidate_id breaks ties so the result never depends on input order.
    return {pid: sorted(g, key=lambda r: (-r["score"], r["candidate_id"])) for pid, g in groups.items()}


def select_sft(scored: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], Counter]:
    """Best-of-K per prompt becomes an SFT row, unless the best candidate failed its verifier.

    Returns (rows, dropped reasons). A row is {prompt_id, candidate_id, capability, messages, score} where
    ``messages`` is the prompt followed by the chosen assistant turn.
    """
    rows, dropped = [], Counter()
    for pid, cands in sorted(_by_prompt(scored).items()):
        best = cands[0]
        if best["verified"] is False:
            dropped["no candidate passed the verifier"] += 1
            continue
        prompt = prompts[pid]
        rows.append(
            {
                "prompt_id": pid,
                "candidate_id": best["candidate_id"],
                "capability": prompt["capability"],
                "messages": [*prompt["messages"], {"role": "assistant", "content": best["text"]}],
                "score": best["score"],
            }
        )
    return rows, dropped


def select_pairs(scored: list[dict], prompts: dict[str, dict], min_margin: float) -> tuple[list[dict], Counter]:
    """Best vs worst per prompt becomes a DPO pair when the chosen side did not fail its verifier, the texts differ
    (after whitespace normalisation) and the score margin is at least ``min_margin``.

    Returns (pairs, dropped reasons). A pair is {prompt_id, capability, prompt (messages), chosen, rejected,
    chosen_id, rejected_id, margin}; chosen and rejected share exactly the same prompt.
    """
    pairs, dropped = [], Counter()
    for pid, cands in sorted(_by_prompt(scored).items()):
        if len(cands) < 2:
            dropped["fewer than 2 candidates"] += 1
            continue
        best, worst = cands[0], cands[-1]
        if best["verified"] is False:
            dropped["no candidate passed the verifier"] += 1
            continue
        if _normalise(best["text"]) == _normalise(worst["text"]):
            dropped["chosen and rejected identical"] += 1
            continue
        margin = best["score"] - worst["score"]
        if margin < min_margin:
            dropped["margin below min_margin"] += 1
            continue
        prompt = prompts[pid]
        pairs.append(
            {
                "prompt_id": pid,
                "capability": prompt["capability"],
                "prompt": prompt["messages"],
                "chosen": best["text"],
                "rejected": worst["text"],
                "chosen_id": best["candidate_id"],
                "rejected_id": worst["candidate_id"],
                "margin": margin,
            }
        )
    return pairs, dropped
