"""Benchmark SFT and DPO training throughput: padded vs length-sorted vs padding-free batches, TRL's fused LM head vs
full logits, reference log-probs per step vs precomputed, the dtype the policy picks (or a forced one), and model
FLOPs utilisation.

    make bench-train [ARGS="--rows 160 --batch-size 8"]
    python benchmarks/bench_train.py [--variants sft-padded-fused,sft-grouped-logits-bf16,...] [--out F]

All in one run: first the matmul peak of this machine (fp32 and bf16, square matmuls of a few sizes, best of
each), then every variant in its own process (clean memory and thread state) training the embedded model through
the round's own ``train_sft`` / ``train_dpo`` with the default config's LoRA settings on the shipped seed
preferences (160 prompts from all three capabilities: SFT rows are prompt + chosen, DPO pairs are prompt + chosen
+ rejected).

Throughput counts real (non-pad) input tokens (TRL's ``num_input_tokens_seen`` with ``non_padding``) between the
end of the warm-up steps and the end of training, over that wall time; model load, tokenisation and the export are
not timed. Model FLOPs per real token follow the usual 6N (full fine-tuning: forward 2N, input gradients 2N,
weight gradients 2N) or 4N (LoRA: frozen weights need no weight gradients; the adapters' own FLOPs are under 1%
and left out), N counting every weight that takes part in a matmul (the tied LM head included), plus attention
(12 x layers x hidden x mean row length per token for training). MFU is those FLOPs per second over the measured
matmul peak of the dtype the variant ran in. Padding tokens and recomputation are not model FLOPs.

DPO variants time the round's DPO (formatting-token mask on, NLL weight 0.2, sigmoid loss) on ``--dpo-rows``
pairs; their tokens are those of the chosen and the rejected sequences. With precomputed reference log-probs the
reference pass runs before training, outside the timed steps: compare DPO variants by ``end_to_end_s`` (trainer
set-up incl. that pass + training).

Writes benchmarks/results/train-<date>.json (``--out``) with the machine (CPU kind and flags), peaks, every
variant, the SFT speed-up and MFU against the targets (1.5x stock TRL; 40% of the peak) and the DPO speed-up over
stock TRL (end to end), and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench_gen import _busy_cpu_s, machine_info  # noqa: E402  (benchmarks/ is the script's own folder)

# Each SFT variant adds one change to the one before it; the baseline is stock TRL on this machine: rows padded to
# the batch's longest in random order, TRL's chunked (fused) LM head. Every variant computes in the dtype the policy
# picks for this CPU (alignment.hardware: bf16 only with AVX512-BF16 or AMX); a "-fp32" / "-bf16" suffix forces one.
SFT_VARIANTS = {
    "sft-padded-fused": {"group_by_length": False, "fused_lm_head": True},
    "sft-grouped-fused": {"group_by_length": True, "fused_lm_head": True},
    "sft-grouped-logits": {"group_by_length": True, "fused_lm_head": False},  # the CPU default
    "sft-padfree-logits": {"padding_free": True, "fused_lm_head": False},
}
# DPO (formatting mask on, NLL 0.2, reference log-probs precomputed): TRL's defaults (chunked LM head, random order)
# against the CPU default (full logits, length-sorted batches), and the reference pass per step instead.
DPO_VARIANTS = {
    "dpo-fused-random": {"fused_lm_head": True, "group_by_length": False},
    "dpo-logits-grouped": {"fused_lm_head": False, "group_by_length": True},  # the CPU default
    "dpo-logits-grouped-ref-per-step": {"fused_lm_head": False, "group_by_length": True, "precompute_ref_logps": False},
}
DTYPE_SUFFIXES = ("-fp32", "-bf16")
VARIANTS = (*SFT_VARIANTS, *DPO_VARIANTS)
DEFAULT_VARIANTS = ("sft-padded-fused", "sft-grouped-logits", "sft-padfree-logits", *DPO_VARIANTS)


def split_variant(variant: str) -> tuple[str, str]:
    """("sft-grouped-logits-bf16") -> ("sft-grouped-logits", "bf16"); no suffix -> precision "auto" (the policy)."""
    for suffix in DTYPE_SUFFIXES:
        if variant.endswith(suffix) and variant.removesuffix(suffix) in VARIANTS:
            return variant.removesuffix(suffix), suffix[1:]
    return variant, "auto"


TARGET_SPEEDUP = 1.5
TARGET_MFU = 0.40
WARMUP_STEPS = 2


def matmul_peak(dtype_name: str, sizes: tuple[int, ...] = (1024, 2048, 3072), seconds: float = 2.0) -> dict:
    """Best GFLOP/s of square matmuls in ``dtype_name`` (fp32 | bf16) over a few sizes, all threads."""
    import os

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
    best = {}
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            reps += 1
        best[n] = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9
    return {"gflops": round(max(best.values()), 1), "by_size": {str(k): round(v, 1) for k, v in best.items()}}


def bench_data(rows: int) -> tuple[list[dict], list[dict]]:
    """(SFT rows, DPO pairs) from the shipped seed preferences, cycled to ``rows``."""
    from reward.seed_preferences import load_seed_pairs

    seeds = load_seed_pairs()
    picked = [seeds[i % len(seeds)] for i in range(rows)]
    sft = [
        {"prompt_id": f"b{i}", "messages": [*p["messages"], {"role": "assistant", "content": p["chosen"]}]}
        for i, p in enumerate(picked)
    ]
    dpo = [{"prompt": p["messages"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in picked]
    return sft, dpo


def matmul_params(model_path: str) -> dict:
    """Weights that take part in matmuls (every Linear, the LM head counted even when tied) and the shape numbers."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return {"matmul_params": n, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size}


