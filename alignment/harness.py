"""lm-evaluation-harness runs: our built-in suites as lm-eval tasks, and standard tasks whose data is cached locally.

    run_lm_eval_tasks("runs/default/round-1/model", ["builtin", "gsm8k"], Path("lm_eval.json"), limit=50)

"builtin" stands for the ``alignment_*`` tasks of ``synth_data/lm_eval_tasks/`` (one per built-in suite, greedy,
the model's chat template, scored by our verifiers). Any other name is an lm-eval task, group or tag. Nothing is
downloaded: the run is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), and before the model is loaded every
standard task's dataset is checked in the local datasets cache; all that are missing fail in one ValueError that
says where the cache is looked up and how to fill it.

Writes ``{"<task or group>": {"<metric>": value, "<metric>_stderr": value, "n": int}}`` to ``out`` (a metric
computed after a filter other than "none" is named ``<metric>,<filter>``) and one record per sample (and filter) to
``<out stem>.samples.jsonl``: task, doc_id, response, score (the task's first metric), metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.util
import json
import logging
import os
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from alignment.records import write_json, write_jsonl
from synth_data.lm_eval_tasks import GROUP, TASK_PREFIX, TASKS_DIR, builtin_task_names

log = logging.getLogger(__name__)

BUILTIN = "builtin"
HARNESS_BACKENDS = ("hf", "vllm")
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


class TaskListError(argparse.ArgumentTypeError, ValueError):
    """A malformed ``--lm-eval-tasks`` value (argparse prints the message; code may catch it as a ValueError)."""


def lm_eval_task_list(value: str) -> list[str]:
    """Parse ``"gsm8k, ifeval,builtin"`` into ``["gsm8k", "ifeval", "builtin"]`` (duplicates dropped, order kept);
    an argparse ``type=``. Names are checked against lm-eval's index by :func:`run_lm_eval_tasks`."""
    names = [n.strip() for n in value.split(",")]
    if not value.strip() or not all(names):
        raise TaskListError(f"expected comma-separated lm-eval task names (e.g. 'builtin,gsm8k,ifeval'), got {value!r}")
    return list(dict.fromkeys(names))


@contextlib.contextmanager
def offline_hf() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 for the duration, in the environment and in the already-imported
    huggingface_hub / datasets (which read them at import); restored afterwards."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    saved = (hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)
    os.environ.update({k: "1" for k in _OFFLINE_ENV})
    hub_constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved


@lru_cache(maxsize=2)
def task_manager(include_defaults: bool = True) -> Any:
    """lm-eval's TaskManager over our task folder (and lm-eval's own tasks unless ``include_defaults`` is False;
    indexing those takes seconds, so both are built once per process)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=include_defaults)


def expand_tasks(tasks: list[str]) -> list[str]:
    """Task names with "builtin" replaced by the built-in suites' tasks; duplicates dropped, order kept."""
    names: list[str] = []
    for t in tasks:
        names.extend(builtin_task_names() if t == BUILTIN else [t])
    if not names:
        raise ValueError("no lm-eval tasks given")
    return list(dict.fromkeys(names))


def _is_ours(name: str) -> bool:
    return name == GROUP or name.startswith(TASK_PREFIX)


def _unknown_task_error(unknown: list[str], known: list[str]) -> ValueError:
    lines = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        close += [k for k in known if k.startswith(name) and k not in close][: 5 - len(close)]
        lines.append(f"  {name!r}: " + (f"did you mean {', '.join(close)}?" if close else "no close names"))
    stale = [n for n in unknown if n in builtin_task_names()]
    if stale:  # a built-in suite without its YAML
        lines.append(f"  {', '.join(stale)} missing from {TASKS_DIR}: run `python -m synth_data.lm_eval_tasks`")
    ours = ", ".join([BUILTIN, GROUP, *builtin_task_names()])
    return ValueError(
        "unknown lm-eval task(s):\n" + "\n".join(lines) + f"\n(ours: {ours}; `lm_eval ls tasks` lists lm-eval's "
        f"{len(known)} tasks, groups and tags)"
    )


