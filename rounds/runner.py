"""The round runner: turns checkpoint C(N-1) into C(N) through a fixed list of stages, skipping finished ones.

    alignment round 1 --config configs/default.yaml [key.path=value ...]

Every stage writes under ``runs/<name>/round-<N>/``. A stage is finished when its marker ``stages/<stage>.json``
exists with a key equal to the hash of the stage's config section, the keys of the stages before it, the starting
model and the code version; then it is skipped. Outputs are written to temporary names and renamed into place, and
the marker is written last, so a killed run never leaves a stage that looks finished. vLLM stages (generate, eval)
run as their own processes: vLLM spawns workers, and its memory is returned before training starts.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from alignment.config import RoundConfig, config_to_dict
from alignment.env import library_versions
from alignment.hardware import engine_dtypes, hardware_record
from alignment.models import resolve_model
from alignment.records import atomic_path, json_sha256, read_json, tree_sha256, write_json
from rounds import stages

log = logging.getLogger(__name__)

# (stage, function, config sections its key depends on). Order is the dependency order.
STAGES = [
    ("prompts", stages.prompts, ("prompts", "eval", "decontamination")),
    ("generate", stages.generate, ("generation", "seed", "device")),
    ("filter", stages.filter_candidates, ("filters", "eval", "decontamination", "seed")),
    ("verify", stages.verify, ()),
    ("reward_model", stages.reward_model, ("reward_model", "seed", "device")),
    ("score", stages.score, ("reward_model",)),
    ("select", stages.select, ("selection",)),
    ("sft", stages.sft, ("sft", "model", "seed", "device")),
    ("dpo", stages.dpo, ("dpo", "model", "seed", "device", "eval", "generation")),  # eval: to choose variants
    ("eval", stages.evaluate, ("eval", "generation")),
    ("gate", stages.gate, ("gate",)),
    ("report", stages.report, ()),
]


def code_version() -> str:
    """Hash of the project's source and shipped data: a code change re-runs the stages it could affect."""
    root = Path(__file__).resolve().parent.parent
    files = sorted(
        p
        for pkg in ("alignment", "rounds", "reward", "synth_data")
        for p in (root / pkg).rglob("*")
        if p.suffix in {".py", ".jsonl"} and "__pycache__" not in p.parts
    )
    return json_sha256({str(p.relative_to(root)): tree_sha256(p) for p in files})[:16]


@dataclass
class Round:
    """What a stage needs: the config, where to write, where the round starts from, and earlier rounds' folders."""

    cfg: RoundConfig
    index: int
    dir: Path
    start_model: str
    run_dir: Path
    start_round: int | None = None
    """The round whose model ``start_model`` is (None: the configured policy)."""
    metrics: dict = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.dir / name

    def earlier_rounds(self) -> list[Path]:
        return [self.run_dir / f"round-{i}" for i in range(1, self.index)]


def _stage_key(cfg: RoundConfig, name: str, sections: tuple[str, ...], upstream: str, start: str, code: str) -> str:
    conf = {s: config_to_dict(getattr(cfg, s)) for s in sections}
    return json_sha256({"stage": name, "config": conf, "upstream": upstream, "start": start, "code": code})[:16]


def last_promoted(run_dir: Path, before: int) -> int | None:
    """The latest round before ``before`` whose gate promoted its model (None: none did, start from the policy)."""
    for k in range(before - 1, 0, -1):
        decision = run_dir / f"round-{k}" / "promotion.json"
        if decision.exists() and read_json(decision)["promoted"]:
            return k
    return None


def start_model_for(cfg: RoundConfig, index: int) -> tuple[str, int | None]:
    """Where round ``index`` starts, and from which round: round 1 from the configured policy; round N from the last
    promoted round's exported model (round N-1's when its gate passed), or the policy if no round was promoted.
    Round N-1 is built first if it is missing (finishing a round skips its finished stages, so this is quick)."""
    if index > 1:
        run_round(cfg, index - 1)
        parent = last_promoted(run_dir_for(cfg), index)
        if parent is not None:
            return str((run_dir_for(cfg) / f"round-{parent}" / "model").resolve()), parent
    return resolve_model(cfg.model.policy, cfg.model.cache_dir), None


def check_models(cfg: RoundConfig, start: str) -> None:
    """Fail before any stage runs if the policy or the RM backbone cannot render chats (no chat template)."""
    from alignment.models import load_chat_tokenizer

    load_chat_tokenizer(start)
    rm = cfg.reward_model
    load_chat_tokenizer(resolve_model(rm.pretrained or rm.base, cfg.model.cache_dir))


