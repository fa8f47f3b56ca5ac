"""The disk estimate counts what each model-writing stage leaves and its largest checkpoint (the runner's refusal
of a round on a full disk: tests/test_runner.py)."""

import json
from pathlib import Path

from alignment.config import load_config
from rounds import disk, runner

MB = 1_000_000


def _model(path: Path, size: int, dtype: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"dtype": dtype}))
    (path / "model.safetensors").write_bytes(b"\0" * size)
    return path


def test_the_estimate_counts_outputs_and_the_largest_checkpoint(tmp_path):
    cfg = load_config(None, [])
    all_stages = [st.name for st in runner.STAGES]
    # the default: LoRA SFT and DPO (checkpoints a tenth of the folder), a full-weight RM without checkpoints
    needs = {n.stage: n for n in disk.stage_needs(cfg, 500 * MB, 300 * MB, all_stages, fp32=1.0)}
    assert {s: (n.keeps, n.checkpoint) for s, n in needs.items()} == {
        "reward_model": (300 * MB, 0),
        "sft": (500 * MB, 50 * MB),
        "dpo": (500 * MB, 50 * MB),
    }
    # all weights trained on a bf16 folder: fp32 weights and two Adam moments, six times the folder
    full = load_config(None, ["sft.lora.enabled=false", "dpo.variants=[{beta: 0.2}, {learning_rate: 1e-5}]"])
    needs = {n.stage: n for n in disk.stage_needs(full, 500 * MB, 300 * MB, ["sft", "dpo"], fp32=2.0)}
    assert needs["sft"].checkpoint == 3000 * MB
    assert needs["dpo"].keeps == 5 * 500 * MB  # main + 2 variants + their average + the chosen copy
    # a pretrained RM writes nothing; stages already done count nothing
    pre = load_config(None, [f"reward_model.pretrained={tmp_path}"])
    assert disk.stage_needs(pre, 500 * MB, 300 * MB, ["reward_model", "eval", "gate"]) == []


def test_the_fp32_factor_reads_the_folder_dtype(tmp_path):
    assert disk.fp32_factor(_model(tmp_path / "a", 10, "float32")) == 1.0
    assert disk.fp32_factor(_model(tmp_path / "b", 10, "bfloat16")) == 2.0
    assert disk.fp32_factor(tmp_path / "no-such-folder") == 2.0
