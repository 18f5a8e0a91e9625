"""The performance paths compute what the plain formulas compute (issue: performance).

Each fast path is compared with the straightforward torch expression it replaces:
the fused cross-entropy / z-loss backward, the decoding-step unembedding and linear
layouts, the preallocated self-attention cache (including growth past its spare rows),
the shared embedding lookup, the fused RMSNorm, the contiguous position bias (gathered
from the transposed table), the in-place residual adds, the feed-forward layer's
dropout-then-ReLU order, what a compiled training step saves for backward, and the
attention dropout applied to the values.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model import encdec, layers
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


def test_fused_cross_entropy_with_masked_vocab_columns():
    """Padded-vocab columns are -inf (the model masks them): log-probabilities there are
    -inf, their gradient exactly 0, and the losses equal the composed ops."""
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 4, 12, generator=gen, dtype=torch.float64)
    logits[..., 9:] = float("-inf")
    targets = torch.randint(0, 9, (2, 4), generator=gen)
    weights = torch.ones(2, 4, dtype=torch.float64)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    ce_a, z_a = SoftmaxCrossEntropy.apply(a, targets, weights)
    ce_b, z_b = _composed(b, targets, weights)
    (ce_a + 0.1 * z_a).backward()
    (ce_b + 0.1 * z_b).backward()
    assert torch.allclose(ce_a, ce_b) and torch.allclose(z_a, z_b)
    assert torch.allclose(a.grad, b.grad, atol=1e-12)
    assert torch.all(a.grad[..., 9:] == 0)


def _whole_tensor_gradient(logits, targets, weights, g_ce, g_z):
    """The fused backward's formula on the whole tensor at once (no blocks)."""
    lse = torch.logsumexp(logits, dim=-1)
    ce = weights * g_ce
    grad = torch.exp(logits - lse[..., None])
    grad.mul_((ce + 2.0 * g_z * lse * weights)[..., None])
    return grad.scatter_add_(-1, targets[..., None], -ce[..., None])


@pytest.mark.parametrize("block", [1, 3, 5, 64])
@pytest.mark.parametrize("shape", [(2, 7, 33), (1, 1, 33), (3, 5, 1000), (0, 4, 33)])
def test_blockwise_cross_entropy_is_bitwise_the_whole_tensor_ops(monkeypatch, block, shape):
    """Blocks of rows (here 1-64 rows, also not dividing the row count) give exactly the
    bits of torch.logsumexp and of the backward's formula over the whole tensor, so the
    block size can never change a training run."""
    monkeypatch.setattr(encdec, "CE_BLOCK_ELEMENTS", block * shape[-1])
    gen = torch.Generator().manual_seed(sum(shape) + block)
    logits = torch.randn(*shape, generator=gen) * 7
    logits[..., -3:] = float("-inf")
    targets = torch.randint(0, shape[-1] - 3, shape[:-1], generator=gen)
    weights = (torch.rand(shape[:-1], generator=gen) > 0.3).float()
    assert torch.equal(encdec.blockwise_logsumexp(logits), torch.logsumexp(logits, -1))
    a = logits.clone().requires_grad_()
    ce, z = SoftmaxCrossEntropy.apply(a, targets, weights)
    (0.25 * ce + 1e-4 * z).backward()
    expected = _whole_tensor_gradient(logits, targets, weights, torch.tensor(0.25),
                                      torch.tensor(1e-4))
    assert torch.equal(a.grad, expected)


@settings(max_examples=60, deadline=None)
@given(total=st.integers(0, 40), vocab=st.integers(1, 50), per_block=st.integers(1, 9))
def test_row_blocks_cover_every_row_and_never_split_off_one(total, vocab, per_block):
    """Blocks are consecutive, cover every row once, and hold two rows or more (a lone
    row only when the tensor has one)."""
    flat = torch.empty(total, vocab)
    old = encdec.CE_BLOCK_ELEMENTS
    try:
        encdec.CE_BLOCK_ELEMENTS = per_block * vocab
        blocks = encdec._row_blocks(flat)
    finally:
        encdec.CE_BLOCK_ELEMENTS = old
    rows = [i for b in blocks for i in range(total)[b]]
    assert rows == list(range(total))
    assert all(b.stop - b.start >= 2 for b in blocks) or total <= 1


