"""Tests for the suite format (loader errors, writer) and the built-in generators."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from reward.verifiers import CONSTRAINT_TYPES, verify
from synth_data.suite_format import SuiteFormatError, load_suite, write_suite
from synth_data.suites import (
    CHAT_SUBJECTS,
    EVAL_SIZES,
    FORMAT_ONLY_SUBJECTS,
    INSTRUCTION_CONSTRAINT_TYPES,
    TOPICS,
    builtin_eval_suite_paths,
    builtin_train_prompts,
    chat_prompt_count,
    format_prompt_count,
    make_builtin_eval_suites,
    make_chat_items,
    make_format_items,
    make_instruction_items,
    make_math_items,
    prompt_text_key,
)

GOOD_MATH = {"id": "m1", "capability": "math", "messages": [{"role": "user", "content": "1+1?"}], "answer": "2"}
GOOD_INSTR = {
    "id": "i1",
    "capability": "instruction",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."}],
    "constraints": [{"type": "max_words", "value": 5}, {"type": "no_commas", "value": None}],
}


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_roundtrip_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "suite.jsonl"
    write_suite([GOOD_MATH, {**GOOD_INSTR, "messages": [{"role": "user", "content": "héllo ✓"}]}], path)
    assert "héllo ✓" in path.read_text(encoding="utf-8")
    assert [i["id"] for i in load_suite(path)] == ["m1", "i1"]
    assert not [p for p in path.parent.iterdir() if p.name != "suite.jsonl"]  # no temp file left behind
    with_blanks = _write_lines(tmp_path / "b.jsonl", ["", json.dumps(GOOD_MATH), "   ", json.dumps(GOOD_INSTR)])
    assert len(load_suite(with_blanks)) == 2


def _bad(item: dict | str, **changes: object) -> str:
    if isinstance(item, str):
        return item
    out = {**item, **changes}
    return json.dumps({k: v for k, v in out.items() if v is not DROP})


DROP = object()
USER = [{"role": "user", "content": "q"}]


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "not a JSON object"),
        (_bad(GOOD_MATH, id=DROP), "'id'"),
        (_bad(GOOD_MATH, id=7), "'id'"),
        (_bad(GOOD_MATH, capability=DROP), "'capability'"),
        (_bad(GOOD_MATH, messages=DROP), "messages"),
        (_bad(GOOD_MATH, messages=[]), "messages"),
        (_bad(GOOD_MATH, messages="hi"), "messages"),
        (_bad(GOOD_MATH, messages=[{"role": "user"}]), "'content'"),
        (_bad(GOOD_MATH, messages=[{"content": "x"}]), "'role'"),
        (_bad(GOOD_MATH, messages=[*USER, {"role": "assistant", "content": "a"}]), "end with a 'user' turn"),
        (_bad(GOOD_MATH, answer=DROP), "neither 'answer' nor 'constraints'"),
        (_bad(GOOD_INSTR, constraints=[]), "neither 'answer' nor constraints"),
        (_bad(GOOD_MATH, answer=2), "'answer' must be a str"),
        (_bad(GOOD_INSTR, constraints={"type": "json"}), "'constraints' must be a list"),
        (_bad(GOOD_INSTR, constraints=[{"type": "max_chars", "value": 3}]), "unknown constraint type 'max_chars'"),
        (_bad(GOOD_INSTR, constraints=[{"type": "max_words", "value": "3"}]), "constraint 0: constraint 'max_words'"),
        (_bad(GOOD_MATH), "duplicate id 'm1'"),
    ],
)
def test_loader_errors_name_file_and_line(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = _write_lines(tmp_path / "suite.jsonl", [json.dumps(GOOD_MATH), "", bad_line, json.dumps(GOOD_INSTR)])
    with pytest.raises(SuiteFormatError) as info:
        load_suite(path)
    assert f"{path}:3: " in str(info.value)
    assert reason in str(info.value)
    assert info.value.line == 3


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(SuiteFormatError, match=r"empty\.jsonl:\d+: no items"):
        load_suite(path)


# ------------------------------------------------------------------------------------------- generators


@pytest.mark.parametrize("make", [make_math_items, make_instruction_items])
def test_generators_are_deterministic_and_distinct(make) -> None:
    a, b = make(80, 3, "train"), make(80, 3, "train")
    assert a == b
    assert a != make(80, 4, "train")
    assert len({prompt_text_key(i) for i in a}) == 80
    assert len({i["id"] for i in a}) == 80
    assert a[0]["id"].endswith("-train-3-0")


def test_generated_items_are_valid(tmp_path: Path) -> None:
    items = make_math_items(100, 1, "train") + make_instruction_items(100, 1, "train")
    write_suite(items, tmp_path / "s.jsonl")
    assert load_suite(tmp_path / "s.jsonl") == items
    for item in items:
        assert item["messages"][-1]["role"] == "user"
        if item["capability"] == "math":
            assert item["answer"].isdigit() and int(item["answer"]) < 200
            assert item["messages"][-1]["content"].endswith("as a number.")
            assert verify(f"The answer is {item['answer']}.", item).passed is True
        else:
            assert 1 <= len(item["constraints"]) <= 2
            assert len({c["type"] for c in item["constraints"]}) == len(item["constraints"])


def test_every_constraint_type_appears() -> None:
    for seed in range(5):
        items = make_instruction_items(30, seed, "train")
        assert {c["type"] for i in items for c in i["constraints"]} == set(INSTRUCTION_CONSTRAINT_TYPES)
    assert set(CONSTRAINT_TYPES) - set(INSTRUCTION_CONSTRAINT_TYPES) == {"ends_cleanly", "max_repetition"}


def test_no_contradictory_constraints() -> None:
    for item in make_instruction_items(500, 0, "train"):
        types = {c["type"] for c in item["constraints"]}
        assert not {"lowercase", "uppercase"} <= types
        assert not ({"json"} & types and {"num_bullets", "start_with", "end_with"} & types)
        values = {c["type"]: c.get("value") for c in item["constraints"]}
        if "lowercase" in types:
            assert all(values.get(t, "").islower() for t in ("start_with", "end_with") if t in values)


def test_train_and_eval_never_overlap() -> None:
    eval_keys = {prompt_text_key(i) for p in builtin_eval_suite_paths() for i in load_suite(p)}
    for seed in range(3):
        train = make_math_items(500, seed, "train") + make_instruction_items(500, seed, "train")
        seed_split = make_math_items(200, seed, "seed") + make_instruction_items(200, seed, "seed")
        assert not {prompt_text_key(i) for i in train + seed_split} & eval_keys
        other_eval = make_math_items(60, seed + 1, "eval") + make_instruction_items(60, seed + 1, "eval")
        assert not {prompt_text_key(i) for i in train} & {prompt_text_key(i) for i in other_eval}


def test_prompt_text_key_normalises() -> None:
    item = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "  What IS\n 2 + 2? "}]}
    assert prompt_text_key(item) == "what is 2 + 2?"


def test_shipped_eval_suites_match_regeneration() -> None:
    paths = builtin_eval_suite_paths()
    assert [p.name for p in paths] == ["math_eval.jsonl", "instruction_eval.jsonl", "format_eval.jsonl"]
    regenerated = make_builtin_eval_suites()
    for path, size in zip(paths, (400, 400, 300), strict=True):
        items = load_suite(path)
        assert len(items) == size  # 200 held-out items per capability: a paired held-out interval of about +-0.055
        assert items == regenerated[path]
        assert all(i["id"].split("-")[1] == "eval" for i in items)
    # growing a suite keeps the smaller one as its prefix: a round's first eval.max_items and earlier runs' items stay
    from synth_data.suites import make_math_items

    assert make_math_items(200, 0, "eval") == load_suite(paths[0])[:200]
    assert make_format_items(60, 0, "eval") == load_suite(paths[2])[:60]
    first_60 = json.dumps(load_suite(paths[2])[:60], sort_keys=True).encode()
    assert hashlib.sha256(first_60).hexdigest()[:16] == "9a16209b7f58959b"  # the 60-item suite before 199a741


def _template_patterns(templates: list[str]) -> list[re.Pattern]:
    """A template with each slot as what can fill it, e.g. 'What is {a} {op} {b}?' -> r'What is \\d+ (?:...) \\d+\\?'."""
    from synth_data import suites as S

    def alt(words: list[str]) -> str:
        return "(?:" + "|".join(map(re.escape, words)) + ")"

    slots = {"a": r"\d+", "b": r"\d+", "c": r"\d+", "op": r"(?:[-+*/]|times)", "name": alt(S.NAMES)}
    slots |= {"other": alt(S.NAMES), "obj": alt(S.OBJECTS), "t": alt(S.TOPICS), "v": ".+?"}
    parts = [
        [re.escape(p) if k % 2 == 0 else slots[p] for k, p in enumerate(re.split(r"\{(\w+)\}", t))] for t in templates
    ]
    return [re.compile("".join(p)) for p in parts]


def test_held_out_wordings_are_never_used_by_training_prompts() -> None:
    from synth_data import suites as S

    held_math = _template_patterns(
        [*S.HELD_OUT_ARITHMETIC, *(t for _, t in S.HELD_OUT_ONE_STEP + S.HELD_OUT_TWO_STEP), *S.HELD_OUT_MATH_SUFFIXES]
    )
    seen_math = _template_patterns([*S.ARITHMETIC, *(t for _, t in S.ONE_STEP + S.TWO_STEP), *S.MATH_SUFFIXES])
    held_instr = _template_patterns([t for t, _ in S.HELD_OUT_TASKS] + list(S.HELD_OUT_CONSTRAINTS.values()))
    seen_instr = _template_patterns([t for t, _ in S.TASKS])
    for wordings in ("fixed", "varied"):  # the training-only paraphrases never fall into a held-out template
        train = {
            "math": [i["messages"][0]["content"] for i in S.make_math_items(2000, 0, "train", wordings)],
            "instruction": [i["messages"][0]["content"] for i in S.make_instruction_items(2000, 0, "train", wordings)],
        }
        for text in train["math"]:
            assert not any(p.search(text) for p in held_math), text
        for text in train["instruction"]:
            assert not any(p.search(text) for p in held_instr), text
    assert "wording" not in S.make_math_items(5, 0, "train")[0]
    eval_items = {p.name.split("_")[0]: load_suite(p) for p in builtin_eval_suite_paths()}
    for cap, held, seen in (("math", held_math, seen_math), ("instruction", held_instr, seen_instr)):
        by = {
            w: [i["messages"][0]["content"] for i in eval_items[cap] if i["wording"] == w] for w in ("seen", "held_out")
        }
        assert len(by["held_out"]) == len(by["seen"]) == 200, {w: len(t) for w, t in by.items()}
        assert all(any(p.search(t) for p in held) for t in by["held_out"])
        assert not any(any(p.search(t) for p in seen) for t in by["held_out"])
        assert all(any(p.search(t) for p in seen) for t in by["seen"])
    assert {i["wording"] for i in eval_items["format"]} == {"held_out"}
    # exactly every other item: the halves differ in wording only, not in their mix of problems or constraints
    for cap in ("math", "instruction"):
        assert [i["wording"] for i in eval_items[cap]] == ["seen", "held_out"] * 200
    seen_phrasings = [
        "Answer in at most", "Answer in at least", "Include the word", "Do not use the word", "Start your answer with",
        "End your answer with", "Use exactly", "Use only lowercase", "in lowercase letters.", "in capital letters",
        "Use only uppercase", "Do not use any commas", "Answer in valid JSON", "answer as valid JSON",
    ]  # fmt: skip
    for item in eval_items["instruction"]:
        text = item["messages"][0]["content"]
        uses_seen = [p for p in seen_phrasings if p in text]
        assert bool(uses_seen) == (item["wording"] == "seen"), (text, uses_seen)
    assert not any("wording" in i for cap in ("math", "instruction", "chat") for i in S.GENERATORS[cap](50, 0, "train"))
    assert "wording" not in S.make_format_items(5, 0, "seed")[0]


def test_training_prompts_are_pinned() -> None:
    """The train and seed splits are what every run so far trained on: a change to a generator that moves them shows
    here (update the fingerprint on purpose, never by accident)."""
    import hashlib

    from synth_data import suites as S

    made = {
        f"{cap}-{split}": S.GENERATORS[cap](n, 0, split)
        for cap, n in (("math", 300), ("instruction", 300), ("chat", 100))
        for split in ("train", "seed")
    }
    digest = hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:16]
    assert digest == "2702e9502990c3b9"  # the same before held-out wordings existed (559ebb7)


def test_format_suite_asks_for_a_clean_ending_on_eval_side_subjects() -> None:
    items = make_format_items(EVAL_SIZES["format"], 0, "eval")
    assert {tuple(c["type"] for c in i["constraints"]) for i in items} == {("ends_cleanly", "max_repetition")}
    chat_train = {prompt_text_key(i) for i in make_chat_items(chat_prompt_count("train"), 0, "train")}
    assert not {prompt_text_key(i) for i in items} & chat_train
    from synth_data.suites import is_eval_key

    train_side = {x for xs in CHAT_SUBJECTS.values() for x in xs if not is_eval_key(f"chat:{x}")}
    assert not {_format_subject(i) for i in items} & train_side
    good = "Tea is a drink made from leaves. People enjoy it hot."
    assert verify(good, items[0], "stop").passed and not verify(good, items[0], "length").passed
    assert not verify("Tea is a drink made from", items[0], "stop").passed


def test_format_suite_is_big_enough_to_see_a_five_point_change() -> None:
    # 60 items (the chat subjects' 70 texts) gave a standard error of ~0.05 on format: a 5-point change was invisible.
    shipped = load_suite(builtin_eval_suite_paths()[2])
    assert len(shipped) == EVAL_SIZES["format"] >= 300
    assert EVAL_SIZES["format"] <= format_prompt_count("eval")
    with pytest.raises(ValueError, match="has 317 distinct eval ones"):
        make_format_items(format_prompt_count("eval") + 1, 0, "eval")
    assert len(make_format_items(format_prompt_count("eval"), 0, "eval")) == 317


def _format_subject(item: dict) -> str:
    """The subject a format item's text was made from (templates and subjects can nest: 'a bicycle pump')."""
    from synth_data import suites as S

    made = {
        template.format(x=x): x
        for template, kind in S.FORMAT_TEMPLATES
        for x in CHAT_SUBJECTS[kind] + FORMAT_ONLY_SUBJECTS[kind]
    }
    return made[item["messages"][0]["content"]]


