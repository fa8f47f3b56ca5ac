"""Evaluation on suites in the public JSONL format, accuracy per capability: greedy by default, sampling with pass@k
optional; vLLM, or transformers where vLLM is absent.

    alignment eval --model PATH --suite FILE.jsonl [--suite FILE.jsonl ...] --out FILE.json [--samples 8]
    python -m alignment.evaluate --model PATH --suite builtin --out eval.json      # the same, as a module

Writes ``{"<capability>": {"accuracy": float, "n": int}}`` to ``--out`` (with ``--samples`` > 1 also ``pass@k``),
every item's response(s) and verdict to ``<out stem>.items.jsonl`` so a regression can be traced to items, and the
settings that produced them to ``<out stem>.settings.json``. A reply cut off at the token limit fails its item.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

from alignment.backends import BACKENDS, open_backend
from alignment.config import GenerationConfig, load_config
from alignment.hardware import hardware_record, vllm_device
from alignment.jobs import read_job, run_jobs_parallel
from alignment.models import end_of_turn_ids, load_chat_tokenizer, resolve_model
from alignment.records import check_output_file, read_json, write_json, write_jsonl
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


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def k_values(samples: int) -> list[int]:
    """The k of pass@k reported for ``samples`` samples per item: 1, powers of two below it, and itself."""
    return sorted({1, samples, *(2**i for i in range(1, samples.bit_length()) if 2**i < samples)})


def score_responses(
    items: list[dict],
    responses: list[list[str]] | list[str],
    finish_reasons: list[list[str | None]] | None = None,
    token_counts: list[list[int | None]] | None = None,
) -> tuple[dict, list[dict]]:
    """Per-capability accuracy and per-item records for ``responses``: one per item (greedy), or a list of samples
    per item. ``finish_reasons`` (same shape) lets the verifier fail a reply cut off at the token limit;
    ``token_counts`` (same shape) are recorded as each reply's ``tokens`` (length is part of what a round changes).
    An item's ``wording`` (``seen`` / ``held_out`` in the built-in suites) is copied into its record.

    With one sample per item, ``accuracy`` is the share of items answered correctly and each record has the
    response, ``correct`` and the verdict's ``reason``. With s > 1 samples, ``accuracy`` is the mean pass@1 over
    items, ``pass@k`` is added for k in :func:`k_values`, and each record has ``score`` (its samples' pass rate),
    ``correct`` (score >= 0.5) and every sample.
    """
    per_item = [r if isinstance(r, list) else [r] for r in responses]
    reasons = finish_reasons or [[None] * len(r) for r in per_item]
    lengths = token_counts or [[None] * len(r) for r in per_item]
    samples = len(per_item[0]) if per_item else 1
    records = []
    for item, texts, finished, tokens in zip(items, per_item, reasons, lengths, strict=True):
        if len(texts) != samples:
            raise ValueError(f"item {item['id']}: {len(texts)} samples, expected {samples}")
        verdicts = [verify(t, item, fr) for t, fr in zip(texts, finished, strict=True)]
        passed = [bool(v.passed) for v in verdicts]
        rec = {"id": item["id"], "capability": item["capability"]}
        if "wording" in item:
            rec["wording"] = item["wording"]
        if samples == 1:
            rec |= {"response": texts[0], "correct": passed[0], "reason": verdicts[0].reason}
            rec["finish_reason"] = finished[0]
            if tokens[0] is not None:
                rec["tokens"] = tokens[0]
        else:
            score = sum(passed) / samples
            rec |= {"score": round(score, 4), "correct": score >= 0.5}
            rec["samples"] = [
                {"response": t, "correct": p, "reason": v.reason, "finish_reason": fr}
                | ({"tokens": n} if n is not None else {})
                for t, p, v, fr, n in zip(texts, passed, verdicts, finished, tokens, strict=True)
            ]
        records.append(rec)
    return summarize(records, samples), records


def summarize(records: list[dict], samples: int) -> dict:
    """Per-capability accuracy (and pass@k with several samples) from per-item records as :func:`score_responses`
    writes them: the summary of a data-parallel eval is made from its shards' records."""
    by_cap: dict[str, list[int]] = defaultdict(list)  # passing samples per item
    for r in records:
        passed = int(bool(r["correct"])) if samples == 1 else sum(bool(x["correct"]) for x in r["samples"])
        by_cap[r["capability"]].append(passed)
    summary = {}
    for cap, counts in sorted(by_cap.items()):
        entry: dict = {"accuracy": round(sum(c / samples for c in counts) / len(counts), 4), "n": len(counts)}
        if samples > 1:
            entry["samples"] = samples
            entry["pass@k"] = {
                str(k): round(sum(pass_at_k(samples, c, k) for c in counts) / len(counts), 4) for k in k_values(samples)
            }
        summary[cap] = entry
    return summary


def evaluate(
    model: str,
    items: list[dict],
    *,
    max_new_tokens: int,
    gen_cfg: GenerationConfig,
    seed: int = 0,
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> tuple[dict, list[dict], float, dict]:
    """Responses of ``model`` to ``items`` with the backend ``gen_cfg.backend`` names (its vLLM / transformers
    settings too): greedy by default, or ``samples`` samples per item at ``temperature`` for pass@k. Returns
    (summary, per-item records, seconds, the engine that ran: backend, device, dtype)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if samples > 1 and temperature <= 0:
        raise ValueError("several samples per item need a sampling temperature > 0 (greedy samples are identical)")
    tokenizer = load_chat_tokenizer(model)
    backend = open_backend(gen_cfg.backend, model, gen_cfg, seed=seed)
    t0 = time.time()
    try:
        outs = backend.chat(
            [it["messages"] for it in items],
            n=samples,
            temperature=temperature,
            top_p=top_p if temperature > 0 else 1.0,
            max_tokens=max_new_tokens,
            stop_ids=end_of_turn_ids(tokenizer, model),
        )
    finally:
        backend.close()
    seconds = time.time() - t0
    summary, records = score_responses(
        items,
        [[c.text for c in o] for o in outs],
        [[c.finish_reason for c in o] for o in outs],
        [[len(c.token_ids) for c in o] for o in outs],
    )
    return summary, records, seconds, {"backend": backend.name, "device": backend.device, "dtype": backend.dtype}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value} (leave the flag out for every item)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="HF model folder, hub id, or 'embedded'")
    parser.add_argument(
        "--suite",
        action="append",
        default=None,
        help="suite JSONL in the public format ('builtin' = shipped held-out suites); repeatable",
    )
    parser.add_argument(
        "--lm-eval-tasks",
        default=None,
        metavar="TASKS",
        help="instead of --suite: lm-evaluation-harness tasks, e.g. gsm8k,ifeval,builtin (data from the local HF "
        "datasets cache; nothing is downloaded)",
    )
    parser.add_argument("--out", required=True, help="output JSON: {capability: {accuracy, n}}")
    parser.add_argument(
        "--max-new-tokens", type=_positive_int, default=256, help="longest reply per item, in tokens (default 256)"
    )
    parser.add_argument(
        "--max-items", type=_positive_int, default=None, help="only the first N items of each suite (default: all)"
    )
    parser.add_argument(
        "--config",
        default=None,
        help="a round config whose generation settings (backend, vllm, transformers) are used (default: defaults)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="override generation.backend")
    parser.add_argument(
        "--max-model-len", type=_positive_int, default=None, help="override generation.vllm.max_model_len (1024)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0; greedy decoding ignores it)")
    parser.add_argument(
        "--samples", type=_positive_int, default=1, help="samples per item (default 1: greedy); > 1 reports pass@k too"
    )
    parser.add_argument(
        "--temperature", type=float, default=None, help="sampling temperature (default 0, or 0.8 with --samples > 1)"
    )
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling when sampling (default 0.95)")


def run_evals(
    runs: list[tuple[str, str | Path]],
    suites: list[str] | tuple[str, ...],
    *,
    max_items: int | None = None,
    max_new_tokens: int = 256,
    config: str | None = None,
    backend: str | None = None,
    max_model_len: int | None = None,
    seed: int = 0,
    samples: int = 1,
    temperature: float | None = None,
    top_p: float = 0.95,
    item_ids: list[str] | None = None,
    shard: int | None = None,
) -> list[dict]:
    """Evaluate each ``(model spec, out)`` of ``runs`` on ``suites`` with the same settings, one engine after the
    other in this process (one import of vLLM, not one per model); write each summary to its ``out`` with the items
    and the settings beside it. Every suite and model is checked before the first engine starts.

    ``temperature`` None means greedy for one sample and 0.8 for several. With ``generation.vllm.data_parallel_size``
    N > 1 in ``config``, each model's items are sharded over N engines as generation's are
    (:func:`alignment.jobs.run_jobs_parallel`; ``item_ids`` and ``shard`` are what one shard's process gets) and
    merged by item id in the suites' order. Returns the summaries, in order.
    """
    items = load_items(suites, max_items)
    if item_ids is not None:
        wanted = set(item_ids)
        items = [it for it in items if it["id"] in wanted]
    models = [resolve_model(spec) for spec, _ in runs]
    gen_cfg = load_config(config).generation if config else GenerationConfig()
    if max_model_len:
        gen_cfg = dataclasses.replace(gen_cfg, vllm=dataclasses.replace(gen_cfg.vllm, max_model_len=max_model_len))
    if backend:
        gen_cfg = dataclasses.replace(gen_cfg, backend=backend)
    if temperature is None:
        temperature = 0.8 if samples > 1 else 0.0
    engines = gen_cfg.vllm.data_parallel_size if shard is None else 1
    summaries = []
    for (spec, out), model in zip(runs, models, strict=True):
        out = Path(out)
        if engines > 1:
            shard_settings = {
                "suites": list(suites), "max_items": max_items, "max_new_tokens": max_new_tokens, "config": config,
                "backend": backend, "max_model_len": max_model_len, "seed": seed, "samples": samples,
                "temperature": temperature, "top_p": top_p,
            }  # fmt: skip
            gpus = gen_cfg.vllm.tensor_parallel_size if vllm_device() == "cuda" else 0
            summary, records, seconds, ran = _evaluate_sharded(model, items, out, engines, gpus, shard_settings)
        else:
            summary, records, seconds, ran = evaluate(
                model,
                items,
                max_new_tokens=max_new_tokens,
                gen_cfg=gen_cfg,
                seed=seed + (shard or 0),  # each data-parallel engine its own sampler seed
                samples=samples,
                temperature=temperature,
                top_p=top_p,
            )
        write_json(summary, out)
        write_jsonl(records, out.with_name(out.stem + ".items.jsonl"))
        settings = {
            "model": spec,
            "suites": list(suites),
            "max_items": max_items,
            "max_new_tokens": max_new_tokens,
            "backend": ran["backend"],
            "device": ran["device"],
            "dtype": ran["dtype"],
            "samples": samples,
            "temperature": temperature,
            "top_p": top_p if temperature > 0 else 1.0,
            "seed": seed,
            "seconds": round(seconds, 1),
            "items": len(items),
            "data_parallel": engines,
            "hardware": hardware_record(),
        }
        write_json(settings, out.with_name(out.stem + ".settings.json"))  # what `alignment regress` re-runs
        log.info("evaluated %s on %d items in %.1fs with %s (%s, %s)", model, len(items), seconds, *ran.values())
        summaries.append(summary)
    return summaries


def _evaluate_sharded(
    model: str, items: list[dict], out: Path, n: int, gpus_per_engine: int, settings: dict
) -> tuple[dict, list[dict], float, dict]:
    """``model`` on ``items`` over ``n`` engines: items by id, round robin, one ``alignment.evaluate`` job each (run
    by Ray); the records merged back in ``items``' order. Returns what :func:`evaluate` returns."""
    shard_dir = out.with_name(out.stem + ".shards")
    shard_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(it["id"] for it in items)
    jobs = []
    for i in range(n):
        job = {"runs": [{"model": model, "out": str(shard_dir / f"eval-{i}.json")}], **settings}
        write_json({**job, "item_ids": ordered[i::n], "shard": i}, shard_dir / f"job-{i}.json")
        jobs.append(shard_dir / f"job-{i}.json")
    t0 = time.time()
    run_jobs_parallel("alignment.evaluate", jobs, gpus_per_engine=gpus_per_engine)
    seconds = time.time() - t0
    by_id = {}
    for i in range(n):
        for line in (shard_dir / f"eval-{i}.items.jsonl").read_text().splitlines():
            rec = json.loads(line)
            by_id[rec["id"]] = rec
    missing = [it["id"] for it in items if it["id"] not in by_id]
    if missing:
        raise RuntimeError(f"data-parallel eval lost {len(missing)} items, e.g. {missing[:3]}")
    records = [by_id[it["id"]] for it in items]
    first = read_json(shard_dir / "eval-0.settings.json")
    ran = {k: first[k] for k in ("backend", "device", "dtype")}
    return summarize(records, settings["samples"]), records, seconds, ran


def run_eval(model_spec: str, suites: list[str] | tuple[str, ...], out: Path, **settings) -> dict:
    """Evaluate one model (see :func:`run_evals` for the settings); returns its summary."""
    return run_evals([(model_spec, out)], suites, **settings)[0]


def run(args: argparse.Namespace) -> dict:
    """``alignment eval``: the suites, or lm-eval tasks with ``--lm-eval-tasks``."""
    check_output_file(args.out)
    if args.lm_eval_tasks:
        if args.suite:
            raise ValueError(
                "give either --suite or --lm-eval-tasks (the built-in suites are the lm-eval task 'builtin')"
            )
        from alignment.harness import lm_eval_task_list, run_lm_eval_tasks

        return run_lm_eval_tasks(
            resolve_model(args.model),
            lm_eval_task_list(args.lm_eval_tasks),
            Path(args.out),
            backend="vllm" if args.backend == "vllm" else "hf",
            limit=args.max_items,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
        )
    if not args.suite:
        raise ValueError("alignment eval needs --suite FILE (or 'builtin') or --lm-eval-tasks TASKS")
    summary = run_eval(
        args.model,
        args.suite,
        Path(args.out),
        max_items=args.max_items,
        max_new_tokens=args.max_new_tokens,
        config=args.config,
        backend=args.backend,
        max_model_len=args.max_model_len,
        seed=args.seed,
        samples=args.samples,
        temperature=args.temperature,
        top_p=args.top_p,
    )
    print(format_summary(summary))
    print(f"(written to {args.out}, per item: {Path(args.out).with_name(Path(args.out).stem + '.items.jsonl')})")
    return summary


def format_summary(summary: dict) -> str:
    """An eval summary as a table: one row per capability with its accuracy and item count (and pass@k)."""
    ks = sorted({k for v in summary.values() for k in v.get("pass@k", {})}, key=int)
    head = f"{'capability':<14}{'accuracy':>9}{'items':>7}" + "".join(f"{'pass@' + k:>9}" for k in ks)
    rows = [head, "-" * len(head)]
    for cap, v in sorted(summary.items()):
        row = f"{cap:<14}{v['accuracy']:>9.3f}{v['n']:>7}"
        row += "".join(f"{v.get('pass@k', {}).get(k, float('nan')):>9.3f}" for k in ks)
        rows.append(row)
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """``python -m alignment.evaluate --job FILE`` (a round's eval stage, see ``alignment.jobs``), or the same
    arguments as ``alignment eval``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--job"] and len(argv) == 2:
        job = read_job(argv[1])
        runs = [(r["model"], r["out"]) for r in job.pop("runs")]
        run_evals(runs, job.pop("suites"), **job)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