def test_blockwise_logsumexp_at_a_large_vocab_keeps_the_bits(monkeypatch):
    """At 250k ids a one-row reduction is split across threads (another summation order);
    blocks of two rows with the one-row tail folded in keep the whole tensor's bits."""
    monkeypatch.setattr(encdec, "CE_BLOCK_ELEMENTS", 2 * 250_000)  # 3 rows: 2 + tail 1
    for seed in (2, 8):  # draws whose last row, reduced alone on 2 threads, differs
        logits = torch.randn(3, 250_000, generator=torch.Generator().manual_seed(seed)) * 5
        assert [(b.start, b.stop) for b in encdec._row_blocks(logits)] == [(0, 3)]
        assert torch.equal(encdec.blockwise_logsumexp(logits), torch.logsumexp(logits, -1))


def test_blockwise_cross_entropy_at_t5_vocab_size():
    """At T5's padded 32,128 ids the default block is 32 rows: 40 rows run as 32 + 8, with
    the same bits as the whole-tensor ops."""
    assert encdec.CE_BLOCK_ELEMENTS // 32128 == 32
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 8, 32128, generator=gen) * 4
    logits[..., 32100:] = float("-inf")
    targets = torch.randint(0, 32100, (5, 8), generator=gen)
    weights = torch.ones(5, 8)
    assert torch.equal(encdec.blockwise_logsumexp(logits), torch.logsumexp(logits, -1))
    a = logits.clone().requires_grad_()
    ce, z = SoftmaxCrossEntropy.apply(a, targets, weights)
    (ce / 40 + 1e-4 * z).backward()
    expected = _whole_tensor_gradient(logits, targets, weights, torch.tensor(1 / 40),
                                      torch.tensor(1e-4))
    assert torch.equal(a.grad, expected)


