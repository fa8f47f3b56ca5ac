"""Compare two evaluations of the same suites, capability by capability, item by item.

Both sides are ``alignment eval`` outputs: ``X.json`` (``{capability: {"accuracy", "n"}}``) with its per-item records
``X.items.jsonl`` beside it. Items are matched by id, so the difference in accuracy gets a paired confidence interval
(the same items answered by both models vary far less than two independent samples would; only the items that
flipped carry information), and the items that flipped are listed. Without item files (or with no shared ids) the interval is the unpaired one of two proportions.

A capability *regresses* when its accuracy dropped by more than its tolerance and, with a ``confidence``, the drop is
significant: the upper end of the interval of new minus old is below zero.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist

from alignment.records import read_json


def items_path(eval_json: Path) -> Path:
    """Where ``alignment eval --out X.json`` wrote the per-item records."""
    eval_json = Path(eval_json)
    return eval_json.with_name(f"{eval_json.stem}.items.jsonl")


def read_item_records(eval_json: Path) -> dict[str, dict]:
    """An eval's per-item records by id, as written ({} when the file is absent); a malformed line names the file
    and line."""
    path = items_path(eval_json)
    if not path.is_file():
        return {}
    records = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not {"id", "capability"} <= rec.keys():
                raise KeyError("id and capability")
            if "score" not in rec and "correct" not in rec:
                raise KeyError("correct or score")
        except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{path}:{lineno}: not an eval item record ({e})") from e
        records[rec["id"]] = rec
    return records


def load_items(eval_json: Path) -> dict[str, dict]:
    """Per item id: its capability and its score in [0, 1] (greedy evals record ``correct``, sampled ones their
    pass rate ``score``)."""
    return {
        i: {
            "capability": r["capability"],
            "correct": float(r["score"]) if "score" in r else float(bool(r["correct"])),
        }
        for i, r in read_item_records(eval_json).items()
    }


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def difference_interval(
    new: list[float], old: list[float], *, paired: bool, confidence: float
) -> tuple[float, float, float]:
    """Accuracy difference new - old and its confidence interval, clipped to [-1, 1].

    Paired right/wrong items (``new[i]`` and ``old[i]`` are the same item): the Bonett-Price adjusted Wald interval
    on the discordant items (those that flipped), which keeps a sensible width on small suites and when nothing
    flipped. Paired pass rates (sampled evals): the mean per-item difference with its standard error. Unpaired: the
    Agresti-Caffo interval of two proportions (one success and one failure added to each side).
    """
    z = _z(confidence)
    n = len(new)
    if paired and all(v in (0.0, 1.0) for v in [*new, *old]):
        to_right = sum(1 for a, b in zip(new, old, strict=True) if a > b)
        to_wrong = sum(1 for a, b in zip(new, old, strict=True) if a < b)
        diff = (to_right - to_wrong) / n
        p_right, p_wrong = (to_right + 1) / (n + 2), (to_wrong + 1) / (n + 2)
        center = p_right - p_wrong
        se = math.sqrt(max(p_right + p_wrong - center**2, 0.0) / (n + 2))
    elif paired:
        diffs = [float(a) - float(b) for a, b in zip(new, old, strict=True)]
        diff = center = sum(diffs) / n
        var = sum((d - diff) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
        se = math.sqrt(var / n)
    else:
        diff = sum(new) / len(new) - sum(old) / len(old)
        p1, p2 = (sum(new) + 1) / (len(new) + 2), (sum(old) + 1) / (len(old) + 2)
        center = p1 - p2
        se = math.sqrt(p1 * (1 - p1) / (len(new) + 2) + p2 * (1 - p2) / (len(old) + 2))
    return diff, max(-1.0, center - z * se), min(1.0, center + z * se)


def compare(
    new_eval: Path,
    old_eval: Path,
    *,
    tolerance: float,
    tolerances: dict[str, float] | None = None,
    confidence: float | None = 0.95,
) -> dict:
    """Compare ``new_eval`` with ``old_eval`` (paths of eval JSON files); see the module docstring.

    Returns ``{"regressed": [capability, ...], "capabilities": {capability: {...}}}`` where each capability has the
    two accuracies (on the shared items when paired) and the suite sizes, ``diff`` (new - old), its interval (``ci_low``, ``ci_high``, ``paired``), its
    ``tolerance``, ``regressed`` and the ids that ``flipped_to_wrong`` / ``flipped_to_right``. A capability the
    old eval has and the new one lacks is a regression too (it can no longer be checked).
    """
    tolerances = tolerances or {}
    new_summary, old_summary = read_json(Path(new_eval)), read_json(Path(old_eval))
    new_items, old_items = load_items(new_eval), load_items(old_eval)
    level = confidence if confidence is not None else 0.95  # the interval is reported either way
    out: dict = {"regressed": [], "capabilities": {}, "confidence": confidence}
    for cap in sorted(set(new_summary) | set(old_summary)):
        tol = tolerances.get(cap, tolerance)
        if cap not in new_summary or cap not in old_summary:
            missing = "new" if cap not in new_summary else "old"
            out["capabilities"][cap] = {"tolerance": tol, "regressed": missing == "new", "missing_in": missing}
            if missing == "new":
                out["regressed"].append(cap)
            continue
        shared = [  # in the new eval's item order
            i for i, r in new_items.items() if r["capability"] == cap and old_items.get(i, {}).get("capability") == cap
        ]
        if shared:
            new_ok = [new_items[i]["correct"] for i in shared]
            old_ok = [old_items[i]["correct"] for i in shared]
            diff, low, high = difference_interval(new_ok, old_ok, paired=True, confidence=level)
            new_acc, old_acc = sum(new_ok) / len(shared), sum(old_ok) / len(shared)  # on the shared items
            # an item flips when it crosses 0.5 (right/wrong, or a sampled pass rate)
            to_wrong = [i for i in shared if old_items[i]["correct"] >= 0.5 > new_items[i]["correct"]]
            to_right = [i for i in shared if new_items[i]["correct"] >= 0.5 > old_items[i]["correct"]]
        else:
            n1, n2 = new_summary[cap]["n"], old_summary[cap]["n"]
            k1 = round(new_summary[cap]["accuracy"] * n1)
            k2 = round(old_summary[cap]["accuracy"] * n2)
            new_ok = [True] * k1 + [False] * (n1 - k1)
            old_ok = [True] * k2 + [False] * (n2 - k2)
            diff, low, high = difference_interval(new_ok, old_ok, paired=False, confidence=level)
            new_acc, old_acc = new_summary[cap]["accuracy"], old_summary[cap]["accuracy"]
            to_wrong = to_right = []
        dropped_too_far = -diff > tol + 1e-12
        significant = confidence is None or high < 0
        regressed = dropped_too_far and significant
        out["capabilities"][cap] = {
            "new": round(new_acc, 4),
            "old": round(old_acc, 4),
            "n_new": new_summary[cap]["n"],
            "n_old": old_summary[cap]["n"],
            "diff": round(diff, 4),
            "ci_low": round(low, 4),
            "ci_high": round(high, 4),
            "paired": bool(shared),
            "n_paired": len(shared),
            "tolerance": tol,
            "regressed": regressed,
            "flipped_to_wrong": to_wrong,
            "flipped_to_right": to_right,
        }
        if regressed:
            out["regressed"].append(cap)
    return out


def describe(cap: str, row: dict) -> str:
    """One line for a capability of :func:`compare`'s result, e.g. for a gate's reason or a regression table."""
    if "missing_in" in row:
        return f"{cap}: missing from the {row['missing_in']} eval"
    return (
        f"{cap}: {row['old']:.3f} -> {row['new']:.3f} ({row['diff']:+.3f}, CI [{row['ci_low']:+.3f}, "
        f"{row['ci_high']:+.3f}], tolerance {row['tolerance']:.3f}; {len(row['flipped_to_wrong'])} items right -> "
        f"wrong, {len(row['flipped_to_right'])} wrong -> right)"
    )