def _leaf_configs(name: str, index: dict, overrides: dict | None = None, _depth: int = 0) -> list[dict]:
    """The (unresolved) configs of every task under ``name`` (a task, group or tag), from the index alone."""
    from lm_eval.tasks._index import Kind

    entry = index.get(name)
    if entry is None or _depth > 20:
        return []
    cfg = {**(entry.cfg or {}), **(overrides or {})}
    if entry.kind == Kind.TAG:
        return [c for t in sorted(entry.tags) for c in _leaf_configs(t, index, overrides, _depth + 1)]
    if entry.kind != Kind.GROUP:
        return [cfg]
    leaves = []
    children = cfg.get("task") or []
    for child in children if isinstance(children, list) else [children]:
        if isinstance(child, str):
            leaves += _leaf_configs(child, index, None, _depth + 1)
        elif isinstance(child, dict):
            ref = child.get("task") if isinstance(child.get("task"), str) else child.get("group")
            if ref in index:
                extra = {k: v for k, v in child.items() if k not in ("task", "group")}
                leaves += _leaf_configs(ref, index, extra, _depth + 1)
            elif "group" in child:
                for sub in child.get("task") or []:
                    if isinstance(sub, str):
                        leaves += _leaf_configs(sub, index, None, _depth + 1)
                    elif isinstance(sub, dict):
                        leaves.append(sub)
            else:
                leaves.append(child)
    return leaves


def _dataset_of(cfg: dict) -> tuple[str, str | None] | None:
    """(HF dataset path, config name) a task config loads from the hub, or None when its data is local."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    path = cfg.get("dataset_path")
    if cfg.get("custom_dataset") or not isinstance(path, str) or path in _PACKAGED_DATASETS_MODULES:
        return None
    if Path(path).expanduser().exists():
        return None
    return path, cfg.get("dataset_name")


def _is_missing_data(err: BaseException) -> bool:
    """True for the errors datasets raises offline when a hub dataset (or one of its configs) is not cached."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    while err is not None:
        if isinstance(err, (ConnectionError, FileNotFoundError, LocalEntryNotFoundError)):
            return True
        if isinstance(err, ValueError) and str(err).startswith(("Couldn't find cache", "Cache directory for")):
            return True
        err = err.__cause__ or err.__context__
    return False


def dataset_cached(path: str, name: str | None) -> bool:
    """Whether ``load_dataset(path, name)`` can run offline from the local datasets cache (call under offline)."""
    import datasets

    try:
        datasets.load_dataset_builder(path, name)
    except Exception as e:
        if _is_missing_data(e):
            return False
        raise
    return True


def cache_locations() -> str:
    """Where datasets looks for cached datasets, as a sentence."""
    import datasets.config

    origin = (
        "HF_DATASETS_CACHE"
        if os.environ.get("HF_DATASETS_CACHE")
        else "HF_HOME/datasets"
        if os.environ.get("HF_HOME")
        else "default: ~/.cache/huggingface/datasets; set HF_DATASETS_CACHE or HF_HOME to look elsewhere"
    )
    return f"{datasets.config.HF_DATASETS_CACHE} ({origin})"


def check_datasets_offline(names: list[str], index: dict) -> None:
    """Raise one ValueError naming every task among ``names`` whose HF dataset is not in the local cache."""
    missing: list[str] = []
    cached: dict[tuple[str, str | None], bool] = {}
    for name in names:
        if _is_ours(name):
            continue
        needed: dict[str, list[str]] = {}
        for cfg in _leaf_configs(name, index):
            ds = _dataset_of(cfg)
            if ds is not None and not cached.setdefault(ds, dataset_cached(*ds)):
                needed.setdefault(ds[0], []).append(ds[1] or "default")
        if needed:
            parts = []
            for path, configs in needed.items():
                shown = sorted(set(configs))
                more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
                parts.append(f"{path} (config {', '.join(shown[:3])}{more})")
            missing.append(f"  {name}: needs HF dataset {'; '.join(parts)}")
    if missing:
        raise ValueError(
            "lm-eval task data not available offline:\n"
            + "\n".join(missing)
            + f"\nThe datasets cache is looked up in {cache_locations()}. Fill it by running the same command once "
            'on a machine with network access to the Hugging Face Hub (or `python -c "import datasets; '
            "datasets.load_dataset('PATH', 'CONFIG')\"`), then copy that cache folder here (or point "
            "HF_DATASETS_CACHE / HF_HOME at it). Nothing is downloaded at eval time."
        )


def _build_tasks(names: list[str], tm: Any, max_new_tokens: int) -> list[Any]:
    """Task / Group objects of ``names``; our tasks generate up to ``max_new_tokens`` tokens."""
    objs: list[Any] = []
    for name in names:
        loaded = tm.load([name])
        top = loaded["groups"].get(name)
        objs.extend([top] if top is not None else loaded["tasks"].values())
        for task_name, task in loaded["tasks"].items():
            if _is_ours(task_name):
                task.set_config(key="generation_kwargs", value={"max_gen_toks": max_new_tokens}, update=True)
    return objs


def _model_args(model: str, backend: str, seed: int) -> dict[str, Any]:
    if backend not in HARNESS_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(HARNESS_BACKENDS)}, got {backend!r}")
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise ValueError("backend 'vllm' needs vLLM installed (make setup installs it); or use backend='hf'")
        return {"pretrained": model, "seed": seed}
    return {"pretrained": model}


