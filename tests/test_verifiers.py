"""Unit tests for reward.verifiers against hand-computed values."""

import pytest

from reward.verifiers import (
    CONSTRAINT_TYPES,
    TRUNCATED,
    UnknownConstraintError,
    Verdict,
    check_constraint,
    check_termination,
    extract_answer,
    extract_last_number,
    partial_credit,
    validate_constraint,
    verify,
    verify_math,
)

# (constraint, passing response, failing response) for every supported type
CASES = [
    ({"type": "max_words", "value": 3}, "one two three", "one two three four"),
    ({"type": "min_words", "value": 3}, "one  two\nthree", "one two"),
    ({"type": "include_keywords", "value": ["Blue", "sky"]}, "The BLUE sky at night", "The blue skyline"),
    ({"type": "exclude_keywords", "value": ["very"]}, "Everything is fine.", "It is Very fine."),
    ({"type": "lowercase"}, "all lower, 123.", "Not lower."),
    ({"type": "uppercase", "value": None}, "ALL UPPER, 123.", "ALL UPPEr."),
    ({"type": "start_with", "value": "Yes"}, "  Yes, indeed.", "Well, yes."),
    ({"type": "end_with", "value": "Thanks."}, "Done. Thanks.\n", "Thanks. Done."),
    ({"type": "num_bullets", "value": 2}, "Intro\n- a\n  * b\n-c", "- a\n- b\n- c"),
    ({"type": "no_commas"}, "No commas here.", "One, two."),
    ({"type": "json"}, '{"a": [1, 2]}', '{"a": 1,}'),
    ({"type": "ends_cleanly"}, "Two items:\n- tea\n- coffee", "It works because the"),
    ({"type": "max_repetition", "value": 0.2}, "A short, varied reply.", "go on and on " * 6),
]


def test_cases_cover_every_type() -> None:
    assert sorted(c["type"] for c, _, _ in CASES) == sorted(CONSTRAINT_TYPES)


@pytest.mark.parametrize(
    ("text", "clean"),
    [("Done.", True), ('He said "hi."', True), ("**Done.**", True), ("1. first", True), ("```\nx\n```", True)]
    + [("and then the", False), ("", False), ("Hello", False)],
)
def test_ends_cleanly(text: str, clean: bool) -> None:
    from reward.verifiers import ends_cleanly

    assert ends_cleanly(text) is clean


def test_fraction_values_are_checked() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        validate_constraint({"type": "max_repetition", "value": 2})


@pytest.mark.parametrize(("constraint", "good", "bad"), CASES, ids=[c["type"] for c, _, _ in CASES])
def test_constraint_pass_and_fail(constraint: dict, good: str, bad: str) -> None:
    assert check_constraint(good, constraint) is True
    assert check_constraint(bad, constraint) is False


def test_case_rules_need_a_letter() -> None:
    assert not check_constraint("123 !", {"type": "lowercase"})
    assert not check_constraint("123 !", {"type": "uppercase"})


def test_exclude_keywords_is_whole_word() -> None:
    c = {"type": "exclude_keywords", "value": ["very", "a.b"]}
    assert check_constraint("everything every veryfine axb", c)
    assert not check_constraint("very.", c)
    assert not check_constraint("see a.b now", c)


def test_include_keywords_are_whole_words() -> None:
    assert not check_constraint("everything", {"type": "include_keywords", "value": ["VERY"]})
    assert check_constraint("It was VERY calm.", {"type": "include_keywords", "value": ["very"]})


def test_json_fences() -> None:
    c = {"type": "json"}
    assert check_constraint('```json\n{"a": 1}\n```', c)
    assert check_constraint("  ```\n[1, 2]\n```  ", c)
    assert check_constraint('```{"a": 1}```', c)
    assert not check_constraint('Here it is: ```json\n{"a": 1}\n```', c)
    assert not check_constraint("```json\nnot json\n```", c)


def test_unknown_type_raises() -> None:
    with pytest.raises(UnknownConstraintError, match="max_chars"):
        check_constraint("anything", {"type": "max_chars", "value": 3})
    with pytest.raises(UnknownConstraintError):
        validate_constraint({"value": 3})
    with pytest.raises(UnknownConstraintError):
        verify("anything", {"constraints": [{"type": "no_commas"}, {"type": "nope"}]})