def test_format_only_subjects_reach_no_training_prompt() -> None:
    only = [x for xs in FORMAT_ONLY_SUBJECTS.values() for x in xs]
    assert len(only) == len(set(only)) == 60
    assert not set(only) & ({x for xs in CHAT_SUBJECTS.values() for x in xs} | set(TOPICS))
    from synth_data import suites as S

    training = [
        prompt_text_key(item)
        for split in ("train", "seed")
        for cap, n in (("math", 300), ("instruction", 300), ("chat", chat_prompt_count(split)))
        for item in S.GENERATORS[cap](n, 0, split)
    ] + [prompt_text_key(i) for i in builtin_train_prompts({"math": 300, "instruction": 300}, 0, "varied")]
    training += [line.lower() for path in Path(S.__file__).parents[1].glob("reward/data/*") for line in path.open()]
    named = {x for x in only if any(x.lower() in text for text in training)}
    assert not named
    train_format = make_format_items(format_prompt_count("train"), 0, "train")
    assert not {_format_subject(i) for i in train_format} & set(only)
    # ... while the eval suite uses them: they are where its growth came from
    texts = [prompt_text_key(i) for i in load_suite(builtin_eval_suite_paths()[2])]
    assert sum(any(x.lower() in t for x in only) for t in texts) > 150


