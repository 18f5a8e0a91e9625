"""The Table 2 encoder-decoder variants: shared parameters and half depth (facts §2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model.encdec import EncDecArchitecture, EncDecHalfArchitecture, parameter_counts
from t5k_builtin.model.encdec_shared import EncDecSharedArchitecture, EncDecSharedModel
from t5k_builtin.model.features import encdec_features
from t5kernel.api import BuildContext
from t5kernel.errors import ConfigError

DIMS = dict(num_layers=2, d_model=32, d_ff=64, d_kv=8, num_heads=4, dropout_rate=0.0)
VOCAB = 200


def cfg(**kw):
    return EncDecConfig(**{**DIMS, **kw})


def batch(seed=0, n=3, pack=False):
    rng = np.random.default_rng(seed)
    examples = [
        {
            "inputs": np.append(rng.integers(2, VOCAB, rng.integers(2, 10)), 1),
            "targets": np.append(rng.integers(2, VOCAB, rng.integers(2, 6)), 1),
        }
        for _ in range(n)
    ]
    feats = encdec_features(examples, 24, 12, pack)
    return {k: torch.from_numpy(v) for k, v in feats.items()}


def shared_model(seed=0, **kw):
    return EncDecSharedArchitecture(cfg(**kw), BuildContext(seed=seed)).build(VOCAB)


# ------------------------------------------------------------------------- shared
def test_shared_tensors_are_one_object():
    model = shared_model()
    assert isinstance(model, EncDecSharedModel)
    assert model.encoder is model.decoder
    enc_ptrs = {
        n: p.data_ptr() for n, p in model.encoder.named_parameters() if "EncDecAttention" not in n
    }
    # every parameter the encoder reads is a parameter of the decoder, same storage
    dec_ptrs = {n: p.data_ptr() for n, p in model.decoder.named_parameters()}
    assert enc_ptrs and all(dec_ptrs[n] == ptr for n, ptr in enc_ptrs.items())
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith("encoder.") for n in names)
    assert "decoder.final_layer_norm.weight" in names
    assert sum("relative_attention_bias" in n for n in names) == 1
    assert sum("EncDecAttention.q" in n for n in names) == DIMS["num_layers"]
    # blocks() lists every non-embedding parameter exactly once
    listed = [p for b in model.blocks() for p in b.parameters]
    assert sorted(listed) == sorted(n for n in names if n != "shared.weight")


def test_shared_parameter_count_formula():
    c = cfg()
    model = shared_model()
    actual = sum(p.numel() for p in model.parameters())
    desc = EncDecSharedArchitecture(c).describe(VOCAB)
    base = parameter_counts(c, VOCAB)
    assert desc["parameters"] == actual
    assert desc["architecture"] == "encdec_shared"
    # the shared model is exactly the baseline without its encoder stack
    assert actual == base["parameters"] - base["encoder_parameters"]
    d, inner, L = c.d_model, c.num_heads * c.d_kv, c.num_layers
    stack = L * (8 * d * inner + 2 * d * c.d_ff + 3 * d) + d + 32 * c.num_heads
    assert desc["parameters_excluding_embedding"] == stack
    assert desc["encoder_parameters"] == stack - L * (4 * d * inner + d)
    baseline_stacks = base["parameters_excluding_embedding"]
    assert 0.5 < stack / baseline_stacks < 0.65  # ~P instead of 2P (cross-attn stays)
    # compute is the baseline's
    full = EncDecArchitecture(c).describe(VOCAB)
    assert desc["forward_matmul_flops_per_token_pair"] == full["forward_matmul_flops_per_token_pair"]


def test_shared_encoder_reads_table_bidirectionally():
    model = shared_model(seed=1)
    b = batch(1)
    seen = []
    rel = model.decoder.relative_attention_bias
    orig = rel.forward

    def spy(q, k, bidirectional=None):
        seen.append(bidirectional)
        return orig(q, k, bidirectional)

    rel.forward = spy
    model(b)
    assert seen == [True, False]  # one table: bidirectional in the encoder, causal in the decoder
    assert rel.bidirectional is False


def test_shared_training_step_updates_shared_weights():
    model = shared_model(seed=2)
    model.train()
    b = batch(2, pack=True)
    w_ffn = model.decoder.block[0].layer[-1].DenseReluDense.wi.weight
    before = w_ffn.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(b)
    assert torch.isfinite(out.loss_sum)
    out.loss_sum.backward()
    g_total = w_ffn.grad.clone()
    opt.step()
    assert torch.allclose(w_ffn.detach(), before - 0.1 * g_total)
    assert model.encoder.block[0].layer[-1].DenseReluDense.wi.weight is w_ffn
    # the encoder contributes to the shared gradient: a forward through the encoder alone
    # gives a non-zero gradient on the same tensor
    model.zero_grad()
    memory, _ = model.encode(b["encoder_input_tokens"], b["encoder_segment_ids"])
    memory.sum().backward()
    assert w_ffn.grad is not None and w_ffn.grad.abs().sum() > 0
    assert model.decoder.block[0].layer[1].EncDecAttention.q.weight.grad is None


def test_shared_generate_cache_matches_no_cache():
    model = shared_model(seed=3)
    with torch.no_grad():
        model.shared.weight.mul_(0.3)  # avoid degenerate copy-last-token decoding
    b = {k: v for k, v in batch(3, n=4).items() if k.startswith("encoder")}
    cached = model.generate(b, 10)
    plain = model.generate(b, 10, use_cache=False)
    assert cached.shape[0] == 4 and cached.shape[1] >= 1
    assert torch.equal(cached, plain)


def test_shared_config_errors():
    with pytest.raises(ConfigError, match="num_decoder_layers"):
        EncDecSharedArchitecture(cfg(num_decoder_layers=3))
    EncDecSharedArchitecture(cfg(num_decoder_layers=2))  # equal depth is fine


# --------------------------------------------------------------------------- half
def test_half_blocks_and_flops():
    c = cfg(num_layers=4, num_decoder_layers=6)
    half = EncDecHalfArchitecture(c, BuildContext(seed=0))
    model = half.build(VOCAB)
    assert len(model.encoder.block) == 2 and len(model.decoder.block) == 3
    desc = half.describe(VOCAB)
    assert desc["architecture"] == "encdec_half"
    assert (desc["encoder_layers"], desc["decoder_layers"]) == (2, 3)
    assert desc["halved_from_layers"] == [4, 6]
    assert desc["parameters"] == sum(p.numel() for p in model.parameters())
    full = EncDecArchitecture(c).describe(VOCAB)
    # layer FLOPs halve exactly; only the logits (depth-independent) stay
    logits = 2 * c.d_model * desc["padded_vocab_size"]
    key = "forward_matmul_flops_per_token_pair"
    assert desc[key] - logits == (full[key] - logits) // 2
    assert desc["parameters_excluding_embedding"] * 2 == full["parameters_excluding_embedding"] + (
        2 * (c.d_model + 32 * c.num_heads)  # final norms + tables are not per layer
    )
    out = model(batch(4))
    assert torch.isfinite(out.loss_sum)


def test_half_config_errors():
    with pytest.raises(ConfigError, match="encdec_half"):
        EncDecHalfArchitecture(cfg(num_layers=1))
    with pytest.raises(ConfigError, match="encdec_half"):
        EncDecHalfArchitecture(cfg(num_layers=4, num_decoder_layers=1))


# --------------------------------------------------------------------- end to end
# each tiny run takes 10-25 s here; the half-depth one is in the slow suite (tox -e slow)
@pytest.mark.parametrize(
    "arch,extra",
    [
        ("encdec_shared", []),
        pytest.param("encdec_half", ["model.num_layers=2"], marks=pytest.mark.slow),
    ],
)
def test_tiny_run(tmp_path, arch, extra):
    from t5kernel import cli
    from t5kernel.testing import TINY_OVERRIDES

    rc = cli.main(
        ["run", "--quiet", *TINY_OVERRIDES, *extra, "--arch", arch, f"run_dir={tmp_path}"]
    )
    assert rc == 0
