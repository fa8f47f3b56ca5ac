"""Candidate quality filters and eval decontamination, on hand-built records (no model)."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from alignment.config import FiltersConfig
from synth_data.decontaminate import Decontaminator
from synth_data.filters import (
    NearDuplicateIndex,
    apply_filters,
    max_flagged_kept,
    repetition_ratio,
    style_flags,
)

CFG = FiltersConfig()

LONG_A = (
    "Photosynthesis is the process by which green plants use sunlight water and carbon dioxide to produce glucose "
    "and oxygen. It takes place mainly in the chloroplasts of leaf cells where chlorophyll absorbs light energy. "
    "The light reactions split water and release oxygen while the Calvin cycle fixes carbon into sugars that the "
    "plant uses for growth and stores as starch for later."
)
LONG_B = (
    "The French Revolution began in 1789 when financial crisis and widespread hunger pushed the Third Estate to "
    "declare itself a National Assembly. Over the following decade the monarchy fell, the republic was proclaimed, "
    "and a period of terror gave way to the Directory and finally to the rise of Napoleon Bonaparte as consul."
)
LONG_C = (
    "A binary search tree keeps its keys in sorted order so that lookups insertions and deletions can skip about "
    "half of the remaining nodes at each step. When the tree stays balanced these operations take logarithmic time "
    "but a degenerate tree built from sorted input behaves like a linked list with linear cost per operation."
)

PROMPTS = {
    "m1": {"capability": "math", "messages": [{"role": "user", "content": "What is 2 + 2?"}]},
    "m2": {"capability": "math", "messages": [{"role": "user", "content": "What is 3 + 5?"}]},
    "i1": {"capability": "instruction", "messages": [{"role": "user", "content": "Write about plants."}]},
    "i2": {"capability": "instruction", "messages": [{"role": "user", "content": "Write about history."}]},
}

EVAL_ITEMS = [
    {
        "id": "instruction-eval-7",
        "capability": "instruction",
        "messages": [
            {
                "role": "user",
                "content": "Describe in three sentences how a lighthouse keeper in the nineteenth century spent a "
                "stormy night, mentioning the lamp, the logbook and the ships passing the rocky coast.",
            }
        ],
    },
    {
        "id": "math-eval-12",
        "capability": "math",
        "messages": [{"role": "user", "content": "A farmer has 37 sheep and buys 18 more. How many sheep now?"}],
        "answer": "55",
    },
]
EVAL_PROMPT = EVAL_ITEMS[0]["messages"][0]["content"]


def cand(cid: str, text: str, prompt_id: str = "i1", finish_reason: str = "stop") -> dict:
    return {
        "prompt_id": prompt_id,
        "candidate_id": cid,
        "text": text,
        "finish_reason": finish_reason,
        "num_tokens": len(text.split()),
    }


def distinct_text(i: int) -> str:
    """Long texts with no shingles in common with each other."""
    rng = random.Random(i)
    return " ".join(f"w{i}x{rng.randrange(10**6)}" for _ in range(30))


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["candidate_id"]: r for r in rows}


# --- repetition -------------------------------------------------------------------------------------------------


def test_repetition_ratio_values():
    assert repetition_ratio("", 4) == 0.0
    assert repetition_ratio("one two three four", 4) == 0.0  # a single 4-gram: nothing can repeat
    assert repetition_ratio("a b c d e f g h", 4) == 0.0
    # 8 words -> 7 bigrams: (a b)(b a)(a b)(b a)(a b)(b a)(a b): 5 repeat the first two
    assert repetition_ratio("a b a b a b a b", 2) == pytest.approx(5 / 7)
    # case and punctuation are normalised away
    assert repetition_ratio("Go! go, GO go.", 1) == pytest.approx(3 / 4)
    assert repetition_ratio("x y x y", 1) == pytest.approx(2 / 4)


def test_degenerate_candidate_dropped_for_repetition():
    loop = "The answer is 4. " * 20
    rows, stats = apply_filters(
        [cand("m1#0", loop, "m1"), cand("m1#1", "2 + 2 = 4, so the answer is 4.", "m1")],
        PROMPTS,
        CFG,
        decontaminator=None,
    )
    got = by_id(rows)
    assert got["m1#0"]["drop_reason"] == "repetition"
    assert "0.9" in got["m1#0"]["drop_detail"]
    assert got["m1#1"]["drop_reason"] is None and got["m1#1"]["drop_detail"] is None
    assert stats["dropped"] == {"repetition": 1}


# --- style flags and cap ----------------------------------------------------------------------------------------


def test_style_flags():
    assert style_flags("A plain, calm answer.", CFG) == []
    assert style_flags("Great 😀😀😀!", CFG) == []  # 3 emojis and 1 "!" are within the limits
    assert style_flags("Great 😀🎉🚀✨ job", CFG) == ["emojis>3"]
    assert style_flags("Wow! Yes! Really! Amazing!", CFG) == ["exclamations>3"]
    assert style_flags("I'm sorry, but here it is.", CFG) == ["apologetic"]
    assert style_flags("I apologise for the delay.", CFG) == ["apologetic"]
    assert style_flags("As an AI language model, I think so.", CFG) == ["apologetic"]
    assert style_flags("My apologies!!!! 😀😀😀😀", CFG) == ["emojis>3", "exclamations>3", "apologetic"]
    assert style_flags("Wow!!", replace(CFG, max_exclamations=1)) == ["exclamations>1"]


def test_max_flagged_kept_formula():
    assert max_flagged_kept(5, 0.2) == 1  # floor(0.2 * 5 / 0.8) = floor(1.25)
    assert max_flagged_kept(9, 0.1) == 1  # exactly 1: no float round-down to 0
    assert max_flagged_kept(8, 0.1) == 0
    assert max_flagged_kept(3, 0.5) == 3
    assert max_flagged_kept(7, 0.0) == 0
    assert max_flagged_kept(7, 1.0) == -1  # unbounded


def _flag_batch() -> list[dict]:
    rows = []
    for i in range(10):
        text = distinct_text(i) + (" I'm sorry about that." if i % 2 else "")
        rows.append(cand(f"i1#{i}", text))
    return rows  # 5 flagged (odd ids), 5 unflagged


def test_style_cap_keeps_documented_number_deterministically():
    cfg = replace(CFG, max_flagged_share=0.2)
    batch = _flag_batch()
    rows, stats = apply_filters(batch, PROMPTS, cfg, decontaminator=None, seed=3)
    assert [r["candidate_id"] for r in rows] == [c["candidate_id"] for c in batch]  # input order kept
    kept = [r for r in rows if r["drop_reason"] is None]
    kept_flagged = [r for r in kept if r["flags"]]
    assert len(kept) == 6 and len(kept_flagged) == 1  # 5 unflagged + floor(0.2 * 5 / 0.8) = 1 flagged
    assert all(not r["flags"] for r in rows if int(r["candidate_id"][-1]) % 2 == 0)
    capped = [r for r in rows if r["drop_reason"] == "style cap"]
    assert len(capped) == 4 and all("apologetic" in r["drop_detail"] for r in capped)
    assert stats["flagged_kept"] == {"apologetic": 1}
    assert stats["dropped"] == {"style cap": 4}

    # Same seed, shuffled input: the same candidates survive. Another seed may pick another one.
    shuffled = batch[:]
    random.Random(1).shuffle(shuffled)
    again, _ = apply_filters(shuffled, PROMPTS, cfg, decontaminator=None, seed=3)
    assert {r["candidate_id"] for r in again if r["drop_reason"] is None} == {r["candidate_id"] for r in kept}
    picks = set()
    for seed in range(12):
        out, _ = apply_filters(batch, PROMPTS, cfg, decontaminator=None, seed=seed)
        picks |= {r["candidate_id"] for r in out if r["drop_reason"] is None and r["flags"]}
    assert len(picks) > 1


def test_style_cap_share_one_keeps_all_flagged():
    rows, _ = apply_filters(_flag_batch(), PROMPTS, replace(CFG, max_flagged_share=1.0), decontaminator=None)
    assert all(r["drop_reason"] is None for r in rows)


# --- deduplication ----------------------------------------------------------------------------------------------


def test_exact_and_near_duplicates_dropped_different_text_kept():
    near = LONG_A.replace("glucose", "sugar")  # one word changed
    shouty = LONG_A.upper().replace(".", "!")  # the same words: an exact duplicate after normalisation
    batch = [cand("i1#3", LONG_A), cand("i1#1", LONG_B), cand("i1#2", near), cand("i1#0", shouty), cand("i1#4", LONG_C)]
    rows, stats = apply_filters(batch, PROMPTS, CFG, decontaminator=None)
    got = by_id(rows)
    # visited in candidate_id order: i1#0 (shouty copy of A) is the one kept, A itself is its exact duplicate
    assert got["i1#0"]["drop_reason"] is None
    assert got["i1#3"]["drop_reason"] == "exact duplicate" and got["i1#3"]["drop_detail"] == "of i1#0"
    assert got["i1#2"]["drop_reason"] == "near-duplicate" and got["i1#2"]["drop_detail"] == "of i1#0"
    assert got["i1#1"]["drop_reason"] is None and got["i1#4"]["drop_reason"] is None
    assert stats["dropped"] == {"exact duplicate": 1, "near-duplicate": 1}

    rows, _ = apply_filters(batch, PROMPTS, replace(CFG, dedup=False), decontaminator=None)
    assert all(r["drop_reason"] is None for r in rows)


def test_dedup_compares_replies_within_a_prompt():
    # the same reply to two different prompts is not a duplicate (each prompt may need it); within one prompt it is
    batch = [
        cand("i1#0", LONG_A, "i1"),
        cand("i2#0", LONG_A, "i2"),
        cand("i1#1", LONG_A.replace("glucose", "sugar"), "i1"),
    ]
    rows, _ = apply_filters(batch, PROMPTS, CFG, decontaminator=None)
    assert [r["drop_reason"] for r in rows] == [None, None, "near-duplicate"]
    assert rows[2]["drop_detail"] == "of i1#0"


def test_short_correct_answer_is_not_a_near_duplicate_of_a_wrong_one():
    """The review's case: with the prompt in the comparison, "The answer is 16." and "The answer is 15." scored a
    Jaccard of 0.93 and the correct 15 was dropped because it came second. Replies alone share 1 of 3 shingles."""
    prompt = {"capability": "math", "messages": [{"role": "user", "content": "Tom has 9 apples and buys 6 more. "
              "How many apples does Tom have now? Give the final answer as a number."}], "answer": "15"}  # fmt: skip
    prompts = {"m9": prompt}
    batch = [cand("m9#0", "The answer is 16.", "m9"), cand("m9#1", "The answer is 15.", "m9")]
    rows, stats = apply_filters(batch, prompts, CFG, decontaminator=None)
    assert [r["drop_reason"] for r in rows] == [None, None] and stats["kept"] == 2


def test_dedup_keeps_the_verified_reply_of_a_duplicate_group():
    """Two near-identical replies, the first failing its verifier: the passing one survives whatever the order."""
    passing = LONG_A + " The answer is 4."
    failing = LONG_A + " The answer is 5."
    ranks = {"m1#0": 2, "m1#1": 0}  # the stage's rank: 0 = passed, 1 = no verifier, 2 = failed
    batch = [cand("m1#0", failing, "m1"), cand("m1#1", passing, "m1")]
    for order in (batch, batch[::-1]):
        rows, _ = apply_filters(order, PROMPTS, CFG, decontaminator=None, rank=lambda r: ranks[r["candidate_id"]])
        got = by_id(rows)
        assert got["m1#1"]["drop_reason"] is None
        assert (got["m1#0"]["drop_reason"], got["m1#0"]["drop_detail"]) == ("near-duplicate", "of m1#1")


def test_dedup_visits_candidates_in_numeric_order():
    # p#2 comes before p#10 (string order had p#10 first), so p#2 is the survivor
    rows, _ = apply_filters([cand("i1#10", LONG_A), cand("i1#2", LONG_A)], PROMPTS, CFG, decontaminator=None)
    assert by_id(rows)["i1#2"]["drop_reason"] is None and by_id(rows)["i1#10"]["drop_detail"] == "of i1#2"


def test_dedup_against_earlier_round_sft_rows():
    earlier = [
        {
            "prompt_id": "i1",
            "candidate_id": "r1-i1#2",
            "messages": [*PROMPTS["i1"]["messages"], {"role": "assistant", "content": LONG_A}],
        },
        {
            "prompt_id": "i2",
            "candidate_id": "r1-i2#0",
            "messages": [*PROMPTS["i2"]["messages"], {"role": "assistant", "content": LONG_B}],
        },
    ]
    batch = [cand("i1#0", LONG_A), cand("i2#0", LONG_B.replace("hunger", "famine"), "i2"), cand("i1#1", LONG_C)]
    rows, _ = apply_filters(batch, PROMPTS, CFG, decontaminator=None, earlier_sft=earlier)
    got = by_id(rows)
    assert got["i1#0"]["drop_reason"] == "exact duplicate"
    assert got["i1#0"]["drop_detail"] == "of earlier-round SFT row r1-i1#2"
    assert got["i2#0"]["drop_reason"] == "near-duplicate"
    assert got["i2#0"]["drop_detail"] == "of earlier-round SFT row r1-i2#0"
    assert got["i1#1"]["drop_reason"] is None

    rows, _ = apply_filters(
        batch, PROMPTS, replace(CFG, dedup_earlier_rounds=False), decontaminator=None, earlier_sft=earlier
    )
    assert all(r["drop_reason"] is None for r in rows)


def test_near_duplicate_index_directly():
    index = NearDuplicateIndex(threshold=0.85, num_perm=128, shingle=3)
    index.add("a", LONG_A)
    index.add("short", "hi there")
    index.add("empty", "")
    assert index.seen_exact(LONG_A.lower()) == "a"
    assert index.query(LONG_A.replace("oxygen", "air", 1)) == ["a"]
    assert index.query(LONG_B) == []
    assert index.seen_exact("Hi, there!") == "short" and index.query("hi there") == ["short"]
    assert index.query("") == ["empty"]
    with pytest.raises(ValueError):
        index.add("a", LONG_B)
    # fixed seeds: a fresh index gives the same signature
    assert (NearDuplicateIndex(0.85).minhash(LONG_A).hashvalues == index.minhash(LONG_A).hashvalues).all()


# --- decontamination --------------------------------------------------------------------------------------------


def test_decontaminator_overlap():
    deco = Decontaminator(EVAL_ITEMS, ngram=8, threshold=0.5)
    assert deco.overlap(EVAL_PROMPT) == (1.0, "instruction-eval-7")
    assert deco.is_contaminated(EVAL_PROMPT) == "eval overlap 1.00 with instruction-eval-7"
    near = EVAL_PROMPT.replace("Describe", "Explain").replace("three", "four").replace("coast", "shore")
    assert deco.overlap(near) == (pytest.approx(17 / 21), "instruction-eval-7")  # 28 words: 4 of 21 8-grams broken
    assert deco.overlap(LONG_A) == (0.0, None) and deco.is_contaminated(LONG_A) is None
    # half the text copied from the eval prompt, half new: share of the text's n-grams
    half = " ".join(EVAL_PROMPT.split()[:16]) + " " + " ".join(f"new{i}" for i in range(16))
    share, _ = deco.overlap(half)
    assert share == pytest.approx(9 / 25)


def test_decontaminator_short_texts_compared_whole():
    deco = Decontaminator(EVAL_ITEMS, ngram=8, threshold=0.5)
    assert deco.overlap("the lamp, the logbook") == (1.0, "instruction-eval-7")  # a contiguous run of the item
    assert deco.overlap("the logbook the lamp") == (0.0, None)  # same words, not contiguous
    assert deco.overlap("How many sheep now?") == (1.0, "math-eval-12")
    assert deco.overlap("55") == (1.0, "math-eval-12")  # the reference answer is indexed too
    assert deco.overlap("") == (0.0, None)
    assert Decontaminator(EVAL_ITEMS, ngram=8, threshold=0.5, min_words=3).overlap("55") == (0.0, None)


def test_decontamination_filter_on_candidates():
    deco = Decontaminator(EVAL_ITEMS, ngram=8, threshold=0.5)
    batch = [
        cand("i1#0", EVAL_PROMPT),
        cand("i1#1", EVAL_PROMPT.replace("three", "four").replace("rocky", "rugged")),
        cand("i1#2", LONG_C),
    ]
    rows, stats = apply_filters(batch, PROMPTS, CFG, decontaminator=deco)
    got = by_id(rows)
    assert got["i1#0"]["drop_reason"] == "decontaminated"
    assert got["i1#0"]["drop_detail"] == "eval overlap 1.00 with instruction-eval-7"
    assert got["i1#1"]["drop_reason"] == "decontaminated"
    assert got["i1#2"]["drop_reason"] is None
    assert stats["dropped"] == {"decontaminated": 2}


# --- order and stats --------------------------------------------------------------------------------------------


def test_first_matching_filter_wins():
    batch = [
        cand("i1#0", LONG_A),
        cand("i1#1", "   "),  # blank: "empty", not a duplicate of the other blank one
        cand("i1#2", "\n"),
        cand("i1#3", LONG_A, finish_reason="length"),  # truncated before it is a duplicate
        cand("i1#4", EVAL_PROMPT + " " + EVAL_PROMPT, finish_reason="length"),
        cand("i1#5", "spam spam spam spam " * 10),  # repetition before style
        cand("i1#6", EVAL_PROMPT + " I'm sorry!!!!"),  # decontaminated before the style cap
    ]
    deco = Decontaminator(EVAL_ITEMS, ngram=8, threshold=0.5)
    rows, _ = apply_filters(batch, PROMPTS, replace(CFG, max_flagged_share=0.0), decontaminator=deco)
    assert [r["drop_reason"] for r in rows] == [
        None,
        "empty",
        "empty",
        "truncated",
        "truncated",
        "repetition",
        "decontaminated",
    ]
    assert rows[6]["flags"] == ["exclamations>3", "apologetic"]


def test_stats_by_reason_and_capability():
    batch = [
        cand("m1#0", "2 + 2 = 4. The answer is 4.", "m1"),
        cand("m1#1", "", "m1"),
        cand("m1#2", "2 + 2 = 4. The answer is 4.", "m1"),
        cand("m2#0", "3 + 5 = 8", "m2", finish_reason="length"),
        cand("m2#1", "3 + 5 = 8. The answer is 8!!!! 😀😀😀😀", "m2"),
        cand("i1#0", LONG_A, "i1"),
        cand("i2#0", LONG_B, "i2"),
        cand("i2#1", "", "i2"),
    ]
    rows, stats = apply_filters(batch, PROMPTS, replace(CFG, max_flagged_share=0.5), decontaminator=None)
    assert stats == {
        "candidates": 8,
        "dropped": {"empty": 2, "exact duplicate": 1, "truncated": 1},
        "dropped_by_capability": {
            "instruction": {"empty": 1},
            "math": {"empty": 1, "exact duplicate": 1, "truncated": 1},
        },
        "flagged_kept": {"emojis>3": 1, "exclamations>3": 1},
        "kept": 4,
        "kept_by_capability": {"instruction": 2, "math": 2},
    }
    assert json.loads(json.dumps(stats)) == stats
    assert list(stats) == sorted(stats)
    assert by_id(rows)["m1#2"]["drop_detail"] == "of m1#0"


def test_decontamination_threshold_above_one_is_rejected():
    # Above 1 not even a verbatim copy of an eval item (overlap 1.0) would be removed.
    with pytest.raises(ValueError, match=r"decontamination.threshold must be in \(0, 1\]"):
        Decontaminator(EVAL_ITEMS, ngram=8, threshold=1.5)


def test_incoherent_candidates_are_dropped_by_their_mean_logprob():
    cfg = replace(CFG, min_mean_logprob=-3.0)
    batch = [
        {**cand("i1#0", LONG_A), "mean_logprob": -1.2},
        {**cand("i1#1", "Cats and dogs are obligate coprolinfusi ome obligo dox."), "mean_logprob": -4.7},
        {**cand("i1#2", LONG_C), "mean_logprob": None},  # unknown (e.g. an older candidates file): kept
        {**cand("i1#3", LONG_B), "mean_logprob": float("nan")},  # an overflow: no evidence of fluency, dropped
    ]
    rows, stats = apply_filters(batch, PROMPTS, cfg, decontaminator=None)
    assert [r["drop_reason"] for r in rows] == [None, "incoherent", None, "incoherent"]
    assert rows[1]["drop_detail"] == "mean log-prob -4.70 < -3.0"
    assert rows[3]["drop_detail"] == "mean log-prob is NaN"
    rows, _ = apply_filters(batch, PROMPTS, replace(CFG, min_mean_logprob=None), decontaminator=None)  # no floor
    assert [r["drop_reason"] for r in rows] == [None, None, None, "incoherent"]  # NaN is never a ranking signal
