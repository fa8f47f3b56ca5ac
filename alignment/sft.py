"""The SFT stage: TRL's SFTTrainer on the round's best-of-K rows, loss on the assistant turn only.

Rows are stored as ``messages`` (prompt + chosen assistant turn) and handed to TRL as conversational
prompt-completion records, so TRL masks the prompt and keeps the completion, end-of-turn token included, in the loss.
LoRA adapters (default) are merged into the saved folder.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alignment.config import SftConfig
from alignment.models import load_chat_tokenizer
from alignment.train_common import peft_lora, prepare_training, save_merged, training_args

log = logging.getLogger(__name__)


def to_prompt_completion(rows: list[dict]) -> list[dict]:
    """SFT rows (``messages`` ending with the assistant turn) as TRL prompt-completion records."""
    out = []
    for r in rows:
        msgs = [{"role": m["role"], "content": m["content"]} for m in r["messages"]]
        if msgs[-1]["role"] != "assistant":
            raise ValueError(f"SFT row {r.get('prompt_id')}: messages must end with an assistant turn")
        out.append({"prompt": msgs[:-1], "completion": msgs[-1:]})
    return out


def train_sft(
    rows: list[dict],
    model_path: str,
    cfg: SftConfig,
    out: Path,
    *,
    seed: int,
    device: str,
    work_dir: Path,
    extra_files: dict[str, str] | None = None,
) -> dict:
    """Fine-tune ``model_path`` on ``rows`` and save the merged model to ``out``; returns training metrics."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    if not rows:
        raise ValueError("the SFT set is empty: no prompt had a candidate that passed selection")
    prepare_training(seed)
    tokenizer = load_chat_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    args = SFTConfig(
        **training_args(cfg, work_dir=work_dir, seed=seed, device=device, logging_steps=1),
        completion_only_loss=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(to_prompt_completion(rows)),
        peft_config=peft_lora(cfg.lora, "CAUSAL_LM"),
    )
    ntok = sum(len(r["input_ids"]) for r in trainer.train_dataset)
    t0 = time.time()
    result = trainer.train()
    train_s = time.time() - t0
    save_merged(trainer.model, tokenizer, out, extra_files)
    return {
        "rows": len(rows),
        "steps": result.global_step,
        "train_loss": round(result.training_loss, 4),
        "train_s": round(train_s, 1),
        "tokens_per_s": round(ntok * cfg.epochs / max(train_s, 1e-9), 1) if cfg.max_steps < 0 else None,
        "bf16": args.bf16,
        "lora": cfg.lora.enabled,
    }