@pytest.mark.parametrize(
    "constraint",
    [
        {"type": "max_words"},
        {"type": "max_words", "value": "3"},
        {"type": "min_words", "value": True},
        {"type": "num_bullets", "value": -1},
        {"type": "include_keywords", "value": "blue"},
        {"type": "exclude_keywords", "value": ["ok", 3]},
        {"type": "include_keywords", "value": []},
        {"type": "start_with", "value": 5},
        {"type": "end_with"},
        {"type": "lowercase", "value": True},
        {"type": "json", "value": "yes"},
    ],
)
def test_invalid_values_raise(constraint: dict) -> None:
    with pytest.raises(ValueError, match=constraint["type"]) as info:
        validate_constraint(constraint)
    assert not isinstance(info.value, UnknownConstraintError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 42.", "42"),
        ("So 1,234 apples", "1234"),
        ("It is -3.5 degrees", "-3.5"),
        ("from 3 to 10, then 7", "7"),
        ("2,000,000 and 1,5", "5"),
        ("10-3 = 7", "7"),
        ("5 - 8", "8"),
        ("x = -12", "-12"),
        ("0.5", "0.5"),
        ("no number here", None),
        ("", None),
    ],
)
def test_extract_last_number(text: str, expected: str | None) -> None:
    assert extract_last_number(text) == expected


@pytest.mark.parametrize(
    ("response", "answer", "ok"),
    [
        ("12 + 7 = 19. The answer is 19.", "19", True),
        ("The answer is 42.0", "42", True),
        ("The answer is 1,234.", "1234", True),
        ("It is -3.50", "-3.5", True),
        ("0.3333334", "0.333333", True),
        ("The answer is 18.", "19", False),
        ("19 is wrong, it is 20", "19", False),
        ("nineteen", "19", False),
    ],
)
def test_verify_math(response: str, answer: str, ok: bool) -> None:
    assert verify_math(response, answer) is ok


