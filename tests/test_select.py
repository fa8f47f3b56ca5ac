"""Rejection sampling over hand-built records; every expected value is worked out in the comments.

Margins are raw RM score differences (a Bradley-Terry logit: P(chosen better) = sigmoid(margin)).
"""

import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from alignment.config import SelectionConfig
from alignment.records import candidate_order
from reward.select import (
    carry_over_rows,
    combine_scores,
    control_seed,
    histogram,
    margin_sweep,
    randomize_selection,
    select_pairs,
    select_sft,
    selection_report,
)
from reward.verifiers import verify
from rounds.layout import ArtifactError, Selection

PROMPTS = {
    "p1": {"prompt_id": "p1", "capability": "math", "messages": [{"role": "user", "content": "2+2?"}], "answer": "4"},
    "p2": {"prompt_id": "p2", "capability": "instruction", "messages": [{"role": "user", "content": "hi"}]},
    "p3": {"prompt_id": "p3", "capability": "math", "messages": [{"role": "user", "content": "3+3?"}], "answer": "6"},
    "p4": {"prompt_id": "p4", "capability": "chat", "messages": [{"role": "user", "content": "hey"}]},
}
CFG = SelectionConfig(min_margin=0.5, rank_verified_by="reward_model")
"""The RM ranking: these hand-built records carry RM scores only (the likelihood ranking has its own tests below)."""


def rm_cfg(**kw):
    return SelectionConfig(rank_verified_by="reward_model", **kw)


def cand(pid, j, text, verified, rm, reason=None):
    row = {"prompt_id": pid, "candidate_id": f"{pid}#{j}", "text": text, "verified": verified, "rm_score": rm}
    return row if reason is None else {**row, "verifier_reason": reason}


def by_id(rows, key):
    return {r["candidate_id"]: r[key] for r in rows}


# --------------------------------------------------------------------------------------------- combine_scores


def test_failing_candidates_rank_below_all_passing_ones():
    # RM range is 3.0 - (-1.0) = 4.0, so the penalty is 5.0 per tier: the failed 3.0 (two tiers down) becomes -7.0,
    # below the passing -1.0.
    rows = combine_scores(
        [cand("p1", 0, "4", True, -1.0), cand("p1", 1, "5", False, 3.0), cand("p1", 2, "x", None, 0.5)]
    )
    assert by_id(rows, "score") == {"p1#0": -1.0, "p1#1": -7.0, "p1#2": 0.5}
    assert by_id(rows, "tier") == {"p1#0": 2, "p1#1": 0, "p1#2": 2}


def test_off_topic_passes_rank_between_passes_and_failures():
    # RM range 4 - 0 = 4 -> penalty 5 per tier: on-topic 0.0 stays 0.0, off-topic 4.0 -> -1.0, failed 4.0 -> -6.0
    rows = combine_scores(
        [
            cand("p2", 0, "on topic", True, 0.0),
            {**cand("p2", 1, "off topic", True, 4.0), "verifier_flags": ["off-topic"]},
            cand("p2", 2, "failed", False, 4.0),
        ]
    )
    assert by_id(rows, "score") == {"p2#0": 0.0, "p2#1": -1.0, "p2#2": -6.0}
    pairs, _ = select_pairs(rows, PROMPTS, CFG)
    assert (pairs[0]["chosen_id"], pairs[0]["rejected_id"], pairs[0]["decided_by"]) == ("p2#0", "p2#2", "verifier")
    # an on-topic pass over an off-topic one rests on a heuristic flag: the RM must agree by min_margin
    two = [row for row in rows if row["candidate_id"] != "p2#2"]
    assert select_pairs(two, PROMPTS, CFG) == ([], {"p2": "RM margin below min_margin"})  # RM: 0.0 vs 4.0
    agree = combine_scores(
        [
            cand("p2", 0, "on topic", True, 3.0),
            {**cand("p2", 1, "off topic", True, 1.0), "verifier_flags": ["off-topic"]},
        ]
    )
    pairs, _ = select_pairs(agree, PROMPTS, CFG)
    assert (pairs[0]["chosen_id"], pairs[0]["margin"], pairs[0]["decided_by"]) == ("p2#0", 2.0, "reward model")
    only_off = combine_scores(
        [{**cand("p2", 0, "a", True, 1.0), "verifier_flags": ["off-topic"]}, cand("p2", 1, "b", False, 0.0)]
    )
    assert select_sft(only_off, PROMPTS, CFG)[1] == {"p2": "best pass is off-topic"}


def test_rm_percentile_is_the_rank_within_the_round():
    # scores {1, 2, 2, 4}: share of candidates at or below each (ties in full)
    rows = combine_scores([cand("p2", j, str(j), None, x) for j, x in enumerate([2.0, 1.0, 4.0, 2.0])])
    assert by_id(rows, "rm_percentile") == {"p2#0": 0.75, "p2#1": 0.25, "p2#2": 1.0, "p2#3": 0.75}


def test_candidate_numbers_order_numerically():
    assert sorted(["p#10", "p#2", "p#1"], key=candidate_order) == ["p#1", "p#2", "p#10"]
    # a tie between p2#10 and p2#2 goes to the earlier candidate (before: "p2#10" < "p2#2" as strings)
    rows = combine_scores([cand("p2", 10, "late", None, 1.0), cand("p2", 2, "early", None, 1.0)])
    assert select_sft(rows, PROMPTS, CFG)[0][0]["candidate_id"] == "p2#2"


def test_sft_takes_best_of_k_and_skips_prompts_where_all_fail():
    scored = combine_scores(
        [
            cand("p1", 0, "4", True, 0.1),
            cand("p1", 1, "The answer is 4", True, 0.9),
            cand("p1", 2, "5", False, 2.0),
            cand("p3", 0, "7", False, 1.0),
            cand("p3", 1, "8", False, 0.0),
            cand("p4", 0, "only one", None, -3.0),  # a single (unverifiable) candidate is its prompt's best
        ]
    )
    rows, dropped = select_sft(scored, PROMPTS, CFG)
    assert [r["candidate_id"] for r in rows] == ["p1#1", "p4#0"]
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": "The answer is 4"}
    assert rows[0]["messages"][:-1] == PROMPTS["p1"]["messages"]
    assert (rows[0]["rank"], rows[0]["rm_score"], rows[0]["capability"]) == (0, 0.9, "math")
    assert dropped == {"p3": "no candidate passed the verifier"}


