"""What identifies a stage's inputs: content hashes of files and folders, the code a stage runs, and the key built
from a :class:`rounds.layout.Stage` declaration.

Paths are never identities: a prompts file, a seed-pairs file, an eval suite or a model folder edited in place gets a
new content hash, so the stages that read it run again. Large files are hashed once per (path, size, mtime) and the
result kept in a small cache file, so an 8B model folder is not re-read on every invocation.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from alignment.config import RoundConfig, config_to_dict
from alignment.env import library_versions
from alignment.records import file_sha256, json_sha256, tree_sha256
from rounds.layout import Stage

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("alignment", "rounds", "reward", "synth_data")
CACHE_FROM_BYTES = 16 << 20  # files at least this big are hashed once per (path, size, mtime)
RUN_HASH_CACHE = ".content-hashes.json"  # a run folder's HashCache file


class HashCache:
    """sha256 of large files keyed by (absolute path, size, mtime_ns), kept as JSON at ``path`` (None: in memory)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.entries: dict[str, str] = {}
        if path is not None and path.is_file():
            try:
                self.entries = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                self.entries = {}  # a damaged cache is only a cache
        self.dirty = False

    @classmethod
    def for_run(cls, run_dir: Path) -> HashCache:
        """The cache a run keeps in its folder (:data:`RUN_HASH_CACHE`), shared by its rounds and stages."""
        return cls(run_dir / RUN_HASH_CACHE)

    def file(self, f: Path) -> str:
        st = f.stat()
        if st.st_size < CACHE_FROM_BYTES:
            return file_sha256(f)
        key = f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if key not in self.entries:
            self.entries[key] = file_sha256(f)
            self.dirty = True
        return self.entries[key]

    def save(self) -> None:
        if self.path is not None and self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries, indent=0, sort_keys=True))
            tmp.replace(self.path)
            self.dirty = False


def content_id(path: str | Path, cache: HashCache | None = None) -> str:
    """Hash of a file's content, or of a folder's files (relative names and contents); ``"absent"`` when missing."""
    path = Path(path)
    if not path.exists():
        return "absent"
    return tree_sha256(path, (cache or HashCache()).file)


def model_id(spec: str, cache: HashCache | None = None) -> str:
    """A model's identity: its folder's content when ``spec`` is a local folder, else the hub id itself."""
    return f"sha256:{content_id(spec, cache)}" if Path(spec).exists() else spec


def _excluded(rel: str, exclude: frozenset[str]) -> bool:
    return any(rel == e or rel.startswith(e.rstrip("/") + "/") for e in exclude)


def source_files(exclude: frozenset[str] = frozenset(), packages: tuple[str, ...] = CODE_PACKAGES) -> dict[str, Path]:
    """The source and shipped data (relative path -> file) of ``packages`` (files or folders relative to the
    repository), minus ``exclude`` (files, or folders and everything in them)."""
    files = {}
    for pkg in packages:
        root = ROOT / pkg
        for p in [root] if root.is_file() else sorted(root.rglob("*")):
            rel = str(p.relative_to(ROOT))
            if p.suffix in {".py", ".jsonl"} and "__pycache__" not in p.parts and not _excluded(rel, exclude):
                files[rel] = p
    return files


def code_id(exclude: frozenset[str] = frozenset()) -> str:
    """Hash of the pipeline's source (minus ``exclude``: files that only one stage runs) and of the versions of the
    libraries it runs on: a TRL upgrade re-runs the stages, an edit of the report does not re-run training."""
    sources = {rel: file_sha256(p) for rel, p in source_files(exclude).items()}
    return json_sha256({"sources": sources, "libraries": library_versions()})[:16]


def files_id(paths: list[str], cache: HashCache | None = None) -> dict[str, str]:
    """Content hash of each user file or folder a stage declares (by its path as written in the config)."""
    return {p: content_id(p, cache) for p in paths}


def stage_key(
    stage: Stage,
    cfg: RoundConfig,
    *,
    upstream: str,
    start: str,
    earlier: str,
    code: str,
    cache: HashCache | None = None,
) -> str:
    """The key of ``stage`` from its declaration: config values, declared files by content, ``upstream`` (the key
    and output hashes of the stage before), ``start`` (the starting model's identity), ``earlier`` (earlier rounds'
    stages), ``code`` (the shared code id) and the stage's own code files."""
    conf: dict[str, Any] = {s: config_to_dict(getattr(cfg, s)) for s in stage.config}
    own_code = {rel: file_sha256(p) for rel, p in source_files(packages=stage.code).items()}
    files = files_id(stage.files(cfg), cache) if stage.files else {}
    parts = {"stage": stage.name, "config": conf, "files": files, "upstream": upstream, "start": start}
    parts |= {"earlier": earlier, "code": code, "own_code": own_code}
    return json_sha256(parts)[:16]


# What user files each stage reads (its ``files`` declaration): hashed by content into its key.


def local_path(spec: str | None) -> list[str]:
    """``[spec]`` when it names a local file or folder (not "builtin", "embedded", null or a hub id)."""
    return [spec] if spec and spec not in ("builtin", "embedded") and Path(spec).exists() else []


def eval_suite_files(cfg: RoundConfig) -> list[str]:
    return [p for s in cfg.eval.suites for p in local_path(s)]  # "builtin" is shipped code: in the code hash


def prompt_files(cfg: RoundConfig) -> list[str]:
    sources = [f if isinstance(f, str) else f.path for f in cfg.prompts.files]
    return sources + eval_suite_files(cfg)  # the eval suites decontaminate the pool


def teacher_files(cfg: RoundConfig) -> list[str]:
    return local_path(cfg.generation.teacher)


def reward_files(cfg: RoundConfig) -> list[str]:
    rm = cfg.reward_model
    return local_path(rm.seed_pairs) + local_path(rm.pretrained or rm.base)
