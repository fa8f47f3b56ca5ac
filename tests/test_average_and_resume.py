"""Checkpoint averaging arithmetic, exported dtypes, SFT start points and resuming training after a kill."""

import shutil

import pytest
import torch

from alignment.average import average_models, normalise_weights
from alignment.cli import main as cli_main
from alignment.config import LoraConfig, SftConfig
from alignment.models import ModelError
from alignment.sft import train_sft
from alignment.train_common import last_checkpoint

PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]
ROWS = [
    {"prompt_id": f"p{i}", "messages": [*PROMPT, {"role": "assistant", "content": f"The answer is {4 + i}." * (i + 1)}]}
    for i in range(8)
]


def _variant(src, dst, seed):
    """A copy of ``src`` with its weights perturbed (a stand-in for another training run)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return model.state_dict()


def test_weights_are_normalised_and_checked():
    assert normalise_weights(None, 4) == [0.25] * 4
    assert normalise_weights([1, 3], 2) == [0.25, 0.75]
    for bad, match in (([1], "1 values for 2"), ([-1, 2], ">= 0"), ([0, 0], "positive sum")):
        with pytest.raises(ValueError, match=match):
            normalise_weights(bad, 2)
    with pytest.raises(ValueError, match="at least 2"):
        normalise_weights(None, 1)


def test_weighted_average_is_the_weighted_sum_of_every_tensor(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a, b = _variant(tiny_model_dir, tmp_path / "a", 1), _variant(tiny_model_dir, tmp_path / "b", 2)
    record = average_models([tmp_path / "a", tmp_path / "b"], tmp_path / "avg", weights=[1, 3])
    assert record["weights"] == [0.25, 0.75]
    avg = AutoModelForCausalLM.from_pretrained(tmp_path / "avg").state_dict()
    for name, tensor in avg.items():
        torch.testing.assert_close(tensor, 0.25 * a[name] + 0.75 * b[name], rtol=0, atol=1e-6)
    assert AutoTokenizer.from_pretrained(tmp_path / "avg").chat_template  # a loadable chat folder
    assert (tmp_path / "avg" / "average.json").is_file()

    # Uniform through the CLI, exported in bf16.
    cli_main(["average", "--models", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "u"), "--dtype", "bf16"])  # fmt: skip
    uni = AutoModelForCausalLM.from_pretrained(tmp_path / "u", dtype="auto")
    assert next(uni.parameters()).dtype == torch.bfloat16
    name = "model.layers.0.mlp.up_proj.weight"
    torch.testing.assert_close(uni.state_dict()[name].float(), ((a[name] + b[name]) / 2).bfloat16().float())


def test_average_refuses_other_architectures(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig.from_pretrained(tiny_model_dir)
    cfg.num_hidden_layers = 1
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "one-layer")
    with pytest.raises(ModelError, match="one-layer: num_hidden_layers=1"):
        average_models([tiny_model_dir, tmp_path / "one-layer"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ModelError, match="not found"):
        average_models([tiny_model_dir, tmp_path / "missing"], tmp_path / "out")
    del AutoModelForCausalLM


class _Kill(Exception):
    pass


class _KillAfterStep:
    """A TrainerCallback that dies right after step ``n`` (after its checkpoint is written), like a SIGKILL."""

    def __init__(self, n):
        self.n = n

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.n:
            raise _Kill


def test_sft_killed_mid_training_resumes_from_its_checkpoint_to_the_same_weights(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    cfg = SftConfig(max_steps=4, batch_size=2, save_steps=1, precision="fp32", lora=LoraConfig(r=4, alpha=8))
    kw = {"seed": 0, "device": "cpu"}
    straight = train_sft(ROWS, tiny_model_dir, cfg, tmp_path / "straight", work_dir=tmp_path / "w1", **kw)
    assert straight["resumed_from"] is None and straight["steps"] == 4

    with pytest.raises(_Kill):
        train_sft(ROWS, tiny_model_dir, cfg, tmp_path / "resumed", work_dir=tmp_path / "w2", callbacks=[_KillAfterStep(2)], **kw)  # fmt: skip
    assert last_checkpoint(tmp_path / "w2").endswith("checkpoint-2")
    # A checkpoint folder killed mid-write (no trainer_state.json) is never resumed from.
    shutil.copytree(tmp_path / "w2" / "checkpoint-2", tmp_path / "w2" / "checkpoint-3")
    (tmp_path / "w2" / "checkpoint-3" / "trainer_state.json").unlink()
    assert last_checkpoint(tmp_path / "w2").endswith("checkpoint-2")

    resumed = train_sft(ROWS, tiny_model_dir, cfg, tmp_path / "resumed", work_dir=tmp_path / "w2", **kw)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 4
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)


def test_padding_free_and_padded_sft_give_the_same_loss(tiny_model_dir, tmp_path):
    cfg = {"max_steps": 1, "batch_size": 4, "save_steps": 0, "precision": "fp32", "lora": LoraConfig(r=4, alpha=8)}
    kw = {"seed": 0, "device": "cpu"}
    padded = train_sft(ROWS, tiny_model_dir, SftConfig(**cfg, group_by_length=False), tmp_path / "a", work_dir=tmp_path / "wa", **kw)  # fmt: skip
    free = train_sft(ROWS, tiny_model_dir, SftConfig(**cfg, padding_free=True), tmp_path / "b", work_dir=tmp_path / "wb", **kw)  # fmt: skip
    assert free["train_loss"] == pytest.approx(padded["train_loss"], abs=1e-3)
    assert free["tokens"] == padded["tokens"]


def test_training_settings_are_checked_before_any_stage(tiny_model_dir, tmp_path):
    from alignment.config import ConfigError, load_config
    from rounds.layout import Round
    from rounds.stages import check_training_config, sft_start_model

    check_training_config(load_config(None, ["sft.start_from=base"]))
    for overrides, match in (
        (["sft.start_from=scratch"], "'sft.start_from' must be one of 'previous', 'base'"),  # at load now
        (["sft.start_from=base", "selection.carry_over=false"], "needs selection.carry_over=true"),
        (["model.export_dtype=fp16"], "'model.export_dtype' must be one of 'fp32', 'bf16'"),
    ):
        with pytest.raises(ConfigError, match=match):
            check_training_config(load_config(None, overrides))

    cfg = load_config(None, [f"model.policy={tiny_model_dir}", "sft.start_from=base"])
    rnd = Round(cfg=cfg, index=3, dir=tmp_path, start_model="runs/x/round-2/model", run_dir=tmp_path)
    assert sft_start_model(rnd) == tiny_model_dir  # base: the run's first policy, not round 2's model
    cfg = load_config(None, [f"model.policy={tiny_model_dir}"])
    rnd = Round(cfg=cfg, index=3, dir=tmp_path, start_model="runs/x/round-2/model", run_dir=tmp_path)
    assert sft_start_model(rnd) == "runs/x/round-2/model"


def test_checkpoints_of_other_settings_are_not_resumed(tiny_model_dir, tmp_path):
    cfg = SftConfig(max_steps=2, batch_size=2, save_steps=1, precision="fp32", lora=LoraConfig(r=4, alpha=8))
    kw = {"seed": 0, "device": "cpu", "work_dir": tmp_path / "w"}
    with pytest.raises(_Kill):
        train_sft(ROWS, tiny_model_dir, cfg, tmp_path / "o", callbacks=[_KillAfterStep(1)], **kw)
    other = SftConfig(max_steps=2, batch_size=2, save_steps=1, precision="fp32", learning_rate=1e-3, lora=cfg.lora)
    assert train_sft(ROWS, tiny_model_dir, other, tmp_path / "o", **kw)["resumed_from"] is None


def test_dpo_variants_are_trained_averaged_evaluated_and_the_best_exported(tiny_model_dir, tmp_path):
    import json

    import yaml
    from safetensors.torch import load_file

    from alignment.config import config_to_dict, load_config
    from alignment.records import write_parquet
    from rounds.layout import Round
    from rounds.stages import dpo

    cfg = load_config(
        None,
        [
            "generation.backend=transformers",
            "eval.max_new_tokens=4",
            "dpo.max_steps=3",
            "dpo.batch_size=2",
            "dpo.precision=fp32",
            "dpo.lora.r=4",
            "dpo.variant_eval_items=2",
            "dpo.variants=[{seed: 1}, {learning_rate: 1.0e-3, beta: 0.2}]",
        ],
    )
    rnd = Round(cfg=cfg, index=1, dir=tmp_path, start_model=tiny_model_dir, run_dir=tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "sft")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg)))
    pair = {"pair_id": "a", "capability": "math", "prompt": PROMPT, "chosen": "4", "rejected": "5"}
    write_parquet([{**pair, "pair_id": str(i)} for i in range(2)], tmp_path / "dpo.parquet")
    metrics = dpo(rnd)

    assert set(metrics["runs"]) == {"main", "v1", "v2"}
    assert set(metrics["scores"]) == {"average", "main", "v1", "v2"}
    record = json.loads((tmp_path / "variants.json").read_text())
    assert record["chosen"] == metrics["chosen"]
    best = max(s["mean_accuracy"] for s in record["scores"].values())
    assert record["scores"][record["chosen"]]["mean_accuracy"] == best
    exported = load_file(tmp_path / "model" / "model.safetensors")
    chosen = load_file(tmp_path / "variants" / record["chosen"] / "model.safetensors")
    assert all(torch.equal(exported[k], chosen[k]) for k in chosen)
    assert json.loads((tmp_path / "model" / "variant.json").read_text())["chosen"] == record["chosen"]
    avg = load_file(tmp_path / "variants" / "average" / "model.safetensors")
    runs = [load_file(tmp_path / "variants" / n / "model.safetensors") for n in ("main", "v1", "v2")]
    k = "model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(avg[k], sum(r[k] for r in runs) / 3, rtol=0, atol=1e-6)
    assert not torch.equal(runs[0][k], runs[2][k])  # the variants really trained differently


def test_a_round_whose_selection_left_no_dpo_pair_exports_its_sft_model(tiny_model_dir, tmp_path, caplog):
    """At the default selection.min_margin a small round can keep no pair (round 2 of the tiny e2e run: 3 RM-decided
    pairs, all under the margin, no verifier pair); the round then failed after SFT with "the DPO set is empty"."""
    import json

    import pyarrow as pa

    from alignment.config import load_config
    from alignment.records import write_parquet
    from rounds.layout import Round
    from rounds.stages import dpo

    rnd = Round(cfg=load_config(None, []), index=2, dir=tmp_path, start_model=tiny_model_dir, run_dir=tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "sft")
    selection = {"prompts": 3, "sft": {"kept": 0}, "dpo": {"kept": 0, "dropped": {"RM margin below min_margin": 3}}}
    selection |= {"candidates_by_capability": {}, "verifier": {}, "rm_pass_over_fail_auc": {}}
    (tmp_path / "selection.json").write_text(json.dumps(selection))
    write_parquet([], tmp_path / "dpo.parquet", schema=pa.schema([("prompt_id", pa.string())]))
    with caplog.at_level("WARNING"):
        metrics = dpo(rnd)
    assert metrics == {"skipped": "no preference pair passed selection (RM margin below min_margin: 3)", "pairs": 0}
    assert "the round's model is its SFT model" in caplog.text
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "model" / name).read_bytes() == (tmp_path / "sft" / name).read_bytes()


def test_dpo_off_exports_the_sft_model_even_with_pairs(tiny_model_dir, tmp_path):
    """``dpo.enabled: false`` (the experiment's sft_only arm): the round's model is its SFT model, pairs or not."""
    from alignment.config import load_config
    from alignment.records import write_parquet
    from rounds.experiment import parse_arms
    from rounds.layout import Round
    from rounds.stages import dpo

    cfg = load_config(None, list(parse_arms("sft_only", [])[0].overrides))
    rnd = Round(cfg=cfg, index=1, dir=tmp_path, start_model=tiny_model_dir, run_dir=tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "sft")
    write_parquet([{"prompt_id": "p1", "chosen": "a", "rejected": "b"}], tmp_path / "dpo.parquet")
    # what an earlier run with DPO on (and variants) left: stale once DPO is off
    for stale in ("tensorboard/dpo-main", "variants/v1"):
        (tmp_path / stale).mkdir(parents=True)
    (tmp_path / "variants.json").write_text("{}")
    (tmp_path / "tensorboard" / "sft").mkdir()
    assert dpo(rnd) == {"skipped": "dpo.enabled is false", "pairs": 0}
    assert not any((tmp_path / p).exists() for p in ("tensorboard/dpo-main", "variants", "variants.json"))
    assert (tmp_path / "tensorboard" / "sft").is_dir()  # another stage's records stay
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "model" / name).read_bytes() == (tmp_path / "sft" / name).read_bytes()