def test_sft_score_floor_applies_to_the_best_passing_rm_score():
    scored = combine_scores(
        [
            cand("p1", 0, "4", True, 0.9),
            cand("p1", 1, "5", False, 2.0),  # above the floor but failed: it neither counts as best nor rescues p1
            cand("p2", 0, "hello", None, 1.0),  # exactly at the floor: kept
            cand("p3", 0, "7", False, 5.0),  # all failed: that reason comes first
        ]
    )
    rows, dropped = select_sft(scored, PROMPTS, rm_cfg(sft_min_score=1.0))
    assert [r["candidate_id"] for r in rows] == ["p2#0"]
    assert dropped == {"p1": "best below sft_min_score", "p3": "no candidate passed the verifier"}
    rows, dropped = select_sft(scored, PROMPTS, rm_cfg(sft_min_score=0.9))
    assert [r["candidate_id"] for r in rows] == ["p1#0", "p2#0"]


def test_sft_keeps_up_to_m_distinct_passing_answers_best_first():
    scored = combine_scores(
        [
            cand("p1", 0, "The answer is 4", True, 0.9),
            cand("p1", 1, " The answer  is 4\n", True, 0.8),  # same text after whitespace normalisation: skipped
            cand("p1", 2, "4", True, 0.5),
            cand("p1", 3, "5", False, 2.0),  # failed
            cand("p1", 4, "four, so 4", True, 0.1),  # below the floor
            cand("p2", 0, "a", None, 1.0),
            cand("p2", 1, "b", None, 0.6),
            cand("p2", 2, "c", None, 0.2),  # below the floor
        ]
    )
    cfg = rm_cfg(sft_per_prompt=3, sft_min_score=0.3)
    rows, dropped = select_sft(scored, PROMPTS, cfg)
    assert [(r["candidate_id"], r["rank"]) for r in rows] == [("p1#0", 0), ("p1#2", 1), ("p2#0", 0), ("p2#1", 1)]
    assert dropped == {}
    rows, _ = select_sft(scored, PROMPTS, rm_cfg(sft_per_prompt=2))
    assert [r["candidate_id"] for r in rows] == ["p1#0", "p1#2", "p2#0", "p2#1"]


def test_ties_break_on_candidate_id_not_input_order():
    a, b = cand("p2", 0, "a", None, 1.0), cand("p2", 1, "b", None, 1.0)
    rows1, _ = select_sft(combine_scores([a, b]), PROMPTS, CFG)
    rows2, _ = select_sft(combine_scores([b, a]), PROMPTS, CFG)
    assert rows1 == rows2 and rows1[0]["candidate_id"] == "p2#0"
    # Equal scores and different texts: no pair.
    pairs, dropped = select_pairs(combine_scores([a, b]), PROMPTS, CFG)
    assert pairs == [] and dropped == {"p2": "tie"}


def test_truncated_winner_loses_to_a_finished_answer():
    # The RM likes the truncated p1#0 best (5.0); the termination check fails it, so p1#1 is chosen and p1#0 rejected.
    # The verifier decides both pairs, so the RM margin (1 - 5 = -4: the RM preferred the rejected side) is kept as
    # a record and does not filter.
    # p4 (chat, no verifier): the truncated candidate fails too, the finished one stays unverifiable (None).
    generated = [
        ("p1", 0, "The answer is 4 because", "length", 5.0),
        ("p1", 1, "It is 4.", "stop", 1.0),
        ("p4", 0, "Hello! Let me tell you", "length", 2.0),
        ("p4", 1, "Hi there.", "stop", 0.0),
    ]
    rows = []
    for pid, j, text, finish, rm in generated:
        verdict = verify(text, PROMPTS[pid], finish_reason=finish)
        rows.append(cand(pid, j, text, verdict.passed, rm, verdict.reason))
    assert [r["verified"] for r in rows] == [False, True, False, None]
    scored = combine_scores(rows)
    sft_rows, _ = select_sft(scored, PROMPTS, CFG)
    assert [r["candidate_id"] for r in sft_rows] == ["p1#1", "p4#1"]
    pairs, dropped = select_pairs(scored, PROMPTS, CFG)
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [("p1#1", "p1#0"), ("p4#1", "p4#0")]
    assert [(p["margin"], p["decided_by"]) for p in pairs] == [(-4.0, "verifier"), (-2.0, "verifier")]
    assert dropped == {}


# ---------------------------------------------------------------------------------------------------- pairs


def test_length_tiebreak_takes_the_shortest_pass_among_rm_near_ties():
    tie = rm_cfg(min_margin=0.5, length_tiebreak=True)
    scored = combine_scores(
        [
            cand("p1", 0, "Two plus two makes four, so the answer is 4", True, 1.0),  # RM best, 10 words
            cand("p1", 1, "The answer is 4", True, 0.6),  # within 0.5 of the best: a near-tie, 4 words
            cand("p1", 2, "4", True, 0.3),  # 0.7 below the best: the RM is confident, not a tie
            cand("p1", 3, "5", False, 2.0),  # shortest of all, but failed
            cand("p3", 0, "It is 6", True, 0.2),
            cand("p3", 1, "6", False, -1.0),
        ]
    )
    rows, _ = select_sft(scored, PROMPTS, tie)
    assert [r["candidate_id"] for r in rows] == ["p1#1", "p3#0"]
    assert [r["candidate_id"] for r in select_sft(scored, PROMPTS, CFG)[0]] == ["p1#0", "p3#0"]  # off: the RM alone
    two = select_sft(scored, PROMPTS, rm_cfg(min_margin=0.5, length_tiebreak=True, sft_per_prompt=3))[0]
    assert [r["candidate_id"] for r in two if r["prompt_id"] == "p1"] == ["p1#1", "p1#0", "p1#2"]
    pairs, _ = select_pairs(scored, PROMPTS, tie)
    assert [(p["chosen_id"], p["rejected_id"], p["decided_by"]) for p in pairs] == [
        ("p1#1", "p1#3", "verifier"),
        ("p3#0", "p3#1", "verifier"),
    ]


def test_length_tiebreak_never_lets_a_reward_model_pair_through_below_the_margin():
    tie = rm_cfg(min_margin=0.5, length_tiebreak=True)
    # chat: the short p4#1 is a near-tie of p4#0 and becomes chosen; only p4#2 is lower, by 1.3 >= 0.5: kept
    scored = combine_scores(
        [cand("p4", 0, "a b c d", None, 2.0), cand("p4", 1, "a", None, 1.8), cand("p4", 2, "x y", None, 0.5)]
    )
    pairs, dropped = select_pairs(scored, PROMPTS, tie)
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [("p4#1", "p4#2")] and not dropped
    assert pairs[0]["margin"] == pytest.approx(1.3)
    # only near-ties: the shortest is chosen, the others are within the margin -> no pair
    scored = combine_scores([cand("p4", 0, "a b c d", None, 2.0), cand("p4", 1, "a", None, 1.8)])
    assert select_pairs(scored, PROMPTS, tie)[1] == {"p4": "tie"}