def test_verify_dispatch() -> None:
    math_item = {"capability": "math", "answer": "12"}
    assert verify("So it is 12.", math_item) == Verdict(True, "math: correct (12)")
    assert verify("It is 7", math_item) == Verdict(False, "math: expected 12, got 7")
    assert verify("no idea", math_item) == Verdict(False, "math: no number")

    cons = [{"type": "lowercase"}, {"type": "max_words", "value": 3}]
    assert verify("a b c", {"constraints": cons}).passed is True
    assert verify("a b c d", {"constraints": cons}) == Verdict(False, "constraint failed: max_words")
    assert verify("A b c d", {"constraints": cons}) == Verdict(False, "constraint failed: lowercase")
    as_json = '[{"type": "no_commas", "value": null}]'
    assert verify("a, b", {"constraints": as_json}) == Verdict(False, "constraint failed: no_commas")
    assert verify("a b c", {"constraints": as_json}).passed is True

    assert verify("hello", {"capability": "chat"}) == Verdict(None, "no verifier")
    assert verify("hello", {"answer": None, "constraints": []}).passed is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # \boxed{} wins over everything; the last box counts; braces nest; \frac becomes a/b
        (r"First \boxed{3}, then 4+4 = \boxed{8}. The answer is 9, or 10", "8"),
        (r"So $\boxed{\frac{3}{4}}$ of them", "3/4"),
        (r"\boxed{-\dfrac{1}{2}}", "-1/2"),
        (r"\boxed{1,234}", "1234"),
        (r"\boxed{x = 5 \text{ apples}}", "5"),
        (r"\boxed{{12}}", "12"),
        (r"\boxed{}", None),
        (r"\boxed{12 with no closing brace, 13", "13"),
        # "the answer is" / "answer:" (last one, any case) over the last number
        ("The answer is 19. Check: 19 + 1 = 20", "19"),
        ("the ANSWER IS -3, since 3 - 6 = -3 and 7 is not it", "-3"),
        ("Answer: 1,234.50. Then 7", "1234.50"),
        ("**Answer:** 8 (from 4 * 2)", "8"),
        ("The answer is 5. No wait, the final answer is 6. Double 6 is 12", "6"),
        ("The answer is 12 + 7 = 19. Done in 2 steps", "19"),
        ("The answer is 3.5.", "3.5"),
        # no number in the stated sentence, or "answer" without "is"/":": the last number
        ("The answer is unclear. 7 and 9", "9"),
        ("The answer isn't 5, it is 6", "6"),
        ("Any answer would be 4 or 5", None),  # a hedge: two different numbers offered
        ("no number here", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_verify_math_uses_the_stated_answer() -> None:
    # Before the answer-phrase rule the trailing check number (20) was taken as the answer.
    assert verify_math("The answer is 19. Check: 19 + 1 = 20", "19") is True
    assert verify_math(r"It is \boxed{\frac{1}{2}}; as a decimal 0.5, times 2 is 1", "0.5") is True
    assert verify_math(r"\boxed{20}. The answer is 19.", "19") is False
    assert verify("The answer is 12. Then 12 - 5 = 7", {"answer": "12"}) == Verdict(True, "math: correct (12)")
    assert verify(r"\boxed{7}", {"answer": "12"}) == Verdict(False, "math: expected 12, got 7")
    assert verify(r"\boxed{}", {"answer": "12"}) == Verdict(False, "math: no number")


def test_termination_fails_truncated_responses_of_every_capability() -> None:
    assert check_termination("length") is False
    assert check_termination("stop") is True and check_termination(None) is True
    truncated = Verdict(False, TRUNCATED)
    assert TRUNCATED == "truncated (no end-of-turn)"
    items = [{"answer": "12"}, {"constraints": [{"type": "lowercase"}]}, {"capability": "chat"}]
    for item in items:  # responses that would pass (or, for chat, have no verifier) when not truncated
        assert verify("the answer is 12 apples", item, finish_reason="length") == truncated
        assert verify("the answer is 12 apples", item, finish_reason="stop").passed is not False
    assert verify("hello", {"capability": "chat"}, finish_reason="stop") == Verdict(None, "no verifier")


@pytest.mark.parametrize(
    ("response", "answer", "ok", "reason"),
    [
        # the review's cases (issue: "Math answers are extracted wrongly"); each was wrong before math-verify
        ("The answer is not 14, it is 15.", "15", True, "math: correct (15)"),
        ("The answer is not 14, it is 15.", "14", False, "math: expected 14, got 15"),
        ("The answer is 15 or 16.", "15", False, "math: hedged: 15 or 16"),
        ("The answer is 15 or 16.", "16", False, "math: hedged: 15 or 16"),
        ("1/2", "0.5", True, "math: correct (0.5)"),
        ("1/2", "1", False, "math: expected 1, got 1/2"),
        ("5 + 10 = 15. Check: 15 + 6 = 21", "15", True, "math: correct (15)"),
        ("5 + 10 = 15. Check: 15 + 6 = 21", "21", False, "math: expected 21, got 15"),
        # equivalence through math-verify, not string equality
        ("The answer is 0.50", "1/2", True, "math: correct (1/2)"),
        (r"So \boxed{\frac{3}{4}}.", "0.75", True, "math: correct (0.75)"),
        ("The answer is 0.5.", r"\frac{1}{2}", True, r"math: correct (\frac{1}{2})"),  # a LaTeX gold answer
        ("It is somewhere between 3 and 4.", "3", False, "math: hedged: 3 or 4"),
        ("It is 15, or 15.0 if you like decimals.", "15", True, "math: correct (15)"),  # the same value twice
        # review of the first fix: "check" only counts where it starts a sentence, the last one; a range before the
        # final "=" is not a hedge
        ("Tom paid 30 dollars. The check was 45, so the tip is 15.", "15", True, "math: correct (15)"),
        ("First 3 + 4 = 7. Let me check the next step: 7 * 2 = 14.", "14", True, "math: correct (14)"),
        ("We need an integer between 1 and 10, so x = 7.", "7", True, "math: correct (7)"),
        ("x = 15.\n\nLet's check: 15 + 6 = 21.", "15", True, "math: correct (15)"),
    ],
)
def test_math_answers_are_stated_not_guessed(response: str, answer: str, ok: bool, reason: str) -> None:
    assert verify(response, {"answer": answer}) == Verdict(ok, reason)


SMALL_TOWN = {
    "capability": "instruction",
    "messages": [
        {"role": "user", "content": "Describe a quiet town. Include the word 'small'. Do not use any commas."}
    ],
    "constraints": [{"type": "include_keywords", "value": ["small"]}, {"type": "no_commas"}],
    "topic": "a quiet town",
}


@pytest.mark.parametrize(
    ("response", "item_changes", "reason"),
    [
        # each passed before: restating the instruction satisfies include_keywords + no_commas
        ("You asked me to include the word 'small'.", {}, "instruction: restates the prompt"),
        # "small" inside "Smallest" is not the word (exclude_keywords already used word boundaries)
        ("Smallest.", {}, "constraint failed: include_keywords"),
        # a bare number is valid JSON but not an answer "in JSON"
        ("5", {"constraints": [{"type": "json"}]}, "constraint failed: json"),
        # too short to do any task, though all lowercase
        ("ok.", {"constraints": [{"type": "lowercase"}]}, "instruction: too short to do the task"),
    ],
)
def test_instruction_verifiers_cannot_be_gamed(response: str, item_changes: dict, reason: str) -> None:
    assert verify(response, {**SMALL_TOWN, **item_changes}) == Verdict(False, reason)


def test_a_real_answer_passes_and_an_off_topic_one_is_flagged() -> None:
    good = "The small town sleeps under old oak trees and a church bell rings at noon."
    assert verify(good, SMALL_TOWN) == Verdict(True, "all 2 constraints passed")
    elsewhere = "The small harbour smells of salt and tar while boats rock at the pier."
    assert verify(elsewhere, SMALL_TOWN) == Verdict(True, "all 2 constraints passed", ("off-topic",))
    facts = {"capability": "instruction", "topic": "mountains",
             "messages": [{"role": "user", "content": "List a few facts about mountains. Answer in valid JSON."}],
             "constraints": [{"type": "json"}]}  # fmt: skip
    assert verify('{"max_length": 181}', facts) == Verdict(False, "instruction: too short to do the task")
    assert verify('{"colour": "blue", "size": "large", "count": 3}', facts).flags == ("off-topic",)
    assert verify('{"facts": ["A mountain can be older than the oceans."]}', facts).flags == ()


@pytest.mark.parametrize(
    ("prompt", "topic", "constraint", "reply"),
    [
        ("Write one sentence about the moon. Write your entire answer in capital letters.", "the moon",
         {"type": "uppercase"}, "THE MOON GLOWS."),
        ("Describe coffee in a few words. Do not use any commas.", "coffee", {"type": "no_commas"}, "Coffee is warm."),
        ("Write one sentence about gardening. Answer in valid JSON.", "gardening", {"type": "json"},
         '{"sentence": "Gardening is relaxing."}'),
    ],
)  # fmt: skip
def test_a_short_reply_about_the_topic_is_not_a_restatement(prompt, topic, constraint, reply):
    """The topic's words are what the reply should be about: counted as echoes of the prompt, these correct replies
    failed as "restates the prompt"."""
    item = {"capability": "instruction", "messages": [{"role": "user", "content": prompt}], "topic": topic}
    assert verify(reply, {**item, "constraints": [constraint]}) == Verdict(True, "all 1 constraints passed")


@pytest.mark.parametrize(
    ("reply", "topic", "expected"),
    [
        ("Cities never sleep at night.", "the city", True),  # cities -> city
        ("Boxes were stacked to the ceiling.", "a box", True),
        ("The mountainous north is cold.", "mountains", True),
        ("Our team teaches well.", "tea", False),  # a 3-letter topic word must match whole
    ],
)
def test_topic_words_match_plurals_and_whole_short_words(reply, topic, expected):
    from reward.verifiers import on_topic

    assert on_topic(reply, topic) is expected


def test_partial_credit_is_the_share_of_constraints_a_failing_reply_meets() -> None:
    """``selection.partial_credit`` ranks failures by this share: a reply that meets one of two constraints is closer
    to a pass than one that meets none; a reply that does not do the task or was cut off meets nothing."""
    half = "The small town sleeps, and a church bell rings at noon."  # "small" yes, no commas: no
    none = "Birds sing over a quiet village, and the bell rings."  # neither
    whole = "The small town sleeps under old oak trees and a church bell rings at noon."
    assert [partial_credit(r, SMALL_TOWN, verify(r, SMALL_TOWN)) for r in (whole, half, none)] == [1.0, 0.5, 0.0]
    cut = verify(half, SMALL_TOWN, finish_reason="length")
    assert partial_credit(half, SMALL_TOWN, cut) == 0.0  # truncated: nothing counted
    restated = "Include the word small."  # meets both constraints but only restates the prompt
    assert verify(restated, SMALL_TOWN).passed is False
    assert partial_credit(restated, SMALL_TOWN, verify(restated, SMALL_TOWN)) == 0.0
    elsewhere = "The small dog chased a red ball, and the bell rang."  # "small" yes, commas no, but not the town
    assert partial_credit(elsewhere, SMALL_TOWN, verify(elsewhere, SMALL_TOWN)) == 0.0
    math_item = {"capability": "math", "answer": "12"}
    assert [partial_credit(r, math_item, verify(r, math_item)) for r in ("It is 12.", "It is 7.")] == [1.0, 0.0]
    assert partial_credit("hello", {"capability": "chat"}, verify("hello", {"capability": "chat"})) is None
    three = {**SMALL_TOWN, "constraints": [*SMALL_TOWN["constraints"], {"type": "max_words", "value": 5}]}
    assert partial_credit(half, three, verify(half, three)) == pytest.approx(1 / 3)
