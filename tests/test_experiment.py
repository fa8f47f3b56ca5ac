"""`alignment experiment`: arms, the stages they share, the results table (unit) and a tiny real experiment (e2e)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import E2E_TINY, ROOT, alignment

from alignment.compare import difference_interval
from alignment.records import write_json, write_jsonl
from rounds.experiment import (
    arm_configs,
    parse_arms,
    results_markdown,
    seed_round_one,
    seed_start_eval,
    shared_stages,
    write_results,
)

CONFIG = str(ROOT / "configs" / "default.yaml")


def test_arms_built_in_defined_and_wrong() -> None:
    arms = parse_arms("rs,random,sft_only", ["beta05:dpo.beta=0.05", "beta05:dpo.epochs=2"])
    assert [(a.name, a.overrides) for a in arms] == [
        ("rs", ()),
        ("random", ("selection.strategy=random",)),
        ("sft_only", ("dpo.enabled=false",)),
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


def test_make_experiments_arms_are_defined_and_load(tmp_path) -> None:
    """The arms ``make experiment`` runs (the Makefile's ARMS and ARM_DEFS) are all defined, and every arm's config
    loads and passes the training checks: a typo there would cost the hour-long run its first arm, or worse, its last.
    The seed arms pair with their control at each seed, the draws are draws of the seed-0 control."""
    import re
    import shlex

    from alignment.config import config_to_dict
    from rounds.experiment import control_draws, seed_pairs

    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    names = re.search(r"^ARMS\s*\?=\s*(\S+)", makefile, re.M).group(1)
    words = shlex.split(re.search(r"^ARM_DEFS\s*\?=(.*)$", makefile, re.M).group(1))
    definitions = [w for flag, w in zip(words, words[1:], strict=False) if flag == "--arm"]
    arms = parse_arms(names, definitions)
    _, cfgs = arm_configs(CONFIG, arms, [f"output_dir={tmp_path}"])
    configs = {name: config_to_dict(cfg) for name, cfg in cfgs.items()}
    groups, _ = control_draws(configs)
    assert sorted(map(sorted, groups)) == [["random", "random_b", "random_c"]]
    pairs, left_out = seed_pairs(configs)
    assert left_out == {}
    assert pairs == [[(0, "rs", "random"), (1, "rs_s1", "random_s1"), (2, "rs_s2", "random_s2")]]


def _fake_round(
    run: Path, k: int, model: dict[str, bool], start: dict[str, bool] | None = None, identity: dict | None = None
) -> None:
    """Round ``k`` of a run with an eval of its model (and of the base, in round 1): item id -> correct. Odd item
    numbers are held-out wordings, even ones seen. ``identity``: the eval identity its eval.json records."""
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
            **({"identity": identity} if identity is not None else {}),
        },
        rd / "eval.json",
    )


def _interval(new: dict, old: dict, ids: list[str]) -> str:
    d, lo, hi = difference_interval(
        [float(new[i]) for i in ids], [float(old[i]) for i in ids], paired=True, confidence=0.95
    )
    mark = " **↑**" if lo > 0 else " **↓**" if hi < 0 else ""
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark}"


def test_results_table_holds_the_paired_intervals(tmp_path) -> None:
    exp = tmp_path / "experiment-x"
    ids = [f"math-{i}" for i in range(40)]
    odd, even = ids[1::2], ids[0::2]
    base = {i: n < 10 for n, i in enumerate(ids)}  # 10 of 40 right
    base_b = {i: n < 10 or i == "math-39" for n, i in enumerate(ids)}  # the random arm's own base eval: 1 flip
    rs = {i: n < 30 for n, i in enumerate(ids)}  # 30 of 40
    rand = {i: n < 12 or (n % 2 == 0 and n < 36) for n, i in enumerate(ids)}  # more gain on seen (even) items
    _fake_round(exp / "rs", 1, rs, base)
    _fake_round(exp / "random", 1, rand, base_b)
    md = results_markdown(exp, ["rs", "random"], 1)
    assert f"| rs | 1 | 0.750, {_interval(rs, base, ids)} | 15 | 0.75 |" in md
    assert "| base | 0 | 0.250 | 25 | 0.25 |" in md
    assert "(source and library versions, as in the stage keys): unrecorded." in md  # these rounds have no manifest
    # each arm against its own eval of the base model
    acc = sum(rand.values()) / 40
    assert f"| random | 1 | {acc:.3f}, {_interval(rand, base_b, ids)} |" in md
    assert _interval(rand, base_b, ids) != _interval(rand, base, ids)
    assert f"| random | 1 | {_interval(rand, rs, ids)} |" in md
    assert (
        "items whose verdict differs from `rs`'s base eval (engine nondeterminism, or an arm that changes the eval): random 1."
        in md
    )
    # by wording: held-out (odd) and seen (even) items apart, with the gap between the two gains
    held, seen = _interval(rand, base_b, odd), _interval(rand, base_b, even)
    row = next(line for line in md.splitlines() if line.startswith("| random | 1 | math |"))
    assert held != seen and f"| {held} |" in row and f"| {seen} |" in row
    assert row.index(held) < row.index(seen)
    gap_cell = row.rstrip(" |").rsplit("| ", 1)[1]
    assert gap_cell.startswith("-") and gap_cell.endswith("**↓**"), row
    out = write_results(exp, ["rs", "random"], 1, tmp_path / "docs" / "results.md")
    assert out.read_text() == md.rstrip("\n") + "\n\n![accuracy by round](results-accuracy.png)\n"
    assert (tmp_path / "docs" / "results-accuracy.png").stat().st_size > 5000


def test_the_rounds_table_counts_no_dpo_pair_for_an_arm_that_skipped_dpo(tmp_path) -> None:
    exp = tmp_path / "experiment-x"
    answers = {f"math-{i}": i < 5 for i in range(10)}
    counts = {"verified": 10, "passed": 5, "unverifiable": 0, "pass_rate": 0.5}
    selection = {
        "prompts": 10,
        "sft": {"kept": 4},
        "dpo": {"kept": 3},
        "candidates_by_capability": {"math": 10},
        "verifier": {"math": counts},
        "rm_pass_over_fail_auc": {},
    }
    for arm, dpo in (("rs", {"main": {"train_s": 1.0}}), ("sft_only", {"skipped": "dpo.enabled is false", "pairs": 0})):
        _fake_round(exp / arm, 1, answers, answers)
        rd = exp / arm / "round-1"
        write_json(selection, rd / "selection.json")
        stages = {"dpo": {"key": "k", "duration_s": 1.0, "metrics": dpo}}
        manifest = {"round": 1, "run": arm, "start_model": "base", "stages": stages, "timings_s": {}}
        write_json({**manifest, "stages_total_s": 1.0, "code_version": "c"}, rd / "manifest.json")
    md = results_markdown(exp, ["rs", "sft_only"], 1)
    assert "| rs | 1 | 4 | 3 |" in md
    assert "| sft_only | 1 | 4 | 0 of 3 (DPO skipped) |" in md  # selected, never trained on


def test_rounds_scored_by_another_eval_than_the_base_are_named(tmp_path) -> None:
    """A round evaluated with other suites, settings or code (a run resumed after an edit) is paired against a base
    eval made with other verifiers or items: the table names it and what differs, and says so when all agree."""
    exp = tmp_path / "experiment-x"
    answers = {f"math-{i}": i < 5 for i in range(10)}
    same = {"suites": {}, "settings": {"eval": {"max_items": None}, "seed": 0}, "code": "aaaa"}
    for k in (1, 2):
        _fake_round(exp / "rs", k, answers, answers if k == 1 else None, identity=same)
    _fake_round(exp / "random", 1, answers, answers, identity=same)
    md = results_markdown(exp, ["rs", "random"], 2)
    assert "Eval identity (suites, eval settings, code): the same in every round, the base eval's." in md
    _fake_round(exp / "random", 2, answers, identity={**same, "code": "bbbb"})
    _fake_round(exp / "rs", 3, answers, identity={**same, "settings": {"eval": {"max_items": 60}, "seed": 0}})
    _fake_round(exp / "rs", 4, answers)  # made before evals recorded their identity
    short = {**same, "settings": {"eval": {"max_new_tokens": 64}, "seed": 0}}  # an arm that changes the eval
    for k in (1, 2):
        _fake_round(exp / "short", k, answers, answers if k == 1 else None, identity=short)
    _fake_round(exp / "old", 1, answers, answers)  # its base eval recorded no identity
    _fake_round(exp / "old", 2, answers, identity=same)
    md = results_markdown(exp, ["rs", "random", "short", "old"], 4)
    assert (
        "Eval identity (suites, eval settings, code): **differs from its arm's base eval** in rs round 3 (settings), "
        "random round 2 (code): those rows compare evals made with other verifiers, items or settings; "
        "**differs from `rs`'s** for the arm(s) short (settings): their rows against `rs` compare evals made "
        "differently; not compared in rs round 4, old round 1, old round 2 (that eval or its arm's round-1 eval "
        "recorded no identity: made before evals recorded it)." in md
    )


def test_control_draws_that_differ_only_in_their_seed_are_compared_with_each_other(tmp_path) -> None:
    """Arms that differ only in ``selection.random_seed`` are draws of one control: the table pairs every two of them,
    round by round, and names the largest difference per capability, the spread of the draw alone; an arm that
    differs in anything else (``rs``, ``k2``) is not in it."""
    import yaml

    exp = tmp_path / "experiment-x"
    ids = [f"math-{i}" for i in range(40)]
    base = {i: n < 10 for n, i in enumerate(ids)}
    draws = {
        "rs": ({}, {i: n < 30 for n, i in enumerate(ids)}),
        "random": ({"strategy": "random"}, {i: n < 20 for n, i in enumerate(ids)}),
        "random_b": ({"strategy": "random", "random_seed": 1000}, {i: n < 26 for n, i in enumerate(ids)}),
        "random_c": ({"strategy": "random", "random_seed": 2000}, {i: n < 18 for n, i in enumerate(ids)}),
        "k2": ({"strategy": "random", "random_seed": 3000}, {i: n < 22 for n, i in enumerate(ids)}),
        "random_0": ({"strategy": "random", "random_seed": 0}, {i: n < 20 for n, i in enumerate(ids)}),
        "k2_b": ({"strategy": "random", "random_seed": 4000}, {i: n < 23 for n, i in enumerate(ids)}),
    }
    for arm, (selection, answers) in draws.items():
        _fake_round(exp / arm, 1, answers, base)
        generation = {"num_candidates": 2 if arm.startswith("k2") else 6}
        config = {"name": arm, "seed": 0, "selection": {"strategy": "rejection_sampling", **selection}}
        if arm == "random_b":
            config["output_dir"] = "moved/elsewhere"  # where the run folder was when it ran: not a setting
        (exp / arm / "round-1" / "config.yaml").write_text(yaml.safe_dump({**config, "generation": generation}))
    md = results_markdown(exp, list(draws), 1)
    section = md.split("## Draws of one control against each other", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    b, r, c = draws["random_b"][1], draws["random"][1], draws["random_c"][1]
    assert rows == [
        f"| random_b - random | 1 | {_interval(b, r, ids)} |",
        f"| random_c - random | 1 | {_interval(c, r, ids)} |",
        f"| random_c - random_b | 1 | {_interval(c, b, ids)} |",
        f"| k2_b - k2 | 1 | {_interval(draws['k2_b'][1], draws['k2'][1], ids)} |",
    ]
    # one line per control: random_c - random_b is -8/40; k2_b - k2 +1/40
    assert "Largest difference between two draws of random, random_b, random_c (round 1): math 0.200." in section
    assert "Largest difference between two draws of k2, k2_b (round 1): math 0.025." in section
    # random_seed 0 is the run's seed: the same draw as `random`, not another one
    assert "`random_0` draws with the seed of `random` (the same draw): left out." in section
    assert "| rs" not in section
    (exp / "random_c" / "round-1" / "config.yaml").unlink()  # a run without its config: left out, not guessed
    section = results_markdown(exp, list(draws), 1).split("## Draws of one control", 1)[1].split("\n## ", 1)[0]
    assert "random_b - random |" in section and "random_c" not in section


def _table_rows(section: str) -> tuple[list[str], list[str]]:
    """A seed-paired section's rows: the all-items table's and the held-out wordings' (headers left out)."""
    tables = section.split("Held-out wordings only", 1) + [""]

    def rows(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| comparison |")]

    return rows(tables[0]), rows(tables[1])


def test_the_ranking_against_its_control_seed_by_seed_folds_the_seed_spread_into_the_interval(tmp_path) -> None:
    """Ranked arms and control arms that differ only in ``selection.strategy`` are paired seed by seed (``seed``: the
    run's generation, training and eval seed): the table gives the mean of the per-seed paired differences (ranked
    minus control), with an interval that covers the choice of the items and of the seed: seeds that disagree beyond
    their item noise widen it. A control drawn with its own ``selection.random_seed`` is another draw, not the seed's
    control; an arm without a partner at its seed, or at a single seed, gets no row."""
    import yaml

    exp = tmp_path / "experiment-x"
    ids = [f"math-{i}" for i in range(40)]
    base = {i: n < 10 for n, i in enumerate(ids)}
    arms = {  # name: (seed, selection, items right, K)
        "rs": (0, {}, 30, 6),
        "random": (0, {"strategy": "random"}, 20, 6),
        "random_b": (0, {"strategy": "random", "random_seed": 1000}, 40, 6),
        "rs_s1": (1, {}, 28, 6),
        "random_s1": (1, {"strategy": "random"}, 22, 6),
        "rs_s2": (2, {}, 25, 6),
        "random_s2": (2, {"strategy": "random"}, 24, 6),
        "rm_rank": (0, {"rank_verified_by": "reward_model"}, 35, 6),  # no control of its own
        "k2": (0, {}, 30, 2),
        "k2_random": (0, {"strategy": "random"}, 20, 2),
        "k2_s1": (1, {}, 30, 2),
        "k2_random_s1": (1, {"strategy": "random"}, 20, 2),
        "k4": (0, {}, 30, 4),  # a pair at one seed only
        "k4_random": (0, {"strategy": "random"}, 20, 4),
        "random_s1_again": (1, {"strategy": "random", "random_seed": 1}, 10, 6),  # the seed's draw again
    }
    for arm, (seed, selection, right, k) in arms.items():
        _fake_round(exp / arm, 1, {i: n < right for n, i in enumerate(ids)}, base)
        config = {"name": arm, "seed": seed, "selection": {"strategy": "rejection_sampling", **selection}}
        config["generation"] = {"num_candidates": k}
        # one run wrote its prompt mix in another key order: the same setting
        config["prompts"] = {"mix": {"chat": 8, "math": 30, "instruction": 60}}
        if arm == "rs_s1":
            config["prompts"] = {"mix": {"math": 30, "instruction": 60, "chat": 8}}
        (exp / arm / "round-1" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    md = results_markdown(exp, list(arms), 1)
    section = md.split("## The ranking against its control, seed by seed", 1)[1].split("\n## ", 1)[0]
    rows, held_rows = _table_rows(section)
    assert rows == [
        # per seed +10/40, +6/40, +1/40: mean +0.142; the seeds disagree beyond item noise (sd 0.105 once it is
        # taken out), so the interval is wide: items' variance of the item means / 40 plus the per-seed
        # differences' variance / 3, t on 4.1 degrees of freedom; computed apart with numpy
        "| rs - random, rs_s1 - random_s1, rs_s2 - random_s2 | 1 | "
        "+0.142 [-0.073, +0.357], per seed +0.250, +0.150, +0.025 (sd 0.105) |",
        # two seeds alike: no seed spread, the items' paired interval (as for one seed: t with 39 df)
        "| k2 - k2_random, k2_s1 - k2_random_s1 | 1 | +0.250 [+0.110, +0.390] **↑**, per seed +0.250, +0.250 "
        "(sd 0.000) |",
    ]
    assert "rm_rank" not in section and "random_b" not in section and "k4" not in section
    assert "`random_s1_again` has the setting and seed of `random_s1`: left out." in section
    # the held-out wordings (odd items) apart: per seed +5/20, +3/20, +0/20; the same rows as an experiment whose
    # eval holds only those items gives over all its items
    assert held_rows[0].startswith("| rs - random, rs_s1 - random_s1, rs_s2 - random_s2 | 1 | +0.133 ["), held_rows
    assert ", per seed +0.250, +0.150, +0.000 (sd " in held_rows[0], held_rows
    held_only = tmp_path / "experiment-held"
    for arm in arms:
        for name in ("eval_model", "eval_start"):
            path = exp / arm / "round-1" / f"{name}.items.jsonl"
            (held_only / arm / "round-1").mkdir(parents=True, exist_ok=True)
            lines = [line for line in path.read_text().splitlines() if '"held_out"' in line]
            (held_only / arm / "round-1" / path.name).write_text("\n".join(lines) + "\n")
        for name in ("eval.json", "config.yaml"):
            (held_only / arm / "round-1" / name).write_bytes((exp / arm / "round-1" / name).read_bytes())
    held_section = results_markdown(held_only, list(arms), 1).split("seed by seed", 1)[1].split("\n## ", 1)[0]
    assert _table_rows(held_section) == (held_rows, held_rows)
    # a round that one seed's pair has not finished is left out for every seed, and the table says so
    _fake_round(exp / "rs", 2, {i: True for i in ids})
    _fake_round(exp / "random", 2, {i: True for i in ids})
    section = results_markdown(exp, list(arms), 2).split("## The ranking against its control, seed by seed", 1)[1]
    assert "| rs - random, rs_s1 - random_s1, rs_s2 - random_s2 | 2 |" not in section
    assert "Rows are the rounds every seed's pair finished." in section


def test_the_held_out_tables_leave_out_and_name_a_capability_without_held_out_items(tmp_path) -> None:
    """The seed-by-seed sections' held-out tables cover the capabilities that have held-out wordings (math's odd
    items here) and name the others (format: every item seen), with as many cells in each row as the header has
    columns; with no held-out item at all, a line says so instead of a table."""
    import yaml

    def write(exp: Path, format_ids: list[str], math_ids: list[str]) -> str:
        ids = math_ids + format_ids
        for arm, seed, strategy, right in (
            ("rs", 0, "rejection_sampling", 30),
            ("random", 0, "random", 20),
            ("rs_s1", 1, "rejection_sampling", 28),
            ("random_s1", 1, "random", 22),
            ("rs_k2", 0, "rejection_sampling", 10),  # one key from rs: the one-setting-apart section
            ("rs_k2_s1", 1, "rejection_sampling", 10),
        ):
            answers = {i: int(i.split("-")[1]) < right for i in ids}
            _fake_round(exp / arm, 1, answers, {i: int(i.split("-")[1]) < 10 for i in ids})
            config = {"name": arm, "seed": seed, "selection": {"strategy": strategy}}
            config["generation"] = {"num_candidates": 2 if "k2" in arm else 6}
            (exp / arm / "round-1" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return results_markdown(exp, ["rs", "random", "rs_s1", "random_s1", "rs_k2", "rs_k2_s1"], 1)

    seen_format = [f"format-{i}" for i in range(0, 40, 2)]  # even numbers: seen wordings only
    md = write(tmp_path / "experiment-x", seen_format, [f"math-{i}" for i in range(40)])
    for name in ("## The ranking against its control, seed by seed", "## Arms one setting apart, seed by seed"):
        section = md.split(name, 1)[1].split("\n## ", 1)[0]
        held = section.split("Held-out wordings only", 1)[1]
        assert held.startswith(" (templates no training prompt uses), where a capability has any (not format):"), held
        table = [line for line in held.splitlines() if line.startswith("|")]
        assert "math: Δ" in table[0] and "format" not in table[0]
        assert len(table) == 3 and len({line.count(" | ") for line in table[::2]}) == 1, table
        assert table[1].count("|") == table[0].count("|")
        all_items = [
            line for line in section.split("Held-out wordings only", 1)[0].splitlines() if line.startswith("|")
        ]
        assert "format: Δ" in all_items[0] and len({line.count("|") for line in all_items}) == 1, all_items
    md = write(tmp_path / "experiment-y", seen_format, [f"math-{i}" for i in range(0, 40, 2)])
    assert md.count("Held-out wordings only (templates no training prompt uses): no such item in the first arm's") == 2


def test_arms_one_setting_apart_are_compared_seed_by_seed(tmp_path) -> None:
    """Two settings whose round-1 configs differ in exactly one key (not the seed, not ``selection.strategy``, which
    the ranking's own section pairs, nor ``selection.random_seed``, the draws'), run at two seeds or more, are
    compared seed by seed: the mean of the per-seed paired differences (the earlier-listed setting minus the later),
    the key and its two values named, for the rounds every arm of the row finished. A key that is a nested mapping
    counts by its leaves; two keys apart, or one seed in common, gives no row. Two control settings a selection key
    apart are marked: the key moves them only through the counts they copy. An arm with the setting and seed of an
    earlier one is left out and named."""
    import yaml

    exp = tmp_path / "experiment-x"
    ids = [f"math-{i}" for i in range(40)]
    base = {i: n < 10 for n, i in enumerate(ids)}
    least = {"rank_verified_by": "least_likely"}
    random, random_b = {"strategy": "random"}, {"strategy": "random", "random_seed": 1000}
    arms = {  # name: (seed, selection, instruction prompts, K, items right)
        "rs60": (0, {}, 60, 6, 30),
        "rs60_s1": (1, {}, 60, 6, 30),
        "rs30": (0, {}, 30, 6, 20),
        "rs30_s1": (1, {}, 30, 6, 20),
        "rs60_again": (0, {}, 60, 6, 0),  # the setting and seed of rs60
        "random60": (0, random, 60, 6, 25),  # one strategy apart from rs60: the ranking's section
        "random60_s1": (1, random, 60, 6, 25),
        "random60_b": (0, random_b, 60, 6, 5),  # one draw seed apart from random60: the draws' sections
        "random60_b_s1": (1, random_b, 60, 6, 5),
        "random60_least": (0, {**random, **least}, 60, 6, 24),  # one selection key apart from random60: controls
        "random60_least_s1": (1, {**random, **least}, 60, 6, 24),
        "k2_30": (0, {}, 30, 2, 40),  # one key from rs30, at one seed only
        "k2_60": (0, {}, 60, 2, 40),  # one key from rs60 and from k2_30
        "k2_60_s1": (1, {}, 60, 2, 40),
        "least": (0, least, 30, 2, 10),  # one key from k2_30 (one seed), two or more from the rest
        "least_s1": (1, least, 30, 2, 10),
    }
    for arm, (seed, selection, instruction, k, right) in arms.items():
        _fake_round(exp / arm, 1, {i: n < right for n, i in enumerate(ids)}, base)
        config = {"name": arm, "seed": seed, "selection": {"strategy": "rejection_sampling", **selection}}
        config["generation"] = {"num_candidates": k}
        config["prompts"] = {"mix": {"math": 30, "instruction": instruction, "chat": 8}}
        (exp / arm / "round-1" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # round 2: rs30_s1 has not finished it, so the 60-against-30 row stops at round 1; the K row goes on
    for arm in ("rs60", "rs60_s1", "rs30", "k2_60", "k2_60_s1"):
        _fake_round(exp / arm, 2, {i: n < arms[arm][4] for n, i in enumerate(ids)})
    md = results_markdown(exp, list(arms), 2)
    section = md.split("## Arms one setting apart, seed by seed", 1)[1].split("\n## ", 1)[0]
    rows, held_rows = _table_rows(section)
    # held-out wordings (odd items): 15 against 10 right, the K row's 15 against 20
    assert [row.split(" [", 1)[0] for row in held_rows] == [
        "| rs60 - rs30, rs60_s1 - rs30_s1 | `prompts.mix.instruction`: 60 vs 30 | 1 | +0.250",
        "| rs60 - k2_60, rs60_s1 - k2_60_s1 | `generation.num_candidates`: 6 vs 2 | 1 | -0.250",
        "| rs60 - k2_60, rs60_s1 - k2_60_s1 | `generation.num_candidates`: 6 vs 2 | 2 | -0.250",
        "| random60 - random60_least, random60_s1 - random60_least_s1 | `selection.rank_verified_by`: likelihood vs "
        "least_likely (controls: only the counts they copy) | 1 | +0.000",
    ]
    assert rows == [
        # 30 against 20 right at both seeds: the items' paired interval, as in the ranking's section (t, 39 df)
        "| rs60 - rs30, rs60_s1 - rs30_s1 | `prompts.mix.instruction`: 60 vs 30 | 1 | "
        "+0.250 [+0.110, +0.390] **↑**, per seed +0.250, +0.250 (sd 0.000) |",
        "| rs60 - k2_60, rs60_s1 - k2_60_s1 | `generation.num_candidates`: 6 vs 2 | 1 | "
        "-0.250 [-0.390, -0.110] **↓**, per seed -0.250, -0.250 (sd 0.000) |",
        "| rs60 - k2_60, rs60_s1 - k2_60_s1 | `generation.num_candidates`: 6 vs 2 | 2 | "
        "-0.250 [-0.390, -0.110] **↓**, per seed -0.250, -0.250 (sd 0.000) |",
        # 25 against 24 right: +1/40 on one item, the same at both seeds (computed apart: t on 39 df)
        "| random60 - random60_least, random60_s1 - random60_least_s1 | `selection.rank_verified_by`: likelihood vs "
        "least_likely (controls: only the counts they copy) | 1 | +0.025 [-0.026, +0.076], per seed +0.025, +0.025 "
        "(sd 0.000) |",
    ]
    for arm in ("random60_b", "k2_30", "least", "least_s1", "rs60_again"):  # as a whole arm name
        assert not re.search(rf"(?<![\w]){arm}(?![\w])", section), arm
    # rs60_again is named once, in the ranking's section (which pairs rs60 with random60)
    assert md.count("`rs60_again` has the setting and seed of `rs60`: left out.") == 1


def test_table_only_writes_the_table_without_running_a_stage(tmp_path, monkeypatch) -> None:
    """``--table-only`` re-renders the table from the finished rounds (after an edit of the code, which would
    otherwise re-run every stage) and runs none. It needs no arm definitions (the rounds' own config.yaml files say
    what each arm was) and loads no arm config, so a check added since cannot keep a finished run from its table."""
    import rounds.experiment

    monkeypatch.setattr(rounds.experiment, "run_round", lambda *a, **k: pytest.fail("a stage ran"))
    monkeypatch.setattr(rounds.experiment, "check_training_config", lambda cfg: pytest.fail("an arm config loaded"))
    exp = tmp_path / "experiment-default"
    answers = {f"math-{i}": i < 5 for i in range(10)}
    _fake_round(exp / "rs", 1, answers, answers)
    _fake_round(exp / "random_b", 1, answers, answers)
    with pytest.raises(ValueError, match="unknown arm 'random_b'"):
        parse_arms("rs,random_b", [])  # a run needs every arm defined
    arms = parse_arms("rs,random_b", [], defined_only=False)
    out = rounds.experiment.run_experiment(
        CONFIG, arms, 1, [f"output_dir={tmp_path}"], tmp_path / "t.md", table_only=True
    )
    md = out.read_text()
    assert out == tmp_path / "t.md" and "| rs | 1 | 0.500, +0.000" in md and "| random_b | 1 | 0.500" in md
    assert "Config: unrecorded (no experiment.json)." in md  # not "defaults": nothing says what ran
    # a hand-written preface before the first table stays when the table is written again; the tables are renewed
    preface = (
        "<!-- The table below is what `alignment experiment` wrote; this preface is by hand. -->\n## Reading\n\nx\n\n"
    )
    out.write_text(md.replace("## Accuracy against", preface + "## Accuracy against").replace("| rs | 1 |", "| old |"))
    rounds.experiment.run_experiment(CONFIG, arms, 1, [f"output_dir={tmp_path}"], out, table_only=True)
    assert out.read_text() == md.replace("## Accuracy against", preface + "## Accuracy against")


def test_a_missing_item_file_is_an_error_not_an_empty_row(tmp_path) -> None:
    exp = tmp_path / "experiment-x"
    _fake_round(exp / "rs", 1, {"math-0": True}, {"math-0": False})
    (exp / "rs" / "round-1" / "eval_model.items.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="eval_model.json: no per-item records"):
        results_markdown(exp, ["rs"], 1)


def test_round_one_copies_outputs_records_and_markers_and_replaces_stale_ones(tmp_path) -> None:
    from rounds.runner import STAGES

    _, cfgs = arm_configs(CONFIG, parse_arms("rs,random", []), [f"output_dir={tmp_path}"])
    src = tmp_path / "experiment-default" / "rs" / "round-1"
    dst = tmp_path / "experiment-default" / "random" / "round-1"
    shared = shared_stages(cfgs["rs"], cfgs["random"])
    for st in STAGES:
        write_json({"key": f"k-{st.name}", "outputs": {}}, src / "stages" / f"{st.name}.json")
        for name in st.outputs:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(f"{st.name} output")
    (src / "candidates.stats.json").write_text("stats")
    (src / "tensorboard" / "reward_model").mkdir(parents=True)
    (src / "tensorboard" / "reward_model" / "events").write_text("rm log")
    (src / "tensorboard" / "sft").mkdir(parents=True)
    assert seed_round_one(cfgs["rs"], cfgs["random"]) == shared
    assert sorted(p.stem for p in (dst / "stages").glob("*.json")) == sorted(shared)
    assert (dst / "candidates.stats.json").read_text() == "stats"  # a record of generate: travels with it
    assert (dst / "tensorboard" / "reward_model" / "events").read_text() == "rm log"
    assert not (dst / "tensorboard" / "sft").exists() and not (dst / "sft.parquet").exists()  # not shared
    # the first arm redid generation (new key): the copy is replaced; stages with the same key are left alone
    write_json({"key": "k-generate-2", "outputs": {}}, src / "stages" / "generate.json")
    (src / "candidates.parquet").write_text("new candidates")
    (dst / "prompts.parquet").write_text("the random arm's own, same key")
    assert seed_round_one(cfgs["rs"], cfgs["random"]) == ["generate"]
    assert (dst / "candidates.parquet").read_text() == "new candidates"
    assert (dst / "prompts.parquet").read_text() == "the random arm's own, same key"
    # nothing past a stage the first arm has not finished
    (src / "stages" / "filter.json").unlink()
    (dst / "stages" / "verify.json").unlink()
    assert seed_round_one(cfgs["rs"], cfgs["random"]) == []


def test_an_earlier_rounds_eval_is_reused_only_when_made_by_this_code_on_these_suites(tmp_path) -> None:
    """Round 2 reuses round 1's eval of the model it starts from, but not one made on other suite items (the suites
    grew) or by other code (another verifier): the gate would compare the new model against a different yardstick."""
    from rounds.keys import code_id
    from rounds.layout import Round
    from rounds.stages import _earlier_eval_of, eval_identity

    _, cfgs = arm_configs(CONFIG, parse_arms("rs", []), [f"output_dir={tmp_path}"])
    cfg = cfgs["rs"]
    run = tmp_path / "run"
    r1 = run / "round-1"
    (r1 / "model").mkdir(parents=True)
    acc = {"math": {"accuracy": 0.5, "n": 2}}
    write_json(acc, r1 / "eval_model.json")
    summary = {"model": acc, "start": acc, "start_model": "/models/base", "start_eval_file": "round-1/eval_start.json"}
    summary |= {"model_eval_file": "round-1/eval_model.json"}
    rnd2 = Round(cfg=cfg, index=2, dir=run / "round-2", start_model=str(r1 / "model"), run_dir=run)
    write_json({**summary, "identity": eval_identity(cfg, code_id())}, r1 / "eval.json")
    assert _earlier_eval_of(rnd2, str(r1 / "model")) == r1 / "eval_model.json"
    write_json({**summary, "identity": {**eval_identity(cfg, code_id()), "code": "older"}}, r1 / "eval.json")
    assert _earlier_eval_of(rnd2, str(r1 / "model")) is None  # other code: other verifiers, other shipped suites
    write_json(summary, r1 / "eval.json")
    assert _earlier_eval_of(rnd2, str(r1 / "model")) is None  # made before evals recorded their identity


def test_the_base_eval_is_copied_to_later_arms_and_checked_by_their_eval_stage(tmp_path) -> None:
    from rounds.keys import code_id
    from rounds.layout import Round
    from rounds.stages import START_EVAL_SOURCE, _copied_start_eval

    _, cfgs = arm_configs(
        CONFIG, parse_arms("rs,random,short", ["short:eval.max_new_tokens=64"]), [f"output_dir={tmp_path}"]
    )
    exp = tmp_path / "experiment-default"
    src, dst = exp / "rs" / "round-1", exp / "random" / "round-1"
    src.mkdir(parents=True)
    assert not seed_start_eval(cfgs["rs"], cfgs["random"])  # the first arm has no eval yet
    acc = {"math": {"accuracy": 0.5, "n": 2}}
    summary = {"model": acc, "start": acc, "start_model": "/models/base", "start_eval_file": "round-1/eval_start.json"}
    write_json({**summary, "model_eval_file": "round-1/eval_model.json"}, src / "eval.json")
    write_json(acc, src / "eval_start.json")
    (src / "eval_start.items.jsonl").write_text('{"id": "math-0", "correct": true}\n')
    (src / "eval_start.settings.json").write_text("{}")
    manifest = {"round": 1, "run": "rs", "start_model": "/models/base", "stages": {}, "timings_s": {}}
    write_json({**manifest, "stages_total_s": 1.0, "code_version": code_id()}, src / "manifest.json")
    assert seed_start_eval(cfgs["rs"], cfgs["random"])
    assert (dst / "eval_start.items.jsonl").read_text() == (src / "eval_start.items.jsonl").read_text()
    assert json.loads((dst / START_EVAL_SOURCE).read_text())["from"] == str(src)
    assert json.loads((dst / START_EVAL_SOURCE).read_text())["identity"]["code"] == code_id()
    assert not seed_start_eval(cfgs["rs"], cfgs["short"])  # another eval setting: the arm evaluates the base itself
    assert not (exp / "short" / "round-1" / "eval_start.json").exists()

    def stage_view(cfg, start_model: str) -> Round:
        return Round(cfg=cfg, index=1, dir=dst, start_model=start_model, run_dir=dst.parent)

    assert _copied_start_eval(stage_view(cfgs["random"], "/models/base")) == dst / "eval_start.json"
    assert _copied_start_eval(stage_view(cfgs["random"], "/models/other")) is None  # another starting model
    assert _copied_start_eval(stage_view(cfgs["short"], "/models/base")) is None  # another eval setting
    source = json.loads((dst / START_EVAL_SOURCE).read_text())
    write_json({**source, "identity": {**source["identity"], "code": "older"}}, dst / START_EVAL_SOURCE)
    assert _copied_start_eval(stage_view(cfgs["random"], "/models/base")) is None  # made by other code
    # a local base model edited in place since: same path, other content
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights").write_text("v1")
    summary["start_model"] = str(model)
    write_json({**summary, "model_eval_file": "round-1/eval_model.json"}, src / "eval.json")
    assert seed_start_eval(cfgs["rs"], cfgs["random"])
    assert _copied_start_eval(stage_view(cfgs["random"], str(model))) == dst / "eval_start.json"
    (model / "weights").write_text("v2")
    assert _copied_start_eval(stage_view(cfgs["random"], str(model))) is None
    # a first arm whose own base eval is a copy is not copied on
    (src / START_EVAL_SOURCE).write_text("{}")
    (dst / START_EVAL_SOURCE).unlink()
    assert not seed_start_eval(cfgs["rs"], cfgs["random"])
    (src / START_EVAL_SOURCE).unlink()
    # an arm whose eval stage finished keeps its own files
    write_json({"key": "k", "outputs": {}}, dst / "stages" / "eval.json")
    (dst / "eval_start.items.jsonl").write_text("its own")
    assert not seed_start_eval(cfgs["rs"], cfgs["random"])
    assert (dst / "eval_start.items.jsonl").read_text() == "its own"


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
    # the base model was evaluated once, by rs: random's eval job ran its own model alone, on rs's base records
    eval_job = json.loads((exp / "random" / "round-1" / "jobs" / "eval.json").read_text())
    assert len(eval_job["runs"]) == 1, eval_job["runs"]
    rs_base, random_base = (exp / arm / "round-1" / "eval_start.items.jsonl" for arm in ("rs", "random"))
    assert random_base.read_text() == rs_base.read_text()
    assert json.loads((exp / "random" / "round-1" / "selection.json").read_text())["strategy"] == "random"
    md = out.read_text()
    assert "| rs | 1 |" in md and "| random | 1 |" in md and "## Each arm against `rs`" in md
    assert (
        f"Code id of the rounds (source and library versions, as in the stage keys): `{manifest['code_version']}`."
        in md
    )
    assert (tmp_path / "results-accuracy.png").is_file()
    assert "Eval identity (suites, eval settings, code): the same in every round, the base eval's." in md
    # the table again, from the CLI, without a stage: the manifests stay as they were
    before = {p: p.stat().st_mtime_ns for p in exp.glob("*/round-1/manifest.json")}
    again = tmp_path / "again.md"
    common = ["--config", CONFIG, "--arms", "rs,random", "--rounds", "1", f"output_dir={tmp_path}", "name=tiny"]
    alignment("experiment", *common, "--table-only", "--out", str(again), cwd=tmp_path)
    assert again.read_text().split("## Rounds")[0] == md.split("## Rounds")[0]
    assert {p: p.stat().st_mtime_ns for p in exp.glob("*/round-1/manifest.json")} == before


def test_the_base_models_identity_comes_from_the_runs_hash_cache(tmp_path, monkeypatch) -> None:
    """Copying and checking the base eval names the base model by its content hash: the runner has already hashed
    its large files into the run's cache, so neither reads them again (an 8B folder is 16 GB)."""
    import rounds.keys
    from rounds.keys import CACHE_FROM_BYTES, HashCache, code_id, model_id
    from rounds.layout import Round
    from rounds.stages import _copied_start_eval

    model = tmp_path / "base"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"\0" * CACHE_FROM_BYTES)
    (model / "config.json").write_text("{}")
    _, cfgs = arm_configs(CONFIG, parse_arms("rs,random", []), [f"output_dir={tmp_path}"])
    exp = tmp_path / "experiment-default"
    src, dst = exp / "rs" / "round-1", exp / "random" / "round-1"
    for run in (exp / "rs", exp / "random"):  # as the runner does before a round's stages
        cache = HashCache.for_run(run)
        model_id(str(model), cache)
        cache.save()
    src.mkdir(parents=True)
    acc = {"math": {"accuracy": 0.5, "n": 2}}
    summary = {"model": acc, "start": acc, "start_model": str(model), "start_eval_file": "round-1/eval_start.json"}
    write_json({**summary, "model_eval_file": "round-1/eval_model.json"}, src / "eval.json")
    write_json(acc, src / "eval_start.json")
    (src / "eval_start.items.jsonl").write_text('{"id": "math-0", "correct": true}\n')
    manifest = {"round": 1, "run": "rs", "start_model": str(model), "stages": {}, "timings_s": {}}
    write_json({**manifest, "stages_total_s": 1.0, "code_version": code_id()}, src / "manifest.json")

    hash_file = rounds.keys.file_sha256

    def small_files_only(path: Path) -> str:
        assert path.stat().st_size < CACHE_FROM_BYTES, f"{path} hashed again"
        return hash_file(path)

    monkeypatch.setattr(rounds.keys, "file_sha256", small_files_only)
    assert seed_start_eval(cfgs["rs"], cfgs["random"])
    view = Round(cfg=cfgs["random"], index=1, dir=dst, start_model=str(model), run_dir=dst.parent)
    assert _copied_start_eval(view) == dst / "eval_start.json"


def test_a_later_call_keeps_the_arm_definitions_of_an_earlier_one(tmp_path, monkeypatch) -> None:
    """Arms added by a second `alignment experiment` call in the same folder: the table of all arms still says what
    each earlier arm changed (the header used to show `[]`, "no override", for an arm of an earlier call)."""
    import rounds.experiment
    from alignment.records import read_json

    exp = tmp_path / "experiment-default"
    answers = {f"math-{i}": i < 5 for i in range(10)}
    for arm in ("rs", "hot", "cool", "old"):
        _fake_round(exp / arm, 1, answers, answers)
    earlier = {"rs": [], "hot": ["generation.temperature=1.0"], "cool": ["generation.temperature=0.5"]}
    overrides = ["eval.max_items=null", f"output_dir={tmp_path}"]  # as this call records them
    write_json({"config": CONFIG, "overrides": overrides, "arms": earlier, "rounds": 1}, exp / "e.json")
    (exp / "e.json").rename(exp / "experiment.json")
    monkeypatch.setattr(rounds.experiment, "seed_round_one", lambda first, cfg: [])
    monkeypatch.setattr(rounds.experiment, "seed_start_eval", lambda first, cfg: False)
    monkeypatch.setattr(rounds.experiment, "run_round", lambda cfg, index: {"stages": {"x": {"skipped": True}}})
    arms = parse_arms("rs,cool", ["cool:generation.temperature=0.6"])
    rounds.experiment.run_experiment(CONFIG, arms, 1, [f"output_dir={tmp_path}"], tmp_path / "t.md")
    plan = read_json(exp / "experiment.json")
    # the later call's definition of `cool` wins; `hot` stays as the earlier call defined it
    assert plan["arms"] == {"rs": [], "hot": ["generation.temperature=1.0"], "cool": ["generation.temperature=0.6"]}
    every = parse_arms("rs,hot,cool,old", [], defined_only=False)
    out = tmp_path / "all.md"
    md = rounds.experiment.run_experiment(
        CONFIG, every, 1, [f"output_dir={tmp_path}"], out, table_only=True
    ).read_text()
    assert "`hot` ['generation.temperature=1.0']; `cool` ['generation.temperature=0.6']" in md
    assert "`old` (not recorded in experiment.json: see its rounds' config.yaml)" in md
    # a call with other overrides for every arm: the earlier arms' definitions would read as made under them
    arms = parse_arms("rs", [])
    rounds.experiment.run_experiment(CONFIG, arms, 1, [f"output_dir={tmp_path}", "seed=3"], tmp_path / "t.md")
    assert read_json(exp / "experiment.json")["arms"] == {"rs": []}


def test_the_first_arm_against_a_controls_draws_folds_the_draw_spread_into_the_interval(tmp_path) -> None:
    """With several draws of the control, the first arm is compared with the draws' mean, and the interval covers the
    choice of the draw as well as of the items: draws that disagree beyond their item noise widen it (Student's t on
    few degrees of freedom); draws that agree leave the items' paired interval."""
    import yaml

    exp = tmp_path / "experiment-x"
    ids = [f"math-{i}" for i in range(40)]
    base = {i: n < 10 for n, i in enumerate(ids)}
    arms = {
        "rs": ({}, 30),
        "random": ({"strategy": "random"}, 20),
        "random_b": ({"strategy": "random", "random_seed": 1000}, 26),
        "random_c": ({"strategy": "random", "random_seed": 2000}, 18),
        "same": ({"strategy": "random", "random_seed": 7}, 20),
        "same_b": ({"strategy": "random", "random_seed": 8}, 20),
    }
    for arm, (selection, right) in arms.items():
        _fake_round(exp / arm, 1, {i: n < right for n, i in enumerate(ids)}, base)
        generation = {"num_candidates": 2 if arm.startswith("same") else 6}  # a second control: other K
        config = {"name": arm, "seed": 0, "selection": {"strategy": "rejection_sampling", **selection}}
        (exp / arm / "round-1" / "config.yaml").write_text(yaml.safe_dump({**config, "generation": generation}))
    md = results_markdown(exp, list(arms), 1)
    section = md.split("## `rs` against the mean of a control's draws", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert rows == [
        # rs 0.750 against 0.500, 0.650, 0.450: +0.217, but three draws this far apart leave it open (t, 3.0 df;
        # the draw term is the draws' variance with their item noise left in, so that it is not floored at 0)
        "| rs - mean(random, random_b, random_c) | 1 | +0.217 [-0.208, +0.641], draws 0.450-0.650 (sd 0.097) |",
        # two draws alike: no draw spread, the items' paired interval (t with 39 df): by hand, 10 items of 40 right
        # only for rs: mean 0.25, sd sqrt(7.5 / 39), half-width 2.023 * sd / sqrt(40) = 0.140
        "| rs - mean(same, same_b) | 1 | +0.250 [+0.110, +0.390] **↑**, draws 0.500-0.500 (sd 0.000) |",
    ]
