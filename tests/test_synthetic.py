"""Synthetic negatives for the reward model (reward.synthetic): each kind of corruption, seeded."""

import random

from reward.synthetic import KINDS, corrupt, synthetic_pairs

REPLY = "Cats sleep a lot. They groom themselves often. Most cats like to hunt small things."
OTHER = "Bread rises because yeast makes gas while the dough rests in a warm place."


def test_each_corruption_breaks_the_reply():
    rng = random.Random(0)
    shuffled = corrupt(REPLY, "shuffled", rng, [OTHER])
    sentences = {s.strip(".") for s in REPLY.split(". ")}
    assert shuffled != REPLY and {s.strip(".") for s in shuffled.split(". ")} == sentences  # the same sentences
    assert sorted(shuffled.split()) == sorted(REPLY.split())
    noisy = corrupt(REPLY, "noise", rng, [OTHER])
    assert noisy != REPLY and len(noisy.split()) == len(REPLY.split())
    assert set(noisy.split()) - set(REPLY.split()) <= set(OTHER.split())
    cut = corrupt(REPLY, "truncated", rng, [OTHER])
    assert REPLY.startswith(cut) and 0.3 < len(cut.split()) / len(REPLY.split()) < 0.7 and not cut.endswith(".")
    assert corrupt(REPLY, "other-prompt", rng, [OTHER]) == OTHER
    assert corrupt("Too short.", "noise", rng, [OTHER]) is None


def test_pairs_cycle_the_kinds_and_are_seeded():
    good = [
        {"messages": [{"role": "user", "content": f"q{i}"}], "reply": f"{REPLY} Number {i}.", "capability": "chat"}
        for i in range(12)
    ]
    pairs = synthetic_pairs(good, 8, seed=1)
    assert len(pairs) == 8 and [p["source"] for p in pairs[:4]] == [f"synthetic:{k}" for k in KINDS]
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    assert synthetic_pairs(good[::-1], 8, seed=1) == pairs  # input order does not matter
    assert synthetic_pairs(good, 8, seed=2) != pairs
    assert synthetic_pairs(good, 0, seed=1) == [] and synthetic_pairs([], 5, seed=1) == []


def test_a_reply_of_identical_parts_cannot_be_shuffled_and_does_not_hang():
    """``"Go now. Go now. Go now."`` passes the repetition filter; shuffling its identical sentences looped forever."""
    import random

    from reward.synthetic import corrupt

    rng = random.Random(0)
    assert corrupt("Go now. Go now. Go now. Go now.", "shuffled", rng, []) not in (
        None,
        "Go now. Go now. Go now. Go now.",
    )
    assert corrupt("go go go go go go go go", "shuffled", rng, []) is None
