"""Evaluation: greedy decoding (vLLM, or transformers where vLLM is absent) on suites in the public JSONL format, accuracy per capability.

    alignment eval --model PATH --suite FILE.jsonl [--suite FILE.jsonl ...] --out FILE.json
    python -m alignment.evaluate --model PATH --suite builtin --out eval.json      # the same, as a module

Writes ``{"<capability>": {"accuracy": float, "n": int}}`` to ``--out`` and every item's response and verdict to
``<out stem>.items.jsonl`` so a regression can be traced to items.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections import defaultdict
from pathlib import Path

from alignment.backends import BACKENDS, open_backend
from alignment.config import GenerationConfig, load_config
from alignment.models import end_of_turn_ids, load_chat_tokenizer, resolve_model
from alignment.records import write_json, write_jsonl
from reward.verifiers import verify
from synth_data.suite_format import load_suite
from synth_data.suites import builtin_eval_suite_paths

log = logging.getLogger(__name__)


def expand_suites(suites: list[str] | tuple[str, ...]) -> list[Path]:
    """Suite paths, with "builtin" standing for the shipped held-out suites."""
    paths: list[Path] = []
    for s in suites:
        paths.extend(builtin_eval_suite_paths() if s == "builtin" else [Path(s)])
    return paths


def load_items(suites: list[str] | tuple[str, ...], max_items: int | None = None) -> list[dict]:
    """Load and validate every suite up front, so a malformed line fails before any model is loaded."""
    items: list[dict] = []
    seen: dict[str, Path] = {}
    for path in expand_suites(suites):
        loaded = load_suite(path)
        for item in loaded[:max_items] if max_items else loaded:
            if item["id"] in seen:
                raise ValueError(f"{path}: item id {item['id']!r} also appears in {seen[item['id']]}")
            seen[item["id"]] = path
            items.append(item)
    return items


def score_responses(items: list[dict], responses: list[str]) -> tuple[dict, list[dict]]:
    """Per-capability accuracy and per-item records for ``responses`` (one per item, same order)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    records = []
    for item, response in zip(items, responses, strict=True):
        verdict = verify(response, item)
        correct = bool(verdict.passed)
        totals[item["capability"]][0] += int(correct)
        totals[item["capability"]][1] += 1
        records.append(
            {
                "id": item["id"],
                "capability": item["capability"],
                "response": response,
                "correct": correct,
                "reason": verdict.reason,
            }
        )
    summary = {cap: {"accuracy": round(c / n, 4), "n": n} for cap, (c, n) in sorted(totals.items())}
    return summary, records


def evaluate(
    model: str, items: list[dict], *, max_new_tokens: int, gen_cfg: GenerationConfig, seed: int = 0
) -> tuple[dict, list[dict], float, str]:
    """Greedy responses of ``model`` to ``items`` with the backend ``gen_cfg.backend`` names (its vLLM /
    transformers settings too); returns (summary, per-item records, seconds, backend that ran)."""
    tokenizer = load_chat_tokenizer(model)
    backend = open_backend(gen_cfg.backend, model, gen_cfg, seed=seed)
    t0 = time.time()
    outs = backend.chat(
        [it["messages"] for it in items],
        n=1,
        temperature=0.0,
        top_p=1.0,
        max_tokens=max_new_tokens,
        stop_ids=end_of_turn_ids(tokenizer, model),
    )
    seconds = time.time() - t0
    summary, records = score_responses(items, [o[0].text for o in outs])
    for rec, o in zip(records, outs, strict=True):
        rec["finish_reason"] = o[0].finish_reason
    return summary, records, seconds, backend.name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="HF model folder, hub id, or 'embedded'")
    parser.add_argument(
        "--suite",
        action="append",
        required=True,
        help="suite JSONL in the public format ('builtin' = shipped held-out suites); repeatable",
    )
    parser.add_argument("--out", required=True, help="output JSON: {capability: {accuracy, n}}")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-items", type=int, default=None, help="only the first N items of each suite")
    parser.add_argument(
        "--config",
        default=None,
        help="a round config whose generation settings (backend, vllm, transformers) are used (default: defaults)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="override generation.backend")
    parser.add_argument("--max-model-len", type=int, default=None, help="override generation.vllm.max_model_len")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict:
    items = load_items(args.suite, args.max_items)
    model = resolve_model(args.model)
    gen_cfg = load_config(args.config).generation if args.config else GenerationConfig()
    if args.max_model_len:
        gen_cfg = dataclasses.replace(gen_cfg, vllm=dataclasses.replace(gen_cfg.vllm, max_model_len=args.max_model_len))
    if args.backend:
        gen_cfg = dataclasses.replace(gen_cfg, backend=args.backend)
    summary, records, seconds, backend = evaluate(
        model, items, max_new_tokens=args.max_new_tokens, gen_cfg=gen_cfg, seed=args.seed
    )
    out = Path(args.out)
    write_json(summary, out)
    write_jsonl(records, out.with_name(out.stem + ".items.jsonl"))
    log.info("evaluated %s on %d items in %.1fs with %s: %s", model, len(items), seconds, backend, summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
