"""Programmatic verifiers: termination, math final answers and instruction-following constraints.

One entry point, :func:`verify` ``(response, item, finish_reason=None) -> Verdict(passed, reason)``, checks in order:

1. termination: a response cut off at the token limit (``finish_reason == "length"``) fails with
   :data:`TRUNCATED`, whatever the capability (chat included, which otherwise has no verifier);
2. math (the item has an ``answer``): the stated final answer (:func:`stated_answer`: boxed, then "the answer is",
   then the last number before a trailing check; two different numbers offered fail as a hedge) equals it, by
   Hugging Face's math-verify (:func:`answers_equal`);
3. instruction (the item has ``constraints``): the reply does the task at all (:func:`task_problem`: not too short,
   not a restatement of the prompt) and every constraint holds; dicts ``{"type": str, "value": ...}``, see
   :data:`CONSTRAINT_TYPES` for the supported types;
4. otherwise ``passed`` is None: no verifier applies and the reward model alone judges the response.

A passing reply to an item with a ``topic`` it never mentions (:func:`on_topic`) carries the flag :data:`OFF_TOPIC`
in ``Verdict.flags``; selection ranks it below on-topic passes. The topic check is a word heuristic (plurals, word
starts): "Honeybees" does not count for "bees".
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

# Constraint type -> kind of value it takes ("int", "str", "list[str]", "fraction": a number in [0, 1]) or None when
# it takes no value. ends_cleanly: the reply ends a sentence, a list item or a code block rather than stopping
# mid-sentence; max_repetition: at most this share of the reply's word 4-grams repeat an earlier one (runaway loops).
CONSTRAINT_TYPES: dict[str, str | None] = {
    "max_words": "int",
    "min_words": "int",
    "include_keywords": "list[str]",
    "exclude_keywords": "list[str]",
    "lowercase": None,
    "uppercase": None,
    "start_with": "str",
    "end_with": "str",
    "num_bullets": "int",
    "no_commas": None,
    "json": None,
    "ends_cleanly": None,
    "max_repetition": "fraction",
}

_NUMBER_RE = re.compile(r"(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_NUM = r"(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_ANSWER_NUMBER_RE = re.compile(_NUM + r"(?:\s*/\s*\d+(?![\d.]))?")  # "1/2" is one number
# A number right after one of these is denied, not stated ("not 14", "isn't 14", "rather than 14", "instead of 14").
_NEGATION_RE = re.compile(
    r"(?:\bnot|n['\u2019]t|\bnever|\brather than|\binstead of)\s+(?:(?:equal to|be|exactly|just|simply)\s+)?$",
    re.IGNORECASE,
)
_HEDGE_RE = re.compile(
    rf"(?P<a>{_NUM})\s*,?\s+(?:or|and/or)\s+(?:maybe\s+|possibly\s+|perhaps\s+)?(?P<b>{_NUM})"
    rf"|\bbetween\s+(?P<a2>{_NUM})\s+and\s+(?P<b2>{_NUM})",
    re.IGNORECASE,
)
# Where a response starts checking its answer, at the start of a sentence: what follows is not the answer
# ("... = 15. Check: 15 + 6 = 21"). A bare "check" inside a sentence ("The check was 45") is not one.
_CHECK_RE = re.compile(
    r"(?:^|(?<=[.!?]\s)|(?<=\n))[\s*#]*(?:(?:check|verification|verify|double[- ]check(?:ing)?)\s*[:,]"
    r"|let['\u2019]s (?:double[- ])?(?:check|verify)\b|to (?:check|verify)\b|checking\s*[:,])",
    re.IGNORECASE,
)
_BOXED_RE = re.compile(r"\\boxed\s*\{")
# "the answer is 5", "The final answer is: 5", "Answer: 5", "**Answer:** 5"; the last occurrence counts.
_ANSWER_PHRASE_RE = re.compile(r"(?:\banswer\s+is\b|\banswer\s*:)[\s:*]*", re.IGNORECASE)
# The stated answer runs to the end of its sentence: a newline, or . ! ? ; followed by a space or the end.
_SENTENCE_END_RE = re.compile(r"\n|[.!?;](?=\s|$)")
_FRAC_RE = re.compile(r"\\d?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_FENCE_RE = re.compile(r"^```[\w+-]*[ \t]*\n?(.*?)\n?[ \t]*```$", re.DOTALL)
_LIST_ITEM_RE = re.compile(r"^(?:[-*\u2022]|\d+[.)])\s+\S")
_CLEAN_END_RE = re.compile(r"[.!?][\"')\]\u201d\u2019*]*$")
REPETITION_NGRAM = 4  # as the degenerate-repetition filter
MATH_TOLERANCE = Fraction(1, 10**6)
TRUNCATED = "truncated (no end-of-turn)"
"""Verdict reason of a response that hit the token limit instead of ending its turn."""


class UnknownConstraintError(ValueError):
    """A constraint names a type that no verifier implements."""


@dataclass(frozen=True)
class Verdict:
    """Outcome of :func:`verify`; ``passed`` is None when no verifier applies to the item. ``flags`` qualify a pass
    (:data:`OFF_TOPIC`): it stays a pass, ranked below unflagged ones."""

    passed: bool | None
    reason: str
    flags: tuple[str, ...] = ()


def validate_constraint(c: Mapping[str, Any]) -> None:
    """Raise UnknownConstraintError for an unknown type, ValueError for a missing or ill-typed value."""
    if not isinstance(c, Mapping):
        raise ValueError(f"constraint must be an object, got {type(c).__name__}")
    ctype = c.get("type")
    if ctype not in CONSTRAINT_TYPES:
        raise UnknownConstraintError(f"unknown constraint type {ctype!r} (supported: {', '.join(CONSTRAINT_TYPES)})")
    kind, value = CONSTRAINT_TYPES[ctype], c.get("value")
    if kind is None:
        if value is not None:
            raise ValueError(f"constraint {ctype!r} takes no value, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"constraint {ctype!r} needs a non-negative int value, got {value!r}")
    elif kind == "fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"constraint {ctype!r} needs a number between 0 and 1, got {value!r}")
    elif kind == "str":
        if not isinstance(value, str) or not value:
            raise ValueError(f"constraint {ctype!r} needs a non-empty str value, got {value!r}")
    elif not isinstance(value, list) or not value or not all(isinstance(w, str) and w for w in value):
        raise ValueError(f"constraint {ctype!r} needs a non-empty list of non-empty str values, got {value!r}")


def _is_json(response: str) -> bool:
    text = response.strip()
    fenced = _FENCE_RE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, (dict, list)) and bool(value)  # a bare number or string is not an answer "in JSON"


def check_constraint(response: str, c: Mapping[str, Any]) -> bool:
    """True when ``response`` satisfies constraint ``c`` (validated first: an unknown type raises)."""
    validate_constraint(c)
    ctype, value = c["type"], c.get("value")
    if ctype == "max_words":
        return len(response.split()) <= value
    if ctype == "min_words":
        return len(response.split()) >= value
    if ctype == "include_keywords":  # whole words, as exclude_keywords: "Smallest." does not include "small"
        return all(re.search(r"\b" + re.escape(w) + r"\b", response, re.IGNORECASE) for w in value)
    if ctype == "exclude_keywords":
        return not any(re.search(r"\b" + re.escape(w) + r"\b", response, re.IGNORECASE) for w in value)
    if ctype == "lowercase":
        return any(ch.isalpha() for ch in response) and not any(ch.isupper() for ch in response)
    if ctype == "uppercase":
        return any(ch.isalpha() for ch in response) and not any(ch.islower() for ch in response)
    if ctype == "start_with":
        return response.strip().startswith(value)
    if ctype == "end_with":
        return response.strip().endswith(value)
    if ctype == "num_bullets":
        return sum(line.lstrip().startswith(("- ", "* ")) for line in response.splitlines()) == value
    if ctype == "no_commas":
        return "," not in response
    if ctype == "ends_cleanly":
        return ends_cleanly(response)
    if ctype == "max_repetition":
        from synth_data.filters import repetition_ratio

        return repetition_ratio(response, REPETITION_NGRAM) <= value
    return _is_json(response)  # "json", the only type left


def ends_cleanly(response: str) -> bool:
    """The reply's last line ends a sentence (. ! ? or a closing quote / bracket after one), is a list item, or
    closes a code block: not a reply that stops mid-sentence."""
    text = response.rstrip()
    if not text:
        return False
    last_line = text.splitlines()[-1].strip()
    if _LIST_ITEM_RE.match(last_line) or text.endswith("```"):
        return True
    return bool(_CLEAN_END_RE.search(text))


def extract_last_number(text: str) -> str | None:
    """The last number in ``text`` with thousands commas removed (e.g. "1,234" -> "1234"), or None."""
    matches = _NUMBER_RE.findall(text)
    return matches[-1].replace(",", "") if matches else None


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces balanced), or None; an unclosed box counts as absent."""
    for m in reversed(list(_BOXED_RE.finditer(text))):
        depth, start = 1, m.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i]
    return None


