"""The round runner's skip logic with fake stages: finished stages are skipped, a changed config section re-runs
its stage and every stage after it, and a stage that fails leaves no marker (and keeps what earlier stages wrote)."""

import json
import shutil
from pathlib import Path

import pytest

from alignment.config import load_config
from reward.reward_model import verifier_pairs
from rounds import disk, runner
from rounds.layout import Manifest, ManifestError, Stage

# Per-item correctness of each model on a fake 20-item suite per capability: the base policy and each round's model.
# A test changes an entry to inject a regression.
QUALITY = {"base": {"math": 10, "instruction": 10}}


def _fake_eval(rnd, model_key: str, out) -> None:
    right = QUALITY.get(model_key, QUALITY["base"])
    items = [
        {"id": f"{cap}-{i}", "capability": cap, "correct": i < right[cap], "response": "", "reason": ""}
        for cap in ("math", "instruction")
        for i in range(20)
    ]
    (out.parent / f"{out.stem}.items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    out.write_text(json.dumps({cap: {"accuracy": right[cap] / 20, "n": 20} for cap in ("math", "instruction")}))


@pytest.fixture
def fake_stages(monkeypatch, tmp_path):
    """The runner with fake stages (prompts, generate, sft, eval) and the real gate and lineage."""
    from rounds import stages as real

    calls: list[str] = []
    QUALITY.clear()
    QUALITY["base"] = {"math": 10, "instruction": 10}

    def make(name):
        def stage(rnd):
            calls.append(name)
            if name == "sft":
                (rnd.dir / "model").mkdir(exist_ok=True)
                (rnd.dir / "model" / "weights").write_text(f"round {rnd.index}")
                for f in ("sft.parquet", "dpo.parquet"):
                    (rnd.dir / f).write_text(f"round {rnd.index}")
            if name == "eval":
                start_key = "base" if rnd.start_round is None else f"round-{rnd.start_round}"
                _fake_eval(rnd, f"round-{rnd.index}", rnd.dir / "eval_model.json")
                _fake_eval(rnd, start_key, rnd.dir / "eval_start.json")
                ev = {
                    "model": json.loads((rnd.dir / "eval_model.json").read_text()),
                    "start": json.loads((rnd.dir / "eval_start.json").read_text()),
                    "start_model": rnd.start_model,
                    "delta": {},
                    "model_eval_file": f"round-{rnd.index}/eval_model.json",
                    "start_eval_file": f"round-{rnd.index}/eval_start.json",
                }
                (rnd.dir / "eval.json").write_text(json.dumps(ev))
            for f in ("prompts.parquet", "candidates.parquet"):
                (rnd.dir / f).touch()
            return {"ran": name}

        return stage

    stages = [
        Stage("prompts", make("prompts"), ("prompts",), ("prompts.parquet",)),
        Stage("generate", make("generate"), ("generation",), ("candidates.parquet",)),
        Stage("sft", make("sft"), ("sft",), ("model", "sft.parquet", "dpo.parquet")),
        Stage("eval", make("eval"), ("eval",), ("eval.json",)),
        Stage("gate", real.gate, ("gate",), ("promotion.json",)),
    ]
    monkeypatch.setattr(runner, "STAGES", stages)
    monkeypatch.setattr(runner, "resolve_model", lambda spec, cache_dir: str(tmp_path / "base"))
    monkeypatch.setattr(runner, "check_models", lambda cfg, start: None)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    (tmp_path / "base" / "stages").mkdir()
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
    with pytest.raises(ValueError, match=r"unknown stage 'sftt' \(stages: prompts, generate, sft, eval, gate\)"):
        runner.run_round(cfg, 1, force=["sftt"])


def test_status_lists_rounds_stage_states_and_models(fake_stages, tmp_path):
    assert runner.format_status(runner.status(tmp_path / "nothing")) == "no runs found"
    cfg = load_config(None, [f"output_dir={tmp_path}", "name=t"])
    runner.run_round(cfg, 1)
    (tmp_path / "t" / "round-2" / "stages").mkdir(parents=True)  # a round that never got going
    rows = runner.status(tmp_path)
    assert [(r["run"], r["round"], r["complete"]) for r in rows] == [("t", 1, True), ("t", 2, False)]
    assert rows[0]["model"] == str(tmp_path / "t" / "round-1" / "model") and rows[1]["model"] is None
    assert set(rows[0]["stages"]) == {"prompts", "generate", "sft", "eval", "gate"}
    assert all(v is None for v in rows[1]["stages"].values())
    text = runner.format_status(rows)  # one line per round
    assert text.splitlines() == [
        "t  round 1  complete  eval instruction 0.500, math 0.500  promoted yes",
        "t  round 2  incomplete (0/5 stages)",
    ]
    verbose = runner.format_status(rows, verbose=True)
    assert "promoted     yes (no capability dropped more than its tolerance)" in verbose
    assert "    sft          done" in verbose


def test_gate_blocks_a_regressed_round_and_the_next_round_starts_from_the_last_promoted(fake_stages, tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "name=t"])
    QUALITY["round-1"] = {"math": 14, "instruction": 11}  # better than the base: promoted
    QUALITY["round-2"] = {"math": 5, "instruction": 12}  # injected regression: math 0.70 -> 0.25 on the same items
    QUALITY["round-3"] = {"math": 15, "instruction": 12}
    m3 = runner.run_round(cfg, 3)  # builds rounds 1 and 2 first
    run = tmp_path / "t"
    d1, d2, d3 = (json.loads((run / f"round-{n}" / "promotion.json").read_text()) for n in (1, 2, 3))
    assert d1["promoted"] and d3["promoted"]
    assert not d2["promoted"] and d2["capabilities"]["math"]["regressed"]
    assert not d2["capabilities"]["instruction"]["regressed"]
    assert d2["reasons"][0].startswith("math: 0.700 -> 0.250 (-0.450, CI [")
    assert d2["capabilities"]["math"]["flipped_to_wrong"] == [f"math-{i}" for i in range(5, 14)]
    # round 3 starts from round 1's model, the last promoted one, not from round 2's
    assert d2["next_start"] == str((run / "round-1" / "model").resolve())
    assert m3["start_model"] == d2["next_start"] and m3["parent_round"] == 1
    lineage = json.loads((run / "lineage.json").read_text())
    assert [(r["round"], r["parent"], r["promotion"]["promoted"]) for r in lineage["rounds"]] == [
        (1, "base", True),
        (2, "round-1", False),
        (3, "round-1", True),
    ]
    assert lineage["last_promoted"] == 3
    assert lineage["rounds"][2]["start_model_sha256"] == lineage["rounds"][0]["model_sha256"]
    assert set(lineage["rounds"][0]["data_sha256"]) == {"prompts", "candidates", "sft", "dpo"}
    round2_status = runner.format_status(runner.status(tmp_path), verbose=True).split("round 2")[1].split("round 3")[0]
    assert "promoted     NO (math: 0.700 -> 0.250" in round2_status


