"""Prompt sets, user prompt files, eval scoring and model-folder checks (no model runs here)."""

import json

import pytest

from alignment.config import PromptsConfig
from alignment.evaluate import load_items, score_responses
from alignment.models import ModelError, load_chat_tokenizer, resolve_model
from synth_data.prompts import build_prompt_set, load_user_prompts, to_prompt_record, write_prompts
from synth_data.suite_format import SuiteFormatError
from synth_data.suites import prompt_text_key

USER_ITEM = {
    "id": "u1",
    "capability": "math",
    "messages": [{"role": "user", "content": "What is 40 + 2?"}],
    "answer": "42",
}


def _eval_keys():
    return {prompt_text_key(it) for it in load_items(["builtin"])}


def _build(cfg, round_index=1, eval_keys=frozenset()):
    """build_prompt_set with an exclude that drops prompts whose text is an eval item's (no earlier rounds)."""
    records, _ = build_prompt_set(
        cfg,
        round_index,
        earlier_rounds=[],
        exclude=lambda r: "eval prompt" if prompt_text_key(r) in eval_keys else None,
    )
    return records


def test_builtin_prompt_set_counts_and_no_eval_overlap():
    records = _build(PromptsConfig(builtin={"math": 5, "instruction": 7}), eval_keys=_eval_keys())
    assert [r["capability"] for r in records].count("math") == 5
    assert [r["capability"] for r in records].count("instruction") == 7
    assert not {prompt_text_key(r) for r in records} & _eval_keys()
    assert len({r["prompt_id"] for r in records}) == len(records)


def test_rounds_draw_from_the_same_pool():
    cfg = PromptsConfig(builtin={"math": 10, "instruction": 10})
    assert _build(cfg, 1) == _build(cfg, 2)  # no mix: the whole pool, the same in every round
    drawing = PromptsConfig(builtin={"math": 10, "instruction": 10}, mix={"math": 4, "instruction": 4})
    r1 = {prompt_text_key(r) for r in _build(drawing, 1)}
    r2 = {prompt_text_key(r) for r in _build(drawing, 2)}
    assert r1 != r2
    assert r1 | r2 <= {prompt_text_key(r) for r in _build(cfg, 1)}


def test_user_prompts_jsonl_and_parquet(tmp_path):
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text(json.dumps(USER_ITEM) + "\n")
    records = _build(PromptsConfig(builtin={}, files=(str(jsonl),)))
    assert records == [to_prompt_record(USER_ITEM, str(jsonl))]
    parquet = tmp_path / "mine.parquet"
    write_prompts(records, parquet)
    loaded = load_user_prompts(parquet)
    assert loaded[0]["answer"] == "42" and loaded[0]["messages"] == USER_ITEM["messages"]


def test_empty_prompt_set_is_a_clear_error():
    with pytest.raises(ValueError, match="prompt set is empty"):
        _build(PromptsConfig(builtin={}))


def test_prompts_that_are_eval_items_are_removed(tmp_path):
    jsonl = tmp_path / "leak.jsonl"
    eval_item = load_items(["builtin"])[0]
    jsonl.write_text(json.dumps({**eval_item, "id": "leak"}) + "\n" + json.dumps(USER_ITEM) + "\n")
    records, stats = build_prompt_set(
        PromptsConfig(builtin={}, files=(str(jsonl),)),
        1,
        earlier_rounds=[],
        exclude=lambda r: "eval prompt" if prompt_text_key(r) in _eval_keys() else None,
    )
    assert [r["prompt_id"] for r in records] == ["u1"]
    assert stats["excluded"] == {"eval prompt": {eval_item["capability"]: 1}}


def test_malformed_user_file_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(USER_ITEM) + "\n{not json\n")
    with pytest.raises(SuiteFormatError, match=r"bad\.jsonl:2"):
        _build(PromptsConfig(builtin={}, files=(str(bad),)))


