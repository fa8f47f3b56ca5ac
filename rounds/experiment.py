"""Experiments: one recipe run as several arms, round by round, and one table that says which arm helped.

    alignment experiment --arms rs,random --rounds 3 [--config C] [--arm NAME:key=value ...] [key=value ...]

Each arm is its own run, ``<output_dir>/experiment-<name>/<arm>/``, with the config, the shared overrides and the
arm's own overrides (built-in arms: ``rs``, the config as it is, and ``random``, the control arm with
``selection.strategy=random``; ``--arm NAME:key=value`` defines or extends one). Arms evaluate on the whole eval
suites (``eval.max_items=null``), not the round's subset. Rounds run interleaved (round 1 of every arm, then round
2, ...), so a cut-off experiment still compares like with like.

Round 1 of every arm after the first starts with copies of the first arm's finished stages that come before the first
stage whose config sections differ between the two arms (for ``random``: prompts, generation, filtering, verdicts,
the reward model and scores); the runner checks each copied stage's key as usual and re-runs any that do not match.
It also gets the first arm's eval of the base model (:func:`seed_start_eval`), which its eval stage uses only when
the base model, the eval settings and the code are its own.

The table (``--out``, default ``<output_dir>/experiment-<name>/results.md``; ``make experiment`` writes
``docs/results.md``), with a plot beside it, has per arm and round the accuracy per
capability with its paired 95% interval against the base model and against the first arm on the same items, split
by the items' wording (``seen``: templates training prompts use; ``held_out``: templates none uses), and the mean
reply length and the share of replies that ended on their own, and a line naming any round or arm whose eval was made
with other suites, eval settings or code than the base eval it is compared with. Where arms are draws of one control
(:func:`control_draws`) or pairs of a ranking and its control at several seeds (:func:`seed_pairs`), sections compare
them with the draw or the seed spread folded into the interval. Running the same command again skips
every finished stage and writes the table again.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from alignment.compare import difference_interval, read_item_records
from alignment.config import ConfigError, RoundConfig, config_to_dict, load_config
from alignment.records import read_json, write_json
from rounds.keys import HashCache
from rounds.layout import ARTIFACTS, EvalSummary, Manifest, Promotion, Selection, round_path
from rounds.runner import STAGES, run_dir_for, run_round
from rounds.stages import START_EVAL_SOURCE, check_training_config, eval_settings, start_eval_identity

log = logging.getLogger(__name__)

BUILTIN_ARMS: dict[str, tuple[str, ...]] = {
    "rs": (),  # rejection sampling: the config as it is
    "random": ("selection.strategy=random",),  # the control arm: the same counts, picks drawn at random
    "sft_only": ("dpo.enabled=false",),  # rejection sampling, SFT only: what DPO adds
}
EXPERIMENT_OVERRIDES = ("eval.max_items=null",)
"""Applied to every arm before the user's overrides: experiments evaluate the whole suites."""
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: tuple[str, ...]


def parse_arms(names: str, definitions: list[str], defined_only: bool = True) -> list[Arm]:
    """The arms of ``--arms a,b,c``, each with its built-in overrides plus those ``--arm NAME:key=value`` adds (a name
    only ``--arm`` defines is an arm too). Unknown names and malformed definitions are a ValueError naming them;
    ``defined_only=False`` (a table of finished runs, which need no definition) accepts any valid name."""
    extra: dict[str, list[str]] = {}
    for d in definitions:
        name, sep, override = d.partition(":")
        if not sep or not name or "=" not in override:
            raise ValueError(f"--arm {d!r}: expected NAME:key.path=value, e.g. beta05:dpo.beta=0.05")
        extra.setdefault(name, []).append(override)
    ordered = [n for n in (s.strip() for s in names.split(",")) if n] if names else []
    ordered += [n for n in extra if n not in ordered]
    if not ordered:
        raise ValueError("--arms: no arm named (built-in arms: " + ", ".join(BUILTIN_ARMS) + ")")
    if len(set(ordered)) != len(ordered):
        raise ValueError(f"--arms {names!r}: an arm is named twice")
    unknown = [n for n in ordered if n not in BUILTIN_ARMS and n not in extra]
    if unknown and defined_only:
        raise ValueError(
            f"--arms: unknown arm {unknown[0]!r} (built-in: {', '.join(BUILTIN_ARMS)}; define one with "
            f"--arm {unknown[0]}:key.path=value)"
        )
    for n in ordered:
        if not n.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"--arms: arm name {n!r} may hold letters, digits, '-' and '_' only (it names a folder)")
    return [Arm(n, (*BUILTIN_ARMS.get(n, ()), *extra.get(n, ()))) for n in ordered]


def experiment_dir(cfg: RoundConfig) -> Path:
    return Path(cfg.output_dir) / f"experiment-{cfg.name}"


def arm_configs(config: str | None, arms: list[Arm], overrides: list[str]) -> tuple[Path, dict[str, RoundConfig]]:
    """The experiment folder and every arm's config, all loaded and checked before any work starts."""
    base = load_config(config, [*EXPERIMENT_OVERRIDES, *overrides])
    exp = experiment_dir(base)
    cfgs = {}
    for arm in arms:
        cfg = load_config(
            config, [*EXPERIMENT_OVERRIDES, *overrides, *arm.overrides, f"name={arm.name}", f"output_dir={exp}"]
        )
        check_training_config(cfg)
        cfgs[arm.name] = cfg
    return exp, cfgs


def shared_stages(first: RoundConfig, other: RoundConfig) -> list[str]:
    """The stages of round 1 that ``other`` can take from ``first``: those before the first stage that reads a
    config section (or top-level key) the two configs set differently."""
    a, b = config_to_dict(first), config_to_dict(other)
    differ = {k for k in {*a, *b} - {"name", "output_dir"} if a.get(k) != b.get(k)}
    shared = []
    for st in STAGES:
        if differ & set(st.config):
            break
        shared.append(st.name)
    return shared


