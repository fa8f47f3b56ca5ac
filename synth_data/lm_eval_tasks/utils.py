"""lm-eval hooks of the ``alignment_*`` tasks: load a suite in the public JSONL format, score with our verifiers.

The task YAMLs next to this file name these functions with ``!function utils.<name>``; lm-eval imports this file by
its path, so suite paths are resolved against this file, not the working directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import datasets

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITES_DIR = REPO_ROOT / "synth_data" / "suites"
SPLIT = "test"

try:  # the package is installed (editable) in the project venv; an lm_eval from elsewhere finds it by path
    from reward.verifiers import verify
    from synth_data.suite_format import load_suite
except ImportError:  # pragma: no cover - depends on the environment lm_eval runs in
    sys.path.insert(0, str(REPO_ROOT))
    from reward.verifiers import verify
    from synth_data.suite_format import load_suite


def suite_path(suite_file: str | Path) -> Path:
    """``suite_file`` as given when absolute, else relative to ``synth_data/suites/``."""
    path = Path(suite_file).expanduser()
    return path if path.is_absolute() else SUITES_DIR / path


def item_to_doc(item: dict[str, Any], path: str | Path = "<suite>") -> dict[str, str]:
    """One suite item as an lm-eval doc: the prompt (last user turn), its system prompt ("" when none), the
    reference shown in samples, and the whole item as JSON (what the verifier reads back)."""
    messages = item["messages"]
    roles = [m["role"] for m in messages]
    if roles not in (["user"], ["system", "user"]):
        raise ValueError(
            f"{path}: item {item['id']!r} has turns {roles}; lm-eval tasks take one user turn, optionally after a "
            "system prompt. Evaluate multi-turn suites with `alignment eval --suite FILE`."
        )
    answer = item.get("answer")
    return {
        "id": item["id"],
        "capability": item["capability"],
        "system": messages[0]["content"] if roles[0] == "system" else "",
        "prompt": messages[-1]["content"],
        "target": str(answer) if answer is not None else json.dumps(item.get("constraints") or []),
        "item": json.dumps(item, ensure_ascii=False),
    }


def load_suite_dataset(suite_file: str, **_metadata: Any) -> datasets.DatasetDict:
    """``custom_dataset`` of a task: the suite ``suite_file`` (see :func:`suite_path`) validated by our loader, as a
    DatasetDict with one split ``test``. lm-eval also passes the task metadata as keyword arguments (ignored)."""
    path = suite_path(suite_file)
    docs = [item_to_doc(item, path) for item in load_suite(path)]
    return datasets.DatasetDict({SPLIT: datasets.Dataset.from_list(docs)})


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """``acc``: 1.0 when our verifier passes the response (math answer / every constraint), else 0.0. lm-eval gives
    no finish reason, so a response cut off at the token limit is judged on its text."""
    verdict = verify(results[0], json.loads(doc["item"]), finish_reason=None)
    return {"acc": float(bool(verdict.passed))}
