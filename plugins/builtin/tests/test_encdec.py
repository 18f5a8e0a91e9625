"""The encdec architecture against Hugging Face T5 and the facts sheet (facts §1)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model import layers
from t5k_builtin.model.encdec import (
    EncDecArchitecture,
    EncDecModel,
    load_hf_state_dict,
    padded_vocab_size,
    parameter_counts,
)
from t5k_builtin.model.features import encdec_features
from t5kernel.api import BuildContext, ModelOutput
from t5kernel.errors import ConfigError, DataError

transformers = pytest.importorskip("transformers")

SMALL = dict(num_layers=2, d_model=32, d_ff=64, d_kv=8, num_heads=4)
ASYM = dict(num_layers=2, num_decoder_layers=3, d_model=48, d_ff=96, d_kv=16, num_heads=3)
DEEP = dict(num_layers=3, d_model=64, d_ff=128, d_kv=32, num_heads=2,
            relative_attention_num_buckets=8, relative_attention_max_distance=20)


def tensors(features):
    return {k: torch.from_numpy(v) for k, v in features.items()}


def random_examples(rng, n, max_in, max_tg, vocab):
    out = []
    for _ in range(n):
        li, lt = rng.integers(1, max_in), rng.integers(1, max_tg)
        out.append(
            {
                "inputs": np.append(rng.integers(2, vocab, li), 1),
                "targets": np.append(rng.integers(2, vocab, lt), 1),
            }
        )
    return out


def make_pair(dims, vocab, seed=0, eos_boost=1.0, embed_scale=1.0):
    """Our model and an HF T5ForConditionalGeneration holding the same weights.

    ``embed_scale`` < 1 shrinks the embedding so that a random model stops merely copying
    its last token during greedy decoding (the pad row shrinks 10x more, so it rarely
    wins); ``eos_boost`` scales the EOS row so some rows end early.
    """
    torch.manual_seed(seed)
    padded = padded_vocab_size(vocab, 128)
    hf_cfg = transformers.T5Config(
        vocab_size=padded,
        num_layers=dims["num_layers"],
        num_decoder_layers=dims.get("num_decoder_layers", dims["num_layers"]),
        d_model=dims["d_model"],
        d_ff=dims["d_ff"],
        d_kv=dims["d_kv"],
        num_heads=dims["num_heads"],
        relative_attention_num_buckets=dims.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=dims.get("relative_attention_max_distance", 128),
        dropout_rate=0.1,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    hf = transformers.T5ForConditionalGeneration(hf_cfg).eval()
    with torch.no_grad():  # make the position bias and EOS matter more than HF's init does
        for stack in (hf.encoder, hf.decoder):
            stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight.mul_(8.0)
        hf.shared.weight.mul_(embed_scale)
        hf.shared.weight[1].mul_(eos_boost)
        if embed_scale != 1.0:
            hf.shared.weight[0].mul_(0.1)
    ours = EncDecModel(EncDecConfig(**dims), vocab).eval()
    load_hf_state_dict(ours, hf.state_dict())
    return ours, hf


def hf_forward(hf, feats):
    return hf(
        input_ids=feats["encoder_input_tokens"].long(),
        attention_mask=feats["encoder_segment_ids"] > 0,
        decoder_input_ids=feats["decoder_input_tokens"].long(),
    ).logits


@pytest.mark.parametrize("dims,vocab", [(SMALL, 384), (ASYM, 300), (DEEP, 128)])
def test_logits_and_loss_match_hugging_face(dims, vocab):
    ours, hf = make_pair(dims, vocab)
    rng = np.random.default_rng(1)
    feats = tensors(encdec_features(random_examples(rng, 5, 40, 30, vocab), 40, 30, pack=False))
    with torch.no_grad():
        out = ours(feats)
        ref = hf_forward(hf, feats)
    w = feats["decoder_loss_weights"] > 0
    assert out.logits.dtype == torch.float32
    assert out.logits.shape == (5, 30, padded_vocab_size(vocab, 128))
    diff = (out.logits[..., :vocab] - ref[..., :vocab])[w].abs().max()
    assert diff <= 1e-4
    assert torch.isneginf(out.logits[..., vocab:]).all()
    labels = feats["decoder_target_tokens"].long().masked_fill(~w, -100)
    ref_loss = torch.nn.functional.cross_entropy(
        ref[..., :vocab].reshape(-1, vocab), labels.reshape(-1), ignore_index=-100
    )
    if vocab == padded_vocab_size(vocab, 128):  # HF's own loss covers the same columns
        ref_loss_hf = hf(
            input_ids=feats["encoder_input_tokens"].long(),
            attention_mask=feats["encoder_segment_ids"] > 0,
            decoder_input_ids=feats["decoder_input_tokens"].long(),
            labels=labels,
        ).loss
        assert torch.allclose(ref_loss, ref_loss_hf, atol=1e-6)
    assert out.num_tokens == w.sum()
    assert torch.allclose(out.loss_sum / out.num_tokens, ref_loss, atol=1e-5)
    lse = torch.logsumexp(ref[..., :vocab], -1)
    assert torch.allclose(out.z_loss_sum, (lse[w] ** 2).sum(), rtol=1e-5)


def test_packed_row_equals_examples_alone():
    ours, _ = make_pair(SMALL, 300, seed=3)
    rng = np.random.default_rng(2)
    examples = random_examples(rng, 4, 9, 7, 300)
    packed = tensors(encdec_features(examples, 40, 30, pack=True))
    assert packed["encoder_input_tokens"].shape[0] == 1  # all four share one row
    alone = tensors(encdec_features(examples, 40, 30, pack=False))
    with torch.no_grad():
        lp, la = ours(packed).logits, ours(alone).logits

    def token_ce(logits, feats):
        t = feats["decoder_target_tokens"].long()
        return (
            torch.nn.functional.cross_entropy(logits.transpose(1, 2), t, reduction="none")
            * feats["decoder_loss_weights"]
        )

    ce_p, ce_a = token_ce(lp, packed)[0], token_ce(la, alone)
    seg = packed["decoder_segment_ids"][0]
    for i in range(len(examples)):
        assert torch.allclose(ce_p[seg == i + 1].sum(), ce_a[i].sum(), atol=1e-5)
        n = int((seg == i + 1).sum())
        assert torch.allclose(lp[0, seg == i + 1, :300], la[i, :n, :300], atol=1e-5)


def test_bucket_function_matches_hugging_face():
    rel = torch.arange(-300, 301)[None, :]
    for bidirectional in (True, False):
        for nb, md in ((32, 128), (16, 64)):
            ours = layers.relative_position_bucket(rel, bidirectional, nb, md)
            ref = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
                rel, bidirectional=bidirectional, num_buckets=nb, max_distance=md
            )
            assert torch.equal(ours, ref)


def _expected_bucket(distance, bounds):
    """Bucket index of |distance| from facts §1.4's list of [lo-hi] ranges."""
    return next(i for i, (lo, hi) in enumerate(bounds) if lo <= distance <= hi)


