"""The performance paths compute what the plain formulas compute (issue: performance).

Each fast path is compared with the straightforward torch expression it replaces:
the fused cross-entropy / z-loss backward, the decoding-step unembedding layouts, the
preallocated self-attention cache (including growth past its spare rows), the shared
embedding lookup and the fused RMSNorm.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model import layers
from t5k_builtin.model.encdec import EncDecArchitecture, SoftmaxCrossEntropy
from t5kernel.api import BuildContext


def _composed(logits, targets, weights):
    lse = torch.logsumexp(logits, dim=-1)
    target = logits.gather(-1, targets[..., None]).squeeze(-1)
    return ((lse - target) * weights).sum(), (lse.square() * weights).sum()


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 4), length=st.integers(1, 5), vocab=st.integers(2, 40),
       z=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_fused_cross_entropy_equals_composed_ops(rows, length, vocab, z, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, length, vocab, generator=gen, dtype=torch.float64) * 3
    targets = torch.randint(0, vocab, (rows, length), generator=gen)
    weights = torch.rand(rows, length, generator=gen, dtype=torch.float64).round()
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    ce_a, z_a = SoftmaxCrossEntropy.apply(a, targets, weights)
    ce_b, z_b = _composed(b, targets, weights)
    (ce_a + z * z_a).backward()
    (ce_b + z * z_b).backward()
    assert torch.allclose(ce_a, ce_b) and torch.allclose(z_a, z_b)
    assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_fused_cross_entropy_passes_gradcheck():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (2, 3), generator=gen)
    weights = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.5, 1.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: SoftmaxCrossEntropy.apply(x, targets, weights), (logits,))


@pytest.mark.parametrize("rows", [1, 2, 7, 32, 64, 65, 130])
def test_step_unembedding_equals_linear(rows):
    gen = torch.Generator().manual_seed(rows)
    weight = torch.randn(300, 16, generator=gen)
    hidden = torch.randn(rows, 16, generator=gen)
    unembed = layers.StepUnembedding(weight)
    out = unembed(hidden)
    assert out.shape == (rows, 300)
    assert torch.allclose(out, F.linear(hidden, weight), atol=1e-5)
    assert torch.allclose(unembed(hidden), out)  # the lazily made copy is reused


def test_self_attention_cache_grows_past_its_spare_rows():
    """A decode longer than the 64 spare rows reallocates the buffers and keeps every
    earlier key/value: cached decoding equals re-running the decoder (no cache)."""
    cfg = EncDecConfig(num_layers=1, d_model=16, d_ff=32, d_kv=4, num_heads=2, dropout_rate=0.0)
    model = EncDecArchitecture(cfg, BuildContext(seed=3)).build(50).eval()
    with torch.no_grad():
        model.shared.weight[1].zero_()  # no EOS: every row decodes all steps
    batch = {"encoder_input_tokens": torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])}
    steps = layers.CACHE_HEADROOM + 20
    cached = model.generate(batch, steps)
    assert cached.shape == (2, steps)
    assert torch.equal(cached, model.generate(batch, steps, use_cache=False))
    cache = {}
    for n in (1, layers.CACHE_HEADROOM + 5):
        k = torch.randn(2, 2, n, 4)
        keys, _ = layers._append(cache, k, k)
    assert cache["n"] == layers.CACHE_HEADROOM + 6 and keys.shape[2] == cache["n"]
    assert cache["k"].shape[2] >= cache["n"]


def test_one_embedding_lookup_equals_two():
    cfg = EncDecConfig(num_layers=1, d_model=8, d_ff=16, d_kv=4, num_heads=2)
    model = EncDecArchitecture(cfg, BuildContext(seed=1)).build(40)
    a, b = torch.randint(0, 40, (3, 5)), torch.randint(0, 40, (3, 2))
    ea, eb = model.embed_pair(a, b)
    assert torch.equal(ea, model.shared(a)) and torch.equal(eb, model.shared(b))
    (ea.sum() + 2 * eb.sum()).backward()
    fused = model.shared.weight.grad.clone()
    model.shared.weight.grad = None
    (model.shared(a).sum() + 2 * model.shared(b).sum()).backward()
    assert torch.allclose(fused, model.shared.weight.grad)


def test_fused_rms_norm_equals_the_formula():
    norm = layers.RMSNorm(24, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 24) * 4
    expected = norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    assert torch.allclose(norm(x), expected, atol=1e-6)
    low = layers.RMSNorm(24).to(torch.bfloat16)  # the explicit path: float32 statistic
    assert low(x.to(torch.bfloat16)).dtype == torch.bfloat16
