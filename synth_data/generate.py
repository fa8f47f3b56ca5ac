"""The generate stage: K candidates per prompt from the round's starting checkpoint (or a teacher model).

    python -m synth_data.generate --config runs/default/round-1/config.yaml --round 1 --model MODEL \
        --prompts runs/default/round-1/prompts.parquet --out runs/default/round-1/candidates.parquet
    python -m synth_data.generate --job runs/default/round-1/jobs/generate.json   # the same, as a round runs it

The backend (vLLM, or transformers ``generate`` where vLLM is not installed) comes from ``generation.backend``;
sampling settings from ``generation`` and its ``per_round`` entry for this round. A capability's system prompt
(``generation.system_prompts``) is added at generation time to prompts that have no system message.

With ``generation.adaptive_k`` > 0, prompts whose K candidates all failed their verifier are resampled once in the
same engine with that many more samples (``resampled`` true, candidate ids continuing after K).

Writes one row per candidate: prompt_id, candidate_id, text, finish_reason, num_tokens, generator, backend,
system_prompt, resampled and the sampling settings; and ``<out>.stats.json`` (backend, timings, tokens/s). Candidates are
joined back to prompts by ``prompt_id``, never by position.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from alignment.backends import Backend, open_backend
from alignment.config import GenerationConfig, load_config
from alignment.hardware import hardware_record, vllm_device
from alignment.jobs import read_job
from alignment.models import end_of_turn_ids, load_chat_tokenizer, resolve_model
from alignment.records import read_json, read_parquet, write_json, write_parquet
from alignment.vllm_engine import Completion

log = logging.getLogger(__name__)

CANDIDATE_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("candidate_id", pa.string()),
        ("text", pa.string()),
        ("finish_reason", pa.string()),
        ("num_tokens", pa.int64()),
        ("generator", pa.string()),
        ("backend", pa.string()),
        ("system_prompt", pa.string()),
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("max_tokens", pa.int64()),
        ("resampled", pa.bool_()),
        ("mean_logprob", pa.float64()),
    ]
)


def steered_conversation(messages: Sequence[dict], capability: str, system_prompts: dict[str, str]) -> list[dict]:
    """The prompt as sent to the generator: the capability's system prompt first, unless it already has one."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    system = system_prompts.get(capability)
    if system and not any(m["role"] == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": system})
    return msgs


def candidate_rows(
    prompts: list[dict],
    completions: list[list[Completion]],
    *,
    generator: str,
    backend: str,
    system_prompts: dict[str, str],
    sampling: tuple[float, float, int],
    first_index: int = 0,
) -> list[dict]:
    """Flatten per-prompt outputs (in prompt order) into candidate records with stable ids ``<prompt_id>#<j>``."""
    if len(prompts) != len(completions):
        raise RuntimeError(f"the backend returned {len(completions)} outputs for {len(prompts)} prompts")
    temperature, top_p, max_tokens = sampling
    rows = []
    for prompt, outs in zip(prompts, completions, strict=True):
        pid = prompt["prompt_id"]
        has_system = any(m["role"] == "system" for m in prompt["messages"])
        system = None if has_system else system_prompts.get(prompt["capability"])
        for j, c in enumerate(outs, start=first_index):
            rows.append(
                {
                    "prompt_id": pid,
                    "candidate_id": f"{pid}#{j}",
                    "text": c.text,
                    "finish_reason": c.finish_reason,
                    "num_tokens": len(c.token_ids),
                    "generator": generator,
                    "backend": backend,
                    "system_prompt": system,
                    "temperature": temperature,
                    "top_p": top_p,
                    "max_tokens": max_tokens,
                    "resampled": first_index > 0,
                    "mean_logprob": c.mean_logprob,
                }
            )
    return rows


def unsolved_prompts(prompts: list[dict], rows: list[dict]) -> list[dict]:
    """Prompts with a verifier (a math answer or constraints) for which none of their candidates passed (adaptive K
    resamples these). Chat prompts have no verifier and are never resampled, truncated candidates or not."""
    from reward.verifiers import has_verifier, verify

    by_id = {p["prompt_id"]: p for p in prompts}
    solved = {
        r["prompt_id"]
        for r in rows
        if verify(r["text"], by_id[r["prompt_id"]], finish_reason=r["finish_reason"]).passed
    }
    return [p for p in prompts if has_verifier(p) and p["prompt_id"] not in solved]


def generate_candidates(
    backend: Backend,
    prompts: list[dict],
    gen: GenerationConfig,
    *,
    generator: str,
    stop_ids: list[int],
    round_index: int,
    num_candidates: int | None = None,
    first_index: int = 0,
) -> tuple[list[dict], float]:
    """``num_candidates`` (default K) candidates for every prompt record, numbered from ``first_index``; returns
    (candidate rows, seconds spent generating)."""
    sampling = gen.sampling_for(round_index)
    temperature, top_p, max_tokens = sampling
    conversations = [steered_conversation(p["messages"], p["capability"], gen.system_prompts) for p in prompts]
    t0 = time.time()
    completions = backend.chat(
        conversations,
        n=num_candidates or gen.num_candidates,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        stop_ids=stop_ids,
        logprobs=True,  # mean_logprob: the filters' fluency signal
    )
    seconds = time.time() - t0
    rows = candidate_rows(
        prompts,
        completions,
        generator=generator,
        backend=backend.name,
        system_prompts=gen.system_prompts,
        sampling=sampling,
        first_index=first_index,
    )
    return rows, seconds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``--job FILE`` (how a round calls it, see ``alignment.jobs``: a JSON object with the keys below), or flags."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--job"] and len(argv) == 2:
        job = read_job(argv[1])
        return argparse.Namespace(**{"round": 1, **job})
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--round", type=int, default=1, help="round number (selects generation.per_round settings)")
    parser.add_argument("--model", required=True, help="the round's policy; generation.teacher replaces it")
    parser.add_argument("--prompts", required=True)
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def generate_data_parallel(args: argparse.Namespace, prompts: list[dict], n: int, gpus_per_engine: int) -> None:
    """The prompts sharded over ``n`` engines (:mod:`synth_data.parallel`), then one candidates file and one stats
    file as a single engine writes them."""
    from synth_data.parallel import merge_shards, merge_stats, run_shard_jobs, shard_prompts

    out = Path(args.out)
    shard_dir = out.with_name(out.stem + ".shards")
    shard_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i, shard in enumerate(shard_prompts(prompts, n)):
        write_parquet(shard, shard_dir / f"prompts-{i}.parquet")
        job = {
            "config": args.config,
            "round": args.round,
            "model": args.model,
            "prompts": str(shard_dir / f"prompts-{i}.parquet"),
            "out": str(shard_dir / f"candidates-{i}.parquet"),
            "shard": i,
        }
        write_json(job, shard_dir / f"job-{i}.json")
        jobs.append(shard_dir / f"job-{i}.json")
    t0 = time.time()
    run_shard_jobs(jobs, gpus_per_engine=gpus_per_engine)
    wall = time.time() - t0
    shards = [read_parquet(shard_dir / f"candidates-{i}.parquet") for i in range(n)]
    write_parquet(merge_shards(prompts, shards), out, schema=CANDIDATE_SCHEMA)
    stats = merge_stats([read_json(shard_dir / f"candidates-{i}.stats.json") for i in range(n)], wall)
    write_json(stats, out.with_suffix(".stats.json"))
    log.info("%d engines generated %d candidates in %.1fs", n, stats["candidates"], wall)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    cfg = load_config(args.config)
    gen = cfg.generation
    model = resolve_model(gen.teacher, cfg.model.cache_dir) if gen.teacher else args.model
    prompts = read_parquet(args.prompts)
    shard = getattr(args, "shard", None)
    if shard is None and gen.vllm.data_parallel_size > 1:
        gpus = gen.vllm.tensor_parallel_size if vllm_device() == "cuda" else 0
        generate_data_parallel(args, prompts, gen.vllm.data_parallel_size, gpus)
        return
    stop_ids = end_of_turn_ids(load_chat_tokenizer(model), model)

    t0 = time.time()
    seed = cfg.seed + (shard or 0)  # each data-parallel engine its own sampler seed
    backend = open_backend(gen.backend, model, gen, seed=seed, device=cfg.device)
    t_start = time.time() - t0
    rows, t_gen = generate_candidates(backend, prompts, gen, generator=model, stop_ids=stop_ids, round_index=args.round)
    resample = unsolved_prompts(prompts, rows) if gen.adaptive_k > 0 else []
    t_more = 0.0
    if resample:
        log.info("adaptive K: %d prompts had no passing candidate; %d more samples each", len(resample), gen.adaptive_k)
        more, t_more = generate_candidates(
            backend,
            resample,
            gen,
            generator=model,
            stop_ids=stop_ids,
            round_index=args.round,
            num_candidates=gen.adaptive_k,
            first_index=gen.num_candidates,
        )
        rows, t_gen = rows + more, t_gen + t_more
    backend.close()
    write_parquet(rows, args.out, schema=CANDIDATE_SCHEMA)
    ntok = sum(r["num_tokens"] for r in rows)
    temperature, top_p, max_tokens = gen.sampling_for(args.round)
    stats = {
        "backend": backend.name,
        "device": backend.device,
        "dtype": backend.dtype,
        "hardware": hardware_record(),
        "generator": model,
        "teacher": bool(gen.teacher),
        "sampling": {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_tokens},
        "engine_start_s": round(t_start, 2),
        "generate_s": round(t_gen, 2),
        "candidates": len(rows),
        "output_tokens": ntok,
        "tokens_per_s": round(ntok / max(t_gen, 1e-9), 1),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "resampled_prompts": len(resample),
        "resampled_candidates": sum(r["resampled"] for r in rows),
        "resample_s": round(t_more, 2),
        "resampled_tokens": sum(r["num_tokens"] for r in rows if r["resampled"]),
    }
    write_json(stats, Path(args.out).with_suffix(".stats.json"))
    log.info(
        "%s (%s, %s) generated %d candidates, %d tokens in %.1fs (%.0f tok/s)",
        backend.name,
        backend.device,
        backend.dtype,
        len(rows),
        ntok,
        t_gen,
        stats["tokens_per_s"],
    )


if __name__ == "__main__":
    main()
