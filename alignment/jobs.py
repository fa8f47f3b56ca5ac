"""How a round runs its vLLM stages (generate, eval) as processes of their own: one calling convention.

    run_job("alignment.evaluate", {"runs": [...], "suites": [...], ...}, round_dir / "jobs" / "eval.json")
    # runs: <this interpreter> -m alignment.evaluate --job <round_dir>/jobs/eval.json

vLLM spawns workers, so the process that builds ``LLM(...)`` must have its entry point behind
``if __name__ == "__main__":``, and a process of its own returns the engine's memory before training starts. The
job file holds the stage's settings as JSON (written atomically, kept beside the outputs as a record of what ran);
the child reads it with :func:`read_job`. The child runs with the same interpreter and imports this installation of
the project ahead of any other installed copy (after the working directory, as any ``python -m`` does). On Linux the
child dies with the round (:func:`guarded`): a round killed by a scheduler, ``kill`` or the OOM killer leaves no
engine or trainer running on, writing into the run folder. A job process turns SIGTERM into an exit
(:func:`read_job`), so that vLLM's shutdown stops the engine processes it spawned itself (on GPU, or with tensor
parallelism) rather than leaving them holding memory.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from alignment.records import write_json

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The folder holding this installation's packages (alignment/, rounds/, reward/, synth_data/)."""


def child_env() -> dict[str, str]:
    """The environment of a stage process: this project's packages first on the import path, unbuffered output."""
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


_GUARD = """
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM) != 0:  # PR_SET_PDEATHSIG
    print(f"warning: prctl(PR_SET_PDEATHSIG) failed (errno {ctypes.get_errno()}): this stage's process will not "
          "die with its round", file=sys.stderr)
elif os.getppid() != int(sys.argv[1]):  # the parent died before the request: nobody would get the result
    sys.exit(143)
os.execvp(sys.argv[2], sys.argv[2:])
"""
"""Run as ``python -I -c _GUARD <parent pid> <command...>``: ask the kernel for SIGTERM when the parent dies, then exec
the command, which keeps the request (it survives execve). ``-I``: the guard imports nothing from the working
directory or PYTHONPATH (the command gets the environment unchanged). Python has no call of its own for it;
``preexec_fn`` could do it but is not safe in a process with threads, as a round's is."""


def guarded(cmd: list[str]) -> list[str]:
    """``cmd`` wrapped so that its process gets SIGTERM when this process dies, however it dies (SIGKILL included):
    Linux's PR_SET_PDEATHSIG, set by a small launcher that then execs ``cmd`` (same pid, same exit code). Elsewhere
    ``cmd`` unchanged (a SIGTERM'd round there may leave its stage process running)."""
    if not sys.platform.startswith("linux"):
        return cmd
    return [sys.executable, "-I", "-c", _GUARD, str(os.getpid()), *cmd]


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux; elsewhere nothing). For a process whose
    command line is not ours to wrap in :func:`guarded`: a training worker under ``accelerate launch``, whose simple
    launcher does not stop its worker when it is itself stopped."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM) != 0:  # PR_SET_PDEATHSIG
        log.warning(
            "prctl(PR_SET_PDEATHSIG) failed (errno %d): this process will not die with its launcher", ctypes.get_errno()
        )
    elif os.getppid() == 1:  # the launcher died before the request (this process was handed to init)
        sys.exit(143)


def run_job(module: str, job: dict[str, Any], path: Path) -> None:
    """Write ``job`` to ``path`` and run ``python -m module --job path``, which dies with this process (:func:`guarded`);
    a failure raises with the command."""
    write_json(job, path)
    cmd = [sys.executable, "-m", module, "--job", str(path)]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(guarded(cmd), env=child_env())
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed with exit code {proc.returncode} (command: {' '.join(cmd)})")


def cpu_binding(shard: int, n: int, cores: int) -> str:
    """The cores (``VLLM_CPU_OMP_THREADS_BIND``) of engine ``shard`` of ``n`` on a ``cores``-core machine."""
    per = max(1, cores // n)
    first = (shard * per) % cores
    return f"{first}-{first + per - 1}" if per > 1 else str(first)


def run_jobs_parallel(module: str, jobs: list[Path], *, gpus_per_engine: int) -> None:
    """Run ``python -m module --job J`` for every job at once, each as a Ray task with its own engine (data-parallel
    generation and eval): ``gpus_per_engine`` GPUs each (Ray sets the task's ``CUDA_VISIBLE_DEVICES``), or with 0 an
    equal share of the CPU cores, the engine's vLLM threads bound to them. Raises when any job failed."""
    import ray

    n = len(jobs)
    cores = os.cpu_count() or 1
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=True, logging_level=logging.WARNING)

    @ray.remote
    def engine(job: str, shard: int) -> int:
        env = child_env()  # this task's environment: Ray's CUDA_VISIBLE_DEVICES for a GPU engine
        if not gpus_per_engine:
            env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_binding(shard, n, cores)
        return subprocess.run(guarded([sys.executable, "-m", module, "--job", job]), env=env).returncode

    options: dict[str, Any] = {"num_gpus": gpus_per_engine} if gpus_per_engine else {"num_cpus": max(1, cores // n)}
    try:
        codes = ray.get([engine.options(**options).remote(str(job), i) for i, job in enumerate(jobs)])
    finally:
        if started_here:
            ray.shutdown()
    failed = [str(job) for job, code in zip(jobs, codes, strict=True) if code != 0]
    if failed:
        raise RuntimeError(f"{module}: {len(failed)} of {n} data-parallel engines failed ({', '.join(failed)})")


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)


def read_job(path: str | Path) -> dict[str, Any]:
    """The job a stage process was given (see :func:`run_job`). Being a job process, it also turns SIGTERM (its round
    died, or a launcher stops it) into ``SystemExit``, so that exit handlers run: vLLM's shutdown stops the engine
    processes it spawned, which would otherwise outlive it."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        job = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the job file: {e}") from e
    if not isinstance(job, dict):
        raise ValueError(f"{path}: a job file holds a JSON object")
    return job
