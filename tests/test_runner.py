"""The round runner's skip logic with fake stages: finished stages are skipped, a changed config section re-runs
its stage and every stage after it, and a stage that fails leaves no marker (and keeps what earlier stages wrote)."""

import json

import pytest

from alignment.config import load_config
from reward.reward_model import verifier_pairs
from rounds import runner


@pytest.fixture
def fake_stages(monkeypatch, tmp_path):
    calls: list[str] = []

    def make(name):
        def stage(rnd):
            calls.append(name)
            if name == "eval":
                (rnd.dir / "eval.json").write_text(json.dumps({"model": {}, "start": {}, "delta": {}}))
            for f in ("prompts.parquet", "candidates.parquet"):
                (rnd.dir / f).touch()
            return {"ran": name}

        return stage

    stages = [
        ("prompts", make("prompts"), ("prompts",)),
        ("generate", make("generate"), ("generation",)),
        ("sft", make("sft"), ("sft",)),
        ("eval", make("eval"), ("eval",)),
    ]
    monkeypatch.setattr(runner, "STAGES", stages)
    monkeypatch.setattr(runner, "resolve_model", lambda spec, cache_dir: str(tmp_path / "base"))
    monkeypatch.setattr(runner, "check_models", lambda cfg, start: None)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    return calls


def test_finished_stages_are_skipped_and_changes_rerun_downstream(fake_stages, tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "name=t"])
    runner.run_round(cfg, 1)
    assert fake_stages == ["prompts", "generate", "sft", "eval"]

    fake_stages.clear()
    manifest = runner.run_round(cfg, 1)
    assert fake_stages == [] and all(s["skipped"] for s in manifest["stages"].values())

    fake_stages.clear()
    runner.run_round(load_config(None, [f"output_dir={tmp_path}", "name=t", "generation.num_candidates=3"]), 1)
    assert fake_stages == ["generate", "sft", "eval"]  # prompts' key does not depend on generation


def test_force_redoes_the_stage_and_everything_after_it(fake_stages, tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "name=t"])
    runner.run_round(cfg, 1)
    fake_stages.clear()
    runner.run_round(cfg, 1, force=["generate"])
    assert fake_stages == ["generate", "sft", "eval"]
    fake_stages.clear()
    runner.run_round(cfg, 1, force=["eval", "sft"])
    assert fake_stages == ["sft", "eval"]
    with pytest.raises(ValueError, match=r"unknown stage 'sftt' \(stages: prompts, generate, sft, eval\)"):
        runner.run_round(cfg, 1, force=["sftt"])


def test_status_lists_rounds_stage_states_and_models(fake_stages, tmp_path):
    assert runner.format_status(runner.status(tmp_path / "nothing")) == "no runs found"
    cfg = load_config(None, [f"output_dir={tmp_path}", "name=t"])
    runner.run_round(cfg, 1)
    (tmp_path / "t" / "round-1" / "model").mkdir()
    (tmp_path / "t" / "round-2" / "stages").mkdir(parents=True)  # a round that never got going
    rows = runner.status(tmp_path)
    assert [(r["run"], r["round"], r["complete"]) for r in rows] == [("t", 1, True), ("t", 2, False)]
    assert rows[0]["model"] == str(tmp_path / "t" / "round-1" / "model") and rows[1]["model"] is None
    assert set(rows[0]["stages"]) == {"prompts", "generate", "sft", "eval"}
    assert all(v is None for v in rows[1]["stages"].values())
    text = runner.format_status(rows)
    assert "t  round 1  complete" in text and "t  round 2  incomplete" in text


def test_a_failing_stage_leaves_no_marker_and_keeps_earlier_outputs(fake_stages, monkeypatch, tmp_path):
    def boom(rnd):
        raise RuntimeError("training crashed")

    stages = list(runner.STAGES)
    stages[2] = ("sft", boom, ("sft",))
    monkeypatch.setattr(runner, "STAGES", stages)
    cfg = load_config(None, [f"output_dir={tmp_path}", "name=t"])
    with pytest.raises(RuntimeError, match="training crashed"):
        runner.run_round(cfg, 1)
    marks = {p.stem for p in (tmp_path / "t" / "round-1" / "stages").iterdir()}
    assert marks == {"prompts", "generate"}
    manifest = json.loads((tmp_path / "t" / "round-1" / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"prompts", "generate"}


def test_round_numbers_start_at_one():
    with pytest.raises(ValueError, match="start at 1"):
        runner.run_round(load_config(None), 0)


def test_verifier_pairs_pass_over_fail_same_prompt_only():
    prompts = {p: {"capability": "math", "messages": [{"role": "user", "content": p}]} for p in ("a", "b", "c")}

    def c(pid, j, text, verified):
        return {"prompt_id": pid, "candidate_id": f"{pid}#{j}", "text": text, "verified": verified}

    cands = [
        c("a", 0, "right", True),
        c("a", 1, "wrong", False),
        c("a", 2, "also wrong", False),
        c("a", 3, "ok", True),
        c("b", 0, "x", False),
        c("b", 1, "y", False),  # no pass: no pair
        c("c", 0, "same", True),
        c("c", 1, " same ", False),  # identical after whitespace: skipped
    ]
    pairs = verifier_pairs(prompts, cands, source="round-1")
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("right", "wrong"), ("ok", "also wrong")]
    assert all(p["messages"] == prompts["a"]["messages"] and p["source"] == "round-1" for p in pairs)
    assert pairs[0]["pair_id"] == "a#0>a#1"


def test_atomic_writes_keep_the_old_file_when_writing_fails(tmp_path):
    from alignment.records import atomic_path, read_json, write_json

    target = tmp_path / "out.json"
    write_json({"v": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("killed mid-write")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no stray temp file