def test_length_tiebreak_keeps_the_worst_by_score_and_the_sft_floor_by_score():
    # near-ties only, chat: T is shortest and best; best_vs_worst must reject the lowest score (C, margin 1.0), not
    # the wordiest near-tie (B, margin 0.9, which the margin would drop)
    tie = rm_cfg(min_margin=1.0, length_tiebreak=True)
    scored = combine_scores(
        [
            cand("p4", 0, "short one", None, 3.0),
            cand("p4", 1, "a much longer reply with nine words in it", None, 2.1),
            cand("p4", 2, "five words in this one", None, 2.0),
        ]
    )
    pairs, dropped = select_pairs(scored, PROMPTS, tie)
    assert [(p["chosen_id"], p["rejected_id"], p["margin"]) for p in pairs] == [("p4#0", "p4#2", 1.0)] and not dropped
    # the floor looks at scores: a short near-tie under it does not hide a longer pass above it
    floor = rm_cfg(min_margin=0.5, length_tiebreak=True, sft_min_score=1.0)
    scored = combine_scores([cand("p1", 0, "The sum of two and two is 4", True, 1.2), cand("p1", 1, "4", True, 0.9)])
    rows, dropped = select_sft(scored, PROMPTS, floor)
    assert [r["candidate_id"] for r in rows] == ["p1#0"] and not dropped


def test_pairs_best_vs_worst_with_margin_all_fail_and_single():
    scored = combine_scores(
        [
            # p1: best p1#0 (3.0), worst the failed p1#2 (also 3.0 by the RM): the verifier decides, no RM margin
            # needed (margin 0.0, P = 0.5)
            cand("p1", 0, "a", True, 3.0),
            cand("p1", 1, "b", True, 1.0),
            cand("p1", 2, "c", False, 3.0),
            cand("p1", 3, "d", True, 1.0),
            # p2: rm 0.30 vs 0.29, only the RM decides: margin 0.01 < 0.5 -> dropped (z-scores put it at 2.0 before)
            cand("p2", 0, "hello", None, 0.30),
            cand("p2", 1, "hey", None, 0.29),
            # p4: rm 2.0 vs 0.5: margin 1.5 -> kept, P = sigmoid(1.5)
            cand("p4", 0, "hi there", None, 2.0),
            cand("p4", 1, "go away", None, 0.5),
            # p3: all failed
            cand("p3", 0, "7", False, 1.0),
            cand("p3", 1, "8", False, 0.0),
        ]
    )
    pairs, dropped = select_pairs(scored, PROMPTS, CFG)
    assert [(p["chosen_id"], p["rejected_id"], p["decided_by"]) for p in pairs] == [
        ("p1#0", "p1#2", "verifier"),
        ("p4#0", "p4#1", "reward model"),
    ]
    assert (pairs[0]["margin"], pairs[0]["p_chosen"]) == (0.0, 0.5)
    assert pairs[1]["margin"] == 1.5 and pairs[1]["p_chosen"] == pytest.approx(1 / (1 + math.exp(-1.5)))
    assert pairs[0]["prompt"] == PROMPTS["p1"]["messages"] and (pairs[0]["chosen"], pairs[0]["rejected"]) == ("a", "c")
    assert dropped == {"p2": "RM margin below min_margin", "p3": "no candidate passed the verifier"}
    single = combine_scores([cand("p4", 0, "hi", None, 1.0)])
    assert select_pairs(single, PROMPTS, CFG)[1] == {"p4": "fewer than 2 candidates"}


def test_near_tied_chat_candidates_make_no_pair():
    """8 chat candidates whose RM scores differ by 1e-6: z-scores gave them a normalised margin of 3.15, so a pair;
    the raw margin says the RM has no preference."""
    rows = combine_scores([cand("p4", j, f"answer {j}", None, 0.5 + j * 1e-6) for j in range(8)])
    pairs, dropped = select_pairs(rows, PROMPTS, CFG)
    assert pairs == [] and dropped == {"p4": "RM margin below min_margin"}
    sweep = margin_sweep(rows, PROMPTS, CFG)
    assert sweep["0"] == {"removed": 0, "of": 1, "removed_by_capability": {}}
    assert sweep["0.5"] == {"removed": 1, "of": 1, "removed_by_capability": {"chat": 1}}


