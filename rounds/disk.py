"""Free disk space, checked before the first stage of a round that has to run, so a full disk stops the round at once
and names the folder, instead of failing in SFT, DPO or the RM after minutes of generation.

What a round leaves on disk is its model folders, each written in full precision unless ``model.export_dtype`` says
bf16: ``sft/`` and ``model/`` (and, with ``dpo.variants``, every variant, their average and the chosen copy) at the
policy's size in the export dtype; ``rm/`` in fp32, cut to ``reward_model.num_layers`` layers (the embeddings whole).
While a stage trains, its step checkpoint lies in ``work/``: with LoRA the adapter and its optimizer state (small),
with all weights trained the fp32 weights and both Adam moments, three times the model's fp32 size. The Trainer
writes a new checkpoint before it deletes the old one, so two can be there at once. A stage that replaces an output
it wrote before (a forced or stale stage) writes the new folder beside the old one, then renames it: the old size is
needed only for that moment. The estimate: what the pending stages leave, plus twice the largest of these passing
needs, and a tenth more.

On the embedded 135M model (a 0.54 GB fp32 folder) a default round writes 1.31 GB (sft 0.54, model 0.54, rm 0.23
GB); the estimate for it is 1.56 GB.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alignment.config import RoundConfig
from alignment.models import hf_cache_folder

MARGIN = 1.1
LORA_CHECKPOINT = 0.1  # adapter + optimizer state, as a fraction of the model's fp32 size (r=16 on 135M: under 2%)
FULL_CHECKPOINT = 3.0  # fp32 weights + Adam's two moments, in units of the model's fp32 size
MODEL_OUTPUTS = {"sft": "sft", "dpo": "model", "reward_model": "rm"}


class DiskSpaceError(ValueError):
    """Not enough free space for the round's pending stages; no stage was started."""


@dataclass(frozen=True)
class DiskNeed:
    stage: str
    keeps: int
    """Bytes the stage leaves in the round folder."""
    passing: int
    """Bytes it holds only while it runs: its step checkpoint, or the output it replaces."""


def model_folder(spec: str | None) -> Path | None:
    """The local folder of a model spec: the folder itself, or a hub id's snapshot in the HF cache (None: not
    found)."""
    if not spec:
        return None
    return Path(spec) if Path(spec).is_dir() else hf_cache_folder(spec)


def folder_bytes(path: str | Path) -> int:
    """Bytes of the files under ``path``, symlinks followed (a hub snapshot links to its blobs)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def fp32_factor(folder: str | Path) -> float:
    """How many times its folder the model weighs in fp32: 1 for a float32 folder, 2 for bf16 or fp16 (and for a
    folder whose config.json names no dtype: the common case, and the safe side)."""
    config = _config(Path(folder))
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "")
    return 1.0 if dtype in ("float32", "torch.float32") else 2.0


def fp32_bytes(folder: Path) -> int:
    """The model's size in fp32."""
    return int(folder_bytes(folder) * fp32_factor(folder))


def reward_model_bytes(base: Path, num_layers: int | None) -> int:
    """What the RM stage saves: the base in fp32 cut to its first ``num_layers`` layers, embeddings kept whole (no
    LM head); the whole base in fp32 when its config does not say its shape."""
    total = fp32_bytes(base)
    config = _config(base)
    depth, vocab, hidden = (config.get(k) for k in ("num_hidden_layers", "vocab_size", "hidden_size"))
    if not (num_layers and isinstance(depth, int) and isinstance(vocab, int) and isinstance(hidden, int)):
        return total
    embed = vocab * hidden * 4
    body = total - embed * (1 if config.get("tie_word_embeddings", True) else 2)
    if body <= 0:
        return total
    return int(embed + body * min(1.0, num_layers / depth))


def stage_needs(
    cfg: RoundConfig, policy_fp32: int, rm_bytes: int, pending: Iterable[str], existing: dict[str, int] | None = None
) -> list[DiskNeed]:
    """The disk each pending model-writing stage needs (the other stages write megabytes: left out). ``policy_fp32``:
    the starting model's fp32 size; ``rm_bytes``: what the RM stage saves (:func:`reward_model_bytes`);
    ``existing``: the bytes of a stage's output folder that is already there (a re-run replaces it)."""
    export = int(policy_fp32 * (1.0 if cfg.model.export_dtype == "fp32" else 0.5))
    existing = existing or {}

    def checkpoint(lora: bool, save_steps: int) -> int:
        return 0 if save_steps == 0 else int(policy_fp32 * (LORA_CHECKPOINT if lora else FULL_CHECKPOINT))

    needs = []
    for name in pending:
        if name == "sft":
            need = DiskNeed("sft", export, checkpoint(cfg.sft.lora.enabled, cfg.sft.save_steps))
        elif name == "dpo":
            runs = 1 + len(cfg.dpo.variants) if cfg.dpo.enabled else 1
            copies = 1 if runs == 1 else runs + 2  # each run, their average, and the chosen one copied to model/
            ckpt = checkpoint(cfg.dpo.lora.enabled, cfg.dpo.save_steps) if cfg.dpo.enabled else 0
            need = DiskNeed("dpo", copies * export, ckpt)
        elif name == "reward_model" and not cfg.reward_model.pretrained:
            need = DiskNeed("reward_model", rm_bytes, 0)  # the RM trains without step checkpoints
        else:
            continue
        if old := existing.get(name, 0):  # the new folder replaces the old one, already on disk
            need = DiskNeed(need.stage, max(0, need.keeps - old), max(need.passing, min(old, need.keeps)))
        needs.append(need)
    return needs


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (its nearest existing parent)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def needed_bytes(needs: list[DiskNeed]) -> int:
    return int((sum(n.keeps for n in needs) + 2 * max((n.passing for n in needs), default=0)) * MARGIN)


def check_disk(cfg: RoundConfig, round_dir: Path, policy: str, rm_base: str | None, pending: Iterable[str]) -> int:
    """Raise :class:`DiskSpaceError` if the file system of ``round_dir`` has less free space than the pending stages
    need (estimated as the module says); returns the estimate in bytes (0: no pending stage writes a model). A model
    whose folder cannot be found (a hub id not in the cache) counts as size 0, so the check is only as good as what
    it can measure."""
    pending = [name for name in pending if name in MODEL_OUTPUTS]  # the others write megabytes
    if not pending:
        return 0  # nothing to measure: no model folder is walked
    policy_dir = model_folder(policy)
    rm_dir = model_folder(rm_base)
    policy_fp32 = fp32_bytes(policy_dir) if policy_dir else 0
    rm_bytes = reward_model_bytes(rm_dir, cfg.reward_model.num_layers) if rm_dir else 0
    existing = {s: folder_bytes(round_dir / out) for s, out in MODEL_OUTPUTS.items() if (round_dir / out).is_dir()}
    needs = stage_needs(cfg, policy_fp32, rm_bytes, pending, existing)
    need = needed_bytes(needs)
    free = free_bytes(round_dir)
    if free < need:
        gb = 1e9
        parts = ", ".join(f"{n.stage} {n.keeps / gb:.2f} GB (+{n.passing / gb:.2f} GB while it runs)" for n in needs)
        raise DiskSpaceError(
            f"not enough disk for {round_dir}: {free / gb:.2f} GB free, the stages still to run need about "
            f"{need / gb:.2f} GB ({parts}; the largest passing need counted twice, and a tenth more). Free some "
            "space (finished runs in output_dir, old checkpoints) or set output_dir to a larger disk; no stage was "
            "started, and finished stages are kept"
        )
    return need
