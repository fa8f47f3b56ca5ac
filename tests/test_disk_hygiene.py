"""The test suite must not fill the disk it runs on.

A full `make test` writes several GB under pytest's temporary root (model copies, checkpoints, a Gemma model). With
pytest's default retention, the last three sessions' folders stay: about 9 GB each here, so three runs of the suite
on one machine held 29 GB, and a CI run on that machine then failed on a full disk. pyproject.toml keeps the folders
of failed tests only.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

INNER = """
def test_writes_a_megabyte(tmp_path):
    (tmp_path / "blob.bin").write_bytes(b"x" * 1_000_000)

def test_session_folder(tmp_path_factory):
    tmp_path_factory.mktemp("shared").joinpath("blob.bin").write_bytes(b"x" * 1_000_000)
"""


def _bytes_under(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _inner_session(tmp_path: Path, tests: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run ``tests`` as a pytest session under pyproject.toml's settings, with its temporary root in ``tmp_path``."""
    (tmp_path / "test_inner.py").write_text(tests)
    temproot = tmp_path / "temproot"
    temproot.mkdir()
    env = {**os.environ, "PYTEST_DEBUG_TEMPROOT": str(temproot)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml")]
    cmd += ["--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120), temproot


def test_a_passing_session_leaves_nothing_under_the_temporary_root(tmp_path: Path) -> None:
    proc, temproot = _inner_session(tmp_path, INNER)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    # the two megabytes the tests wrote are gone once the session passed
    assert _bytes_under(temproot) == 0, sorted(str(p.relative_to(temproot)) for p in temproot.rglob("*"))


def test_a_failed_test_keeps_its_folder_for_debugging(tmp_path: Path) -> None:
    failing = (
        INNER
        + """
def test_fails(tmp_path):
    (tmp_path / "evidence.txt").write_text("look here")
    assert False
"""
    )
    proc, temproot = _inner_session(tmp_path, failing)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    kept = sorted(p.name for p in temproot.rglob("*") if p.is_file())
    assert kept == ["blob.bin", "evidence.txt"]  # the failed test's file, and the session folder (removed on a pass)
    assert not list(temproot.rglob("test_writes_a_megabyte*"))
