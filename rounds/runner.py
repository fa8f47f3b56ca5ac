"""The round runner: turns checkpoint C(N-1) into C(N) through a fixed list of stages, skipping finished ones.

    alignment round 1 --config configs/default.yaml [key.path=value ...]

Every stage writes under ``runs/<name>/round-<N>/`` (``rounds.layout``). A stage is finished when its marker
``stages/<stage>.json`` exists with the key its declaration gives now (``rounds.keys.stage_key``: config sections,
user files by content, the previous stage's key and outputs, the starting model's content, earlier rounds, code and
library versions); then it is skipped. Step checkpoints in ``work/<stage>`` are only resumed under the same key. Outputs are written to temporary names and renamed into place, and
the marker is written last, so a killed run never leaves a stage that looks finished. vLLM stages (generate, eval)
run as their own processes: vLLM spawns workers, and its memory is returned before training starts.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import yaml

from alignment.config import RoundConfig, config_to_dict
from alignment.env import library_versions
from alignment.hardware import engine_dtypes, hardware_record
from alignment.models import resolve_model
from alignment.records import atomic_path, json_sha256, read_json, write_json
from rounds import stages
from rounds.disk import check_disk
from rounds.keys import HashCache, code_id, content_id, model_id, stage_key
from rounds.layout import (
    ARTIFACTS,
    LINEAGE,
    Promotion,
    Round,
    Stage,
    round_dirs,
    round_index,
    round_label,
    round_path,
)

log = logging.getLogger(__name__)

STAGES = stages.STAGES  # in order; each declared beside its body in rounds/stages.py


def code_version() -> str:
    """The pipeline's code identity as the manifest records it (every source file and the library versions)."""
    return code_id()


def last_promoted(run_dir: Path, before: int) -> int | None:
    """The latest round before ``before`` whose gate promoted its model (None: none did, start from the policy)."""
    for k in range(before - 1, 0, -1):
        decision = round_path(run_dir, k) / ARTIFACTS.promotion
        if decision.exists() and Promotion.read(decision).promoted:
            return k
    return None


def start_model_for(cfg: RoundConfig, index: int) -> tuple[str, int | None]:
    """Where round ``index`` starts, and from which round: round 1 from the configured policy; round N from the last
    promoted earlier round's exported model, or the policy if no round was promoted. A lookup only: the earlier
    rounds must be finished (:func:`run_round` builds them first)."""
    parent = last_promoted(run_dir_for(cfg), index) if index > 1 else None
    if parent is not None:
        return str((round_path(run_dir_for(cfg), parent) / ARTIFACTS.model).resolve()), parent
    return resolve_model(cfg.model.policy, cfg.model.cache_dir), None


def earlier_rounds_id(run_dir: Path, index: int) -> str:
    """Identity of rounds 1..index-1 as round ``index`` reads them: every stage key and output hash they recorded.
    Redoing an earlier round with other results changes it, so round ``index`` runs again on the new data."""
    seen = {}
    for k in range(1, index):
        markers = round_path(run_dir, k) / ARTIFACTS.markers
        seen[k] = {
            m.stem: {key: read_json(m).get(key) for key in ("key", "outputs")} for m in sorted(markers.glob("*.json"))
        }
    return json_sha256(seen)[:16]


def check_models(cfg: RoundConfig, start: str) -> None:
    """Fail before any stage runs if the policy or the RM backbone cannot render chats (no chat template)."""
    from alignment.models import load_chat_tokenizer

    load_chat_tokenizer(start)
    rm = cfg.reward_model
    load_chat_tokenizer(resolve_model(rm.pretrained or rm.base, cfg.model.cache_dir))


def check_round_disk(rnd: Round, pending: list[str]) -> None:
    """Fail before the first stage of the round that has to run if the disk under the round folder cannot hold what
    ``pending`` (that stage and every one after it) writes (``rounds.disk``). A round with nothing to run is never
    checked, so a finished round is never refused for a full disk."""
    cfg = rnd.cfg
    rm = cfg.reward_model
    rm_base = None if rm.pretrained else resolve_model(rm.base, cfg.model.cache_dir)
    need = check_disk(cfg, rnd.dir, rnd.start_model, rm_base, pending)
    if need:
        log.info("disk: about %.2f GB needed by the stages from %s on, and free", need / 1e9, pending[0])


