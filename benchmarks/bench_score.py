"""Benchmark reward-model scoring: candidates/s and tokens/s of the scorer the score stage uses.

    python benchmarks/bench_score.py [--candidates 256] [--batch-sizes 1,16] [--num-layers 8] [--out FILE]

The RM is the default one's shape: the embedded model's first ``--num-layers`` layers with a 1-logit head (its
weights do not change the speed, so it is built untrained). The candidates are the shipped eval suites' prompts with
replies of 10 to 150 words, drawn with a fixed seed, rendered with the chat template as the score stage does. Each
batch size scores the same set once after a warm-up batch. Writes benchmarks/results/score-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORDS = [
    "the",
    "model",
    "answers",
    "each",
    "question",
    "with",
    "a",
    "short",
    "clear",
    "reply",
    "that",
    "ends",
    "on",
    "a",
    "full",
    "sentence",
    "and",
    "stays",
    "on",
    "topic",
]


def candidates(n: int, seed: int = 0) -> list[list[dict]]:
    from alignment.evaluate import load_items

    rng = random.Random(seed)
    items = load_items(["builtin"])
    out = []
    for i in range(n):
        item = items[i % len(items)]
        reply = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 150))) + "."
        out.append([*item["messages"], {"role": "assistant", "content": reply}])
    return out


def build_rm(num_layers: int, folder: Path) -> str:
    import torch
    from transformers import AutoModelForSequenceClassification

    from alignment.models import load_chat_tokenizer, resolve_model

    base = resolve_model("embedded", ROOT / ".cache" / "models")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, num_hidden_layers=num_layers)
    model.save_pretrained(folder)
    load_chat_tokenizer(base).save_pretrained(folder)
    return str(folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=256)
    parser.add_argument("--batch-sizes", default="1,16")
    parser.add_argument("--num-layers", type=int, default=8)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import torch

    from alignment.hardware import hardware_record
    from reward.reward_model import RewardScorer

    convs = candidates(args.candidates)
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        rm = build_rm(args.num_layers, Path(tmp) / "rm")
        results, dtype = {}, None
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            scorer = RewardScorer(rm, device="cpu", batch_size=bs, max_length=384)
            dtype = scorer.dtype  # the policy's (reward_model.precision: auto): bf16 autocast only where native
            tokens = sum(len(scorer._encode(c)) for c in convs)
            scorer.score(convs[:bs])  # warm-up
            t0 = time.time()
            scores = scorer.score(convs)
            seconds = time.time() - t0
            assert len(scores) == len(convs)
            results[f"batch-{bs}"] = {
                "batch_size": bs,
                "seconds": round(seconds, 2),
                "candidates_per_s": round(len(convs) / seconds, 1),
                "tokens_per_s": round(tokens / seconds, 1),
                "tokens": tokens,
                "dtype": dtype,
            }
            print(json.dumps(results[f"batch-{bs}"]))
    result = {
        "benchmark": "scoring",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {**hardware_record(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "settings": {"candidates": args.candidates, "num_layers": args.num_layers, "dtype": dtype, "max_length": 384},
        "variants": results,
    }
    dest = Path(args.out or ROOT / "benchmarks" / "results" / f"score-{datetime.date.today().isoformat()}.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {dest}")


if __name__ == "__main__":
    main()
