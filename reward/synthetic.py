"""Synthetic negatives for the reward model: good replies, broken on purpose, each preferred to its broken copy.

The seed and verifier pairs never show the RM what an incoherent reply looks like: verifier pairs differ in a final
number or a constraint, seed pairs in content. A small model sampled at temperature 0.8 writes fluent-looking
nonsense ("cats and dogs are obligate coprolinfusi·ome") that such an RM happily ranks first among chat candidates,
where no verifier stands behind it. Each synthetic pair takes a good reply (a seed pair's chosen side, or a reply
that passed its verifier this round) as chosen and one of four corruptions of it as rejected:

* ``shuffled``: the reply's sentences (or, for one sentence, its words) in a shuffled order;
* ``noise``: a third of its words replaced by words drawn from other replies;
* ``truncated``: cut after 40-60% of its words, mid-sentence;
* ``other-prompt``: another prompt's good reply: fluent, and about something else.

Everything is seeded; the same inputs give the same pairs. Pair sources are ``synthetic:<kind>``, reported apart and
left out of the held-out accuracy floor (they are easy by design).
"""

from __future__ import annotations

import random
import re

KINDS = ("shuffled", "noise", "truncated", "other-prompt")
MIN_WORDS = 6
"""Replies shorter than this make no synthetic pair (too little to corrupt recognisably)."""


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def corrupt(reply: str, kind: str, rng: random.Random, other_replies: list[str]) -> str | None:
    """``reply`` broken by ``kind`` (see the module docstring); None when it cannot be (too short, no other reply)."""
    words = reply.split()
    if len(words) < MIN_WORDS:
        return None
    if kind == "shuffled":
        parts = _sentences(reply)
        if len(parts) < 3 or len(set(parts)) < 2:
            parts = words
        if len(set(parts)) < 2:
            return None  # every part is the same: no order to break ("go go go go go go")
        shuffled = parts[:]
        for _ in range(20):  # two different parts: a shuffle differs with probability >= 1/2
            rng.shuffle(shuffled)
            if shuffled != parts:
                return " ".join(shuffled)
        return None
    if kind == "noise":
        pool = [w for r in other_replies for w in r.split()] or words
        noisy = [rng.choice(pool) if rng.random() < 1 / 3 else w for w in words]
        return " ".join(noisy) if noisy != words else None
    if kind == "truncated":
        cut = max(2, int(len(words) * rng.uniform(0.4, 0.6)))
        return " ".join(words[:cut]).rstrip(".!?,;:")
    if kind == "other-prompt":
        others = [r for r in other_replies if r.strip() and r != reply]
        return rng.choice(others) if others else None
    raise ValueError(f"unknown corruption {kind!r} (have: {', '.join(KINDS)})")


def synthetic_pairs(good: list[dict], n: int, seed: int) -> list[dict]:
    """Up to ``n`` preference pairs, a good reply over its corruption, the kinds in turn.

    ``good`` holds records with ``messages`` (the prompt), ``reply`` and ``capability``; replies of other prompts feed
    the ``noise`` and ``other-prompt`` kinds. Returns pair records (``pair_id``, ``capability``, ``messages``,
    ``chosen``, ``rejected``, ``source``) like the other preference pairs.
    """
    if n <= 0 or not good:
        return []
    rng = random.Random(f"synthetic:{seed}")
    order = sorted(good, key=lambda g: (g["reply"], str(g["messages"])))
    rng.shuffle(order)
    pairs: list[dict] = []
    for i, g in enumerate(order):
        if len(pairs) >= n:
            break
        kind = KINDS[len(pairs) % len(KINDS)]
        others = [o["reply"] for o in order if o["messages"] != g["messages"]]
        bad = corrupt(g["reply"], kind, rng, others)
        if bad is None or " ".join(bad.split()) == " ".join(g["reply"].split()):
            continue
        pairs.append(
            {
                "pair_id": f"synthetic:{kind}:{i}",
                "capability": g["capability"],
                "messages": g["messages"],
                "chosen": g["reply"],
                "rejected": bad,
                "source": f"synthetic:{kind}",
            }
        )
    return pairs
