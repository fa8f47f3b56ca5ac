"""TRL trainers on a tiny random model: loss masks, one real optimisation step each, exported folders."""

import pytest

from alignment.config import DpoConfig, LoraConfig, RewardModelConfig, SftConfig
from alignment.dpo import to_preference_records, train_dpo
from alignment.sft import to_prompt_completion, train_sft

PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]
ROWS = [
    {"prompt_id": f"p{i}", "messages": [*PROMPT, {"role": "assistant", "content": f"The answer is {4 + i}."}]}
    for i in range(4)
]
TINY_LORA = LoraConfig(r=4, alpha=8)


def test_sft_loss_covers_the_assistant_turn_and_its_end_of_turn_only(tiny_model_dir, tmp_path):
    """Decode the tokens that carry loss: exactly the assistant reply plus <|im_end|>; no prompt token."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, use_cpu=True, report_to=[], max_length=128),
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(to_prompt_completion(ROWS[:1])),
    )
    row = trainer.train_dataset[0]
    batch = trainer.data_collator([row])
    labels = batch["labels"][0].tolist()
    ids = batch["input_ids"][0].tolist()
    trained = [t for t, lab in zip(ids, labels, strict=True) if lab != -100]
    masked = [t for t, lab in zip(ids, labels, strict=True) if lab == -100]
    assert tokenizer.decode(trained).strip() == "The answer is 4.<|im_end|>"
    assert "What is 2 + 2?" in tokenizer.decode(masked)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in trained


def test_sft_then_dpo_train_and_export_loadable_folders(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    sft_out = tmp_path / "sft"
    cfg = SftConfig(max_steps=1, batch_size=2, lora=TINY_LORA, precision="fp32")
    m = train_sft(
        ROWS,
        tiny_model_dir,
        cfg,
        sft_out,
        seed=0,
        device="cpu",
        work_dir=tmp_path / "w1",
        extra_files={"training_config.yaml": "stage: sft\n"},
    )
    assert m["steps"] == 1 and m["rows"] == 4

    pairs = [{"prompt": PROMPT, "chosen": "The answer is 4.", "rejected": "I don't know."}] * 2
    model_out = tmp_path / "model"
    d = train_dpo(
        pairs,
        str(sft_out),
        DpoConfig(max_steps=1, batch_size=2, lora=TINY_LORA, precision="fp32"),
        model_out,
        seed=0,
        device="cpu",
        work_dir=tmp_path / "w2",
    )
    assert d["steps"] == 1 and d["loss_type"] == ["sigmoid", "sft"] and d["loss_weights"] == [1.0, 0.2]
    # Full folder: merged weights (no adapter files), tokenizer with chat template, generation config with eot ids.
    files = {p.name for p in model_out.iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    assert AutoTokenizer.from_pretrained(model_out).chat_template
    assert GenerationConfig.from_pretrained(model_out).eos_token_id == [2]
    AutoModelForCausalLM.from_pretrained(model_out)
    assert (sft_out / "training_config.yaml").read_text() == "stage: sft\n"


def test_dpo_records_share_the_prompt():
    recs = to_preference_records([{"prompt": PROMPT, "chosen": "a", "rejected": "b"}])
    assert recs == [
        {
            "prompt": PROMPT,
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}],
        }
    ]


def test_empty_training_sets_fail_clearly(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="SFT set is empty"):
        train_sft([], tiny_model_dir, SftConfig(), tmp_path / "x", seed=0, device="cpu", work_dir=tmp_path)
    with pytest.raises(ValueError, match="DPO set is empty"):
        train_dpo([], tiny_model_dir, DpoConfig(), tmp_path / "x", seed=0, device="cpu", work_dir=tmp_path)


def test_reward_model_trains_and_scores_at_the_last_real_token(tiny_model_dir, tmp_path):
    from reward.reward_model import RewardScorer, train_reward_model

    pairs = [
        {
            "pair_id": f"x{i}",
            "messages": [{"role": "user", "content": f"What is {i} + 4?"}],
            "chosen": f"The answer is {i + 4}.",
            "rejected": f"No idea about {i}.",
            "source": "seed" if i % 2 else "round-1",
        }
        for i in range(12)
    ]
    too_long = {**pairs[0], "pair_id": "long", "chosen": "word " * 200}
    cfg = RewardModelConfig(num_layers=None, batch_size=4, heldout_fraction=0.5, precision="fp32", max_length=128)
    m = train_reward_model(
        [*pairs, too_long], tiny_model_dir, cfg, tmp_path / "rm", seed=0, device="cpu", work_dir=tmp_path / "w"
    )
    assert m["dropped_too_long"] == 1  # counted, not silently dropped by TRL
    assert m["train_pairs"] + m["heldout_pairs"] == 12 and m["heldout_pairs"] > 0
    by_source = m["heldout_by_source"]
    assert set(by_source) <= {"seed", "round-1"} and sum(v["pairs"] for v in by_source.values()) == m["heldout_pairs"]
    assert m["train_pairs_by_source"] and sum(m["train_pairs_by_source"].values()) == m["train_pairs"]

    scorer = RewardScorer(str(tmp_path / "rm"), device="cpu", batch_size=8)
    convs = [
        [*PROMPT, {"role": "assistant", "content": "short"}],
        [*PROMPT, {"role": "assistant", "content": "a much longer answer " * 10}],
        [*PROMPT, {"role": "assistant", "content": "medium length answer"}],
    ]
    batched = scorer.score(convs)
    scorer.batch_size = 1
    single = scorer.score(convs)
    # Padding must not move the read position: the same conversation scores the same alone or in a batch.
    assert batched == pytest.approx(single, abs=1e-4)


def test_reward_model_training_is_reproducible_for_a_seed(tiny_model_dir, tmp_path):
    """The new score head is initialised before the Trainer seeds anything; the same seed must give the same RM."""
    from reward.reward_model import RewardScorer, train_reward_model

    pairs = [{"pair_id": f"x{i}", "messages": PROMPT, "chosen": f"It is {i}.", "rejected": "No."} for i in range(8)]
    cfg = RewardModelConfig(num_layers=None, batch_size=4, heldout_fraction=0.0, precision="fp32")
    convs = [[*PROMPT, {"role": "assistant", "content": t}] for t in ("It is 4.", "No idea at all.")]
    scores = []
    for run in ("a", "b"):
        train_reward_model(pairs, tiny_model_dir, cfg, tmp_path / run, seed=3, device="cpu", work_dir=tmp_path / "w")
        scores.append(RewardScorer(str(tmp_path / run), device="cpu").score(convs))
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)


def test_tokenize_sft_rows_masks_the_prompt_and_keeps_the_end_of_turn(embedded_model_dir):
    """The production SFT tokeniser itself (the mask test elsewhere goes through stock TRL): the loss covers the
    reply, <|im_end|> and the template's newline; the prompt and the assistant header carry none; a row longer than
    max_length is left out with its reason instead of failing the stage or losing its end-of-turn token."""
    from transformers import AutoTokenizer

    from alignment.sft import tokenize_sft_rows

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    short = {"prompt_id": "a", "candidate_id": "a#0",
             "messages": [*PROMPT, {"role": "assistant", "content": "It is 4."}]}  # fmt: skip
    long_prompt = {"prompt_id": "b", "candidate_id": "b#3",
                   "messages": [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "Ok."}]}  # fmt: skip
    long_reply = {"prompt_id": "c", "candidate_id": "c#1",
                  "messages": [*PROMPT, {"role": "assistant", "content": "four " * 300}]}  # fmt: skip
    records, dropped = tokenize_sft_rows([short, long_prompt, long_reply], tok, max_length=128)
    assert len(records) == 1 and set(dropped) == {"b#3", "c#1"}
    assert dropped["b#3"].startswith("the prompt alone") and dropped["c#1"].startswith("prompt and reply")
    ids, mask = records[0]["input_ids"], records[0]["completion_mask"]
    trained = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    untrained = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    assert trained == "It is 4.<|im_end|>\n"
    assert untrained.endswith("<|im_start|>assistant\n") and "It is 4." not in untrained
    assert mask == sorted(mask)  # one contiguous completion at the end
