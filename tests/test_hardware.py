"""The device and dtype policy (alignment.hardware): auto is bf16 only where the hardware has it natively."""

import json
import logging

import pytest

from alignment import hardware
from alignment.config import load_config

AVX2 = frozenset({"avx", "avx2", "fma", "f16c"})  # e.g. AMD EPYC Zen 3, most laptops
AVX512_BF16 = AVX2 | {"avx512f", "avx512_bf16"}  # e.g. Zen 4, Cooper Lake
AMX = AVX2 | {"avx512f", "amx_tile", "amx_bf16"}  # Sapphire Rapids


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to run on a CPU with the given flags (and no GPU)."""

    def use(flags):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
        monkeypatch.setattr(hardware, "cuda_available", lambda: False)

    return use


@pytest.mark.parametrize(
    ("flags", "kind", "native"),
    [(AVX2, "avx2", False), (AVX512_BF16, "avx512-bf16", True), (AMX, "amx", True), (frozenset(), "baseline", False)],
)
def test_cpu_kind_and_native_bf16(flags, kind, native):
    assert hardware.cpu_kind(flags) == kind
    assert hardware.cpu_has_native_bf16(flags) is native


def test_auto_is_fp32_on_avx2_and_bf16_where_native(cpu):
    cpu(AVX2)
    assert hardware.resolve_dtype("auto", "cpu") == "fp32"
    assert hardware.vllm_dtype("auto", "cpu") == "float32"  # never vLLM's own "auto" (the checkpoint's bf16)
    cpu(AVX512_BF16)
    assert hardware.resolve_dtype("auto", "cpu") == "bf16"
    assert hardware.vllm_dtype("auto", "cpu") == "bfloat16"


def test_explicit_setting_wins_with_a_warning_when_emulated(cpu, caplog):
    cpu(AVX2)
    with caplog.at_level(logging.WARNING, logger="alignment.hardware"):
        assert hardware.resolve_dtype("bf16", "cpu", key="sft.precision") == "bf16"
    assert "sft.precision=bf16" in caplog.text and "emulated" in caplog.text
    cpu(AMX)
    assert hardware.resolve_dtype("fp32", "cpu") == "fp32"
    assert hardware.resolve_dtype("float32", "cpu") == "fp32"  # vLLM's spelling is an alias


def test_bad_values_name_the_key(cpu):
    cpu(AVX2)
    with pytest.raises(ValueError, match="generation.vllm.dtype must be one of"):
        hardware.resolve_dtype("bf61", "cpu", key="generation.vllm.dtype")
    with pytest.raises(ValueError, match="dpo.precision=fp16 is for GPUs"):
        hardware.resolve_dtype("fp16", "cpu", key="dpo.precision")
    with pytest.raises(RuntimeError, match="device=cuda but torch sees no CUDA"):
        hardware.resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        hardware.resolve_device("tpu")


def test_every_engine_follows_the_policy(cpu):
    """One config, every engine: all fp32 on AVX2, all bf16 on AMX; an explicit key moves only its engine."""
    cpu(AVX2)
    engines = hardware.engine_dtypes(load_config(None))
    assert set(engines) == {"generation.vllm", "generation.transformers", "reward_model", "sft", "dpo"}
    assert {e["dtype"] for e in engines.values()} == {"fp32"}
    cpu(AMX)
    assert {e["dtype"] for e in hardware.engine_dtypes(load_config(None)).values()} == {"bf16"}
    engines = hardware.engine_dtypes(load_config(None, ["sft.precision=fp32"]))
    assert engines["sft"]["dtype"] == "fp32" and engines["dpo"]["dtype"] == "bf16"


def test_training_args_follow_the_policy(cpu, tmp_path):
    from alignment.config import SftConfig
    from alignment.train_common import training_args

    cpu(AVX2)
    args = training_args(SftConfig(), work_dir=tmp_path, seed=0, device="auto", logging_steps=1)
    assert args["bf16"] is False and args["use_cpu"] is True
    cpu(AVX512_BF16)
    args = training_args(SftConfig(), work_dir=tmp_path, seed=0, device="auto", logging_steps=1)
    assert args["bf16"] is True


def test_hardware_record_names_the_cpu_kind():
    record = hardware.hardware_record()
    assert record["cpu_kind"] == hardware.cpu_kind()
    assert set(record["cpu_flags"]) <= set(hardware.SPEED_FLAGS)
    assert record["cores"] >= 1
    json.dumps(record)


def test_alignment_env_prints_engines_versions_and_embedded_model(capsys):
    from alignment.cli import main

    main(["env", "--json"])
    env = json.loads(capsys.readouterr().out)
    assert env["hardware"]["cpu_kind"] == hardware.cpu_kind()
    assert env["engines"]["sft"]["dtype"] == hardware.resolve_dtype("auto", hardware.resolve_device("auto"))
    assert "torch" in env["libraries"] and "transformers" in env["libraries"]
    assert env["embedded_model"]["name"] == "SmolLM2-135M-Instruct"
    main(["env"])
    text = capsys.readouterr().out
    assert "CPU:" in text and "generation.vllm" in text and "embedded model" in text
