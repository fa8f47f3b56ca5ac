"""The generate stage: K candidates per prompt from the round's starting checkpoint with vLLM.

    python -m synth_data.generate --config runs/default/round-1/config.yaml --model MODEL \
        --prompts runs/default/round-1/prompts.parquet --out runs/default/round-1/candidates.parquet

Writes one row per candidate: prompt_id, candidate_id, text, finish_reason, num_tokens, generator and the sampling
settings. Candidates are joined back to prompts by ``prompt_id``, never by position.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pyarrow as pa

from alignment.config import GenerationConfig, load_config
from alignment.models import end_of_turn_ids, load_chat_tokenizer
from alignment.records import read_parquet, write_json, write_parquet
from alignment.vllm_engine import build_engine, chat_generate

log = logging.getLogger(__name__)

CANDIDATE_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("candidate_id", pa.string()),
        ("text", pa.string()),
        ("finish_reason", pa.string()),
        ("num_tokens", pa.int64()),
        ("generator", pa.string()),
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("max_tokens", pa.int64()),
    ]
)


def candidate_rows(prompt_ids: list[str], completions, generator: str, gen: GenerationConfig) -> list[dict]:
    """Flatten vLLM outputs (one list per prompt, in prompt order) into candidate records with stable ids."""
    if len(prompt_ids) != len(completions):
        raise RuntimeError(f"vLLM returned {len(completions)} outputs for {len(prompt_ids)} prompts")
    rows = []
    for pid, outs in zip(prompt_ids, completions, strict=True):
        for j, c in enumerate(outs):
            rows.append(
                {
                    "prompt_id": pid,
                    "candidate_id": f"{pid}#{j}",
                    "text": c.text,
                    "finish_reason": c.finish_reason,
                    "num_tokens": len(c.token_ids),
                    "generator": generator,
                    "temperature": gen.temperature,
                    "top_p": gen.top_p,
                    "max_tokens": gen.max_new_tokens,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    cfg = load_config(args.config)
    gen = cfg.generation
    prompts = read_parquet(args.prompts)
    tokenizer = load_chat_tokenizer(args.model)
    stop_ids = end_of_turn_ids(tokenizer, args.model)

    t0 = time.time()
    llm = build_engine(args.model, gen.vllm, seed=cfg.seed)
    t_start = time.time() - t0
    t0 = time.time()
    completions = chat_generate(
        llm,
        [p["messages"] for p in prompts],
        n=gen.num_candidates,
        temperature=gen.temperature,
        top_p=gen.top_p,
        max_tokens=gen.max_new_tokens,
        stop_ids=stop_ids,
    )
    t_gen = time.time() - t0
    rows = candidate_rows([p["prompt_id"] for p in prompts], completions, args.model, gen)
    write_parquet(rows, args.out, schema=CANDIDATE_SCHEMA)
    ntok = sum(r["num_tokens"] for r in rows)
    stats = {
        "backend": "vllm",
        "engine_start_s": round(t_start, 2),
        "generate_s": round(t_gen, 2),
        "candidates": len(rows),
        "output_tokens": ntok,
        "tokens_per_s": round(ntok / max(t_gen, 1e-9), 1),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
    }
    write_json(stats, Path(args.out).with_suffix(".stats.json"))
    log.info("generated %d candidates, %d tokens in %.1fs (%.0f tok/s)", len(rows), ntok, t_gen, stats["tokens_per_s"])


if __name__ == "__main__":
    main()
