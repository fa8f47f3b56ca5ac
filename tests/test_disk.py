"""The disk estimate (rounds/disk.py): what each model-writing stage leaves, in the export dtype, and what it holds
while it runs (the runner's refusal of a round on a full disk: tests/test_runner.py)."""

import json
from pathlib import Path

import pytest

from alignment.config import load_config
from rounds import disk, runner

MB = 1_000_000
ALL = [st.name for st in runner.STAGES]


def _model(path: Path, size: int, **config) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"\0" * size)
    return path


def _needs(cfg, *args, **kwargs) -> dict[str, tuple[int, int]]:
    return {n.stage: (n.keeps, n.passing) for n in disk.stage_needs(cfg, *args, **kwargs)}


def test_the_default_round_lora_checkpoints_and_an_rm_without(tmp_path):
    cfg = load_config(None, [])
    needs = _needs(cfg, 500 * MB, 200 * MB, ALL)
    assert needs == {"reward_model": (200 * MB, 0), "sft": (500 * MB, 50 * MB), "dpo": (500 * MB, 50 * MB)}
    assert disk.needed_bytes(disk.stage_needs(cfg, 500 * MB, 200 * MB, ALL)) == int((1200 + 100) * MB * 1.1)


def test_exports_in_bf16_weigh_half_and_full_training_checkpoints_three_fp32_copies():
    bf16 = load_config(None, ["model.export_dtype=bf16"])
    assert _needs(bf16, 500 * MB, 0, ["sft"])["sft"] == (250 * MB, 50 * MB)
    full = load_config(None, ["sft.lora.enabled=false", "dpo.variants=[{beta: 0.2}, {learning_rate: 1e-5}]"])
    needs = _needs(full, 500 * MB, 0, ["sft", "dpo"])
    assert needs["sft"] == (500 * MB, 1500 * MB)  # fp32 weights and two Adam moments
    assert needs["dpo"][0] == 5 * 500 * MB  # main + 2 variants + their average + the chosen copy


def test_a_replaced_output_is_needed_only_while_the_stage_runs():
    cfg = load_config(None, [])
    assert _needs(cfg, 500 * MB, 0, ["sft"], {"sft": 500 * MB})["sft"] == (0, 500 * MB)
    assert _needs(cfg, 500 * MB, 0, ["sft"], {"sft": 100 * MB})["sft"] == (400 * MB, 100 * MB)


def test_stages_that_write_no_model_need_nothing(tmp_path):
    pretrained = load_config(None, [f"reward_model.pretrained={tmp_path}"])
    assert disk.stage_needs(pretrained, 500 * MB, 200 * MB, ["reward_model", "eval", "gate"]) == []


def test_the_fp32_factor_reads_dtype_or_torch_dtype(tmp_path):
    assert disk.fp32_factor(_model(tmp_path / "a", 10, dtype="float32")) == 1.0
    assert disk.fp32_factor(_model(tmp_path / "b", 10, torch_dtype="float32")) == 1.0
    assert disk.fp32_factor(_model(tmp_path / "c", 10, torch_dtype="bfloat16")) == 2.0
    assert disk.fp32_factor(_model(tmp_path / "d", 10)) == 2.0  # no dtype: the safe side
    assert disk.fp32_bytes(tmp_path / "c") == 2 * disk.folder_bytes(tmp_path / "c")


def test_the_reward_model_keeps_its_first_layers_and_the_embeddings(tmp_path):
    shape = {"dtype": "float32", "num_hidden_layers": 30, "vocab_size": 1000, "hidden_size": 100}
    base = _model(tmp_path / "rm", 4_400_000, **shape)
    total = disk.folder_bytes(base)  # 4,400,000 and the config file
    # embeddings 1000 x 100 x 4 bytes = 400,000; the 30 layers the rest, of which 8 are kept
    assert disk.reward_model_bytes(base, 8) == int(400_000 + (total - 400_000) * 8 / 30) == 1_466_689
    assert disk.reward_model_bytes(base, None) == total
    assert disk.reward_model_bytes(base, 64) == total


def test_a_hub_id_is_measured_in_the_hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snapshot = cache / "models--org--tiny" / "snapshots" / "abc123"
    _model(snapshot, 3 * MB, dtype="bfloat16")
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    folder = disk.model_folder("org/tiny")
    assert folder == snapshot
    assert disk.fp32_bytes(folder) == 2 * (3 * MB + len(json.dumps({"dtype": "bfloat16"})))
    assert disk.model_folder("org/not-cached") is None


def test_check_disk_names_the_folder_and_each_stage(tmp_path, monkeypatch):
    cfg = load_config(None, [])
    policy = _model(tmp_path / "policy", 100 * MB, dtype="float32")
    monkeypatch.setattr(disk, "free_bytes", lambda path: 10 * MB)
    with pytest.raises(disk.DiskSpaceError) as e:
        disk.check_disk(cfg, tmp_path / "run" / "round-1", str(policy), None, ALL)
    msg = str(e.value)
    assert "round-1: 0.01 GB free" in msg and "sft 0.10 GB (+0.01 GB while it runs)" in msg and "dpo 0.10 GB" in msg
    monkeypatch.setattr(disk, "free_bytes", lambda path: 10_000 * MB)
    assert disk.check_disk(cfg, tmp_path / "run" / "round-1", str(policy), None, ["eval", "gate"]) == 0


def test_free_bytes_of_a_folder_not_made_yet(tmp_path):
    assert disk.free_bytes(tmp_path / "not" / "yet") > 0