def test_bucket_ranges_from_facts_sheet():
    bi = [(i, i) for i in range(8)] + [
        (8, 11),
        (12, 15),
        (16, 22),
        (23, 31),
        (32, 45),
        (46, 63),
        (64, 90),
        (91, 10**6),
    ]
    causal = [(i, i) for i in range(16)] + [
        (16, 18),
        (19, 20),
        (21, 23),
        (24, 26),
        (27, 30),
        (31, 34),
        (35, 39),
        (40, 45),
        (46, 51),
        (52, 58),
        (59, 66),
        (67, 76),
        (77, 86),
        (87, 98),
        (99, 112),
        (113, 10**6),
    ]
    dist = torch.arange(0, 400)
    left = layers.relative_position_bucket(-dist, True)  # key to the left of the query
    right = layers.relative_position_bucket(dist, True)
    past = layers.relative_position_bucket(-dist, False)
    future = layers.relative_position_bucket(dist, False)
    for n in range(400):
        assert left[n] == _expected_bucket(n, bi)
        assert right[n] == (16 + _expected_bucket(n, bi) if n > 0 else 0)
        assert past[n] == _expected_bucket(n, causal)
        assert future[n] == 0


def test_relative_bias_is_per_segment_position():
    cfg = EncDecConfig(**SMALL)
    table = layers.RelativePositionBias(32, cfg.num_heads, 128, bidirectional=True)
    table.weight.data.normal_()
    pos = torch.tensor([[0, 1, 2, 0, 1]])
    bias = table(pos, pos)
    assert bias.shape == (1, cfg.num_heads, 5, 5)
    # query 4 (pos 1 of segment 2) looking at key 3 (pos 0): relative -1
    assert torch.equal(bias[0, :, 4, 3], table.weight[1])
    assert torch.equal(bias[0, :, 1, 2], table.weight[17])  # relative +1 -> upper half


