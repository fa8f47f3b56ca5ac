"""Public JSONL format of evaluation/prompt suites: loading with line-precise errors, atomic writing.

One JSON object per line with ``id``, ``capability`` (any non-empty string), ``messages`` (ending with a user turn)
and either ``answer`` (str, math) or ``constraints`` (list of ``{"type", "value"}``, instruction following). Items of
capability ``chat`` may have neither: open-ended requests that no verifier checks (the reward model scores them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reward.verifiers import validate_constraint

UNVERIFIED_CAPABILITIES = frozenset({"chat"})
"""Capabilities whose items may have neither ``answer`` nor ``constraints``."""


class SuiteFormatError(ValueError):
    """A malformed suite file; the message always reads ``path:line: reason``."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = str(path), line, reason


def validate_messages(messages: Any) -> None:
    """Raise ValueError unless ``messages`` is a non-empty list of {role, content} str dicts ending with a user turn."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"message {i} is not an object")
        for key in ("role", "content"):
            if not isinstance(m.get(key), str):
                raise ValueError(f"message {i} is missing a str {key!r}")
    if messages[-1]["role"] != "user":
        raise ValueError(f"messages must end with a 'user' turn, last role is {messages[-1]['role']!r}")


def validate_item(item: Any) -> None:
    """Raise ValueError describing the first problem with one suite item (duplicates are checked by the loader)."""
    if not isinstance(item, dict):
        raise ValueError(f"item is not a JSON object but {type(item).__name__}")
    for key in ("id", "capability"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise ValueError(f"missing or non-str {key!r}")
    validate_messages(item.get("messages"))
    answer, constraints = item.get("answer"), item.get("constraints")
    unverified_ok = item["capability"] in UNVERIFIED_CAPABILITIES
    if answer is None and constraints is None and not unverified_ok:
        raise ValueError(
            "item has neither 'answer' nor 'constraints' (only capability 'chat' items may have no verifier)"
        )
    if item.get("topic") is not None and (not isinstance(item["topic"], str) or not item["topic"].strip()):
        raise ValueError(f"'topic' must be a non-empty str, got {item['topic']!r}")
    if answer is not None and not isinstance(answer, str):
        raise ValueError(f"'answer' must be a str, got {type(answer).__name__}")
    if constraints is not None:
        if not isinstance(constraints, list):
            raise ValueError(f"'constraints' must be a list, got {type(constraints).__name__}")
        if not constraints and answer is None and not unverified_ok:
            raise ValueError("item has neither 'answer' nor constraints (empty list)")
        for i, c in enumerate(constraints):
            try:
                validate_constraint(c)
            except ValueError as e:
                raise ValueError(f"constraint {i}: {e}") from e


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for every non-blank line; invalid JSON raises SuiteFormatError (path:line)."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise SuiteFormatError(path, lineno, f"invalid JSON ({e.msg})") from e


def load_jsonl_records(
    path: str | Path, validate: Callable[[Any], None], id_key: str, noun: str = "items"
) -> list[dict]:
    """Read a JSONL file of records, skipping blank lines; any malformed line raises SuiteFormatError (path:line).

    ``validate`` raises ValueError describing what is wrong with one record; ``id_key`` must be unique in the file.
    """
    records: list[dict] = []
    seen: dict[str, int] = {}
    lineno = 0
    for lineno, record in iter_jsonl(path):
        try:
            validate(record)
        except ValueError as e:
            raise SuiteFormatError(path, lineno, str(e)) from e
        rid = record[id_key]
        if rid in seen:
            raise SuiteFormatError(path, lineno, f"duplicate {id_key} {rid!r} (first on line {seen[rid]})")
        seen[rid] = lineno
        records.append(record)
    if not records:
        raise SuiteFormatError(path, max(lineno, 1), f"no {noun}")
    return records


def load_suite(path: str | Path) -> list[dict]:
    """Read a JSONL suite in the public format; any malformed line raises SuiteFormatError (path:line)."""
    return load_jsonl_records(path, validate_item, "id")


def write_suite(items: list[dict], path: str | Path) -> None:
    """Write suite items in the public JSONL format (atomic, parent directories created)."""
    from alignment.records import write_jsonl

    write_jsonl(items, path)
