"""Pieces shared by the three trainers (reward model, SFT, DPO): precision, device, LoRA and export of a folder."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from alignment.config import DpoConfig, LoraConfig, RewardModelConfig, SftConfig
from alignment.hardware import resolve_device, resolve_dtype

log = logging.getLogger(__name__)

TrainingSection = SftConfig | DpoConfig | RewardModelConfig
SECTION_NAMES = {SftConfig: "sft", DpoConfig: "dpo", RewardModelConfig: "reward_model"}


def world_size() -> int:
    """Training processes of this run: ``WORLD_SIZE`` as ``accelerate launch`` (torchrun) sets it, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in a single-process run and in rank 0 of a launched one: the only process that writes exports, marker
    files and logs."""
    return int(os.environ.get("RANK", "0")) == 0


def per_device_batch_size(batch_size: int, key: str) -> int:
    """``batch_size`` is the global batch (per optimizer micro-step): split evenly over the training processes, so a
    2-process run takes the same steps on the same rows as a 1-process one."""
    n = world_size()
    if batch_size % n:
        raise ValueError(f"{key}.batch_size ({batch_size}) must be divisible by accelerate.num_processes ({n})")
    return batch_size // n


def use_cuda(device: str) -> bool:
    """Whether training runs on the GPU under the ``device`` setting (the policy in :mod:`alignment.hardware`)."""
    return resolve_device(device) == "cuda"


def training_dtype(precision: str, device: str, key: str = "precision") -> str:
    """The dtype a trainer computes in: ``auto`` -> bf16 where the device has it natively, else fp32."""
    return resolve_dtype(precision, resolve_device(device), key=key)


def weights_dtype(cfg: TrainingSection, device: str):
    """The dtype training loads the weights in: bf16 where the trainer computes in bf16 and LoRA freezes them (half
    the memory of a 1-8B model on a GPU; the adapters stay fp32); fp32 otherwise, as full fine-tuning keeps fp32
    master weights (FSDP and ZeRO shard them)."""
    import torch

    if cfg.lora.enabled and training_dtype(cfg.precision, device) == "bf16":
        return torch.bfloat16
    return torch.float32


def use_bf16(precision: str, device: str) -> bool:
    """Resolve a precision setting ("auto" | "fp32" | "bf16") to whether bf16 autocast is used."""
    return training_dtype(precision, device) == "bf16"


class LengthSortedSampler:
    """Indices in batches of rows of similar length: sorted by length, cut into batches of ``batch_size``, the batch
    order shuffled each epoch (seeded). transformers' ``LengthGroupedSampler`` sorts only within random "megabatches"
    of min(n / (4 x batch), 50) batches: with the few dozen rows of a CPU round that is one or two batches, so it
    barely groups (37 DPO pairs, batch 4: 12.8k padded tokens in random order, 9.7k sorted, 7.7k real).

    With several training processes ``batch_size`` is the global batch: the dataloader hands consecutive slices of
    one sorted batch to the processes (accelerate's batch sharding), so every step sees the same rows as with one.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch

        order = sorted(range(len(self.lengths)), key=lambda i: (-self.lengths[i], i))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield from batches[b]


def args_dtype(args) -> str:
    """What a trainer built from ``args`` (TrainingArguments) computes in: fp32, bf16 or fp16 (autocast)."""
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def training_args(
    cfg: TrainingSection,
    *,
    work_dir: Path,
    seed: int,
    device: str,
    logging_steps: int,
    report_to: Sequence[str] = (),
) -> dict:
    """The TrainingArguments the three trainers (reward model, SFT, DPO) share, from their config section.

    Each trainer adds its own (loss settings, completion masking) and builds its TRL config class from this dict.
    ``report_to`` passes through, except ``tensorboard``: see :func:`tensorboard_callbacks`.
    """
    dtype = training_dtype(cfg.precision, device)
    return {
        "output_dir": str(work_dir),
        "per_device_train_batch_size": per_device_batch_size(cfg.batch_size, SECTION_NAMES[type(cfg)]),
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,  # a float below 1 is a ratio of the total steps (transformers 5)
        "max_length": cfg.max_length,
        "bf16": dtype == "bf16",
        "fp16": dtype == "fp16",
        "use_cpu": not use_cuda(device),
        "seed": seed,
        "report_to": [r for r in report_to if r != "tensorboard"] or "none",
        "logging_steps": logging_steps,
        "include_num_input_tokens_seen": "non_padding",  # real tokens, for tokens/s
        **checkpointing_args(getattr(cfg, "save_steps", 0)),
        "gradient_checkpointing": getattr(cfg, "gradient_checkpointing", False),
    }


def tensorboard_callbacks(report_to: Sequence[str], log_dir: Path | None) -> list:
    """A TensorBoard callback writing to ``log_dir`` when ``report_to`` names tensorboard (else none).

    transformers would log under the trainer's output_dir, which here is the work folder a stage removes once it
    finishes, so the stage's log folder is given explicitly. A resumed run appends a new event file to it.
    """
    if "tensorboard" not in report_to or not is_main_process():
        return []
    if log_dir is None:
        raise ValueError("report_to names tensorboard but no log folder was given")
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir)))]


