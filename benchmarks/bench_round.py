"""Benchmark a whole round: wall time per stage and peak memory of the whole process tree.

    python benchmarks/bench_round.py [--round 1] [--config configs/default.yaml] [--out FILE] [key=value ...]

Runs `alignment round N` into a fresh output folder (so nothing is skipped), samples the summed RSS of the runner
and every process it starts (vLLM's engine and worker processes included) every 0.2 s from /proc, and writes
benchmarks/results/round-<date>.json. Targets for the default config on 2 CPU cores: under 10 minutes, under 8 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_rss_bytes(pid: int) -> int:
    """Summed resident memory of ``pid`` and all its descendants."""
    total, stack = 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while stack:
        p = stack.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        stack += _children(p)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round", type=int, default=1)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--out", default=None, help="result JSON (default benchmarks/results/round-<date>.json)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    out_dir = Path(tempfile.mkdtemp(prefix="bench-round-"))
    cmd = [
        sys.executable,
        "-m",
        "alignment.cli",
        "round",
        str(args.round),
        "--config",
        args.config,
        f"output_dir={out_dir}",
        f"model.cache_dir={ROOT / '.cache' / 'models'}",
        *args.overrides,
    ]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_bytes(proc.pid))
        time.sleep(0.2)
    wall = time.time() - t0
    if proc.returncode != 0:
        sys.exit(f"round failed with exit code {proc.returncode}")
    manifest_path = next(out_dir.glob(f"*/round-{args.round}/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    result = {
        "benchmark": "round",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
        "machine": manifest["hardware"],  # CPU model, kind and flags
        "engines": {  # the dtype each engine actually ran with
            "generate": {k: manifest["stages"]["generate"]["metrics"].get(k) for k in ("backend", "device", "dtype")},
            **{
                s: manifest["stages"][s]["metrics"].get("dtype")
                for s in ("reward_model", "score", "sft", "dpo")
                if s in manifest["stages"]
            },
        },
        "command": " ".join(cmd),
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "stage_s": manifest["timings_s"],
        "generate": manifest["stages"]["generate"]["metrics"],
        "reward_model": {
            k: manifest["stages"]["reward_model"]["metrics"].get(k)
            for k in ("heldout_accuracy", "train_tokens_per_s", "train_s")
        },
        "score_candidates_per_s": manifest["stages"]["score"]["metrics"].get("candidates_per_s"),
        "counts": manifest["counts"],
        "eval": manifest["eval"],
        "targets": {"wall_s": 600, "peak_rss_gib": 8},
    }
    dest = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"round-{time.strftime('%Y-%m-%d')}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("wall_s", "peak_rss_gib", "stage_s")}, indent=2))
    print(f"written to {dest}")


if __name__ == "__main__":
    main()