def run_dir_for(cfg: RoundConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name


def stages_from(force: tuple[str, ...] | list[str]) -> list[str]:
    """The stages to redo for ``--force``: each named stage and every stage after it (each depends on the one before,
    directly or through the stages in between). Unknown names are a ValueError listing the stages."""
    names = [name for name, _, _ in STAGES]
    unknown = [f for f in force if f not in names]
    if unknown:
        raise ValueError(f"--force: unknown stage {', '.join(map(repr, unknown))} (stages: {', '.join(names)})")
    if not force:
        return []
    return names[min(names.index(f) for f in force) :]


def run_round(cfg: RoundConfig, index: int, force: tuple[str, ...] | list[str] = ()) -> dict:
    """Run (or finish) round ``index``; returns its manifest. ``force`` names stages of this round to redo, with
    every stage after them (earlier rounds built on the way are only finished, never forced)."""
    if index < 1:
        raise ValueError(f"round numbers start at 1, got {index}")
    redo = stages_from(force)
    stages.check_training_config(cfg)
    start, parent = start_model_for(cfg, index)
    round_dir = run_dir_for(cfg) / f"round-{index}"
    (round_dir / "stages").mkdir(parents=True, exist_ok=True)
    for name in redo:
        if (round_dir / "stages" / f"{name}.json").exists():
            log.info("stage %-12s forced: its marker is removed, it runs again", name)
            (round_dir / "stages" / f"{name}.json").unlink()
    cfg_path = round_dir / "config.yaml"
    cfg_yaml = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    if not cfg_path.exists() or cfg_path.read_text() != cfg_yaml:
        with atomic_path(cfg_path) as tmp:
            tmp.write_text(cfg_yaml)

    check_models(cfg, start)
    rnd = Round(cfg=cfg, index=index, dir=round_dir, start_model=start, run_dir=run_dir_for(cfg), start_round=parent)
    code = code_version()
    # the starting checkpoint's identity in the stage keys: its path, or the parent round's model hash (hashed once,
    # when the parent round finished)
    parent_hash = None if parent is None else read_json(Path(start).parent / "manifest.json")["outputs"]["model_sha256"]
    start_id = start if parent_hash is None else parent_hash
    manifest_path = round_dir / "manifest.json"
    manifest = {
        "round": index,
        "run": cfg.name,
        "start_model": start,
        "parent_round": parent,
        "config": config_to_dict(cfg),
        "code_version": code,
        "libraries": library_versions(),
        "hardware": hardware_record(),
        "engines": engine_dtypes(cfg),  # what each engine runs with here; stages record what actually ran
        "stages": {},
    }
    log.info("round %d of run '%s' in %s, starting from %s", index, cfg.name, round_dir, start)
    upstream = ""
    t_round = time.time()
    for name, fn, sections in STAGES:
        key = _stage_key(cfg, name, sections, upstream, start_id, code)
        marker = round_dir / "stages" / f"{name}.json"
        if marker.exists() and (done := read_json(marker)).get("key") == key:
            log.info("stage %-12s finished earlier (%.1fs), skipped", name, done["duration_s"])
            manifest["stages"][name] = {**done, "skipped": True}
            rnd.metrics[name] = done.get("metrics", {})
        else:
            marker.unlink(missing_ok=True)
            log.info("stage %-12s started", name)
            t0 = time.time()
            metrics = fn(rnd) or {}
            duration = round(time.time() - t0, 1)
            done = {
                "key": key,
                "duration_s": duration,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "metrics": metrics,
            }
            write_json(done, marker)
            rnd.metrics[name] = metrics
            manifest["stages"][name] = {**done, "skipped": False}
            log.info("stage %-12s done in %.1fs", name, duration)
        upstream = key
        write_json(manifest, manifest_path)  # after every stage, so a killed run still has a record

    manifest["inputs"] = {
        "start_model_sha256": parent_hash or (tree_sha256(start) if Path(start).exists() else start),
        "prompts_sha256": tree_sha256(round_dir / "prompts.parquet"),
        "candidates_sha256": tree_sha256(round_dir / "candidates.parquet"),
    }
    manifest["outputs"] = {
        "model_sha256": tree_sha256(round_dir / "model"),
        "sft_data_sha256": tree_sha256(round_dir / "sft.parquet"),
        "dpo_data_sha256": tree_sha256(round_dir / "dpo.parquet"),
    }
    generated = rnd.metrics.get("generate", {})
    manifest["generation"] = {k: generated.get(k) for k in ("backend", "generator", "teacher", "sampling")}
    manifest["counts"] = {k: rnd.metrics[k] for k in ("prompts", "filter", "verify", "select") if k in rnd.metrics}
    manifest["timings_s"] = {name: manifest["stages"][name]["duration_s"] for name, _, _ in STAGES}
    manifest["stages_total_s"] = round(sum(manifest["timings_s"].values()), 1)  # compute that built the round
    manifest["invocation_s"] = round(time.time() - t_round, 1)  # this invocation (seconds when all were skipped)
    manifest["eval"] = read_json(round_dir / "eval.json")
    manifest["promotion"] = read_json(round_dir / "promotion.json")
    manifest["model"] = str((round_dir / "model").resolve())
    write_json(manifest, manifest_path)
    write_lineage(run_dir_for(cfg))
    log.info("round %d done: model %s; eval %s", index, manifest["model"], json.dumps(manifest["eval"]["delta"]))
    if not manifest["promotion"]["promoted"]:
        log.warning(
            "round %d NOT promoted (%s): round %d will start from %s",
            index,
            "; ".join(manifest["promotion"]["reasons"]),
            index + 1,
            manifest["promotion"]["next_start"],
        )
    return manifest


def write_lineage(run_dir: Path) -> dict:
    """``<run>/lineage.json``: for every finished round, its parent (the round its model started from, or the base
    policy), checkpoint and data hashes, eval results and promotion decision, from the rounds' manifests."""
    rounds = []
    for rd in sorted(run_dir.glob("round-*"), key=lambda p: int(p.name[6:]) if p.name[6:].isdigit() else -1):
        manifest_path = rd / "manifest.json"
        if not rd.name[6:].isdigit() or not manifest_path.exists():
            continue
        m = read_json(manifest_path)
        if "promotion" not in m:  # a round still running (or killed): its manifest has no outcome yet
            continue
        parent = m.get("parent_round")
        rounds.append(
            {
                "round": m["round"],
                "parent": "base" if parent is None else f"round-{parent}",
                "start_model": m["start_model"],
                "start_model_sha256": m["inputs"]["start_model_sha256"],
                "model": m["model"],
                "model_sha256": m["outputs"]["model_sha256"],
                "data_sha256": {
                    "prompts": m["inputs"]["prompts_sha256"],
                    "candidates": m["inputs"]["candidates_sha256"],
                    "sft": m["outputs"]["sft_data_sha256"],
                    "dpo": m["outputs"]["dpo_data_sha256"],
                },
                "code_version": m["code_version"],
                "eval": {"model": m["eval"]["model"], "start": m["eval"]["start"], "delta": m["eval"]["delta"]},
                "promotion": {k: m["promotion"][k] for k in ("promoted", "reasons", "compared_to")},
            }
        )
    promoted = [r["round"] for r in rounds if r["promotion"]["promoted"]]
    lineage = {"run": run_dir.name, "rounds": rounds, "last_promoted": promoted[-1] if promoted else None}
    write_json(lineage, run_dir / "lineage.json")
    return lineage


def status(output_dir: str | Path = "runs") -> list[dict]:
    """Every run under ``output_dir``: its rounds, each stage's state (done with its duration, or not done), the
    round's exported model, its eval and whether its gate promoted it. Reads markers and manifests only."""
    rows = []
    root = Path(output_dir)
    runs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for run in runs:
        rounds = sorted((p for p in run.glob("round-*") if p.name[6:].isdigit()), key=lambda p: int(p.name[6:]))
        for rd in rounds:
            stage_states = {}
            for name, _, _ in STAGES:
                marker = rd / "stages" / f"{name}.json"
                stage_states[name] = read_json(marker)["duration_s"] if marker.exists() else None
            done = all(v is not None for v in stage_states.values())
            manifest = read_json(rd / "manifest.json") if (rd / "manifest.json").exists() else {}
            decision = read_json(rd / "promotion.json") if done and (rd / "promotion.json").exists() else None
            rows.append(
                {
                    "run": run.name,
                    "round": int(rd.name[6:]),
                    "complete": done,
                    "stages": stage_states,
                    "model": str(rd / "model") if done and (rd / "model").exists() else None,
                    "eval": manifest.get("eval", {}).get("model") if done else None,
                    "promoted": None if decision is None else decision["promoted"],
                    "gate": None if decision is None else "; ".join(decision["reasons"]),
                }
            )
    return rows


def format_status(rows: list[dict]) -> str:
    """``alignment status`` as text: one line per round, then one per stage."""
    if not rows:
        return "no runs found"
    lines = []
    for r in rows:
        state = "complete" if r["complete"] else "incomplete"
        lines.append(f"{r['run']}  round {r['round']}  {state}")
        for name, seconds in r["stages"].items():
            lines.append(
                f"    {name:<13}{'done' if seconds is not None else '-':<6}{'' if seconds is None else f'{seconds:.1f}s'}"
            )
        if r["model"]:
            lines.append(f"    model        {r['model']}")
        if r["eval"]:
            lines.append(
                "    eval         " + ", ".join(f"{c} {v['accuracy']:.3f}" for c, v in sorted(r["eval"].items()))
            )
        if r["promoted"] is not None:
            lines.append(f"    promoted     {'yes' if r['promoted'] else 'NO'} ({r['gate']})")
    return "\n".join(lines)