def _device() -> str:
    """lm-eval's hf model defaults to "cuda" even where torch has no CUDA: name the device."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def summarize(results: dict) -> dict[str, dict[str, Any]]:
    """``{task or group: {metric: value, metric_stderr: value, "n": int}}`` from simple_evaluate's results; a filter
    other than "none" stays in the name (``exact_match,strict-match``), "N/A" stderrs become None."""
    n_samples = results.get("n-samples", {})
    summary: dict[str, dict[str, Any]] = {}
    for section in ("results", "groups"):
        for task, metrics in (results.get(section) or {}).items():
            row: dict[str, Any] = {}
            for key, value in metrics.items():
                if "," not in key:  # alias, sample_len, ...
                    continue
                metric, _, filt = key.partition(",")
                name = metric if filt == "none" else key
                row[name] = None if value == "N/A" else value
            if task in n_samples:
                row["n"] = n_samples[task].get("effective")
            summary.setdefault(task, {}).update(row)
    return summary


def sample_records(samples: dict[str, list[dict]]) -> list[dict]:
    """One record per logged sample: task, doc_id, response (and the filtered one when a filter changed it), score
    (the task's first metric), metrics; for our tasks also the item id and the verifier's reason."""
    from reward.verifiers import verify

    records = []
    for task, rows in samples.items():
        for s in rows:
            resps = s.get("resps") or [[None]]
            raw = resps[0][0] if resps and resps[0] else None
            filtered = (s.get("filtered_resps") or [None])[0]
            metrics = {m: s.get(m) for m in s.get("metrics", [])}
            rec: dict[str, Any] = {"task": task, "doc_id": s.get("doc_id")}
            if s.get("filter", "none") != "none":
                rec["filter"] = s["filter"]
            doc = s.get("doc") or {}
            if _is_ours(task) and "item" in doc:
                rec["id"] = doc.get("id")
            rec["response"] = raw if isinstance(raw, str) else _jsonable(resps)
            if filtered != raw and isinstance(filtered, str):
                rec["filtered_response"] = filtered
            rec["score"] = next(iter(metrics.values()), None)
            rec["metrics"] = _jsonable(metrics)
            if _is_ours(task) and "item" in doc and isinstance(raw, str):
                rec["reason"] = verify(raw, json.loads(doc["item"])).reason
            records.append(rec)
    return records


def run_lm_eval_tasks(
    model: str,
    tasks: list[str],
    out: Path,
    *,
    backend: str = "hf",
    limit: int | None = None,
    max_new_tokens: int = 256,
    seed: int = 0,
    batch_size: int = 8,
) -> dict:
    """Run lm-eval's ``simple_evaluate`` on ``model`` (an HF folder) over ``tasks`` ("builtin" = our suites' tasks)
    with the model's chat template, offline; write ``out`` and ``<out stem>.samples.jsonl`` (see the module
    docstring) and return the summary written to ``out``.

    ``backend``: "hf" (transformers) or "vllm" (lm-eval's vLLM model; needs vLLM). ``limit``: the first N docs of
    each task. ``max_new_tokens`` is the generation budget of our tasks; standard tasks keep their own settings.
    Raises ValueError for an unknown task (with close names) and, before the model loads, for standard tasks whose
    HF dataset is not in the local cache (all of them in one message)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of docs per task, got {limit}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    model_args = _model_args(model, backend, seed)
    names = expand_tasks(tasks)
    out = Path(out)
    with offline_hf():
        from lm_eval import simple_evaluate

        tm = task_manager(include_defaults=not all(_is_ours(n) for n in names))
        unknown = [n for n in names if n not in tm.task_index]
        if unknown:
            raise _unknown_task_error(unknown, task_manager(True).all_tasks)
        check_datasets_offline(names, tm.task_index)
        objs = _build_tasks(names, tm, max_new_tokens)
        t0 = time.time()
        results = simple_evaluate(
            model=backend,
            model_args=model_args,
            tasks=objs,
            task_manager=tm,
            batch_size=batch_size,
            device=_device() if backend == "hf" else None,
            limit=limit,
            apply_chat_template=True,
            log_samples=True,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
        seconds = time.time() - t0
    if results is None:  # a non-zero rank of a distributed run
        return {}
    summary = summarize(results)
    write_json(summary, out)
    write_jsonl(sample_records(results.get("samples") or {}), out.with_name(out.stem + ".samples.jsonl"))
    log.info("lm-eval on %s (%s) over %s in %.1fs: %s", model, backend, ", ".join(names), seconds, summary)
    return summary