@pytest.mark.parametrize("rows", [1, 2, 31, 128, 129, 300])
@pytest.mark.parametrize("grad", [False, True])
def test_few_row_linear_equals_f_linear(rows, grad):
    """``layers.Linear``'s few-row layout (inference on CPU, 2-128 rows) gives F.linear's
    values; with autograd it is F.linear itself, and gradients flow as usual."""
    gen = torch.Generator().manual_seed(rows)
    lin = layers.Linear(48, 80, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(80, 48, generator=gen))
    x = torch.randn(rows, 1, 48, generator=gen, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        out = lin(x)
    assert out.shape == (rows, 1, 80)
    assert torch.allclose(out, F.linear(x, lin.weight), atol=1e-4)
    few = not grad and rows in layers.FEW_ROWS
    assert out.is_contiguous() != few  # the fast path returns the transposed view
    if grad:
        out.sum().backward()
        assert torch.allclose(x.grad, lin.weight.sum(0).expand(rows, 1, 48), atol=1e-4)


def test_few_row_linear_keeps_hooks_and_state_dict_names():
    lin = layers.Linear(8, 4, bias=False)
    assert isinstance(lin, torch.nn.Linear) and list(lin.state_dict()) == ["weight"]
    seen = []
    lin.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    with torch.no_grad():
        lin(torch.randn(3, 8))
    assert seen == [torch.Size([3, 4])]


def test_position_bias_is_contiguous():
    """The bias table read is contiguous, so the stack's bias-plus-mask sum is too (the
    permuted embedding view made it channels-last and every layer copied it)."""
    bias = layers.RelativePositionBias(32, 4, 128, bidirectional=True)
    pos = torch.arange(6)[None]
    table = bias(pos, pos)
    assert table.shape == (1, 4, 6, 6) and table.is_contiguous()
    visible = layers.visibility(torch.ones(3, 6), torch.ones(3, 6), causal=False)
    assert (table + layers.mask_bias(visible)).is_contiguous()


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


@pytest.mark.parametrize("block", [7, 64, 4096])
@pytest.mark.parametrize("rows", [2, 5, 64])
def test_step_unembedding_blocks_equal_the_single_product(monkeypatch, block, rows):
    """The few-row product in blocks of vocabulary rows (dividing 300 or not, or one
    block) equals the single ``E @ h^T`` and is returned as its transposed view. (Not
    always bit-for-bit: BLAS may pick another kernel for a 7-row block.)"""
    monkeypatch.setattr(layers, "UNEMBED_BLOCK_ROWS", block)
    gen = torch.Generator().manual_seed(block + rows)
    weight = torch.randn(300, 48, generator=gen)
    hidden = torch.randn(rows, 48, generator=gen)
    out = layers.StepUnembedding(weight)(hidden)
    assert torch.allclose(out, (weight @ hidden.t()).t(), atol=1e-5)
    assert out.t().is_contiguous()  # the blocked few-row path ran
    assert torch.allclose(out, F.linear(hidden, weight), atol=1e-5)


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


def test_gather_cache_copies_the_filled_rows_and_keeps_the_capacity():
    """Reordering a dynamic self-attention cache gathers its filled key rows into buffers
    of the same size; static and cross-attention caches are gathered whole."""
    cache = [{"self": {}, "cross": {}}]
    for n in (3, 2):
        layers._append(cache[0]["self"], torch.randn(4, 2, n, 3), torch.randn(4, 2, n, 3))
    cache[0]["cross"] = {"k": torch.randn(4, 2, 6, 3), "v": torch.randn(4, 2, 6, 3)}
    static = [{"self": {"index": torch.tensor([2]), "length": 7,
                        "k": torch.randn(4, 2, 7, 3), "v": torch.randn(4, 2, 7, 3)}}]
    before = [{part: dict(kv) for part, kv in layer.items()} for layer in cache + static]
    rows = torch.tensor([3, 3, 0, 1])
    layers.Stack.gather_cache(cache, rows)
    layers.Stack.gather_cache(cache, rows, part="cross")
    layers.Stack.gather_cache(static, rows)
    dynamic = cache[0]["self"]
    assert dynamic["n"] == 5 and dynamic["k"].shape == before[0]["self"]["k"].shape
    for name in ("k", "v"):
        old = before[0]["self"][name]
        assert torch.equal(dynamic[name][:, :, :5], old[rows][:, :, :5])
        assert torch.equal(cache[0]["cross"][name], before[0]["cross"][name][rows])
        assert torch.equal(static[0]["self"][name], before[1]["self"][name][rows])
    tracked = {"k": torch.randn(2, 1, 4, 3, requires_grad=True), "n": 2}
    tracked["v"] = tracked["k"] * 2
    layers.Stack.gather_cache([{"self": tracked}], torch.tensor([1, 0]))  # autograd: whole
    assert tracked["k"].grad_fn is not None and tracked["k"].shape == (2, 1, 4, 3)


@pytest.mark.parametrize("n", [1, 3])
def test_cross_attention_shares_memory_rows_across_groups(n):
    """Beams read their example's memory once: x with ``group`` rows per memory row equals
    attending to the memory repeated per row (one query row, the decoding step, and
    several, with a per-query bias)."""
    cfg = EncDecConfig(num_layers=1, d_model=16, d_ff=32, d_kv=4, num_heads=2, dropout_rate=0.0)
    attn = layers.Attention(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    memory, x = torch.randn(3, 5, 16, generator=gen), torch.randn(6, n, 16, generator=gen)
    visible = torch.rand(3, n, 5, generator=gen) > 0.3
    visible[..., 0] = True
    bias = layers.mask_bias(visible)
    with torch.no_grad():
        shared = attn(x, bias, memory=memory)
        repeated = attn(x, bias.repeat_interleave(2, 0), memory=memory.repeat_interleave(2, 0))
        cache = {}
        attn(x, bias, memory=memory, cache=cache)  # the cache keeps the 3 memory rows
        assert cache["k"].shape[0] == 3
        assert torch.allclose(attn(x, bias, memory=memory, cache=cache), shared)
    assert torch.allclose(shared, repeated, atol=1e-6)
    with pytest.raises(ValueError, match="5 query rows cannot share a memory of 3 rows"):
        attn(x[:5], bias, memory=memory)
    with pytest.raises(ValueError, match="with a bias for 6 rows"):
        attn(x, bias.repeat_interleave(2, 0), memory=memory)


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


def test_residual_adds_into_a_fresh_sublayer_output():
    x, out = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    expected = x + out
    total = layers.residual(x, out, torch.nn.Identity())
    assert total.data_ptr() == out.data_ptr() and torch.equal(total, expected)


@pytest.mark.parametrize(
    "case", ["producer hook", "global hook", "view", "alias", "bf16", "broadcast"])
def test_residual_leaves_outputs_others_may_hold(case):
    """Whenever something else may still read ``out`` (a hook kept it, it is a view of
    another tensor) or the in-place add would change the result's dtype or shape, the
    residual sum is a new tensor and ``out`` keeps its values."""
    x, out, producer = torch.randn(3, 5, 8), torch.randn(3, 5, 8), torch.nn.Identity()
    handle = None
    if case == "producer hook":
        handle = producer.register_forward_hook(lambda *args: None)
    elif case == "global hook":
        handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: None)
    elif case == "view":
        out = torch.randn(8, 5, 3).transpose(0, 2)
    elif case == "alias":  # e.g. a custom sublayer that passes its input through
        out = x
    elif case == "bf16":  # autocast: a bf16 linear output on the float32 residual stream
        out = out.to(torch.bfloat16)
    elif case == "broadcast":
        out = torch.randn(3, 1, 8)
    before, x_before = out.clone(), x.clone()
    try:
        total = layers.residual(x, out, producer)
    finally:
        if handle is not None:
            handle.remove()
    assert torch.equal(out, before) and torch.equal(x, x_before)
    assert total.dtype == torch.float32 and torch.equal(total, x_before + before)


def test_in_place_residuals_keep_the_training_bits(monkeypatch):
    """Loss and every gradient of a training step with dropout on are bit-for-bit those
    of the plain ``x + out`` residuals (autograd accepts the in-place adds: none of the
    overwritten outputs is saved for backward)."""
    cfg = EncDecConfig(num_layers=2, d_model=16, d_ff=32, d_kv=4, num_heads=2,
                       dropout_rate=0.2)
    model = encdec.EncDecModel(cfg, 40).train()
    gen = torch.Generator().manual_seed(1)
    batch = {"encoder_input_tokens": torch.randint(2, 40, (3, 9), generator=gen),
             "decoder_target_tokens": torch.randint(2, 40, (3, 6), generator=gen)}

    def step():
        torch.manual_seed(5)
        loss = model(batch, return_logits=False).loss_sum
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        return loss.detach(), grads

    adds = []
    real = layers.residual
    monkeypatch.setattr(layers, "residual", lambda x, out, *m: adds.append(1) or real(x, out, *m))
    fast_loss, fast_grads = step()
    assert len(adds) == 2 * 2 + 2 * 3  # every sublayer of both stacks went through it
    monkeypatch.setattr(layers, "residual", lambda x, out, *m: x + out)
    plain_loss, plain_grads = step()
    assert torch.equal(fast_loss, plain_loss)
    assert all(torch.equal(a, b) for a, b in zip(fast_grads, plain_grads, strict=True))


# --------------------------------------------------- feed-forward dropout and ReLU
def _feed_forward(broadcast: bool, p: float = 0.3) -> layers.DenseReluDense:
    cfg = EncDecConfig(num_layers=1, d_model=8, d_ff=24, d_kv=4, num_heads=2,
                       dropout_rate=p, dropout_broadcast=broadcast)
    torch.manual_seed(0)
    return layers.DenseReluDense(cfg).train()


def _output_and_grads(module, forward, *inputs):
    """Output and gradients (inputs, then ``module``'s parameters) of ``forward(*inputs)``
    under a non-uniform upstream gradient, with the dropout mask drawn from a fixed seed."""
    torch.manual_seed(3)
    out = forward(*inputs)
    (out * torch.linspace(-2, 3, out.numel(), device=out.device).view_as(out)).sum().backward()
    grads = [t.grad.clone() for t in inputs] + [p.grad.clone() for p in module.parameters()]
    for t in inputs:
        t.grad = None
    module.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("broadcast", [True, False])
def test_feed_forward_drops_before_the_relu_with_the_reference_bits(broadcast):
    """``wo(relu(dropout(wi x)))`` (the order that keeps one hidden activation) gives the
    output and every gradient of the reference order ``wo(dropout(relu(wi x)))``
    (``torch.equal``: bit for bit up to the sign of a zero gradient): the mask is drawn
    from the same shape, so it is the same mask."""
    ffn = _feed_forward(broadcast)
    x = torch.randn(3, 5, 8, requires_grad=True)
    fast = _output_and_grads(ffn, ffn, x)
    reference = _output_and_grads(
        ffn, lambda x: ffn.wo(ffn.dropout(F.relu(ffn.wi(x)))), x)
    assert fast[0].abs().sum() > 0 and (fast[0] != 0).any()
    assert torch.equal(fast[0], reference[0])
    assert all(torch.equal(a, b) for a, b in zip(fast[1], reference[1], strict=True))


def test_feed_forward_keeps_one_hidden_activation_for_backward():
    """Autograd holds a single ``[.., d_ff]`` tensor per feed-forward layer: the ReLU's
    output, which is also ``wo``'s saved input (the reference order keeps the ReLU's
    output and the dropout's as two tensors)."""
    ffn = _feed_forward(True)
    x = torch.randn(4, 6, 8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        ffn(x)
    hidden = {t.untyped_storage().data_ptr() for t in saved if t.numel() == 4 * 6 * 24}
    assert len(hidden) == 1


def test_relu_from_output_passes_gradcheck_and_matches_autograd_on_ties():
    """Eager, the backward is autograd's ``relu`` backward, zeros and non-finite upstream
    gradients included."""
    h = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layers.ReLUFromOutput.apply(t.clone()), (h,))
    h = torch.tensor([-1.0, 0.0, -0.0, 2.0, 3.0, -4.0], requires_grad=True)
    g = torch.tensor([1.0, 2.0, 3.0, float("inf"), float("nan"), float("inf")])
    layers.ReLUFromOutput.apply(h.clone()).backward(g)
    ours = h.grad.clone()
    h.grad = None
    F.relu(h).backward(g)
    assert torch.equal(ours.nan_to_num(7.0), h.grad.nan_to_num(7.0))


def _saved_by_compiled_forward(module, x):
    """dtypes of the tensors a compiled training forward saves for its backward, as
    inductor partitions it (its decompositions, the min-cut partitioner) -- without
    generating code -- and the compiled module's output and gradients."""
    from functorch.compile import make_boxed_func, min_cut_rematerialization_partition
    from torch._dynamo.backends.common import aot_autograd
    from torch._inductor.decomposition import select_decomp_table

    dtypes = []

    def forward_compiler(gm, example_inputs):
        outputs = gm.graph.find_nodes(op="output")[0].args[0]
        dtypes.extend(n.meta["val"].dtype for n in outputs
                      if isinstance(n, torch.fx.Node) and "val" in n.meta)
        return make_boxed_func(gm)

    backend = aot_autograd(fw_compiler=forward_compiler,
                           bw_compiler=lambda gm, _: make_boxed_func(gm),
                           partition_fn=min_cut_rematerialization_partition,
                           decompositions=select_decomp_table())
    torch._dynamo.reset()
    try:
        grads = _output_and_grads(module, torch.compile(module, backend=backend,
                                                        fullgraph=True), x)
    finally:
        torch._dynamo.reset()
    return dtypes, grads


def test_compiled_feed_forward_saves_no_boolean_relu_mask():
    """A compiled training step saves no boolean ReLU mask (inductor's CPU code writes
    booleans ~10x slower than eager), and its gradients are the eager ones."""
    ffn = _feed_forward(True)
    x = torch.randn(3, 5, 8, requires_grad=True)
    dtypes, compiled = _saved_by_compiled_forward(ffn, x)
    eager = _output_and_grads(ffn, ffn, x)
    assert dtypes and torch.bool not in dtypes, dtypes
    assert torch.equal(compiled[0], eager[0])
    assert all(torch.equal(a, b) for a, b in zip(compiled[1], eager[1], strict=True))


def test_cross_entropy_is_one_block_while_compiling(monkeypatch):
    """Traced row blocks become one kernel selecting among per-block copies; compiled,
    the cross-entropy runs over the whole tensor and inductor loops over the rows."""
    flat = torch.zeros(64, 1 << 16)
    assert len(encdec._row_blocks(flat)) > 1
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert encdec._row_blocks(flat) == [slice(0, 64)]


@pytest.mark.parametrize("rows", [1, 3])
def test_position_bias_gather_equals_the_embedding_lookup(rows):
    """The bias gathered from the transposed table has the values, and gives the table the
    gradient, of ``F.embedding(buckets, weight).permute(0, 3, 1, 2)`` bit for bit."""
    bias = layers.RelativePositionBias(32, 4, 128, bidirectional=True)
    with torch.no_grad():
        bias.weight.normal_()
    gen = torch.Generator().manual_seed(0)
    positions = torch.randint(0, 300, (rows, 45), generator=gen)
    upstream = torch.randn(rows, 4, 45, 45, generator=gen)
    fast = bias(positions, positions)
    fast.backward(upstream)
    fast_grad, bias.weight.grad = bias.weight.grad, None
    rel = positions[:, None, :] - positions[:, :, None]
    buckets = layers.relative_position_bucket(rel, True, 32, 128)
    reference = F.embedding(buckets, bias.weight).permute(0, 3, 1, 2)
    reference.backward(upstream)
    assert fast.is_contiguous() and torch.equal(fast, reference)
    assert torch.equal(fast_grad, bias.weight.grad)


# ------------------------------------------------------------------ attention dropout
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("broadcast", [True, False])
@pytest.mark.parametrize("use_sdpa", [True, False])
def test_attention_dropout_is_the_reference_dropout_on_the_probabilities(
        broadcast, use_sdpa, device):
    """Attention with dropout on gives the output and gradients of the reference
    ``o(dropout(softmax(q k^T + bias)) v)`` with the same mask: the paper's broadcast mask
    (shared across queries) is applied to the values instead, which is the same product up
    to rounding, and an element-wise mask still drops the probabilities. On CUDA the fused
    path is the memory-efficient kernel with the bias gradient
    (``benchmarks/gpu_check.sh`` runs this test)."""
    cfg = EncDecConfig(num_layers=1, d_model=16, d_ff=32, d_kv=4, num_heads=3,
                       dropout_rate=0.3, dropout_broadcast=broadcast)
    torch.manual_seed(0)
    att = layers.Attention(cfg).train().to(device)
    att.use_sdpa = use_sdpa
    x = torch.randn(2, 7, 16, device=device, requires_grad=True)
    bias = torch.randn(1, 3, 7, 7, device=device, requires_grad=True)

    def reference(x, bias):
        q, k, v = (att._heads(lin(x)) for lin in (att.q, att.k, att.v))
        probs = att.dropout(torch.softmax(q @ k.mT + bias, dim=-1))
        return att.o((probs @ v).transpose(1, 2).reshape(2, 7, 12))

    fast = _output_and_grads(att, lambda x, bias: att(x, bias), x, bias)
    slow = _output_and_grads(att, reference, x, bias)
    without_dropout = _output_and_grads(att.eval(), lambda x, bias: att(x, bias), x, bias)
    assert not torch.allclose(fast[0], without_dropout[0])  # the mask did drop something
    tol = dict(rtol=1e-5, atol=1e-6) if device == "cpu" else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast[0], slow[0], **tol)
    for a, b in zip(fast[1], slow[1], strict=True):
        torch.testing.assert_close(a, b, **tol)


