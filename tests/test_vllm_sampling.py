"""The CPU top-p mask (alignment.vllm_sampling) against vLLM's own function on the same logits."""

import pytest
import torch

vllm_ops = pytest.importorskip("vllm.v1.sample.ops.topk_topp_sampler")

from alignment.vllm_sampling import install, top_p_partial  # noqa: E402

ORIGINAL = vllm_ops.apply_top_k_top_p_pytorch
VOCAB = 49152  # SmolLM2's vocabulary


def _mass_above(logits: torch.Tensor, token: int) -> float:
    probs = logits.softmax(-1, dtype=torch.float64)
    return float(probs[probs > probs[token]].sum())


@pytest.mark.parametrize("scale", [0.5, 2.0, 5.0, 10.0])
def test_same_nucleus_as_vllm(scale):
    """Every row keeps the same tokens with the same logits as vLLM's full sort, except a token whose mass above lies
    within float32 rounding of p (the two sum in different orders). Scale 0.5 and 2 make nuclei of thousands of
    tokens, past the 1,024 candidates: those rows take the fallback."""
    torch.manual_seed(0)
    logits = torch.randn(64, VOCAB) * scale
    p = torch.full((64,), 0.95)
    p[::3] = 0.5
    ours = top_p_partial(logits.clone(), None, p, True, fallback=ORIGINAL)
    theirs = ORIGINAL(logits.clone(), None, p, True)
    kept_ours, kept_theirs = ~torch.isinf(ours), ~torch.isinf(theirs)
    assert kept_ours.sum() > 64  # not a degenerate mask
    differ = (kept_ours != kept_theirs).nonzero().tolist()
    for row, token in differ:  # only boundary tokens, at most one per row
        assert abs(_mass_above(logits[row], token) - p[row].item()) < 1e-4
    assert len({row for row, _ in differ}) == len(differ)
    assert len(differ) <= 3
    both = kept_ours & kept_theirs
    assert torch.equal(ours[both], logits[both])


def test_flat_rows_take_the_fallback_and_match_exactly():
    """Near-uniform rows: the nucleus is far wider than the candidates, so vLLM's function decides them."""
    torch.manual_seed(1)
    logits = torch.randn(8, VOCAB) * 0.01
    p = torch.full((8,), 0.9)
    ours = top_p_partial(logits.clone(), None, p, True, fallback=ORIGINAL)
    theirs = ORIGINAL(logits.clone(), None, p, True)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    assert (~torch.isinf(ours)).sum(1).min() > 1024


def test_peaked_row_keeps_only_the_top_token():
    logits = torch.full((1, VOCAB), -10.0)
    logits[0, 7] = 10.0
    out = top_p_partial(logits.clone(), None, torch.tensor([0.95]), True, fallback=ORIGINAL)
    assert (~torch.isinf(out)).nonzero().tolist() == [[0, 7]]


def test_top_k_goes_to_vllm_unchanged():
    calls = []

    def fallback(logits, k, p, allow):
        calls.append((k, p))
        return logits

    logits = torch.randn(2, 100)
    k = torch.tensor([5, 5])
    top_p_partial(logits, k, torch.tensor([0.9, 0.9]), True, fallback=fallback)
    top_p_partial(logits, k, None, True, fallback=fallback)
    assert len(calls) == 2


def test_install_patches_once(monkeypatch):
    monkeypatch.setattr(vllm_ops, "apply_top_k_top_p_pytorch", ORIGINAL)
    assert install() and install()
    patched = vllm_ops.apply_top_k_top_p_pytorch
    assert patched.func is top_p_partial and patched.keywords["fallback"] is ORIGINAL
