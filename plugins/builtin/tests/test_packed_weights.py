"""Decoding steps on MKL-packed weights (layers.PackedWeights): the same products as
``F.linear`` up to float rounding, the same ids as unpacked decoding for every
architecture, packs that follow weight changes and never travel with copies."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

from t5k_builtin.model import layers

pytestmark = pytest.mark.skipif(
    not layers.mkl_packing_available(), reason="this torch has no MKL packed GEMM")

from test_beam import build, prompts  # noqa: E402


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows,d_in,d_out", [(4, 32, 48), (32, 512, 512), (129, 64, 2048),
                                             (256, 96, 40)])
def test_packed_product_equals_f_linear(rows, d_in, d_out):
    torch.manual_seed(rows)
    weight, x = torch.randn(d_out, d_in), torch.randn(rows, d_in)
    packs = layers.PackedWeights()
    out = packs.linear(x, weight)
    assert out.shape == (rows, d_out) and out.is_contiguous()
    _close(out, F.linear(x, weight))


def test_rows_outside_the_packed_range_are_not_packed():
    packs = layers.PackedWeights()
    weight = torch.randn(16, 8)
    for rows in (1, 2, 3, 257):
        assert packs.linear(torch.randn(rows, 8), weight) is None
    assert packs.linear(torch.randn(8, 8), weight.double()) is None

    class Sharded(torch.Tensor):  # stands for DTensor & co: their products are their own
        pass

    assert packs.linear(torch.randn(8, 8), torch.nn.Parameter(weight.as_subclass(Sharded))) is None
    assert len(packs) == 0


def test_fewer_rows_reuse_the_pack_padded_until_half():
    """A greedy search drops finished rows: down to just over half of the pack's rows the
    pack is reused (zero-padded rows in, their outputs dropped), below that it repacks."""
    torch.manual_seed(0)
    weight, packs = torch.randn(64, 32), layers.PackedWeights()
    packs.linear(torch.randn(16, 32), weight)
    pack = packs.packed(weight, 16)[0]
    for rows in (16, 12, 9):
        x = torch.randn(rows, 32)
        _close(packs.linear(x, weight), F.linear(x, weight))
        assert packs.packed(weight, rows) == (pack, 16)
    x = torch.randn(8, 32)
    _close(packs.linear(x, weight), F.linear(x, weight))
    assert packs.packed(weight, 8)[1] == 8
    assert packs.packed(weight, 16)[1] == 16  # more rows than the pack: repacked


def test_packs_follow_changes_to_their_weight():
    """In-place updates (an optimizer step, ``load_state_dict``) and swapped storage make
    the next product repack, never reuse the stale layout."""
    torch.manual_seed(1)
    linear = layers.Linear(32, 24, bias=False)
    packs, x = layers.PackedWeights(), torch.randn(8, 32)
    with torch.no_grad():
        packs.linear(x, linear.weight)
        linear.weight.add_(1.0)
        _close(packs.linear(x, linear.weight), F.linear(x, linear.weight))
        linear.load_state_dict({"weight": torch.randn(24, 32)})
        _close(packs.linear(x, linear.weight), F.linear(x, linear.weight))
        linear.weight.data = torch.randn(24, 32)
        _close(packs.linear(x, linear.weight), F.linear(x, linear.weight))


def test_linear_packs_only_inside_a_packed_step():
    torch.manual_seed(2)
    linear, packs = layers.Linear(32, 24, bias=False), layers.PackedWeights()
    x = torch.randn(8, 1, 32)
    with torch.no_grad():
        plain = linear(x)
        assert len(packs) == 0
        with layers.packed_step(packs):
            packed = linear(x)
        assert len(packs) == 1 and packed.is_contiguous() and not plain.is_contiguous()
        _close(packed, plain)
        with layers.packed_step(packs):  # autograd takes F.linear, unpacked
            with torch.enable_grad():
                linear.weight.requires_grad_(True)
                assert linear(x).grad_fn is not None


# (arch, seed, EOS row scale): rows end at several steps while >= 4 rows go on
PACKED_CASES = [("encdec", 4, 1.0), ("encdec_shared", 5, 1.0), ("encdec_half", 6, 1.0),
                ("lm", 2, 0.5), ("prefix_lm", 2, 0.5)]


@pytest.mark.parametrize("name,seed,eos", PACKED_CASES)
def test_packed_decoding_gives_the_unpacked_ids(name, seed, eos):
    """Greedy (rows dropped as they end, so the packs are padded and rebuilt) and beam
    search decode the same ids with and without packing, and the packs were used."""
    arch, model = build(name, seed=seed)
    model.eval()  # packs live in eval mode (generate restores training mode after)
    with torch.no_grad():
        model.shared.weight[1] *= eos
    batch = prompts(arch, n=16, seed=4)
    for beams in (1, 3):
        layers.drop_decoding_packs(model)
        model.pack_decoding_weights = False
        want = model.generate(batch, 9, num_beams=beams)
        assert len(model.__dict__.get("_t5k_packed", ())) == 0
        model.pack_decoding_weights = True
        got = model.generate(batch, 9, num_beams=beams)
        assert torch.equal(got, want), beams
        # the decoder's products and the unembedding ran on packs
        assert len(model.__dict__["_t5k_packed"]) > len(model.decoder.block)
        if beams == 1:
            ends = [r.index(1) if 1 in r else -1 for r in want.tolist()]
            assert len(set(ends)) >= 3, ends  # the greedy batch shrank on the way


def test_packs_stay_out_of_copies_and_go_with_training_mode():
    _, model = build("encdec", seed=2)
    batch = prompts(build("encdec")[0], n=4)
    names = list(model.state_dict())
    model.train()
    model.generate(batch, 5)  # back to training mode afterwards: no packs kept
    assert len(model.__dict__["_t5k_packed"]) == 0
    model.eval()
    model.generate(batch, 5)
    packs = model.__dict__["_t5k_packed"]
    assert len(packs) > 0 and list(model.state_dict()) == names
    assert len(copy.deepcopy(model).__dict__["_t5k_packed"]) == 0
    assert len(pickle.loads(pickle.dumps(model)).__dict__["_t5k_packed"]) == 0
    model.eval()
    assert len(packs) > 0
    model.train()
    assert len(packs) == 0


# ------------------------------------------------------------------- lean steps
def _count_lean_steps(monkeypatch):
    calls = []
    real = layers._lean_step

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(layers, "_lean_step", counted)
    return calls


def _step_logits(model, batch, steps=6, num_beams=1, **kw):
    dec = model.incremental_decoder(batch, num_beams, **kw)
    tokens, out = None, []
    with torch.no_grad():
        for _ in range(steps):
            logits = dec.step(tokens)
            out.append(logits)
            tokens = logits.argmax(-1)
    return out


@pytest.mark.parametrize("name", ["encdec", "encdec_shared", "encdec_half", "lm", "prefix_lm"])
def test_lean_step_gives_the_modules_bits(name, monkeypatch):
    """The lean decoding step (one function instead of the module tree) computes every
    step's logits bit for bit as the modules do; a forward hook anywhere in the stack
    hands the step back to the modules."""
    arch, model = build(name, seed=3)
    model.eval()
    batch = prompts(arch, n=6, seed=5)
    calls = _count_lean_steps(monkeypatch)
    for beams in (1, 3):  # beams: rows share their example's cross-attention memory
        calls.clear()
        lean = _step_logits(model, batch, num_beams=beams)
        assert len(calls) >= 5  # every cached step after the first (which fills caches)
        handle = model.decoder.block[-1].layer[-1].layer_norm.register_forward_hook(
            lambda *args: None)
        calls.clear()
        plain = _step_logits(model, batch, num_beams=beams)
        handle.remove()
        assert calls == []
        for a, b in zip(lean, plain, strict=True):
            assert torch.equal(a, b)


def test_lean_step_steps_aside_where_the_modules_differ(monkeypatch):
    """Adapters, a module in training mode, autograd and static caches take the
    modules' path."""
    arch, model = build("encdec", seed=3)
    model.eval()
    batch = prompts(arch, n=6, seed=5)
    calls = _count_lean_steps(monkeypatch)
    _step_logits(model, batch, static_shapes=True, max_length=6)
    assert calls == []
    model.decoder.block[0].layer[1].dropout.train()
    _step_logits(model, batch)
    model.eval()
    assert calls == []
    dec = model.incremental_decoder(batch, 1)
    tokens = dec.step(None).argmax(-1)  # fills the caches under autograd
    dec.step(tokens)
    assert calls == []
    with torch.no_grad():
        dec.step(tokens)
    assert len(calls) == 1
    model.decoder.block[1].add_adapter(model.config, 8)
    calls.clear()
    _step_logits(model, batch)
    assert calls == []
