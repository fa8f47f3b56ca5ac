"""Generation: the transformers backend on the tiny local model, candidate records, steering and per-round settings.

The vLLM backend is exercised end to end in test_e2e.py (it needs its own process per engine).
"""

from __future__ import annotations

import dataclasses

import pytest

from alignment import backends
from alignment.backends import TransformersBackend, open_backend, resolve_backend
from alignment.config import GenerationConfig, SamplingOverride, TransformersGenConfig
from alignment.models import end_of_turn_ids, load_chat_tokenizer
from synth_data.generate import generate_candidates, steered_conversation

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "user", "content": "Write one sentence about the sea, and then a much longer one about rivers."}],
    [{"role": "user", "content": "Hi"}],
]


@pytest.fixture(scope="module")
def backend(tiny_model_dir) -> TransformersBackend:
    cfg = GenerationConfig(transformers=TransformersGenConfig(batch_size=2, dtype="fp32"))
    return TransformersBackend(tiny_model_dir, cfg, seed=3)


def _chat(backend, tiny_model_dir, **kw):
    stop = end_of_turn_ids(load_chat_tokenizer(tiny_model_dir), tiny_model_dir)
    args = {"n": 3, "temperature": 1.0, "top_p": 0.95, "max_tokens": 12, "stop_ids": stop, **kw}
    return backend.chat(CONVERSATIONS, **args)


def test_transformers_backend_shape_and_finish_reasons(backend, tiny_model_dir):
    outs = _chat(backend, tiny_model_dir)
    assert [len(o) for o in outs] == [3, 3, 3]
    for o in outs:
        for c in o:
            assert c.finish_reason in ("stop", "length")
            assert 1 <= len(c.token_ids) <= 12
            if c.finish_reason == "length":
                assert len(c.token_ids) == 12  # a random tiny model rarely stops: the cap must be honoured


def test_transformers_backend_is_reproducible_and_greedy_samples_agree(backend, tiny_model_dir):
    a = _chat(backend, tiny_model_dir)
    b = _chat(backend, tiny_model_dir)
    assert [[c.token_ids for c in o] for o in a] == [[c.token_ids for c in o] for o in b]
    greedy = _chat(backend, tiny_model_dir, temperature=0.0)
    assert all(len({tuple(c.token_ids) for c in o}) == 1 for o in greedy)


def test_stop_token_ends_a_completion_and_is_not_in_the_text(backend, tiny_model_dir):
    # Make every token a stop token: each completion is exactly one token long and finished "stop".
    outs = _chat(backend, tiny_model_dir, stop_ids=list(range(backend.model.config.vocab_size)))
    assert all(c.finish_reason == "stop" and len(c.token_ids) == 1 for o in outs for c in o)


def test_backend_resolution(monkeypatch):
    with pytest.raises(ValueError, match="generation.backend must be one of"):
        resolve_backend("hf")
    monkeypatch.setattr(backends, "vllm_available", lambda: False)
    assert resolve_backend("auto") == "transformers"
    with pytest.raises(ValueError, match="vLLM is not installed"):
        resolve_backend("vllm")
    monkeypatch.setattr(backends, "vllm_available", lambda: True)
    assert resolve_backend("auto") == "vllm"


def test_steering_system_prompt_only_where_none_exists():
    sys_prompts = {"math": "Think step by step."}
    user = [{"role": "user", "content": "1+1?"}]
    assert steered_conversation(user, "math", sys_prompts)[0] == {"role": "system", "content": "Think step by step."}
    assert steered_conversation(user, "chat", sys_prompts) == user
    own = [{"role": "system", "content": "Be brief."}, *user]
    assert steered_conversation(own, "math", sys_prompts) == own


