"""End to end: real rounds on the embedded model at tiny scale, through vLLM and TRL, via the documented CLI.

Round 1 starts from the embedded SmolLM2-135M-Instruct; round 2 starts from round 1's exported model (so vLLM must
load what the round exported). A re-run skips every finished stage.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "prompts.builtin={math: 8, instruction: 8, chat: 4}",
    "prompts.mix={math: 3, instruction: 3, chat: 2}",
    "generation.num_candidates=3",
    "generation.max_new_tokens=64",
    "generation.adaptive_k=2",
    "reward_model.max_pairs=48",
    "sft.max_steps=2",
    "dpo.max_steps=2",
    "eval.max_items=4",
    "eval.max_new_tokens=48",
    "selection.min_margin=0.0",
    "reward_model.min_heldout_accuracy=null",  # a handful of held-out pairs at this scale
]


def _common(tmp_path: Path, name: str) -> list[str]:
    return [
        "--config",
        str(ROOT / "configs" / "default.yaml"),
        f"output_dir={tmp_path}",
        f"name={name}",
        f"model.cache_dir={ROOT / '.cache' / 'models'}",
        *TINY,
    ]


def alignment(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "alignment.cli", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"alignment {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.mark.e2e
def test_two_real_rounds_on_the_embedded_model(tmp_path):
    common = _common(tmp_path, "e2e")
    alignment("round", "2", *common, cwd=tmp_path)  # builds round 1 first

    for n in (1, 2):
        rd = tmp_path / "e2e" / f"round-{n}"
        for name in (
            "prompts.parquet",
            "candidates.parquet",
            "filtered.parquet",
            "scores.parquet",
            "sft.parquet",
            "dpo.parquet",
            "selection.json",
            "eval.json",
            "manifest.json",
            "config.yaml",
        ):
            assert (rd / name).is_file(), f"round {n}: {name} missing"
        assert (rd / "model" / "model.safetensors").is_file() and (rd / "rm" / "config.json").is_file()
        manifest = json.loads((rd / "manifest.json").read_text())
        assert set(manifest["stages"]) == {
            "prompts",
            "generate",
            "filter",
            "verify",
            "reward_model",
            "score",
            "select",
            "sft",
            "dpo",
            "eval",
        }
        assert manifest["libraries"]["transformers"] and manifest["code_version"]
        assert manifest["counts"]["prompts"]["drawn"] == {"chat": 2, "instruction": 3, "math": 3}
        assert manifest["generation"]["backend"] == "vllm"
        generated = manifest["stages"]["generate"]["metrics"]
        n = 24 + 2 * generated["resampled_prompts"]  # adaptive K: 2 more samples where nothing passed
        assert generated["candidates"] == n and generated["resampled_candidates"] == n - 24
        filtered = manifest["counts"]["filter"]
        assert filtered["candidates"] == n and filtered["kept"] + sum(filtered["dropped"].values()) == n
        assert set(filtered["kept_by_capability"]) | set(filtered["dropped_by_capability"]) <= {
            "math",
            "instruction",
            "chat",
        }
        ev = json.loads((rd / "eval.json").read_text())
        for side in ("model", "start"):
            assert set(ev[side]) == {"math", "instruction"}
            assert all(v["n"] == 4 and 0.0 <= v["accuracy"] <= 1.0 for v in ev[side].values())
        cands = pq.read_table(rd / "candidates.parquet").to_pylist()
        assert len(cands) == n and {c["finish_reason"] for c in cands} <= {"stop", "length"}

    r1, r2 = (json.loads((tmp_path / "e2e" / f"round-{n}" / "manifest.json").read_text()) for n in (1, 2))
    assert r2["start_model"] == str((tmp_path / "e2e" / "round-1" / "model").resolve())
    assert r2["eval"]["start"] == r1["eval"]["model"]  # round 2's baseline is round 1's model
    # selection.json: counts, pass rates and histograms; round 2's SFT set carries round 1's rows over.
    sel = json.loads((tmp_path / "e2e" / "round-2" / "selection.json").read_text())
    assert set(sel["histograms"]) == {"rm_score", "norm_score", "pair_margin", "pair_norm_margin"}
    assert sel["pass_rate_by_capability"]["chat"] is None
    r1_sft = pq.read_table(tmp_path / "e2e" / "round-1" / "sft.parquet").num_rows
    # (a round-1 row whose prompt and answer round 2 selected again is not carried twice)
    assert 1 <= sel["sft"]["carried_over"] <= r1_sft and set(sel["sft"]["carried_by_round"]) == {"1"}
    assert r2["stages"]["reward_model"]["metrics"]["heldout_accuracy"] is not None
    # Round 2's RM trained on round 1's verifier pairs too.
    assert "round-1" in r2["stages"]["reward_model"]["metrics"]["pair_sources"]

    # Same config and seed, same backend: the same candidates.
    rd1 = tmp_path / "e2e" / "round-1"
    again_out = tmp_path / "again.parquet"
    args = ["--config", str(rd1 / "config.yaml"), "--round", "1", "--model", r1["start_model"]]
    args += ["--prompts", str(rd1 / "prompts.parquet"), "--out", str(again_out)]
    subprocess.run([sys.executable, "-m", "synth_data.generate", *args], cwd=tmp_path, check=True, capture_output=True)
    first, second = (pq.read_table(p).to_pylist() for p in (rd1 / "candidates.parquet", again_out))
    assert [(c["candidate_id"], c["text"]) for c in first] == [(c["candidate_id"], c["text"]) for c in second]

    t0 = time.time()
    alignment("round", "2", *common, cwd=tmp_path)
    assert time.time() - t0 < 60
    again = json.loads((tmp_path / "e2e" / "round-2" / "manifest.json").read_text())
    assert all(s["skipped"] for s in again["stages"].values())


@pytest.mark.e2e
def test_round_with_the_transformers_backend_and_a_teacher(tmp_path):
    """The fallback backend through a whole round (generation and eval), candidates from a named teacher, steered by a
    system prompt, with this round's own sampling settings."""
    alignment(
        "round",
        "1",
        *_common(tmp_path, "hf"),
        "generation.backend=transformers",
        "generation.teacher=embedded",
        "generation.system_prompts={math: 'Solve it step by step.'}",
        "generation.per_round={1: {temperature: 0.7, max_new_tokens: 56}}",
        cwd=tmp_path,
    )
    rd = tmp_path / "hf" / "round-1"
    manifest = json.loads((rd / "manifest.json").read_text())
    assert manifest["generation"]["backend"] == "transformers" and manifest["generation"]["teacher"] is True
    assert manifest["generation"]["sampling"] == {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 56}
    cands = pq.read_table(rd / "candidates.parquet").to_pylist()
    assert len(cands) == 24 + 2 * manifest["stages"]["generate"]["metrics"]["resampled_prompts"]
    assert {c["backend"] for c in cands} == {"transformers"}
    assert {c["generator"] for c in cands} == {str(ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct")}
    prompts = {p["prompt_id"]: p for p in pq.read_table(rd / "prompts.parquet").to_pylist()}
    for c in cands:
        expected = "Solve it step by step." if prompts[c["prompt_id"]]["capability"] == "math" else None
        assert c["system_prompt"] == expected and c["num_tokens"] <= 56
    assert set(json.loads((rd / "eval.json").read_text())["model"]) == {"math", "instruction"}
