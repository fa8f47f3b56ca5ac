"""Llama 3's formatting-token mask in DPO: which tokens each term sees, on a rendered pair and the tiny model."""

import pytest
import torch

from alignment.dpo import _make_trainer_class, formatting_mask, formatting_token_ids, to_preference_records

PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]
PAIRS = [
    {"prompt": PROMPT, "chosen": "The answer is 4.", "rejected": "I do not know, sorry."},
    {"prompt": PROMPT, "chosen": "2 + 2 = 4. The answer is 4.", "rejected": "5"},
]


def _trainer(model_dir, tmp_path, cls=None, **extra):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args = DPOConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], beta=0.1, loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, 0.2], max_length=128,
    )  # fmt: skip
    return (cls or DPOTrainer)(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(to_preference_records(PAIRS)),
        **extra,
    )


@pytest.fixture
def batch_and_tokenizer(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    return batch, trainer.processing_class


def test_formatting_mask_is_end_of_turn_and_template_trailer_only(batch_and_tokenizer, tiny_model_dir):
    batch, tok = batch_and_tokenizer
    ids = formatting_token_ids(tok, tiny_model_dir)
    fmt = formatting_mask(batch["input_ids"], batch["completion_mask"], ids)
    texts = [p[side] for side in ("chosen", "rejected") for p in PAIRS]  # the batch is [chosen..., rejected...]
    for row, text in zip(range(batch["input_ids"].size(0)), texts, strict=True):
        row_ids, comp, f = batch["input_ids"][row], batch["completion_mask"][row], fmt[row]
        dpo_tokens = row_ids[(comp == 1) & (f == 0)].tolist()
        format_tokens = row_ids[f == 1].tolist()
        prompt_tokens = row_ids[(comp == 0) & (batch["attention_mask"][row] == 1)].tolist()
        assert tok.decode(dpo_tokens) == text  # the DPO term: the response text, nothing else
        assert tok.decode(format_tokens) == "<|im_end|>\n"  # end-of-turn + the template's newline
        assert tok.decode(prompt_tokens).endswith("<|im_start|>assistant\n")  # the role header is prompt: no loss
        assert not (f.bool() & (comp == 0)).any()  # never outside the completion (prompt, padding)


def _per_token_logps(model, batch):
    """Reference implementation: log p(token) from plain logits, (batch, seq-1)."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-lm-head", "full-logits"])
def test_masked_trainer_dpo_term_skips_formatting_and_nll_keeps_it(tiny_model_dir, tmp_path, fused):
    cls = _make_trainer_class()
    trainer = _trainer(tiny_model_dir, tmp_path, cls, formatting_ids=formatting_token_ids(
        _trainer(tiny_model_dir, tmp_path / "t").processing_class, tiny_model_dir), fused_lm_head=fused,
        group_by_length=False)  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer._compute_loss(trainer.model, batch, return_outputs=False)
    m = trainer._metrics["eval"]

    ref = _per_token_logps(trainer.model, batch)
    comp = batch["completion_mask"][:, 1:].bool()
    fmt = formatting_mask(batch["input_ids"], batch["completion_mask"], trainer.formatting_ids)[:, 1:].bool()
    n = len(PAIRS)
    dpo_logps = (ref * (comp & ~fmt)).sum(1)
    assert m["logps/chosen"][-1] == pytest.approx(dpo_logps[:n].mean().item(), abs=1e-4)
    assert m["logps/rejected"][-1] == pytest.approx(dpo_logps[n:].mean().item(), abs=1e-4)
    nll = -ref[:n][comp[:n]].mean()  # every chosen completion token, <|im_end|> included
    assert m["nll"][-1] == pytest.approx(nll.item(), abs=1e-4)
    # The reference is the same model here (no training yet): log-ratios are 0, the DPO term is log 2.
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item() + 0.2 * nll.item(), abs=1e-4)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-lm-head", "full-logits"])
@pytest.mark.parametrize("formatting_ids", [[], None], ids=["empty-set", "mask-off"])
def test_masked_trainer_equals_trl_when_nothing_is_formatting(tiny_model_dir, tmp_path, fused, formatting_ids):
    """With an empty formatting set (or the mask off) the subclass computes exactly TRL's sigmoid + sft loss, from
    TRL's fused LM head or from the full logits."""
    ours = _trainer(
        tiny_model_dir, tmp_path / "a", _make_trainer_class(), formatting_ids=formatting_ids, fused_lm_head=fused,
        group_by_length=False,
    )  # fmt: skip
    stock = _trainer(tiny_model_dir, tmp_path / "b")
    batch = stock.data_collator([stock.train_dataset[i] for i in range(len(PAIRS))])
    with torch.no_grad():
        # A policy different from the reference (adapters are not used here: perturb a copy's weights).
        for t in (ours, stock):
            torch.manual_seed(1)
            for p in t.model.parameters():
                p.add_(0.01 * torch.randn_like(p))
            t.ref_model = None
    # Without peft and without a ref model TRL would compare the policy to itself; precompute gives both trainers
    # the same fixed reference instead.
    ref_c, ref_r = torch.tensor([-30.0, -40.0]), torch.tensor([-35.0, -20.0])
    for t in (ours, stock):
        t.precompute_ref_logps = True
        t.model.eval()
    batch = {**batch, "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}
    with torch.no_grad():
        a = ours._compute_loss(ours.model, batch, return_outputs=False)
        b = stock._compute_loss(stock.model, batch, return_outputs=False)
    assert a.item() == pytest.approx(b.item(), abs=1e-5)
    for key in ("rewards/accuracies", "rewards/margins", "logps/chosen"):
        assert ours._metrics["eval"][key][-1] == pytest.approx(stock._metrics["eval"][key][-1], abs=1e-4)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-lm-head", "full-logits"])
def test_reference_log_probs_use_the_dpo_mask(tiny_model_dir, tmp_path, fused):
    """The precomputed reference log-probs sum the same tokens as the policy's DPO term (formatting left out)."""
    tok = _trainer(tiny_model_dir, tmp_path / "t").processing_class
    trainer = _trainer(
        tiny_model_dir, tmp_path, _make_trainer_class(), formatting_ids=formatting_token_ids(tok, tiny_model_dir),
        fused_lm_head=fused, group_by_length=False,
    )  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    trainer.model.eval()
    ref_c, ref_r = trainer.compute_ref_log_probs(trainer.model, batch)
    ref = _per_token_logps(trainer.model, batch)
    comp = batch["completion_mask"][:, 1:].bool()
    fmt = formatting_mask(batch["input_ids"], batch["completion_mask"], trainer.formatting_ids)[:, 1:].bool()
    expected = (ref * (comp & ~fmt)).sum(1)
    assert torch.allclose(torch.cat([ref_c, ref_r]), expected, atol=5e-3)  # the fused head rounds differently


def test_length_grouped_batches_hold_pairs_of_similar_length(tiny_model_dir, tmp_path):
    """group_by_length: the sampler puts the longest pair first and orders batches by the pairs' padded length
    (prompt + the longer response), so a batch pads little; every pair is drawn once."""
    from datasets import Dataset

    pairs = [{"prompt": PROMPT, "chosen": "word " * n, "rejected": "no"} for n in (1, 60, 2, 61, 3, 62, 4, 63)]
    trainer = _trainer(tiny_model_dir, tmp_path, _make_trainer_class(), formatting_ids=None, fused_lm_head=False,
                       group_by_length=True)  # fmt: skip
    trainer.args.per_device_train_batch_size = 2
    dataset = trainer._prepare_dataset(
        Dataset.from_list(to_preference_records(pairs)), trainer.processing_class, trainer.args, "train"
    )
    order = list(trainer._get_train_sampler(dataset))
    assert sorted(order) == list(range(len(pairs)))
    lengths = [len(dataset[i]["chosen_ids"]) for i in order]
    batches = [lengths[i : i + 2] for i in range(0, len(lengths), 2)]
    assert all(max(b) - min(b) <= 3 for b in batches), batches  # long with long, short with short