def seed_round_one(first: RoundConfig, other: RoundConfig) -> list[str]:
    """Copy ``first``'s finished round-1 stages that ``other`` shares into ``other``'s round 1: each stage's outputs
    and records (``Stage.records``: stats, logs, per-item files), its marker last. A stage ``other`` finished under
    the same key is left alone; one it finished under another key (older code, another shared override) is replaced,
    so the arms keep sharing after a change instead of drifting apart on their own samples. Returns the stages
    copied."""
    src, dst = round_path(run_dir_for(first), 1), round_path(run_dir_for(other), 1)
    shared = shared_stages(first, other)
    copied = []
    for st in STAGES:
        if st.name not in shared:
            break
        marker = src / ARTIFACTS.markers / f"{st.name}.json"
        if not marker.is_file():
            break  # the first arm has not finished it: nothing after it can be shared either
        mine = dst / ARTIFACTS.markers / f"{st.name}.json"
        if mine.is_file() and read_json(mine).get("key") == read_json(marker).get("key"):
            continue
        mine.unlink(missing_ok=True)  # the stage is unfinished while its files are replaced
        (dst / ARTIFACTS.markers).mkdir(parents=True, exist_ok=True)
        for pattern in (*st.outputs, *st.records):
            for path in sorted(src.glob(pattern)):
                target = dst / path.relative_to(src)
                if target.is_dir():
                    shutil.rmtree(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                if path.is_dir():
                    shutil.copytree(path, target)
                else:
                    shutil.copy2(path, target)
        shutil.copy2(marker, mine)  # last: the stage looks finished only now
        copied.append(st.name)
    return copied


def seed_start_eval(first: RoundConfig, other: RoundConfig) -> bool:
    """Copy ``first``'s round-1 eval of the base model into ``other``'s round 1, with :data:`START_EVAL_SOURCE`
    saying whose it is and its identity (``rounds.stages.start_eval_identity``: the model's and suites' content, the
    eval settings, the code that ran it): ``other``'s eval stage then evaluates only its own model, after checking
    that identity against its round. Nothing is copied when the eval settings differ, when ``first``'s round-1 eval
    of the base is missing or itself a copy, or when ``other``'s eval already finished (its files stay its own).
    Returns whether it copied."""
    src, dst = round_path(run_dir_for(first), 1), round_path(run_dir_for(other), 1)
    if eval_settings(first) != eval_settings(other) or (dst / ARTIFACTS.markers / "eval.json").is_file():
        return False
    if not all((src / name).is_file() for name in (ARTIFACTS.eval, ARTIFACTS.manifest, "eval_start.json")):
        return False
    if (src / START_EVAL_SOURCE).is_file():
        return False  # the first arm's own base eval is a copy: copy from where it was made or not at all
    summary = EvalSummary.read(src / ARTIFACTS.eval)
    code = Manifest.from_dict(read_json(src / ARTIFACTS.manifest), str(src / ARTIFACTS.manifest)).code_version
    dst.mkdir(parents=True, exist_ok=True)
    (dst / START_EVAL_SOURCE).unlink(missing_ok=True)  # written last: no copy counts until every file is in
    for path in sorted(src.glob("eval_start.*")):
        if path.is_file():
            shutil.copy2(path, dst / path.name)
    cache = HashCache.for_run(run_dir_for(first))  # the runner hashed the base model's files into it
    source = {"from": str(src), "identity": start_eval_identity(first, summary.start_model, code, cache)}
    write_json(source, dst / START_EVAL_SOURCE)
    return True


def run_experiment(
    config: str | None,
    arms: list[Arm],
    rounds: int,
    overrides: list[str],
    out: Path | None = None,
    table_only: bool = False,
) -> Path:
    """Run ``rounds`` rounds of every arm (interleaved) and write the results table; returns its path. With
    ``table_only`` no stage runs: the table is written from the rounds that finished (after an edit of the code,
    which is in every stage key, a run would re-run them all)."""
    if rounds < 1:
        raise ValueError(f"--rounds must be 1 or more, got {rounds}")
    if table_only:  # the folder from the base config only: no arm config is loaded or checked
        exp = experiment_dir(load_config(config, [*EXPERIMENT_OVERRIDES, *overrides]))
        return write_results(exp, [a.name for a in arms], rounds, out)
    exp, cfgs = arm_configs(config, arms, overrides)
    first = cfgs[arms[0].name]
    exp.mkdir(parents=True, exist_ok=True)
    plan = {
        "config": str(config) if config else None,
        "overrides": [*EXPERIMENT_OVERRIDES, *overrides],
        "arms": {a.name: list(a.overrides) for a in arms},
        "rounds": rounds,
    }
    if (exp / "experiment.json").is_file():  # keep the wall times and arm definitions of an earlier call's rounds
        earlier = read_json(exp / "experiment.json")
        plan["wall_s"] = earlier.get("wall_s") or {}
        if (earlier.get("config"), earlier.get("overrides")) == (plan["config"], plan["overrides"]):
            # an arm defined again takes this call's definition; with another config or other overrides for every
            # arm, the earlier arms' definitions would read as this call's: they are not kept (the table says so)
            plan["arms"] = {**(earlier.get("arms") or {}), **plan["arms"]}
    write_json(plan, exp / "experiment.json")
    for index in range(1, rounds + 1):
        for arm in arms:
            cfg = cfgs[arm.name]
            if index == 1 and cfg is not first:
                copied = seed_round_one(first, cfg)
                if copied:
                    log.info("arm %s round 1: %s taken from arm %s", arm.name, ", ".join(copied), arms[0].name)
                if seed_start_eval(first, cfg):
                    log.info("arm %s round 1: the base model's eval taken from arm %s", arm.name, arms[0].name)
            log.info("experiment %s: arm %s, round %d", exp.name, arm.name, index)
            t0 = time.time()
            manifest = run_round(cfg, index)
            wall = round(time.time() - t0, 1)
            log.info("arm %s round %d done in %.0fs", arm.name, index, wall)
            if any(not st.get("skipped") for st in manifest["stages"].values()):  # a rerun that skipped all keeps
                plan.setdefault("wall_s", {}).setdefault(arm.name, {})[str(index)] = wall  # the time that counted
                write_json(plan, exp / "experiment.json")
    return write_results(exp, [a.name for a in arms], rounds, out)


# --- the table ---------------------------------------------------------------------------------------------------


@dataclass
class EvalItems:
    """One model's eval: its per-item records by id."""

    label: str
    records: dict[str, dict]

    def scores(self, capability: str, wording: str | None = None) -> dict[str, float]:
        return {
            i: float(r["score"]) if "score" in r else float(bool(r["correct"]))
            for i, r in self.records.items()
            if r["capability"] == capability and (wording is None or r.get("wording") == wording)
        }

    def capabilities(self) -> list[str]:
        return sorted({r["capability"] for r in self.records.values()})

    def length(self) -> tuple[float | None, float | None]:
        """Mean reply length in tokens and the share of replies that ended on their own (not at the token limit)."""
        tokens = [r["tokens"] for r in self.records.values() if "tokens" in r]
        ended = [r.get("finish_reason") == "stop" for r in self.records.values() if r.get("finish_reason")]
        return (sum(tokens) / len(tokens) if tokens else None, sum(ended) / len(ended) if ended else None)


def _read_run(run_dir: Path, rounds: int) -> tuple[EvalItems | None, list[tuple[int, EvalItems, dict]]]:
    """The base model's eval (round 1's start) and each finished round's model eval with its facts."""
    base, done = None, []
    for k in range(1, rounds + 1):
        rd = round_path(run_dir, k)
        if not (rd / ARTIFACTS.eval).is_file():
            break
        ev = EvalSummary.read(rd / ARTIFACTS.eval)
        if k == 1:
            base = EvalItems("base", _items(run_dir / ev.start_eval_file))
        facts: dict = {"eval_identity": ev.identity}
        if (rd / ARTIFACTS.promotion).is_file():
            facts["promoted"] = Promotion.read(rd / ARTIFACTS.promotion).promoted
        manifest = None
        if (rd / ARTIFACTS.manifest).is_file():
            manifest = Manifest.from_dict(read_json(rd / ARTIFACTS.manifest), str(rd / ARTIFACTS.manifest))
            facts["stages_s"], facts["code"] = manifest.stages_total_s, manifest.code_version
        if (rd / ARTIFACTS.selection).is_file():
            sel = Selection.read(rd / ARTIFACTS.selection)  # the typed reader: a renamed key fails here, named
            facts["sft_rows"], facts["dpo_pairs"] = sel.sft.kept, sel.dpo.kept
            if manifest is not None and manifest.metrics("dpo").get("skipped"):
                facts["dpo_pairs"] = f"0 of {sel.dpo.kept} (DPO skipped)"  # selected, never trained on
        done.append((k, EvalItems(f"round {k}", _items(run_dir / ev.model_eval_file)), facts))
    return base, done


def _items(eval_json: Path) -> dict[str, dict]:
    records = read_item_records(eval_json)
    if not records:
        raise FileNotFoundError(f"{eval_json}: no per-item records beside it (the table pairs items by id)")
    return records


def paired(new: EvalItems, old: EvalItems, capability: str, wording: str | None = None) -> dict | None:
    """Accuracy of ``new`` and ``new - old`` with its paired interval on the items both answered (None: none)."""
    a, b = new.scores(capability, wording), old.scores(capability, wording)
    ids = [i for i in a if i in b]
    if not ids:
        return None
    diff, low, high = difference_interval([a[i] for i in ids], [b[i] for i in ids], paired=True, confidence=CONFIDENCE)
    return {"acc": sum(a[i] for i in ids) / len(ids), "n": len(ids), "diff": diff, "low": low, "high": high}


def gap(held: dict | None, seen: dict | None) -> dict | None:
    """How much more the gain on held-out wordings is than on seen ones (two independent item sets): the difference
    of the two paired gains, its interval from their half-widths combined in quadrature (normal approximation)."""
    if held is None or seen is None:
        return None
    diff = held["diff"] - seen["diff"]
    half = math.hypot((held["high"] - held["low"]) / 2, (seen["high"] - seen["low"]) / 2)
    return {"diff": diff, "low": diff - half, "high": diff + half}


def _fmt_diff(c: dict | None) -> str:
    if c is None:
        return "–"
    mark = " **↑**" if c["low"] > 0 else " **↓**" if c["high"] < 0 else ""
    return f"{c['diff']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]{mark}"


def _acc(e: EvalItems, capability: str, wording: str | None = None) -> str:
    s = e.scores(capability, wording)
    return f"{sum(s.values()) / len(s):.3f}" if s else "–"


def _length_cells(e: EvalItems) -> str:
    tokens, ended = e.length()
    return f"{'–' if tokens is None else f'{tokens:.0f}'} | {'–' if ended is None else f'{ended:.2f}'}"


def collect(exp: Path, arms: list[str], rounds: int) -> dict:
    """Every arm's base and round evals (arms without a finished round are left out)."""
    data = {}
    for arm in arms:
        base, done = _read_run(exp / arm, rounds)
        if base is not None:
            data[arm] = {"base": base, "rounds": done}
    if not data:
        raise FileNotFoundError(f"{exp}: no arm has a finished round yet (run the experiment first)")
    return data


def _arm_definition(plan: dict, arm: str) -> str:
    """An arm's overrides as experiment.json recorded them (every call's arms are kept there)."""
    recorded = plan.get("arms", {})
    return str(recorded[arm]) if arm in recorded else "(not recorded in experiment.json: see its rounds' config.yaml)"


def _machine(exp: Path, arm: str) -> str:
    """The machine that ran the first arm's round 1, as its manifest recorded it."""
    path = round_path(exp / arm, 1) / ARTIFACTS.manifest
    hw = (read_json(path).get("hardware") if path.is_file() else None) or {}
    if not hw:
        return "an unrecorded machine"
    bf16 = "yes" if hw.get("cpu_native_bf16") else "no"
    gpus = f", GPUs: {', '.join(hw['gpus'])}" if hw.get("gpus") else ""
    return f"{hw.get('cpu_model')} ({hw.get('cpu_kind')}, native bf16: {bf16}), {hw.get('cores')} cores{gpus}"


def results_markdown(exp: Path, arms: list[str], rounds: int, plot_name: str | None = None) -> str:
    """The results table. Every arm's rounds are compared with that arm's own eval of the base model (the same eval
    settings and items, whatever the arm changed); the base row is the first arm's."""
    data = collect(exp, arms, rounds)
    ref = next(iter(data))
    base = data[ref]["base"]
    caps = base.capabilities()
    plan = read_json(exp / "experiment.json") if (exp / "experiment.json").is_file() else {}
    codes = sorted({f["code"] for d in data.values() for _, _, f in d["rounds"] if "code" in f})
    lines = [
        f"# Experiment `{exp.name}`: {', '.join(data)} over {rounds} round(s)",
        "",
        f"Written by `alignment experiment` on {time.strftime('%Y-%m-%d')}; the rounds ran on {_machine(exp, ref)}.",
        (
            f"Config: `{plan.get('config') or 'defaults'}`, overrides {plan.get('overrides', [])}; arms: "
            + "; ".join(f"`{a}` {_arm_definition(plan, a)}" for a in data)
            + "."
            if plan
            else "Config: unrecorded (no experiment.json)."
        ),
        "Items per capability: " + ", ".join(f"{c} {len(base.scores(c))}" for c in caps) + ".",
        "Code id of the rounds (source and library versions, as in the stage keys): "
        + (", ".join(f"`{c}`" for c in codes) or "unrecorded")
        + ".",
        _identity_line(data, ref),
        f"Intervals: paired {CONFIDENCE:.0%} (same items, `alignment.compare.difference_interval`); "
        "**↑**/**↓**: the interval excludes zero. Δ vs base: against the arm's own eval of the base model.",
        "",
        f"{FIRST_TABLE} (all items)",
        "",
        "| arm | round | " + " | ".join(f"{c}: acc, Δ vs base [95%]" for c in caps) + " | tokens/reply | ended |",
        "|---|---|" + "---|" * len(caps) + "---|---|",
        "| base | 0 | " + " | ".join(_acc(base, c) for c in caps) + f" | {_length_cells(base)} |",
    ]
    for arm, d in data.items():
        for k, ev, _ in d["rounds"]:
            cells = [f"{_acc(ev, c)}, {_fmt_diff(paired(ev, d['base'], c))}" for c in caps]
            lines.append(f"| {arm} | {k} | " + " | ".join(cells) + f" | {_length_cells(ev)} |")
    lines += [
        "",
        "## By wording: held-out templates (no training prompt uses them) and seen ones",
        "",
        "Gap: the gain on held-out items minus the gain on seen ones (different items: the two paired intervals'",
        "half-widths combined). A gain that holds only for the training phrasing shows as a gap below zero.",
        "",
        "| arm | round | capability | held-out acc | Δ vs base [95%] | seen acc | Δ vs base [95%] | gap [95%] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, d in data.items():
        for k, ev, _ in d["rounds"]:
            for c in caps:
                held, seen = paired(ev, d["base"], c, "held_out"), paired(ev, d["base"], c, "seen")
                lines.append(
                    f"| {arm} | {k} | {c} | {_acc(ev, c, 'held_out')} | {_fmt_diff(held)} | "
                    f"{_acc(ev, c, 'seen')} | {_fmt_diff(seen)} | {_fmt_diff(gap(held, seen))} |"
                )
    others = [a for a in data if a != ref]
    if others:
        lines += [
            "",
            f"## Each arm against `{ref}`, same round, same items",
            "",
            "| arm | round | " + " | ".join(f"{c}: Δ vs {ref} [95%]" for c in caps) + " |",
            "|---|---|" + "---|" * len(caps),
        ]
        ref_rounds = {k: ev for k, ev, _ in data[ref]["rounds"]}
        for arm in others:
            for k, ev, _ in data[arm]["rounds"]:
                if k in ref_rounds:
                    cells = [_fmt_diff(paired(ev, ref_rounds[k], c)) for c in caps]
                    lines.append(f"| {arm} | {k} | " + " | ".join(cells) + " |")
        flips = {a: _verdicts_differ(data[a]["base"], base) for a in others}
        lines += [
            "",
            f"Each arm has its own eval of the base model (a copy of `{ref}`'s where the eval settings and code "
            f"match); items whose verdict differs from `{ref}`'s base eval (engine nondeterminism, or an arm that "
            "changes the eval): " + ", ".join(f"{a} {n}" for a, n in flips.items()) + ".",
        ]
    configs = round_one_configs(exp, list(data))
    groups, same = control_draws(configs)
    lines += _draws_section(data, caps, groups, same)
    lines += _against_draws_section(data, caps, groups)
    ranked_groups, ranked_left_out = seed_pairs(configs)
    lines += _seed_pairs_section(data, caps, ranked_groups, ranked_left_out)
    named = set(ranked_left_out) if ranked_groups else set()  # the ranking's section names its left-out arms
    lines += _one_key_section(data, caps, *one_key_pairs(configs), named)
    lines += [
        "",
        "## Rounds",
        "",
        "| arm | round | SFT rows | DPO pairs | promoted | stages (s) | this call's wall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    walls = plan.get("wall_s", {})
    for arm, d in data.items():
        for k, _, f in d["rounds"]:
            lines.append(
                f"| {arm} | {k} | {f.get('sft_rows', '–')} | {f.get('dpo_pairs', '–')} | "
                f"{'yes' if f.get('promoted') else 'no' if 'promoted' in f else '–'} | {f.get('stages_s', '–')} | "
                f"{walls.get(arm, {}).get(str(k), '–')} |"
            )
    lines += [
        "",
        "Stages (s): the round's stage durations as its manifest records them (stages taken from the first arm count "
        "with the first arm's time); wall: what running the round took in the experiment, shared stages skipped.",
    ]
    if plot_name:
        lines += ["", f"![accuracy by round]({plot_name})"]
    return "\n".join(lines) + "\n"


def round_one_configs(exp: Path, arms: list[str]) -> dict[str, dict]:
    """Every arm's round-1 config, loaded and completed with the defaults (arm -> config dict); arms without a
    config.yaml that loads are left out, not guessed."""
    configs = {}
    for arm in arms:
        try:
            configs[arm] = config_to_dict(load_config(round_path(exp / arm, 1) / "config.yaml"))
        except (OSError, ConfigError):
            continue
    return configs


STRATEGY_KEY, DRAW_SEED_KEY = "strategy", "random_seed"
"""The ``selection`` keys the sections pair on: the ranking against its control (``strategy``; seed by seed, with the
draw seed unset or the run's seed) and a control's draws (``random_seed``); the one-setting-apart section leaves both
to them."""


def _setting(cfg: dict, top: tuple[str, ...] = (), selection: tuple[str, ...] = ()) -> str:
    """A round-1 config as a comparable key, without the run's name and folder and without the ``top`` level and
    ``selection`` keys named; nested key order does not count."""
    kept = {k: v for k, v in cfg["selection"].items() if k not in selection}
    rest = {k: v for k, v in cfg.items() if k not in ("name", "output_dir", *top)}
    return json.dumps({**rest, "selection": kept}, sort_keys=True, default=str)


def control_draws(configs: dict[str, dict]) -> tuple[list[list[str]], dict[str, str]]:
    """Draws of one control: groups of control arms (``selection.strategy: random``) whose round-1 configs, loaded and
    completed with the defaults (:func:`round_one_configs`), differ only in the draw seed (``selection.random_seed``,
    or the run's seed when unset), their names and where their folder was. Also returns the arms left out for drawing
    with the seed of an earlier arm of their group (arm -> that arm): the same draw, not another."""
    groups: dict[str, dict[int, str]] = {}
    same: dict[str, str] = {}
    for arm, cfg in configs.items():
        if cfg["selection"].get(STRATEGY_KEY) != "random":
            continue
        seed = cfg["selection"].get(DRAW_SEED_KEY)
        seed = cfg["seed"] if seed is None else seed
        members = groups.setdefault(_setting(cfg, selection=(DRAW_SEED_KEY,)), {})
        if seed in members:
            same[arm] = members[seed]
        else:
            members[seed] = arm
    return [list(members.values()) for members in groups.values() if len(members) > 1], same


def _evals_by_round(data: dict, arm: str) -> dict[int, EvalItems]:
    return {k: ev for k, ev, _ in data[arm]["rounds"]}


def _draws_section(data: dict, caps: list[str], groups: list[list[str]], same: dict[str, str]) -> list[str]:
    """Every two draws of one control (``groups``, ``same``: :func:`control_draws`) against each other, round by
    round, and each control's largest difference per capability: what the draw alone moves, which the paired
    intervals (over items) do not cover."""
    if not groups:
        return []
    lines = [
        "",
        "## Draws of one control against each other (arms that differ only in `selection.random_seed`)",
        "",
        "The same control with another seed trains on other eligible candidates; the paired intervals cover the eval",
        "items, not that. A difference between two arms no larger than these is no evidence for either.",
        "",
        "| draws | round | " + " | ".join(f"{c}: Δ [95%]" for c in caps) + " |",
        "|---|---|" + "---|" * len(caps),
    ]
    summary = []
    for members in groups:
        evals = {arm: _evals_by_round(data, arm) for arm in members}
        largest: dict[str, float] = {}
        done_rounds: set[int] = set()
        for k in sorted({k for e in evals.values() for k in e}):
            for a, b in itertools.combinations([m for m in members if k in evals[m]], 2):
                cells = [paired(evals[b][k], evals[a][k], c) for c in caps]
                for c, cell in zip(caps, cells, strict=True):
                    if cell is not None:
                        largest[c] = max(largest.get(c, 0.0), abs(cell["diff"]))
                done_rounds.add(k)
                lines.append(f"| {b} - {a} | {k} | " + " | ".join(_fmt_diff(cell) for cell in cells) + " |")
        if done_rounds:
            first, last = min(done_rounds), max(done_rounds)
            span = f"round {first}" if first == last else f"rounds {first}-{last}"
            summary.append(
                f"Largest difference between two draws of {', '.join(members)} ({span}): "
                + ", ".join(f"{c} {v:.3f}" for c, v in largest.items())
                + "."
            )
    summary += [f"`{arm}` draws with the seed of `{other}` (the same draw): left out." for arm, other in same.items()]
    return [*lines, "", *summary]


def against_draws(new: EvalItems, draws: list[EvalItems], capability: str) -> dict | None:
    """``new`` against the mean of a control's ``draws`` on the items all of them answered: the accuracy difference
    and its 95% interval, with two sources of variance:

    - the items: the paired per-item differences (new minus the draws' mean on the item), variance over n items;
    - the draw: the variance of the draws' accuracies (their item noise left in: :func:`_crossed` says why), times
      1 + 1/k: the draws' mean rests on k draws, and ``new`` is one run of its own method, taken to vary as much.

    The quantile is Student's t with Satterthwaite's degrees of freedom (k - 1 for the draw term: few draws, a wide
    interval). None: no common item or fewer than two draws."""
    if len(draws) < 2:
        return None
    a = new.scores(capability)
    others = [d.scores(capability) for d in draws]
    ids = [i for i in a if all(i in o for o in others)]
    if len(ids) < 2:
        return None
    crossed = _crossed([[a[i] - o[i] for o in others] for i in ids], 1 + 1 / len(others))
    accs = [statistics.mean(o[i] for i in ids) for o in others]
    return {**crossed, "accs": accs}


def _crossed(x: list[list[float]], column_factor: float) -> dict:
    """The mean of ``x`` (items by columns: draws or seeds, crossed) and its 95% interval, with two variance terms:
    the items' (the variance of the item means over n) and the columns' (the variance of the column means times
    ``column_factor``); Student's t with Satterthwaite's degrees of freedom (k - 1 for the column term).

    The column term keeps the item noise that is in the column means (it is counted in the item term too): taking it
    out (less the residual mean square over n, floored at 0) is unbiased but, with two or three columns, lands at 0
    often even when the columns do differ, and the interval then falls back to the items' alone. Simulated with 2-3
    seeds whose effect varies with sd 0.04 on 400 binary items, that covered 87-90% instead of 95%; this one 94-95%
    (98-99% when the columns do not differ at all): conservative, as a claim that a ranking wins should be.
    ``column_sd``: the columns' spread with item noise taken out (floored at 0), for the reader."""
    from scipy.stats import t as student_t

    n, k = len(x), len(x[0])
    item_means = [statistics.mean(row) for row in x]
    columns = [math.fsum(row[j] for row in x) / n for j in range(k)]
    grand = math.fsum(v for row in x for v in row) / (n * k)
    residual = sum((x[r][j] - item_means[r] - columns[j] + grand) ** 2 for r in range(n) for j in range(k)) / (
        (n - 1) * (k - 1)
    )
    spread = max(0.0, statistics.variance(columns) - residual / n)
    v_items = statistics.variance(item_means) / n
    v_columns = statistics.variance(columns) * column_factor
    total = v_items + v_columns
    denominator = v_items**2 / (n - 1) + v_columns**2 / (k - 1)
    df = total**2 / denominator if denominator > 0 else float("inf")
    half = float(student_t.ppf(0.5 + CONFIDENCE / 2, df)) * math.sqrt(total)
    return {
        "diff": grand,
        "low": max(-1.0, grand - half),
        "high": min(1.0, grand + half),
        "columns": columns,
        "column_sd": math.sqrt(spread),
    }


def _crossed_cells(cells: list[dict | None], detail: Callable[[dict], str]) -> list[str]:
    """Table cells of :func:`_crossed` results: the difference and interval, ``detail`` and the columns' spread."""
    return ["–" if c is None else f"{_fmt_diff(c)}, {detail(c)} (sd {c['column_sd']:.3f})" for c in cells]


def _against_draws_section(data: dict, caps: list[str], groups: list[list[str]]) -> list[str]:
    """The first arm against the mean of each control's draws (``groups``: :func:`control_draws`), round by round,
    with the draw spread folded into the interval (:func:`against_draws`)."""
    ref = next(iter(data))
    groups = [g for g in groups if ref not in g]
    if not groups:
        return []
    lines = [
        "",
        f"## `{ref}` against the mean of a control's draws, the draw spread folded in",
        "",
        f"Δ: `{ref}`'s accuracy minus the draws' mean accuracy on the same items. The 95% interval covers the choice",
        "of the items (paired) and of the draw: the variance of the draws' accuracies, for the draws' mean and again",
        f"for `{ref}`, one run of its own method taken to vary as much; Student's t with Satterthwaite's degrees of",
        "freedom, so two or three draws give a wide interval when they disagree. The draw term keeps the draws' item",
        "noise (also in the items' term): conservative, where taking it out leaves the term at 0 too often with few",
        "draws. Draws: their accuracy range, and the draw-to-draw standard deviation left once item noise is taken out.",
        "",
        "| comparison | round | " + " | ".join(f"{c}: Δ [95%], draws" for c in caps) + " |",
        "|---|---|" + "---|" * len(caps),
    ]
    mine = _evals_by_round(data, ref)
    for members in groups:
        evals = {arm: _evals_by_round(data, arm) for arm in members}
        for k in sorted(mine):
            present = [m for m in members if k in evals[m]]
            cells = [against_draws(mine[k], [evals[m][k] for m in present], c) for c in caps]
            if all(cell is None for cell in cells):
                continue
            text = _crossed_cells(cells, lambda c: f"draws {min(c['accs']):.3f}-{max(c['accs']):.3f}")
            lines.append(f"| {ref} - mean({', '.join(present)}) | {k} | " + " | ".join(text) + " |")
    return lines


def seed_pairs(configs: dict[str, dict]) -> tuple[list[list[tuple[int, str, str]]], dict[str, str]]:
    """Ranked arms paired with their control seed by seed: groups of (seed, ranked arm, control arm) whose round-1
    configs (:func:`round_one_configs`) differ only in ``selection.strategy`` within a pair and only in ``seed``
    between pairs. The control is the seed's own draw (``selection.random_seed`` unset, or the run's seed); a control
    with another draw seed is another draw, compared in the draws' sections. Groups with one seed are left out: the
    table against the first arm has them. Also returns the arms left out for having the setting, strategy and seed
    of an earlier arm (arm -> that arm)."""

    def setting(cfg: dict) -> str:  # everything but the seed and the strategy
        return _setting(cfg, top=("seed",), selection=(STRATEGY_KEY, DRAW_SEED_KEY))

    left_out: dict[str, str] = {}

    def place(by_seed: dict[int, str], seed: int, arm: str) -> None:
        if seed in by_seed:
            left_out[arm] = by_seed[seed]
        else:
            by_seed[seed] = arm

    ranked: dict[tuple[str, str], dict[int, str]] = {}
    controls: dict[str, dict[int, str]] = {}
    for arm, cfg in configs.items():
        selection, seed = cfg["selection"], cfg["seed"]
        if selection.get(STRATEGY_KEY) == "random":
            if selection.get(DRAW_SEED_KEY) in (None, seed):
                place(controls.setdefault(setting(cfg), {}), seed, arm)
        else:
            place(ranked.setdefault((setting(cfg), str(selection.get(STRATEGY_KEY))), {}), seed, arm)
    groups = []
    for (key, _), by_seed in ranked.items():
        pairs = [(s, arm, controls[key][s]) for s, arm in sorted(by_seed.items()) if s in controls.get(key, {})]
        if len(pairs) > 1:
            groups.append(pairs)
    return groups, left_out


def seed_paired(
    ranked: list[EvalItems], controls: list[EvalItems], capability: str, wording: str | None = None
) -> dict | None:
    """The mean over seeds of the ranked arm's paired difference from its control at the same seed (``ranked[s]``
    minus ``controls[s]``), on the items all of them answered (of one ``wording``, or all), and its 95% interval: the
    items' variance and the seeds' (the per-seed differences' variance over the number of seeds, their item noise
    kept in: :func:`_crossed` says why), Student's t with Satterthwaite's degrees of freedom. None: fewer than two
    common items or fewer than two seeds."""
    if len(ranked) < 2 or len(ranked) != len(controls):
        return None
    scores = [
        (r.scores(capability, wording), c.scores(capability, wording)) for r, c in zip(ranked, controls, strict=True)
    ]
    ids = [i for i in scores[0][0] if all(i in r and i in c for r, c in scores)]
    if len(ids) < 2:
        return None
    crossed = _crossed([[r[i] - c[i] for r, c in scores] for i in ids], 1 / len(scores))
    return crossed


def _seed_pairs_section(
    data: dict, caps: list[str], groups: list[list[tuple[int, str, str]]], left_out: dict[str, str]
) -> list[str]:
    """Each ranked arm against its control seed by seed (``groups``, ``left_out``: :func:`seed_pairs`), round by
    round: the mean of the per-seed differences with the seed spread folded into the interval
    (:func:`seed_paired`)."""
    if not groups:
        return []
    lines = [
        "",
        "## The ranking against its control, seed by seed (arms that differ only in `selection.strategy`, at each `seed`)",
        "",
        "Δ: the mean over seeds of the ranked arm's accuracy minus its control's at the same seed (`seed` sets",
        "generation, training and eval), on the same items; above zero, the ranking wins. The 95% interval covers the",
        "choice of the items (paired) and of the seed: the variance of the per-seed differences over the number of",
        "seeds, their item noise kept in (conservative, as for the draws); Student's t with Satterthwaite's degrees of",
        "freedom, so two or three seeds that disagree give a wide interval. Per seed: each seed's difference, and",
        "their standard deviation once item noise is taken out. Rows are the rounds every seed's pair finished.",
    ]
    return [*lines, *_seed_paired_tables(data, caps, [(pairs, "") for pairs in groups]), *_left_out_notes(left_out)]


WORDINGS: dict[str | None, str] = {
    None: "All items",
    "held_out": "Held-out wordings only (templates no training prompt uses)",
}
"""The seed-paired sections' two tables (wording -> title): all items, and the held-out wordings only (the
out-of-template items the issue's conditions are stated on)."""


def _seed_paired_tables(
    data: dict, caps: list[str], compared: list[tuple[list[tuple[int, str, str]], str]], setting: bool = False
) -> list[str]:
    """A seed-paired section's tables, one per wording (:data:`WORDINGS`): all items, then the held-out wordings of the
    capabilities that have any (:func:`_wording_capabilities`; the others are named), with a row per round of each
    (pairs, setting label) in ``compared`` (:func:`_seed_paired_rows`; ``setting``: the tables have the label's
    column). A table without a row is a line that says why."""
    lines = []
    for wording, title in WORDINGS.items():
        shown = _wording_capabilities(data, caps, wording)
        if not shown:
            lines += ["", f"{title}: no such item in the first arm's eval of the base model."]
            continue
        rows = [row for pairs, label in compared for row in _seed_paired_rows(data, shown, pairs, label, wording)]
        if not rows:
            lines += ["", f"{title}: no round with two items or more that every arm of a row answered."]
            continue
        if missing := [c for c in caps if c not in shown]:
            title += f", where a capability has any (not {', '.join(missing)})"
        lines += [
            "",
            f"{title}:",
            "",
            "| comparison | "
            + ("setting | " if setting else "")
            + "round | "
            + " | ".join(f"{c}: Δ [95%], per seed" for c in shown)
            + " |",
            "|---|---|" + ("---|" if setting else "") + "---|" * len(shown),
            *rows,
        ]
    return lines


def _wording_capabilities(data: dict, caps: list[str], wording: str | None) -> list[str]:
    """The capabilities with items of ``wording`` in the first arm's base eval (None: all of ``caps``)."""
    base = next(iter(data.values()))["base"]
    return [c for c in caps if wording is None or base.scores(c, wording)]


def _seed_paired_rows(
    data: dict, caps: list[str], pairs: list[tuple[int, str, str]], setting: str = "", wording: str | None = None
) -> list[str]:
    """Table rows of :func:`seed_paired` for (seed, arm, other arm) ``pairs``, one per round every arm finished (a row
    whose every cell is empty left out), on the items of one ``wording`` (None: all); ``setting``: a column after the
    label."""
    evals = {arm: _evals_by_round(data, arm) for _, a, b in pairs for arm in (a, b)}
    label = ", ".join(f"{a} - {b}" for _, a, b in pairs) + (f" | {setting}" if setting else "")
    rows = []
    for k in sorted(set.intersection(*(set(e) for e in evals.values()))):
        cells = [
            seed_paired([evals[a][k] for _, a, _ in pairs], [evals[b][k] for _, _, b in pairs], c, wording)
            for c in caps
        ]
        if all(cell is None for cell in cells):
            continue
        text = _crossed_cells(cells, lambda c: "per seed " + ", ".join(f"{d:+.3f}" for d in c["columns"]))
        rows.append(f"| {label} | {k} | " + " | ".join(text) + " |")
    return rows


def _left_out_notes(left_out: dict[str, str]) -> list[str]:
    """The notes naming arms left out for having the setting and seed of an earlier one (after a blank line)."""
    notes = [f"`{arm}` has the setting and seed of `{other}`: left out." for arm, other in left_out.items()]
    return [""] + notes if notes else []


ONE_KEY_LEFT_TO_OTHER_SECTIONS = tuple(f"selection.{key}" for key in (STRATEGY_KEY, DRAW_SEED_KEY))
"""Keys whose one-key comparisons other sections make: the ranking against its control, a control's draws."""


def _leaves(cfg: dict, prefix: str = "") -> dict[str, str]:
    """A config as dotted keys to JSON values: nested mappings by their leaves (an empty one is a leaf)."""
    out: dict[str, str] = {}
    for key, value in cfg.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value, sort_keys=True, default=str)
    return out


def _shown(value: str | None) -> str:
    """A :func:`_leaves` value for the table: strings bare, whole floats as integers (a prompt mix's counts)."""
    if value is None:
        return "unset"
    x = json.loads(value)
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return x if isinstance(x, str) else json.dumps(x)


class OneKeyPair(NamedTuple):
    """Two settings one key apart (:func:`one_key_pairs`): the key, its value in each, whether both are control arms
    (``selection.strategy: random``), and (seed, arm of the first, arm of the second) for each seed both ran."""

    key: str
    first: str
    second: str
    controls: bool
    pairs: list[tuple[int, str, str]]


def one_key_pairs(configs: dict[str, dict]) -> tuple[list[OneKeyPair], dict[str, str]]:
    """Settings one key apart, seed by seed: every two settings (round-1 configs without name, folder and ``seed``),
    in the order the arms come, whose configs differ in exactly one key (:func:`_leaves`) other than those other
    sections compare (:data:`ONE_KEY_LEFT_TO_OTHER_SECTIONS`) and that share two seeds or more. At a seed run twice
    with one setting, the first arm counts; also returns the others (arm -> that arm)."""
    settings: dict[str, tuple[dict[str, str], dict[int, str]]] = {}
    left_out: dict[str, str] = {}
    for arm, cfg in configs.items():
        leaves = _leaves({k: v for k, v in cfg.items() if k not in ("name", "output_dir", "seed")})
        by_seed = settings.setdefault(json.dumps(leaves, sort_keys=True), (leaves, {}))[1]
        if cfg["seed"] in by_seed:
            left_out[arm] = by_seed[cfg["seed"]]
        else:
            by_seed[cfg["seed"]] = arm
    found = []
    ordered = list(settings.values())
    for i, (first, first_seeds) in enumerate(ordered):
        for second, second_seeds in ordered[i + 1 :]:
            apart = [k for k in sorted(first.keys() | second.keys()) if first.get(k) != second.get(k)]
            seeds = sorted(first_seeds.keys() & second_seeds.keys())
            if len(apart) != 1 or apart[0] in ONE_KEY_LEFT_TO_OTHER_SECTIONS or len(seeds) < 2:
                continue
            key = apart[0]
            pairs = [(s, first_seeds[s], second_seeds[s]) for s in seeds]
            controls = all(json.loads(c.get(f"selection.{STRATEGY_KEY}", "null")) == "random" for c in (first, second))
            found.append(OneKeyPair(key, _shown(first.get(key)), _shown(second.get(key)), controls, pairs))
    return found, left_out


def _one_key_section(
    data: dict, caps: list[str], found: list[OneKeyPair], left_out: dict[str, str], named: set[str]
) -> list[str]:
    """Settings one key apart (``found``, ``left_out``: :func:`one_key_pairs`), seed by seed, round by round
    (:func:`seed_paired`); the arms left out that another section has not ``named`` yet are named."""
    if not found:
        return []
    lines = [
        "",
        "## Arms one setting apart, seed by seed (round-1 configs that differ in one key, at each `seed`)",
        "",
        "Δ: the mean over seeds of the first setting's accuracy minus the second's at the same seed, on the same items,",
        "with the interval of the ranking's section (items and seeds; Student's t, Satterthwaite). The ranking against",
        "its control and a control's draws have their own sections. Two control arms a `selection` key apart differ",
        "only through the counts of SFT rows and pairs they copy from rejection sampling (marked). Rows are the rounds",
        "every seed's pair finished.",
    ]
    compared = []
    for found_pair in found:
        setting = f"`{found_pair.key}`: {found_pair.first} vs {found_pair.second}"
        if found_pair.controls and found_pair.key.startswith("selection."):
            setting += " (controls: only the counts they copy)"
        compared.append((found_pair.pairs, setting))
    notes = _left_out_notes({arm: other for arm, other in left_out.items() if arm not in named})
    return [*lines, *_seed_paired_tables(data, caps, compared, setting=True), *notes]


def _identity_line(data: dict, ref: str) -> str:
    """Whether every round's eval was made with the suites, eval settings and code (``rounds.stages.eval_identity``)
    of its arm's base eval (the arm's round 1), and every arm's with ``ref``'s: names the rounds and arms that differ
    and what differs. A run resumed after an edit pairs its later rounds with a base scored by other verifiers or
    items; an arm that changes the eval settings compares with ``ref`` on another yardstick."""

    def keys_differing(a: dict, b: dict) -> str:
        return ", ".join(sorted(key for key in set(a) | set(b) if a.get(key) != b.get(key)))

    idents = {arm: {k: f.get("eval_identity") or {} for k, _, f in d["rounds"]} for arm, d in data.items()}
    within, across, unknown = [], [], []
    for arm, rounds in idents.items():
        base = rounds.get(1) or {}
        for k, ident in rounds.items():
            if not ident or not base:
                unknown.append(f"{arm} round {k}")
            elif ident != base:
                within.append(f"{arm} round {k} ({keys_differing(ident, base)})")
        ref_base = idents[ref].get(1) or {}
        if arm != ref and base and ref_base and base != ref_base:
            across.append(f"{arm} ({keys_differing(base, ref_base)})")
    parts = []
    if within:
        parts.append(
            "**differs from its arm's base eval** in "
            + ", ".join(within)
            + ": those rows compare evals made with other verifiers, items or settings"
        )
    if across:
        parts.append(
            f"**differs from `{ref}`'s** for the arm(s) " + ", ".join(across) + f": their rows against `{ref}` "
            "compare evals made differently"
        )
    if unknown:
        parts.append(
            "not compared in " + ", ".join(unknown) + " (that eval or its arm's round-1 eval recorded no identity: "
            "made before evals recorded it)"
        )
    return (
        "Eval identity (suites, eval settings, code): "
        + ("; ".join(parts) or "the same in every round, the base eval's")
        + "."
    )


def _verdicts_differ(a: EvalItems, b: EvalItems) -> int:
    return sum(
        1
        for i, r in a.records.items()
        if i in b.records and bool(r.get("correct")) != bool(b.records[i].get("correct"))
    )


def plot_accuracy(exp: Path, arms: list[str], rounds: int, out: Path) -> Path:
    """Accuracy by round (0: base) per capability, one line per arm, with the 95% interval of each accuracy."""
    from statistics import NormalDist

    from matplotlib.figure import Figure

    data = collect(exp, arms, rounds)
    base = next(iter(data.values()))["base"]
    caps = base.capabilities()
    z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
    fig = Figure(figsize=(4.2 * len(caps), 3.2), layout="constrained")
    for j, cap in enumerate(caps):
        ax = fig.add_subplot(1, len(caps), j + 1)
        for n, (arm, d) in enumerate(data.items()):
            evs = [(0, base), *[(k, ev) for k, ev, _ in d["rounds"]]]
            xs, ys, es = [], [], []
            for k, ev in evs:
                s = list(ev.scores(cap).values())
                if not s:
                    continue
                p = sum(s) / len(s)
                xs.append(k + 0.06 * (n - (len(data) - 1) / 2))
                ys.append(p)
                es.append(z * (p * (1 - p) / len(s)) ** 0.5)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=arm)
        ax.set_title(cap)
        ax.set_xlabel("round (0: base)")
        ax.set_xticks(range(rounds + 1))
        if j == 0:
            ax.set_ylabel("accuracy")
            ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


PREFACE_MARK = "<!-- The table below is what `alignment experiment` wrote"
"""Starts a hand-written preface in a results file: from this line to the first table heading, kept when the command
writes the file again."""
FIRST_TABLE = "## Accuracy against the base model"


def _hand_written_preface(out: Path) -> str:
    """The preface (:data:`PREFACE_MARK` up to :data:`FIRST_TABLE`) of the results file at ``out``; "" when none."""
    text = out.read_text() if out.is_file() else ""
    start = text.find(PREFACE_MARK)
    end = text.find(FIRST_TABLE, start)
    return text[start:end] if start >= 0 and end > start else ""


def write_results(exp: Path, arms: list[str], rounds: int, out: Path | None = None) -> Path:
    """Write the results table (markdown) and its plot (PNG, beside it); returns the table's path. A hand-written
    preface already in the file (:data:`PREFACE_MARK`) stays, before the first table."""
    out = Path(out) if out is not None else exp / "results.md"
    plot = out.with_name(out.stem + "-accuracy.png")
    plot_accuracy(exp, arms, rounds, plot)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = results_markdown(exp, arms, rounds, plot.name)
    preface = _hand_written_preface(out)
    if preface:
        md = md.replace(FIRST_TABLE, preface + FIRST_TABLE, 1)
    out.write_text(md)
    return out
