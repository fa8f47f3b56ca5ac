"""The stages of a round, in order. Each reads the files of the stages before it and writes its own, joining records
by ``prompt_id`` / ``candidate_id``. Each returns a small dict of metrics for the manifest.

The heavy lifting stays in vLLM (generate, eval: separate processes) and TRL (reward model, SFT, DPO).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import yaml

from alignment.config import ConfigError, config_to_dict
from alignment.records import read_json, read_parquet, write_json, write_parquet
from reward.verifiers import partial_credit
from reward.verifiers import verify as verify_response
from rounds.keys import (
    HashCache,
    code_id,
    eval_suite_files,
    files_id,
    model_id,
    prompt_files,
    reward_files,
    teacher_files,
)
from rounds.layout import (
    PAIR_SCHEMA,
    SFT_SCHEMA,
    VERDICT_SCHEMA,
    EvalSummary,
    Promotion,
    Round,
    Selection,
    Stage,
    round_label,
    round_path,
)

if TYPE_CHECKING:
    from alignment.config import RoundConfig

log = logging.getLogger(__name__)

STAGES: list[Stage] = []
"""The stages in the order they run: each ``@stage`` below adds one, in the order of this file."""


def stage(
    name: str,
    *,
    config: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    files: Callable[[RoundConfig], list[str]] | None = None,
    code: tuple[str, ...] = (),
    records: tuple[str, ...] = (),
) -> Callable[[Callable[[Round], dict]], Callable[[Round], dict]]:
    """Declare the decorated function as the next stage, with what its key is made of (see ``Stage``)."""

    def register(fn: Callable[[Round], dict]) -> Callable[[Round], dict]:
        STAGES.append(Stage(name, fn, config, outputs, files, code, records))
        return fn

    return register


def _prompts_by_id(rnd: Round) -> dict[str, dict]:
    return {p["prompt_id"]: p for p in read_parquet(rnd.path("prompts.parquet"))}


def _by_capability(rows: list[dict], prompts: dict[str, dict]) -> dict[str, int]:
    return dict(sorted(Counter(prompts[r["prompt_id"]]["capability"] for r in rows).items()))


def _decontaminator(rnd: Round, *, min_words: int = 1):
    from alignment.evaluate import load_items
    from synth_data.decontaminate import Decontaminator

    cfg = rnd.cfg.decontamination
    return Decontaminator(load_items(rnd.cfg.eval.suites), cfg.ngram, cfg.threshold, min_words=min_words)


@stage(
    "prompts", config=("prompts", "eval", "decontamination", "seed"), outputs=("prompts.parquet",), files=prompt_files
)
def prompts(rnd: Round) -> dict:
    """The round's prompts: the pool (built-in + user sources) minus anything overlapping the evaluation suites
    (a verbatim eval prompt overlaps fully, so it is always removed), drawn by the configured mix with prompts solved
    in every earlier round down-weighted."""
    from synth_data.prompts import build_prompt_set, write_prompts

    decontaminator = _decontaminator(rnd)
    reason = f"decontaminated: {rnd.cfg.decontamination.ngram}-gram overlap with an evaluation item"

    def exclude(record: dict) -> str | None:
        text = "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")
        return reason if decontaminator.is_contaminated(text) else None

    records, stats = build_prompt_set(rnd.cfg.prompts, rnd.index, earlier_rounds=rnd.earlier_rounds(), exclude=exclude)
    write_prompts(records, rnd.path("prompts.parquet"))
    return {"prompts": len(records), "by_capability": dict(Counter(r["capability"] for r in records)), **stats}


@stage(
    "generate",
    config=("generation", "seed", "device"),
    outputs=("candidates.parquet",),
    files=teacher_files,
    records=("candidates.stats.json", "candidates.shards"),
)
def generate(rnd: Round) -> dict:
    """K candidates per prompt from the round's starting model or the teacher (its own process: vLLM spawns
    workers; transformers when vLLM is not installed)."""
    from alignment.jobs import run_job

    out = rnd.path("candidates.parquet")
    job = {
        "config": str(rnd.path("config.yaml")),
        "round": rnd.index,
        "model": rnd.start_model,
        "prompts": str(rnd.path("prompts.parquet")),
        "out": str(out),
    }
    run_job("synth_data.generate", job, rnd.path("jobs/generate.json"))
    return read_json(out.with_suffix(".stats.json"))


@stage(
    "filter",
    config=("filters", "eval", "decontamination", "seed"),
    outputs=("filtered.parquet",),
    files=eval_suite_files,
)
def filter_candidates(rnd: Round) -> dict:
    """Every candidate with ``drop_reason`` (null when kept), ``drop_detail`` and style ``flags``: empty, truncated,
    degenerate repetition, incoherent (mean log-prob), eval overlap, exact/near duplicate replies within a prompt (also
    of earlier rounds' SFT replies), style cap."""
    from synth_data.filters import apply_filters
    from synth_data.generate import CANDIDATE_SCHEMA

    earlier_sft: list[dict] = []
    for folder in rnd.earlier_rounds():
        if (folder / "sft.parquet").exists():
            earlier_sft.extend(read_parquet(folder / "sft.parquet"))
    # A response shorter than one n-gram cannot carry an eval item; checked whole, a bare number would match by chance.
    decontaminator = _decontaminator(rnd, min_words=rnd.cfg.decontamination.ngram)
    prompts_by_id = _prompts_by_id(rnd)

    def verdict_rank(row: dict) -> int:
        # dedup keeps the best-ranked of a group of duplicates: a verified pass over a reply without a verifier
        # over a failure, so a correct short answer is never dropped as the duplicate of a wrong one
        passed = verify_response(row["text"], prompts_by_id[row["prompt_id"]], finish_reason=row["finish_reason"])
        return {True: 0, None: 1, False: 2}[passed.passed]

    rows, stats = apply_filters(
        read_parquet(rnd.path("candidates.parquet")),
        prompts_by_id,
        rnd.cfg.filters,
        decontaminator=decontaminator,
        earlier_sft=earlier_sft,
        seed=rnd.cfg.seed,
        rank=verdict_rank,
    )
    schema = CANDIDATE_SCHEMA.append(pa.field("drop_reason", pa.string()))
    schema = schema.append(pa.field("drop_detail", pa.string())).append(pa.field("flags", pa.list_(pa.string())))
    write_parquet(rows, rnd.path("filtered.parquet"), schema=schema)
    return {**stats, "earlier_sft_rows": len(earlier_sft)}


@stage("verify", outputs=("verdicts.parquet", "rm_pairs.parquet"))
def verify(rnd: Round) -> dict:
    """Verifier verdicts for kept candidates, and this round's verifier-derived preference pairs for the RM."""
    from reward.reward_model import verifier_pairs

    prompts_by_id = _prompts_by_id(rnd)
    kept = [c for c in read_parquet(rnd.path("filtered.parquet")) if c["drop_reason"] is None]
    rows = []
    for c in kept:
        # Constraints may stay a JSON string; a truncated candidate fails whatever its capability.
        item = prompts_by_id[c["prompt_id"]]
        verdict = verify_response(c["text"], item, finish_reason=c["finish_reason"])
        rows.append(
            {
                "prompt_id": c["prompt_id"],
                "candidate_id": c["candidate_id"],
                "text": c["text"],
                "verified": verdict.passed,
                "verifier_reason": verdict.reason,
                "verifier_flags": list(verdict.flags),
                "mean_logprob": c.get("mean_logprob"),  # selection.rank_verified_by likelihood / least_likely
                "verifier_credit": partial_credit(c["text"], item, verdict),  # selection.partial_credit ranks by it
            }
        )
    write_parquet(rows, rnd.path("verdicts.parquet"), schema=VERDICT_SCHEMA)
    pairs = verifier_pairs(prompts_by_id, rows, source=round_label(rnd.index))
    write_parquet(pairs, rnd.path("rm_pairs.parquet"), schema=PAIR_SCHEMA)
    checked = [r for r in rows if r["verified"] is not None]  # chat has no verifier: the RM alone scores it
    passed = [r for r in checked if r["verified"]]
    return {
        "verified": len(checked),
        "unverifiable": len(rows) - len(checked),
        "passed": len(passed),
        "pass_rate_by_capability": {
            cap: round(sum(1 for r in passed if prompts_by_id[r["prompt_id"]]["capability"] == cap) / n, 4)
            for cap, n in _by_capability(checked, prompts_by_id).items()
        },
        "rm_pairs": len(pairs),
    }


def _preference_pairs(rnd: Round) -> tuple[list[dict], dict[str, int]]:
    """Every preference pair collected so far: this and earlier rounds' verifier pairs (newest first), then seeds."""
    from reward.seed_preferences import load_seed_pairs

    pairs: list[dict] = []
    sources: dict[str, int] = {}
    for folder in [rnd.dir, *reversed(rnd.earlier_rounds())]:
        found = read_parquet(folder / "rm_pairs.parquet")
        sources[folder.name] = len(found)
        pairs.extend(found)
    seed = rnd.cfg.reward_model.seed_pairs
    seeds: list[dict] = []
    if seed is not None:
        seeds = load_seed_pairs(None if seed == "builtin" else seed)
        sources["seed"] = len(seeds)
        pairs.extend(seeds)
    pairs = pairs[: rnd.cfg.reward_model.max_pairs]
    synthetic = _synthetic_pairs(rnd, seeds)
    sources["synthetic"] = len(synthetic)
    return pairs + synthetic, sources


def _synthetic_pairs(rnd: Round, seeds: list[dict]) -> list[dict]:
    """Good replies (seed pairs' chosen sides, this round's unflagged verified passes), each over a broken copy."""
    from reward.synthetic import synthetic_pairs

    prompts_by_id = _prompts_by_id(rnd)
    good = [{"messages": p["messages"], "reply": p["chosen"], "capability": p["capability"]} for p in seeds]
    for v in read_parquet(rnd.path("verdicts.parquet")):
        if v["verified"] is True and not list(v.get("verifier_flags") or []):
            prompt = prompts_by_id[v["prompt_id"]]
            good.append({"messages": prompt["messages"], "reply": v["text"], "capability": prompt["capability"]})
    return synthetic_pairs(good, rnd.cfg.reward_model.synthetic_negatives, seed=rnd.cfg.seed + rnd.index)


@stage(
    "reward_model",
    config=("reward_model", "seed", "device", "accelerate"),
    outputs=("rm", "rm_split.jsonl"),
    records=("tensorboard/reward_model",),
    files=reward_files,
)
def reward_model(rnd: Round) -> dict:
    """Train the RM on all preference data so far (or take the configured pretrained RM as is)."""
    from alignment.models import resolve_model
    from reward.reward_model import check_heldout_accuracy

    cfg = rnd.cfg.reward_model
    if cfg.pretrained:
        return {"pretrained": resolve_model(cfg.pretrained, rnd.cfg.model.cache_dir)}
    pairs, sources = _preference_pairs(rnd)
    base = resolve_model(cfg.base, rnd.cfg.model.cache_dir)
    metrics = _train(
        rnd,
        "reward_model",
        "reward_model",
        pairs,
        base,
        rnd.path("rm"),
        seed=rnd.cfg.seed,
        report_to=list(rnd.cfg.report_to),
        log_dir=rnd.path("tensorboard/reward_model"),
        split_out=rnd.path("rm_split.jsonl"),
    )
    log.info(
        "reward model: held-out pairwise accuracy %s on %d pairs", metrics["heldout_accuracy"], metrics["heldout_pairs"]
    )
    check_heldout_accuracy(
        metrics, cfg.min_heldout_accuracy, cfg.heldout_confidence
    )  # a weak RM stops the round here, with the numbers
    return {**metrics, "pair_sources": sources, "processes": rnd.cfg.accelerate.num_processes}


@stage("score", config=("reward_model",), outputs=("scores.parquet",))
def score(rnd: Round) -> dict:
    """RM score of every kept candidate (rendered from messages with the RM's own template) + verifier penalty."""
    import time

    from alignment.models import resolve_model
    from reward.reward_model import RewardScorer
    from reward.select import combine_scores

    cfg = rnd.cfg.reward_model
    prompts_by_id = _prompts_by_id(rnd)
    verdicts = read_parquet(rnd.path("verdicts.parquet"))
    rm_path = resolve_model(cfg.pretrained, rnd.cfg.model.cache_dir) if cfg.pretrained else str(rnd.path("rm"))
    scorer = RewardScorer(
        rm_path,
        device=rnd.cfg.device,
        batch_size=cfg.score_batch_size,
        max_length=cfg.max_length,
        precision=cfg.precision,
    )
    conversations = [
        [*prompts_by_id[v["prompt_id"]]["messages"], {"role": "assistant", "content": v["text"]}] for v in verdicts
    ]
    t0 = time.time()
    rm_scores = scorer.score(conversations)
    seconds = time.time() - t0
    scored = combine_scores([{**v, "rm_score": s} for v, s in zip(verdicts, rm_scores, strict=True)])
    write_parquet(scored, rnd.path("scores.parquet"))
    return {
        "scored": len(scored),
        "device": scorer.device,
        "dtype": scorer.dtype,
        "seconds": round(seconds, 1),
        "candidates_per_s": round(len(scored) / max(seconds, 1e-9), 1),
    }


@stage("select", config=("selection", "seed"), outputs=("sft.parquet", "dpo.parquet", "selection.json"))
def select(rnd: Round) -> dict:
    """Rejection sampling: SFT rows (best-of-K, floor, up to m per prompt) plus earlier rounds' carried-over rows, DPO
    pairs (best vs worst or random; a pair the RM alone decides needs a raw RM margin of ``selection.min_margin``);
    ``selection.json`` with counts by capability and reason, pass rates, the margin sweep, the RM's pass-over-fail AUC
    and histograms. Seeded draws use the run's seed + the round; the control arm (``strategy: random``) draws with
    ``reward.select.control_seed`` (``selection.random_seed`` + the round when set), recorded as ``draw_seed``."""
    from reward.select import carry_over_rows, margin_sweep, select_pairs, select_sft, selection_report

    cfg = rnd.cfg.selection
    prompts_by_id = _prompts_by_id(rnd)
    scored = read_parquet(rnd.path("scores.parquet"))
    sft_rows, sft_dropped = select_sft(scored, prompts_by_id, cfg)
    seed = rnd.cfg.seed + rnd.index
    pairs, pair_dropped = select_pairs(scored, prompts_by_id, cfg, seed=seed)
    drawn: dict[str, int] = {}  # the control's draw seed, for selection.json
    if cfg.strategy == "random":  # the control arm: the same counts, drawn without the ranking
        from reward.select import control_seed, randomize_selection

        drawn["draw_seed"] = control_seed(cfg, rnd.cfg.seed, rnd.index)
        sft_rows, pairs = randomize_selection(scored, sft_rows, pairs, seed=drawn["draw_seed"])
    carried: list[dict] = []
    if cfg.carry_over:
        # A row carried into an earlier round appears in several sft.parquet files: carry_over_rows keeps it once,
        # with the round it was first selected in.
        earlier = [read_parquet(d / "sft.parquet") for d in rnd.earlier_rounds() if (d / "sft.parquet").exists()]
        carried = carry_over_rows(earlier, cfg.carry_over_max, exclude=sft_rows)
    rows = [{**r, "carried_from": None} for r in sft_rows] + carried
    write_parquet([_sft_record(r) for r in rows], rnd.path("sft.parquet"), schema=SFT_SCHEMA)
    write_parquet(pairs, rnd.path("dpo.parquet"))
    margins = margin_sweep(scored, prompts_by_id, cfg, seed=seed)
    report = selection_report(
        scored, prompts_by_id, sft_rows, pairs, sft_dropped, pair_dropped, carried=carried, margins=margins
    )
    report |= {"strategy": cfg.strategy, **drawn}  # rejection_sampling, or random (the control arm) and its draw
    write_json(Selection.check(report, "selection.json"), rnd.path("selection.json"))
    return report


def _sft_record(row: dict) -> dict:
    return {name: row.get(name) for name in SFT_SCHEMA.names}


def _training_config_file(rnd: Round, stage: str) -> dict[str, str]:
    return {
        "training_config.yaml": yaml.safe_dump(
            {"stage": stage, "round": rnd.index, "start_model": rnd.start_model, **config_to_dict(rnd.cfg)},
            sort_keys=False,
        )
    }


def check_training_config(cfg: RoundConfig) -> None:
    """Fail before any stage runs on combinations of settings that only a late stage (SFT, gate) would otherwise
    reject. Single values (choices such as start_from, export_dtype and every precision; ranges) are checked when the
    config loads (``alignment.config``)."""
    if cfg.sft.start_from == "base" and not cfg.selection.carry_over:
        raise ConfigError(
            "sft.start_from=base trains each round from the base model on the accumulated SFT data: it needs "
            "selection.carry_over=true (now false), or earlier rounds' rows would be lost"
        )
    if cfg.selection.random_seed is not None and cfg.selection.strategy != "random":
        raise ConfigError(
            f"selection.random_seed ({cfg.selection.random_seed}) seeds the control arm's draws only: it needs "
            f"selection.strategy: random (now {cfg.selection.strategy}); with rejection sampling it would change "
            "nothing but rerun every stage from select on"
        )
    for key, value in [("gate.tolerance", cfg.gate.tolerance)] + [
        (f"gate.tolerances.{cap}", v) for cap, v in cfg.gate.tolerances.items()
    ]:
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key} is an accuracy difference between 0 and 1, got {value}")
    if cfg.gate.confidence is not None and not 0.0 < cfg.gate.confidence < 1.0:
        raise ConfigError(f"gate.confidence must be between 0 and 1 (exclusive) or null, got {cfg.gate.confidence}")
    from alignment.launch import accelerate_config_file, launched

    if launched(cfg.accelerate):
        n = cfg.accelerate.num_processes
        for key in ("reward_model", "sft", "dpo"):
            if getattr(cfg, key).batch_size % n:
                raise ConfigError(
                    f"{key}.batch_size ({getattr(cfg, key).batch_size}) is the global batch: it must be divisible by "
                    f"accelerate.num_processes ({n})"
                )
        if cfg.accelerate.config_file is not None:
            accelerate_config_file(cfg.accelerate.config_file)


