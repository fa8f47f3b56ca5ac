"""`make bench`'s merge and README table, from the committed per-benchmark results (nothing is run here)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_all  # noqa: E402


def _results() -> dict:
    res = ROOT / "benchmarks" / "results"
    merged = {"date": "2026-11-22T12:00:00", "machine": {"cpu_count": 2, "cpu_model": "test cpu"}}
    for name, prefix in [("round", "round"), ("generation", "gen"), ("training", "train")]:
        merged[name] = json.loads(sorted(res.glob(f"{prefix}-2*.json"))[0].read_text())
    merged["scoring"] = {
        "settings": {"candidates": 256, "num_layers": 8},
        "variants": {"batch-1": {"batch_size": 1, "candidates_per_s": 10.0}},
    }
    return merged


def test_table_has_a_row_per_benchmark():
    text = run_all.table(_results())
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 5
    assert "default round 1" in rows[0] and " GiB |" in rows[0]
    assert "tokens/s: **" in rows[1] and "MFU" in rows[2] and "batch 1: 10 candidates/s" in rows[4]


def test_readme_table_is_replaced_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{run_all.README_BEGIN}\nold table\n{run_all.README_END}\nafter\n")
    run_all.update_readme(_results(), tmp_path / "2026-11-22.json", readme)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("after\n")
    assert "Measured 2026-11-22 on 2 cores (test cpu)" in text and "| what | command | result |" in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        run_all.update_readme(_results(), tmp_path / "x.json", readme)
