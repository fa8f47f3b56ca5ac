"""Checkpoint averaging: ``alignment average --models A B ... --out DIR [--weights w1 w2 ...] [--dtype fp32|bf16]``.

Llama 3 averaged models trained with different data or hyperparameters at each stage. Every model must be an HF
folder of the same architecture (same ``model_type``, the same tensor names and shapes); the result is
``sum_i w_i * theta_i`` with the weights normalised to sum to 1 (uniform when none are given), computed in fp32 one
tensor at a time (safetensors are read lazily, so memory stays at about one model plus one tensor per input).

The output folder takes its config, tokenizer, chat template and generation config from the first model, and
records the sources and weights in ``average.json``; it is written atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from alignment.models import ModelError
from alignment.records import check_output_dir

log = logging.getLogger(__name__)


def normalise_weights(weights: list[float] | None, n: int) -> list[float]:
    """Uniform weights for ``None``; otherwise ``weights`` scaled to sum to 1 (each must be >= 0, one > 0)."""
    if n < 2:
        raise ValueError(f"averaging needs at least 2 models, got {n}")
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise ValueError(f"--weights has {len(weights)} values for {n} models")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"--weights must be >= 0 with a positive sum, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def _tensor_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file that holds it (single file or a sharded index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return {name: folder / f for name, f in json.loads(index.read_text())["weight_map"].items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        raise ModelError(f"{folder}: no model.safetensors or model.safetensors.index.json (an HF folder is needed)")
    from safetensors import safe_open

    with safe_open(single, framework="pt") as f:
        return dict.fromkeys(f.keys(), single)


def _check_same_architecture(folders: list[Path]) -> list[dict[str, Path]]:
    from transformers import AutoConfig

    files = [_tensor_files(f) for f in folders]
    first_cfg = AutoConfig.from_pretrained(folders[0]).to_dict()
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    for folder, names in zip(folders[1:], files[1:], strict=True):
        cfg = AutoConfig.from_pretrained(folder).to_dict()
        for k in keys:
            if cfg.get(k) != first_cfg.get(k):
                raise ModelError(f"{folder}: {k}={cfg.get(k)!r} differs from {folders[0]} ({first_cfg.get(k)!r})")
        if set(names) != set(files[0]):
            diff = sorted(set(names) ^ set(files[0]))[:3]
            raise ModelError(f"{folder}: its tensors differ from {folders[0]}'s (e.g. {diff})")
    return files


def average_models(
    models: list[str | Path],
    out: Path,
    weights: list[float] | None = None,
    dtype: str = "fp32",
    overwrite: bool = False,
) -> dict:
    """Average ``models`` into ``out``; returns the record written to ``out/average.json``. An ``out`` that is a file,
    or a folder with something in it (unless ``overwrite``), is refused before any model is read."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from alignment.models import load_chat_tokenizer
    from alignment.train_common import save_merged

    check_output_dir(out, overwrite)
    folders = [Path(m) for m in models]
    for f in folders:
        if not f.is_dir():
            raise ModelError(f"model folder not found: {f}")
    w = normalise_weights(weights, len(folders))
    files = _check_same_architecture(folders)
    model = AutoModelForCausalLM.from_pretrained(folders[0], dtype=torch.float32)
    params = dict(model.state_dict(keep_vars=True))
    unknown = sorted(set(files[0]) - set(params))
    if unknown:
        raise ModelError(f"{folders[0]}: tensors the model class does not have: {unknown[:3]}")
    handles: dict[Path, object] = {}
    try:
        for name in files[0]:
            acc = None
            for wi, fmap in zip(w, files, strict=True):
                path = fmap[name]
                if path not in handles:
                    handles[path] = safe_open(path, framework="pt").__enter__()
                t = handles[path].get_tensor(name).to(torch.float32)
                if acc is not None and t.shape != acc.shape:
                    raise ModelError(f"{path}: tensor {name} has shape {tuple(t.shape)}, not {tuple(acc.shape)}")
                acc = t * wi if acc is None else acc.add_(t, alpha=wi)
            with torch.no_grad():
                params[name].copy_(acc)
    finally:
        for h in handles.values():
            h.__exit__(None, None, None)
    record = {"models": [str(f.resolve()) for f in folders], "weights": w, "dtype": dtype}
    tokenizer = load_chat_tokenizer(str(folders[0]))
    save_merged(model, tokenizer, out, {"average.json": json.dumps(record, indent=2) + "\n"}, dtype=dtype)
    return record


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", required=True, metavar="DIR", help="HF folders of the same architecture")
    p.add_argument("--out", required=True, type=Path, help="the averaged HF folder (must be new or empty)")
    p.add_argument("--weights", nargs="+", type=float, default=None, help="one per model (normalised); default uniform")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="weights dtype of --out (default fp32)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists and is not empty")


def run(args: argparse.Namespace) -> dict:
    record = average_models(args.models, args.out, args.weights, args.dtype, overwrite=args.overwrite)
    print(f"averaged {len(record['models'])} models (weights {[round(x, 4) for x in record['weights']]}) -> {args.out}")
    return record
