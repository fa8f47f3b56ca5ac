"""A stage's process (generation, eval, training under accelerate launch) dies with the round that started it."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard uses Linux's PR_SET_PDEATHSIG")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited and waits for its reaper


def _started(pid_file: Path) -> int:
    """The pid a test process wrote to ``pid_file`` once it was running."""
    deadline = time.time() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.time() < deadline, f"the process never started (no {pid_file.name})"
        time.sleep(0.1)
    return int(pid_file.read_text())


def _outlives(pid: int, seconds: float = 10) -> bool:
    """Whether process ``pid`` is still running after ``seconds``; killed if so, so that no test leaves it behind."""
    deadline = time.time() + seconds
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    alive = _alive(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    return alive


def test_a_job_dies_when_the_round_that_started_it_is_killed(tmp_path):
    """Before: a round killed with SIGTERM or SIGKILL (a scheduler, `kill`, an OOM kill) left its eval or generation
    process running; it went on for minutes and wrote its results into the run folder, over a resumed run's."""
    (tmp_path / "sleeper.py").write_text(
        textwrap.dedent(
            """
            import os, sys, time
            from alignment.jobs import read_job
            job = read_job(sys.argv[2])
            open(job["pid_file"], "w").write(str(os.getpid()))
            time.sleep(60)
            open(job["done_file"], "w").write("finished")
            """
        )
    )
    pid_file, done_file = tmp_path / "child.pid", tmp_path / "done"
    round_script = (
        "from pathlib import Path; from alignment.jobs import run_job; "
        f"run_job('sleeper', {{'pid_file': {str(pid_file)!r}, 'done_file': {str(done_file)!r}}}, "
        f"Path({str(tmp_path / 'job.json')!r}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pid_file.unlink(missing_ok=True)
        parent = subprocess.Popen([sys.executable, "-c", round_script], env=env)
        child = _started(pid_file)
        parent.send_signal(sig)
        parent.wait()
        assert not _outlives(child), f"the job outlived its round ({sig.name})"
    assert not done_file.exists()


def test_the_guard_runs_the_command_itself():
    from alignment.jobs import guarded

    out = subprocess.run(guarded([sys.executable, "-c", "print('ran')"]), capture_output=True, text=True, check=True)
    assert out.stdout == "ran\n"
    assert subprocess.run(guarded([sys.executable, "-c", "raise SystemExit(3)"])).returncode == 3


def test_a_training_worker_dies_with_the_launcher_that_started_it(tmp_path):
    """accelerate's simple launcher, stopped, leaves its worker running: the worker asks for its own signal."""
    pid_file = tmp_path / "worker.pid"
    worker = (
        "import os, time; from alignment.jobs import die_with_parent; die_with_parent(); "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    launcher = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {worker!r}]).wait()"
    parent = subprocess.Popen([sys.executable, "-c", launcher])
    child = _started(pid_file)
    parent.kill()
    parent.wait()
    assert not _outlives(child)


def test_a_job_process_runs_its_exit_handlers_on_sigterm(tmp_path):
    """vLLM stops the engine processes it spawned (GPU, tensor parallel) from an exit handler, which a plain SIGTERM
    skips: a job process turns SIGTERM into an exit."""
    (tmp_path / "job.json").write_text("{}")
    marker, ready = tmp_path / "cleaned-up", tmp_path / "ready"
    script = (
        "import atexit, sys, time; from alignment.jobs import read_job; "
        f"read_job({str(tmp_path / 'job.json')!r}); "
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes')); "
        f"open({str(ready)!r}, 'w').write('1'); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not ready.exists():
        assert time.time() < deadline, "the job never started"
        time.sleep(0.1)
    proc.terminate()
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert marker.read_text() == "yes"
