"""The prompts stage: the round's prompt set from the built-in suites plus user files, written to prompts.parquet.

A prompt record is ``{prompt_id, capability, messages, answer, constraints, source}`` where ``constraints`` is a
JSON string (a list of ``{"type", "value"}``; ``"[]"`` when none) so heterogeneous values fit one parquet column.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from alignment.config import PromptsConfig
from alignment.records import write_parquet
from synth_data.suite_format import SuiteFormatError, load_suite
from synth_data.suites import builtin_train_prompts, prompt_text_key

PROMPT_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("capability", pa.string()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("answer", pa.string()),
        ("constraints", pa.string()),
        ("source", pa.string()),
    ]
)


def to_prompt_record(item: dict, source: str) -> dict:
    """A suite item (public format) as a prompt record."""
    return {
        "prompt_id": item["id"],
        "capability": item["capability"],
        "messages": [{"role": m["role"], "content": m["content"]} for m in item["messages"]],
        "answer": item.get("answer"),
        "constraints": json.dumps(item.get("constraints") or []),
        "source": source,
    }


def load_user_prompts(path: str | Path) -> list[dict]:
    """User prompts from JSONL (public suite format) or parquet with the same columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        from synth_data.suite_format import validate_item

        rows = pq.read_table(path).to_pylist()
        if not rows:
            raise SuiteFormatError(path, 0, "no items")
        for i, row in enumerate(rows):
            # Accept the public columns (id, ...) and our own prompts.parquet (prompt_id, JSON-string constraints).
            if "id" not in row and "prompt_id" in row:
                row["id"] = row.pop("prompt_id")
            row.pop("source", None)
            if isinstance(row.get("constraints"), str):
                row["constraints"] = json.loads(row["constraints"]) or None
            row = {k: v for k, v in row.items() if v is not None}
            try:
                validate_item(row)
            except ValueError as e:
                raise SuiteFormatError(path, i + 1, f"row {i + 1}: {e}") from e
            rows[i] = row
        return rows
    return load_suite(path)


def build_prompt_set(cfg: PromptsConfig, round_index: int, eval_keys: set[str]) -> list[dict]:
    """Built-in training prompts (fresh per round: seed + round) plus user prompts, minus anything in the eval suites.

    Raises ValueError when the result is empty, naming what was configured.
    """
    records = [
        to_prompt_record(item, "builtin") for item in builtin_train_prompts(cfg.builtin, seed=cfg.seed + round_index)
    ]
    for f in cfg.files:
        records.extend(to_prompt_record(item, str(f)) for item in load_user_prompts(f))
    seen: set[str] = set()
    kept = []
    for rec in records:
        if rec["prompt_id"] in seen:
            raise ValueError(f"duplicate prompt_id {rec['prompt_id']!r} (from {rec['source']})")
        seen.add(rec["prompt_id"])
        if prompt_text_key({"messages": rec["messages"]}) in eval_keys:
            continue  # decontamination: never train on an evaluation prompt
        kept.append(rec)
    if not kept:
        raise ValueError(
            f"the prompt set is empty (prompts.builtin={dict(cfg.builtin)}, prompts.files={list(cfg.files)}): "
            "configure at least one built-in capability count or a prompt file"
        )
    return kept


def write_prompts(records: list[dict], path: str | Path) -> None:
    write_parquet(records, path, schema=PROMPT_SCHEMA)
