"""Free disk space, checked before a round's stages start, so a full disk stops a round at once and names the folder,
instead of failing in SFT, DPO or the RM after minutes of generation (and leaving a half-written checkpoint).

What a round leaves on disk is its model folders: ``sft/`` and ``model/`` (the policy's size each), ``rm/`` (the RM
base's size) and, with ``dpo.variants``, every variant and their average. While a stage trains, its step checkpoint
lies in ``work/`` too, and is removed when the stage ends: with LoRA the adapter and its optimizer state (small), with
all weights trained the weights and both Adam moments, about three times the model's fp32 size. The estimate is
what the pending stages leave plus the largest checkpoint one of them holds, and a tenth more. On the embedded 135M
model (a 0.54 GB fp32 folder) a default round left 1.31 GB (sft 0.54, model 0.54, rm 0.23 GB): the estimate for it is
1.85 GB.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alignment.config import RoundConfig

MARGIN = 1.1
LORA_CHECKPOINT = 0.1  # adapter + optimizer state, as a fraction of the model folder (r=16 on 135M: under 2%)
FULL_CHECKPOINT = 3.0  # fp32 weights + Adam's two moments, in units of the model's fp32 size


class DiskSpaceError(ValueError):
    """Not enough free space for the round's pending stages; nothing was started."""


@dataclass(frozen=True)
class DiskNeed:
    stage: str
    keeps: int
    """Bytes the stage leaves in the round folder."""
    checkpoint: int
    """Bytes its step checkpoint holds while it trains (removed when the stage ends)."""


def folder_bytes(path: str | Path) -> int:
    """Bytes of the files under ``path`` (a file: its size; a hub id or a missing path: 0)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if not p.is_dir():
        return 0
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def fp32_factor(path: str | Path) -> float:
    """How many times its folder the model weighs in fp32: 1 for a float32 folder, 2 for bf16 or fp16 (and for a
    folder whose config.json names no dtype: the common case, and the safe side)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return 2.0
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "")
    return 1.0 if dtype in ("float32", "torch.float32") else 2.0


def _checkpoint(size: int, factor: float, lora: bool, save_steps: int) -> int:
    if save_steps == 0:
        return 0
    return int(size * (LORA_CHECKPOINT if lora else FULL_CHECKPOINT * factor))


def stage_needs(
    cfg: RoundConfig, policy_bytes: int, rm_base_bytes: int, pending: Iterable[str], fp32: float = 2.0
) -> list[DiskNeed]:
    """The disk each pending model-writing stage needs (the other stages write megabytes, left out); ``fp32``: how
    many times its folder the policy weighs in fp32 (:func:`fp32_factor`)."""
    needs = []
    for name in pending:
        if name == "sft":
            ckpt = _checkpoint(policy_bytes, fp32, cfg.sft.lora.enabled, cfg.sft.save_steps)
            needs.append(DiskNeed("sft", policy_bytes, ckpt))
        elif name == "dpo" and cfg.dpo.enabled:
            runs = 1 + len(cfg.dpo.variants)
            copies = 1 if runs == 1 else runs + 2  # each run, their average, and the chosen one copied to model/
            ckpt = _checkpoint(policy_bytes, fp32, cfg.dpo.lora.enabled, cfg.dpo.save_steps)
            needs.append(DiskNeed("dpo", copies * policy_bytes, ckpt))
        elif name == "dpo":
            needs.append(DiskNeed("dpo", policy_bytes, 0))  # model/ is a copy of sft/
        elif name == "reward_model" and not cfg.reward_model.pretrained:
            needs.append(DiskNeed("reward_model", rm_base_bytes, 0))  # the RM trains without step checkpoints
    return needs


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (its nearest existing parent)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def check_disk(
    cfg: RoundConfig, round_dir: Path, policy: str, rm_base: str | None, pending: Iterable[str]
) -> int | None:
    """Raise :class:`DiskSpaceError` if the file system of ``round_dir`` has less free space than the pending stages
    need (estimated as the module says); returns the estimate in bytes (None: no pending stage writes a model)."""
    rm_bytes = folder_bytes(rm_base) if rm_base else 0
    needs = stage_needs(cfg, folder_bytes(policy), rm_bytes, pending, fp32=fp32_factor(policy))
    if not needs:
        return None
    need = int((sum(n.keeps for n in needs) + max(n.checkpoint for n in needs)) * MARGIN)
    free = free_bytes(round_dir)
    if free < need:
        gb = 1e9
        parts = ", ".join(f"{n.stage} {n.keeps / gb:.2f} GB (checkpoint {n.checkpoint / gb:.2f} GB)" for n in needs)
        raise DiskSpaceError(
            f"not enough disk for {round_dir}: {free / gb:.2f} GB free, the stages still to run need about "
            f"{need / gb:.2f} GB ({parts}; the largest checkpoint counted once, and a tenth more). Free some space "
            "(finished runs in output_dir, old checkpoints) or set output_dir to a larger disk; nothing was started, "
            "and finished stages are kept"
        )
    return need
