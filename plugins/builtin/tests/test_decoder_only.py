"""Decoder-only Table 2 variants: "Language model" and "Prefix LM" (facts §2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model.decoder_only import (
    DecoderOnlyModel,
    LMArchitecture,
    PrefixLMArchitecture,
    PrefixLMModel,
    delimited_lm_features,
)
from t5k_builtin.model.encdec import EncDecArchitecture, parameter_counts
from t5kernel.api import BuildContext
from t5kernel.errors import ConfigError, DataError

DIMS = dict(num_layers=2, d_model=32, d_ff=64, d_kv=8, num_heads=4, dropout_rate=0.0)
VOCAB = 200
EX_A = {"inputs": np.array([5, 6, 1]), "targets": np.array([7, 1])}
EX_B = {"inputs": np.array([8, 9, 10, 1]), "targets": np.array([11, 12, 1])}


def cfg(**kw):
    return EncDecConfig(**{**DIMS, **kw})


def arch(prefix: bool, seed: int = 0, **kw):
    cls = PrefixLMArchitecture if prefix else LMArchitecture
    return cls(cfg(**kw), BuildContext(seed=seed))


def tensors(feats):
    return {k: torch.from_numpy(v) for k, v in feats.items()}


def random_examples(seed, n):
    rng = np.random.default_rng(seed)
    return [
        {
            "inputs": np.append(rng.integers(2, VOCAB, rng.integers(1, 8)), 1),
            "targets": np.append(rng.integers(2, VOCAB, rng.integers(1, 5)), 1),
        }
        for _ in range(n)
    ]


# ------------------------------------------------------------------------ features
def test_features_layout_by_hand():
    f = delimited_lm_features([EX_A, EX_B], 7, 5, pack=True, loss_on_targets_only=True)
    assert f["decoder_target_tokens"].shape == (1, 12)
    assert f["decoder_target_tokens"][0].tolist() == [5, 6, 1, 7, 1, 8, 9, 10, 1, 11, 12, 1]
    assert f["decoder_input_tokens"][0].tolist() == [0, 5, 6, 1, 7, 0, 8, 9, 10, 1, 11, 12]
    assert f["decoder_segment_ids"][0].tolist() == [1] * 5 + [2] * 7
    assert f["decoder_positions"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]
    # inputs incl. EOS plus one extra position (the one predicting the first target)
    assert f["decoder_causal_attention"][0].tolist() == [1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 0]
    assert f["decoder_loss_weights"][0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1]
    lm = delimited_lm_features([EX_A, EX_B], 7, 5, pack=True)
    assert lm["decoder_loss_weights"][0].tolist() == [1] * 12
    # unpacked: one example per row plus the prompt for generation
    u = delimited_lm_features([EX_A, EX_B], 6, 6, pack=False, num_rows=3)
    assert u["encoder_input_tokens"].tolist() == [[5, 6, 1, 0, 0, 0], [8, 9, 10, 1, 0, 0],
                                                  [0] * 6]
    assert u["decoder_target_tokens"][1].tolist()[:7] == [8, 9, 10, 1, 11, 12, 1]
    with pytest.raises(DataError):
        delimited_lm_features([EX_A, EX_B], 3, 3, pack=True, num_rows=1)


def test_packing_needs_inputs_and_targets_each_to_fit():
    """Mesh TF packs the inputs and targets features (pack_dataset) before concatenating
    them (_dynamic_text2self): a row's inputs fit inputs_length and its targets
    targets_length, not just their sum the row."""
    a = arch(True)
    assert a.pack([EX_A, EX_B], 7, 5) == [[0, 1]]
    assert a.pack([EX_A, EX_B], 6, 6) == [[0], [1]]  # inputs 3 + 4 > 6, though 12 <= 12
    assert a.pack([EX_A, EX_B], 8, 4) == [[0], [1]]  # targets 2 + 3 > 4
    for i, t in ((7, 5), (6, 6), (8, 4)):
        f = delimited_lm_features([EX_A, EX_B], i, t, pack=True)
        assert f["decoder_segment_ids"].max(axis=1).tolist() == [
            len(g) for g in a.pack([EX_A, EX_B], i, t)]


def test_a_batch_without_inputs_has_targets_length_rows():
    """The lm objective's examples have no inputs (the reference's LM has only a targets
    feature): rows are targets_length long, one 512-token chunk per row at P Table 2's
    "LM, LM" lengths (512/512), not two in a 1024-token row."""
    empty = np.zeros(0, np.int32)
    chunks = [{"inputs": empty, "targets": np.r_[np.arange(3, 14), 1]} for _ in range(3)]
    f = delimited_lm_features(chunks, 12, 12, pack=True)
    assert f["decoder_target_tokens"].shape == (3, 12)
    assert f["decoder_segment_ids"].max(axis=1).tolist() == [1, 1, 1]
    assert arch(False).pack(chunks, 12, 12) == [[0], [1], [2]]
    assert f["decoder_loss_weights"].sum() == 36
    mixed = delimited_lm_features([*chunks, EX_A], 12, 12, pack=True)
    assert mixed["decoder_target_tokens"].shape[1] == 24


# ---------------------------------------------------------------------- visibility
def attention_visibility(model, feats):
    """The additive mask the model builds, read back from its bias (0 = visible)."""
    captured = {}
    stack = model.decoder

    def hook(_mod, args):
        captured["bias"] = args[1]

    handle = stack.register_forward_pre_hook(hook)
    model(tensors(feats))
    handle.remove()
    pos_bias = stack.position_bias(*(torch.arange(12)[None, :],) * 2)
    return (captured["bias"] - pos_bias)[0, 0] > -1e8


def test_prefix_lm_visibility_rule_by_hand():
    feats = delimited_lm_features([EX_A, EX_B], 7, 5, pack=True, loss_on_targets_only=True)
    visible = attention_visibility(arch(True).build(VOCAB), feats)
    expected = torch.zeros(12, 12, dtype=torch.bool)
    for lo, hi, region in ((0, 5, 4), (5, 12, 5)):  # segment rows, region size
        for q in range(lo, hi):
            for k in range(lo, hi):
                expected[q, k] = k <= q or (q < lo + region and k < lo + region)
    assert torch.equal(visible, expected)
    lm_visible = attention_visibility(arch(False).build(VOCAB), feats)
    seg = torch.from_numpy(feats["decoder_segment_ids"][0])
    causal = torch.tril(torch.ones(12, 12, dtype=torch.bool)) & (seg[:, None] == seg[None, :])
    assert torch.equal(lm_visible, causal)


def test_bucket_direction():
    assert arch(True).build(VOCAB).decoder.bidirectional is True
    assert arch(False).build(VOCAB).decoder.bidirectional is False


# ---------------------------------------------------------------------------- loss
def per_position_loss(out, feats):
    logits = out.logits
    targets = torch.from_numpy(feats["decoder_target_tokens"]).long()
    return torch.logsumexp(logits, -1) - logits.gather(-1, targets[..., None]).squeeze(-1)


def test_prefix_lm_loss_ignores_inputs_and_lm_covers_all():
    for prefix, expected_tokens in ((True, 5), (False, 12)):
        a = arch(prefix)
        model = a.build(VOCAB)
        feats = a.features([EX_A, EX_B], 6, 6, pack=True)
        out = model(tensors(feats))
        assert float(out.num_tokens) == expected_tokens
        w = torch.from_numpy(feats["decoder_loss_weights"]).float()
        assert torch.allclose(out.loss_sum, (per_position_loss(out, feats) * w).sum())
        # changing an input token's *target* id changes the loss only for the LM
        feats2 = {k: v.copy() for k, v in feats.items()}
        feats2["decoder_target_tokens"][0, 1] = 42
        out2 = model(tensors(feats2))
        assert torch.equal(out2.loss_sum, out.loss_sum) == prefix


@pytest.mark.parametrize("prefix", [False, True])
def test_packed_row_equals_examples_alone(prefix):
    a = arch(prefix)
    model = a.build(VOCAB).eval()
    examples = random_examples(3, 4)
    packed = a.features(examples, 16, 8, pack=True)
    assert packed["decoder_segment_ids"].max() >= 2
    p_out = model(tensors(packed))
    p_loss = per_position_loss(p_out, packed)
    for r, row_seg in enumerate(packed["decoder_segment_ids"]):
        for s in range(1, row_seg.max() + 1):
            idx = np.flatnonzero(row_seg == s)
            alone = a.features([examples.pop(0)], 16, 8, pack=False)
            a_out = model(tensors(alone))
            n = idx.size
            w = torch.from_numpy(alone["decoder_loss_weights"][0, :n]).bool()
            assert torch.allclose(
                p_loss[r, idx][w], per_position_loss(a_out, alone)[0, :n][w], atol=1e-5
            )
            assert torch.allclose(p_out.logits[r, idx], a_out.logits[0, :n], atol=1e-4)
    assert not examples


# ------------------------------------------------------------------------ decoding
@pytest.mark.parametrize("prefix", [False, True])
def test_generate_cache_equals_full_recompute(prefix):
    a = arch(prefix, seed=1)
    model = a.build(VOCAB)
    with torch.no_grad():  # a random model echoes the prompt's EOS; make it talk, and make
        model.shared.weight[1] = 0.0  # position errors visible in the argmax
        model.decoder.relative_attention_bias.weight.mul_(20.0)
    feats = a.features(random_examples(5, 4), 10, 6, pack=False)
    batch = {k: torch.from_numpy(v) for k, v in feats.items() if k.startswith("encoder")}
    cached = model.generate(batch, 8)
    full = model.generate(batch, 8, use_cache=False)
    assert cached.shape == (4, 8)  # every step ran
    assert torch.equal(cached, full)
    # each row is decoded as if alone (no leakage across padding of ragged prompts)
    for r in range(4):
        alone = {k: v[r : r + 1] for k, v in batch.items()}
        row = model.generate(alone, 8)
        assert torch.equal(row[0], cached[r, : row.shape[1]])


def test_generate_matches_teacher_forced_argmax():
    """Greedy ids continue the prompt as the training forward would predict them."""
    a = arch(True, seed=2)
    model = a.build(VOCAB).eval()
    with torch.no_grad():
        model.shared.weight[1] = 0.0  # no EOS: continue for all 3 steps
    ex = random_examples(7, 1)[0]
    feats = a.features([ex], 10, 6, pack=False)
    prompt = {k: torch.from_numpy(v) for k, v in feats.items() if k.startswith("encoder")}
    ids = model.generate(prompt, 3)
    assert ids.shape == (1, 3)
    full = {"inputs": ex["inputs"], "targets": ids[0].numpy()}
    f2 = a.features([full], 10, 6, pack=False)
    logits = model(tensors(f2)).logits[0]
    n = ex["inputs"].size
    assert logits[n : n + ids.shape[1]].argmax(-1).tolist() == ids[0].tolist()


# ------------------------------------------------------------------ describe, blocks
def test_parameter_count_is_half_of_encdec():
    for prefix in (False, True):
        model = arch(prefix).build(VOCAB)
        numel = sum(p.numel() for p in model.parameters())
        desc = arch(prefix).describe(VOCAB)
        assert desc["parameters"] == numel
        base = parameter_counts(cfg(), VOCAB)
        assert desc["parameters_excluding_embedding"] == base["encoder_parameters"]
        d, inner = DIMS["d_model"], DIMS["num_heads"] * DIMS["d_kv"]
        cross = DIMS["num_layers"] * (4 * d * inner + d)
        # enc-dec = 2 stacks + cross-attention; decoder-only = 1 stack (P vs 2P)
        assert 2 * desc["parameters_excluding_embedding"] + cross == (
            base["parameters_excluding_embedding"]
        )
        assert not any("EncDecAttention" in n for n, _ in model.named_parameters())
        enc = EncDecArchitecture(cfg()).describe(VOCAB)
        assert desc["forward_matmul_flops_per_token_pair"] > 0
        assert desc["forward_matmul_flops_per_token_pair"] == pytest.approx(
            enc["forward_matmul_flops_per_token_pair"], rel=0.1
        )


def test_blocks_cover_every_parameter_once():
    model = arch(True).build(VOCAB)
    assert isinstance(model, PrefixLMModel) and isinstance(model, DecoderOnlyModel)
    listed = [p for b in model.blocks() for p in b.parameters]
    names = [n for n, _ in model.named_parameters()]
    assert sorted(listed) == sorted(n for n in names if n != "shared.weight")
    assert [b.index for b in model.blocks()] == [0, 1]


def test_bad_depth_rejected():
    with pytest.raises(ConfigError):
        LMArchitecture(cfg(num_decoder_layers=3))


# ----------------------------------------------------------------------- end to end
def test_tiny_run_prefix_lm(tmp_path):
    from t5kernel.cli import main
    from t5kernel.testing import TINY_OVERRIDES

    rc = main(["run", "--quiet", *TINY_OVERRIDES, "--arch", "prefix_lm", f"run_dir={tmp_path}"])
    assert rc == 0