def test_eval_scoring_per_capability():
    items = [
        USER_ITEM,
        {**USER_ITEM, "id": "u2", "answer": "7"},
        {
            "id": "i1",
            "capability": "instruction",
            "messages": USER_ITEM["messages"],
            "constraints": [{"type": "lowercase", "value": None}],
        },
    ]
    summary, records = score_responses(items, ["It is 42.", "It is 8.", "all of it in small letters"])
    assert summary == {"instruction": {"accuracy": 1.0, "n": 1}, "math": {"accuracy": 0.5, "n": 2}}
    assert [r["correct"] for r in records] == [True, False, True]


def test_eval_rejects_unknown_constraint_with_location(tmp_path):
    bad = tmp_path / "suite.jsonl"
    bad.write_text(json.dumps({**USER_ITEM, "answer": None, "constraints": [{"type": "rhymes", "value": None}]}) + "\n")
    with pytest.raises(SuiteFormatError, match=r"suite\.jsonl:1.*rhymes"):
        load_items([str(bad)])


def test_model_folder_without_chat_template_is_rejected(no_chat_template_model_dir):
    with pytest.raises(ModelError, match="no chat template"):
        load_chat_tokenizer(no_chat_template_model_dir)


def test_resolve_model_errors_name_the_folder(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelError, match="not found"):
        resolve_model(str(tmp_path / "missing"))


def test_embedded_model_folder_is_complete(embedded_model_dir):
    from pathlib import Path

    from transformers import AutoTokenizer, GenerationConfig

    names = {p.name for p in Path(embedded_model_dir).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    assert tok.chat_template and tok.pad_token == "<|endoftext|>"
    assert GenerationConfig.from_pretrained(embedded_model_dir).eos_token_id == [
        tok.convert_tokens_to_ids("<|im_end|>")
    ]


def test_end_of_turn_ids_come_from_tokenizer_and_generation_config(tiny_model_dir, tmp_path):
    import shutil

    from transformers import GenerationConfig

    from alignment.models import end_of_turn_ids

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    tok = load_chat_tokenizer(str(folder))
    assert end_of_turn_ids(tok, folder) == [tok.eos_token_id]
    GenerationConfig(eos_token_id=[tok.eos_token_id, 7]).save_pretrained(folder)  # a second terminator
    assert end_of_turn_ids(tok, folder) == [tok.eos_token_id, 7]


def test_pass_at_k_and_sampled_scoring():
    from alignment.evaluate import k_values, pass_at_k

    assert pass_at_k(4, 0, 1) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25) and pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 3, 2) == 1.0  # any 2 of 4 samples include a pass
    assert k_values(1) == [1] and k_values(8) == [1, 2, 4, 8] and k_values(5) == [1, 2, 4, 5]
    items = [
        {"id": "a", "capability": "math", "messages": [{"role": "user", "content": "6*7?"}], "answer": "42"},
        {"id": "b", "capability": "math", "messages": [{"role": "user", "content": "2+2?"}], "answer": "4"},
    ]
    summary, records = score_responses(
        items,
        [["It is 42.", "41", "It is 42.", "40"], ["5", "3", "4 is the answer.", "6"]],
        [["stop", "stop", "length", "stop"], ["stop"] * 4],  # a cut-off reply fails even with the right number
    )
    assert summary["math"]["accuracy"] == pytest.approx((1 / 4 + 1 / 4) / 2)
    assert summary["math"]["pass@k"] == {"1": 0.25, "2": 0.5, "4": 1.0}
    assert records[0]["score"] == 0.25 and records[0]["correct"] is False
    assert [s["correct"] for s in records[0]["samples"]] == [True, False, False, False]


def test_eval_prints_its_results_as_a_table():
    from alignment.evaluate import format_summary

    table = format_summary({"math": {"accuracy": 0.4, "n": 60}, "format": {"accuracy": 0.8333, "n": 60}})
    assert table.splitlines() == [
        "capability     accuracy  items",
        "------------------------------",
        "format            0.833     60",
        "math              0.400     60",
    ]