def test_margin_sweep_describes_the_pairs_best_vs_random_drew():
    """The sweep drew its best_vs_random pairs with seed 0 whatever the round's seed: 17 pairs removed at 1.0 were
    reported as 12."""
    from dataclasses import replace

    cfg = replace(CFG, pair_strategy="best_vs_random", min_margin=1.0)
    prompts = {f"c{i}": {"capability": "chat", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(20)}
    rows = combine_scores(
        [cand(f"c{i}", j, f"reply {j}", None, x) for i in range(20) for j, x in enumerate([3.0, 2.9, 2.8, 0.0])]
    )
    for seed in (0, 7, 12):
        pairs, dropped = select_pairs(rows, prompts, cfg, seed=seed)
        removed = sum(reason == "RM margin below min_margin" for reason in dropped.values())
        assert margin_sweep(rows, prompts, cfg, seed=seed)["1"]["removed"] == removed


def test_margin_edge_cases():
    two = combine_scores([cand("p2", 0, "a", None, 3.0), cand("p2", 1, "b", None, 1.0)])  # margin exactly 2
    assert len(select_pairs(two, PROMPTS, rm_cfg(min_margin=2.0))[0]) == 1
    assert select_pairs(two, PROMPTS, rm_cfg(min_margin=2.0 + 1e-6)) == (
        [],
        {"p2": "RM margin below min_margin"},
    )
    # best tied with a second text but a third is lower: the tie is not a reason to skip; margin 2 - 0
    tied = combine_scores([cand("p2", j, t, None, s) for j, t, s in [(0, "a", 2.0), (1, "b", 2.0), (2, "c", 0.0)]])
    pairs, _ = select_pairs(tied, PROMPTS, CFG)
    assert (pairs[0]["chosen_id"], pairs[0]["rejected_id"], pairs[0]["margin"]) == ("p2#0", "p2#2", 2.0)
    # min_margin 0 still skips an exact tie
    flat = combine_scores([cand("p2", 0, "a", None, 1.0), cand("p2", 1, "b", None, 1.0)])
    assert select_pairs(flat, PROMPTS, rm_cfg(min_margin=0.0)) == ([], {"p2": "tie"})


def test_identical_texts_after_whitespace_normalisation_make_no_pair():
    scored = combine_scores([cand("p2", 0, "same  text\n", None, 5.0), cand("p2", 1, " same text", None, 0.0)])
    pairs, dropped = select_pairs(scored, PROMPTS, CFG)
    assert pairs == [] and dropped == {"p2": "chosen and rejected identical"}


def test_worst_is_the_lowest_candidate_with_a_different_text():
    # rm {3, 2, 0}: p2#2 repeats the best's text, so p2#1 is rejected: margin 3 - 2 = 1.0 >= 0.5
    scored = combine_scores(
        [cand("p2", 0, "x", None, 3.0), cand("p2", 1, "y", None, 2.0), cand("p2", 2, " x", None, 0)]
    )
    pairs, _ = select_pairs(scored, PROMPTS, CFG)
    assert pairs[0]["rejected_id"] == "p2#1" and pairs[0]["margin"] == 1.0


def test_best_vs_random_is_seeded_and_draws_only_lower_different_texts():
    rows = [
        cand("p2", 0, "a", None, 3.0),  # best
        cand("p2", 1, "b", None, 3.0),  # tie with the best: never drawn
        cand("p2", 2, "a ", None, 1.0),  # same text as the best: never drawn
        cand("p2", 3, "d", None, 1.0),
        cand("p2", 4, "e", None, 0.5),
        cand("p2", 5, "f", None, 0.0),
    ]
    cfg = rm_cfg(pair_strategy="best_vs_random", min_margin=0.0)
    drawn = {}
    for seed in range(20):
        pairs, _ = select_pairs(combine_scores(rows), PROMPTS, cfg, seed=seed)
        again, _ = select_pairs(combine_scores(rows[::-1]), PROMPTS, cfg, seed=seed)
        assert pairs == again and pairs[0]["chosen_id"] == "p2#0"
        drawn[seed] = pairs[0]["rejected_id"]
    assert set(drawn.values()) == {"p2#3", "p2#4", "p2#5"}
    with pytest.raises(ValueError, match="best_vs_best"):
        select_pairs(combine_scores(rows), PROMPTS, rm_cfg(pair_strategy="best_vs_best"))


def test_best_vs_random_with_only_identical_or_tied_others():
    cfg = rm_cfg(pair_strategy="best_vs_random", min_margin=0.0)
    identical = combine_scores([cand("p2", 0, "a", None, 3.0), cand("p2", 1, " a", None, 1.0)])
    assert select_pairs(identical, PROMPTS, cfg) == ([], {"p2": "chosen and rejected identical"})
    tied = combine_scores([cand("p2", 0, "a", None, 3.0), cand("p2", 1, "b", None, 3.0), cand("p2", 2, "a", None, 1)])
    assert select_pairs(tied, PROMPTS, cfg) == ([], {"p2": "tie"})


# ----------------------------------------------------------------------------------------------- carry-over


def sft_row(pid, cid, text, pct, **extra):
    msgs = [*PROMPTS[pid]["messages"], {"role": "assistant", "content": text}]
    return {"prompt_id": pid, "candidate_id": cid, "messages": msgs, "rm_percentile": pct, **extra}


def test_carry_over_ranks_by_percentile_in_own_round_newest_first_dedups_and_caps():
    round1 = [sft_row("p1", "r1a", "x", 0.9, score=0.1), sft_row("p2", "r1b", "y", 0.5, score=9.0)]
    round2 = [
        sft_row("p1", "r2a", " x ", 0.9, score=-3.0),  # ties r1a with the same normalised text: the newer one is kept
        sft_row("p3", "r2b", "z", 0.7, score=0.0),
        sft_row("p2", "r2c", "w", 0.5, score=-5.0),  # ties r1b (a different text): newer first
        sft_row("p4", "r2d", "v", None, score=99.0),  # no percentile (an older run's file): last
    ]
    kept = carry_over_rows([round1, round2], cap=10)
    assert [(r["candidate_id"], r["carried_from"]) for r in kept] == [
        ("r2a", 2), ("r2b", 2), ("r2c", 2), ("r1b", 1), ("r2d", 2),
    ]  # fmt: skip
    assert [r["candidate_id"] for r in carry_over_rows([round1, round2], cap=3)] == ["r2a", "r2b", "r2c"]
    assert carry_over_rows([round1, round2], cap=0) == []
    assert carry_over_rows([], cap=5) == []
    assert "carried_from" not in round1[0]  # inputs are not modified


def test_carry_over_does_not_compare_raw_scores_across_rounds():
    """Round 2's RM scores everything ~10 higher: ranked by raw score, all of round 2 came first. By percentile, a
    round-1 row at its round's top beats a round-2 row at its round's median."""
    round1 = [sft_row("p1", "r1a", "x", 1.0, score=0.5)]
    round2 = [sft_row("p3", "r2a", "z", 0.5, score=10.5)]
    assert [r["candidate_id"] for r in carry_over_rows([round1, round2], cap=1)] == ["r1a"]


def test_carry_over_skips_this_rounds_rows_and_keeps_original_round():
    round1 = [sft_row("p1", "r1a", "x", 0.2)]
    round2 = [sft_row("p1", "r1a", "x", 0.2, carried_from=1), sft_row("p3", "r2a", "z", 0.1)]
    current = [sft_row("p3", "r3a", "z", 0.0)]  # this round already has p3's "z"
    kept = carry_over_rows([round1, round2], cap=5, exclude=current)
    assert [(r["candidate_id"], r["carried_from"]) for r in kept] == [("r1a", 1)]


# ------------------------------------------------------------------------------------------------- report


def test_histogram_counts():
    assert histogram([0.0, 1.0, 2.0, 3.0, 4.0, 4.0], bins=4) == {
        "edges": [0.0, 1.0, 2.0, 3.0, 4.0],
        "counts": [1, 1, 1, 3],
    }
    assert histogram([]) == {"edges": [], "counts": []}
    h = histogram([0.5, -1.0, 2.0])
    assert len(h["edges"]) == 11 and sum(h["counts"]) == 3 and h["edges"][0] == -1.0 and h["edges"][-1] == 2.0


def test_selection_report_counts_by_capability_and_reason():
    rows = [
        cand("p1", 0, "It is 4", True, 3.0, "math: correct (4)"),
        cand("p1", 1, "It is 5", False, 1.0, "math: expected 4, got 5"),
        cand("p3", 0, "7", False, 1.0, "math: expected 6, got 7"),
        cand("p3", 1, "It is", False, 0.0, "truncated (no end-of-turn)"),
        cand("p2", 0, "hello", True, 2.0, "all 1 constraints passed"),
        cand("p2", 1, "Hello", True, 2.0, "all 1 constraints passed"),
    ]
    scored = combine_scores(rows)
    sft_rows, sft_dropped = select_sft(scored, PROMPTS, CFG)
    pairs, pair_dropped = select_pairs(scored, PROMPTS, CFG)
    carried = [{**sft_row("p4", "old", "hi", 1.0), "carried_from": 1}]
    margins = margin_sweep(scored, PROMPTS, CFG)
    report = selection_report(scored, PROMPTS, sft_rows, pairs, sft_dropped, pair_dropped, carried, margins)
    assert report["prompts"] == 4 and report["candidates"] == 6
    assert report["prompts_by_capability"] == {"chat": 1, "instruction": 1, "math": 2}
    assert report["candidates_by_capability"] == {"instruction": 2, "math": 4}
    # math: 4 verified, 1 passed; instruction 2 of 2; chat had no candidates at all
    assert report["pass_rate_by_capability"] == {"instruction": 1.0, "math": 0.25}
    # p1: pass 3.0 over fail 1.0 -> 1 of 1; p3 has no pass
    assert report["rm_pass_over_fail_auc"] == {"math": {"auc": 1.0, "pairs": 1}}
    assert report["verifier"]["math"]["failures"] == {"math: expected N, got N": 2, "truncated (no end-of-turn)": 1}
    sft = report["sft"]
    assert (sft["kept"], sft["new"], sft["prompts_kept"], sft["carried_over"]) == (3, 2, 2, 1)
    assert sft["carried_by_round"] == {"1": 1}
    assert sft["new_by_capability"] == {"instruction": 1, "math": 1}
    assert sft["dropped"] == {"no candidate left after filtering": 1, "no candidate passed the verifier": 1}
    assert sft["dropped_by_capability"] == {
        "chat": {"no candidate left after filtering": 1},
        "math": {"no candidate passed the verifier": 1},
    }
    dpo = report["dpo"]
    # p1: "It is 4" (3.0) over the failed "It is 5" (1.0): the verifier decides, RM margin 2.0
    assert (dpo["kept"], dpo["mean_margin"], dpo["decided_by"]) == (1, 2.0, {"verifier": 1})
    assert dpo["margin_sweep"]["0.5"] == {"removed": 0, "of": 0, "removed_by_capability": {}}
    assert dpo["dropped"] == {
        "no candidate left after filtering": 1,
        "no candidate passed the verifier": 1,
        "tie": 1,
    }
    margin_hist = report["histograms"]["pair_margin"]  # one value: numpy spans it +- 0.5
    assert (sum(margin_hist["counts"]), margin_hist["edges"][0], margin_hist["edges"][-1]) == (1, 1.5, 2.5)
    assert sum(report["histograms"]["rm_score"]["counts"]) == 6
    assert report["histograms"]["rm_score"]["edges"][::5] == [0.0, 1.5, 3.0]
    assert json.loads(json.dumps(report)) == report
    shuffled = combine_scores(rows[::-1])
    assert selection_report(shuffled, PROMPTS, sft_rows, pairs, sft_dropped, pair_dropped, carried, margins) == report
    # what the report reads (rounds.layout.Selection) is what this writes: a renamed key fails here, naming it
    sel = Selection.parse(report, "selection.json")
    assert (sel.sft.kept, sel.dpo.kept, sel.verifier["math"].passed) == (report["sft"]["kept"], len(pairs), 1)
    renamed = {**report, "sft": {**report["sft"], "n_kept": report["sft"]["kept"]}}
    del renamed["sft"]["kept"]
    with pytest.raises(ArtifactError, match="selection.json: sft.kept: field required"):
        Selection.check(renamed, "selection.json")


# ---------------------------------------------------------------------------------------- random control arm


def test_the_random_arm_keeps_the_counts_and_draws_among_eligible_candidates_only():
    rows = combine_scores(
        [cand("p1", j, t, v, rm) for j, (t, v, rm) in enumerate(
            [("4", True, 3.0), ("It is 4", True, -2.0), ("2+2=4", True, -1.0), ("5", False, 2.5), ("6", False, -3.0)]
        )]
        + [cand("p4", j, f"chat reply {j}", None, float(j)) for j in range(6)]
        + [{**cand("p4", 6, "off topic", True, 9.0), "verifier_flags": ["off-topic"]}]
    )  # fmt: skip
    cfg = rm_cfg(min_margin=0.5, sft_per_prompt=2)
    sft, _ = select_sft(rows, PROMPTS, cfg)
    pairs, _ = select_pairs(rows, PROMPTS, cfg)
    assert [r["candidate_id"] for r in sft] == ["p1#0", "p1#2", "p4#5", "p4#4"]  # rejection sampling: the best
    draws = [randomize_selection(rows, sft, pairs, seed=s) for s in range(20)]
    for r_sft, r_pairs in draws:
        assert Counter(r["prompt_id"] for r in r_sft) == Counter(r["prompt_id"] for r in sft)  # the same counts
        assert [p["prompt_id"] for p in r_pairs] == [p["prompt_id"] for p in pairs]
        assert all(r["candidate_id"] in {"p1#0", "p1#1", "p1#2"} or r["candidate_id"].startswith("p4#") for r in r_sft)
        assert "p4#6" not in {r["candidate_id"] for r in r_sft}  # an off-topic pass is never eligible
        by_pid = {p["prompt_id"]: p for p in r_pairs}
        assert by_pid["p1"]["decided_by"] == "verifier" and by_pid["p1"]["rejected_id"] in {"p1#3", "p1#4"}
        assert by_pid["p1"]["chosen_id"] in {"p1#0", "p1#1", "p1#2"}
        assert all(r["messages"][-1]["content"] == next(c["text"] for c in rows if c["candidate_id"] == r["candidate_id"])
                   for r in r_sft)  # fmt: skip
    picked = {r["candidate_id"] for d in draws for r in d[0]}
    assert {"p1#1", "p4#0"} <= picked  # not the ranking: low-scored eligible candidates get drawn
    assert randomize_selection(rows, sft, pairs, seed=3) == randomize_selection(rows[::-1], sft, pairs, seed=3)


def test_the_control_draws_with_its_own_seed_when_one_is_set():
    """``selection.random_seed`` moves the control arm's draws and nothing else: two control arms that differ only
    in it measure how far an arm comparison moves with the draw alone. Unset, round N draws with the run's seed + N."""
    rows = combine_scores(
        [cand("p1", j, f"{4 if j < 4 else 5} apples, reply {j}", j < 4, float(j)) for j in range(6)]
        + [cand("p4", j, f"chat reply {j}", None, float(j)) for j in range(6)]
    )
    cfg = rm_cfg(min_margin=0.0)
    sft, _ = select_sft(rows, PROMPTS, cfg)
    pairs, _ = select_pairs(rows, PROMPTS, cfg)
    assert control_seed(cfg, 0, 1) == 1 and control_seed(cfg, 5, 2) == 7  # the old seed: run seed + round
    other = replace(cfg, random_seed=1000)
    assert control_seed(other, 0, 1) == 1001 and control_seed(other, 5, 2) == 1002
    draws = {
        s: [r["candidate_id"] for r in randomize_selection(rows, sft, pairs, seed=s)[0]]
        + [p["chosen_id"] + ">" + p["rejected_id"] for p in randomize_selection(rows, sft, pairs, seed=s)[1]]
        for s in (1, 1001)
    }
    assert draws[1] != draws[1001]


def test_the_select_stage_gives_the_control_its_seed_and_the_pairs_the_runs(tmp_path, monkeypatch):
    """The select stage's wiring: with ``random_seed`` the control draws with it + round, while the other seeded draws
    (best_vs_random pairs) keep the run's seed + round; the draw seed is recorded in selection.json."""
    import reward.select
    import rounds.stages
    from alignment.config import load_config
    from rounds.layout import Round

    seen = {}

    def record(name, result):
        def fake(*args, seed=None, **kwargs):
            seen[name] = seed
            return result

        return fake

    monkeypatch.setattr(rounds.stages, "read_parquet", lambda path: [])
    monkeypatch.setattr(rounds.stages, "_prompts_by_id", lambda rnd: {})
    monkeypatch.setattr(reward.select, "select_sft", lambda *a, **k: ([], {}))
    monkeypatch.setattr(reward.select, "select_pairs", record("pairs", ([], {})))
    monkeypatch.setattr(reward.select, "randomize_selection", record("control", ([], [])))
    monkeypatch.setattr(reward.select, "margin_sweep", record("sweep", {}))
    monkeypatch.setattr(reward.select, "selection_report", lambda *a, **k: {"strategy": "random"})
    monkeypatch.setattr(rounds.stages.Selection, "check", classmethod(lambda cls, data, source: data))
    monkeypatch.setattr(rounds.stages, "write_parquet", lambda *a, **k: None)
    written = {}
    monkeypatch.setattr(rounds.stages, "write_json", lambda data, path: written.setdefault(Path(path).name, data))
    for random_seed, control in ((None, 7), (1000, 1002)):
        over = ["seed=5", "selection.strategy=random", f"selection.random_seed={random_seed or 'null'}"]
        cfg = load_config(None, over)
        seen.clear()
        written.clear()
        rounds.stages.select(Round(cfg=cfg, index=2, dir=tmp_path, start_model="base", run_dir=tmp_path))
        assert seen == {"pairs": 7, "control": control, "sweep": 7}
        assert written["selection.json"]["draw_seed"] == control


# ------------------------------------------------------------------------- rank_verified_by: likelihood (default)


def lcand(pid, j, text, verified, rm, logprob, flags=()):
    return {**cand(pid, j, text, verified, rm), "mean_logprob": logprob, "verifier_flags": list(flags)}


def test_likelihood_ranking_takes_the_most_likely_pass_and_rejects_the_most_likely_failure():
    # p1 (math): the RM likes #0 among the passes and scores #3 lowest; the model finds #1 the likelier pass and #2
    # the likelier failure. The RM ranking keeps (#0 over #3); the likelihood ranking keeps (#1 over #2).
    rows = [
        lcand("p1", 0, "4, since 2 and 2 make 4", True, 2.0, -1.5),
        lcand("p1", 1, "4", True, 0.0, -0.5),
        lcand("p1", 2, "5", False, 3.0, -0.2),
        lcand("p1", 3, "22", False, -1.0, -0.9),
    ]
    scored = combine_scores(rows)
    lik = SelectionConfig(min_margin=0.5)
    assert lik.rank_verified_by == "likelihood"  # the default
    sft, _ = select_sft(scored, PROMPTS, lik)
    assert [r["candidate_id"] for r in sft] == ["p1#1"]
    pairs, dropped = select_pairs(scored, PROMPTS, lik)
    assert [(p["chosen_id"], p["rejected_id"], p["decided_by"]) for p in pairs] == [("p1#1", "p1#2", "verifier")]
    assert pairs[0]["margin"] == -3.0  # still the RM score difference, for the record: the RM disagreed
    assert dropped == {}
    # the RM ranking, on the same records
    assert [r["candidate_id"] for r in select_sft(scored, PROMPTS, CFG)[0]] == ["p1#0"]
    assert [(p["chosen_id"], p["rejected_id"]) for p in select_pairs(scored, PROMPTS, CFG)[0]] == [("p1#0", "p1#3")]


def test_likelihood_ranking_rejects_from_the_lowest_tier_and_never_pairs_two_passes():
    # p1: pass, off-topic pass (likeliest of all), failure: the rejected side is the failure (lowest tier), not the
    # likelier off-topic pass. p3: every candidate passes: no pair, whatever the RM margin (5.0 here).
    rows = [
        lcand("p1", 0, "4", True, 0.0, -0.6),
        lcand("p1", 1, "4 apples", True, 0.0, -0.1, flags=["off-topic"]),
        lcand("p1", 2, "3", False, 0.0, -0.8),
        lcand("p3", 0, "6", True, 5.0, -0.3),
        lcand("p3", 1, "six", True, 0.0, -0.2),
    ]
    scored = combine_scores(rows)
    pairs, dropped = select_pairs(scored, PROMPTS, SelectionConfig(min_margin=0.5))
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [("p1#0", "p1#2")]
    assert dropped == {"p3": "no verifier contrast"}
    # the SFT row of p3 is the likelier pass, #1, although the RM puts #0 five points above it
    assert [r["candidate_id"] for r in select_sft(scored, PROMPTS, SelectionConfig())[0]] == ["p1#0", "p3#1"]
    # best_vs_random draws its rejected side among the lower tiers only: #1 or #2, never a pass
    drawn = {
        select_pairs(scored, PROMPTS, SelectionConfig(pair_strategy="best_vs_random", min_margin=-9.0), seed=s)[0][0][
            "rejected_id"
        ]
        for s in range(20)
    }
    assert drawn == {"p1#1", "p1#2"}


def test_likelihood_ranking_leaves_chat_to_the_reward_model():
    # p4 is chat (no verifier): ranked by RM even though #1 is likelier, and no log-prob is needed.
    rows = [cand("p4", 0, "hello there", None, 2.0), {**cand("p4", 1, "hey", None, 0.5), "mean_logprob": -0.1}]
    scored = combine_scores(rows)
    pairs, _ = select_pairs(scored, PROMPTS, SelectionConfig(min_margin=1.0))
    assert [(p["chosen_id"], p["rejected_id"], p["decided_by"]) for p in pairs] == [("p4#0", "p4#1", "reward model")]
    assert [r["candidate_id"] for r in select_sft(scored, PROMPTS, SelectionConfig())[0]] == ["p4#0"]


def test_likelihood_ranking_without_log_probs_names_the_candidate():
    scored = combine_scores([cand("p1", 0, "4", True, 1.0), lcand("p1", 1, "5", False, 0.0, -0.3)])
    with pytest.raises(ValueError, match=r"p1#0 has no mean_logprob.*rank_verified_by=reward_model"):
        select_sft(scored, PROMPTS, SelectionConfig())


def test_least_likely_ranking_takes_the_least_likely_pass_and_still_rejects_the_most_likely_failure():
    # The same records as the likelihood test above: passes #0 (-1.5) and #1 (-0.5), failures #2 (-0.2) and #3 (-0.9).
    # least_likely keeps the pass the model finds least likely (#0) for SFT and as the chosen side, and rejects the
    # failure it finds most likely (#2): the pair the model has most wrong.
    rows = [
        lcand("p1", 0, "4, since 2 and 2 make 4", True, 2.0, -1.5),
        lcand("p1", 1, "4", True, 0.0, -0.5),
        lcand("p1", 2, "5", False, 3.0, -0.2),
        lcand("p1", 3, "22", False, -1.0, -0.9),
    ]
    scored = combine_scores(rows)
    least = SelectionConfig(min_margin=0.5, rank_verified_by="least_likely")
    assert [r["candidate_id"] for r in select_sft(scored, PROMPTS, least)[0]] == ["p1#0"]
    pairs, dropped = select_pairs(scored, PROMPTS, least)
    assert [(p["chosen_id"], p["rejected_id"], p["decided_by"]) for p in pairs] == [("p1#0", "p1#2", "verifier")]
    assert dropped == {}
    # two SFT rows per prompt: the least likely pass first
    two = replace(least, sft_per_prompt=2)
    assert [(r["candidate_id"], r["rank"]) for r in select_sft(scored, PROMPTS, two)[0]] == [("p1#0", 0), ("p1#1", 1)]
    # like likelihood, two passes are never paired and chat stays with the reward model
    rows3 = [
        lcand("p3", 0, "6", True, 5.0, -0.3),
        lcand("p3", 1, "six", True, 0.0, -0.2),
        cand("p4", 0, "hello there", None, 2.0),
        {**cand("p4", 1, "hey", None, 0.5), "mean_logprob": -3.0},
    ]
    scored3 = combine_scores(rows3)
    pairs3, dropped3 = select_pairs(scored3, PROMPTS, least)
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs3] == [("p4#0", "p4#1")]
    assert dropped3 == {"p3": "no verifier contrast"}
    assert [r["candidate_id"] for r in select_sft(scored3, PROMPTS, least)[0]] == ["p3#0", "p4#0"]


