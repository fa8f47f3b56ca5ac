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


def test_a_passing_session_leaves_nothing_under_the_temporary_root(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    temproot = tmp_path / "temproot"
    temproot.mkdir()
    env = {**os.environ, "PYTEST_DEBUG_TEMPROOT": str(temproot)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml")]
    cmd += ["--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    # the two megabytes the tests wrote are gone once the session passed
    assert _bytes_under(temproot) == 0, sorted(str(p.relative_to(temproot)) for p in temproot.rglob("*"))
