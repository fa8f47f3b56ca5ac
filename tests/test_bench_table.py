"""`make bench`'s README table: one block per CPU kind, rewritten from a results file (nothing is run here)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_all  # noqa: E402


def _results(kind: str = "avx2") -> dict:
    """A merged results file in the shape the benchmarks write (figures made up)."""
    tm = {"dtype": "fp32"}
    return {
        "date": "2026-12-02T12:00:00",
        "machine": {"cpu_count": 2, "cpu_model": "test cpu", "cpu_kind": kind, "cpu_flags": ["avx2", "fma"]},
        "round": {"wall_s": 512.3, "peak_rss_gib": 6.5},
        "generation": {
            "settings": {"num_prompts": 32, "k": 4, "max_tokens": 128},
            "variants": {
                "vllm": {"tokens_per_s": 190.0},
                "transformers": {"tokens_per_s": 40.0},
                "vllm-other-dtype": {"tokens_per_s": 30.0},
                "vllm-sort-top-p": {"tokens_per_s": 135.0},
            },
            "dtypes": {"vllm": "fp32", "vllm-other-dtype": "bf16", "transformers": "fp32"},
            "ratio_vllm_over_transformers": 4.75,
            "dtype_ratio": 6.33,
            "fast_top_p_speedup": 1.41,
        },
        "training": {
            "settings": {"batch_size": 8, "dpo_rows": 64},
            "variants": {
                "sft-padded-fused": {"tokens_per_s": 80.0, "train_metrics": tm},
                "sft-grouped-logits": {"tokens_per_s": 120.0, "train_metrics": tm},
                "dpo-fused-random": {"end_to_end_s": 200.0},
                "dpo-logits-grouped": {"end_to_end_s": 130.0},
            },
            "summary": {
                "sft_best_variant": "sft-grouped-logits",
                "sft_speedup_over_stock": 1.5,
                "sft_best_mfu": 0.31,
                "dpo_speedup_over_stock": 1.54,
            },
        },
        "scoring": {
            "settings": {"candidates": 256, "num_layers": 8},
            "variants": {"batch-1": {"batch_size": 1, "candidates_per_s": 10.0, "dtype": "fp32"}},
        },
    }


def test_table_has_a_row_per_figure():
    text = run_all.table(_results())
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 7
    assert "default round 1" in rows[0] and "512 s, 6.50 GiB" in rows[0]
    assert "both fp32" in rows[1] and "**4.8x**" in rows[1]
    assert "(fp32) vs bf16" in rows[2] and "**6.3x**" in rows[2]
    assert "**1.41x**" in rows[3]
    assert "**1.5x**" in rows[4] and "MFU 31% of the fp32 matmul peak" in rows[4]
    assert "200 s vs 130 s: **1.54x**" in rows[5]
    assert "batch 1: 10 candidates/s" in rows[6] and "fp32" in rows[6]


def test_readme_keeps_one_block_per_cpu_kind(tmp_path):
    readme = tmp_path / "README.md"
    old = f"{run_all.KIND_MARK.format('avx512-bf16')}\nold avx512 table\n"
    readme.write_text(f"intro\n{run_all.README_BEGIN}\n{old}{run_all.README_END}\nafter\n")
    run_all.update_readme(_results("avx2"), tmp_path / "2026-12-02.json", readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n")
    assert "old avx512 table" in text  # another kind's block stays
    assert "**avx2**: measured 2026-12-02 on 2 cores (test cpu, flags: avx2 fma)" in text
    run_all.update_readme({**_results("avx2"), "date": "2026-12-03T00:00:00"}, tmp_path / "x.json", readme)
    text = readme.read_text()
    assert text.count("bench:kind=avx2") == 1 and "2026-12-03" in text and "2026-12-02 on" not in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        run_all.update_readme(_results(), tmp_path / "x.json", readme)