def test_greedy_cache_matches_no_cache_and_hugging_face():
    ours, hf = make_pair(ASYM, 300, seed=5, eos_boost=2.3, embed_scale=0.05)
    rng = np.random.default_rng(4)
    feats = tensors(encdec_features(random_examples(rng, 6, 20, 2, 300), 20, 4, pack=False))
    batch = {k: feats[k] for k in ("encoder_input_tokens", "encoder_segment_ids")}
    cached = ours.generate(batch, 16)
    plain = ours.generate(batch, 16, use_cache=False)
    ref = hf.generate(
        input_ids=feats["encoder_input_tokens"].long(),
        attention_mask=feats["encoder_segment_ids"] > 0,
        do_sample=False,
        num_beams=1,
        max_new_tokens=16,
        decoder_start_token_id=0,
        eos_token_id=1,
        pad_token_id=0,
        use_cache=False,  # HF's cache sizes itself by num_layers, wrong when decoder differs
        suppress_tokens=list(range(300, 384)),  # our padded vocab rows never win
    )[:, 1:]
    assert torch.equal(cached, plain)
    assert torch.equal(cached, ref)
    finished = (cached == 1).any(1)
    assert finished.any() and not finished.all()  # the test exercises EOS handling
    assert max(len(set(r.tolist())) for r in cached) >= 4  # and varied outputs
    for row in cached[finished]:
        eos = int((row == 1).nonzero()[0])
        assert (row[eos + 1 :] == 0).all()


def test_generate_stops_when_all_rows_end():
    ours, _ = make_pair(SMALL, 300, seed=1)
    real_logits, calls = ours.logits, []

    def scripted(hidden, **kw):  # row 0 emits EOS at step 2, row 1 at step 4
        out = real_logits(hidden, **kw)
        step = len(calls)
        calls.append(out.shape[0])
        out[..., 1] = -1e4
        ends = [2, 4] if out.shape[0] == 2 else [4]  # row 0 is dropped once it ended
        for r, end in enumerate(ends):
            out[r, 1] = 1e4 if step == end else -1e4
        return out

    ours.logits = scripted
    batch = {"encoder_input_tokens": torch.tensor([[5, 6, 1], [7, 1, 0]])}
    out = ours.generate(batch, 10)
    assert out.shape == (2, 5) and calls == [2, 2, 2, 1, 1]  # finished rows stop computing
    assert out[0, 2] == 1 and (out[0, 3:] == 0).all() and out[1, 4] == 1
    assert (out[:, :2] > 1).all()
    packed = {
        "encoder_input_tokens": torch.tensor([[5, 1, 6, 1]]),
        "encoder_segment_ids": torch.tensor([[1, 1, 2, 2]]),
    }
    with pytest.raises(DataError):
        ours.generate(packed, 4)


def test_sdpa_and_explicit_attention_agree():
    ours, _ = make_pair(SMALL, 300, seed=2)
    feats = tensors(
        encdec_features(
            random_examples(np.random.default_rng(0), 3, 20, 12, 300), 20, 12, pack=True
        )
    )
    with torch.no_grad():
        a = ours(feats).logits
        for m in ours.modules():
            if isinstance(m, layers.Attention):
                m.use_sdpa = False
        b = ours(feats).logits
    assert torch.allclose(a[..., :300], b[..., :300], atol=1e-5)


def test_dropout_broadcast_and_train_mode():
    d = layers.Dropout(0.5, broadcast=True).train()
    y = d(torch.ones(3, 7, 16))
    assert torch.equal(y, y[:, :1, :].expand_as(y))  # same mask at every position
    assert set(y.unique().tolist()) <= {0.0, 2.0} and (y == 0).any()
    att = d(torch.ones(2, 3, 5, 6))
    assert torch.equal(att, att[:, :, :1, :].expand_as(att))  # shared across queries
    e = layers.Dropout(0.5, broadcast=False).train()(torch.ones(3, 7, 16))
    assert not torch.equal(e, e[:, :1, :].expand_as(e))
    assert torch.equal(d.eval()(y), y)

    model = EncDecArchitecture(EncDecConfig(**SMALL), BuildContext(seed=0)).build(300)
    feats = tensors(
        encdec_features(random_examples(np.random.default_rng(0), 2, 9, 7, 300), 10, 8, pack=False)
    )
    model.eval()
    e1, e2 = model(feats).loss_sum, model(feats).loss_sum
    model.train()
    t1 = model(feats)
    assert e1 == e2 and t1.loss_sum != e1
    (t1.loss_sum + 1e-4 * t1.z_loss_sum).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def _std(t):
    return float(t.detach().float().std())