def test_least_likely_partial_credit_keeps_the_share_first_and_rejects_the_likeliest_of_the_least():
    # Nothing passed: the failure that met the most checks is chosen (the less likely of two that met as much), the
    # rejected side is the likeliest failure among those that met the least.
    rows = [
        {**lcand("p2", 0, "a", False, 0.0, -0.4), "verifier_credit": 0.5},
        {**lcand("p2", 1, "b", False, 0.0, -1.2), "verifier_credit": 0.5},
        {**lcand("p2", 2, "c", False, 0.0, -0.3), "verifier_credit": 0.0},
        {**lcand("p2", 3, "d", False, 0.0, -0.9), "verifier_credit": 0.0},
    ]
    scored = combine_scores(rows)
    cfg = SelectionConfig(rank_verified_by="least_likely", partial_credit=True)
    pairs, _ = select_pairs(scored, PROMPTS, cfg)
    assert [(p["chosen_id"], p["rejected_id"], p["decided_by"]) for p in pairs] == [("p2#1", "p2#2", "partial credit")]
    lik, _ = select_pairs(scored, PROMPTS, replace(cfg, rank_verified_by="likelihood"))
    assert [(p["chosen_id"], p["rejected_id"]) for p in lik] == [("p2#0", "p2#2")]


def test_random_control_is_the_same_draw_under_either_likelihood_ranking_where_the_counts_agree():
    # The control keeps only rejection sampling's counts; where the direction of the likelihood ranking does not
    # change them (every pair a pass over a failure), its picks are the same.
    rows = [
        lcand("p1", 0, "4", True, 0.0, -0.6),
        lcand("p1", 1, "2+2=4", True, 1.0, -0.9),
        lcand("p1", 2, "3", False, 0.0, -0.8),
        lcand("p1", 3, "5", False, 0.0, -0.2),
        lcand("p3", 0, "6", True, 5.0, -0.3),
        lcand("p3", 1, "six", True, 0.0, -0.2),
    ]
    scored = combine_scores(rows)
    drawn = []
    for how in ("likelihood", "least_likely"):
        cfg = SelectionConfig(rank_verified_by=how)
        sft, pairs = select_sft(scored, PROMPTS, cfg)[0], select_pairs(scored, PROMPTS, cfg)[0]
        drawn.append(randomize_selection(scored, sft, pairs, seed=3))
    assert [r["candidate_id"] for r in drawn[0][0]] != [] and drawn[0] == drawn[1]


