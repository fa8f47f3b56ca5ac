"""Bad input through the real CLI: one clear line naming what is wrong, exit code 2, nothing finished is lost."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignment.cli", *args], cwd=cwd, capture_output=True, text=True)


def common(tmp_path: Path) -> list[str]:
    return [
        "--config",
        str(ROOT / "configs" / "default.yaml"),
        f"output_dir={tmp_path / 'runs'}",
        f"model.cache_dir={ROOT / '.cache' / 'models'}",
    ]


def test_policy_without_chat_template_fails_before_any_stage(no_chat_template_model_dir, tmp_path):
    proc = run_cli("round", "1", *common(tmp_path), f"model.policy={no_chat_template_model_dir}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no chat template" in proc.stderr and no_chat_template_model_dir in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "runs").rglob("stages/*.json"))


def test_empty_prompt_set_is_one_clear_line(tmp_path):
    proc = run_cli("round", "1", *common(tmp_path), "prompts.builtin={}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "prompt set is empty" in proc.stderr and "Traceback" not in proc.stderr


def test_malformed_prompt_file_names_file_and_line(tmp_path):
    bad = tmp_path / "prompts.jsonl"
    bad.write_text(
        '{"id": "a", "capability": "math", "messages": [{"role": "user", "content": "1+1?"}], '
        '"answer": "2"}\n{"id": "b"}\n'
    )
    proc = run_cli("round", "2", *common(tmp_path), f"prompts.files=[{bad}]", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{bad}:2" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_forced_stage_is_one_clear_line_and_status_runs(tmp_path):
    proc = run_cli("round", "1", "--force", "sftt", *common(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "unknown stage 'sftt'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
    proc = run_cli("status", "--output-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 2 and f"--output-dir {tmp_path / 'runs'}: no such folder" in proc.stderr
    (tmp_path / "runs").mkdir()
    proc = run_cli("status", "--output-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "no runs found"


def test_eval_with_lm_eval_tasks_whose_data_is_not_cached_says_what_is_missing(tiny_model_dir, tmp_path):
    proc = run_cli("eval", "--model", tiny_model_dir, "--lm-eval-tasks", "gsm8k", "--out", "x.json", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "gsm8k: needs HF dataset openai/gsm8k" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.json").exists()
    proc = run_cli("eval", "--model", tiny_model_dir, "--out", "x.json", cwd=tmp_path)
    assert proc.returncode == 2 and "needs --suite FILE (or 'builtin') or --lm-eval-tasks" in proc.stderr


def test_the_cli_works_from_another_folder(tmp_path):
    """The default config and the embedded model's cache resolve in the project folder, not the working directory
    (from elsewhere, `--config configs/default.yaml` did not exist and the embedded model was converted again)."""
    import json

    proc = run_cli("env", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    embedded = json.loads(proc.stdout)["embedded_model"]
    assert embedded["folder"] == str(ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct")
    assert not (tmp_path / ".cache").exists()


def test_every_subcommand_argument_is_documented():
    """`alignment <cmd> --help` explains every argument (round N, --config, status --output-dir, eval's
    --max-new-tokens and --seed had none)."""
    import argparse

    from alignment.cli import build_parser

    parser = build_parser()
    (subs,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    undocumented = [
        f"{name} {action.dest}"
        for name, sub in subs.choices.items()
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert undocumented == []
