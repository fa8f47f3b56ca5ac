"""Reward model: rankings to pairs, verifier pairs, the margin option, the accuracy floor, and batch-invariant scoring.

Training and reproducibility of the RM are covered in test_training.py; model tests here use the tiny model only.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path

import pytest

from alignment.config import RewardModelConfig
from reward.reward_model import (
    VERIFIER_MARGIN,
    RewardModelTooWeak,
    _to_trainer_rows,
    check_heldout_accuracy,
    pair_margin,
    ranking_to_pairs,
    verifier_pairs,
)
from reward.seed_preferences import load_seed_pairs, make_seed_pairs
from reward.select import normalise_text
from synth_data.suite_format import SuiteFormatError

PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]


def _pairs(ranking, **kwargs) -> list[tuple[str, str, str]]:
    found = ranking_to_pairs(PROMPT, ranking, pair_id_prefix="p:", capability="math", source="s", **kwargs)
    return [(p["pair_id"], p["chosen"], p["rejected"]) for p in found]


# ---------------------------------------------------------------------------------------------- rankings


def test_ranking_of_three_becomes_all_three_pairs():
    found = ranking_to_pairs(PROMPT, ["a", "b", "c"], pair_id_prefix="p:", capability="math", source="seed")
    assert [(p["pair_id"], p["chosen"], p["rejected"]) for p in found] == [
        ("p:0>1", "a", "b"),
        ("p:0>2", "a", "c"),
        ("p:1>2", "b", "c"),
    ]
    assert all(set(p) == {"pair_id", "capability", "messages", "chosen", "rejected", "source"} for p in found)
    assert all(p["messages"] == PROMPT and p["capability"] == "math" and p["source"] == "seed" for p in found)


def test_ranking_of_four_with_a_tie_never_pairs_within_the_tie():
    # a > (b = c) > d: 6 pairs of 4 responses minus the tied b/c pair.
    assert _pairs(["a", ["b", "c"], "d"]) == [
        ("p:0>1", "a", "b"),
        ("p:0>2", "a", "c"),
        ("p:0>3", "a", "d"),
        ("p:1>3", "b", "d"),
        ("p:2>3", "c", "d"),
    ]
    # A tie at the top: (a = b) > c > d.
    assert _pairs([["a", "b"], "c", "d"]) == [
        ("p:0>2", "a", "c"),
        ("p:0>3", "a", "d"),
        ("p:1>2", "b", "c"),
        ("p:1>3", "b", "d"),
        ("p:2>3", "c", "d"),
    ]


def test_ranking_margins_ids_and_degenerate_cases():
    found = ranking_to_pairs(
        PROMPT,
        ["a", ["b", "c"], "d"],
        pair_id_prefix="",
        capability="chat",
        source="s",
        response_ids=["x", ["y", "z"], "w"],
        margin_per_rank=0.5,
    )
    assert {p["pair_id"]: p["margin"] for p in found} == {"x>y": 0.5, "x>z": 0.5, "x>w": 1.0, "y>w": 0.5, "z>w": 0.5}
    assert "margin" not in ranking_to_pairs(PROMPT, ["a", "b"], pair_id_prefix="", capability="chat", source="s")[0]
    assert _pairs(["same", " same ", "other"]) == [("p:0>2", "same", "other"), ("p:1>2", " same ", "other")]
    assert _pairs([["a", "b"]]) == []  # a single tie group ranks nothing
    with pytest.raises(ValueError, match="same shape"):
        _pairs(["a", "b"], response_ids=["x"])
    with pytest.raises(ValueError, match="non-empty list"):
        _pairs(["a", []])


# ----------------------------------------------------------------------------------------- verifier pairs


def _cand(pid: str, j: int, text: str, verified: bool | None) -> dict:
    return {"prompt_id": pid, "candidate_id": f"{pid}#{j}", "text": text, "verified": verified}


PROMPTS = {p: {"capability": "math", "messages": [{"role": "user", "content": p}]} for p in ("a", "b")}
CANDS = [
    _cand("a", 0, "p0", True),
    _cand("a", 1, "f1", False),
    _cand("a", 2, "p2", True),
    _cand("a", 3, "f3", False),
    _cand("a", 4, "f4", False),
    _cand("a", 5, "none", None),  # no verdict: in no pair
    _cand("b", 0, "q", True),
    _cand("b", 1, "r", False),
]


def test_verifier_pairs_rank_every_pass_over_every_fail_with_stable_ids():
    pairs = verifier_pairs(PROMPTS, CANDS, source="round-2", max_per_prompt=None)
    ids = [p["pair_id"] for p in pairs]
    # Diagonal order: pass i with fail i, then fail i+1, ...; every pass x fail pair exactly once.
    assert ids == ["a#0>a#1", "a#2>a#3", "a#0>a#3", "a#2>a#4", "a#0>a#4", "a#2>a#1", "b#0>b#1"]
    assert all(p["margin"] == VERIFIER_MARGIN and p["source"] == "round-2" for p in pairs)
    assert all(p["chosen"].startswith(("p", "q")) for p in pairs)
    # The same candidates in any order give the same pairs; the cap keeps the first of that order.
    shuffled = CANDS[:]
    random.Random(0).shuffle(shuffled)
    assert verifier_pairs(PROMPTS, shuffled, source="round-2", max_per_prompt=None) == pairs
    capped = verifier_pairs(PROMPTS, shuffled, source="round-2")
    assert [p["pair_id"] for p in capped] == ["a#0>a#1", "a#2>a#3", "b#0>b#1"]


# ----------------------------------------------------------------------------------------------- margin


def test_margin_column_only_with_use_margin():
    seed, verified = make_seed_pairs(0)[0], verifier_pairs(PROMPTS, CANDS, source="round-1")[0]
    explicit = {**seed, "pair_id": "m", "margin": 2.5}
    legacy = {k: v for k, v in verified.items() if k != "margin"}  # read back from a parquet without the column
    pairs = [seed, verified, explicit, legacy]
    assert [pair_margin(p) for p in pairs] == [0.0, VERIFIER_MARGIN, 2.5, VERIFIER_MARGIN]

    off = _to_trainer_rows(pairs, use_margin=False)
    assert all(set(r) == {"chosen", "rejected"} for r in off)
    assert off[0]["chosen"] == [*seed["messages"], {"role": "assistant", "content": seed["chosen"]}]
    on = _to_trainer_rows(pairs, use_margin=True)
    assert [r["margin"] for r in on] == [0.0, 1.0, 2.5, 1.0]

    from datasets import Dataset

    assert "margin" not in Dataset.from_list(off).column_names
    assert "margin" in Dataset.from_list(on).column_names


def test_reward_trainer_receives_the_margins(tiny_model_dir, tmp_path, monkeypatch):
    import trl

    from reward.reward_model import train_reward_model

    seen: list[list[float]] = []
    original = trl.RewardTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen.append(inputs["margin"].tolist() if "margin" in inputs else None)
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(trl.RewardTrainer, "compute_loss", spy)
    pairs = [
        {"pair_id": f"x{i}", "messages": PROMPT, "chosen": f"It is 4 ({i}).", "rejected": "No.", "margin": 0.5 * i}
        for i in range(4)
    ]
    cfg = RewardModelConfig(num_layers=None, batch_size=4, heldout_fraction=0.0, precision="fp32", use_margin=True)
    m = train_reward_model(pairs, tiny_model_dir, cfg, tmp_path / "rm", seed=0, device="cpu", work_dir=tmp_path / "w")
    assert m["use_margin"] is True and m["train_pairs"] == 4
    assert seen and all(s is not None for s in seen)
    assert sorted(v for s in seen for v in s) == [0.0, 0.5, 1.0, 1.5]


# ------------------------------------------------------------------------------------------------ floor


def test_heldout_accuracy_floor():
    check_heldout_accuracy({"heldout_accuracy": 0.4, "heldout_pairs": 50}, None)  # no floor
    check_heldout_accuracy({"heldout_accuracy": 0.55, "heldout_pairs": 50}, 0.55)  # at the floor passes
    check_heldout_accuracy({"heldout_accuracy": None, "heldout_pairs": 0}, 0.55)  # nothing to measure

    with pytest.raises(RewardModelTooWeak) as info:
        check_heldout_accuracy({"heldout_accuracy": 0.48, "heldout_pairs": 50}, 0.55)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "0.4800" in msg and "0.55" in msg and "50 held-out pairs" in msg
    assert "reward_model.min_heldout_accuracy" in msg and "noisy" not in msg

    with pytest.raises(RewardModelTooWeak, match=r"Only 4 held-out pairs: the estimate is noisy") as info:
        check_heldout_accuracy({"heldout_accuracy": 0.25, "heldout_pairs": 4}, 0.55)
    assert "reward_model.min_heldout_accuracy" in str(info.value)


def test_heldout_floor_with_a_confidence_stops_only_a_significantly_weaker_rm(caplog):
    """A default round 2 measured 11 of 23 held-out pairs right (0.478, 95% interval about 0.29-0.67) and stopped on
    the point estimate; with reward_model.heldout_confidence the floor stops a round only when the whole interval is
    below it, and says so when the point estimate alone is below."""
    with caplog.at_level(logging.WARNING, logger="reward.reward_model"):
        check_heldout_accuracy({"heldout_accuracy": 11 / 23, "heldout_pairs": 23}, 0.55, confidence=0.95)
    assert "below the floor 0.55 but not significantly" in caplog.text and "23 held-out pairs" in caplog.text
    with pytest.raises(RewardModelTooWeak, match=r"95% interval \[0\.1\d+, 0\.3\d+\] is below the floor 0.55"):
        check_heldout_accuracy({"heldout_accuracy": 0.25, "heldout_pairs": 60}, 0.55, confidence=0.95)
    assert RewardModelConfig().heldout_confidence == 0.95


# ------------------------------------------------------------------------------------------ seed rankings


def test_seed_file_rankings_become_pairs(tmp_path: Path):
    good = make_seed_pairs(0)[0]
    base = {k: v for k, v in good.items() if k not in ("chosen", "rejected")}
    ranking = {**base, "pair_id": "r1", "ranking": ["best", ["tie a", "tie b"], "worst"]}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(ranking) + "\n", encoding="utf-8")
    pairs = load_seed_pairs(path)
    assert pairs[0] == good
    assert [(p["pair_id"], p["chosen"], p["rejected"]) for p in pairs[1:]] == [
        ("r1:0>1", "best", "tie a"),
        ("r1:0>2", "best", "tie b"),
        ("r1:0>3", "best", "worst"),
        ("r1:1>3", "tie a", "worst"),
        ("r1:2>3", "tie b", "worst"),
    ]
    assert all(p["source"] == good["source"] and p["messages"] == good["messages"] for p in pairs[1:])
    assert all(pair_margin(p) == 0.0 for p in pairs)  # seed rankings: plain Bradley-Terry

    cases = [
        ({**ranking, "ranking": ["only one"]}, "at least two"),
        ({**ranking, "ranking": ["a", []]}, r"'ranking'\[1\]"),
        ({**ranking, "ranking": ["a", ["b", "a "]]}, "same response twice"),
        ({**ranking, "chosen": "x"}, "not both"),
    ]
    for bad, reason in cases:
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
        with pytest.raises(SuiteFormatError, match=reason) as info:
            load_seed_pairs(path)
        assert f"{path}:2: " in str(info.value)


# ----------------------------------------------------------------------------------------------- scoring


@pytest.fixture(scope="module")
def tiny_rm_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny Llama with a random 1-logit score head (large weights, so different texts score clearly apart)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-rm")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1, dtype=torch.float32)
    with torch.no_grad():
        model.score.weight.normal_(0.0, 1.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return str(out)


def _conv(text: str) -> list[dict]:
    return [*PROMPT, {"role": "assistant", "content": text}]


def test_score_is_independent_of_batch_composition(tiny_rm_dir):
    from reward.reward_model import RewardScorer

    scorer = RewardScorer(tiny_rm_dir, device="cpu", batch_size=16)
    target = _conv("The answer is 4.")
    shorts = [_conv(t) for t in ("4", "Four.", "It is 4!", "2+2=4")]
    long = _conv("Let me explain this carefully, step by step, with many words. " * 30)
    assert len(scorer._encode(long)) > 5 * len(scorer._encode(target))

    alone = scorer.score([target])[0]
    with_shorts = scorer.score([*shorts[:2], target, *shorts[2:]])
    with_long = scorer.score([long, target, *shorts])
    assert with_shorts[2] == pytest.approx(alone, abs=1e-4)
    assert with_long[1] == pytest.approx(alone, abs=1e-4)  # padded to the long one's length
    assert with_long[2:] == pytest.approx(with_shorts[:2] + with_shorts[3:], abs=1e-4)
    assert scorer.score([long])[0] == pytest.approx(with_long[0], abs=1e-4)
    scorer.batch_size = 2
    assert scorer.score([long, target, *shorts]) == pytest.approx(with_long, abs=1e-4)
    # The scores are not all the same number (the comparisons above would be vacuous).
    assert max(with_long) - min(with_long) > 1e-2


def test_score_is_read_at_the_last_real_token_and_padding_does_not_move_it(tiny_rm_dir):
    import torch

    from reward.reward_model import RewardScorer

    # fp32 like the direct model calls below (precision auto is bf16 autocast on a CPU with native bf16)
    scorer = RewardScorer(tiny_rm_dir, device="cpu", batch_size=16, precision="fp32")
    assert scorer.tokenizer.padding_side == "right"  # the scorer always right-pads
    model, pad = scorer.model, scorer.tokenizer.pad_token_id
    conv = _conv("The answer is 4.")
    ids = scorer._encode(conv)
    score = scorer.score([conv])[0]

    with torch.inference_mode():
        hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state
        per_position = model.score(hidden)[0, :, 0].tolist()
        model.config.pad_token_id = pad
        padded = model(
            input_ids=torch.tensor([ids + [pad] * 9]), attention_mask=torch.tensor([[1] * len(ids) + [0] * 9])
        ).logits[0, 0]
    assert score == pytest.approx(per_position[-1], abs=1e-4)
    assert abs(score - per_position[-2]) > 1e-3  # a different position would read a different value
    assert float(padded) == pytest.approx(score, abs=1e-4)


def test_text_containing_the_pad_token_still_scores_at_its_last_token(tiny_rm_dir):
    from reward.reward_model import RewardScorer

    scorer = RewardScorer(tiny_rm_dir, device="cpu", batch_size=16)
    pad_text = scorer.tokenizer.pad_token
    tricky = _conv(f"Four {pad_text} is the answer.")
    assert scorer.tokenizer.pad_token_id in scorer._encode(tricky)
    others = [_conv("4"), _conv("A much longer answer that needs padding in a batch. " * 5)]
    alone = scorer.score([tricky])[0]
    assert scorer.score([others[0], tricky, others[1]])[1] == pytest.approx(alone, abs=1e-4)


def test_heldout_split_shares_no_prompt_or_response_with_training():
    """Split by pair id, 5 of 23 held-out seed pairs shared a prompt with training pairs and 12 a rejected text: the
    held-out accuracy mostly measured memorised templates. Groups linked by a prompt or response text now go to one
    side."""
    from reward.reward_model import _prompt_key, split_heldout
    from reward.seed_preferences import load_seed_pairs

    pairs = load_seed_pairs()
    train, held = split_heldout(pairs, 0.15)
    assert len(train) + len(held) == len(pairs) and len(held) >= 8
    train_prompts = {_prompt_key(p) for p in train}
    train_texts = {normalise_text(p[s]) for p in train for s in ("chosen", "rejected")}
    assert not any(_prompt_key(p) in train_prompts for p in held)
    assert not any(normalise_text(p[s]) in train_texts for p in held for s in ("chosen", "rejected"))
    assert split_heldout(pairs[::-1], 0.15)[1] == held[::-1]  # the same side whatever the order


def test_heldout_split_is_stratified_by_source():
    """A round's verifier pairs (a few dozen prompts among hundreds of seed pairs) get held-out pairs of their own:
    hashing groups into one pool left round 1's 30 verifier pairs with none held out, so no per-source accuracy."""
    from reward.reward_model import split_heldout

    def pair(src: str, i: int, j: int) -> dict:
        messages = [{"role": "user", "content": f"{src} question {i}"}]
        return {
            "pair_id": f"{src}{i}>{j}",
            "messages": messages,
            "chosen": f"{src} good {i}",
            "rejected": f"{src} bad {i}.{j}",
            "source": src,
        }

    pairs = [pair("seed", i, 0) for i in range(200)] + [pair("round-1", i, j) for i in range(12) for j in range(2)]
    # a synthetic pair built from a round-1 reply joins that reply's group, whatever the group's side
    pairs.append({**pair("round-1", 3, 9), "pair_id": "synthetic:noise:0", "source": "synthetic:noise"})
    train, held = split_heldout(pairs, 0.1)
    held_sources = Counter(p["source"] for p in held)
    assert held_sources["seed"] == 20  # round(0.1 * 200) groups of one pair each
    assert held_sources["round-1"] == 2  # one of 12 groups (round(1.2)), both of its pairs
    held_prompts = {p["messages"][0]["content"] for p in held}
    assert not any(p["messages"][0]["content"] in held_prompts for p in train)
    few = [pair("round-2", i, 0) for i in range(4)]  # under 1 / fraction groups: nothing held out
    assert split_heldout(few, 0.1)[1] == []