def test_least_likely_control_copies_its_own_counts_where_the_rm_margin_decides():
    # No failure: the rejected side is the off-topic pass, and the RM margin decides. The likeliest pass (#0) clears
    # min_margin over it (3.0), the least likely one (#1) does not (0.5): the pair is kept by one ranking and dropped by
    # the other, and each control copies its own arm's count.
    rows = [
        lcand("p1", 0, "4", True, 3.0, -0.2),
        lcand("p1", 1, "2+2 is 4", True, 0.5, -1.0),
        lcand("p1", 2, "4 apples", True, 0.0, -0.5, flags=["off-topic"]),
    ]
    scored = combine_scores(rows)
    counts = {}
    for how in ("likelihood", "least_likely"):
        cfg = SelectionConfig(rank_verified_by=how)
        (sft, _), (pairs, dropped) = select_sft(scored, PROMPTS, cfg), select_pairs(scored, PROMPTS, cfg)
        _, drawn = randomize_selection(scored, sft, pairs, seed=3)
        counts[how] = (len(pairs), len(drawn), dropped)
    assert counts == {
        "likelihood": (1, 1, {}),
        "least_likely": (0, 0, {"p1": "RM margin below min_margin"}),
    }


def test_random_control_keeps_the_likelihood_rankings_counts():
    rows = [
        lcand("p1", 0, "4", True, 0.0, -0.6),
        lcand("p1", 1, "2+2=4", True, 1.0, -0.9),
        lcand("p1", 2, "3", False, 0.0, -0.8),
        lcand("p1", 3, "5", False, 0.0, -0.2),
        lcand("p3", 0, "6", True, 5.0, -0.3),
        lcand("p3", 1, "six", True, 0.0, -0.2),
    ]
    scored = combine_scores(rows)
    cfg = SelectionConfig()
    sft, pairs = select_sft(scored, PROMPTS, cfg)[0], select_pairs(scored, PROMPTS, cfg)[0]
    rsft, rpairs = randomize_selection(scored, sft, pairs, seed=3)
    assert Counter(r["prompt_id"] for r in rsft) == Counter({"p1": 1, "p3": 1})
    assert [p["prompt_id"] for p in rpairs] == ["p1"]  # p3 has no verifier contrast in either arm
    assert rpairs[0]["chosen_id"] in {"p1#0", "p1#1"} and rpairs[0]["rejected_id"] in {"p1#2", "p1#3"}