def test_a_small_drop_within_noise_or_tolerance_is_promoted(fake_stages, tmp_path):
    QUALITY["round-1"] = {"math": 8, "instruction": 10}  # -0.10, but 2 of 20 items: not significant
    cfg = load_config(None, [f"output_dir={tmp_path}", "name=t"])
    assert runner.run_round(cfg, 1)["promotion"]["promoted"]
    # with the point estimate alone, the same drop blocks promotion; a capability's own tolerance lets it pass
    strict = load_config(None, [f"output_dir={tmp_path}", "name=t", "gate.confidence=null"])
    assert not runner.run_round(strict, 1)["promotion"]["promoted"]
    lenient = load_config(
        None, [f"output_dir={tmp_path}", "name=t", "gate.confidence=null", "gate.tolerances={math: 0.1}"]
    )
    assert runner.run_round(lenient, 1)["promotion"]["promoted"]
    off = load_config(None, [f"output_dir={tmp_path}", "name=t", "gate.confidence=null", "gate.enabled=false"])
    assert runner.run_round(off, 1)["promotion"]["reasons"] == ["gate disabled (gate.enabled=false)"]


def test_gate_settings_are_checked_before_any_stage(fake_stages, tmp_path):
    from alignment.config import ConfigError

    for bad, msg in [("gate.tolerance=5", "gate.tolerance"), ("gate.confidence=1.5", "gate.confidence")]:
        with pytest.raises(ConfigError, match=msg):
            runner.run_round(load_config(None, [f"output_dir={tmp_path}", "name=t", bad]), 1)
    assert fake_stages == []


