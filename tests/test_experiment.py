"""`alignment experiment`: arms, the stages they share, the results table (unit) and a tiny real experiment (e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import E2E_TINY, ROOT, alignment

from alignment.compare import difference_interval
from alignment.records import write_json, write_jsonl
from rounds.experiment import arm_configs, parse_arms, results_markdown, shared_stages, write_results

CONFIG = str(ROOT / "configs" / "default.yaml")


def test_arms_built_in_defined_and_wrong() -> None:
    arms = parse_arms("rs,random", ["beta05:dpo.beta=0.05", "beta05:dpo.epochs=2"])
    assert [(a.name, a.overrides) for a in arms] == [
        ("rs", ()),
        ("random", ("selection.strategy=random",)),
        ("beta05", ("dpo.beta=0.05", "dpo.epochs=2")),
    ]
    with pytest.raises(ValueError, match="unknown arm 'randm'.*--arm randm:key.path=value"):
        parse_arms("rs,randm", [])
    with pytest.raises(ValueError, match="expected NAME:key.path=value"):
        parse_arms("rs", ["dpo.beta=0.05"])
    with pytest.raises(ValueError, match="named twice"):
        parse_arms("rs,rs", [])
    with pytest.raises(ValueError, match="folder"):
        parse_arms("rs", ["a/b:dpo.beta=1"])


def test_arm_configs_share_stages_up_to_the_first_differing_section(tmp_path) -> None:
    arms = parse_arms("rs,random", ["beta05:dpo.beta=0.05", "k4:generation.num_candidates=4"])
    exp, cfgs = arm_configs(CONFIG, arms, [f"output_dir={tmp_path}"])
    assert exp == tmp_path / "experiment-default"
    assert {n: (c.name, c.output_dir, c.eval.max_items) for n, c in cfgs.items()} == {
        n: (n, str(exp), None) for n in ("rs", "random", "beta05", "k4")
    }
    assert cfgs["random"].selection.strategy == "random" and cfgs["rs"].selection.strategy == "rejection_sampling"
    before_select = ["prompts", "generate", "filter", "verify", "reward_model", "score"]
    assert shared_stages(cfgs["rs"], cfgs["random"]) == before_select
    assert shared_stages(cfgs["rs"], cfgs["beta05"]) == [*before_select, "select", "sft"]
    assert shared_stages(cfgs["rs"], cfgs["k4"]) == ["prompts"]
    # a bad arm override fails before anything runs, naming the key
    with pytest.raises(ValueError, match="selection.strategy"):
        arm_configs(CONFIG, parse_arms("rs", ["bad:selection.strategy=best"]), [f"output_dir={tmp_path}"])


def _fake_round(run: Path, k: int, model: dict[str, bool], start: dict[str, bool] | None = None) -> None:
    """Round ``k`` of a run with an eval of its model (and of the base, in round 1): item id -> correct."""
    rd = run / f"round-{k}"
    rd.mkdir(parents=True)

    def records(answers: dict[str, bool]) -> list[dict]:
        return [
            {
                "id": i,
                "capability": i.split("-")[0],
                "wording": "held_out" if int(i.split("-")[1]) % 2 else "seen",
                "correct": ok,
                "tokens": 10 if ok else 30,
                "finish_reason": "stop" if ok else "length",
            }
            for i, ok in answers.items()
        ]

    write_jsonl(records(model), rd / "eval_model.items.jsonl")
    if start is not None:
        write_jsonl(records(start), rd / "eval_start.items.jsonl")
    acc = {"math": {"accuracy": 0.0, "n": 1}}
    write_json(
        {
            "model": acc,
            "start": acc,
            "start_model": "base",
            "model_eval_file": f"round-{k}/eval_model.json",
            "start_eval_file": "round-1/eval_start.json",
        },
        rd / "eval.json",
    )


def test_results_table_holds_the_paired_intervals(tmp_path) -> None:
    exp = tmp_path / "experiment-x"
    ids = [f"math-{i}" for i in range(40)]
    base = {i: n < 10 for n, i in enumerate(ids)}  # 10 of 40 right
    rs = {i: n < 30 for n, i in enumerate(ids)}  # 30 of 40: 20 items flipped to right
    rand = {i: n < 12 for n, i in enumerate(ids)}  # 12 of 40
    _fake_round(exp / "rs", 1, rs, base)
    _fake_round(exp / "random", 1, rand, base)
    md = results_markdown(exp, ["rs", "random"], 1)
    d, lo, hi = difference_interval(
        [float(rs[i]) for i in ids], [float(base[i]) for i in ids], paired=True, confidence=0.95
    )
    assert d == 0.5 and lo > 0.25
    assert f"| rs | 1 | 0.750, {d:+.3f} [{lo:+.3f}, {hi:+.3f}] **↑** | 15 | 0.75 |" in md
    assert "| base | 0 | 0.250 | 25 | 0.25 |" in md
    d2, lo2, hi2 = difference_interval(
        [float(rand[i]) for i in ids], [float(rs[i]) for i in ids], paired=True, confidence=0.95
    )
    assert f"| random | 1 | {d2:+.3f} [{lo2:+.3f}, {hi2:+.3f}] **↓** |" in md
    # by wording: odd ids are held-out; rs got items 0..29 right, so held-out 15/20, seen 15/20
    assert "| rs | 1 | math | 0.750 |" in md
    out = write_results(exp, ["rs", "random"], 1, tmp_path / "docs" / "results.md")
    assert out.read_text() == md.rstrip("\n") + "\n\n![accuracy by round](results-accuracy.png)\n"
    assert (tmp_path / "docs" / "results-accuracy.png").stat().st_size > 5000


def test_results_without_a_finished_round_say_so(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no arm has a finished round"):
        results_markdown(tmp_path, ["rs"], 1)


@pytest.mark.e2e
def test_a_tiny_experiment_shares_round_one_and_writes_the_table(tmp_path) -> None:
    """Two arms, one round each, real stack: the random arm takes rs's generation and scores, runs select on."""
    out = tmp_path / "results.md"
    alignment(
        "experiment",
        "--config",
        CONFIG,
        "--arms",
        "rs,random",
        "--rounds",
        "1",
        "--out",
        str(out),
        f"output_dir={tmp_path}",
        "name=tiny",
        f"model.cache_dir={ROOT / '.cache' / 'models'}",
        *E2E_TINY,
        cwd=tmp_path,
    )
    exp = tmp_path / "experiment-tiny"
    manifest = json.loads((exp / "random" / "round-1" / "manifest.json").read_text())
    skipped = {name for name, st in manifest["stages"].items() if st["skipped"]}
    assert skipped == {"prompts", "generate", "filter", "verify", "reward_model", "score"}
    assert json.loads((exp / "random" / "round-1" / "selection.json").read_text())["strategy"] == "random"
    md = out.read_text()
    assert "| rs | 1 |" in md and "| random | 1 |" in md and "## Each arm against `rs`" in md
    assert (tmp_path / "results-accuracy.png").is_file()