def _count_sdpa(monkeypatch) -> list:
    calls: list = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_broadcast_attention_dropout_keeps_the_fused_kernel(monkeypatch):
    """With the paper's dropout on, attention still goes through
    ``F.scaled_dot_product_attention`` wherever the fused kernel is used (the
    memory-efficient kernel in CUDA training; here the CPU without autograd, since CPU
    training takes the explicit path, next test); with element-wise dropout it cannot."""
    calls = _count_sdpa(monkeypatch)
    for broadcast, expected in ((True, 1), (False, 0)):
        cfg = EncDecConfig(num_layers=1, d_model=16, d_ff=32, d_kv=4, num_heads=2,
                           dropout_rate=0.1, dropout_broadcast=broadcast)
        calls.clear()
        with torch.no_grad():
            layers.Attention(cfg).train()(torch.randn(2, 5, 16), None)
        assert len(calls) == expected, broadcast


@pytest.mark.parametrize("cross", [False, True])
def test_cpu_training_attention_is_the_fused_kernels_math(monkeypatch, cross):
    """On the CPU with autograd recording, attention takes the explicit matmul-softmax
    path (faster there than torch's fused kernels, see ``layers._cpu_autograd``) and gives
    SDPA's output and gradients: self-attention with a bias that needs a gradient, and
    cross-attention with a mask that does not."""
    cfg = EncDecConfig(num_layers=1, d_model=16, d_ff=32, d_kv=4, num_heads=3,
                       dropout_rate=0.0)
    torch.manual_seed(0)
    att = layers.Attention(cfg).train()
    x = torch.randn(2, 7, 16, requires_grad=True)
    if cross:
        memory = torch.randn(2, 5, 16, requires_grad=True)
        visible = torch.rand(2, 7, 5) > 0.3
        visible[..., 0] = True  # every query sees a key
        bias = layers.mask_bias(visible)

        def forward(x, memory):
            return att(x, bias, memory)
        inputs = (x, memory)
    else:
        bias = torch.randn(1, 3, 7, 7, requires_grad=True)

        def forward(x, bias):
            return att(x, bias)
        inputs = (x, bias)
    calls = _count_sdpa(monkeypatch)
    explicit = _output_and_grads(att, forward, *inputs)
    assert not calls
    monkeypatch.setattr(layers, "_cpu_autograd", lambda *a: False)
    fused = _output_and_grads(att, forward, *inputs)
    assert calls
    torch.testing.assert_close(explicit[0], fused[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(explicit[1], fused[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
