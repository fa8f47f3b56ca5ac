from pathlib import Path

import pytest

from alignment.config import ConfigError, RoundConfig, config_to_dict, load_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    """Every preset loads and passes the checks a round runs before any stage (batches divisible by the training
    processes, accelerate config files that exist, ...)."""
    from rounds.stages import check_training_config

    cfg = load_config(path)
    assert isinstance(cfg, RoundConfig)
    assert cfg.name == path.stem
    check_training_config(cfg)


def test_default_config_is_the_embedded_cpu_default():
    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "default.yaml")
    assert cfg.model.policy == "embedded"
    assert cfg.generation.num_candidates >= 2
    assert cfg.dpo.nll_weight == 0.2 and cfg.dpo.beta == 0.1


def test_dotted_overrides_apply_and_parse_yaml_values():
    cfg = load_config(
        None,
        [
            "generation.num_candidates=8",
            "sft.learning_rate=1e-4",
            "eval.suites=[a.jsonl, b.jsonl]",
            "reward_model.pretrained=null",
            "prompts.builtin.math=3",
            "generation.per_round.2.temperature=0.5",
        ],
    )
    assert cfg.generation.num_candidates == 8
    assert cfg.sft.learning_rate == 1e-4
    assert cfg.eval.suites == ("a.jsonl", "b.jsonl")
    assert cfg.reward_model.pretrained is None
    assert cfg.prompts.builtin == {"math": 3, "instruction": 200, "chat": 100}
    assert cfg.generation.sampling_for(2) == (0.5, cfg.generation.top_p, cfg.generation.max_new_tokens)
    assert cfg.generation.sampling_for(1) == (cfg.generation.temperature, cfg.generation.top_p, 128)
    assert load_config(None, ["prompts.builtin={}"]).prompts.builtin == {}
    assert load_config(None, ["prompts.builtin={math: 2}"]).prompts.builtin == {"math": 2}


def test_prompt_sources_are_paths_or_mappings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "prompts:\n  files:\n    - my.jsonl\n"
        "    - {path: gsm, columns: {prompt: question}, capability: math, split: train}\n"
    )
    files = load_config(path).prompts.files
    assert files[0] == "my.jsonl"
    assert files[1].columns == {"prompt": "question"} and files[1].capability == "math" and files[1].split == "train"
    path.write_text("prompts:\n  files:\n    - {path: gsm, colums: {prompt: question}}\n")
    with pytest.raises(ConfigError, match="colums"):
        load_config(path)


def test_unknown_key_in_file_names_file_and_dotted_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("generation:\n  num_candidate: 4\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key 'generation\.num_candidate'"):
        load_config(path)


def test_unknown_override_key_is_rejected():
    with pytest.raises(ConfigError, match="unknown key 'sft.lr'"):
        load_config(None, ["sft.lr=1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("generation.num_candidates=four", "'generation.num_candidates' must be an integer"),
        ("sft.lora.enabled=maybe", "'sft.lora.enabled' must be true or false"),
        ("generation=3", "'generation' must be a mapping"),
        ("nodot", "must look like key.path=value"),
    ],
)
def test_ill_typed_values_are_rejected_with_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_malformed_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("generation: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(path)


def test_config_is_frozen_and_round_trips(tmp_path):
    import dataclasses

    import yaml

    cfg = load_config(None, ["name=x"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "y"  # type: ignore[misc]
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    assert load_config(path) == cfg


def test_known_trackers_are_the_ones_transformers_knows():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from alignment.config import TRACKERS

    assert sorted(TRACKERS) == sorted(INTEGRATION_TO_CALLBACK)


def test_every_literal_and_bounded_default_is_itself_valid():
    """The defaults are never checked on load (only the values a file or override sets): check them here."""
    import dataclasses
    import typing

    from alignment.config import RoundConfig

    def walk(cls):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp, default = hints[f.name], f.default
            if dataclasses.is_dataclass(tp):
                walk(tp)
            elif typing.get_origin(tp) is typing.Literal:
                assert default in typing.get_args(tp), (cls.__name__, f.name)
            elif f.metadata.get("ge") is not None and default is not dataclasses.MISSING:
                assert default >= f.metadata["ge"], (cls.__name__, f.name)

    walk(RoundConfig)


def test_a_control_seed_without_the_control_arm_is_an_error():
    """``selection.random_seed`` seeds only the control's draws: set with rejection sampling it would change nothing
    but the stage keys (a rerun of every stage from select on), so the round refuses it before any stage runs."""
    from rounds.stages import check_training_config

    check_training_config(load_config(None, ["selection.strategy=random", "selection.random_seed=3"]))
    with pytest.raises(ConfigError, match="selection.random_seed.*selection.strategy: random"):
        check_training_config(load_config(None, ["selection.random_seed=3"]))