def sft_start_model(rnd: Round) -> str:
    """The SFT starting point: the round's starting checkpoint (``sft.start_from: previous``) or, as in Llama 3,
    the run's first policy (``base``), trained on the accumulated SFT data (this round's rows + carried ones)."""
    from alignment.models import resolve_model

    check_training_config(rnd.cfg)
    if rnd.cfg.sft.start_from == "previous":
        return rnd.start_model
    return resolve_model(rnd.cfg.model.policy, rnd.cfg.model.cache_dir)


def _train(
    rnd: Round,
    kind: str,
    name: str,
    rows: list[dict] | Path,
    model: str,
    out: Path,
    *,
    seed: int,
    changes: dict | None = None,
    **kwargs,
) -> dict:
    """Train ``kind`` (reward_model, sft or dpo: the config section of that name, with ``changes``) on ``rows`` (the
    records, or the parquet file holding them): in this process, or under ``accelerate launch`` when the config asks
    for more than one process (:mod:`alignment.launch`). Both ways run the same trainer function with the same
    arguments; launched, the records travel as a parquet file."""
    import importlib

    from alignment.launch import TRAINERS, launch_training, launched
    from alignment.train_common import use_cuda

    cfg = rnd.cfg
    work_dir = rnd.path(f"work/{name}")
    slug = name.replace("/", "-")
    if not launched(cfg.accelerate):
        module, function = TRAINERS[kind]
        train = getattr(importlib.import_module(module), function)
        section = dataclasses.replace(getattr(cfg, kind), **(changes or {}))
        records = read_parquet(rows) if isinstance(rows, Path) else rows
        return train(records, model, section, out, seed=seed, device=cfg.device, work_dir=work_dir, **kwargs)
    if not isinstance(rows, Path):
        write_parquet(rows, rnd.path(f"jobs/{slug}.rows.parquet"))
        rows = rnd.path(f"jobs/{slug}.rows.parquet")
    job = {
        "config": str(rnd.path("config.yaml")),
        "section": kind,
        "changes": changes or {},
        "rows": str(rows),
        "model": model,
        "out": str(out),
        "seed": seed,
        "work_dir": str(work_dir),
        "metrics": str(rnd.path(f"jobs/{slug}.metrics.json")),
        "kwargs": {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()},
    }
    job_file = rnd.path(f"jobs/{slug}.json")
    return launch_training(kind, job, job_file, cfg.accelerate, cpu=not use_cuda(cfg.device))


