"""lm-evaluation-harness integration: the shipped task YAMLs, run_lm_eval_tasks on the tiny model, offline checks."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from alignment.harness import lm_eval_task_list, offline_hf, run_lm_eval_tasks, task_manager
from reward.verifiers import verify
from synth_data.lm_eval_tasks import TASKS_DIR, builtin_task_names, task_name_for, task_yamls
from synth_data.lm_eval_tasks.utils import item_to_doc, load_suite_dataset, process_results
from synth_data.suite_format import load_suite, write_suite
from synth_data.suites import builtin_eval_suite_paths

ROOT = Path(__file__).resolve().parent.parent


def _load(names: list[str]) -> dict:
    with offline_hf():
        return task_manager(include_defaults=False).load(names)


@pytest.fixture
def empty_datasets_cache(tmp_path, monkeypatch) -> Path:
    """An empty HF datasets cache, so no standard task's data is available whatever this machine has cached."""
    import datasets.config

    cache = tmp_path / "hf-datasets"
    cache.mkdir()
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def test_task_yamls_match_the_builtin_suites():
    """One generated YAML per built-in suite plus the group; regenerate with `python -m synth_data.lm_eval_tasks`."""
    expected = task_yamls()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in TASKS_DIR.glob("alignment_*.yaml")}
    assert on_disk == expected, "stale task YAMLs: run `python -m synth_data.lm_eval_tasks`"
    assert builtin_task_names() == [task_name_for(p) for p in builtin_eval_suite_paths()]
    assert {"alignment_math", "alignment_instruction"} <= set(builtin_task_names())


def test_yamls_load_through_task_manager(embedded_model_dir):
    from transformers import AutoTokenizer

    loaded = _load(["alignment_builtin"])
    assert list(loaded["tasks"]) == builtin_task_names()
    assert loaded["group_map"] == {"alignment_builtin": builtin_task_names()}
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)

    def chat(history, add_generation_prompt=True):
        return tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=add_generation_prompt)

    for path in builtin_eval_suite_paths():
        task = loaded["tasks"][task_name_for(path)]
        items = load_suite(path)
        docs = task.test_docs()
        assert len(docs) == len(items)
        assert task.OUTPUT_TYPE == "generate_until"
        assert task.config.generation_kwargs == {"until": [], "do_sample": False, "max_gen_toks": 256}
        assert task.config.num_fewshot == 0
        # the prompt is the item's conversation through the model's chat template, as `alignment eval` renders it
        context = task.fewshot_context(docs[0], 0, apply_chat_template=True, chat_template=chat)
        assert context == chat(items[0]["messages"])
        assert json.loads(docs[0]["item"]) == items[0]


def test_process_results_scores_with_our_verifier():
    math = {"id": "m", "capability": "math", "messages": [{"role": "user", "content": "2+3?"}], "answer": "5"}
    assert process_results(item_to_doc(math), ["The answer is 5."]) == {"acc": 1.0}
    assert process_results(item_to_doc(math), ["It is 6."]) == {"acc": 0.0}
    fmt = {
        "id": "f",
        "capability": "format",
        "messages": [{"role": "user", "content": "Say hi."}],
        "constraints": [{"type": "no_commas", "value": None}, {"type": "max_words", "value": 3}],
    }
    assert process_results(item_to_doc(fmt), ["Hi there."]) == {"acc": 1.0}
    assert process_results(item_to_doc(fmt), ["Hi, there."]) == {"acc": 0.0}


def test_any_suite_file_loads_system_prompt_kept_multi_turn_refused(tmp_path):
    items = [
        {
            "id": "s1",
            "capability": "style",
            "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name a color."}],
            "constraints": [{"type": "max_words", "value": 2}],
        }
    ]
    write_suite(items, tmp_path / "style.jsonl")
    doc = load_suite_dataset(str(tmp_path / "style.jsonl"), version=1.0, config_source="x")["test"][0]
    assert (doc["system"], doc["prompt"], doc["id"]) == ("Be terse.", "Name a color.", "s1")

    multi = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"},
    ]
    write_suite([{"id": "t1", "capability": "math", "messages": multi, "answer": "4"}], tmp_path / "multi.jsonl")
    with pytest.raises(ValueError, match=r"multi.jsonl: item 't1' has turns .*alignment eval --suite"):
        load_suite_dataset(str(tmp_path / "multi.jsonl"))


def test_run_builtin_on_tiny_model(tiny_model_dir, tmp_path):
    out = tmp_path / "lm_eval.json"
    summary = run_lm_eval_tasks(tiny_model_dir, ["builtin"], out, limit=2, max_new_tokens=8, batch_size=4)

    names = builtin_task_names()
    assert json.loads(out.read_text()) == summary
    assert list(summary) == names
    for name in names:
        assert 0.0 <= summary[name]["acc"] <= 1.0
        assert summary[name]["acc_stderr"] is not None
        assert summary[name]["n"] == 2

    records = [json.loads(line) for line in (tmp_path / "lm_eval.samples.jsonl").read_text().splitlines()]
    assert len(records) == 2 * len(names)
    items = {it["id"]: it for path in builtin_eval_suite_paths() for it in load_suite(path)[:2]}
    assert sorted(r["id"] for r in records) == sorted(items)
    for r in records:
        assert r["task"] in names and r["doc_id"] in (0, 1)
        assert r["score"] == r["metrics"]["acc"] == float(bool(verify(r["response"], items[r["id"]]).passed))
    for name in names:
        mean = sum(r["score"] for r in records if r["task"] == name) / 2
        assert summary[name]["acc"] == pytest.approx(mean)