def test_synthetic_pairs_do_not_move_real_pairs_across_the_split():
    """An "other-prompt" synthetic pair has another prompt's reply as its rejected side: linking groups through it
    merged unrelated prompts into components of 36-44 pairs, so the held-out share of the seed pairs swung between
    6% and 25% with the synthetic seed. The real pairs' split must not depend on the synthetic pairs at all."""
    from reward.reward_model import _prompt_key, split_heldout
    from reward.seed_preferences import load_seed_pairs
    from reward.synthetic import synthetic_pairs

    seed = load_seed_pairs()
    _, held_alone = split_heldout(seed, 0.1)
    good = [{"messages": p["messages"], "reply": p["chosen"], "capability": p["capability"]} for p in seed]
    for s in range(4):
        mixed = seed + synthetic_pairs(good, 48, seed=s)
        train, held = split_heldout(mixed, 0.1)
        assert [p for p in held if p["source"] == "seed"] == held_alone
        held_texts = {normalise_text(p[k]) for p in held for k in ("chosen", "rejected")}
        held_prompts = {_prompt_key(p) for p in held}
        for p in train:
            assert _prompt_key(p) not in held_prompts
            assert not {normalise_text(p["chosen"]), normalise_text(p["rejected"])} & held_texts


LLAMA3_STYLE_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_rm_with_pad_equal_to_eos_trains_and_scores_at_the_same_position(tiny_model_dir, tmp_path):
    """A Llama-3-style tokenizer: pad == eos, and the template ends every turn with eos (no newline after it).
    TRL's RewardTrainer pooled at the token before the final eos (the rightmost non-pad), the scorer at the eos: the
    head was scored where it was never trained. The RM now gets a pad token of its own."""
    import shutil

    import torch
    from transformers import AutoTokenizer

    from reward.reward_model import RM_PAD_TOKEN, RewardScorer, train_reward_model

    base = tmp_path / "pad-is-eos"
    shutil.copytree(tiny_model_dir, base)
    tok = AutoTokenizer.from_pretrained(base)
    tok.pad_token = tok.eos_token
    tok.chat_template = LLAMA3_STYLE_TEMPLATE
    tok.save_pretrained(base)
    ids = tok.apply_chat_template(_conv("4"), tokenize=True, return_dict=True)["input_ids"]
    assert ids[-1] == tok.eos_token_id == tok.pad_token_id  # the trap this test is about

    pairs = [
        {"pair_id": f"x{i}", "messages": PROMPT, "chosen": f"It is 4 ({i}).", "rejected": "No.", "source": "seed"}
        for i in range(4)
    ]
    cfg = RewardModelConfig(num_layers=None, batch_size=4, heldout_fraction=0.0, precision="fp32", max_steps=1)
    metrics = train_reward_model(pairs, str(base), cfg, tmp_path / "rm", seed=0, device="cpu", work_dir=tmp_path / "w")
    assert metrics["own_pad_token"] is True

    scorer = RewardScorer(str(tmp_path / "rm"), device="cpu", batch_size=8, precision="fp32")
    assert scorer.tokenizer.pad_token == RM_PAD_TOKEN and scorer.tokenizer.pad_token_id != scorer.tokenizer.eos_token_id
    short, long = _conv("It is 4."), _conv("A much longer answer that needs padding in a batch. " * 5)
    encoded = scorer._encode(short)
    assert encoded[-1] == scorer.tokenizer.eos_token_id and scorer.tokenizer.pad_token_id not in encoded
    # what the trainer's model reads: sequence-classification pooling on a right-padded batch with the RM's pad
    width = len(scorer._encode(long))
    batch = torch.full((1, width), scorer.tokenizer.pad_token_id)
    batch[0, : len(encoded)] = torch.tensor(encoded)
    with torch.no_grad():
        pooled = scorer.model(input_ids=batch, attention_mask=(batch != scorer.tokenizer.pad_token_id).long()).logits
        at_eos = scorer.model(input_ids=torch.tensor([encoded])).logits  # batch of one: the very last token, the eos
    assert pooled[0, 0].item() == pytest.approx(at_eos[0, 0].item(), abs=1e-4)
    assert scorer.score([short, long])[0] == pytest.approx(at_eos[0, 0].item(), abs=1e-4)