@stage("sft", config=("sft", "model", "seed", "device", "accelerate"), outputs=("sft",), records=("tensorboard/sft",))
def sft(rnd: Round) -> dict:
    start = sft_start_model(rnd)
    metrics = _train(
        rnd,
        "sft",
        "sft",
        rnd.path("sft.parquet"),
        start,
        rnd.path("sft"),
        seed=rnd.cfg.seed,
        extra_files=_training_config_file(rnd, "sft"),
        export_dtype=rnd.cfg.model.export_dtype,
        report_to=list(rnd.cfg.report_to),
        log_dir=rnd.path("tensorboard/sft"),
    )
    return {**metrics, "start_model": start, "processes": rnd.cfg.accelerate.num_processes}


@stage(
    "dpo",
    config=("dpo", "model", "seed", "device", "eval", "generation", "accelerate"),
    outputs=("model",),
    records=("tensorboard/dpo-*", "variants", "variants.json"),
    files=eval_suite_files,
)
def dpo(rnd: Round) -> dict:
    """DPO from the SFT model; the merged result is the round's exported checkpoint ``model/``.

    With ``dpo.variants`` the main run and each variant train into ``variants/<name>/``, their uniform average goes
    to ``variants/average/``, each is evaluated (``variants/<name>.eval.json``) and the best by mean accuracy over
    the capabilities is copied to ``model/`` (ties go to the average, then to the earlier run); ``variants.json``
    records every candidate's metrics and scores. With no pair in ``dpo.parquet`` DPO is skipped with a warning and
    ``model/`` is a copy of ``sft/``; with ``dpo.enabled: false`` it is skipped the same way, on purpose.
    """
    cfg = rnd.cfg
    _clear_records(rnd, "dpo")  # an earlier run's training logs and variants (this stage re-runs: they are stale)
    if not cfg.dpo.enabled:
        log.info("dpo: off (dpo.enabled: false); the round's model is its SFT model")
        return _sft_as_model(rnd, "dpo.enabled is false")
    pairs = read_parquet(rnd.path("dpo.parquet"))
    if not pairs:
        # Strict selection can leave no pair (e.g. every RM-decided pair under selection.min_margin and no verifier
        # pair): the round goes on with the SFT model as its model instead of failing after SFT; said loudly.
        dropped = Selection.read(rnd.path("selection.json")).dpo.dropped
        why = ", ".join(f"{reason}: {n}" for reason, n in dropped.items()) or "no prompts"
        log.warning("dpo: no preference pair passed selection (%s); the round's model is its SFT model", why)
        return _sft_as_model(rnd, f"no preference pair passed selection ({why})")
    runs: list[tuple[str, dict, int]] = [("main", {}, cfg.seed)]
    for i, v in enumerate(cfg.dpo.variants, start=1):
        changes = {k: getattr(v, k) for k in ("learning_rate", "beta") if getattr(v, k) is not None}
        runs.append((f"v{i}", changes, cfg.seed if v.seed is None else v.seed))
    metrics = {}
    for name, changes, seed in runs:
        out = rnd.path("model") if len(runs) == 1 else rnd.path(f"variants/{name}")
        metrics[name] = _train(
            rnd,
            "dpo",
            f"dpo/{name}",
            rnd.path("dpo.parquet"),
            str(rnd.path("sft")),
            out,
            seed=seed,
            changes=changes,
            extra_files=_training_config_file(rnd, "dpo"),
            export_dtype=cfg.model.export_dtype,
            report_to=list(cfg.report_to),
            log_dir=rnd.path(f"tensorboard/dpo-{name}"),
        )
        shutil.rmtree(rnd.path(f"work/dpo/{name}"), ignore_errors=True)
    if len(runs) == 1:
        return {**metrics["main"], "processes": cfg.accelerate.num_processes}
    return {"runs": metrics, **_average_and_choose(rnd, [name for name, _, _ in runs])}