@pytest.mark.parametrize("scheme", ["mtf", "hf"])
def test_init_statistics(scheme):
    dims = dict(num_layers=1, d_model=64, d_ff=256, d_kv=16, num_heads=4, init=scheme)
    model = EncDecArchitecture(EncDecConfig(**dims), BuildContext(seed=0)).build(384)
    d, dkv, h, dff = 64, 16, 4, 256
    att = model.encoder.block[0].layer[0].SelfAttention
    ffn = model.encoder.block[0].layer[1].DenseReluDense
    trunc = 0.8796 if scheme == "mtf" else 1.0  # std of N(0, s) truncated at +-2s is 0.88 s

    def close(actual, expected, tol=0.1):
        assert abs(actual / expected - 1) < tol, (actual, expected)

    close(_std(model.shared.weight), 1.0)
    close(_std(att.q.weight), (d * dkv) ** -0.5)
    close(_std(att.k.weight), d**-0.5)
    close(_std(att.v.weight), d**-0.5)
    close(_std(att.o.weight), (h * dkv) ** -0.5)
    close(_std(ffn.wi.weight), trunc * d**-0.5)
    close(_std(ffn.wo.weight), trunc * dff**-0.5)
    rel = att.relative_attention_bias.weight
    if scheme == "mtf":
        limit = math.sqrt(6 / (32 + h))
        assert rel.abs().max() <= limit and ffn.wi.weight.abs().max() <= 2 * d**-0.5
        close(_std(rel), limit / math.sqrt(3), 0.2)
    else:
        close(_std(rel), d**-0.5, 0.2)
    assert all((n.weight == 1).all() for n in model.modules() if isinstance(n, layers.RMSNorm))


def test_build_is_seeded():
    arch = lambda s: EncDecArchitecture(EncDecConfig(**SMALL), BuildContext(seed=s))  # noqa: E731
    a, b, c = arch(1).build(300), arch(1).build(300), arch(2).build(300)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.shared.weight, c.shared.weight)


def test_describe_counts_parameters():
    arch = EncDecArchitecture(EncDecConfig(**ASYM))
    info = arch.describe(300)
    model = arch.build(300)
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["padded_vocab_size"] == 384 == model.shared.weight.shape[0]
    assert info["decoder_layers"] == 3
    # Hugging Face's t5-small / t5-base sizes (32128-row vocab from 32100 ids)
    small = EncDecConfig(num_layers=6, d_model=512, d_ff=2048, d_kv=64, num_heads=8)
    assert parameter_counts(small, 32100)["parameters"] == 60_506_624
    assert parameter_counts(EncDecConfig(), 32100)["parameters"] == 222_903_552
    base = EncDecArchitecture(EncDecConfig()).describe(32100)
    half = EncDecArchitecture(EncDecConfig(num_layers=6)).describe(32100)
    assert (
        half["forward_matmul_flops_per_input_token"] * 2
        == base["forward_matmul_flops_per_input_token"]
    )


def test_blocks_cover_every_non_embedding_parameter_once():
    model = EncDecArchitecture(EncDecConfig(**ASYM)).build(300)
    blocks = model.blocks()
    assert [(b.stack, b.index) for b in blocks] == [
        ("encoder", 0),
        ("encoder", 1),
        ("decoder", 0),
        ("decoder", 1),
        ("decoder", 2),
    ]
    names = [n for b in blocks for n in b.parameters]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters() if n != "shared.weight")
    assert "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight" in names


def test_hf_layout_and_loader_checks():
    ours, hf = make_pair(SMALL, 300)
    keys = set(ours.state_dict())
    hf_keys = set(hf.state_dict()) - {
        "encoder.embed_tokens.weight",
        "decoder.embed_tokens.weight",
        "lm_head.weight",
    }
    assert keys == hf_keys
    sd = dict(hf.state_dict())
    sd["lm_head.weight"] = sd["shared.weight"] + 1
    with pytest.raises(ConfigError):
        load_hf_state_dict(ours, sd)
    bigger = EncDecModel(EncDecConfig(**SMALL, vocab_divisor=256), 300)
    load_hf_state_dict(bigger, hf.state_dict())  # 384 checkpoint rows into 512
    assert torch.equal(bigger.shared.weight[:384], hf.shared.weight)


def test_forward_output_contract():
    model = EncDecArchitecture(EncDecConfig(**SMALL)).build(300).eval()
    feats = encdec_features(random_examples(np.random.default_rng(0), 3, 9, 7, 300), 10, 8, False)
    out = model(tensors(feats), return_logits=False)
    assert isinstance(out, ModelOutput) and out.logits is None
    minimal = {
        k: torch.from_numpy(feats[k]) for k in ("encoder_input_tokens", "decoder_target_tokens")
    }
    assert torch.allclose(model(minimal).loss_sum, out.loss_sum, atol=1e-5)


def test_config_errors():
    for bad in (dict(init="xavier"), dict(dropout_rate=1.0), dict(num_layers=0)):
        with pytest.raises(ConfigError):
            EncDecArchitecture(dataclasses.replace(EncDecConfig(**SMALL), **bad))
