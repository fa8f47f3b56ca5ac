"""The reward model: Bradley-Terry training with TRL's RewardTrainer, and batched scoring.

Training data each round is every preference pair collected so far: the shipped seed pairs plus, from every round,
pairs the pipeline derives from verifier outcomes (a verified candidate over a failed one for the same prompt).
Conversations are rendered with the RM's own tokenizer and chat template, from ``messages``: never policy token ids.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from alignment.config import RewardModelConfig
from alignment.models import load_chat_tokenizer
from alignment.train_common import peft_lora, prepare_training, save_merged, training_args, use_cuda

log = logging.getLogger(__name__)


def verifier_pairs(
    prompts: dict[str, dict], candidates: list[dict], source: str, max_per_prompt: int = 2
) -> list[dict]:
    """Preference pairs from verifier outcomes: for each prompt, passing candidates over failing ones.

    ``prompts`` maps prompt_id -> prompt record; ``candidates`` carry ``prompt_id``, ``candidate_id``, ``text`` and
    ``verified`` (True/False/None). Candidates without a verifier verdict (None) make no pairs. Pairs are formed in
    candidate_id order (pass i with fail i), at most ``max_per_prompt`` per prompt, and identical texts are skipped.
    """
    by_prompt: dict[str, list[dict]] = {}
    for c in candidates:
        by_prompt.setdefault(c["prompt_id"], []).append(c)
    pairs = []
    for pid in sorted(by_prompt):
        cands = sorted(by_prompt[pid], key=lambda c: c["candidate_id"])
        passed = [c for c in cands if c["verified"] is True]
        failed = [c for c in cands if c["verified"] is False]
        n = 0
        for good, bad in zip(passed, failed, strict=False):
            if n >= max_per_prompt:
                break
            if " ".join(good["text"].split()) == " ".join(bad["text"].split()):
                continue
            prompt = prompts[pid]
            pairs.append(
                {
                    "pair_id": f"{good['candidate_id']}>{bad['candidate_id']}",
                    "capability": prompt["capability"],
                    "messages": prompt["messages"],
                    "chosen": good["text"],
                    "rejected": bad["text"],
                    "source": source,
                }
            )
            n += 1
    return pairs


def is_heldout(pair_id: str, fraction: float) -> bool:
    """Stable train/held-out split by a hash of the pair id (the same pair stays on the same side every round)."""
    h = int(hashlib.sha256(pair_id.encode()).hexdigest()[:8], 16)
    return (h % 10_000) < fraction * 10_000


def _conversation(messages: list[dict], response: str) -> list[dict]:
    return [
        *({"role": m["role"], "content": m["content"]} for m in messages),
        {"role": "assistant", "content": response},
    ]


def train_reward_model(
    pairs: list[dict], base: str, cfg: RewardModelConfig, out: Path, *, seed: int, device: str, work_dir: Path
) -> dict:
    """Train a 1-logit sequence-classification RM on ``pairs`` (Bradley-Terry loss) and save it to ``out``.

    Returns metrics: pair counts, held-out pairwise accuracy, training loss and throughput.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    prepare_training(seed)
    train = [p for p in pairs if not is_heldout(p["pair_id"], cfg.heldout_fraction)]
    heldout = [p for p in pairs if is_heldout(p["pair_id"], cfg.heldout_fraction)]
    if not train:
        raise ValueError("the reward model has no training pairs (no seed pairs and no verifier-derived pairs)")

    tokenizer = load_chat_tokenizer(base)
    kwargs = {"num_labels": 1, "dtype": torch.float32}
    if cfg.num_layers:
        kwargs["num_hidden_layers"] = cfg.num_layers
    model = AutoModelForSequenceClassification.from_pretrained(base, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id

    dataset = Dataset.from_list(
        [
            {
                "chosen": _conversation(p["messages"], p["chosen"]),
                "rejected": _conversation(p["messages"], p["rejected"]),
            }
            for p in train
        ]
    )
    args = RewardConfig(
        **training_args(cfg, work_dir=work_dir, seed=seed, device=device, logging_steps=5),
        disable_tqdm=False,
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        processing_class=tokenizer,
        train_dataset=dataset,
        peft_config=peft_lora(cfg.lora, "SEQ_CLS"),
    )
    t0 = time.time()
    result = trainer.train()
    train_s = time.time() - t0
    ntok = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset)
    save_merged(trainer.model, tokenizer, out)
    del trainer, model

    metrics = {
        "train_pairs": len(train),
        "heldout_pairs": len(heldout),
        "train_loss": round(result.training_loss, 4),
        "train_s": round(train_s, 1),
        "train_tokens_per_s": round(ntok * cfg.epochs / max(train_s, 1e-9), 1),
        "bf16": args.bf16,
        "backbone_layers": cfg.num_layers,
        "heldout_accuracy": None,
    }
    if heldout:
        scorer = RewardScorer(str(out), device=device, batch_size=cfg.score_batch_size, max_length=cfg.max_length)
        chosen = scorer.score([_conversation(p["messages"], p["chosen"]) for p in heldout])
        rejected = scorer.score([_conversation(p["messages"], p["rejected"]) for p in heldout])
        metrics["heldout_accuracy"] = round(sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(heldout), 4)
    return metrics


class RewardScorer:
    """Scores conversations with a sequence-classification RM, reading the reward at the last real token.

    Conversations are rendered with the RM's own chat template. Batches are right-padded with the RM's pad token,
    which the model uses to find the last non-pad position; if the pad id also occurs as a real token (an RM whose
    pad is its eos, say), sequences are scored one at a time so padding can never shift the read position.
    """

    def __init__(self, model: str, *, device: str = "auto", batch_size: int = 16, max_length: int = 1024):
        import torch
        from transformers import AutoModelForSequenceClassification

        self.tokenizer = load_chat_tokenizer(model)
        self.tokenizer.padding_side = "right"
        self.device = "cuda" if use_cuda(device) else "cpu"
        self.model = AutoModelForSequenceClassification.from_pretrained(model, dtype=torch.float32).to(self.device)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def _encode(self, conversation: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-self.max_length :]  # keep the end: the reward is read at the last token

    def score(self, conversations: list[list[dict]]) -> list[float]:
        import torch

        encoded = [self._encode(c) for c in conversations]
        pad = self.tokenizer.pad_token_id
        scores: list[float | None] = [None] * len(encoded)
        # Sort by length so batches waste little padding; results are put back by index.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        with torch.inference_mode():
            i = 0
            while i < len(order):
                idx = order[i : i + self.batch_size]
                batch = [encoded[j] for j in idx]
                if any(pad in ids for ids in batch):
                    idx, batch = idx[:1], batch[:1]
                width = max(len(ids) for ids in batch)
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                for row, ids in enumerate(batch):
                    input_ids[row, : len(ids)] = torch.tensor(ids)
                    attention[row, : len(ids)] = 1
                # Batch of one: no padding, so read the very last position even if it equals the pad id.
                self.model.config.pad_token_id = None if len(batch) == 1 else pad
                logits = self.model(
                    input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)
                ).logits
                for j, value in zip(idx, logits[:, 0].float().cpu().tolist(), strict=True):
                    scores[j] = value
                i += len(idx)
        return [float(s) for s in scores]  # type: ignore[arg-type]
