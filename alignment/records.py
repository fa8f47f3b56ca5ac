"""Record files shared by the stages: parquet/JSON written atomically, read back as lists of dicts.

Stages hand off through these files keyed by ``prompt_id`` / ``candidate_id``; they never join by position.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on failure removed.

    Readers never see a half-written file, and a killed run leaves only a stray ``.tmp`` file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs (and shipped data files) are meant to be readable
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_output_file(path: str | Path, flag: str = "--out") -> Path:
    """Fail before any work when ``path`` cannot take an output file: it is a folder, or its parent is a file.
    (An eval into a folder ran to the end, then lost its results to IsADirectoryError.)"""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder: give a file path such as {path / 'eval.json'}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is a file, not a folder")
    return path


def check_output_dir(path: str | Path, overwrite: bool = False, flag: str = "--out") -> Path:
    """Fail before any work when ``path`` cannot take an output folder: it is a file, or a folder with something
    in it and ``overwrite`` is off (what is there is never deleted without being told to)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file: give a folder path")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ValueError(f"{flag} {path} exists and is not empty: choose another folder, or pass --overwrite")
    return path


def candidate_order(candidate_id: str) -> tuple:
    """Sort key of a candidate id ``<prompt_id>#<n>``: by prompt, then by number (``p#2`` before ``p#10``, which
    string order puts the other way round). Ids of another shape sort by their text, before numbered ones."""
    pid, sep, num = candidate_id.rpartition("#")
    return (pid, int(num), "") if sep and num.isdigit() else (candidate_id, -1, candidate_id)


MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
"""Arrow type of a chat (``messages``: a list of {role, content}) in every parquet file."""


def write_parquet(rows: list[dict], path: str | Path, schema: pa.Schema | None = None) -> None:
    """Write rows to parquet atomically. An empty list needs ``schema``."""
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_jsonl(rows: Iterable[dict], path: str | Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_sha256(path: str | Path, file_hash: Callable[[Path], str] = file_sha256) -> str:
    """Hash of a file, or of every file in a folder (relative names and contents), for manifests and stage keys;
    ``file_hash`` hashes one file (``rounds.keys.HashCache.file`` caches large ones)."""
    path = Path(path)
    if path.is_file():
        return file_hash(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(file_hash(f).encode())
    return h.hexdigest()


def json_sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
