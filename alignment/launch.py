"""Training past one process: the reward-model, SFT and DPO stages as ``accelerate launch`` children.

    python -m accelerate.commands.launch --num_processes 2 [--config_file configs/accelerate/ddp.yaml] \
        -m alignment.launch --job runs/default/round-1/jobs/sft.json

With ``accelerate.num_processes`` 1 and no ``accelerate.config_file`` (the default) a stage trains in the runner's own
process, as before. Otherwise :func:`launch_training` writes a job file and starts ``accelerate launch`` on this
module: accelerate (torchrun underneath) starts the processes and sets their rank; the trainers (TRL on
transformers' Trainer) then run DDP, FSDP or DeepSpeed as the config file says. On a machine without a GPU the
processes use gloo (DDP only). Only rank 0 writes the exported model, the metrics file and the TensorBoard log
(:func:`alignment.train_common.is_main_process`); every rank takes the same optimizer steps on its slice of each
global batch (``batch_size`` is global, see :func:`alignment.train_common.per_device_batch_size`).

No launcher, scheduler or collective of our own: accelerate and torch.distributed do all of it.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from alignment.config import AccelerateConfig, ConfigError, load_config
from alignment.jobs import PROJECT_ROOT, child_env, die_with_parent, guarded, read_job
from alignment.records import read_json, read_parquet, write_json
from alignment.train_common import is_main_process

log = logging.getLogger(__name__)

ACCELERATE_CONFIGS = PROJECT_ROOT / "configs" / "accelerate"
"""Shipped accelerate config files, by topology (``accelerate.config_file: ddp`` names ``ddp.yaml`` here)."""

TRAINERS = {
    "reward_model": ("reward.reward_model", "train_reward_model"),
    "sft": ("alignment.sft", "train_sft"),
    "dpo": ("alignment.dpo", "train_dpo"),
}
"""What a training job may run: kind -> (module, function); each takes (rows, model, section config, out, ...)."""


def launched(cfg: AccelerateConfig) -> bool:
    """Whether the training stages run as ``accelerate launch`` children under this config."""
    return cfg.num_processes > 1 or cfg.config_file is not None


def accelerate_config_file(value: str) -> Path:
    """The accelerate config file ``value`` names: a path, or a shipped topology name (``ddp``, ``fsdp``, ...)."""
    shipped = ACCELERATE_CONFIGS / f"{value}.yaml"
    if "/" not in value and not value.endswith((".yaml", ".yml", ".json")) and shipped.is_file():
        return shipped
    path = Path(value).expanduser()
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")))
        raise ConfigError(f"accelerate.config_file: {value} is not a file nor a shipped config ({names})")
    return path


def launch_command(cfg: AccelerateConfig, job_file: Path, *, cpu: bool) -> list[str]:
    """The ``accelerate launch`` command line that runs ``job_file`` under ``cfg``."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.num_processes)]
    if cfg.config_file is not None:
        cmd += ["--config_file", str(accelerate_config_file(cfg.config_file))]
    elif cfg.num_processes > 1:
        # --multi_gpu is accelerate's torchrun launcher; on a machine without a GPU the trainers (use_cpu) make the
        # processes join with gloo. (accelerate's --cpu launcher needs MPI for more than one process.)
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if cfg.main_process_port is not None:
        cmd += ["--main_process_port", str(cfg.main_process_port)]
    if cpu:
        cmd += ["--num_cpu_threads_per_process", "1"]  # prepare_training gives each process its share of cores
    return [*cmd, "-m", "alignment.launch", "--job", str(job_file)]


def launch_training(
    kind: str, job: dict[str, Any], job_file: Path, cfg: AccelerateConfig, *, cpu: bool
) -> dict[str, Any]:
    """Run one training job (``kind`` in :data:`TRAINERS`) under ``accelerate launch``; returns its metrics.

    ``job``: ``config`` (the round's config file), ``section`` (reward_model, sft or dpo) and ``changes`` to it (a DPO variant's
    learning rate or beta), ``rows`` (a parquet file), ``model``, ``out``, ``seed``, ``work_dir``, ``metrics``
    (the file rank 0 writes) and the trainer's keyword arguments in ``kwargs``.
    """
    if kind not in TRAINERS:
        raise ValueError(f"unknown training job {kind!r}: one of {', '.join(TRAINERS)}")
    metrics_file = Path(job["metrics"])
    metrics_file.unlink(missing_ok=True)
    write_json({"kind": kind, **job}, job_file)
    cmd = launch_command(cfg, job_file, cpu=cpu)
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(guarded(cmd), env=child_env())  # each worker dies with accelerate launch (main())
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} training failed with exit code {proc.returncode} (command: {' '.join(cmd)})")
    if not metrics_file.is_file():
        raise RuntimeError(f"{kind} training exited 0 without writing {metrics_file}")
    return read_json(metrics_file)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One process of a launched training job: read the job, train, and (rank 0) write the metrics file."""
    import dataclasses
    import importlib

    module, function = TRAINERS[job["kind"]]
    train = getattr(importlib.import_module(module), function)
    cfg = load_config(job["config"])
    section = dataclasses.replace(getattr(cfg, job["section"]), **job.get("changes", {}))
    metrics = train(
        read_parquet(job["rows"]),
        job["model"],
        section,
        Path(job["out"]),
        seed=job["seed"],
        device=cfg.device,
        work_dir=Path(job["work_dir"]),
        **job.get("kwargs", {}),
    )
    if is_main_process():
        write_json(metrics, job["metrics"])
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", required=True, help="the job file a stage wrote (see launch_training)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    die_with_parent()  # accelerate's launcher (guarded: it dies with the round) leaves its worker running otherwise
    run_job(read_job(args.job))


if __name__ == "__main__":
    main()