def _varied_patterns() -> dict[str, list[re.Pattern]]:
    from synth_data import suites as S

    varied_constraints = [t for ts in S.VARIED_CONSTRAINTS.values() for t in ts]
    return {
        "math": _template_patterns(
            [*S.VARIED_ARITHMETIC, *(t for _, t in S.VARIED_ONE_STEP + S.VARIED_TWO_STEP), *S.VARIED_MATH_SUFFIXES]
        ),
        "instruction": _template_patterns([t for t, _ in S.VARIED_TASKS] + varied_constraints),
    }


def test_varied_wordings_reach_training_prompts_only() -> None:
    """prompts.wordings=varied: every paraphrase is drawn for training, none by the fixed pool or any eval item."""
    from synth_data import suites as S

    patterns = _varied_patterns()
    varied = {
        "math": [i["messages"][0]["content"] for i in S.make_math_items(2000, 0, "train", "varied")],
        "instruction": [i["messages"][0]["content"] for i in S.make_instruction_items(2000, 0, "train", "varied")],
    }
    for cap, texts in varied.items():
        unused = [p.pattern for p in patterns[cap] if not any(p.search(t) for t in texts)]
        assert not unused, unused
        share = sum(any(p.search(t) for p in patterns[cap]) for t in texts) / len(texts)
        assert 0.3 < share < 0.9, (cap, share)  # a mix of seen and paraphrased wordings, not all of one
    fixed = [i["messages"][0]["content"] for i in builtin_train_prompts({"math": 500, "instruction": 500}, 0, "fixed")]
    eval_texts = [i["messages"][0]["content"] for p in builtin_eval_suite_paths() for i in load_suite(p)]
    for text in fixed + eval_texts:
        assert not any(p.search(text) for ps in patterns.values() for p in ps), text
    # every constraint type still appears among the paraphrased items
    items = S.make_instruction_items(2000, 0, "train", "varied")
    assert {c["type"] for i in items for c in i["constraints"]} == set(S.INSTRUCTION_CONSTRAINT_TYPES)
    with pytest.raises(ValueError, match="train split only"):
        make_math_items(2, 0, "eval", "varied")
    with pytest.raises(ValueError, match="'mixed'"):
        builtin_train_prompts({"math": 2}, 0, "mixed")


def test_builtin_train_prompts() -> None:
    items = builtin_train_prompts({"math": 24, "instruction": 24}, seed=7)
    assert [i["capability"] for i in items] == ["math"] * 24 + ["instruction"] * 24
    assert items[:24] == make_math_items(24, 7, "train")
    with pytest.raises(ValueError, match="'poetry'"):
        builtin_train_prompts({"math": 2, "poetry": 2}, seed=0)
    with pytest.raises(ValueError, match="split"):
        make_math_items(2, 0, "test")