def test_random_control_draws_the_rejected_side_from_rejection_samplings_rejected_tier():
    # p1: two on-topic passes and an off-topic one. Rejection sampling pairs the likelier pass over the off-topic
    # pass (RM margin 2.0); the control may draw either pass as chosen, but its rejected side is always the
    # off-topic one, never the other pass (the old pool was "any other text").
    rows = [
        lcand("p1", 0, "4", True, 2.0, -0.2),
        lcand("p1", 1, "2+2=4", True, 2.0, -0.6),
        lcand("p1", 2, "4 apples", True, 0.0, -0.4, flags=["off-topic"]),
    ]
    scored = combine_scores(rows)
    cfg = SelectionConfig(min_margin=1.0)
    sft, pairs = select_sft(scored, PROMPTS, cfg)[0], select_pairs(scored, PROMPTS, cfg)[0]
    assert [(p["chosen_id"], p["rejected_id"], p["decided_by"]) for p in pairs] == [("p1#0", "p1#2", "reward model")]
    drawn = {
        (p["chosen_id"], p["rejected_id"]) for s in range(30) for p in randomize_selection(scored, sft, pairs, s)[1]
    }
    assert drawn == {("p1#0", "p1#2"), ("p1#1", "p1#2")}


# --------------------------------------------------------------------------------------------- partial credit


