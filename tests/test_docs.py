"""The README stays true to the code: its make targets exist, its config example loads, its CLI errors are clear."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

from alignment.config import load_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w%-]*):", makefile, re.M))
    for target in set(re.findall(r"make ([a-z][\w-]*)", README)):
        name = "round-%" if target.startswith("round-") else target
        assert name in targets, f"README mentions `make {target}` but the Makefile has no such target"


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    for cmd in ("make setup", "make round-1", "make test", "make regress"):
        assert cmd in README and cmd in ci


def test_readme_config_example_is_a_valid_config(tmp_path):
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if "policy:" in b)
    path = tmp_path / "example.yaml"
    path.write_text(block)
    cfg = load_config(path)
    assert cfg.prompts.builtin == {"math": 100, "instruction": 100}
    assert yaml.safe_load(block)["reward_model"]["pretrained"] == cfg.reward_model.pretrained


def test_readme_default_workload_is_the_default_config():
    """The README's sentence on the default workload names the default config's prompt mix, K and token limit; it
    went stale once when the mix changed."""
    words = r"\*\*The default workload\*\* \((\d+) prompts: (\d+) math, (\d+) instruction, (\d+) chat; K=(\d+); up to (\d+) new tokens: (\d+) candidates\)"
    m = re.search(words.replace(" ", r"\s+"), README)
    assert m, "README has no '**The default workload** (N prompts: ...)' sentence"
    total, math, instruction, chat, k, tokens, candidates = map(int, m.groups())
    cfg = load_config(ROOT / "configs" / "default.yaml")
    assert cfg.prompts.num_prompts is None  # the mix holds counts, not weights
    assert cfg.prompts.mix == {"math": math, "instruction": instruction, "chat": chat}
    assert total == math + instruction + chat and candidates == total * k
    assert (cfg.generation.num_candidates, cfg.generation.max_new_tokens) == (k, tokens)


def test_cli_rejects_a_misspelled_key_before_doing_any_work(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "alignment.cli",
            "round",
            "1",
            "--config",
            str(ROOT / "configs" / "default.yaml"),
            "sft.lr=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "unknown key 'sft.lr'" in proc.stderr and "default.yaml" in proc.stderr
    assert not (tmp_path / "runs").exists()
