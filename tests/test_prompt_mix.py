"""The prompt pool and per-round draw (mix, solved down-weighting), user prompt sources, and the chat generator."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from alignment.config import PromptsConfig, PromptSource
from alignment.records import write_parquet
from reward.verifiers import verify
from synth_data.prompts import (
    build_pool,
    build_prompt_set,
    draw_prompts,
    load_prompt_source,
    load_user_prompts,
    mix_counts,
    solved_prompt_ids,
    to_prompt_record,
    write_prompts,
)
from synth_data.suite_format import SuiteFormatError, load_suite, validate_item, write_suite
from synth_data.suites import (
    builtin_train_prompts,
    chat_prompt_count,
    is_eval_key,
    make_chat_items,
    prompt_text_key,
)


def rec(pid: str, cap: str) -> dict:
    return {
        "prompt_id": pid,
        "capability": cap,
        "messages": [{"role": "user", "content": f"prompt {pid}"}],
        "answer": "1" if cap == "math" else None,
        "constraints": "[]",
        "source": "test",
    }


def pool_of(**sizes: int) -> list[dict]:
    return [rec(f"{cap}-{i:03d}", cap) for cap, n in sizes.items() for i in range(n)]


POOL = pool_of(math=10, instruction=10, chat=5)


def caps(records: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r["capability"]] = out.get(r["capability"], 0) + 1
    return out


# ------------------------------------------------------------------------------------------------- mix


def test_counts_mix_draws_each_capability_and_sorts():
    cfg = PromptsConfig(mix={"math": 3, "instruction": 2})
    drawn, stats = draw_prompts(POOL, cfg, 1, set())
    assert caps(drawn) == {"math": 3, "instruction": 2}  # chat is in the pool but not in the mix
    assert drawn == sorted(drawn, key=lambda r: (r["capability"], r["prompt_id"]))
    assert stats == {
        "pool": {"chat": 5, "instruction": 10, "math": 10},
        "drawn": {"instruction": 2, "math": 3},
        "solved_in_pool": {"chat": 0, "instruction": 0, "math": 0},
        "solved_drawn": {"instruction": 0, "math": 0},
    }


def test_empty_mix_takes_the_whole_pool():
    drawn, stats = draw_prompts(POOL, PromptsConfig(), 1, set())
    assert sorted(r["prompt_id"] for r in drawn) == sorted(r["prompt_id"] for r in POOL)
    assert stats["drawn"] == stats["pool"]
    with pytest.raises(ValueError, match="prompts.num_prompts is set but prompts.mix is empty"):
        draw_prompts(POOL, PromptsConfig(num_prompts=5), 1, set())


def test_weights_mix_sums_to_num_prompts_by_largest_remainder():
    assert mix_counts(PromptsConfig(mix={"math": 1, "instruction": 1, "chat": 1}, num_prompts=10)) == {
        "math": 4,  # 3.33 each; the one left over goes to the first in the mix
        "instruction": 3,
        "chat": 3,
    }
    assert mix_counts(PromptsConfig(mix={"math": 0.5, "instruction": 0.3, "chat": 0.2}, num_prompts=7)) == {
        "math": 4,  # 3.5, 2.1, 1.4: floors 3, 2, 1 and the largest remainder (0.5) gets the last one
        "instruction": 2,
        "chat": 1,
    }
    assert mix_counts(PromptsConfig(mix={"math": 3, "chat": 0}, num_prompts=5)) == {"math": 5, "chat": 0}
    rng = random.Random(0)
    for _ in range(200):
        mix = {c: rng.choice([0, 0.1, 0.25, 1 / 3, 1, 2.5, 7]) for c in ("a", "b", "c", "d")}
        if not any(mix.values()):
            continue
        n = rng.randint(1, 500)
        counts = mix_counts(PromptsConfig(mix=mix, num_prompts=n))
        assert sum(counts.values()) == n
        total = sum(mix.values())
        assert all(abs(counts[c] - n * w / total) < 1 for c, w in mix.items())
    drawn, _ = draw_prompts(POOL, PromptsConfig(mix={"math": 2, "instruction": 1}, num_prompts=9), 1, set())
    assert caps(drawn) == {"math": 6, "instruction": 3}


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (PromptsConfig(mix={"math": 2.5}), r"prompts\.mix\.math must be a whole number"),
        (PromptsConfig(mix={"math": -1}), r"prompts\.mix\.math must be a non-negative"),
        (PromptsConfig(mix={"math": 0, "chat": 0}, num_prompts=4), "weights sum to 0"),
        (PromptsConfig(mix={"math": 1}, num_prompts=0), "prompts.num_prompts must be a positive integer"),
        (PromptsConfig(mix={"math": 1}, solved_weight=-0.5), "prompts.solved_weight"),
    ],
)
def test_bad_mix_values_name_the_key(cfg, match):
    with pytest.raises(ValueError, match=match):
        draw_prompts(POOL, cfg, 1, set())


def test_capability_missing_from_the_pool_is_an_error():
    with pytest.raises(ValueError, match=r"prompts\.mix\.poetry.*'poetry'.*chat, instruction, math"):
        draw_prompts(POOL, PromptsConfig(mix={"math": 1, "poetry": 2}), 1, set())


def test_shortfall_takes_all_and_is_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="synth_data.prompts"):
        drawn, stats = draw_prompts(POOL, PromptsConfig(mix={"chat": 8, "math": 2}), 1, set())
    assert caps(drawn) == {"chat": 5, "math": 2}
    assert stats["shortfall"] == {"chat": 3}
    assert "prompts.mix.chat asks for 8 prompts but the pool has 5" in caplog.text


def test_draw_is_deterministic_and_changes_with_the_round():
    cfg = PromptsConfig(mix={"math": 4, "instruction": 4}, seed=3)

    def ids(pool, round_index, c=cfg):
        return [r["prompt_id"] for r in draw_prompts(pool, c, round_index, set())[0]]

    assert ids(POOL, 1) == ids(POOL, 1)
    assert ids(POOL, 1) != ids(POOL, 2)
    assert ids(POOL, 1) != ids(POOL, 1, PromptsConfig(mix=cfg.mix, seed=4))
    shuffled = POOL[:]
    random.Random(1).shuffle(shuffled)
    assert ids(shuffled, 1) == ids(POOL, 1)  # the pool's order does not matter


def test_solved_prompts_are_down_weighted():
    pool = pool_of(math=40)
    solved = {r["prompt_id"] for r in pool[:20]}

    def solved_share(weight: float, rounds: int = 300) -> float:
        cfg = PromptsConfig(mix={"math": 10}, solved_weight=weight)
        hits = sum(draw_prompts(pool, cfg, i, solved)[1]["solved_drawn"]["math"] for i in range(rounds))
        return hits / (10 * rounds)

    for i in range(20):  # weight 0: no solved prompt while unsolved ones remain
        drawn, stats = draw_prompts(pool, PromptsConfig(mix={"math": 10}, solved_weight=0), i, solved)
        assert not {r["prompt_id"] for r in drawn} & solved
        assert stats["solved_in_pool"] == {"math": 20} and stats["solved_drawn"] == {"math": 0}
    drawn, stats = draw_prompts(pool, PromptsConfig(mix={"math": 25}, solved_weight=0), 1, solved)
    assert stats["solved_drawn"] == {"math": 5}  # all 20 unsolved first, then solved ones
    assert 0.45 < solved_share(1.0) < 0.55  # weight 1: uniform
    assert solved_share(0.2) < 0.3


# ----------------------------------------------------------------------------------------- solved prompts


def _round(folder: Path, drawn: list[str], verdicts: list[tuple[str, bool | None]]) -> Path:
    write_parquet([rec(pid, "math") for pid in drawn], folder / "prompts.parquet")
    rows = [{"prompt_id": p, "candidate_id": f"{p}-{i}", "verified": v} for i, (p, v) in enumerate(verdicts)]
    write_parquet(rows, folder / "verdicts.parquet")
    return folder


def test_solved_prompt_ids_needs_every_round_that_drew_it(tmp_path):
    r1 = _round(
        tmp_path / "round-1",
        ["a", "b", "c", "d", "f"],
        [("a", True), ("a", True), ("b", True), ("b", False), ("c", None), ("c", None), ("f", True), ("f", None)],
    )  # d: drawn, every candidate filtered (no verdicts); f: one verified candidate, which passed
    r2 = _round(tmp_path / "round-2", ["a", "b", "e"], [("a", True), ("a", False), ("b", True), ("e", True)])
    missing = tmp_path / "round-0"  # never run: skipped
    assert solved_prompt_ids([missing, r1, r2], 1.0) == {"e", "f"}
    assert solved_prompt_ids([r1, r2], 0.5) == {"a", "b", "e", "f"}
    assert solved_prompt_ids([r1], 1.0) == {"a", "f"}
    assert solved_prompt_ids([], 1.0) == set()
    with pytest.raises(ValueError, match="solved_pass_rate"):
        solved_prompt_ids([r1], 1.5)


def test_incomplete_earlier_round_is_an_error(tmp_path):
    folder = tmp_path / "round-1"
    write_parquet([rec("a", "math")], folder / "prompts.parquet")
    with pytest.raises(FileNotFoundError, match=r"round-1.*verdicts\.parquet"):
        solved_prompt_ids([folder], 1.0)


def test_build_prompt_set_down_weights_prompts_solved_earlier(tmp_path):
    cfg = PromptsConfig(builtin={"math": 12, "chat": 4}, mix={"math": 6, "chat": 2}, solved_weight=0)
    pool = build_pool(cfg)
    math_ids = sorted(r["prompt_id"] for r in pool if r["capability"] == "math")
    r1 = _round(tmp_path / "round-1", math_ids[:6], [(p, True) for p in math_ids[:6]])
    records, stats = build_prompt_set(cfg, 2, earlier_rounds=[r1], exclude=lambda r: None)
    assert sorted(r["prompt_id"] for r in records if r["capability"] == "math") == math_ids[6:]
    assert stats["solved_in_pool"] == {"chat": 0, "math": 6} and stats["solved_drawn"] == {"chat": 0, "math": 0}
    assert stats["excluded"] == {}
    assert build_pool(cfg) == pool  # the same pool every round


def test_build_prompt_set_exclusions_and_empty_errors():
    cfg = PromptsConfig(builtin={"math": 4, "chat": 4})
    records, stats = build_prompt_set(
        cfg, 1, earlier_rounds=[], exclude=lambda r: "too long" if r["capability"] == "chat" else None
    )
    assert caps(records) == {"math": 4}
    assert stats["excluded"] == {"too long": {"chat": 4}}
    with pytest.raises(ValueError, match=r"prompt set is empty.*prompts\.builtin.*prompts\.files.*prompts\.mix"):
        build_prompt_set(cfg, 1, earlier_rounds=[], exclude=lambda r: "all")
    with pytest.raises(ValueError, match="prompt set is empty"):
        build_prompt_set(
            PromptsConfig(builtin={"math": 4}, mix={"math": 0}), 1, earlier_rounds=[], exclude=lambda r: None
        )


def test_duplicate_prompt_ids_across_sources_name_both(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    item = {"id": "x", "capability": "chat", "messages": [{"role": "user", "content": "Hi"}]}
    write_suite([item], a)
    write_suite([item], b)
    with pytest.raises(ValueError, match=r"duplicate prompt_id 'x'.*a\.jsonl.*b\.jsonl"):
        build_pool(PromptsConfig(builtin={}, files=(str(a), PromptSource(path=str(b)))))


# ------------------------------------------------------------------------------------------ user sources


def _jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


GSM_ROWS = [
    {"question": "What is 2 + 3?", "label": 5, "sys": "Think step by step."},
    {"question": "What is 1.5 + 1?", "label": 2.5, "sys": ""},
]


def test_jsonl_with_column_mapping(tmp_path):
    path = _jsonl(tmp_path / "gsm.jsonl", GSM_ROWS)
    src = PromptSource(
        path=str(path), columns={"prompt": "question", "answer": "label", "system": "sys"}, capability="math"
    )
    items = load_prompt_source(src)
    assert items == [
        {
            "id": "gsm-000000",
            "capability": "math",
            "messages": [
                {"role": "system", "content": "Think step by step."},
                {"role": "user", "content": "What is 2 + 3?"},
            ],
            "answer": "5",
        },
        {"id": "gsm-000001", "capability": "math", "messages": [{"role": "user", "content": "What is 1.5 + 1?"}], "answer": "2.5"},
    ]  # fmt: skip
    assert verify("It is 5.", items[0]).passed is True
    cfg = PromptsConfig(builtin={}, files=(src,))
    assert build_pool(cfg) == [to_prompt_record(i, str(path)) for i in items]


def test_parquet_source_with_same_named_columns(tmp_path):
    rows = [
        {"id": "p1", "prompt": "Write a haiku.", "capability": "chat", "answer": None, "constraints": None},
        {"id": "p2", "prompt": "Say hi.", "capability": "instruction", "answer": None, "constraints": '[{"type": "lowercase", "value": null}]'},
    ]  # fmt: skip
    write_parquet(rows, tmp_path / "mine.parquet")
    items = load_prompt_source(PromptSource(path=str(tmp_path / "mine.parquet")))
    assert [i["id"] for i in items] == ["p1", "p2"]
    assert "constraints" not in items[0] and "answer" not in items[0]
    assert items[1]["constraints"] == [{"type": "lowercase", "value": None}]
    # our own prompts.parquet reads back through the same path
    write_prompts([to_prompt_record(i, "x") for i in items], tmp_path / "prompts.parquet")
    src = PromptSource(path=str(tmp_path / "prompts.parquet"), columns={"id": "prompt_id"})
    assert load_prompt_source(src) == items


def test_saved_dataset_folder(tmp_path):
    from datasets import Dataset

    rows = [
        {"idx": 7, "problem": "What is 6 * 7?", "solution": 42},
        {"idx": 8, "problem": "What is 9 - 4?", "solution": 5},
    ]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    src = PromptSource(
        path=str(tmp_path / "ds"), columns={"id": "idx", "prompt": "problem", "answer": "solution"}, capability="math"
    )
    items = load_prompt_source(src)
    assert [(i["id"], i["answer"]) for i in items] == [("7", "42"), ("8", "5")]
    assert items[0]["messages"] == [{"role": "user", "content": "What is 6 * 7?"}]


def test_saved_dataset_dict_needs_a_split(tmp_path):
    from datasets import Dataset, DatasetDict

    msgs = [{"role": "user", "content": "Tell me about owls."}]
    DatasetDict(
        {"train": Dataset.from_list([{"messages": msgs}]), "test": Dataset.from_list([{"messages": msgs}] * 2)}
    ).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match=r"dd: a saved DatasetDict needs a split.*train, test"):
        load_prompt_source(PromptSource(path=str(tmp_path / "dd"), capability="chat"))
    with pytest.raises(ValueError, match=r"no split 'valid'.*train, test"):
        load_prompt_source(PromptSource(path=str(tmp_path / "dd"), capability="chat", split="valid"))
    items = load_prompt_source(PromptSource(path=str(tmp_path / "dd"), capability="chat", split="test"))
    assert [i["id"] for i in items] == ["dd-test-000000", "dd-test-000001"]
    assert items[0]["messages"] == msgs and items[0]["capability"] == "chat"


def test_mapping_a_missing_column_names_it_and_the_file(tmp_path):
    path = _jsonl(tmp_path / "gsm.jsonl", GSM_ROWS)
    with pytest.raises(
        ValueError, match=r"gsm\.jsonl: columns\.answer names column 'answer_text'.*question, label, sys"
    ):
        load_prompt_source(PromptSource(path=str(path), columns={"prompt": "question", "answer": "answer_text"}))
    write_parquet(GSM_ROWS, tmp_path / "gsm.parquet")
    with pytest.raises(ValueError, match=r"gsm\.parquet: columns\.prompt names column 'q'"):
        load_prompt_source(PromptSource(path=str(tmp_path / "gsm.parquet"), columns={"prompt": "q"}))
    with pytest.raises(ValueError, match="unknown field 'question'"):
        load_prompt_source(PromptSource(path=str(path), columns={"question": "question"}))


def test_record_missing_its_prompt_names_file_and_line_or_row(tmp_path):
    rows = [GSM_ROWS[0], {"question": None, "label": 3}, GSM_ROWS[1]]
    src = dict(columns={"prompt": "question", "answer": "label"}, capability="math")
    path = _jsonl(tmp_path / "gsm.jsonl", [rows[0], "", rows[1]])
    with pytest.raises(SuiteFormatError, match=r"gsm\.jsonl:3: missing prompt: 'prompt' \(column 'question'\)") as info:
        load_prompt_source(PromptSource(path=str(path), **src))
    assert info.value.line == 3
    write_parquet(rows, tmp_path / "gsm.parquet")
    with pytest.raises(SuiteFormatError, match=r"gsm\.parquet:2: row 2: missing prompt"):
        load_prompt_source(PromptSource(path=str(tmp_path / "gsm.parquet"), **src))
    # no prompt column at all, no capability at all: reported at the first record
    with pytest.raises(
        SuiteFormatError, match=r"gsm\.jsonl:1: missing prompt: the source has no 'prompt' or 'messages'"
    ):
        load_prompt_source(PromptSource(path=str(path), columns={"answer": "label"}, capability="math"))
    with pytest.raises(SuiteFormatError, match=r"gsm\.jsonl:1: missing capability"):
        load_prompt_source(PromptSource(path=str(path), columns={"prompt": "question"}))


def test_wrong_types_and_empty_sources(tmp_path):
    path = _jsonl(tmp_path / "bad.jsonl", [{"q": "Hi", "label": [1, 2]}])
    with pytest.raises(SuiteFormatError, match=r"bad\.jsonl:1: 'answer' \(column 'label'\) must be a str or a number"):
        load_prompt_source(PromptSource(path=str(path), columns={"prompt": "q", "answer": "label"}, capability="math"))
    path = _jsonl(tmp_path / "bad2.jsonl", [{"q": "Hi"}])
    with pytest.raises(SuiteFormatError, match=r"bad2\.jsonl:1: item has neither 'answer' nor 'constraints'"):
        load_prompt_source(PromptSource(path=str(path), columns={"prompt": "q"}, capability="math"))
    path = _jsonl(tmp_path / "dup.jsonl", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    with pytest.raises(SuiteFormatError, match=r"dup\.jsonl:2: duplicate id 'a' \(first on line 1\)"):
        load_prompt_source(PromptSource(path=str(path), capability="chat"))
    empty = _jsonl(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(SuiteFormatError, match=r"empty\.jsonl.*no items"):
        load_prompt_source(PromptSource(path=str(empty), capability="chat"))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_prompt_source(PromptSource(path=str(tmp_path / "nope.jsonl")))


def test_a_plain_path_is_the_public_format(tmp_path):
    item = {"id": "u1", "capability": "math", "messages": [{"role": "user", "content": "2+2?"}], "answer": "4"}
    path = _jsonl(tmp_path / "mine.jsonl", [item])
    assert load_prompt_source(str(path)) == load_user_prompts(path) == [item]
    assert load_prompt_source(PromptSource(path=str(path))) == [item]
    with pytest.raises(SuiteFormatError, match=r"answer.*must be a str"):  # the public format stays strict
        load_prompt_source(str(_jsonl(tmp_path / "num.jsonl", [{**item, "answer": 4}])))


# ---------------------------------------------------------------------------------------------- chat


def test_chat_generator_is_deterministic_distinct_and_unverified(tmp_path):
    items = make_chat_items(150, 0, "train")
    assert items == make_chat_items(150, 0, "train")
    assert items != make_chat_items(150, 1, "train")
    assert len({prompt_text_key(i) for i in items}) == 150
    assert len({i["id"] for i in items}) == 150
    for item in items:
        assert item["capability"] == "chat" and set(item) == {"id", "capability", "messages"}
        validate_item(item)
        assert verify("Any answer at all.", item).passed is None
    write_suite(items, tmp_path / "chat.jsonl")
    assert load_suite(tmp_path / "chat.jsonl") == items
    assert builtin_train_prompts({"chat": 5}, seed=0) == items[:5]


def test_chat_train_and_eval_do_not_overlap():
    n_train, n_eval = chat_prompt_count("train"), chat_prompt_count("eval")
    assert n_train >= 250 and n_eval > 0
    train = make_chat_items(n_train, 0, "train")
    with pytest.raises(ValueError, match=f"asked for {n_train + 1} chat prompts .* has {n_train} distinct train"):
        builtin_train_prompts({"chat": n_train + 1}, seed=0)
    assert not {prompt_text_key(i) for i in train} & {prompt_text_key(i) for i in make_chat_items(n_eval, 0, "eval")}
    eval_pairs = [k for k in ("chat:coffee|tea", "chat:cats|dogs", "chat:summer|winter") if is_eval_key(k)]
    assert eval_pairs  # a pair on the eval side never appears in train, in either order
    a, b = eval_pairs[0].removeprefix("chat:").split("|")
    assert not [i for i in train if f" {a} " in f" {prompt_text_key(i)} " and f" {b} " in f" {prompt_text_key(i)} "]


def test_only_chat_items_may_lack_a_verifier():
    item = {"id": "c", "capability": "chat", "messages": [{"role": "user", "content": "Hi"}]}
    validate_item(item)
    validate_item({**item, "constraints": []})
    with pytest.raises(ValueError, match="neither 'answer' nor 'constraints'"):
        validate_item({**item, "capability": "writing"})