def ccand(pid, j, text, verified, logprob, credit, rm=0.0):
    return {**lcand(pid, j, text, verified, rm, logprob), "verifier_credit": credit}


def test_partial_credit_pairs_a_prompt_nothing_passed_by_the_share_of_constraints_met():
    # p2 (instruction, two constraints): no pass. #1 meets one constraint, #0 (the likeliest) and #2 none.
    # Without partial credit: no pair. With it: #1 over the likelier of the two that met nothing (#0); the SFT set
    # stays passes only.
    rows = combine_scores(
        [ccand("p2", 0, "none met", False, -0.3, 0.0), ccand("p2", 1, "one met", False, -0.9, 0.5),
         ccand("p2", 2, "none met either", False, -0.5, 0.0)]
    )  # fmt: skip
    off = SelectionConfig()
    assert off.partial_credit is False  # the default
    assert select_pairs(rows, PROMPTS, off) == ([], {"p2": "no candidate passed the verifier"})
    on = SelectionConfig(partial_credit=True)
    pairs, dropped = select_pairs(rows, PROMPTS, on)
    assert [(p["chosen_id"], p["rejected_id"], p["decided_by"]) for p in pairs] == [("p2#1", "p2#0", "partial credit")]
    assert dropped == {}
    assert select_sft(rows, PROMPTS, on) == ([], {"p2": "no candidate passed the verifier"})
    # every failure met as much: no pair; under the RM ranking too, whatever the RM scores
    flat = combine_scores([ccand("p2", 0, "a", False, -0.3, 0.5), ccand("p2", 1, "b", False, -0.9, 0.5)])
    assert select_pairs(flat, PROMPTS, on)[1] == {"p2": "no candidate passed the verifier"}
    rm_rows = combine_scores(
        [ccand("p2", 0, "none met", False, -0.3, 0.0, rm=3.0), ccand("p2", 1, "one met", False, -0.9, 0.5, rm=-1.0)]
    )
    rm_pairs, _ = select_pairs(rm_rows, PROMPTS, SelectionConfig(partial_credit=True, rank_verified_by="reward_model"))
    assert [(p["chosen_id"], p["rejected_id"], p["decided_by"]) for p in rm_pairs] == [
        ("p2#1", "p2#0", "partial credit")
    ]


def test_partial_credit_rejects_the_failure_that_met_the_least():
    # a pass, a likely failure that met half, a less likely one that met nothing: best_vs_worst rejects the likeliest
    # failure without partial credit, the one that met the least with it
    rows = combine_scores(
        [ccand("p2", 0, "pass", True, -0.5, 1.0), ccand("p2", 1, "half", False, -0.2, 0.5),
         ccand("p2", 2, "nothing", False, -0.8, 0.0)]
    )  # fmt: skip
    assert select_pairs(rows, PROMPTS, SelectionConfig())[0][0]["rejected_id"] == "p2#1"
    pairs, _ = select_pairs(rows, PROMPTS, SelectionConfig(partial_credit=True))
    assert [(p["chosen_id"], p["rejected_id"], p["decided_by"]) for p in pairs] == [("p2#0", "p2#2", "verifier")]


def test_the_control_draws_a_partial_credit_pair_among_failures_at_random():
    # rejection sampling pairs #1 (met half) over #0 (met nothing); the control, which has no ranking, draws both
    # sides among the failures: sometimes the one that met less is chosen
    rows = combine_scores(
        [ccand("p2", 0, "none met", False, -0.3, 0.0), ccand("p2", 1, "one met", False, -0.9, 0.5),
         ccand("p2", 2, "none met either", False, -0.5, 0.0)]
    )  # fmt: skip
    cfg = SelectionConfig(partial_credit=True)
    pairs = select_pairs(rows, PROMPTS, cfg)[0]
    drawn = {(p["chosen_id"], p["rejected_id"]) for s in range(40) for p in randomize_selection(rows, [], pairs, s)[1]}
    assert {c for c, _ in drawn} == {"p2#0", "p2#1", "p2#2"} and all(c != r for c, r in drawn)
    assert all(
        p["decided_by"] == "partial credit" for s in range(5) for p in randomize_selection(rows, [], pairs, s)[1]
    )
