"""`make bench`: every benchmark in benchmarks/, one after the other, into benchmarks/results/<date>-<cpu kind>.json.

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
    """The machine the results come from: CPU model, kind and speed flags, cores, memory, GPUs."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from alignment.hardware import hardware_record

    return {**hardware_record(), "cpu_count": os.cpu_count(), "python": platform.python_version()}


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
        v, s = g["variants"], g["settings"]
        dtype = (g.get("dtypes") or {}).get("vllm") or "auto"
        rows.append(
            (
                f"generation, {s['num_prompts']} prompts x K={s['k']}, up to {s['max_tokens']} new tokens: vLLM vs "
                f"transformers `generate`, both {dtype}",
                "`make bench-gen`",
                f"{v['vllm']['tokens_per_s']:.0f} vs {v['transformers']['tokens_per_s']:.0f} tokens/s: "
                f"**{g['ratio_vllm_over_transformers']:.1f}x**",
            )
        )
        if g.get("dtype_ratio"):
            other = g["dtypes"].get("vllm-other-dtype")
            rows.append(
                (
                    f"vLLM generation in the policy's dtype ({dtype}) vs {other}",
                    "`make bench-gen`",
                    f"{v['vllm']['tokens_per_s']:.0f} vs {v['vllm-other-dtype']['tokens_per_s']:.0f} tokens/s: "
                    f"**{g['dtype_ratio']:.1f}x**",
                )
            )
        if g.get("fast_top_p_speedup"):
            rows.append(
                (
                    "vLLM CPU top-p: partial selection (`alignment.vllm_sampling`) vs vLLM's full sort",
                    "`make bench-gen`",
                    f"{v['vllm']['tokens_per_s']:.0f} vs {v['vllm-sort-top-p']['tokens_per_s']:.0f} tokens/s: "
                    f"**{g['fast_top_p_speedup']:.2f}x**",
                )
            )
    if t := results.get("training"):
        rows.extend(_training_rows(t))
    if c := results.get("scoring"):
        v = c["variants"]
        parts = [f"batch {x['batch_size']}: {x['candidates_per_s']:.0f} candidates/s" for x in v.values()]
        dtypes = sorted({x["dtype"] for x in v.values() if x.get("dtype")})
        rows.append(
            (
                f"reward-model scoring, {c['settings']['candidates']} candidates, {c['settings']['num_layers']}-layer RM"
                + (f", {'/'.join(dtypes)}" if dtypes else ""),
                "`make bench-score`",
                ", ".join(parts),
            )
        )
    head = "| what | command | result |\n|---|---|---|\n"
    return head + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows) + "\n"


def _training_rows(t: dict) -> list[tuple[str, str, str]]:
    v, s = t["variants"], t["summary"]
    rows = []
    if s.get("sft_best_variant"):
        base, best = v["sft-padded-fused"], v[s["sft_best_variant"]]
        dtype = best["train_metrics"]["dtype"]
        rows.append(
            (
                f"SFT, batch {t['settings']['batch_size']}, LoRA r16, {dtype}: stock TRL (random order, chunked LM "
                f"head) vs the CPU default ({s['sft_best_variant']})",
                "`make bench-train`",
                f"{base['tokens_per_s']:.0f} vs {best['tokens_per_s']:.0f} tokens/s: "
                f"**{s['sft_speedup_over_stock']:.1f}x**; MFU {s['sft_best_mfu']:.0%} of the {dtype} matmul peak",
            )
        )
    if s.get("dpo_speedup_over_stock"):
        old, new = v["dpo-fused-random"], v["dpo-logits-grouped"]
        rows.append(
            (
                f"DPO ({t['settings']['dpo_rows']} pairs, formatting mask + NLL, reference precomputed), end to end: "
                "stock TRL (chunked LM head, random order) vs full logits + length-sorted batches",
                "`make bench-train`",
                f"{old['end_to_end_s']:.0f} s vs {new['end_to_end_s']:.0f} s: **{s['dpo_speedup_over_stock']:.2f}x**",
            )
        )
    return rows


def section(results: dict, source: Path) -> str:
    """One CPU kind's block of the README: a heading naming the machine, then its table."""
    cpu = results["machine"]
    rel = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    kind = cpu.get("cpu_kind", "unknown")
    flags = " ".join(cpu.get("cpu_flags", []))
    head = (
        f"{KIND_MARK.format(kind)}\n**{kind}**: measured {results['date'][:10]} on {cpu['cpu_count']} cores "
        f"({cpu['cpu_model']}{', flags: ' + flags if flags else ''}), from `{rel}`:\n\n"
    )
    return head + table(results)


KIND_MARK = "<!-- bench:kind={} -->"


def update_readme(results: dict, source: Path, readme: Path = ROOT / "README.md") -> None:
    """Replace this CPU kind's block between the README's bench markers, keeping the other kinds' blocks."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme}: no {README_BEGIN} ... {README_END} markers to put the table between")
    head, rest = text.split(README_BEGIN, 1)
    body, tail = rest.split(README_END, 1)
    blocks: dict[str, str] = {}
    for part in body.split("<!-- bench:kind=")[1:]:
        kind, block = part.split(" -->", 1)
        blocks[kind] = KIND_MARK.format(kind) + block.rstrip("\n") + "\n"
    blocks[results["machine"].get("cpu_kind", "unknown")] = section(results, source)
    joined = "\n".join(blocks[k] for k in sorted(blocks))
    readme.write_text(head + README_BEGIN + "\n" + joined + README_END + tail)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma list of {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", default=None, help="default benchmarks/results/<date>-<cpu kind>.json")
    parser.add_argument("--readme", action="store_true", help="rewrite the README's benchmark table")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (have: {', '.join(BENCHMARKS)})")
    today = datetime.date.today().isoformat()
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine()}
    # the CPU kind in the name: one day's results from two kinds of machine must not overwrite each other
    kind = results["machine"].get("cpu_kind", "unknown")
    dest = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"{today}-{kind}.json"
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
