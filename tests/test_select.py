"""Rejection sampling over hand-built records; every expected value is worked out in the comments."""

from reward.select import combine_scores, select_pairs, select_sft

PROMPTS = {
    "p1": {"prompt_id": "p1", "capability": "math", "messages": [{"role": "user", "content": "2+2?"}]},
    "p2": {"prompt_id": "p2", "capability": "instruction", "messages": [{"role": "user", "content": "hi"}]},
    "p3": {"prompt_id": "p3", "capability": "math", "messages": [{"role": "user", "content": "3+3?"}]},
}


def cand(pid, j, text, verified, rm):
    return {"prompt_id": pid, "candidate_id": f"{pid}#{j}", "text": text, "verified": verified, "rm_score": rm}


def test_failing_candidates_rank_below_all_passing_ones():
    # RM range is 3.0 - (-1.0) = 4.0, so the penalty is 5.0: the failed 3.0 becomes -2.0, below the passing -1.0.
    rows = combine_scores(
        [cand("p1", 0, "4", True, -1.0), cand("p1", 1, "5", False, 3.0), cand("p1", 2, "x", None, 0.5)]
    )
    scores = {r["candidate_id"]: r["score"] for r in rows}
    assert scores == {"p1#0": -1.0, "p1#1": -2.0, "p1#2": 0.5}


def test_sft_takes_best_of_k_and_skips_prompts_where_all_fail():
    scored = combine_scores(
        [
            cand("p1", 0, "4", True, 0.1),
            cand("p1", 1, "The answer is 4", True, 0.9),
            cand("p1", 2, "5", False, 2.0),
            cand("p3", 0, "7", False, 1.0),
            cand("p3", 1, "8", False, 0.0),
        ]
    )
    rows, dropped = select_sft(scored, PROMPTS)
    assert [r["candidate_id"] for r in rows] == ["p1#1"]
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": "The answer is 4"}
    assert rows[0]["messages"][:-1] == PROMPTS["p1"]["messages"]
    assert dropped == {"no candidate passed the verifier": 1}


def test_pairs_best_vs_worst_with_margin_ties_identical_and_single():
    scored = combine_scores(
        [
            # p1: best p1#1 (0.9), worst p1#2 (failed: 2.0 - penalty); margin = 0.9 - (2.0 - 3.0) = 1.9 (range 2.0-(-0.5)=2.5 -> penalty 3.5)
            cand("p1", 0, "4", True, 0.1),
            cand("p1", 1, "The answer is 4", True, 0.9),
            cand("p1", 2, "5", False, 2.0),
            # p2: margin 0.2 < 0.5 -> dropped
            cand("p2", 0, "hello", None, 0.3),
            cand("p2", 1, "hey", None, 0.1),
            # p3: a single candidate -> dropped
            cand("p3", 0, "6", True, -0.5),
        ]
    )
    pairs, dropped = select_pairs(scored, PROMPTS, min_margin=0.5)
    assert len(pairs) == 1
    p = pairs[0]
    assert (p["chosen_id"], p["rejected_id"]) == ("p1#1", "p1#2")
    assert abs(p["margin"] - (0.9 - (2.0 - 3.5))) < 1e-9
    assert p["prompt"] == PROMPTS["p1"]["messages"]
    assert dropped == {"margin below min_margin": 1, "fewer than 2 candidates": 1}


def test_identical_texts_after_whitespace_normalisation_make_no_pair():
    scored = combine_scores([cand("p2", 0, "same  text\n", None, 5.0), cand("p2", 1, " same text", None, 0.0)])
    pairs, dropped = select_pairs(scored, PROMPTS, min_margin=0.5)
    assert pairs == [] and dropped == {"chosen and rejected identical": 1}


def test_ties_break_on_candidate_id_not_input_order():
    a, b = cand("p2", 0, "a", None, 1.0), cand("p2", 1, "b", None, 1.0)
    rows1, _ = select_sft(combine_scores([a, b]), PROMPTS)
    rows2, _ = select_sft(combine_scores([b, a]), PROMPTS)
    assert rows1 == rows2 and rows1[0]["candidate_id"] == "p2#0"
    pairs, dropped = select_pairs(combine_scores([a, b]), PROMPTS, min_margin=0.5)
    assert pairs == [] and dropped == {"margin below min_margin": 1}
