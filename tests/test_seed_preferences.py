"""Tests for the shipped seed preference pairs."""

import json
from collections import Counter
from pathlib import Path

import pytest

from reward.seed_preferences import SEED_PREFERENCES_PATH, load_seed_pairs, make_seed_pairs
from reward.verifiers import check_constraint, verify, verify_math
from synth_data.suite_format import SuiteFormatError, load_suite
from synth_data.suites import builtin_eval_suite_paths, make_instruction_items, make_math_items, prompt_text_key


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return load_seed_pairs()


def test_shipped_file_matches_regeneration(pairs: list[dict]) -> None:
    assert SEED_PREFERENCES_PATH.name == "seed_preferences.jsonl"
    assert pairs == make_seed_pairs(0)
    assert Counter(p["capability"] for p in pairs) == {"math": 60, "instruction": 60, "chat": 40}
    assert len({p["pair_id"] for p in pairs}) == len(pairs)
    for p in pairs:
        assert set(p) == {"pair_id", "capability", "messages", "chosen", "rejected", "source"}
        assert p["source"] == "seed" and p["messages"][-1]["role"] == "user"
        assert p["chosen"] != p["rejected"]
    assert len({p["chosen"] for p in pairs}) > 100 and len({p["rejected"] for p in pairs}) > 80


def test_math_pairs_are_verified(pairs: list[dict]) -> None:
    items = {i["id"]: i for i in make_math_items(60, 0, "seed")}
    math = [p for p in pairs if p["capability"] == "math"]
    for p in math:
        item = items[p["pair_id"]]
        assert p["messages"] == item["messages"]
        assert verify_math(p["chosen"], item["answer"]) and p["chosen"].rstrip(".").endswith(item["answer"])
        assert verify(p["rejected"], item).passed is False


def test_instruction_chosen_pass_rejected_fail(pairs: list[dict]) -> None:
    items = {i["id"]: i for i in make_instruction_items(60, 0, "seed")}
    instruction = [p for p in pairs if p["capability"] == "instruction"]
    for p in instruction:
        constraints = items[p["pair_id"]]["constraints"]
        assert all(check_constraint(p["chosen"], c) for c in constraints), p
        assert not all(check_constraint(p["rejected"], c) for c in constraints), p


def test_seed_prompts_never_overlap_eval(pairs: list[dict]) -> None:
    eval_keys = {prompt_text_key(i) for path in builtin_eval_suite_paths() for i in load_suite(path)}
    assert not {prompt_text_key(p) for p in pairs} & eval_keys


def test_chat_rejected_styles(pairs: list[dict]) -> None:
    chat = [p for p in pairs if p["capability"] == "chat"]
    assert len({p["messages"][0]["content"] for p in chat}) >= 15
    assert any("sorry" in p["rejected"].lower() for p in chat)


def test_loader_errors_name_file_and_line(tmp_path: Path) -> None:
    good = make_seed_pairs(0)[0]
    cases = [
        ("{oops", "JSON"),
        (json.dumps({**good, "capability": "poetry"}), "capability"),
        (json.dumps({**good, "rejected": good["chosen"]}), "identical"),
        (json.dumps({k: v for k, v in good.items() if k != "chosen"}), "'chosen'"),
        (json.dumps({**good, "messages": [{"role": "assistant", "content": "x"}]}), "user"),
        (json.dumps(good), "duplicate pair_id"),
    ]
    for bad, reason in cases:
        path = tmp_path / "pairs.jsonl"
        path.write_text(json.dumps(good) + "\n" + bad + "\n", encoding="utf-8")
        with pytest.raises(SuiteFormatError, match=reason) as info:
            load_seed_pairs(path)
        assert f"{path}:2: " in str(info.value)