def test_a_failing_stage_leaves_no_marker_and_keeps_earlier_outputs(fake_stages, monkeypatch, tmp_path):
    def boom(rnd):
        raise RuntimeError("training crashed")

    stages = list(runner.STAGES)
    stages[2] = Stage("sft", boom, ("sft",))
    monkeypatch.setattr(runner, "STAGES", stages)
    cfg = load_config(None, [f"output_dir={tmp_path}", "name=t"])
    with pytest.raises(RuntimeError, match="training crashed"):
        runner.run_round(cfg, 1)
    marks = {p.stem for p in (tmp_path / "t" / "round-1" / "stages").glob("*.json")}
    assert marks == {"prompts", "generate"}
    assert (tmp_path / "t" / "round-1" / "stages" / "sft.started").is_file()  # what its resume state belongs to
    manifest = json.loads((tmp_path / "t" / "round-1" / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"prompts", "generate"}
    # the failure and its reason are recorded, and status tells it apart from a round that is merely incomplete
    assert manifest["error"] == {"stage": "sft", "message": "RuntimeError: training crashed"}
    assert runner.format_status(runner.status(tmp_path)) == "t  round 1  failed in sft: RuntimeError: training crashed"


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


# --- what a stage's key is made of (issue 15): content, not paths; resume state tied to the key -----------------


def _tiny_stages(
    monkeypatch, tmp_path, calls: list[str], *, dpo_crash: list[bool] | None = None, report_code=(), seen=None
):
    """prompts (reads the configured prompt files) -> sft (writes sft/) -> dpo (resumable: a checkpoint in
    work/dpo) -> eval -> gate -> report; every stage appends ``round:name`` to ``calls``."""
    from rounds import keys
    from rounds import stages as real

    sft_runs: list[int] = []
    seen = [] if seen is None else seen

    def make(name):
        def run(rnd):
            calls.append(f"{rnd.index}:{name}")
            if name == "prompts":
                text = "".join(Path(p).read_text() for p in keys.prompt_files(rnd.cfg))
                (rnd.dir / "prompts.parquet").write_text(text)
                (rnd.dir / "candidates.parquet").write_text(text)
            if name == "sft":
                (rnd.dir / "sft").mkdir(exist_ok=True)
                sft_runs.append(rnd.index)  # a redone SFT gives other weights (as real training may)
                (rnd.dir / "sft" / "weights").write_text(f"{rnd.cfg.sft.learning_rate} {len(sft_runs)}")
                for f in ("sft.parquet", "dpo.parquet"):
                    (rnd.dir / f).write_text("rows")
            if name == "dpo":
                work = rnd.dir / "work" / "dpo"
                resumed = (work / "checkpoint-1").is_dir()
                calls.append(f"{rnd.index}:dpo resumed" if resumed else f"{rnd.index}:dpo fresh")
                (work / "checkpoint-1").mkdir(parents=True, exist_ok=True)
                if dpo_crash and dpo_crash.pop(0):
                    raise RuntimeError("killed during DPO")
                shutil.copytree(rnd.dir / "sft", rnd.dir / "model", dirs_exist_ok=True)
            if name == "report":  # what the real report reads, as the runner has written it by now
                seen.append(Manifest.from_dict(json.loads((rnd.dir / "manifest.json").read_text())))
            if name == "eval":
                _fake_eval(rnd, f"round-{rnd.index}", rnd.dir / "eval_model.json")
                _fake_eval(rnd, "base", rnd.dir / "eval_start.json")
                ev = {"model": {}, "start": {}, "start_model": rnd.start_model, "delta": {}}
                ev |= {"model_eval_file": f"round-{rnd.index}/eval_model.json"}
                ev |= {"start_eval_file": f"round-{rnd.index}/eval_start.json"}
                (rnd.dir / "eval.json").write_text(json.dumps(ev))
            return {}

        return run

    stages = [
        Stage("prompts", make("prompts"), ("prompts",), ("prompts.parquet",), files=keys.prompt_files),
        Stage("sft", make("sft"), ("sft",), ("sft",)),
        Stage("dpo", make("dpo"), ("dpo",), ("model",)),
        Stage("eval", make("eval"), ("eval",), ("eval.json",)),
        Stage("gate", real.gate, ("gate",), ("promotion.json",)),
        Stage("report", make("report"), code=report_code),
    ]
    monkeypatch.setattr(runner, "STAGES", stages)
    monkeypatch.setattr(runner, "resolve_model", lambda spec, cache_dir: str(tmp_path / "base"))
    monkeypatch.setattr(runner, "check_models", lambda cfg, start: None)
    (tmp_path / "base").mkdir(exist_ok=True)
    (tmp_path / "base" / "config.json").write_text("{}")


def _cfg(tmp_path, *overrides):
    prompts = tmp_path / "my_prompts.jsonl"
    if not prompts.exists():
        prompts.write_text('{"id": "a", "capability": "chat", "prompt": "Hello?"}\n')
    return load_config(None, [f"output_dir={tmp_path / 'runs'}", "name=t", f"prompts.files=[{prompts}]", *overrides])


def test_a_prompts_file_edited_in_place_reruns_prompts_and_everything_after(monkeypatch, tmp_path):
    calls: list[str] = []
    _tiny_stages(monkeypatch, tmp_path, calls)
    runner.run_round(_cfg(tmp_path), 1)
    calls.clear()
    runner.run_round(_cfg(tmp_path), 1)
    assert calls == []  # same path, same content: everything skipped
    (tmp_path / "my_prompts.jsonl").write_text('{"id": "a", "capability": "chat", "prompt": "Hello there?"}\n')
    runner.run_round(_cfg(tmp_path), 1)
    assert calls == ["1:prompts", "1:sft", "1:dpo", "1:dpo fresh", "1:eval", "1:report"]


def test_a_model_folder_edited_in_place_reruns_the_round(monkeypatch, tmp_path):
    calls: list[str] = []
    _tiny_stages(monkeypatch, tmp_path, calls)
    runner.run_round(_cfg(tmp_path), 1)
    calls.clear()
    (tmp_path / "base" / "config.json").write_text('{"hidden_size": 8}')  # same path, other weights
    runner.run_round(_cfg(tmp_path), 1)
    assert calls[0] == "1:prompts" and "1:report" in calls


def test_forcing_sft_after_a_killed_dpo_starts_dpo_fresh(monkeypatch, tmp_path):
    calls: list[str] = []
    _tiny_stages(monkeypatch, tmp_path, calls, dpo_crash=[True, True, False, True, False])
    with pytest.raises(RuntimeError, match="killed during DPO"):
        runner.run_round(_cfg(tmp_path), 1)
    # the same command again: same key, so DPO resumes its own checkpoint
    with pytest.raises(RuntimeError, match="killed during DPO"):
        runner.run_round(_cfg(tmp_path), 1)
    assert calls[-1] == "1:dpo resumed"
    # --force sft: SFT is redone, and DPO must not continue the old LoRA/optimizer state on the new SFT model
    runner.run_round(_cfg(tmp_path), 1, force=["sft"])
    assert calls[-5:] == ["1:sft", "1:dpo", "1:dpo fresh", "1:eval", "1:report"]
    # a changed SFT config after a killed DPO: DPO's key changes with SFT's output, so it starts fresh too
    with pytest.raises(RuntimeError, match="killed during DPO"):
        runner.run_round(_cfg(tmp_path, "dpo.beta=0.2"), 1)
    calls.clear()
    runner.run_round(_cfg(tmp_path, "dpo.beta=0.2", "sft.learning_rate=0.001"), 1)
    assert calls[:3] == ["1:sft", "1:dpo", "1:dpo fresh"]
    assert not (tmp_path / "runs" / "t" / "round-1" / "work" / "dpo").exists()  # cleared once finished


def test_redoing_an_earlier_round_reruns_the_rounds_built_on_it(monkeypatch, tmp_path):
    calls: list[str] = []
    _tiny_stages(monkeypatch, tmp_path, calls)
    runner.run_round(_cfg(tmp_path), 2)
    calls.clear()
    runner.run_round(_cfg(tmp_path), 1, force=["sft"])  # round 1's SFT output changes (its weights count runs)
    runner.run_round(_cfg(tmp_path), 2)
    assert "2:prompts" in calls and "2:report" in calls  # round 2 read round 1's files: not skipped on stale data


def test_editing_a_stage_only_code_file_reruns_that_stage_alone(monkeypatch, tmp_path):
    from rounds import keys

    root = tmp_path / "src"
    for rel in ("alignment/core.py", "rounds/report/page.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x = 1\n")
    monkeypatch.setattr(keys, "ROOT", root)
    calls: list[str] = []
    _tiny_stages(monkeypatch, tmp_path, calls, report_code=("rounds/report",))
    runner.run_round(_cfg(tmp_path), 1)
    calls.clear()
    (root / "rounds" / "report" / "page.py").write_text("x = 2\n")
    runner.run_round(_cfg(tmp_path), 1)
    assert calls == ["1:report"]
    calls.clear()
    (root / "alignment" / "core.py").write_text("x = 2\n")  # pipeline code: every stage runs again
    runner.run_round(_cfg(tmp_path), 1)
    assert calls[0] == "1:prompts" and calls[-1] == "1:report"


def test_a_library_upgrade_reruns_the_stages(monkeypatch, tmp_path):
    from rounds import keys

    calls: list[str] = []
    _tiny_stages(monkeypatch, tmp_path, calls)
    runner.run_round(_cfg(tmp_path), 1)
    calls.clear()
    monkeypatch.setattr(keys, "library_versions", lambda: {"trl": "99.0"})
    runner.run_round(_cfg(tmp_path), 1)
    assert calls[0] == "1:prompts"


def test_the_report_reads_the_manifest_the_runner_writes(monkeypatch, tmp_path):
    """The report read the manifest's ``wall_s`` after the runner renamed it: the row vanished and no test failed.
    The report stage now reads a typed view, checked on load, of the manifest as it stands when the report runs."""
    calls: list[str] = []
    seen: list[Manifest] = []
    _tiny_stages(monkeypatch, tmp_path, calls, seen=seen)
    runner.run_round(_cfg(tmp_path), 1)
    (view,) = seen
    assert list(view.stages) == ["prompts", "sft", "dpo", "eval", "gate"]  # every stage before the report
    assert view.stages_total_s == pytest.approx(sum(view.timings_s.values()), abs=0.2)
    raw = json.loads((tmp_path / "runs" / "t" / "round-1" / "manifest.json").read_text())
    assert Manifest.from_dict(raw).stages["report"].outputs == {}
    assert Manifest.from_dict(raw).code_version == raw["code_version"] and len(raw["code_version"]) == 16
    raw["wall_s"] = raw.pop("stages_total_s")  # a rename in the runner ...
    with pytest.raises(ManifestError, match="no 'stages_total_s'"):  # ... fails the reader, naming the field
        Manifest.from_dict(raw)


MB = 1_000_000


# A round on a disk too full for it stops before any stage runs, naming the folder and the sizes.
def test_a_full_disk_stops_the_round_before_any_stage(fake_stages, tmp_path, monkeypatch):
    _disk_model(tmp_path / "policy", 40 * MB, "float32")
    monkeypatch.setattr(runner, "resolve_model", lambda spec, cache_dir: str(tmp_path / "policy"))
    monkeypatch.setattr(disk, "free_bytes", lambda path: 60 * MB)
    cfg = load_config(None, [f"output_dir={tmp_path}", "name=t"])
    # fake stages: only "sft" writes a model: 40 MB, its LoRA checkpoint 4 MB counted twice, a tenth more: 52.8 MB
    runner.run_round(cfg, 1)
    assert fake_stages == ["prompts", "generate", "sft", "eval"]  # (the gate is the real one)
    fake_stages.clear()
    # round 2 starts from round 1's (tiny, fake) model; with 1 MB free, nothing runs and the folder is named
    monkeypatch.setattr(disk, "free_bytes", lambda path: 1 * MB)
    monkeypatch.setattr(runner, "start_model_for", lambda cfg, index: (str(tmp_path / "policy"), None))
    match = r"not enough disk for .*round-2: 0\.00 GB free, .* need about 0\.05 GB \(sft 0\.04 GB \(\+0\.00 GB"
    with pytest.raises(disk.DiskSpaceError, match=match):
        runner.run_round(cfg, 2)
    assert fake_stages == []
    assert not list((tmp_path / "t" / "round-2" / "stages").glob("*.json"))
    # ... and `alignment status` can tell why: the manifest names the stage that did not start
    error = json.loads((tmp_path / "t" / "round-2" / "manifest.json").read_text())["error"]
    assert error["stage"] == "prompts" and error["message"].startswith("DiskSpaceError: not enough disk")
    # round 1 is finished: running it again is not refused, however full the disk
    runner.run_round(cfg, 1)
    assert fake_stages == []
    # a changed SFT config makes its marker stale: SFT and what follows must run, so the disk is checked again
    changed = load_config(None, [f"output_dir={tmp_path}", "name=t", "sft.learning_rate=1e-4"])
    with pytest.raises(disk.DiskSpaceError, match="round-1: 0.00 GB free"):
        runner.run_round(changed, 1)
    assert fake_stages == []
    assert json.loads((tmp_path / "t" / "round-1" / "stages" / "sft.json").read_text())["key"]  # kept


def test_the_cli_says_it_in_one_line(fake_stages, tmp_path, monkeypatch, capsys):
    from alignment import cli

    _disk_model(tmp_path / "policy", 40 * MB, "float32")
    monkeypatch.setattr(runner, "resolve_model", lambda spec, cache_dir: str(tmp_path / "policy"))
    monkeypatch.setattr(disk, "free_bytes", lambda path: 1 * MB)
    monkeypatch.setattr("sys.argv", ["alignment", "round", "1", f"output_dir={tmp_path}", "name=t"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: not enough disk for ") and "no stage was started" in err
    assert fake_stages == []


def _disk_model(path: Path, size: int, dtype: str) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"dtype": dtype}))
    (path / "model.safetensors").write_bytes(b"\0" * size)
    return path