def _boxed_value(content: str) -> str | None:
    """A boxed expression as a number string: ``\\frac{a}{b}`` -> "a/b", ``$``, ``\\,`` and ``\\!`` removed; a box
    holding more than one number gives its last number, one holding none its stripped text (None when empty)."""
    s = _FRAC_RE.sub(r"\1/\2", content)
    s = re.sub(r"\\[,!; ]|\$", "", s).strip()
    if _to_fraction(s) is not None:
        return s.replace(",", "").replace(" ", "")
    return extract_last_number(s) or s or None


def _to_fraction(s: str) -> Fraction | None:
    try:
        return Fraction(s.strip().replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


@dataclass(frozen=True)
class MathAnswer:
    """The final answer a math response states: ``value`` (a number string such as "15", "-3.5", "1/2"), or None
    with ``problem`` saying why there is none ("no number", "hedged: 15 or 16")."""

    value: str | None
    problem: str | None = None


def _numbers(sentence: str) -> list[str]:
    """The numbers of ``sentence`` that are stated, not denied: "not 14" / "isn't 14" / "rather than 14" skipped;
    a simple fraction "1/2" is one number."""
    out = []
    for m in _ANSWER_NUMBER_RE.finditer(sentence):
        if _NEGATION_RE.search(sentence[: m.start()]):
            continue
        out.append(re.sub(r"\s+", "", m.group(0)).replace(",", ""))
    return out


def _hedge(sentence: str) -> str | None:
    """ "15 or 16" / "between 15 and 16" with two different values: the hedge as text, else None."""
    for m in _HEDGE_RE.finditer(sentence):
        a, b = (re.sub(r"[\s,]", "", m.group(x) or m.group(x + "2")) for x in ("a", "b"))
        if not _same_value(a, b):
            return f"{a} or {b}"
    return None


def _same_value(a: str, b: str) -> bool:
    fa, fb = _to_fraction(a), _to_fraction(b)
    return fa == fb if fa is not None and fb is not None else a == b


def stated_answer(text: str) -> MathAnswer:
    """The final answer of a math response, by priority:

    1. the last ``\\boxed{...}``;
    2. else the last "answer is" / "answer:" phrase (case-insensitive): the first stated number of its sentence,
       after the sentence's last "=" if any ("the answer is 12 + 7 = 19" states 19); a denied number is skipped ("the
       answer is not 14, it is 15" states 15);
    3. else the last stated number, leaving out what follows the last check that starts a sentence ("... = 15.
       Check: 15 + 6 = 21" states 15; "The check was 45, so the tip is 15." states 15).

    Two different numbers offered as the answer ("15 or 16", "between 15 and 16") are a hedge: no answer.
    """
    boxed = _last_boxed(text)
    if boxed is not None:
        value = _boxed_value(boxed)
        return MathAnswer(value) if value else MathAnswer(None, "no number")
    phrases = list(_ANSWER_PHRASE_RE.finditer(text))
    if phrases:
        rest = text[phrases[-1].end() :]
        end = _SENTENCE_END_RE.search(rest)
        sentence = rest[: end.start()] if end else rest
        if hedge := _hedge(sentence.rsplit("=", 1)[-1]):
            return MathAnswer(None, f"hedged: {hedge}")
        stated = _numbers(sentence.rsplit("=", 1)[-1])
        if stated:
            return MathAnswer(stated[0])
    checks = list(_CHECK_RE.finditer(text))
    body = text[: checks[-1].start()] if checks else text  # up to the last check that starts a sentence
    if not _numbers(body):
        body = text  # everything stated is in the check: use it rather than nothing
    sentences = [s for s in _SENTENCE_END_RE.split(body) if _numbers(s)]
    if not sentences:
        return MathAnswer(None, "no number")
    final = sentences[-1].rsplit("=", 1)[-1] if _numbers(sentences[-1].rsplit("=", 1)[-1]) else sentences[-1]
    if hedge := _hedge(final):  # "between 1 and 10, so x = 7" states 7: only what follows the last "=" counts
        return MathAnswer(None, f"hedged: {hedge}")
    return MathAnswer(_numbers(sentences[-1])[-1])


def extract_answer(text: str) -> str | None:
    """The final answer of a math response (:func:`stated_answer`), or None (no number, or a hedge)."""
    return stated_answer(text).value


class _NoTimeoutNotice(logging.Filter):
    """math-verify warns once per process that its timeouts are off. They are signal-based (main thread only) and the
    strings it gets here are short extracted answers, so they are off on purpose; the notice only adds noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_NoTimeoutNotice())


@functools.lru_cache(maxsize=4096)
def _parsed(value: str):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = [LatexExtractionConfig(), ExprExtractionConfig()]  # \frac{1}{2} as well as 1/2 and 0.5
    return parse(value, extraction_config=config, parsing_timeout=None)


def answers_equal(expected: str, got: str) -> bool:
    """Whether two answers are the same number or expression: Hugging Face's math-verify (the checker of TRL's
    accuracy reward, open-r1 and lighteval) decides, so "1/2", "\\frac{1}{2}" and "0.5" are equal and "42.0" equals "42"; plain numbers
    also match within :data:`MATH_TOLERANCE`. Strings math-verify cannot parse must be equal."""
    expected, got = str(expected).strip().replace(",", ""), got.strip()
    fe, fg = _to_fraction(expected), _to_fraction(got)
    if fe is not None and fg is not None and abs(fe - fg) <= MATH_TOLERANCE:
        return True
    from math_verify import verify as math_verify

    gold, target = _parsed(expected), _parsed(got)
    if not gold or not target:
        return expected == got
    return bool(math_verify(gold, target, timeout_seconds=None))


def verify_math(response: str, answer: str) -> bool:
    """True when the stated final answer of ``response`` (:func:`stated_answer`) equals ``answer``
    (:func:`answers_equal`); a hedge or a missing number is wrong."""
    got = extract_answer(response)
    return got is not None and answers_equal(str(answer), got)


def check_termination(finish_reason: str | None) -> bool:
    """False when generation stopped at the token limit ("length"); True for an end-of-turn ("stop") or unknown."""
    return finish_reason != "length"


def _constraints_of(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    constraints = item.get("constraints") or []
    if isinstance(constraints, str):
        constraints = json.loads(constraints)
    if not isinstance(constraints, list):
        raise ValueError(f"constraints must be a list, got {type(constraints).__name__}")
    return constraints


MIN_TASK_WORDS = 3
"""An instruction reply shorter than this many words cannot do a task ("ok." for "write in lowercase")."""
MIN_NEW_WORDS = 2
"""An instruction reply needs at least this many distinct content words that are not in the prompt; fewer, and it
only restates the instruction ("You asked me to include the word 'small'.")."""
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "about",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "me",
        "him",
        "her",
        "us",
        "them",
        "my",
        "your",
        "our",
        "their",
        "do",
        "does",
        "did",
        "not",
        "no",
        "so",
        "than",
        "then",
        "there",
        "here",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "why",
        "all",
        "any",
        "each",
        "some",
        "such",
        "can",
        "could",
        "will",
        "would",
        "should",
        "may",
        "might",
        "must",
        "just",
        "also",
        "very",
        "into",
        "from",
        "up",
        "out",
        "over",
    ]
)


def content_words(text: str) -> list[str]:
    """Lowercase word tokens of ``text`` without stopwords and bare numbers."""
    return [w for w in re.findall(r"[a-z][a-z']*", text.lower()) if w not in STOPWORDS]


def _stem(word: str) -> str:
    """A plural's singular, roughly: cities -> city, boxes -> box, mountains -> mountain."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def task_problem(response: str, item: Mapping[str, Any]) -> str | None:
    """Why an instruction reply does not do the task at all, whatever its constraints say, or None: too short
    (fewer than :data:`MIN_TASK_WORDS` words), or nothing but the prompt's own words (fewer than
    :data:`MIN_NEW_WORDS` content words the prompt does not use, counting the prompt's topic words as new)."""
    if len(response.split()) < MIN_TASK_WORDS:
        return "too short to do the task"
    prompt = " ".join(m["content"] for m in item.get("messages") or [] if m["role"] == "user")
    # the topic's words are what the reply should talk about, not words it merely echoes ("THE MOON GLOWS.")
    asked = {_stem(w) for w in content_words(prompt)} - {_stem(w) for w in content_words(item.get("topic") or "")}
    new = {w for w in content_words(response) if _stem(w) not in asked}
    if len(new) < MIN_NEW_WORDS:
        return "restates the prompt"
    return None


