"""The DPO stage: TRL's DPOTrainer from the round's SFT model, with Llama 3's NLL term on the chosen response.

The reference model is the SFT model: with LoRA (default) TRL uses the policy with its adapters disabled, which is
exactly the SFT weights; with full fine-tuning TRL loads a frozen copy from the same folder. The loss is
``sigmoid`` (DPO) + ``nll_weight`` x ``sft`` (NLL on chosen), as TRL's multi-loss ``loss_type``/``loss_weights``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alignment.config import DpoConfig
from alignment.models import load_chat_tokenizer
from alignment.train_common import peft_lora, prepare_training, save_merged, training_args

log = logging.getLogger(__name__)


def to_preference_records(pairs: list[dict]) -> list[dict]:
    """DPO pairs as TRL conversational preference records (both sides share exactly the same prompt)."""
    return [
        {
            "prompt": [{"role": m["role"], "content": m["content"]} for m in p["prompt"]],
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
        }
        for p in pairs
    ]


def _logged(history: list[dict], key: str) -> dict | None:
    """Mean and last logged value of a training metric (the first step has policy == reference, so the mean
    understates where training ended)."""
    values = [h[key] for h in history if key in h]
    return {"mean": round(sum(values) / len(values), 4), "last": round(values[-1], 4)} if values else None


def train_dpo(
    pairs: list[dict],
    sft_path: str,
    cfg: DpoConfig,
    out: Path,
    *,
    seed: int,
    device: str,
    work_dir: Path,
    extra_files: dict[str, str] | None = None,
) -> dict:
    """DPO on ``pairs`` from ``sft_path``; saves the merged policy to ``out`` and returns training metrics."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    if not pairs:
        raise ValueError("the DPO set is empty: no prompt gave a pair that passed selection")
    prepare_training(seed)
    tokenizer = load_chat_tokenizer(sft_path)
    model = AutoModelForCausalLM.from_pretrained(sft_path, dtype=torch.float32)
    loss_type, loss_weights = ["sigmoid"], [1.0]
    if cfg.nll_weight > 0:
        loss_type, loss_weights = ["sigmoid", "sft"], [1.0, cfg.nll_weight]
    args = DPOConfig(
        **training_args(cfg, work_dir=work_dir, seed=seed, device=device, logging_steps=1),
        beta=cfg.beta,
        loss_type=loss_type,
        loss_weights=loss_weights,
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(to_preference_records(pairs)),
        peft_config=peft_lora(cfg.lora, "CAUSAL_LM"),
    )
    t0 = time.time()
    result = trainer.train()
    train_s = time.time() - t0
    save_merged(trainer.model, tokenizer, out, extra_files)
    history = trainer.state.log_history
    return {
        "pairs": len(pairs),
        "steps": result.global_step,
        "train_loss": round(result.training_loss, 4),
        "train_s": round(train_s, 1),
        "reward_accuracy": _logged(history, "rewards/accuracies"),
        "reward_margin": _logged(history, "rewards/margins"),
        "bf16": args.bf16,
        "lora": cfg.lora.enabled,
        "loss_type": loss_type,
        "loss_weights": loss_weights,
    }
