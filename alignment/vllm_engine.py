"""A thin adapter around vLLM's offline engine, shared by generation and evaluation.

vLLM spawns workers, so the process that builds ``LLM(...)`` must have its entry point behind
``if __name__ == "__main__":``; the round runner therefore starts generation and evaluation as their own processes
(``python -m synth_data.generate``, ``python -m alignment.evaluate``), which also frees the engine's memory before
training starts.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from alignment.config import VllmConfig
from alignment.hardware import vllm_device, vllm_dtype
from alignment.records import write_json


def cpu_env_defaults(kv_cache_gib: int, single_process: bool) -> None:
    """vLLM CPU settings: use every core (by default it binds one and reserves another) and size the KV cache.

    With ``single_process`` the engine core runs in this process instead of two spawned ones: on 2 cores that cut
    engine start from 18 s to 4 s and raised sampling throughput from 239 to 290 tokens/s (SmolLM2-135M, 32x4).
    Values already set in the environment win, so users can tune them per machine.
    """
    ncpu = os.cpu_count() or 1
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{ncpu - 1}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
    if single_process:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


# Notices every CPU engine start prints that say nothing about this run: our own deliberate settings (in-process
# engine with a global seed, eager mode), GPU-only features this CPU build lacks, and a thread-count message vLLM
# repeats for every call into torch. Each is matched on its text; anything else vLLM says is shown.
KNOWN_NOTICES = (
    "The global random seed is set to",  # we run the engine in-process on purpose (faster start)
    "Enforce eager set, disabling torch.compile",  # generation.vllm.enforce_eager (start 3 s instead of ~90 s)
    "Inductor compilation was disabled by user settings",
    "Triton is installed, but doesn't include CPU backend",
    "Triton is not installed. triton-cpu is expected",
    "Triton is installed but 0 active driver",
    "Triton not installed or not compatible",
    "Model Runner V2 requires Triton",
    "CPU backend doesn't allow to use `torch.set_num_threads`",
    "is not found in LD_PRELOAD",  # tcmalloc / Intel OpenMP preloads: README, CPU notes
    "Auto-prefetch is disabled because the filesystem",
    "Detected the chat template content format",
)


class KnownNotices(logging.Filter):
    """Drops the vLLM log records listed in :data:`KNOWN_NOTICES`; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(notice in message for notice in KNOWN_NOTICES)


def quiet_logging() -> None:
    """Before vLLM is imported: its log at WARNING (INFO with ``VLLM_LOGGING_LEVEL=INFO``) without the known notices.

    Done through vLLM's own hook, a logging config file in ``VLLM_LOGGING_CONFIG_PATH``, so every vLLM process and
    every reconfiguration keep the filter. A config file or level the user set wins.
    """
    if os.environ.get("VLLM_LOGGING_CONFIG_PATH") or os.environ.get("VLLM_CONFIGURE_LOGGING") == "0":
        return
    level = os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"known": {"()": f"{__name__}.KnownNotices"}},
        "formatters": {
            "vllm": {
                "()": "vllm.logging_utils.NewLineFormatter",
                "datefmt": "%m-%d %H:%M:%S",
                "format": "(vllm pid=%(process)d) %(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s",
            }
        },
        "handlers": {
            "vllm": {"class": "logging.StreamHandler", "formatter": "vllm", "filters": ["known"], "level": level}
        },
        "loggers": {"vllm": {"handlers": ["vllm"], "level": level, "propagate": False}},
    }
    path = Path(tempfile.gettempdir()) / f"alignment-vllm-logging-{level.lower()}.json"
    write_json(config, path)  # atomic: concurrent engines write the same file
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(path)
    # Python-level deprecation notices vLLM's own imports raise (torch.distributed.reduce_op): not ours to fix.
    warnings.filterwarnings("ignore", message=".*torch.distributed.reduce_op.*", category=FutureWarning)
    for handler in logging.getLogger().handlers:  # records vLLM logs before its config applies reach the root
        handler.addFilter(KnownNotices())


def engine_dtype(llm) -> str:
    """The dtype the engine actually runs the model in, in our spelling (fp32, bf16, fp16)."""
    dtype = str(llm.llm_engine.model_config.dtype).removeprefix("torch.")
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end-of-turn or a stop token) or "length" (hit max tokens)
    mean_logprob: float | None = None
    """Mean log-probability per generated token under the generating model's own (untempered) distribution, when
    asked for: a fluency signal (incoherent replies are made of unlikely tokens)."""


def build_engine(model: str, cfg: VllmConfig, seed: int):
    """Create ``vllm.LLM`` for ``model``. The engine-level seed makes sampling reproducible (per-request seeds crash
    the CPU worker in vllm-cpu 0.32). The dtype follows the project's policy (:mod:`alignment.hardware`): ``auto`` is
    bf16 only where the hardware has it natively, never the checkpoint's dtype on a CPU that emulates bf16."""
    cuda = vllm_device() == "cuda"
    single_process = not cuda and cfg.tensor_parallel_size == 1
    if not cuda:
        cpu_env_defaults(cfg.kv_cache_gib, single_process)
    quiet_logging()
    from vllm import LLM

    kwargs = dict(
        model=model,
        seed=seed,
        enforce_eager=cfg.enforce_eager,
        max_model_len=cfg.max_model_len,
        enable_prefix_caching=cfg.enable_prefix_caching,
        dtype=vllm_dtype(cfg.dtype, "cuda" if cuda else "cpu"),
        tensor_parallel_size=cfg.tensor_parallel_size,
    )
    in_process = single_process and os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
    if in_process:
        kwargs["distributed_executor_backend"] = "uni"
    if in_process and cfg.cpu_fast_top_p:
        from alignment.vllm_sampling import install

        install()  # the sampler runs in this process: see alignment.vllm_sampling
    if cuda:
        kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
    return LLM(**kwargs)


def chat_generate(
    llm,
    conversations: list[list[dict]],
    *,
    n: int,
    temperature: float,
    top_p: float,
    max_tokens: int,
    stop_ids,
    logprobs: bool = False,
) -> list[list[Completion]]:
    """Sample ``n`` completions per conversation; returns one list per conversation, in input order.

    ``stop_ids`` are the end-of-turn ids read from the tokenizer and generation config (never hard-coded). With
    ``logprobs`` each completion carries its ``mean_logprob``: vLLM returns the sampled tokens' log-probabilities
    from the raw logits (before temperature and top-p), so it is the model's own judgement of the text.
    """
    from vllm import SamplingParams

    params = SamplingParams(
        n=n,
        temperature=temperature,
        top_p=top_p if temperature > 0 else 1.0,
        max_tokens=max_tokens,
        stop_token_ids=list(stop_ids),
        logprobs=0 if logprobs else None,  # 0: only the sampled token's
    )
    outputs = llm.chat(conversations, params, use_tqdm=True)
    return [
        [
            Completion(
                text=c.text,
                token_ids=list(c.token_ids),
                finish_reason=c.finish_reason or "stop",
                mean_logprob=_mean_logprob(c) if logprobs else None,
            )
            for c in o.outputs
        ]
        for o in outputs
    ]


def _mean_logprob(output) -> float | None:
    n = len(output.token_ids)
    if not n or output.cumulative_logprob is None:
        return None
    return round(float(output.cumulative_logprob) / n, 4)
