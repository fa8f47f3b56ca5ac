"""Shared fixtures: a tiny randomly initialised Llama built locally (no download) with the embedded tokenizer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The end-to-end rounds' scale: every stage real (vLLM, TRL), on the embedded model, in a few minutes on 2 cores.
E2E_TINY = [
    "prompts.builtin={math: 8, instruction: 8, chat: 4}",
    "prompts.mix={math: 3, instruction: 3, chat: 2}",
    "generation.num_candidates=3",
    "generation.max_new_tokens=64",
    "generation.adaptive_k=2",
    "reward_model.max_pairs=48",
    "sft.max_steps=2",
    "sft.save_steps=1",  # a step checkpoint after every step: the kill test resumes from one
    "dpo.max_steps=2",
    "eval.max_items=4",
    "eval.max_new_tokens=48",
]


def e2e_args(out: Path, name: str) -> list[str]:
    """`alignment round` arguments for a tiny real run named ``name`` under ``out``."""
    return [
        "--config",
        str(ROOT / "configs" / "default.yaml"),
        f"output_dir={out}",
        f"name={name}",
        f"model.cache_dir={ROOT / '.cache' / 'models'}",
        *E2E_TINY,
    ]


def alignment(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the `alignment` CLI as a user would; fail the test with its output when it fails."""
    proc = subprocess.run([sys.executable, "-m", "alignment.cli", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"alignment {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory) -> Path:
    """Rounds 1 and 2 of the tiny real run (built once per test session): returns the run folder ``.../e2e``."""
    out = tmp_path_factory.mktemp("e2e-runs")
    alignment("round", "2", *e2e_args(out, "e2e"), cwd=out)  # builds round 1 first
    return out / "e2e"


@pytest.fixture(scope="session")
def embedded_model_dir() -> str:
    """The embedded SmolLM2-135M-Instruct as an HF folder (converted once by `make setup`, cached)."""
    from alignment.models import resolve_model

    return resolve_model("embedded", Path(__file__).resolve().parent.parent / ".cache" / "models")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_model_dir) -> str:
    """A 2-layer, 32-wide Llama with random weights and the embedded model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from alignment.models import end_of_turn_ids

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=end_of_turn_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def no_chat_template_model_dir(tmp_path_factory, tiny_model_dir) -> str:
    """The tiny model with its chat template removed (a base model folder, not a chat model)."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("no-chat") / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return str(folder)
