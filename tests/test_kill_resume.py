"""A round killed (SIGKILL, the whole process group) in mid-generation and then in mid-training resumes with the same
command and ends with the same artifacts as the uninterrupted run of the same config (the session's e2e run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import alignment, e2e_args
from safetensors.torch import load_file

from rounds.runner import STAGES

DATA = [
    "prompts.parquet",
    "candidates.parquet",
    "filtered.parquet",
    "verdicts.parquet",
    "rm_pairs.parquet",
    "scores.parquet",
    "sft.parquet",
    "dpo.parquet",
]


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "alignment.cli", *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 600) -> None:
    """SIGKILL the process group as soon as ``ready()`` is true; fail if the run ended first."""
    t0 = time.time()
    while not ready():
        assert proc.poll() is None, f"the run finished before {what}: nothing was interrupted"
        assert time.time() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.e2e
def test_killed_mid_generation_and_mid_training_resumes_to_the_same_artifacts(e2e_run, tmp_path):
    args = ["round", "1", *e2e_args(tmp_path, "e2e")]
    rd = tmp_path / "e2e" / "round-1"
    log = tmp_path / "run.log"

    # 1. killed while vLLM samples (its progress bar started, or the first pass is done and adaptive K resamples)
    proc = _start(args, tmp_path, log)
    sampling = ("Processed prompts", "adaptive K:")
    _kill_when(proc, lambda: any(s in log.read_text() for s in sampling), "vLLM to start sampling")
    assert not (rd / "stages" / "generate.json").exists() and not (rd / "candidates.parquet").exists()
    assert (rd / "stages" / "prompts.json").exists()

    # 2. the same command, killed in SFT once a step checkpoint is complete (before the stage finished)
    proc = _start(args, tmp_path, log)
    checkpoint = rd / "work" / "sft" / "checkpoint-1" / "trainer_state.json"
    _kill_when(proc, checkpoint.exists, "the first SFT step checkpoint")
    assert "stage prompts      finished earlier" in log.read_text()
    assert not (rd / "stages" / "sft.json").exists() and (rd / "stages" / "select.json").exists()

    # 3. the same command again finishes the round, resuming SFT from its checkpoint
    alignment(*args, cwd=tmp_path)
    manifest = json.loads((rd / "manifest.json").read_text())
    assert manifest["stages"]["sft"]["metrics"]["resumed_from"].endswith("checkpoint-1")
    stage_names = [st.name for st in STAGES]
    skipped = [n for n, s in manifest["stages"].items() if s["skipped"]]
    assert skipped == stage_names[: stage_names.index("sft")]
    ref = e2e_run / "round-1"
    for name in DATA:
        resumed, uninterrupted = pq.read_table(rd / name), pq.read_table(ref / name)
        assert resumed.equals(uninterrupted), f"{name} differs from the uninterrupted run"
    cands = pq.read_table(rd / "candidates.parquet").column("candidate_id").to_pylist()
    assert len(cands) == len(set(cands))  # nothing duplicated by the restart
    for folder in ("sft", "model"):
        a, b = _weights(rd / folder), _weights(ref / folder)
        assert a.keys() == b.keys()
        worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
        assert worst < 1e-5, f"{folder}: resumed weights differ by up to {worst}"
    assert (rd / "eval_model.json").read_text() == (ref / "eval_model.json").read_text()