def _clear_records(rnd: Round, name: str) -> None:
    """Remove what stage ``name`` recorded in an earlier run of it (its ``records`` patterns), so a re-run that
    writes fewer of them (DPO off, fewer variants) leaves none of the old ones beside its own."""
    declared = next(st for st in STAGES if st.name == name)
    for pattern in declared.records:
        for path in rnd.dir.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def _sft_as_model(rnd: Round, why: str) -> dict:
    """DPO skipped (``why``): the round's exported model is a copy of its SFT model."""
    shutil.rmtree(rnd.path("model"), ignore_errors=True)
    shutil.copytree(rnd.path("sft"), rnd.path("model"))
    return {"skipped": why, "pairs": 0}


def _average_and_choose(rnd: Round, names: list[str]) -> dict:
    """Average the variant runs, evaluate every candidate, copy the best to ``model/``."""
    from alignment.average import average_models

    variants = rnd.path("variants")
    average_models([variants / n for n in names], variants / "average", dtype=rnd.cfg.model.export_dtype)
    scores = {}
    candidates = ["average", *names]  # the average first: it wins ties
    runs = [(str(variants / name), variants / f"{name}.eval.json") for name in candidates]
    _run_eval_job(rnd, runs, "eval-variants", rnd.cfg.dpo.variant_eval_items)
    for name, (_, out) in zip(candidates, runs, strict=True):
        result = read_json(out)
        scores[name] = {
            "mean_accuracy": round(sum(r["accuracy"] for r in result.values()) / len(result), 4),
            **{cap: r["accuracy"] for cap, r in result.items()},
        }
    best = max(scores, key=lambda n: scores[n]["mean_accuracy"])  # max keeps the first of equal scores
    tmp = rnd.path("model.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(variants / best, tmp)
    write_json({"chosen": best, "scores": scores[best]}, tmp / "variant.json")  # the export says which run it is
    shutil.rmtree(rnd.path("model"), ignore_errors=True)
    tmp.rename(rnd.path("model"))
    record = {"chosen": best, "scores": scores, "eval_items_per_suite": rnd.cfg.dpo.variant_eval_items}
    write_json(record, rnd.path("variants.json"))
    log.info("DPO variants: %s chosen (%s)", best, {n: s["mean_accuracy"] for n, s in scores.items()})
    return record


def _run_eval_job(rnd: Round, runs: list[tuple[str, Path]], job: str, max_items: int | None = None) -> None:
    """Evaluate each (model, out) of ``runs`` with the round's eval settings, in one process (``alignment.jobs``)."""
    from alignment.jobs import run_job

    cfg = rnd.cfg.eval
    spec = {
        "runs": [{"model": model, "out": str(out)} for model, out in runs],
        "suites": list(cfg.suites),
        "max_items": min((n for n in (max_items, cfg.max_items) if n), default=None),
        "max_new_tokens": cfg.max_new_tokens,
        "config": str(rnd.path("config.yaml")),  # the same engine settings as generation
        "seed": rnd.cfg.seed,
    }
    run_job("alignment.evaluate", spec, rnd.path(f"jobs/{job}.json"))


START_EVAL_SOURCE = "eval_start.source.json"
"""Beside an ``eval_start.json`` another run made (an experiment's first arm): whose it is and its
:func:`start_eval_identity`. The eval stage reuses the copy only when that identity is its own."""


def eval_settings(cfg: RoundConfig) -> dict:
    """What an eval's verdicts depend on besides the model, the suites' content and the code: the eval section, the
    seed and the engine settings the eval job takes from the generation section (backend, vllm, transformers; not K
    or the temperature)."""
    gen = config_to_dict(cfg.generation)
    engine = {k: gen[k] for k in ("backend", "vllm", "transformers")}
    return {"eval": config_to_dict(cfg.eval), "seed": cfg.seed, "engine": engine}


def eval_identity(cfg: RoundConfig, code: str) -> dict:
    """What an eval's verdicts depend on besides the model: the user eval suites' hashes, :func:`eval_settings` and
    the code id ``code`` (the verifiers and the shipped suites). The eval stage records it in ``eval.json``."""
    return {"suites": files_id(eval_suite_files(cfg)), "settings": eval_settings(cfg), "code": code}


def start_eval_identity(cfg: RoundConfig, start_model: str, code: str, cache: HashCache | None = None) -> dict:
    """Everything an eval of ``start_model`` under ``cfg`` depends on, by content where it is a file: the model
    (its folder's hash; ``cache``: the run's, where the runner already hashed its large files) and
    :func:`eval_identity`."""
    return {"model": start_model, "model_id": model_id(start_model, cache), **eval_identity(cfg, code)}


def _copied_start_eval(rnd: Round) -> Path | None:
    """The starting model's eval an experiment copied into this round (:data:`START_EVAL_SOURCE` beside it), when
    its identity is this round's (the model's and suites' content, the eval settings, the code); None otherwise (the
    stage evaluates it itself)."""
    source, start = rnd.path(START_EVAL_SOURCE), rnd.path("eval_start.json")
    if not (source.is_file() and start.is_file() and start.with_suffix(".items.jsonl").is_file()):
        return None
    found = read_json(source)
    wanted = start_eval_identity(rnd.cfg, rnd.start_model, code_id(), HashCache.for_run(rnd.run_dir))
    differ = [k for k, v in wanted.items() if found.get("identity", {}).get(k) != v]
    if differ:
        log.info("not reusing %s's eval of the starting model: its %s differ", found.get("from"), ", ".join(differ))
        return None
    log.info("starting model's eval taken from %s", found.get("from"))
    return start


def _earlier_eval_of(rnd: Round, model: str) -> Path | None:
    """An earlier round's eval of ``model`` (its exported model, or its starting model) with this round's
    :func:`eval_identity` (the same suites by content, eval settings and code), to reuse instead of recomputing; None
    when there is none. An eval made on other items or by other verifiers would give the gate another yardstick."""
    wanted = eval_identity(rnd.cfg, code_id())
    for k in range(rnd.index - 1, 0, -1):
        rd = round_path(rnd.run_dir, k)
        if not (rd / "eval.json").exists() or read_json(rd / "eval.json").get("identity") != wanted:
            continue
        if (rd / "model").resolve() == Path(model).resolve() and (rd / "eval_model.json").exists():
            return rd / "eval_model.json"
        if EvalSummary.read(rd / "eval.json").start_model == model and (rd / "eval_start.json").exists():
            return rd / "eval_start.json"
    return None


@stage(
    "eval",
    config=("eval", "generation"),
    outputs=("eval.json",),
    files=eval_suite_files,
    records=("eval_model.*", "eval_start.*"),  # the summaries, items, settings (and shards) eval.json points to
)
def evaluate(rnd: Round) -> dict:
    """Evaluate the new checkpoint and the round's starting one on the held-out suites; write eval.json.

    The starting checkpoint was usually evaluated by an earlier round of the run with the same suites and settings
    (as that round's model, or as its start), or, in round 1 of an experiment's later arm, by its first arm (copied
    in with :data:`START_EVAL_SOURCE`); those results are reused rather than recomputed.
    """
    new_out = rnd.path("eval_model.json")
    runs = [(str(rnd.path("model")), new_out)]
    start_out = _copied_start_eval(rnd) or _earlier_eval_of(rnd, rnd.start_model)
    if start_out is None:
        start_out = rnd.path("eval_start.json")
        rnd.path(START_EVAL_SOURCE).unlink(missing_ok=True)  # the files are this round's own from here on
        runs.append((rnd.start_model, start_out))
    _run_eval_job(rnd, runs, "eval")  # both models in one process: one vLLM start-up instead of two
    new, start = read_json(new_out), read_json(start_out)
    delta = {cap: round(new[cap]["accuracy"] - start[cap]["accuracy"], 4) for cap in new if cap in start}
    result = {
        "model": new,
        "start": start,
        "start_model": rnd.start_model,
        "delta": delta,
        # relative to the run folder: the items behind each side, for the gate and for tracing regressions
        "model_eval_file": str(new_out.relative_to(rnd.run_dir)),
        "start_eval_file": str(start_out.relative_to(rnd.run_dir)),
        "identity": eval_identity(rnd.cfg, code_id()),  # what a later round checks before reusing these evals
    }
    write_json(EvalSummary.check(result, "eval.json"), rnd.path("eval.json"))
    return result


@stage("gate", config=("gate",), outputs=("promotion.json",))
def gate(rnd: Round) -> dict:
    """Promote the round's model or not: no capability may drop more than its tolerance (and significantly, with
    ``gate.confidence``) below the round's starting model, on the same eval items. Writes ``promotion.json``;
    ``next_start`` is what round N+1 starts from (this model if promoted, else this round's own start)."""
    from alignment.compare import compare, describe

    cfg = rnd.cfg.gate
    ev = EvalSummary.read(rnd.path("eval.json"))
    if cfg.enabled:
        result = compare(
            rnd.run_dir / ev.model_eval_file,
            rnd.run_dir / ev.start_eval_file,
            tolerance=cfg.tolerance,
            tolerances=cfg.tolerances,
            confidence=cfg.confidence,
        )
        promoted = not result["regressed"]
        reasons = [describe(cap, result["capabilities"][cap]) for cap in result["regressed"]]
    else:
        result, promoted, reasons = {"capabilities": {}}, True, ["gate disabled (gate.enabled=false)"]
    decision = {
        "promoted": promoted,
        "reasons": reasons or ["no capability dropped more than its tolerance"],
        "compared_to": rnd.start_model,
        "compared_to_round": rnd.start_round,
        "next_start": str(rnd.path("model").resolve()) if promoted else rnd.start_model,
        "tolerance": cfg.tolerance,
        "tolerances": dict(cfg.tolerances),
        "confidence": cfg.confidence,
        "capabilities": result["capabilities"],
    }
    write_json(Promotion.check(decision, "promotion.json"), rnd.path("promotion.json"))
    log.log(
        logging.INFO if promoted else logging.WARNING,
        "gate: round %d %s (%s)",
        rnd.index,
        "promoted" if promoted else "NOT promoted",
        "; ".join(decision["reasons"]),
    )
    return {"promoted": promoted, "regressed": [] if promoted else list(result["regressed"])}


@stage("report", code=("rounds/report",), records=("report.html",))
def report(rnd: Round) -> dict:
    """``report.html``: the round's data and eval at a glance (plots embedded), next to the earlier rounds'."""
    from rounds.report import write_report

    return {"report": str(write_report(rnd.dir))}
