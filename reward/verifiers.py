"""Programmatic verifiers: termination, math final answers and instruction-following constraints.

One entry point, :func:`verify` ``(response, item, finish_reason=None) -> Verdict(passed, reason)``, checks in order:

1. termination: a response cut off at the token limit (``finish_reason == "length"``) fails with
   :data:`TRUNCATED`, whatever the capability (chat included, which otherwise has no verifier);
2. math (the item has an ``answer``): the final answer (see :func:`extract_answer`) equals it numerically;
3. instruction (the item has ``constraints``): every constraint holds; dicts ``{"type": str, "value": ...}``, see
   :data:`CONSTRAINT_TYPES` for the supported types;
4. otherwise ``passed`` is None: no verifier applies and the reward model alone judges the response.
"""

from __future__ import annotations

import json
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
    """Outcome of :func:`verify`; ``passed`` is None when no verifier applies to the item."""

    passed: bool | None
    reason: str


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
        json.loads(text)
    except ValueError:
        return False
    return True


def check_constraint(response: str, c: Mapping[str, Any]) -> bool:
    """True when ``response`` satisfies constraint ``c`` (validated first: an unknown type raises)."""
    validate_constraint(c)
    ctype, value = c["type"], c.get("value")
    if ctype == "max_words":
        return len(response.split()) <= value
    if ctype == "min_words":
        return len(response.split()) >= value
    if ctype == "include_keywords":
        return all(w.lower() in response.lower() for w in value)
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


def extract_answer(text: str) -> str | None:
    """The final answer of a math response, by priority: the last ``\\boxed{...}``; else the first number after the
    last "answer is" / "answer:" (case-insensitive) within that sentence (after its last "=", if any); else the last
    number. Thousands commas are removed. None when there is no number (or only an empty box)."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return _boxed_value(boxed)
    phrases = list(_ANSWER_PHRASE_RE.finditer(text))
    if phrases:
        rest = text[phrases[-1].end() :]
        end = _SENTENCE_END_RE.search(rest)
        sentence = rest[: end.start()] if end else rest
        stated = _NUMBER_RE.search(sentence.rsplit("=", 1)[-1])  # "the answer is 12 + 7 = 19" states 19
        if stated:
            return stated.group(0).replace(",", "")
    return extract_last_number(text)


def _to_fraction(s: str) -> Fraction | None:
    try:
        return Fraction(s.strip().replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def verify_math(response: str, answer: str) -> bool:
    """True when the final answer of ``response`` (:func:`extract_answer`) equals ``answer`` numerically (tolerance
    1e-6), or as a string when either side is not a number."""
    got = extract_answer(response)
    if got is None:
        return False
    expected, value = _to_fraction(str(answer)), _to_fraction(got)
    if expected is None or value is None:
        return got == str(answer).strip()
    return abs(expected - value) <= MATH_TOLERANCE


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
        got = extract_answer(response)
        if got is None:
            return Verdict(False, "math: no number")
        if verify_math(response, answer):
            return Verdict(True, f"math: correct ({answer})")
        return Verdict(False, f"math: expected {answer}, got {got}")
    constraints = _constraints_of(item)
    if not constraints:
        return Verdict(None, "no verifier")
    for c in constraints:
        validate_constraint(c)
    for c in constraints:
        if not check_constraint(response, c):
            return Verdict(False, f"constraint failed: {c['type']}")
    return Verdict(True, f"all {len(constraints)} constraints passed")
