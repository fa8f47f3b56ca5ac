"""Public JSONL format of evaluation/prompt suites: loading with line-precise errors, atomic writing.

One JSON object per line with ``id``, ``capability``, ``messages`` (ending with a user turn) and either
``answer`` (str, math) or ``constraints`` (list of ``{"type", "value"}``, instruction following).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reward.verifiers import validate_constraint


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
    if answer is None and constraints is None:
        raise ValueError("item has neither 'answer' nor 'constraints'")
    if answer is not None and not isinstance(answer, str):
        raise ValueError(f"'answer' must be a str, got {type(answer).__name__}")
    if constraints is not None:
        if not isinstance(constraints, list):
            raise ValueError(f"'constraints' must be a list, got {type(constraints).__name__}")
        if not constraints and answer is None:
            raise ValueError("item has neither 'answer' nor constraints (empty list)")
        for i, c in enumerate(constraints):
            try:
                validate_constraint(c)
            except ValueError as e:
                raise ValueError(f"constraint {i}: {e}") from e


def load_suite(path: str | Path) -> list[dict]:
    """Read a JSONL suite, skipping blank lines; any malformed line raises SuiteFormatError (path:line)."""
    items: list[dict] = []
    seen: dict[str, int] = {}
    lineno = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise SuiteFormatError(path, lineno, f"invalid JSON ({e.msg})") from e
            try:
                validate_item(item)
            except ValueError as e:
                raise SuiteFormatError(path, lineno, str(e)) from e
            if item["id"] in seen:
                raise SuiteFormatError(path, lineno, f"duplicate id {item['id']!r} (first on line {seen[item['id']]})")
            seen[item["id"]] = lineno
            items.append(item)
    if not items:
        raise SuiteFormatError(path, max(lineno, 1), "no items")
    return items


def write_jsonl(rows: Iterable[dict], path: str | Path) -> None:
    """Write ``rows`` as UTF-8 JSONL atomically (temp file in the same directory, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_suite(items: list[dict], path: str | Path) -> None:
    """Write suite items in the public JSONL format (atomic, parent directories created)."""
    write_jsonl(items, path)