class StepClock:
    """A TrainerCallback recording (time, real tokens seen) at the end of every optimizer step."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def __getattr__(self, name: str):  # every other callback event: nothing to do
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append((time.perf_counter(), state.num_input_tokens_seen))


def run_variant(variant: str, rows: int, dpo_rows: int, batch_size: int, epochs: float) -> dict[str, Any]:
    from alignment.config import DpoConfig, SftConfig
    from alignment.dpo import train_dpo
    from alignment.models import resolve_model
    from alignment.sft import train_sft

    model = resolve_model("embedded")
    sft_rows, pairs = bench_data(rows)
    clock = StepClock()
    base, precision = split_variant(variant)
    common = {"epochs": epochs, "batch_size": batch_size, "precision": precision, "save_steps": 0}
    busy0, own0 = _busy_cpu_s()
    with tempfile.TemporaryDirectory() as tmp:
        if variant.startswith("sft"):
            train, data, cfg = train_sft, sft_rows, SftConfig(**common, **SFT_VARIANTS[base])
        else:
            train, data, cfg = train_dpo, pairs[:dpo_rows], DpoConfig(**common, **DPO_VARIANTS[base])
        out, work = Path(tmp) / "out", Path(tmp) / "w"
        metrics = train(data, model, cfg, out, seed=0, device="cpu", work_dir=work, callbacks=[clock])
    busy1, own1 = _busy_cpu_s()
    n_rows = rows if variant.startswith("sft") else min(rows, dpo_rows)
    (t0, tok0), (t1, tok1) = clock.marks[WARMUP_STEPS - 1], clock.marks[-1]
    return {
        "variant": variant,
        "steps": len(clock.marks),
        "timed_steps": len(clock.marks) - WARMUP_STEPS,
        "timed_tokens": tok1 - tok0,
        "timed_s": round(t1 - t0, 2),
        "tokens_per_s": round((tok1 - tok0) / (t1 - t0), 1),
        "mean_row_tokens": round(tok1 / max(1, n_rows * epochs) / (2 if variant.startswith("dpo") else 1), 1),
        "end_to_end_s": round(metrics["train_s"] + metrics.get("setup_s", 0.0), 1),
        "train_metrics": metrics,
        "other_processes_cpu_s": round((busy1 - busy0) - (own1 - own0), 1),
    }


def mfu(record: dict, shape: dict, lora: bool, peak_gflops: float) -> float:
    n = shape["matmul_params"]
    per_token = (4 if lora else 6) * n + 12 * shape["layers"] * shape["hidden"] * record["mean_row_tokens"]
    return round(record["tokens_per_s"] * per_token / (peak_gflops * 1e9), 3)


def drive(args: argparse.Namespace) -> int:
    from alignment.models import resolve_model

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(v for v in variants if split_variant(v)[0] not in VARIANTS)
    if unknown:
        print(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    peaks = {name: matmul_peak(name) for name in ("fp32", "bf16")}
    print(f"matmul peak: fp32 {peaks['fp32']['gflops']} GFLOP/s, bf16 {peaks['bf16']['gflops']} GFLOP/s", flush=True)
    shape = matmul_params(resolve_model("embedded"))
    results = {}
    for v in variants:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            cmd = [sys.executable, __file__, "--variant", v, "--json-out", f.name, "--rows", str(args.rows)]
            cmd += ["--dpo-rows", str(args.dpo_rows)]
            cmd += ["--batch-size", str(args.batch_size), "--epochs", str(args.epochs)]
            subprocess.run(cmd, check=True)
            rec = json.loads(Path(f.name).read_text())
        lora = rec["train_metrics"]["lora"]
        dtype = rec["train_metrics"]["dtype"]
        rec["mfu"] = mfu(rec, shape, lora, peaks[dtype]["gflops"])  # against the peak of the dtype it ran in
        results[v] = rec
        print(f"{v:34s} {dtype} {rec['tokens_per_s']:8.1f} tokens/s  MFU {rec['mfu']:.3f}", flush=True)

    summary: dict[str, Any] = {}
    base = results.get("sft-padded-fused")
    best_sft = max(
        (r for k, r in results.items() if k.startswith("sft")), key=lambda r: r["tokens_per_s"], default=None
    )
    if base and best_sft:
        speedup = best_sft["tokens_per_s"] / base["tokens_per_s"]
        summary = {
            "sft_best_variant": best_sft["variant"],
            "sft_speedup_over_stock": round(speedup, 2),
            "sft_best_mfu": best_sft["mfu"],
            "target_speedup": TARGET_SPEEDUP,
            "target_mfu": TARGET_MFU,
            "speedup_met": speedup >= TARGET_SPEEDUP,
            "mfu_met": best_sft["mfu"] >= TARGET_MFU,
        }
    old, new = results.get("dpo-fused-random"), results.get("dpo-logits-grouped")
    if old and new:
        summary["dpo_speedup_over_stock"] = round(old["end_to_end_s"] / new["end_to_end_s"], 2)
    print(json.dumps(summary, indent=2))
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"train-{datetime.date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "train",
        "machine": machine_info(),
        "settings": {
            "rows": args.rows,
            "dpo_rows": args.dpo_rows,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "warmup_steps": WARMUP_STEPS,
        },
        "matmul_peak": peaks,
        "model": shape,
        "variants": results,
        "summary": summary,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma list of {', '.join(VARIANTS)}; add -fp32 or -bf16 to force a dtype (default: the policy's)",
    )
    p.add_argument("--rows", type=int, default=160, help="SFT rows / DPO pairs (seed preferences, cycled)")
    p.add_argument("--dpo-rows", type=int, default=64, help="DPO pairs (at most --rows): DPO steps are ~4x slower")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--out", default=None)
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.variant is not None:
        rec = run_variant(args.variant, args.rows, args.dpo_rows, args.batch_size, args.epochs)
        Path(args.json_out).write_text(json.dumps(rec, indent=2) + "\n")
        return
    sys.exit(drive(args))


if __name__ == "__main__":
    main()
