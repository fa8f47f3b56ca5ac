"""The DPO stage: TRL's DPOTrainer from the round's SFT model, with Llama 3's NLL term and formatting-token mask.

The reference model is the SFT model: with LoRA (default) TRL uses the policy with its adapters disabled, which is
exactly the SFT weights; with full fine-tuning TRL loads a frozen copy from the same folder. The loss is
``sigmoid`` (DPO) + ``nll_weight`` x NLL on the chosen response.

Formatting-token mask (``dpo.mask_formatting_tokens``, on by default). Llama 3 left formatting tokens out of the DPO
term: chosen and rejected end in the same tokens (ChatML: ``<|im_end|>`` and the template's newline; Llama 3:
``<|eot_id|>``), so their log-probs add nothing to the preference but pull both responses' probabilities in
conflicting directions. TRL sums every completion token. ``FormattingMaskedDPOTrainer`` excludes them from the
policy and reference log-ratios (reference log-probs, precomputed or not, use the same mask) and keeps them in the
NLL term, so the model still learns to end its turn. Role headers are part of the prompt (the generation prompt),
which carries no loss anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from alignment.config import DpoConfig
from alignment.models import end_of_turn_ids, load_chat_tokenizer
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
    training_dataset,
    use_cuda,
    weights_dtype,
)

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


def formatting_token_ids(tokenizer, model_path: str | None = None) -> list[int]:
    """Ids that mark chat structure: the tokenizer's special tokens and the model's end-of-turn ids."""
    return sorted(set(tokenizer.all_special_ids) | set(end_of_turn_ids(tokenizer, model_path)))


def formatting_mask(input_ids, completion_mask, formatting_ids):
    """1 on completion tokens that are formatting: a formatting id, or anything after the first one in the
    completion (what the template writes after the end-of-turn token). Tensors of shape (batch, seq)."""
    import torch

    ids = torch.as_tensor(formatting_ids, device=input_ids.device)
    special = torch.isin(input_ids, ids) & completion_mask.bool()
    after_first = special.long().cumsum(dim=1) > 0
    return (after_first & completion_mask.bool()).long()


def _make_trainer_class():
    """The DPOTrainer subclass (built lazily: importing TRL takes seconds, and only the DPO stage needs it)."""
    import contextlib

    import torch
    import torch.nn.functional as F
    from trl import DPOTrainer
    from trl.trainer.utils import selective_log_softmax

    class AlignmentDPOTrainer(DPOTrainer):
        """DPOTrainer with Llama 3's formatting-token mask, and two CPU speed-ups that leave the loss unchanged.

        * ``formatting_ids``: the DPO term leaves out formatting tokens; the NLL term keeps every completion token
          (None: no mask, TRL's loss).
        * ``fused_lm_head=False``: log-probs from the model's full logits (``selective_log_softmax``) instead of
          TRL's chunked LM head, whose tiles run as Python loops without Triton.
        * ``group_by_length``: batches of pairs of similar length (:class:`LengthSortedSampler`, seeded): chosen
          and rejected are padded to the longest sequence of the batch.

        Supports the loss this project uses: ``loss_type`` ``["sigmoid"]`` or ``["sigmoid", "sft"]``.
        """

        def __init__(
            self, *args, formatting_ids: list[int] | None, fused_lm_head: bool, group_by_length: bool, **kwargs
        ):
            self.formatting_ids = None if formatting_ids is None else list(formatting_ids)
            self.fused_lm_head = fused_lm_head
            self.group_by_length = group_by_length
            super().__init__(*args, **kwargs)
            unsupported = set(self.loss_types) - {"sigmoid", "sft"}
            if unsupported or self.f_divergence_type != "reverse_kl" or self.ld_alpha is not None:
                raise ValueError(f"this DPO trainer supports sigmoid (+ sft) DPO only, got {self.loss_types}")

        def _get_train_sampler(self, train_dataset=None):
            if not self.group_by_length:
                return super()._get_train_sampler(train_dataset)
            ds = self.train_dataset if train_dataset is None else train_dataset
            lengths = [
                len(p) + max(len(c), len(r))
                for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"], strict=True)
            ]
            return LengthSortedSampler(lengths, self.args.train_batch_size * self.args.world_size, self.args.seed)

        def _dpo_mask(self, inputs):
            completion = inputs["completion_mask"]
            if self.formatting_ids is None:
                return completion
            return completion * (1 - formatting_mask(inputs["input_ids"], completion, self.formatting_ids))

        def _token_logps(self, model, inputs):
            """Per-token log-probs of the next token (batch, seq - 1), 0 where the label is not a completion
            token: from TRL's fused LM head, or from the full logits."""
            non_model = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
            model_kwargs = {k: v for k, v in inputs.items() if k not in non_model}
            model_kwargs["use_cache"] = False
            completion = inputs["completion_mask"]
            labels = inputs["input_ids"].masked_fill(completion == 0, -100)
            seq_len = completion.size(1) - 1
            if self.fused_lm_head:
                return model(**model_kwargs, labels=labels, fused_lm_head=True).log_probs[:, -seq_len:]
            logits = model(**model_kwargs).logits[:, -seq_len - 1 : -1]  # position t predicts token t + 1
            targets = labels[:, 1:]
            logps = selective_log_softmax(logits.float(), targets.clamp(min=0))
            return logps * (targets != -100)

        def compute_ref_log_probs(self, model, inputs):
            # The reference log-probs, precomputed or per step, over the same tokens as the policy's DPO term.
            # With the fused LM head TRL's own method does it; with full logits, the same steps (adapters off for a
            # LoRA policy, no grad) through _token_logps.
            masked = {**inputs, "completion_mask": self._dpo_mask(inputs)}
            if self.fused_lm_head:
                return super().compute_ref_log_probs(model, masked)
            from trl.models.utils import disable_gradient_checkpointing
            from trl.trainer.utils import use_adapter

            adapter = contextlib.nullcontext()
            if self.ref_model is None and hasattr(self.accelerator.unwrap_model(self.model), "peft_config"):
                unwrapped = self.accelerator.unwrap_model(self.model)
                adapter = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
            with (
                torch.no_grad(),
                disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
                adapter,
                self.accelerator.autocast(),
            ):
                per_token = self._token_logps(model, inputs)
            mask = masked["completion_mask"][:, 1:]
            return (per_token * mask).sum(dim=1).chunk(2, dim=0)

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            completion = inputs["completion_mask"]
            per_token_logps = self._token_logps(model, inputs)  # 0 where the label is -100
            dpo_mask = self._dpo_mask(inputs)[:, 1:]
            chosen_logps, rejected_logps = (per_token_logps * dpo_mask).sum(dim=1).chunk(2, dim=0)
            if self.precompute_ref_logps:
                ref_chosen_logps, ref_rejected_logps = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_chosen_logps, ref_rejected_logps = self.compute_ref_log_probs(self.ref_model or self.model, inputs)
            chosen_logratios = chosen_logps - ref_chosen_logps
            rejected_logratios = rejected_logps - ref_rejected_logps

            loss = 0.0
            nll = None
            for loss_type, weight in zip(self.loss_types, self.loss_weights, strict=True):
                if loss_type == "sigmoid":
                    loss = loss + weight * (-F.logsigmoid(self.beta * (chosen_logratios - rejected_logratios))).mean()
                else:  # "sft": token-mean NLL over every chosen completion token, formatting tokens included
                    chosen_mask = completion[:, 1:].chunk(2, dim=0)[0].bool()
                    nll = -per_token_logps.chunk(2, dim=0)[0][chosen_mask].mean()
                    loss = loss + weight * nll

            chosen_rewards = self.beta * chosen_logratios.detach()
            rejected_rewards = self.beta * rejected_logratios.detach()
            gather = self.accelerator.gather
            metrics = self._metrics[mode]
            metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
            metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
            metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
            metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
            metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
            metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
            if nll is not None:
                metrics["nll"].append(gather(nll.detach()).mean().item())
            if return_outputs:
                raise NotImplementedError("return_outputs is not supported by this DPO trainer")
            return loss

    return AlignmentDPOTrainer


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
    export_dtype: str = "fp32",
    callbacks: list | None = None,
    report_to: Sequence[str] = (),
    log_dir: Path | None = None,
) -> dict:
    """DPO on ``pairs`` from ``sft_path``; saves the merged policy to ``out`` and returns training metrics.

    If ``work_dir`` holds a step checkpoint of an interrupted run with the same settings, training resumes from it.
    Metrics go to ``report_to`` (TensorBoard event files in ``log_dir``).
    """
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig

    if not pairs:
        raise ValueError("the DPO set is empty: no prompt gave a pair that passed selection")
    prepare_training(seed)
    resume = resume_point(work_dir, {"config": cfg, "model": sft_path, "seed": seed, "data": pairs})
    tokenizer = load_chat_tokenizer(sft_path)
    model = AutoModelForCausalLM.from_pretrained(sft_path, dtype=weights_dtype(cfg, device))
    loss_type, loss_weights = ["sigmoid"], [1.0]
    if cfg.nll_weight > 0:
        loss_type, loss_weights = ["sigmoid", "sft"], [1.0, cfg.nll_weight]
    args = DPOConfig(
        **training_args(cfg, work_dir=work_dir, seed=seed, device=device, logging_steps=1, report_to=report_to),
        beta=cfg.beta,
        loss_type=loss_type,
        loss_weights=loss_weights,
        precompute_ref_log_probs=cfg.precompute_ref_logps,
    )
    fused = cfg.fused_lm_head if cfg.fused_lm_head is not None else use_cuda(device)
    t0 = time.time()
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=training_dataset(to_preference_records(pairs), work_dir),
        peft_config=peft_lora(cfg.lora, "CAUSAL_LM"),
        callbacks=[*(callbacks or []), *tensorboard_callbacks(report_to, log_dir)],
        formatting_ids=formatting_token_ids(tokenizer, sft_path) if cfg.mask_formatting_tokens else None,
        fused_lm_head=fused,
        group_by_length=cfg.group_by_length,
    )
    precompute_s = time.time() - t0  # includes tokenisation; with precompute, the reference pass over all pairs
    if resume:
        log.info("DPO: resuming from %s", resume)
    t0 = time.time()
    with large_allocations_on_heap():
        result = trainer.train(resume_from_checkpoint=resume)
    train_s = time.time() - t0
    save_merged(trainer.model, tokenizer, out, extra_files, dtype=export_dtype)
    history = trainer.state.log_history
    return {
        "pairs": len(pairs),
        "steps": result.global_step,
        "train_loss": round(result.training_loss, 4),
        "train_s": round(train_s, 1),
        "setup_s": round(precompute_s, 1),
        "tokens_per_s": round(trainer.state.num_input_tokens_seen / max(train_s, 1e-9), 1) if not resume else None,
        "resumed_from": Path(resume).name if resume else None,
        "reward_accuracy": _logged(history, "rewards/accuracies"),
        "reward_margin": _logged(history, "rewards/margins"),
        "nll": _logged(history, "nll"),
        "bf16": args.bf16,
        "dtype": args_dtype(args),
        "lora": cfg.lora.enabled,
        "loss_type": loss_type,
        "loss_weights": loss_weights,
        "mask_formatting_tokens": cfg.mask_formatting_tokens,
        "precompute_ref_logps": cfg.precompute_ref_logps,
        "fused_lm_head": fused,
        "group_by_length": cfg.group_by_length,
    }