def on_topic(response: str, topic: str | None) -> bool:
    """Whether ``response`` mentions its prompt's ``topic`` (a word of it, plural or singular, as a word or a word's
    start: "mountain" for "mountains"); True when the prompt names no topic."""
    words = [_stem(w) for w in content_words(topic or "")]
    if not words:
        return True
    said = {_stem(w) for w in content_words(response)}
    # a word, or the start of a longer word for topic words of 4+ letters ("mountain" in "mountainous", not "tea"
    # in "teaches")
    return any(w2 == w or (len(w) >= 4 and w2.startswith(w)) for w in words for w2 in said)


OFF_TOPIC = "off-topic"
"""Flag of a verified reply that says nothing about its prompt's topic: ranked below on-topic passes."""


def has_verifier(item: Mapping[str, Any]) -> bool:
    """Whether ``item`` has a check of its own (a math answer or constraints) beyond termination."""
    return item.get("answer") is not None or bool(_constraints_of(item))


def verify(response: str, item: Mapping[str, Any], finish_reason: str | None = None) -> Verdict:
    """Check ``response`` to a prompt/suite ``item``: termination, then the math answer, else every constraint, else no
    verifier (see the module docstring). ``finish_reason`` is the generator's ("stop" or "length"; None: unknown)."""
    if not check_termination(finish_reason):
        return Verdict(False, TRUNCATED)
    if item.get("answer") is not None:
        answer = str(item["answer"])
        stated = stated_answer(response)
        if stated.value is None:
            return Verdict(False, f"math: {stated.problem}")
        if answers_equal(answer, stated.value):
            return Verdict(True, f"math: correct ({answer})")
        return Verdict(False, f"math: expected {answer}, got {stated.value}")
    constraints = _constraints_of(item)
    if not constraints:
        return Verdict(None, "no verifier")
    for c in constraints:
        validate_constraint(c)
    for c in constraints:
        if not check_constraint(response, c):
            return Verdict(False, f"constraint failed: {c['type']}")
    if item.get("capability", "instruction") == "instruction" and (problem := task_problem(response, item)):
        return Verdict(False, f"instruction: {problem}")  # format items ask for short replies: not checked
    flags = () if on_topic(response, item.get("topic")) else (OFF_TOPIC,)
    return Verdict(True, f"all {len(constraints)} constraints passed", flags)


def partial_credit(response: str, item: Mapping[str, Any], verdict: Verdict) -> float | None:
    """The share of ``item``'s checks that ``response`` meets, given its :func:`verify` ``verdict``: 1.0 for a pass
    (flagged or not), None where no verifier applies, 0.0 for a truncated reply, a wrong or unstated math answer, or an
    instruction reply that does not do the task or says nothing about the prompt's topic (:func:`on_topic`: a pass
    that does is flagged and never chosen); otherwise the share of the item's constraints it meets (1 of 2: 0.5).
    ``selection.partial_credit`` ranks failures by it: one that meets some constraints is closer to a pass."""
    if verdict.passed is None:
        return None
    if verdict.passed:
        return 1.0
    if verdict.reason == TRUNCATED or item.get("answer") is not None:
        return 0.0
    if item.get("capability", "instruction") == "instruction" and (
        task_problem(response, item) or not on_topic(response, item.get("topic"))
    ):
        return 0.0
    constraints = _constraints_of(item)
    return sum(check_constraint(response, c) for c in constraints) / len(constraints)
