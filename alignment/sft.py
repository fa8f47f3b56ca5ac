"""The SFT stage: TRL's SFTTrainer on the round's best-of-K rows, loss on the assistant turn only.

Rows are stored as ``messages`` (prompt + chosen assistant turn). ``tokenize_sft_rows`` renders each through the
chat template and marks the completion: the assistant reply, its end-of-turn token and whatever the template writes
after it; the prompt (system/user turns and the assistant header) carries no loss. Rows longer than ``max_length``
are left out here, with the count in the stage's metrics (truncated, a row would lose its end-of-turn token), so TRL
gets ready ``input_ids``/``completion_mask`` records and may run padding-free (the batch's rows concatenated into
one sequence, position ids restarting per row) without re-truncating.

LoRA adapters (default) are merged into the saved folder; a step checkpoint every ``save_steps`` lets a killed run
resume where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from alignment.config import SftConfig
from alignment.models import load_chat_tokenizer
from alignment.train_common import (
    LengthSortedSampler,
    args_dtype,
    large_allocations_on_heap,
    peft_lora,
    prepare_training,
    resume_point,
    save_merged,
    tensorboard_callbacks,
    training_args,
    use_cuda,
    weights_dtype,
)

log = logging.getLogger(__name__)


def to_prompt_completion(rows: list[dict]) -> list[dict]:
    """SFT rows (``messages`` ending with the assistant turn) as conversational prompt-completion records."""
    out = []
    for r in rows:
        msgs = [{"role": m["role"], "content": m["content"]} for m in r["messages"]]
        if msgs[-1]["role"] != "assistant":
            raise ValueError(f"SFT row {r.get('prompt_id')}: messages must end with an assistant turn")
        out.append({"prompt": msgs[:-1], "completion": msgs[-1:]})
    return out


def tokenize_sft_rows(rows: list[dict], tokenizer, max_length: int | None) -> tuple[list[dict], dict[str, str]]:
    """Render SFT rows to ``{"input_ids", "completion_mask"}``; returns (records, dropped) where ``dropped`` maps a
    row's candidate_id (or prompt_id) to why it was left out.

    The completion starts where the rendered prompt (with the generation prompt) and the rendered conversation
    diverge, as in TRL; the mask covers the reply, its end-of-turn token and what the template writes after it. A
    row longer than ``max_length`` tokens is left out rather than truncated: cut, it would lose its end-of-turn token
    (the model must learn to end its turn) or, when the prompt alone fills ``max_length``, carry no loss at all.
    """
    from trl.data_utils import common_prefix_length

    out, dropped = [], {}
    for rec, row in zip(to_prompt_completion(rows), rows, strict=True):
        prompt_ids = tokenizer.apply_chat_template(rec["prompt"], add_generation_prompt=True, return_dict=True)[
            "input_ids"
        ]
        full_ids = tokenizer.apply_chat_template(rec["prompt"] + rec["completion"], return_dict=True)["input_ids"]
        start = common_prefix_length(prompt_ids, full_ids)
        if max_length is not None and len(full_ids) > max_length:
            what = "the prompt alone" if start >= max_length else "prompt and reply"
            size, cmp = (start, ">=") if start >= max_length else (len(full_ids), ">")
            key = str(row.get("candidate_id") or row.get("prompt_id"))
            if row.get("carried_from"):
                key = f"{key} (round {row['carried_from']})"  # the same prompt drawn in two rounds: p#0 twice
            dropped[key] = f"{what} {size} tokens {cmp} sft.max_length {max_length}"
            continue
        out.append({"input_ids": full_ids, "completion_mask": [0] * start + [1] * (len(full_ids) - start)})
    if dropped:
        log.warning("SFT: %d of %d rows longer than sft.max_length left out", len(dropped), len(rows))
    return out, dropped


def sft_trainer_class(fused_lm_head: bool, group_by_length: bool = False):
    """TRL's SFTTrainer with two CPU options that leave the loss unchanged: ``fused_lm_head=False`` computes it from
    the model's full logits with transformers' own causal-LM loss (same value: mean NLL over the label tokens; TRL's
    entropy and token-accuracy logs are skipped); ``group_by_length`` draws batches of rows of similar length
    (:class:`LengthSortedSampler`)."""
    from transformers import Trainer
    from trl import SFTTrainer

    if fused_lm_head and not group_by_length:
        return SFTTrainer

    class AlignmentSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            if not group_by_length:
                return super()._get_train_sampler(train_dataset)
            ds = self.train_dataset if train_dataset is None else train_dataset
            lengths = [len(ids) for ids in ds["input_ids"]]
            return LengthSortedSampler(lengths, self.args.train_batch_size * self.args.world_size, self.args.seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if fused_lm_head:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return Trainer.compute_loss(
                self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )

    return AlignmentSFTTrainer


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
    export_dtype: str = "fp32",
    callbacks: list | None = None,
    report_to: Sequence[str] = (),
    log_dir: Path | None = None,
) -> dict:
    """Fine-tune ``model_path`` on ``rows`` and save the merged model to ``out``; returns training metrics.

    If ``work_dir`` holds a step checkpoint of an interrupted run with the same settings, training resumes from it.
    Metrics go to ``report_to`` (TensorBoard event files in ``log_dir``).
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    if not rows:
        raise ValueError("the SFT set is empty: no prompt had a candidate that passed selection")
    prepare_training(seed)
    resume = resume_point(work_dir, {"config": cfg, "model": model_path, "seed": seed, "data": rows})
    tokenizer = load_chat_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=weights_dtype(cfg, device))
    records, too_long = tokenize_sft_rows(rows, tokenizer, cfg.max_length)
    if not records:
        raise ValueError(
            f"the SFT set is empty: all {len(rows)} rows are longer than sft.max_length ({cfg.max_length})"
        )
    args = SFTConfig(
        **{
            **training_args(cfg, work_dir=work_dir, seed=seed, device=device, logging_steps=1, report_to=report_to),
            "max_length": None,  # checked in tokenize_sft_rows (TRL refuses max_length with padding-free)
        },
        completion_only_loss=True,
        padding_free=cfg.padding_free,
    )
    fused = cfg.fused_lm_head if cfg.fused_lm_head is not None else use_cuda(device)
    trainer = sft_trainer_class(fused, cfg.group_by_length and not cfg.padding_free)(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(records),
        peft_config=peft_lora(cfg.lora, "CAUSAL_LM"),
        callbacks=[*(callbacks or []), *tensorboard_callbacks(report_to, log_dir)],
    )
    ntok = sum(len(r["input_ids"]) for r in records)
    if resume:
        log.info("SFT: resuming from %s", resume)
    t0 = time.time()
    with large_allocations_on_heap():
        result = trainer.train(resume_from_checkpoint=resume)
    train_s = time.time() - t0
    save_merged(trainer.model, tokenizer, out, extra_files, dtype=export_dtype)
    return {
        "rows": len(records),
        "dropped_too_long": too_long,
        "tokens": ntok,
        "steps": result.global_step,
        "train_loss": round(result.training_loss, 4),
        "train_s": round(train_s, 1),
        "tokens_per_s": round(trainer.state.num_input_tokens_seen / max(train_s, 1e-9), 1) if not resume else None,
        "resumed_from": Path(resume).name if resume else None,
        "bf16": args.bf16,
        "dtype": args_dtype(args),
        "padding_free": cfg.padding_free,
        "fused_lm_head": fused,
        "lora": cfg.lora.enabled,
    }