def test_missing_standard_dataset_fails_before_the_model_loads(empty_datasets_cache, tmp_path):
    with pytest.raises(ValueError) as err:
        run_lm_eval_tasks("/nonexistent/model", ["builtin", "gsm8k"], tmp_path / "out.json", limit=2)
    msg = str(err.value)
    assert "gsm8k: needs HF dataset openai/gsm8k (config main)" in msg
    assert str(empty_datasets_cache) in msg and "HF_DATASETS_CACHE" in msg
    assert "network" in msg and "copy" in msg
    assert "alignment_math" not in msg  # our tasks' data is local
    assert not (tmp_path / "out.json").exists()


def test_offline_mode_is_restored_afterwards(monkeypatch):
    import datasets.config
    import huggingface_hub.constants as hub_constants

    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    before = (hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    with offline_hf():
        assert os.environ["HF_HUB_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == "1"
        assert hub_constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
    assert "HF_HUB_OFFLINE" not in os.environ and "HF_DATASETS_OFFLINE" not in os.environ
    assert before == (hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)


def _fake_gsm8k_cache(cache: Path, rows: int = 8) -> None:
    """Lay out a small openai/gsm8k ("main") the way datasets caches a hub dataset (offline reload path)."""
    import datasets
    from datasets.packaged_modules.json.json import Json

    src = cache.parent / "gsm8k-src"
    src.mkdir()
    for split in ("train", "test"):
        lines = [
            {"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(rows)
        ]
        (src / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    build = cache.parent / "build"
    builder = Json(
        cache_dir=str(build),
        dataset_name="gsm8k",
        config_name="main",
        data_files={s: str(src / f"{s}.jsonl") for s in ("train", "test")},
    )
    builder.download_and_prepare()
    prepared = next((build / "gsm8k").glob("main-*/0.0.0"))
    dest = cache / "openai___gsm8k" / "main" / "0.0.0" / "0123456789abcdef"
    dest.parent.mkdir(parents=True)
    shutil.move(str(prepared), str(dest))
    assert datasets.__version__.startswith("5.")  # the cache layout above is datasets 5's


def test_standard_task_runs_from_the_local_cache(empty_datasets_cache, tiny_model_dir, tmp_path):
    _fake_gsm8k_cache(empty_datasets_cache)
    out = tmp_path / "std.json"
    summary = run_lm_eval_tasks(tiny_model_dir, ["gsm8k"], out, limit=2)
    assert set(summary) == {"gsm8k"}
    assert summary["gsm8k"]["n"] == 2
    assert 0.0 <= summary["gsm8k"]["exact_match,strict-match"] <= 1.0
    records = [json.loads(line) for line in (tmp_path / "std.samples.jsonl").read_text().splitlines()]
    assert sorted((r["filter"], r["doc_id"]) for r in records) == [
        ("flexible-extract", 0),
        ("flexible-extract", 1),
        ("strict-match", 0),
        ("strict-match", 1),
    ]


def test_unknown_task_lists_close_names(tmp_path):
    with pytest.raises(ValueError) as err:
        run_lm_eval_tasks("/nonexistent/model", ["gsm9k", "alignment_maths"], tmp_path / "out.json")
    msg = str(err.value)
    assert "'gsm9k': did you mean gsm8k" in msg
    assert "'alignment_maths': did you mean alignment_math" in msg
    assert "lm_eval ls tasks" in msg


def test_task_list_argument():
    assert lm_eval_task_list("gsm8k, ifeval,gsm8k,builtin") == ["gsm8k", "ifeval", "builtin"]
    for bad in ("", " ", "gsm8k,,ifeval", "gsm8k,"):
        with pytest.raises(ValueError, match="comma-separated lm-eval task names"):
            lm_eval_task_list(bad)
    parser = argparse.ArgumentParser()
    parser.add_argument("--lm-eval-tasks", type=lm_eval_task_list)
    assert parser.parse_args(["--lm-eval-tasks", "builtin"]).lm_eval_tasks == ["builtin"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--lm-eval-tasks", "a,,b"])


def test_bad_arguments_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="backend must be one of hf, vllm"):
        run_lm_eval_tasks("m", ["builtin"], tmp_path / "o.json", backend="tgi")
    with pytest.raises(ValueError, match="limit must be a positive"):
        run_lm_eval_tasks("m", ["builtin"], tmp_path / "o.json", limit=0)


def test_lm_eval_cli_runs_our_task_from_the_repo_root(tiny_model_dir, tmp_path):
    """The documented command, as a user types it (about 20-30 s here: lm-eval indexes its ~14k tasks first)."""
    out_dir = tmp_path / "cli"
    cmd = [
        str(ROOT / ".venv" / "bin" / "lm_eval"),
        *("--model", "hf", "--model_args", f"pretrained={tiny_model_dir}"),
        *("--include_path", "synth_data/lm_eval_tasks", "--tasks", "alignment_math", "--limit", "2"),
        *("--apply_chat_template", "--output_path", str(out_dir)),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "alignment_math" in proc.stdout and "acc" in proc.stdout
    (results_file,) = out_dir.rglob("results_*.json")
    results = json.loads(results_file.read_text())["results"]["alignment_math"]
    assert 0.0 <= results["acc,none"] <= 1.0