def checkpointing_args(save_steps: int) -> dict:
    """Step checkpoints for resuming a killed run: every ``save_steps`` optimizer steps, only the last one kept."""
    if save_steps < 0:
        raise ValueError(f"save_steps must be >= 0 (0 disables step checkpoints), got {save_steps}")
    if save_steps == 0:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 1}


def last_checkpoint(work_dir: Path) -> str | None:
    """The newest complete ``checkpoint-<step>`` folder a killed run left in ``work_dir`` (None: start fresh).

    The Trainer writes a checkpoint's ``trainer_state.json`` last, so a folder without it (killed mid-save) is
    skipped.
    """
    steps = []
    for d in Path(work_dir).glob("checkpoint-*"):
        suffix = d.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (d / "trainer_state.json").is_file():
            steps.append((int(suffix), d))
    return str(max(steps)[1]) if steps else None


def resume_point(work_dir: Path, settings: dict) -> str | None:
    """The checkpoint to resume from, if ``work_dir`` holds one of a run with exactly these ``settings`` (config,
    starting model, data, seed); a work folder left by other settings is cleared first, so a changed config never
    continues someone else's optimizer state."""
    from alignment.config import config_to_dict
    from alignment.records import json_sha256

    work_dir = Path(work_dir)
    fingerprint = json_sha256({k: config_to_dict(v) for k, v in settings.items()})
    stamp = work_dir / "settings.sha256"
    if not is_main_process():  # rank 0 clears and stamps the folder; the others wait for its stamp
        _wait_for(lambda: stamp.is_file() and stamp.read_text().strip() == fingerprint, f"{stamp} from rank 0")
        return last_checkpoint(work_dir)
    if work_dir.exists() and (not stamp.is_file() or stamp.read_text().strip() != fingerprint):
        if last_checkpoint(work_dir):
            log.info("%s: checkpoints of other settings, starting afresh", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")
    return last_checkpoint(work_dir)


def training_dataset(records: list[dict], work_dir: Path):
    """``records`` as a datasets ``Dataset`` for a trainer. With several processes it is one folder on disk that every
    rank opens (rank 0 writes it, the others wait for it): TRL keeps derived data (DPO's precomputed reference
    log-probs) in cache files next to the dataset, and an in-memory dataset's cache is a temporary folder private to
    each process, so rank 1 looked for rank 0's file and failed."""
    from datasets import Dataset, load_from_disk

    if world_size() == 1:
        return Dataset.from_list(records)
    from alignment.records import json_sha256

    path = Path(work_dir) / f"dataset-{json_sha256(records)[:16]}"
    if is_main_process() and not path.is_dir():
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        Dataset.from_list(records).save_to_disk(str(tmp))
        os.replace(tmp, path)
    _wait_for(path.is_dir, f"{path} from rank 0")
    return load_from_disk(str(path))


def _wait_for(ready, what: str, timeout_s: float = 300.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.1)


EXPORT_DTYPES = ("fp32", "bf16")


def peft_lora(cfg: LoraConfig, task_type: str):
    """A peft LoraConfig from ours, or None when LoRA is disabled (full fine-tuning)."""
    if not cfg.enabled:
        return None
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        task_type=task_type,
    )


def prepare_training(seed: int) -> None:
    """Use every core, and seed every RNG *before* models are built: a reward model's new score head and LoRA
    adapters are initialised when the model/trainer is created, before the Trainer seeds anything itself (unseeded,
    two identical runs gave RM scores up to 1.5 apart)."""
    import torch
    from transformers import set_seed

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # processes sharing this machine's cores
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    set_seed(seed)


M_MMAP_THRESHOLD = -3  # <malloc.h>
GLIBC_DEFAULT_MMAP_THRESHOLD = 128 * 1024


@functools.cache
def _libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (glibc only)
        return libc
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def large_allocations_on_heap(threshold: int = 1 << 30):
    """While training, have glibc serve allocations below ``threshold`` bytes from the heap, not fresh mmap()s.

    By default glibc maps large blocks (logits, activations, their gradients) anew and unmaps them on free, so every
    training step pays page faults to zero those pages again. On this CPU that cost about a quarter of SFT
    throughput (SmolLM2-135M, batch 8, bf16, ad-hoc A/B runs: 205 -> 255-295 tokens/s with the heap setting). The heap keeps freed blocks, so afterwards the
    default threshold is restored and free heap memory is returned to the OS (``malloc_trim``): stages that follow
    in the same process do not inherit a training step's peak. A no-op off glibc.
    """
    import ctypes

    libc = _libc()
    if libc is None:
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(threshold))
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(GLIBC_DEFAULT_MMAP_THRESHOLD))
        libc.malloc_trim(ctypes.c_size_t(0))


def save_merged(model, tokenizer, out: Path, extra_files: dict[str, str] | None = None, *, dtype: str = "fp32") -> Path:
    """Merge LoRA adapters (if any) into the weights and save a full HF folder atomically, in ``dtype``.

    Merging each round's adapters into the exported weights is what lets low-rank updates accumulate into a
    full-rank change over rounds.
    """
    import torch

    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"model.export_dtype must be one of {EXPORT_DTYPES}, got {dtype!r}")
    if not is_main_process():  # every rank holds the same weights after training; rank 0 exports them
        return out
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model = model.to(torch.float32 if dtype == "fp32" else torch.bfloat16)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    gen_cfg = getattr(model, "generation_config", None)
    if gen_cfg is not None:
        gen_cfg.save_pretrained(tmp)
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
