"""Decoding steps on packed weights (layers.PackedWeights, MKL's or oneDNN's packs):
the same products as ``F.linear`` up to float rounding, the same ids as unpacked decoding
for every architecture, packs that follow weight changes and never travel with copies."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from t5k_builtin.model import layers

pytestmark = pytest.mark.skipif(
    not layers.pack_kernels_available(), reason="this torch has no packed GEMM")

from test_beam import build, prompts  # noqa: E402

KERNELS = [pytest.param(k, marks=pytest.mark.skipif(
    k not in layers.pack_kernels_available(), reason=f"this torch has no {k} packs"))
    for k in layers.PACK_KERNELS]


def _close(out, x, weight):
    """``out`` is ``x @ weight^T`` up to the rounding of some order of summation: within
    ``K * u * (|x| @ |weight|^T)`` of the exact product (``u``: ``out``'s unit roundoff,
    the fp32 accumulator's for bf16 inputs plus bf16's rounding of the result)."""
    exact = x.double() @ weight.double().t()
    scale = x.double().abs() @ weight.double().abs().t()
    bound = x.shape[1] * torch.finfo(torch.float32).eps * scale
    if out.dtype == torch.bfloat16:
        bound = bound + torch.finfo(torch.bfloat16).eps * exact.abs()
    assert out.shape == exact.shape
    assert ((out.double() - exact).abs() <= bound).all(), (out.double() - exact).abs().max()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("rows,d_in,d_out", [(4, 32, 48), (32, 512, 512), (129, 64, 2048),
                                             (256, 96, 40)])
def test_packed_product_equals_f_linear(kernel, rows, d_in, d_out):
    torch.manual_seed(rows)
    weight, x = torch.randn(d_out, d_in), torch.randn(rows, d_in)
    packs = layers.PackedWeights(kernel)
    out = packs.linear(x, weight)
    assert out.shape == (rows, d_out) and out.is_contiguous() and out.dtype == torch.float32
    assert packs.packed(weight, rows)[0] == kernel
    _close(out, x, weight)
    # the same check fails for a wrong product (the bound is not vacuous)
    with pytest.raises(AssertionError):
        _close(out, x, weight + 1e-2 * torch.randn_like(weight))


def test_auto_takes_an_available_kernel_and_remembers_it():
    torch.manual_seed(3)
    weight, x = torch.randn(64, 48), torch.randn(16, 48)
    packs = layers.PackedWeights()
    _close(packs.linear(x, weight), x, weight)
    chosen = packs.packed(weight, 16)[0]
    assert chosen in layers.pack_kernels_available()
    assert chosen == layers.fastest_pack_kernel(64, 48, 16, torch.get_num_threads())


def test_unknown_kernel_is_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match="'fast'.*'auto', 'mkl', 'onednn'"):
        layers.PackedWeights("fast")


@pytest.mark.skipif("onednn" not in layers.pack_kernels_available(), reason="no oneDNN packs")
@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bfloat16])
def test_bf16_products_pack_through_onednn(weight_dtype):
    """A bf16 product -- of bf16 weights, or autocast's of fp32 weights cast to bf16 --
    runs on a oneDNN pack of the bf16 weight, in whatever mode the packs were made."""
    torch.manual_seed(4)
    weight = torch.randn(384, 256).to(weight_dtype)
    x = torch.randn(32, 256).bfloat16()
    for kernel in ("auto", *layers.pack_kernels_available()):
        packs = layers.PackedWeights(kernel)
        out = packs.linear(x, weight)
        assert out.dtype == torch.bfloat16 and packs.packed(weight, 32, torch.bfloat16)[0] == "onednn"
        _close(out, x, weight.bfloat16())
    assert packs.linear(x.float(), weight.bfloat16()) is None  # no fp32 product of bf16


def test_too_few_rows_other_dtypes_and_subclasses_are_not_packed():
    packs = layers.PackedWeights()
    weight = torch.randn(16, 8)
    for rows in (1, 2, 3):  # beyond PACKED_ROWS: test_many_rows_pack_only_where_timed_faster
        assert packs.linear(torch.randn(rows, 8), weight) is None
    assert packs.linear(torch.randn(8, 8), weight.double()) is None

    class Sharded(torch.Tensor):  # stands for DTensor & co: their products are their own
        pass

    assert packs.linear(torch.randn(8, 8), torch.nn.Parameter(weight.as_subclass(Sharded))) is None
    assert len(packs) == 0


@pytest.mark.parametrize("kernel", KERNELS)
def test_fewer_rows_reuse_the_pack_until_half(kernel):
    """A greedy search drops finished rows: down to just over half of the pack's rows the
    pack is reused (MKL's zero-padded, oneDNN's as they are), below that it repacks."""
    torch.manual_seed(0)
    weight, packs = torch.randn(64, 32), layers.PackedWeights(kernel)
    packs.linear(torch.randn(16, 32), weight)
    pack = packs.packed(weight, 16)[1]
    for rows in (16, 12, 9):
        x = torch.randn(rows, 32)
        _close(packs.linear(x, weight), x, weight)
        found = packs.packed(weight, rows)
        assert found[1] is pack and found[2] == 16
    x = torch.randn(8, 32)
    _close(packs.linear(x, weight), x, weight)
    assert packs.packed(weight, 8)[2] == 8
    assert packs.packed(weight, 16)[2] == 16  # more rows than the pack: repacked


def test_packs_follow_changes_to_their_weight():
    """In-place updates (an optimizer step, ``load_state_dict``) and swapped storage make
    the next product repack, never reuse the stale layout."""
    torch.manual_seed(1)
    linear = layers.Linear(32, 24, bias=False)
    packs, x = layers.PackedWeights(), torch.randn(8, 32)
    with torch.no_grad():
        packs.linear(x, linear.weight)
        linear.weight.add_(1.0)
        _close(packs.linear(x, linear.weight), x, linear.weight)
        linear.load_state_dict({"weight": torch.randn(24, 32)})
        _close(packs.linear(x, linear.weight), x, linear.weight)
        linear.weight.data = torch.randn(24, 32)
        _close(packs.linear(x, linear.weight), x, linear.weight)


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
        _close(packed.view(8, 24), x.view(8, 32), linear.weight)
        with layers.packed_step(packs):  # autograd takes F.linear, unpacked
            with torch.enable_grad():
                linear.weight.requires_grad_(True)
                assert linear(x).grad_fn is not None


@pytest.mark.skipif("onednn" not in layers.pack_kernels_available(), reason="no oneDNN packs")
def test_linear_under_autocast_packs_autocasts_product():
    """Under CPU bf16 autocast a decoding step's product is autocast's (bf16 operands,
    bf16 result) from a bf16 pack made once; outside a packed step autocast's own."""
    torch.manual_seed(5)
    linear, packs = layers.Linear(64, 48, bias=False), layers.PackedWeights()
    x = torch.randn(16, 1, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = linear(x)
        assert len(packs) == 0 and want.dtype == torch.bfloat16
        with layers.packed_step(packs):
            got = linear(x)
    assert got.dtype == torch.bfloat16 and len(packs) == 1
    assert packs.packed(linear.weight, 16, torch.bfloat16)[0] == "onednn"
    _close(got.view(16, 48), x.view(16, 64).bfloat16(), linear.weight.bfloat16())
    torch.testing.assert_close(got, want)


# (arch, seed, EOS row scale): rows end at several steps while >= 4 rows go on
PACKED_CASES = [("encdec", 4, 1.0), ("encdec_shared", 5, 1.0), ("encdec_half", 6, 1.0),
                ("lm", 2, 0.5), ("prefix_lm", 2, 0.5)]


@pytest.mark.parametrize("kernel", [True, *KERNELS])
@pytest.mark.parametrize("name,seed,eos", PACKED_CASES)
def test_packed_decoding_gives_the_unpacked_ids(name, seed, eos, kernel):
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
        model.pack_decoding_weights = kernel
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


@pytest.mark.skipif("onednn" not in layers.pack_kernels_available(), reason="no oneDNN packs")
@pytest.mark.parametrize("name", ["encdec", "lm"])
def test_packed_decoding_under_autocast_gives_autocasts_logits(name):
    """Decoding steps under CPU bf16 autocast: the products of the decoder and the
    unembedding run on bf16 packs and every step's logits are autocast's unpacked ones up
    to bf16 rounding (fed the same tokens: in bf16 a near-tie may flip an argmax)."""
    arch, model = build(name, seed=7)
    model.eval()
    batch = prompts(arch, n=16, seed=4)
    tokens = torch.randint(
        2, model.shared.weight.shape[0], (16, 6), generator=torch.Generator().manual_seed(0))

    def logits(pack):
        model.pack_decoding_weights = pack
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            dec, out = model.incremental_decoder(batch, 1), []
            out.append(dec.step(None))
            for t in tokens.t():
                out.append(dec.step(t))
        return torch.stack(out).float()

    want, got = logits(False), logits(True)
    assert torch.equal(want.isinf(), got.isinf())  # the padded vocabulary's -inf
    want, got = want[want.isfinite()], got[want.isfinite()]
    packs = model.__dict__["_t5k_packed"]._packs
    assert sum(dtype == torch.bfloat16 for _, dtype, _ in packs) > len(model.decoder.block)
    assert (got - want).norm() < 0.02 * want.norm()  # bf16's rounding, compounded


# ------------------------------------------------------------- many rows (encoders)
def test_many_rows_pack_only_where_timed_faster(monkeypatch):
    """Beyond PACKED_ROWS (an encoder's rows) a product packs only if the timing put a
    packed kernel ahead of ``F.linear`` for that shape; such a pack serves that row count
    only, and lives beside the same weight's few-row pack (a stack shared by encoder and
    decoder keeps both)."""
    kernel = layers.pack_kernels_available()[0]
    asked = []

    def choose(out_f, in_f, rows, threads, dtype, candidates):
        asked.append(candidates)
        return choice

    monkeypatch.setattr(layers, "fastest_pack_kernel", choose)
    torch.manual_seed(6)
    weight, packs = torch.randn(48, 32), layers.PackedWeights(kernel)
    x = torch.randn(300, 32)
    choice = None  # F.linear measured faster
    assert packs.linear(x, weight) is None and len(packs) == 0
    assert asked == [(None, kernel)]
    choice = kernel
    _close(packs.linear(x, weight), x, weight)
    assert packs.packed(weight, 300)[2] == 300 and len(packs) == 1
    few = torch.randn(8, 32)
    _close(packs.linear(few, weight), few, weight)  # few rows: their own pack, no timing
    assert len(packs) == 2 and len(asked) == 2
    assert packs.packed(weight, 300)[2] == 300  # the many-row pack is still there
    assert packs.packed(weight, 280)[2] == 280  # another row count: repacked for it


def test_fastest_pack_kernel_picks_among_its_candidates():
    kernels = layers.pack_kernels_available()
    assert layers.fastest_pack_kernel(64, 32, 300, 1, torch.float32, (None, *kernels)) in (
        None, *kernels)
    assert layers.fastest_pack_kernel(64, 32, 16, 1, torch.float32, kernels[:1]) == kernels[0]
    assert layers.fastest_pack_kernel(64, 32, 300, 1, torch.float32, (None,)) is None


def test_timing_the_kernels_leaves_the_global_generator_alone():
    """The timing runs once per process, inside the first evaluation of a run: drawing its
    operands from the global generator would move training's dropout masks in a resumed
    run (a new process times again) but not in the uninterrupted one."""
    kernels = layers.pack_kernels_available()
    if not kernels:
        pytest.skip("no packed-GEMM library in this torch build")
    before = torch.get_rng_state()
    layers.fastest_pack_kernel(72, 40, 24, 1, torch.float32, (None, *kernels))  # not cached
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", ["encdec", "encdec_shared", "lm"])
def test_encoder_and_prompt_products_pack_and_keep_the_ids(name, monkeypatch):
    """With packing timed faster at many rows, the encoder's (or the prompt's) products
    run on packs and the decoded ids are the unpacked ones."""
    kernel = layers.pack_kernels_available()[-1]
    monkeypatch.setattr(layers, "fastest_pack_kernel", lambda *args: kernel)
    arch, model = build(name, seed=4)
    model.eval()
    batch = prompts(arch, n=40, seed=4)  # 40 rows x their lengths: beyond PACKED_ROWS
    model.pack_decoding_weights = False
    want = model.generate(batch, 6)
    model.pack_decoding_weights = True
    got = model.generate(batch, 6)
    assert torch.equal(got, want)
    packs = model.__dict__["_t5k_packed"]._packs
    assert any(many for _, _, many in packs)


@pytest.mark.slow
@pytest.mark.parametrize("name,seed,eos", [PACKED_CASES[0], PACKED_CASES[3]])
def test_compiled_steps_run_on_the_packs(name, seed, eos, monkeypatch):
    """``generate(..., compile=True)``: the compiled decoder steps call
    ``t5k::packed_linear``, which runs their products on the decode's packs (none of them
    without ``PACKS_IN_GRAPHS``), with the eager ids and no graph break."""
    from torch._dynamo.utils import counters

    arch, model = build(name, seed=seed)
    model.eval()
    with torch.no_grad():
        model.shared.weight[1] *= eos  # rows decode past the first steps
    batch = prompts(arch, n=8, seed=4)
    want = model.generate(batch, 7)
    assert (want[:, 3] != 0).any()
    calls = []
    real = layers.PackedWeights.linear

    def counted(self, flat, weight):
        calls.append(weight.shape)
        return real(self, flat, weight)

    monkeypatch.setattr(layers.PackedWeights, "linear", counted)
    counts = {}
    counters.clear()
    for on in (False, True):
        monkeypatch.setattr(layers, "PACKS_IN_GRAPHS", on)
        calls.clear()
        assert torch.equal(model.generate(batch, 7, compile=True), want), on
        counts[on] = len(calls)
    assert dict(counters["graph_break"]) == {}
    # the compiled steps' products ran on packs: at least the feed-forward and the
    # self-attention projections of every layer in each of the compiled steps
    assert counts[True] - counts[False] >= 3 * len(model.decoder.block) * 6, counts