def run_dir_for(cfg: RoundConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name


def stages_from(force: tuple[str, ...] | list[str]) -> list[str]:
    """The stages to redo for ``--force``: each named stage and every stage after it (each depends on the one before,
    directly or through the stages in between). Unknown names are a ValueError listing the stages."""
    names = [st.name for st in STAGES]
    unknown = [f for f in force if f not in names]
    if unknown:
        raise ValueError(f"--force: unknown stage {', '.join(map(repr, unknown))} (stages: {', '.join(names)})")
    if not force:
        return []
    return names[min(names.index(f) for f in force) :]


def _outputs_id(round_dir: Path, stage: Stage, cache: HashCache) -> dict[str, str]:
    return {name: content_id(round_dir / name, cache) for name in stage.outputs}


def _discard_stale_work(round_dir: Path, stage: Stage, key: str, forced: bool) -> None:
    """Step checkpoints in ``work/<stage>`` belong to the key of the run that wrote them (``stages/<stage>.started``):
    a forced stage, or one whose key changed (its config, or its input: a redone SFT model under DPO), starts
    training fresh instead of resuming another run's LoRA and optimizer state."""
    work = round_dir / ARTIFACTS.work / stage.name
    started = round_dir / ARTIFACTS.markers / f"{stage.name}.started"
    previous = started.read_text().strip() if started.is_file() else None
    if work.exists() and (forced or previous != key):
        why = "forced" if forced else "its key changed since the run that left it"
        log.info("stage %-12s %s: resume state in %s discarded, starting fresh", stage.name, why, work)
        shutil.rmtree(work)
    started.write_text(key + "\n")


def run_round(cfg: RoundConfig, index: int, force: tuple[str, ...] | list[str] = ()) -> dict:
    """Run (or finish) round ``index``; returns its manifest. Rounds 1..index-1 are finished first (their finished
    stages are skipped, so that is quick). ``force`` names stages of this round to redo from scratch, with every
    stage after them (earlier rounds are only finished, never forced)."""
    if index < 1:
        raise ValueError(f"round numbers start at 1, got {index}")
    redo = stages_from(force)
    stages.check_training_config(cfg)
    for k in range(1, index):
        _run_one_round(cfg, k, ())
    return _run_one_round(cfg, index, redo)


def _prepare_round_dir(cfg: RoundConfig, round_dir: Path, redo: list[str]) -> None:
    """Create the round folder, remove the markers of forced stages, and snapshot the resolved config."""
    (round_dir / ARTIFACTS.markers).mkdir(parents=True, exist_ok=True)
    for name in redo:
        if (round_dir / ARTIFACTS.markers / f"{name}.json").exists():
            log.info("stage %-12s forced: its marker is removed, it runs again", name)
            (round_dir / ARTIFACTS.markers / f"{name}.json").unlink()
    cfg_path = round_dir / ARTIFACTS.config
    cfg_yaml = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    if not cfg_path.exists() or cfg_path.read_text() != cfg_yaml:
        with atomic_path(cfg_path) as tmp:
            tmp.write_text(cfg_yaml)


def _run_stage(rnd: Round, st: Stage, key: str, forced: bool, cache: HashCache) -> dict:
    """Run one stage whose marker is missing or stale; returns the marker it wrote (key, duration, metrics, output
    hashes). The marker is written last, after the outputs are in place."""
    marker = rnd.dir / ARTIFACTS.markers / f"{st.name}.json"
    marker.unlink(missing_ok=True)
    _discard_stale_work(rnd.dir, st, key, forced=forced)
    log.info("stage %-12s started", st.name)
    t0 = time.time()
    metrics = st.run(rnd) or {}
    duration = round(time.time() - t0, 1)
    done = {
        "key": key,
        "duration_s": duration,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "metrics": metrics,
        "outputs": _outputs_id(rnd.dir, st, cache),
    }
    write_json(done, marker)
    (rnd.dir / ARTIFACTS.markers / f"{st.name}.started").unlink(missing_ok=True)
    shutil.rmtree(rnd.dir / ARTIFACTS.work / st.name, ignore_errors=True)
    log.info("stage %-12s done in %.1fs", st.name, duration)
    return done


def _run_stages(rnd: Round, manifest: dict, redo: list[str], start_id: str, cache: HashCache) -> None:
    """Every stage in order: skipped when its marker holds the key its declaration gives now, run otherwise. The
    manifest is written after every stage, so a killed run still has a record (and the report stage, last, sees
    the timings of all the others)."""
    earlier = earlier_rounds_id(rnd.run_dir, rnd.index)
    shared_code = code_id(frozenset(rel for st in STAGES for rel in st.code))
    upstream = ""
    disk_checked = False
    for i, st in enumerate(STAGES):
        key = stage_key(st, rnd.cfg, upstream=upstream, start=start_id, earlier=earlier, code=shared_code, cache=cache)
        marker = rnd.dir / ARTIFACTS.markers / f"{st.name}.json"
        if marker.exists() and (done := read_json(marker)).get("key") == key:
            log.info("stage %-12s finished earlier (%.1fs), skipped", st.name, done["duration_s"])
            manifest["stages"][st.name] = {**done, "skipped": True}
        else:
            if not disk_checked:  # every stage from the first to run on runs (its key feeds theirs)
                check_round_disk(rnd, [s.name for s in STAGES[i:]])
                disk_checked = True
            done = _run_stage(rnd, st, key, st.name in redo, cache)
            manifest["stages"][st.name] = {**done, "skipped": False}
        rnd.metrics[st.name] = done.get("metrics", {})
        cache.save()
        upstream = json_sha256({"key": key, "outputs": done.get("outputs")})[:16]
        manifest["timings_s"][st.name] = done["duration_s"]
        manifest["stages_total_s"] = round(sum(manifest["timings_s"].values()), 1)
        write_json(manifest, rnd.dir / ARTIFACTS.manifest)


def _finish_manifest(rnd: Round, manifest: dict, parent_hash: str | None, cache: HashCache) -> None:
    """The round's record once every stage is done: input and output hashes, counts, eval and promotion."""
    recorded = {name: out for st in manifest["stages"].values() for name, out in (st.get("outputs") or {}).items()}

    def artifact_id(name: str) -> str:  # hashed when its stage finished; hashed now if no stage declares it
        return recorded[name] if name in recorded else content_id(rnd.dir / name, cache)

    start = rnd.start_model
    manifest["inputs"] = {
        "start_model_sha256": parent_hash or (content_id(start, cache) if Path(start).exists() else start),
        "prompts_sha256": artifact_id(ARTIFACTS.prompts),
        "candidates_sha256": artifact_id(ARTIFACTS.candidates),
    }
    manifest["outputs"] = {
        "model_sha256": artifact_id(ARTIFACTS.model),
        "sft_data_sha256": artifact_id(ARTIFACTS.sft_data),
        "dpo_data_sha256": artifact_id(ARTIFACTS.dpo_data),
    }
    cache.save()
    generated = rnd.metrics.get("generate", {})
    manifest["generation"] = {k: generated.get(k) for k in ("backend", "generator", "teacher", "sampling")}
    manifest["counts"] = {k: rnd.metrics[k] for k in ("prompts", "filter", "verify", "select") if k in rnd.metrics}
    manifest["eval"] = read_json(rnd.dir / ARTIFACTS.eval)
    manifest["promotion"] = read_json(rnd.dir / ARTIFACTS.promotion)
    manifest["model"] = str((rnd.dir / ARTIFACTS.model).resolve())


def _run_one_round(cfg: RoundConfig, index: int, redo: list[str]) -> dict:
    start, parent = start_model_for(cfg, index)
    run_dir = run_dir_for(cfg)
    round_dir = round_path(run_dir, index)
    _prepare_round_dir(cfg, round_dir, redo)
    check_models(cfg, start)
    rnd = Round(cfg=cfg, index=index, dir=round_dir, start_model=start, run_dir=run_dir, start_round=parent)
    cache = HashCache.for_run(run_dir)
    # The starting checkpoint's identity: the parent round's model hash (recorded when it finished), else the
    # content of the policy folder (a hub id stands for itself).
    parent_hash = (
        None if parent is None else read_json(Path(start).parent / ARTIFACTS.manifest)["outputs"]["model_sha256"]
    )
    start_id = f"sha256:{parent_hash}" if parent_hash else model_id(start, cache)
    manifest = {
        "round": index,
        "run": cfg.name,
        "start_model": start,
        "parent_round": parent,
        "config": config_to_dict(cfg),
        "code_version": code_version(),
        "libraries": library_versions(),
        "hardware": hardware_record(),
        "engines": engine_dtypes(cfg),  # what each engine runs with here; stages record what actually ran
        "stages": {},
        "timings_s": {},
        "stages_total_s": 0.0,
    }
    log.info("round %d of run '%s' in %s, starting from %s", index, cfg.name, round_dir, start)
    t_round = time.time()
    try:
        _run_stages(rnd, manifest, redo, start_id, cache)
    except Exception as e:
        # a stage that fails (not one that is killed) leaves its reason in the manifest: `alignment status` shows
        # "failed in <stage>: <reason>" apart from a round that is merely incomplete
        failed = next((st.name for st in STAGES if st.name not in manifest["stages"]), None)
        manifest["error"] = {"stage": failed, "message": f"{type(e).__name__}: {e}"[:2000]}
        write_json(manifest, round_dir / ARTIFACTS.manifest)
        raise
    _finish_manifest(rnd, manifest, parent_hash, cache)
    manifest["invocation_s"] = round(time.time() - t_round, 1)  # this invocation (seconds when all were skipped)
    write_json(manifest, round_dir / ARTIFACTS.manifest)
    write_lineage(run_dir)
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
    for rd in round_dirs(run_dir):
        manifest_path = rd / ARTIFACTS.manifest
        if not manifest_path.exists():
            continue
        m = read_json(manifest_path)
        if "promotion" not in m:  # a round still running (or killed): its manifest has no outcome yet
            continue
        parent = m.get("parent_round")
        rounds.append(
            {
                "round": m["round"],
                "parent": round_label(parent),
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
    write_json(lineage, run_dir / LINEAGE)
    return lineage


def status(output_dir: str | Path = "runs") -> list[dict]:
    """Every run under ``output_dir``: its rounds, each stage's state (done with its duration, or not done), the
    round's exported model, its eval and whether its gate promoted it. Reads markers and manifests only."""
    rows = []
    root = Path(output_dir)
    runs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for run in runs:
        for rd in round_dirs(run):
            stage_states = {}
            for name in (st.name for st in STAGES):
                marker = rd / "stages" / f"{name}.json"
                stage_states[name] = read_json(marker)["duration_s"] if marker.exists() else None
            done = all(v is not None for v in stage_states.values())
            manifest = read_json(rd / "manifest.json") if (rd / "manifest.json").exists() else {}
            decision = read_json(rd / "promotion.json") if done and (rd / "promotion.json").exists() else None
            error = manifest.get("error") if not done else None
            rows.append(
                {
                    "run": run.name,
                    "round": round_index(rd),
                    "complete": done,
                    "error": error,
                    "stages": stage_states,
                    "model": str(rd / "model") if done and (rd / "model").exists() else None,
                    "eval": manifest.get("eval", {}).get("model") if done else None,
                    "promoted": None if decision is None else decision["promoted"],
                    "gate": None if decision is None else "; ".join(decision["reasons"]),
                }
            )
    return rows


def format_status(rows: list[dict], verbose: bool = False) -> str:
    """``alignment status`` as text: one line per round (state, model, eval, promotion); with ``verbose`` the
    stages follow, one line each."""
    if not rows:
        return "no runs found"
    lines = []
    for r in rows:
        if r["complete"]:
            state = "complete"
        elif r.get("error"):
            state = f"failed in {r['error']['stage']}: {r['error']['message'].splitlines()[0][:200]}"
        else:
            done = sum(v is not None for v in r["stages"].values())
            state = f"incomplete ({done}/{len(r['stages'])} stages)"
        line = f"{r['run']}  round {r['round']}  {state}"
        if r["eval"] and not verbose:
            line += "  eval " + ", ".join(f"{c} {v['accuracy']:.3f}" for c, v in sorted(r["eval"].items()))
        if r["promoted"] is not None and not verbose:
            line += f"  promoted {'yes' if r['promoted'] else 'NO'}"
        lines.append(line)
        if not verbose:
            continue
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
