"""`make bench`: every benchmark in benchmarks/, one after the other, into benchmarks/results/<date>.json.

    python benchmarks/run_all.py [--only round,generation,training,scoring] [--readme]

Runs bench_round.py (a whole default round: wall time and peak memory), bench_gen.py (vLLM vs transformers
generation), bench_train.py (SFT/DPO throughput and MFU) and bench_score.py (reward-model scoring), each as its own
process so one's memory never counts against the next, merges their results with the machine they ran on, and with
``--readme`` rewrites the README's benchmark table (between the ``bench:begin`` / ``bench:end`` markers) from them.
Run it on a quiet machine: the figures are wall-clock throughputs. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = {
    "round": "bench_round.py",
    "generation": "bench_gen.py",
    "training": "bench_train.py",
    "scoring": "bench_score.py",
}
README_BEGIN, README_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {"cpu_count": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(), "gpu": _gpu()}


def _gpu() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def run(name: str, out: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / BENCHMARKS[name]), "--out", str(out)]
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    result = json.loads(out.read_text())
    result["benchmark_wall_s"] = round(time.time() - t0, 1)
    return result


def table(results: dict) -> str:
    """The README's benchmark table (markdown) from a merged results file."""
    rows = []
    if r := results.get("round"):
        rows.append(
            (
                "default round 1, wall time and peak memory of the process tree (targets 600 s, 8 GiB)",
                "`make bench-round`",
                f"{r['wall_s']:.0f} s, {r['peak_rss_gib']:.2f} GiB",
            )
        )
    if g := results.get("generation"):
        v = g["variants"]
        s = g["settings"]
        rows.append(
            (
                f"generation, {s['num_prompts']} prompts x K={s['k']}, up to {s['max_tokens']} new tokens: vLLM vs "
                f"transformers `generate`",
                "`make bench-gen`",
                f"{v['vllm']['tokens_per_s']:.0f} vs {v['transformers']['tokens_per_s']:.0f} tokens/s: "
                f"**{g['ratio_vllm_over_transformers']:.1f}x**",
            )
        )
    if t := results.get("training"):
        v, s = t["variants"], t["summary"]
        best = v[s["sft_best_variant"]]
        rows.append(
            (
                "SFT, batch 8, LoRA r16: stock TRL (padded, fp32) vs the CPU default",
                "`make bench-train`",
                f"{v['sft-padded-fp32']['tokens_per_s']:.0f} vs {best['tokens_per_s']:.0f} tokens/s: "
                f"**{s['sft_speedup_over_padded_fp32']:.1f}x**; MFU {s['sft_best_mfu_vs_bf16_peak']:.0%} of the bf16 "
                "matmul peak",
            )
        )
        dpo = [k for k in ("dpo-fp32", "dpo-bf16", "dpo-bf16-precompute") if k in v]
        if dpo:
            rows.append(
                (
                    "DPO, formatting mask + NLL: " + " / ".join(k.removeprefix("dpo-") for k in dpo),
                    "`make bench-train`",
                    " / ".join(f"{v[k]['tokens_per_s']:.0f}" for k in dpo) + " tokens/s",
                )
            )
    if c := results.get("scoring"):
        v = c["variants"]
        parts = [f"batch {x['batch_size']}: {x['candidates_per_s']:.0f} candidates/s" for x in v.values()]
        rows.append(
            (
                f"reward-model scoring, {c['settings']['candidates']} candidates, {c['settings']['num_layers']}-layer RM",
                "`make bench-score`",
                ", ".join(parts),
            )
        )
    head = "| what | command | result |\n|---|---|---|\n"
    return head + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows) + "\n"


def update_readme(results: dict, source: Path, readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme}: no {README_BEGIN} ... {README_END} markers to put the table between")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    rel = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    cpu = results["machine"]
    intro = f"Measured {results['date'][:10]} on {cpu['cpu_count']} cores ({cpu['cpu_model']}), from `{rel}`:\n\n"
    readme.write_text(head + README_BEGIN + "\n" + intro + table(results) + README_END + tail)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma list of {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", default=None, help="default benchmarks/results/<date>.json")
    parser.add_argument("--readme", action="store_true", help="rewrite the README's benchmark table")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (have: {', '.join(BENCHMARKS)})")
    today = datetime.date.today().isoformat()
    dest = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"{today}.json"
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name in names:
            results[name] = run(name, Path(tmp) / f"{name}.json")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(json.dumps(results, indent=2) + "\n")  # after each, so a failure keeps the rest
    print(table(results))
    print(f"written to {dest}")
    if args.readme:
        update_readme(results, dest)
        print("README benchmark table updated")


if __name__ == "__main__":
    main()
