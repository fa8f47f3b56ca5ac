"""Data-parallel generation (synth_data.parallel): prompts sharded over vLLM engines run as Ray tasks, merged by
prompt_id. The e2e test runs 2 single-core engines against 1 two-core engine on the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alignment.records import read_parquet, write_parquet
from synth_data.generate import CANDIDATE_SCHEMA
from synth_data.parallel import cpu_binding, merge_shards, shard_prompts

PROMPTS = [{"prompt_id": f"p{i}", "capability": "math"} for i in (3, 1, 4, 0, 5, 2, 6)]


def _rows(prompt_ids: list[str], k: int) -> list[dict]:
    return [{"prompt_id": p, "candidate_id": f"{p}#{j}", "text": f"{p} {j}"} for p in prompt_ids for j in range(k)]


def test_shards_are_balanced_by_prompt_id_and_independent_of_file_order():
    shards = shard_prompts(PROMPTS, 3)
    assert [[p["prompt_id"] for p in s] for s in shards] == [["p0", "p3", "p6"], ["p1", "p4"], ["p2", "p5"]]
    assert shard_prompts(PROMPTS[::-1], 3) == shards


def test_the_merged_file_is_the_same_bytes_whichever_shard_finishes_first(tmp_path):
    shards = [_rows([p["prompt_id"] for p in s], 3)[::-1] for s in shard_prompts(PROMPTS, 3)]  # any order within
    merged = merge_shards(PROMPTS, shards)
    assert [r["candidate_id"] for r in merged[:4]] == ["p3#0", "p3#1", "p3#2", "p1#0"]  # the prompts file's order
    files = []
    for order, name in ((shards, "a"), (shards[::-1], "b"), ([shards[1], shards[2], shards[0]], "c")):
        rows = [{c: r.get(c) for c in CANDIDATE_SCHEMA.names} for r in merge_shards(PROMPTS, order)]
        write_parquet(rows, tmp_path / f"{name}.parquet", schema=CANDIDATE_SCHEMA)
        files.append((tmp_path / f"{name}.parquet").read_bytes())
    assert files[0] == files[1] == files[2]


def test_a_lost_shard_is_an_error_not_a_smaller_file():
    shards = [_rows([p["prompt_id"] for p in s], 2) for s in shard_prompts(PROMPTS, 2)]
    with pytest.raises(RuntimeError, match="lost 3 prompts"):
        merge_shards(PROMPTS, shards[:1])


def test_cpu_engines_get_their_own_cores():
    assert [cpu_binding(i, 2, 2) for i in range(2)] == ["0", "1"]
    assert [cpu_binding(i, 2, 8) for i in range(2)] == ["0-3", "4-7"]


@pytest.mark.e2e
def test_two_single_core_engines_give_the_same_prompts_and_counts_as_one(embedded_model_dir, tmp_path):
    pytest.importorskip("ray")
    import subprocess
    import sys

    from alignment.jobs import child_env

    prompts = [
        {"prompt_id": f"math-{i}", "capability": "math", "messages": [{"role": "user", "content": f"What is {i} + 2?"}]}
        for i in range(5)
    ]
    write_parquet(prompts, tmp_path / "prompts.parquet")
    outs = {}
    for n in (1, 2):
        cfg = {
            "generation": {
                "num_candidates": 2, "max_new_tokens": 12, "adaptive_k": 0,
                "vllm": {"data_parallel_size": n, "kv_cache_gib": 1},
            }
        }  # fmt: skip
        (tmp_path / f"c{n}.yaml").write_text(yaml.safe_dump(cfg))
        out = tmp_path / f"candidates-{n}.parquet"
        cmd = [
            sys.executable,
            "-m",
            "synth_data.generate",
            "--config",
            str(tmp_path / f"c{n}.yaml"),
            "--model",
            embedded_model_dir,
            "--prompts",
            str(tmp_path / "prompts.parquet"),
            "--out",
            str(out),
        ]
        proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[n] = read_parquet(out)
    for n in (1, 2):
        assert [r["prompt_id"] for r in outs[n]] == [p["prompt_id"] for p in prompts for _ in range(2)]
        assert [r["candidate_id"].rsplit("#")[1] for r in outs[n]] == ["0", "1"] * 5
    stats = json.loads(Path(tmp_path / "candidates-2.stats.json").read_text())
    assert stats["data_parallel"] == 2 and [s["candidates"] for s in stats["shards"]] == [6, 4]
    assert stats["candidates"] == 10 and stats["output_tokens"] == sum(r["num_tokens"] for r in outs[2])


@pytest.mark.e2e
def test_eval_over_two_engines_keeps_every_item_in_suite_order(embedded_model_dir, tmp_path):
    """The eval path shards items over engines as generation shards prompts: same items, same order, one summary."""
    pytest.importorskip("ray")
    from alignment.evaluate import load_items, run_evals, summarize

    cfg = {"generation": {"vllm": {"data_parallel_size": 2, "kv_cache_gib": 1}}}
    (tmp_path / "dp2.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "eval.json"
    [summary] = run_evals([(embedded_model_dir, out)], ["builtin"], max_items=3, max_new_tokens=16,
                          config=str(tmp_path / "dp2.yaml"))  # fmt: skip
    items = load_items(["builtin"], 3)
    records = [json.loads(line) for line in (tmp_path / "eval.items.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [i["id"] for i in items]  # 9 items, the suites' order
    assert summary == summarize(records, 1) and {c: v["n"] for c, v in summary.items()} == {
        "format": 3,
        "instruction": 3,
        "math": 3,
    }
    assert all(r["tokens"] > 0 and r["finish_reason"] in ("stop", "length") for r in records)
    settings = json.loads((tmp_path / "eval.settings.json").read_text())
    assert settings["data_parallel"] == 2 and settings["items"] == 9
    shard_ids = [json.loads((tmp_path / "eval.shards" / f"job-{i}.json").read_text())["item_ids"] for i in (0, 1)]
    assert sorted(shard_ids[0] + shard_ids[1]) == sorted(i["id"] for i in items) and len(shard_ids[1]) == 4