def test_candidate_records_carry_generator_backend_and_round_settings(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(backends, "vllm_available", lambda: False)
    gen = GenerationConfig(
        backend="auto",
        num_candidates=2,
        max_new_tokens=8,
        per_round={2: SamplingOverride(temperature=0.5, max_new_tokens=6)},
        system_prompts={"math": "Show your work."},
        transformers=TransformersGenConfig(dtype="fp32"),
    )
    backend = open_backend(gen.backend, tiny_model_dir, gen, seed=0)
    prompts = [
        {"prompt_id": "m1", "capability": "math", "messages": CONVERSATIONS[0]},
        {"prompt_id": "c1", "capability": "chat", "messages": CONVERSATIONS[2]},
    ]
    stop = end_of_turn_ids(load_chat_tokenizer(tiny_model_dir), tiny_model_dir)
    rows, seconds = generate_candidates(backend, prompts, gen, generator="teacher-x", stop_ids=stop, round_index=2)
    assert seconds >= 0
    assert [r["candidate_id"] for r in rows] == ["m1#0", "m1#1", "c1#0", "c1#1"]
    assert {r["backend"] for r in rows} == {"transformers"} and {r["generator"] for r in rows} == {"teacher-x"}
    assert all(r["temperature"] == 0.5 and r["max_tokens"] == 6 and r["num_tokens"] <= 6 for r in rows)
    assert [r["system_prompt"] for r in rows] == ["Show your work.", "Show your work.", None, None]
    round1, _ = generate_candidates(
        backend, prompts, dataclasses.replace(gen, per_round={}), generator="t", stop_ids=stop, round_index=2
    )
    assert all(r["temperature"] == 0.8 and r["max_tokens"] == 8 for r in round1)


def test_adaptive_k_resamples_only_verifiable_prompts_where_nothing_passed():
    from synth_data.generate import unsolved_prompts

    prompts = [
        {"prompt_id": "m1", "capability": "math", "messages": [], "answer": "4", "constraints": "[]"},
        {"prompt_id": "m2", "capability": "math", "messages": [], "answer": "9", "constraints": "[]"},
        {"prompt_id": "c1", "capability": "chat", "messages": [], "answer": None, "constraints": "[]"},
        {"prompt_id": "m3", "capability": "math", "messages": [], "answer": "5", "constraints": "[]"},
    ]
    rows = [
        {"prompt_id": "m1", "text": "The answer is 4.", "finish_reason": "stop"},
        {"prompt_id": "m1", "text": "It is 3.", "finish_reason": "stop"},
        {"prompt_id": "m2", "text": "The answer is 8.", "finish_reason": "stop"},
        {"prompt_id": "m2", "text": "The answer is 9", "finish_reason": "length"},  # right number, but truncated
        {"prompt_id": "c1", "text": "Hello!", "finish_reason": "stop"},
        {"prompt_id": "m3", "text": "The answer is 5.", "finish_reason": "stop"},
    ]
    assert [p["prompt_id"] for p in unsolved_prompts(prompts, rows)] == ["m2"]


def test_adaptive_k_never_resamples_a_chat_prompt_with_a_truncated_candidate():
    """A truncated reply fails termination for every capability, but chat has no verifier of its own: its prompts
    are not resampled, whatever order the finished and truncated candidates come in (in a default round 1, 7 of 8
    chat prompts were resampled: 56 candidates, 6,910 tokens, 13% of the round's generation)."""
    from synth_data.generate import unsolved_prompts

    prompts = [{"prompt_id": "c1", "capability": "chat", "messages": [], "answer": None, "constraints": "[]"}]
    for order in ("stop,length", "length,stop", "length,length"):
        rows = [{"prompt_id": "c1", "text": "Hello", "finish_reason": f} for f in order.split(",")]
        assert unsolved_prompts(prompts, rows) == [], order


def test_resampled_candidates_continue_the_numbering(backend, tiny_model_dir):
    gen = GenerationConfig(num_candidates=2, max_new_tokens=4)
    prompts = [{"prompt_id": "m1", "capability": "math", "messages": CONVERSATIONS[0]}]
    stop = end_of_turn_ids(load_chat_tokenizer(tiny_model_dir), tiny_model_dir)
    rows, _ = generate_candidates(
        backend, prompts, gen, generator="g", stop_ids=stop, round_index=1, num_candidates=3, first_index=2
    )
    assert [r["candidate_id"] for r in rows] == ["m1#2", "m1#3", "m1#4"] and all(r["resampled"] for r in rows)


def test_mean_logprob_is_the_models_own_log_probability_of_the_reply(backend, tiny_model_dir):
    """The fluency signal: the mean log-probability of each generated token (end-of-turn included) under the model,
    untempered, recomputed here token by token from unpadded inputs."""
    import torch

    outs = _chat(backend, tiny_model_dir, logprobs=True, temperature=1.3)
    tok = backend.tokenizer
    for conv, o in zip(CONVERSATIONS, outs, strict=True):
        prompt = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=False)
        for c in o:
            ids = torch.tensor([prompt + c.token_ids])
            with torch.no_grad():
                logits = backend.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
            expected = torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt) :, None]).mean().item()
            assert c.mean_logprob == pytest.approx(expected, abs=2e-3)
    assert all(c.mean_logprob is None for o in _chat(backend, tiny_model_dir) for c in o)  # only when asked
