"""Transformer building blocks shared by every T5 architecture variant (facts §1, §2).

Module and parameter names follow the Hugging Face T5 layout (facts §11) so that a
Hugging Face state dict maps onto these modules by name::

    block.{i}.layer.0.SelfAttention.{q,k,v,o}.weight     (+ relative_attention_bias.weight, block 0)
    block.{i}.layer.0.layer_norm.weight
    block.{i}.layer.1.EncDecAttention.{q,k,v,o}.weight   (decoder blocks with cross-attention)
    block.{i}.layer.{-1}.DenseReluDense.{wi,wo}.weight
    block.{i}.layer.{-1}.layer_norm.weight
    final_layer_norm.weight

Hyper-parameters are read from any object with the attributes of
:class:`t5k_builtin.configs.EncDecConfig` (``d_model``, ``d_ff``, ``d_kv``, ``num_heads``,
``dropout_rate``, ``dropout_broadcast``, ``layer_norm_epsilon``,
``relative_attention_num_buckets``, ``relative_attention_max_distance``), so the other
architectures' configs can reuse these modules as long as they use the same field names.

Attention biases are *additive* float tensors of shape ``[B or 1, H or 1, Lq, Lk]`` that
already contain both the relative position bias and the visibility mask (0 where visible,
:data:`MASK_VALUE` where not); a stack computes them once and every layer reuses them.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _module

#: Additive logit bias on invisible positions (Mesh TF uses -1e9; facts §1.3). Finite so
#: that a row with no visible key yields a uniform distribution instead of NaN.
MASK_VALUE = -1e9


# ------------------------------------------------------------------------------ norm
class RMSNorm(nn.Module):
    """T5's "simplified layer norm" (facts §1.2): ``x * rsqrt(mean(x^2) + eps) * scale``.

    No mean subtraction and no bias. The mean square is accumulated in float32 (as Hugging
    Face does) so bf16/fp16 activations do not lose the statistic.
    """

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            # torch's fused kernel: the same float32 arithmetic, fewer passes over x
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


# --------------------------------------------------------------------------- dropout
class Dropout(nn.Module):
    """Dropout whose Bernoulli mask is optionally shared along axis -2 (facts §1.6).

    Mesh TF broadcasts every dropout mask over the sequence-length axis: activations
    ``[B, L, d]`` get a ``[B, 1, d]`` mask, attention probabilities ``[B, H, Lq, Lk]`` a
    ``[B, H, 1, Lk]`` mask (shared across queries). In both cases that is axis -2, so
    ``broadcast=True`` reproduces the reference and ``broadcast=False`` is element-wise
    dropout as in Hugging Face. Kept values are scaled by ``1/(1-p)``.
    """

    def __init__(self, p: float, broadcast: bool = True) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = float(p)
        self.broadcast = broadcast

    @property
    def active(self) -> bool:
        return self.training and self.p > 0.0

    def forward(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        if not self.broadcast or x.dim() < 2:
            return F.dropout(x, self.p, training=True)
        shape = list(x.shape)
        shape[-2] = 1
        return x * self.keep_mask(shape, x)  # the small mask is scaled: one pass over x

    def keep_mask(self, shape: list[int] | tuple[int, ...], like: Tensor) -> Tensor:
        """The broadcast mask of ``shape`` (axis -2 of size 1) as :meth:`forward` draws it:
        Bernoulli(1 - p) keeps, already scaled by ``1/(1-p)``, on ``like``'s device and
        dtype. Exposed so :meth:`Attention.attend` can apply an attention mask to the
        values instead of the probabilities (the same draw, so the same mask)."""
        keep = torch.empty(shape, device=like.device, dtype=like.dtype)
        return keep.bernoulli_(1.0 - self.p).div_(1.0 - self.p)


# ----------------------------------------------------------------- position buckets
def relative_position_bucket(
    relative_position: Tensor,
    bidirectional: bool,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> Tensor:
    """Bucket of ``relative_position = key_pos - query_pos`` (facts §1.4).

    Bidirectional: half the buckets for keys to the right (rel > 0), half for the rest.
    Causal: keys to the right collapse to bucket 0 (they are masked anyway). Within a
    side, the first half of the buckets are exact distances and the rest grow
    logarithmically up to ``max_distance``; ``int()`` truncation of the float32 log as in
    Mesh TF / Hugging Face.
    """
    rel = relative_position.to(torch.long)
    out = torch.zeros_like(rel)
    n = -rel
    if bidirectional:
        num_buckets //= 2
        out = out + (n < 0).to(torch.long) * num_buckets
        n = n.abs()
    else:
        n = n.clamp(min=0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    # clamp avoids log(0); those entries take the exact branch anyway
    scaled = torch.log(n.clamp(min=1).to(torch.float32) / max_exact) / math.log(
        max_distance / max_exact
    )
    large = max_exact + (scaled * (num_buckets - max_exact)).to(torch.long)
    large = large.clamp(max=num_buckets - 1)
    return out + torch.where(is_small, n, large)


class RelativePositionBias(nn.Module):
    """The learned ``[num_buckets, H]`` bias table of one stack (facts §1.4).

    Owned by block 0's self-attention (the Hugging Face layout) and read once per forward
    by the stack, which hands the result to every layer ("bias_shared"). ``bidirectional``
    is the default direction; callers may override it per call, which lets one table be
    read bidirectionally by an encoder and causally by a decoder (shared enc-dec, §2).
    """

    def __init__(
        self, num_buckets: int, num_heads: int, max_distance: int, bidirectional: bool
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_buckets, num_heads))
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional

    def forward(
        self, query_positions: Tensor, key_positions: Tensor, bidirectional: bool | None = None
    ) -> Tensor:
        """Bias ``[B, H, Lq, Lk]`` from positions ``[B, Lq]`` / ``[B, Lk]`` (B may be 1)."""
        if bidirectional is None:
            bidirectional = self.bidirectional
        rel = key_positions[:, None, :].long() - query_positions[:, :, None].long()
        buckets = relative_position_bucket(rel, bidirectional, self.num_buckets, self.max_distance)
        # Gathered from the transposed table: ``[H, B, Lq, Lk]``, so for B = 1 the bias
        # comes out contiguous with no copy. The values and the table's gradient are
        # ``F.embedding(buckets, weight).permute(0, 3, 1, 2)``'s bit for bit (the backward
        # accumulates the same terms in the same order), at half the time. Contiguous
        # matters: a heads-last bias, summed with the mask, keeps that layout, so every
        # layer's attention would copy it (SDPA) or read it strided -- as compiled
        # training did before: inductor inlines the bias into each layer's softmax
        # kernel, which then gathered the embedding's ``[L, L, H]`` output at stride H.
        return self.weight.t()[:, buckets].transpose(0, 1).contiguous()


# --------------------------------------------------------------------------- linear
#: rows for which ``(W @ x^T)^T`` beat ``F.linear`` on CPU (torch 2.13 / MKL, fp32): 1.2-2.3x
#: for d 256-768 and d_ff 1024-3072 at 16-128 rows, equal at 1 row, slower from ~256
FEW_ROWS = range(2, 129)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, state-dict names and hooks) that, for the few rows
    of a decoding step on CPU, computes ``(W @ x^T)^T``: the same products in the BLAS
    layout that measured fastest there (:data:`FEW_ROWS`). Anything else -- other
    devices, more rows, autograd, autocast, tensor subclasses such as DTensor -- takes
    ``F.linear``. The result is then a transposed view, which the following reshapes,
    element-wise ops and matmuls accept as it is. Inside a decoding step the products run
    on the decode's packed weights instead (:class:`PackedWeights`; bf16 packs under CPU
    bf16 autocast). ``torch.compile`` traces :func:`packed_linear` for those rows (fp32,
    no autocast; :data:`PACKS_IN_GRAPHS`), which finds the packs when the graph runs, and
    otherwise the ``(W @ x^T)^T`` layout (inductor keeps it as ``mm(W, x^T)``: 1.2x faster
    than ``F.linear``'s in compiled decoding at t5-small).
    """

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight
        rows = x.numel() // x.shape[-1] if x.dim() >= 2 else 0
        if (  # autograd first: a compiled training step then never guards on the rows
            (torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad))
            or rows == 0
            or self.bias is not None
            or x.device.type != "cpu"
            or type(weight.data) is not Tensor
        ):
            return F.linear(x, weight, self.bias)
        autocast = torch.is_autocast_enabled("cpu")
        if x.dtype != weight.dtype and not autocast:
            return F.linear(x, weight, self.bias)
        shape, flat = (*x.shape[:-1], weight.shape[0]), x.reshape(rows, x.shape[-1])
        if torch.compiler.is_compiling():  # a compiled decoding step: the packs at run time
            if PACKS_IN_GRAPHS and not autocast and rows in PACKED_ROWS and _PACKING_HERE:
                return torch.ops.t5k.packed_linear(flat, weight).view(shape)
            packs = None
        else:  # a decoding step's packed weights
            packs = _ACTIVE_PACKS.get()
        if autocast:  # autocast's product (operands cast to its dtype) from a bf16 pack
            if packs is None or torch.get_autocast_dtype("cpu") != torch.bfloat16:
                return F.linear(x, weight, self.bias)
            out = packs.linear(flat.to(torch.bfloat16), weight)
            return F.linear(x, weight, self.bias) if out is None else out.view(shape)
        if packs is not None:
            out = packs.linear(flat, weight)
            if out is not None:
                return out.view(shape)
        if rows not in FEW_ROWS:
            return F.linear(x, weight, self.bias)
        return (weight @ flat.t()).t().view(shape)


# ----------------------------------------------------------------- packed weights
#: rows for which a decoding step's products run on packed weights: 1.1-2.3x faster (MKL
#: packs on an AVX512 Xeon) and 1.3-3.7x (oneDNN packs on an AMD EPYC) than the best of
#: :class:`Linear`'s layouts for 4-256 rows (t5-small's and t5-base's matrices and the
#: 32k-row unembedding, torch 2.13, fp32); at 1-2 rows MKL's packing is even or loses
PACKED_ROWS = range(4, 257)

#: the packed-GEMM libraries a :class:`PackedWeights` can use, in order of preference
PACK_KERNELS = ("mkl", "onednn")


#: per packed-GEMM library: whether torch was built with it, and its ops (namespace, names)
_PACK_OPS = {
    "mkl": (lambda: torch.backends.mkl.is_available(),
            ("mkl", "_mkl_reorder_linear_weight", "_mkl_linear")),
    "onednn": (lambda: torch.backends.mkldnn.is_available(),  # inductor's CPU prepacking
               ("mkldnn", "_reorder_linear_weight", "_linear_pointwise")),
}


@functools.cache
def pack_kernels_available() -> tuple[str, ...]:
    """The :data:`PACK_KERNELS` this torch build has: MKL's packed GEMM (x86 builds with
    MKL), oneDNN's prepacked linear (x86 and aarch64 builds with mkldnn); empty: decoding
    runs unpacked."""
    def has(kernel: str) -> bool:
        built, (namespace, *names) = _PACK_OPS[kernel]
        try:
            ops = getattr(torch.ops, namespace)
            return bool(built() and all(getattr(ops, name) is not None for name in names))
        except (AttributeError, RuntimeError):
            return False

    return tuple(k for k in PACK_KERNELS if has(k))


def _pack(kernel: str, weight: Tensor, rows: int) -> Tensor:
    if kernel == "mkl":
        return torch.ops.mkl._mkl_reorder_linear_weight(weight, rows)
    return torch.ops.mkldnn._reorder_linear_weight(weight, rows)


def _packed_product(kernel: str, flat: Tensor, pack: Tensor, weight: Tensor, size: int) -> Tensor:
    """``F.linear(flat, weight)`` through ``pack`` (made for ``size`` >= rows rows)."""
    if kernel == "onednn":  # the row count is only a layout hint: any rows run as they are
        return torch.ops.mkldnn._linear_pointwise(flat, pack, None, "none", [], "")
    rows = flat.shape[0]
    if rows < size:  # rows are independent: zero rows in, ignored rows out
        padded = flat.new_zeros(size, flat.shape[1])
        padded[:rows] = flat
        return torch.ops.mkl._mkl_linear(padded, pack, weight, None, size)[:rows]
    return torch.ops.mkl._mkl_linear(flat, pack, weight, None, size)


@functools.cache
def fastest_pack_kernel(out_features: int, in_features: int, rows: int, threads: int,
                        dtype: torch.dtype = torch.float32,
                        candidates: tuple[str | None, ...] = PACK_KERNELS) -> str | None:
    """Of ``candidates`` (packed kernels; None: the unpacked ``F.linear``), the one that
    runs ``[rows, in] x [out, in]^T`` in ``dtype`` fastest on this machine with
    ``threads`` threads, timed once per shape on random operands (best of two runs each,
    after one warm-up) and remembered for the process.

    Why timed, not fixed: which library wins depends on the CPU. On an AVX512 Xeon MKL's
    packs were 1.1-2.3x faster than unpacked products at 4-256 rows and gained nothing
    beyond; on an AMD EPYC (Zen 4) they gain 0-30% while oneDNN's run 1.3-3.7x faster
    (6.2 vs 14.3 ms for t5-small's unembedding at 32 rows) and 1.1-1.4x at an encoder's
    4096 rows. They compute the same sums; only the float rounding differs.
    """
    available = set(pack_kernels_available())
    kernels = [k for k in candidates if k is None or k in available]
    if len(kernels) < 2:
        return kernels[0] if kernels else None
    # operands from a generator of its own: the global one drives training's dropout,
    # and a timing that happens once per process must not move it (a resumed run would
    # draw different masks from its first evaluation on than the uninterrupted run)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weight = torch.randn(out_features, in_features, generator=gen).to(dtype)
        x = torch.randn(rows, in_features, generator=gen).to(dtype)
        best = {}
        for kernel in kernels:
            pack = weight if kernel is None else _pack(kernel, weight, rows)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                if kernel is None:
                    F.linear(x, weight)
                else:
                    _packed_product(kernel, x, pack, weight, rows)
                times.append(time.perf_counter() - start)
            best[kernel] = min(times[1:])
    return min(kernels, key=best.__getitem__)


class PackedWeights:
    """Packed copies of a model's weights for the fixed row count of a decoding run.

    Why: a decoding step multiplies a few rows (the batch's, times beams) by every decoder
    matrix and the unembedding, and BLAS spends much of that product re-laying the weight
    out. A packed GEMM (MKL's or oneDNN's: the ops behind inductor's CPU weight
    prepacking) lays it out once per row count; each step then runs 1.1-3.7x faster per
    product (:data:`PACKED_ROWS`). The packed product is the same sum over the same terms;
    only the float rounding may differ from ``F.linear``'s (as between BLAS layouts).

    ``kernel``: "auto" takes, per weight shape and row count, whichever of
    :func:`pack_kernels_available` runs fastest here (:func:`fastest_pack_kernel`), for
    fp32 products; "mkl" or "onednn" fix the library (reproducible rounding across
    machines). bf16 products -- bf16 weights, or CPU autocast's bf16 product of fp32
    weights, for which the pack is made from the weight cast to bf16 once -- always use
    oneDNN (MKL has no bf16 packs); their results equal ``F.linear``'s in bf16 bit for bit
    at the shapes measured.

    One pack per weight, compute dtype and row class (few: :data:`PACKED_ROWS`; many: an
    encoder's or a prompt's, packed where that measured faster than ``F.linear``, for
    that row count only), for the row count it was made for. Fewer rows
    (a greedy search drops the rows that ended) reuse it while they are more than half of
    it (MKL's are zero-padded up to it), so a shrinking batch repacks at most once per
    halving; anything else repacks. A pack is rebuilt when its weight changed (version
    counter or storage), so training between decodes is safe. Memory: one packed copy of
    each weight a decode used per dtype and row class (the decoder's matrices and the
    unembedding; the encoder's where packing won for its rows), kept on the model for its
    next decode and dropped by ``model.train()``. Never copied or pickled with the model.
    """

    def __init__(self, kernel: str = "auto") -> None:
        if kernel not in ("auto", *PACK_KERNELS):
            raise ValueError(f"PackedWeights: unknown kernel {kernel!r}; allowed: 'auto', "
                             + ", ".join(repr(k) for k in PACK_KERNELS))
        self.kernel = kernel
        #: (id(weight), dtype, rows beyond PACKED_ROWS) -> (weakref to it, (version,
        #: storage), rows, kernel, pack): a weight used by an encoder and by decoding steps
        #: (shared stacks) keeps a pack for each
        self._packs: dict[tuple[int, torch.dtype, bool],
                          tuple[weakref.ref, tuple[int, int], int, str, Tensor]] = {}

    def __len__(self) -> int:
        return len(self._packs)

    def __reduce__(self) -> tuple:
        return (type(self), (self.kernel,))

    def __deepcopy__(self, memo: dict) -> PackedWeights:
        return type(self)(self.kernel)

    def clear(self) -> None:
        self._packs.clear()

    def _kernel_for(self, weight: Tensor, rows: int, dtype: torch.dtype) -> str | None:
        """The kernel for a new pack, or None where the unpacked product is taken."""
        if dtype == torch.bfloat16:  # MKL has no bf16 packs
            kernels: tuple[str | None, ...] = ("onednn",)
        else:
            kernels = PACK_KERNELS if self.kernel == "auto" else (self.kernel,)
        if rows >= PACKED_ROWS.stop:  # many rows: packing must beat F.linear here
            kernels = (None, *kernels)
        elif len(kernels) == 1:
            return kernels[0] if kernels[0] in pack_kernels_available() else None
        return fastest_pack_kernel(*weight.shape, rows, torch.get_num_threads(), dtype, kernels)

    def packed(self, weight: Tensor, rows: int,
               dtype: torch.dtype | None = None) -> tuple[str, Tensor, int] | None:
        """``weight``'s pack for ``rows`` rows of a ``dtype`` product (default: the
        weight's dtype): its kernel, the pack and the row count it was made for (which
        may be larger), or None where packing does not apply.

        Few rows (:data:`PACKED_ROWS`) always pack; more (an encoder's, a prompt's) pack
        where that measured faster than ``F.linear`` for the shape, and reuse a pack
        only for the same row count."""
        if type(weight) is not nn.Parameter and type(weight) is not Tensor:  # e.g. DTensor
            return None
        dtype = weight.dtype if dtype is None else dtype
        stamp = (weight._version, weight.data_ptr())
        many = rows >= PACKED_ROWS.stop
        key = (id(weight), dtype, many)
        entry = self._packs.get(key)
        if (entry is not None and entry[0]() is weight and entry[1] == stamp
                and (rows == entry[2] if many else entry[2] // 2 < rows <= entry[2])):
            return entry[3], entry[4], entry[2]  # dtype and device checked when packed
        if (rows < PACKED_ROWS.start or weight.dim() != 2 or weight.device.type != "cpu"
                or (weight.dtype, dtype) not in _PACKED_DTYPES):
            return None
        kernel = self._kernel_for(weight, rows, dtype)
        if kernel is None:
            return None
        pack = _pack(kernel, weight.detach().to(dtype), rows)
        self._packs[key] = (weakref.ref(weight), stamp, rows, kernel, pack)
        return kernel, pack, rows

    def linear(self, flat: Tensor, weight: Tensor) -> Tensor | None:
        """``F.linear(flat, weight.to(flat.dtype))`` for ``[rows, d]`` ``flat`` through
        the pack, as a contiguous ``[rows, out]`` tensor; None where packing does not
        apply."""
        found = self.packed(weight, flat.shape[0], flat.dtype)
        if found is None:
            return None
        kernel, pack, size = found
        return _packed_product(kernel, flat, pack, weight, size)


#: (weight dtype, product dtype) pairs that pack: fp32, bf16, and fp32 weights in a bf16
#: product (CPU autocast's)
_PACKED_DTYPES = {(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                  (torch.float32, torch.bfloat16)}


#: compiled graphs call :func:`packed_linear` for :data:`PACKED_ROWS`-row products without
#: autograd or autocast (compiled decoding steps), so that they run on the decode's packs
#: too: fp32 t5-small compiled greedy 2.13 -> 1.90 s, beam-4 4.60 -> 4.17 s (AMD EPYC);
#: under bf16 autocast inductor's own bf16 GEMMs were as fast (tiny greedy 0.381 vs 0.382
#: s) or faster (beam-4 0.806 vs 0.863 s), so autocast keeps them
PACKS_IN_GRAPHS = True


#: whether this torch can pack at all (a constant for traced code: dynamo would trace
#: :func:`pack_kernels_available`'s cache wrapper and the op lookups behind it)
_PACKING_HERE = bool(pack_kernels_available())


@torch.library.custom_op("t5k::packed_linear", mutates_args=())
def packed_linear(x: Tensor, weight: Tensor) -> Tensor:
    """``F.linear(x, weight.to(x.dtype))`` for ``[rows, d]`` ``x``, through the packs of
    the decoding step running now (:func:`packed_step`) where they apply.

    Why an operator: a compiled graph cannot hold a pack (an opaque layout that changes
    with the weight), but it can call this, which looks the pack up when it runs; inductor
    treats it as an external kernel, as it does its own GEMMs. Without active packs it is
    ``F.linear``, so a graph that calls it outside a decoding step computes the same.
    """
    packs = _ACTIVE_PACKS.get()
    out = None if packs is None else packs.linear(x, weight)
    return F.linear(x, weight.to(x.dtype)) if out is None else out


@packed_linear.register_fake
def _packed_linear_shape(x: Tensor, weight: Tensor) -> Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])


#: the packs of the decoding step running now (None: no packing)
_ACTIVE_PACKS: contextvars.ContextVar[PackedWeights | None] = contextvars.ContextVar(
    "t5k_active_packs", default=None)


def decoding_packs(model: nn.Module) -> PackedWeights | None:
    """``model``'s :class:`PackedWeights` (made on first use), or None where it does not
    pack: no packed GEMM in this torch or ``model.pack_decoding_weights`` false.
    ``pack_decoding_weights`` True means the "auto" kernel choice; "mkl" or "onednn" fix
    it."""
    choice = getattr(model, "pack_decoding_weights", True)
    if choice is False or not pack_kernels_available():
        return None
    kernel = "auto" if choice is True else choice
    packs = model.__dict__.get("_t5k_packed")
    if packs is None or packs.kernel != kernel:
        packs = model.__dict__["_t5k_packed"] = PackedWeights(kernel)
    return packs


def drop_decoding_packs(model: nn.Module) -> None:
    """Free ``model``'s packed weights (training is about to change the weights)."""
    packs = model.__dict__.get("_t5k_packed")
    if packs is not None:
        packs.clear()


@contextmanager
def packed_step(packs: PackedWeights | None) -> Iterator[None]:
    """Run a decoding step's :class:`Linear` products (and :class:`StepUnembedding`'s,
    which takes the packs itself) on ``packs``; a no-op for None."""
    token = _ACTIVE_PACKS.set(packs)
    try:
        yield
    finally:
        _ACTIVE_PACKS.reset(token)


class PackedSteps:
    """Base of the incremental decoders: :meth:`step` runs the decoder's ``_step`` under
    :func:`packed_step` with ``step_packs``. :meth:`use_packs` sets ``packs`` (the model's,
    for the unembedding) and ``step_packs`` (for the stack's products; None without a
    cache, whose full re-runs stay the plain reference, and for compiled steps)."""

    packs: PackedWeights | None = None
    step_packs: PackedWeights | None = None

    def use_packs(self, model: nn.Module, use_cache: bool) -> None:
        self.packs = decoding_packs(model)
        self.step_packs = self.packs if use_cache else None

    def step(self, tokens: Tensor | None) -> Tensor:
        with packed_step(self.step_packs):
            return self._step(tokens)

    def _step(self, tokens: Tensor | None) -> Tensor:
        raise NotImplementedError


#: compiled graphs one decoding wrapper keeps (shapes: eval chunk rows x encoder width
#: buckets x max_length; e.g. 6 row counts x 7 widths for batch 32 at inputs_length 512)
DECODING_GRAPHS = 64


class _CompiledCache(dict):
    """A module's compiled wrappers. Never copied or pickled with it: a wrapper holds the
    module it compiled, so a copy of the module would otherwise decode through the
    original's weights; a copy compiles its own."""

    def __reduce__(self) -> tuple:
        return (type(self), ())

    def __deepcopy__(self, memo: dict) -> _CompiledCache:
        return type(self)()


def compiled_for_decoding(module: nn.Module, method: str | None = None) -> Callable:
    """``module`` (or its bound ``method``) under ``torch.compile`` for fixed-shape
    decoding steps (``generate(..., compile=True)``), made once per module, method and
    device type and kept on the module outside its submodules (``state_dict`` and
    ``modules()`` are unchanged).

    ``dynamic=False``: one graph per input shape, which static-shape decoding keeps to a
    few (rows x encoder-width bucket x ``max_length``). Each wrapper may hold
    :data:`DECODING_GRAPHS` of them, counted apart from other compiles of the same code
    (every ``Stack`` shares ``Stack.forward``'s), where ``torch.compile`` takes
    ``isolate_recompiles`` (2.13 does, 2.9 does not; without it dynamo's process-wide
    limit of 8 applies); past the limit further shapes run eagerly, with the same
    results. On CPU inductor's C++ wrapper launches the kernels, which removes most of
    the per-op Python cost that dominates a decoding step there.
    """
    cache = module.__dict__.setdefault("_t5k_compiled", _CompiledCache())
    key = (next(module.parameters()).device.type, method)
    if key not in cache:
        options = {"cpp_wrapper": True} if key[0] == "cpu" else None
        target = module if method is None else getattr(module, method)
        limits = {}
        if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
            limits = {"recompile_limit": DECODING_GRAPHS, "isolate_recompiles": True}
        cache[key] = torch.compile(target, dynamic=False, options=options, **limits)
    return cache[key]


# ------------------------------------------------------------------------ attention
def visibility(
    query_segments: Tensor,
    key_segments: Tensor,
    causal: bool,
    query_index: Tensor | None = None,
    key_index: Tensor | None = None,
) -> Tensor:
    """Boolean ``[B, Lq, Lk]``: which keys each query may attend to (facts §1.11).

    Attention never crosses packed segments (equal segment ids; padding, id 0, only
    sees padding, which keeps every row non-empty and never touches real tokens).
    ``causal`` additionally hides keys at a later row index; indices default to
    ``arange`` over each axis (segments are contiguous, so row order = position order).
    """
    visible = query_segments[:, :, None] == key_segments[:, None, :]
    if causal:
        if query_index is None:
            query_index = torch.arange(query_segments.shape[1], device=query_segments.device)
        if key_index is None:
            key_index = torch.arange(key_segments.shape[1], device=key_segments.device)
        visible = visible & (key_index[None, None, :] <= query_index[None, :, None])
    return visible


def mask_bias(visible: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Additive bias ``[B, 1, Lq, Lk]``: 0 where visible, :data:`MASK_VALUE` elsewhere."""
    zero = torch.zeros((), dtype=dtype, device=visible.device)
    neg = torch.full((), MASK_VALUE, dtype=dtype, device=visible.device)
    return torch.where(visible, zero, neg)[:, None, :, :]


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype matmuls on ``x`` will run in (the autocast dtype when autocast is on)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class FlexBias(NamedTuple):
    """A bias for FlexAttention (:func:`flex_bias`) in place of a dense one: the position
    bias ``[1, H, Lq, Lk]`` (or None), added to each score in a ``score_mod``, and which
    keys each query sees (segments, causality) as a ``BlockMask``. No ``[B, H, Lq, Lk]``
    tensor is made, and no per-row bias gradient: the bias gradient is the ``[1, H, Lq,
    Lk]`` one directly."""

    position: Tensor | None
    block_mask: Any


def flex_bias(position: Tensor | None, query_segments: Tensor, key_segments: Tensor,
              causal: bool) -> FlexBias:
    """:class:`FlexBias` with the visibility of :func:`visibility` (same segment;
    ``causal``: no later key), made once per stack and batch and shared by its layers."""
    from torch.nn.attention.flex_attention import create_block_mask

    def visible(b, h, q, k):
        seen = query_segments[b, q] == key_segments[b, k]
        return seen & (k <= q) if causal else seen

    rows, lq = query_segments.shape
    mask = create_block_mask(visible, rows, None, lq, key_segments.shape[1],
                             device=query_segments.device)
    return FlexBias(position, mask)


@functools.cache
def _flex_kernel(device_type: str) -> Callable:
    """FlexAttention, compiled on GPUs (its fused kernel; eager it is a slow reference);
    eager elsewhere (its CPU backward does not exist, but its forward checks the math)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False) if device_type == "cuda" else flex_attention


def flex_attend(q: Tensor, k: Tensor, v: Tensor, bias: FlexBias) -> Tensor:
    """``softmax(q k^T + position, hidden keys excluded) v`` through FlexAttention."""
    position = None if bias.position is None else bias.position.to(q.dtype)
    score_mod = None
    if position is not None:
        def score_mod(score, b, h, qi, ki):
            return score + position[0, h, qi, ki]
    if torch.compiler.is_compiling():  # inside a compiled model: traced into its graph
        from torch.nn.attention.flex_attention import flex_attention as kernel
    else:
        kernel = _flex_kernel(q.device.type)
    return kernel(q, k, v, score_mod=score_mod, block_mask=bias.block_mask, scale=1.0)


def bias_as(bias: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """``bias`` in ``dtype``, clamped so :data:`MASK_VALUE` stays finite (float16)."""
    if bias is None or isinstance(bias, FlexBias) or bias.dtype == dtype:
        return bias
    return bias.clamp(min=torch.finfo(dtype).min).to(dtype)


class Attention(nn.Module):
    """Multi-head attention without biases and without 1/sqrt(d_kv) scaling (facts §1.3).

    ``forward(x, bias, memory=None, cache=None)``: self-attention over ``x`` when
    ``memory`` is None, otherwise cross-attention from ``x`` to ``memory``. ``bias`` is the
    additive position-bias-plus-mask tensor. ``cache`` (a dict owned by the caller) holds
    keys/values for incremental decoding: self-attention appends the new keys/values of
    ``x`` (into buffers with spare rows, :func:`_append`); cross-attention computes the
    memory's keys/values once and reuses them. A *static* self-attention cache
    (:meth:`Stack.new_static_cache`: it holds ``"index"``) instead writes them into
    buffers of a fixed length at the key rows ``cache["index"]`` (a device tensor) and
    attends over the whole buffer, so every decoding step has the same shapes (for XLA);
    ``bias`` must then mask the rows not written yet. Cross-attention ``memory`` may have
    fewer rows than ``x``: each memory row then serves that many consecutive rows of
    ``x`` (the beams of one example, :func:`_merge_groups`).
    Block 0 of each stack also owns the stack's :class:`RelativePositionBias` as
    ``relative_attention_bias`` (Hugging Face naming).
    """

    def __init__(self, cfg: Any, has_relative_bias: bool = False, bidirectional: bool = True):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.d_kv = cfg.d_kv
        inner = cfg.num_heads * cfg.d_kv
        self.q = Linear(cfg.d_model, inner, bias=False)
        self.k = Linear(cfg.d_model, inner, bias=False)
        self.v = Linear(cfg.d_model, inner, bias=False)
        self.o = Linear(inner, cfg.d_model, bias=False)
        self.dropout = Dropout(cfg.dropout_rate, cfg.dropout_broadcast)
        #: use torch's fused attention (same math: float bias as attn_mask, scale 1.0)
        #: unless element-wise attention dropout is active or autograd records on the CPU
        #: (:func:`_cpu_autograd`); False forces the explicit matmul path
        self.use_sdpa = True
        if has_relative_bias:
            self.relative_attention_bias = RelativePositionBias(
                cfg.relative_attention_num_buckets,
                cfg.num_heads,
                cfg.relative_attention_max_distance,
                bidirectional,
            )

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.d_kv).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        bias: Tensor | None,
        memory: Tensor | None = None,
        cache: dict[str, Tensor] | None = None,
    ) -> Tensor:
        q = self._heads(self.q(x))
        if memory is not None and cache is not None and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            source = x if memory is None else memory
            k, v = self._heads(self.k(source)), self._heads(self.v(source))
            if cache is not None and memory is None and "index" in cache:
                k, v = _write_static(cache, k, v)
            elif cache is not None and memory is None:
                k, v = _append(cache, k, v)
            elif cache is not None:  # contiguous once, not copied by every step's matmul
                k, v = k.contiguous(), v.contiguous()
                cache["k"], cache["v"] = k, v
        return self.o(self.attend(q, k, v, bias))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        """Attention of queries ``[b, H, n, d_kv]`` over keys/values ``[b or b / group,
        H, L, d_kv]`` (fewer rows: each serves ``group`` consecutive query rows) as
        ``[b, n, H * d_kv]``, before the output projection."""
        bias = bias_as(bias, q.dtype)
        b, _, n, _ = q.shape
        group = 1
        if k.shape[0] != b:  # memory rows shared by consecutive rows of x
            q, bias, group = _merge_groups(q, bias, k.shape[0])
        if self.dropout.active and self.dropout.broadcast:
            # The paper's attention dropout shares its mask m [b, H, 1, Lk] across queries
            # (facts §1.6), so it scales whole rows of V: (P * m) V == P (m^T * V), the
            # same products up to rounding. Applied to V it costs a [b, H, Lk, d_kv]
            # pass instead of two over [b, H, Lq, Lk] (forward and backward) and no
            # dropped copy of P is kept; and the fused kernel below may then run. t5-small
            # training on CPU: 1.10x (compiled) / 1.12x (eager) per step.
            v = v * self.dropout.keep_mask((v.shape[0], v.shape[1], 1, v.shape[2]), v).mT
        elementwise_dropout = self.dropout.active and not self.dropout.broadcast
        if isinstance(bias, FlexBias):
            if elementwise_dropout:
                raise ValueError("FlexAttention takes the paper's broadcast attention dropout "
                                 "(dropout_broadcast=true) or none, not element-wise dropout")
            out = flex_attend(q, k, v, bias)
        # one query row (a decoding step): two small batched matmuls beat the fused
        # kernel's setup cost (measured 1.6-2.3x on CPU, e.g. 1.5 vs 2.4 ms for 32 rows x
        # 8 heads x 128 keys); several query rows: the fused kernel (2x less memory
        # traffic; on CUDA with a bias that needs a gradient, the memory-efficient kernel),
        # except when training on the CPU, where it is slower (:func:`_cpu_autograd`)
        elif elementwise_dropout or not self.use_sdpa or n == 1 or _cpu_autograd(q, k, v, bias):
            scores = torch.matmul(q, k.transpose(-1, -2))
            if bias is not None:
                scores = scores + bias
            probs = torch.softmax(scores.float(), dim=-1).to(v.dtype)
            if elementwise_dropout:  # as in Hugging Face
                probs = self.dropout(probs)
            out = torch.matmul(probs, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        if group > 1:  # [b / group, H, group * n, d_kv] -> [b, n, H * d_kv]
            out = out.view(b // group, self.num_heads, group, n, self.d_kv).permute(0, 2, 3, 1, 4)
        else:
            out = out.transpose(1, 2)
        return out.reshape(b, n, self.num_heads * self.d_kv)


def _cpu_autograd(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> bool:
    """Whether this attention runs on the CPU with autograd recording (training).

    There torch's fused attention only costs: with a bias that needs a gradient it falls
    back to its math path, and the flash kernel it takes for a bias without one (the
    cross-attention mask) is slower than two matmuls and a softmax. Forward + backward on
    this 2-core Xeon at t5-small training shapes (8 x 8 heads, d_kv 64), SDPA vs the
    explicit path: encoder self-attention 512 x 512 with a bias gradient 330 vs 267 ms
    compiled (346 vs 353 eager); cross-attention 114 x 512 71 vs 41 ms (72 vs 43
    eager); decoder self-attention 114 x 114 17 vs 15 ms. Without autograd (the
    encoder in decoding and evaluation) the fused kernel stays: 63 vs 155 ms for the
    512 x 512 forward.
    """
    if q.device.type != "cpu" or not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in (q, k, v, bias))


def _merge_groups(
    q: Tensor, bias: Tensor | None, memory_rows: int
) -> tuple[Tensor, Tensor | None, int]:
    """Queries ``[b, H, n, d_kv]`` whose memory has ``memory_rows`` rows, each shared by
    ``group = b / memory_rows`` consecutive query rows (the beams of one example), as
    ``[memory_rows, H, group * n, d_kv]`` (and the group): each memory row's keys/values
    are then computed once and read once per step for the whole group (beam-4
    cross-attention: 6.4 -> 2.4 ms per t5-small layer and step). ``bias`` is per memory
    row: ``[memory_rows or 1, 1, n or 1, L]``."""
    b, h, n, d = q.shape
    if b % memory_rows or (bias is not None and bias.shape[0] not in (1, memory_rows)):
        raise ValueError(
            f"{b} query rows cannot share a memory of {memory_rows} rows"
            + ("" if bias is None else f" with a bias for {bias.shape[0]} rows")
            + ": the query rows must be a multiple of the memory rows, the bias per memory row"
        )
    group = b // memory_rows
    q = q.view(memory_rows, group, h, n, d).transpose(1, 2).reshape(memory_rows, h, group * n, d)
    if bias is not None and bias.shape[2] > 1:
        bias = bias.repeat(1, 1, group, 1)
    return q, bias, group


#: spare key rows a self-attention cache gets at its first write (then it doubles)
CACHE_HEADROOM = 64


def _append(cache: dict[str, Any], k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Append ``k``/``v`` ``[rows, H, n, d_kv]`` to a dynamic self-attention cache and
    return views of all keys/values so far.

    The cache holds preallocated buffers (``"k"``/``"v"``, with spare key rows) and the
    filled count ``"n"``: a decoding step writes one row in place instead of copying the
    whole history (``torch.cat``), and the buffers double when full. Reordering rows
    (:meth:`Stack.gather_cache`) copies the filled rows into buffers of the same size.
    """
    used, n = int(cache.get("n", 0)), k.shape[2]
    if "k" not in cache or used + n > cache["k"].shape[2]:
        capacity = max(2 * (used + n), used + n + CACHE_HEADROOM)
        shape = (k.shape[0], k.shape[1], capacity, k.shape[3])
        buf_k, buf_v = k.new_empty(shape), v.new_empty(shape)
        if used:
            buf_k[:, :, :used] = cache["k"][:, :, :used]
            buf_v[:, :, :used] = cache["v"][:, :, :used]
        cache["k"], cache["v"] = buf_k, buf_v
    cache["k"][:, :, used:used + n] = k
    cache["v"][:, :, used:used + n] = v
    cache["n"] = used + n
    return cache["k"][:, :, :used + n], cache["v"][:, :, :used + n]


def _gather_rows(buffer: Tensor, rows: Tensor, filled: int | None) -> Tensor:
    """``buffer.index_select(0, rows)`` where only key rows ``[:filled]`` (dim 2) count:
    those are gathered straight into a buffer of the same shape, the rest left unset.
    Under autograd (a decoder stepped with gradients on) the whole buffer is gathered:
    ``out=`` records no gradient."""
    tracked = buffer.requires_grad and torch.is_grad_enabled()
    if filled is None or filled == buffer.shape[2] or tracked:
        return buffer.index_select(0, rows)
    out = buffer.new_empty((rows.numel(), *buffer.shape[1:]))
    torch.index_select(buffer.detach()[:, :, :filled], 0, rows, out=out[:, :, :filled])
    return out


def _write_static(cache: dict[str, Any], k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Copy ``k``/``v`` ``[rows, H, n, d_kv]`` into the cache's ``[rows, H, length, d_kv]``
    buffers at key rows ``cache["index"]`` (``n`` of them, on the device); returns the
    buffers. They are made (zeros, in ``k``'s dtype) at the first write."""
    if "k" not in cache:
        shape = (k.shape[0], k.shape[1], int(cache["length"]), k.shape[3])
        cache["k"], cache["v"] = k.new_zeros(shape), v.new_zeros(shape)
    cache["k"].index_copy_(2, cache["index"], k)
    cache["v"].index_copy_(2, cache["index"], v)
    return cache["k"], cache["v"]


class StepUnembedding:
    """The tied softmax matrix ``E`` ``[vocab, d]`` applied to a decoding step's few rows.

    Same products as ``F.linear(h, E)``, in the layout that measured fastest for the row
    count on CPU (BLAS picks poor kernels for a handful of rows times a 32k-row matrix):
    one row: ``h @ E^T`` over a contiguous ``E^T`` copy (made on first use; 2x faster);
    2-64 rows: ``(E @ h^T)^T``, a transposed view (1.4-2.6x), computed in blocks of
    :data:`UNEMBED_BLOCK_ROWS` vocabulary rows (4 MiB of ``E`` at d 512: 17-19 -> 12-15
    ms per t5-small step, 4-6% of greedy decoding; bit-for-bit the unblocked product at
    these shapes); more rows, autograd and non-CPU devices: ``F.linear`` or the unblocked
    product. Measured for d 256/512 and 32k rows, torch 2.13 / MKL. With ``packs`` (the
    model's :class:`PackedWeights`), :data:`PACKED_ROWS` rows go through a packed ``E``
    instead (row-major logits; 1.3x faster again at 32 rows).
    """

    def __init__(self, weight: Tensor, packs: PackedWeights | None = None) -> None:
        self.weight = weight.detach()
        self._parameter = weight  # the packs' key
        self._packs = packs
        self._transposed: Tensor | None = None

    def __call__(self, hidden: Tensor) -> Tensor:
        rows = hidden.shape[0] if hidden.dim() == 2 else 0
        if (self._packs is not None and rows and hidden.device.type == "cpu"
                and not (hidden.requires_grad and torch.is_grad_enabled())):
            dtype = hidden.dtype  # autocast's product: bf16 operands (a bf16 pack)
            if torch.is_autocast_enabled("cpu"):
                dtype = torch.get_autocast_dtype("cpu")
            if dtype == self._parameter.dtype or dtype == torch.bfloat16:
                out = self._packs.linear(hidden.to(dtype), self._parameter)
                if out is not None:
                    return out
        weight = self.weight.to(hidden.dtype)
        if hidden.device.type != "cpu" or not 1 <= rows <= 64:
            return F.linear(hidden, weight)
        if rows == 1:
            if self._transposed is None or self._transposed.dtype != hidden.dtype:
                self._transposed = weight.t().contiguous()
            return hidden @ self._transposed
        if hidden.requires_grad and torch.is_grad_enabled():  # ``out=`` has no autograd
            return (weight @ hidden.t()).t()
        out = torch.empty(weight.shape[0], rows, dtype=hidden.dtype)
        columns = hidden.t()
        for start in range(0, weight.shape[0], UNEMBED_BLOCK_ROWS):
            block = slice(start, start + UNEMBED_BLOCK_ROWS)
            torch.mm(weight[block], columns, out=out[block])
        return out.t()


#: vocabulary rows per block of :class:`StepUnembedding`'s few-row product
UNEMBED_BLOCK_ROWS = 2048


# ----------------------------------------------------------------------- sublayers
class DenseReluDense(nn.Module):
    """``W_o · Dropout(ReLU(W_i x))`` without biases (facts §1.5)."""

    def __init__(self, cfg: Any, d_ff: int | None = None) -> None:
        super().__init__()
        d_ff = cfg.d_ff if d_ff is None else d_ff
        self.wi = Linear(cfg.d_model, d_ff, bias=False)
        self.wo = Linear(d_ff, cfg.d_model, bias=False)
        self.dropout = Dropout(cfg.dropout_rate, cfg.dropout_broadcast)

    def forward(self, x: Tensor) -> Tensor:
        # The dropout runs before the ReLU: ``relu(h * keep) == relu(h) * keep`` for the
        # non-negative scaled mask ``keep`` (the same mask, drawn from the same shape), so
        # values and gradients are the reference's (a dropped unit of positive ``h`` gets
        # ``+0`` where the reference order gives ``g * 0``, possibly ``-0``). What it buys:
        # the ReLU's output is the tensor ``wo`` saves for its backward anyway, and the
        # ReLU's backward needs only that output, so a layer keeps one ``[.., d_ff]``
        # activation instead of two.
        h = self.dropout(self.wi(x))
        return self.wo(ReLUFromOutput.apply(h) if h.requires_grad else h.relu_())


class ReLUFromOutput(torch.autograd.Function):
    """In-place ReLU whose backward reads only its output, as autograd's ``relu_`` does.

    Eager, the backward is autograd's own (``threshold_backward``). While compiling, it
    multiplies by ``sign(out)`` (0 or 1) instead. With autograd's mask, AOTAutograd's
    partitioner moves the comparison ``out <= 0`` into the forward graph and saves a
    boolean tensor, and inductor's CPU code (torch 2.13) writes booleans ~10x slower than
    eager does: one ``[B, L, d_ff]`` mask cost a compiled tiny training step ~10% of its
    time. A float ``sign(out)`` is never cheaper to save than ``out``, which ``wo`` saves
    anyway, so it is recomputed in the backward kernel. The two backwards are equal for
    finite gradients, except that an inactive unit may get ``-0`` instead of ``+0``; a
    non-finite gradient there gives NaN instead of ``0``.
    """

    @staticmethod
    def forward(ctx: Any, h: Tensor) -> Tensor:
        h.relu_()
        ctx.mark_dirty(h)
        ctx.save_for_backward(h)
        return h

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        if torch.compiler.is_compiling():
            return grad * torch.sign(out)
        return torch.ops.aten.threshold_backward(grad, out, 0)


def residual(x: Tensor, out: Tensor, *producers: nn.Module) -> Tensor:
    """``x + out`` for a sublayer's output ``out``, added into ``out`` itself when nothing
    else can hold it: the same bits (addition commutes) without a fresh activation-sized
    tensor per sublayer, whose page faults and cache misses cost CPU training steps 2-7%
    (alternated A/Bs at ``benchmarks/vs_hf.py``'s tiny and small shapes).

    ``out`` must come fresh from the sublayer's last op: a linear's product or a dropout
    of it. Neither is saved for backward (``mm`` and ``mul`` keep their inputs), so
    autograd allows the write. The out-of-place sum is kept when a forward hook on one of
    the ``producers`` (the modules whose output ``out`` is) or a global one may have kept
    a reference, when ``out`` is a view (the few-row layout of :class:`Linear`, whose
    residual stream stays contiguous that way) or ``x`` itself, when the add would broadcast
    or promote (autocast: a bf16 ``out`` on a float32 stream), and for tensor subclasses.
    """
    if (
        type(out) is not Tensor
        or type(x) is not Tensor
        or out is x
        or out._base is not None
        or not out.is_contiguous()
        or out.dtype != x.dtype
        or out.shape != x.shape
        or getattr(_module, "_global_forward_hooks", True)  # absent: assume hooks
        or any(m._forward_hooks for m in producers)
    ):
        return x + out
    return out.add_(x)


class SelfAttentionLayer(nn.Module):
    """``x + Dropout(SelfAttention(RMSNorm(x)))`` (pre-norm sublayer, facts §1.1)."""

    def __init__(self, cfg: Any, has_relative_bias: bool, bidirectional: bool) -> None:
        super().__init__()
        self.SelfAttention = Attention(cfg, has_relative_bias, bidirectional)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dropout = Dropout(cfg.dropout_rate, cfg.dropout_broadcast)

    def forward(self, x: Tensor, bias: Tensor | None, cache: dict | None = None) -> Tensor:
        out = self.dropout(self.SelfAttention(self.layer_norm(x), bias, cache=cache))
        return residual(x, out, self.SelfAttention, self.SelfAttention.o, self.dropout)


class CrossAttentionLayer(nn.Module):
    """``x + Dropout(EncDecAttention(RMSNorm(x), memory))``; no position bias (§1.3)."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.EncDecAttention = Attention(cfg)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dropout = Dropout(cfg.dropout_rate, cfg.dropout_broadcast)

    def forward(
        self, x: Tensor, memory: Tensor, bias: Tensor | None, cache: dict | None = None
    ) -> Tensor:
        normed = self.layer_norm(x)
        out = self.dropout(self.EncDecAttention(normed, bias, memory=memory, cache=cache))
        return residual(x, out, self.EncDecAttention, self.EncDecAttention.o, self.dropout)


class FeedForwardLayer(nn.Module):
    """``x + Dropout(DenseReluDense(RMSNorm(x)))``."""

    def __init__(self, cfg: Any, d_ff: int | None = None) -> None:
        super().__init__()
        self.DenseReluDense = DenseReluDense(cfg, d_ff)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dropout = Dropout(cfg.dropout_rate, cfg.dropout_broadcast)

    def forward(self, x: Tensor) -> Tensor:
        out = self.dropout(self.DenseReluDense(self.layer_norm(x)))
        return residual(x, out, self.DenseReluDense, self.DenseReluDense.wo, self.dropout)


class Block(nn.Module):
    """One Transformer block: ``layer = [self-attn, (cross-attn), FFN]``.

    A block built with cross-attention skips it when called without ``memory``, so one
    block can serve as an encoder block and a decoder block (shared enc-dec, facts §2).
    """

    def __init__(
        self, cfg: Any, has_relative_bias: bool, bidirectional: bool, cross_attention: bool
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [SelfAttentionLayer(cfg, has_relative_bias, bidirectional)]
        if cross_attention:
            layers.append(CrossAttentionLayer(cfg))
        layers.append(FeedForwardLayer(cfg))
        self.layer = nn.ModuleList(layers)
        self.has_cross_attention = cross_attention
        #: index of the feed-forward sublayer; adapters (if any) follow it
        self.ffn_index = len(layers) - 1

    def forward(
        self,
        x: Tensor,
        self_bias: Tensor | None,
        memory: Tensor | None = None,
        cross_bias: Tensor | None = None,
        cache: dict | None = None,
    ) -> Tensor:
        x = self.layer[0](x, self_bias, cache=None if cache is None else cache["self"])
        if memory is not None:
            if not self.has_cross_attention:
                raise ValueError("this block has no cross-attention but got encoder memory")
            x = self.layer[1](x, memory, cross_bias, None if cache is None else cache["cross"])
        for sublayer in self.layer[self.ffn_index:]:  # the FFN, then any adapter
            x = sublayer(x)
        return x

    def add_adapter(self, cfg: Any, inner_dim: int) -> FeedForwardLayer:
        """Append an adapter sublayer after the FFN (facts §7.1: gin ``task_adapter``):
        ``x + Dropout(W_o Dropout(ReLU(W_i RMSNorm_a(x))))`` with inner dim ``inner_dim``."""
        adapter = FeedForwardLayer(cfg, d_ff=inner_dim)
        adapter.is_adapter = True
        self.layer.append(adapter)
        return adapter


class Stack(nn.Module):
    """A stack of blocks plus its final RMSNorm (facts §1.1).

    ``forward(embedded, self_bias, memory, cross_bias, cache)`` applies
    ``Dropout(embedded)``, the blocks, then ``Dropout(RMSNorm_final(x))``. The caller owns
    the (shared) embedding and builds the biases, usually via :meth:`position_bias` and
    :func:`visibility` / :func:`mask_bias`. ``bidirectional`` is the bucket direction of
    this stack's relative-position table (encoder / prefix LM: True; decoder / LM: False).
    """

    def __init__(
        self, cfg: Any, num_layers: int, bidirectional: bool, cross_attention: bool
    ) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            Block(cfg, i == 0, bidirectional, cross_attention) for i in range(num_layers)
        )
        self.final_layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dropout = Dropout(cfg.dropout_rate, cfg.dropout_broadcast)
        self.bidirectional = bidirectional

    @property
    def relative_attention_bias(self) -> RelativePositionBias:
        return self.block[0].layer[0].SelfAttention.relative_attention_bias

    def position_bias(
        self, query_positions: Tensor, key_positions: Tensor, bidirectional: bool | None = None
    ) -> Tensor:
        """Relative position bias ``[B, H, Lq, Lk]`` from this stack's table."""
        if bidirectional is None:
            bidirectional = self.bidirectional
        return self.relative_attention_bias(query_positions, key_positions, bidirectional)

    def new_cache(self) -> list[dict[str, dict]]:
        """Empty per-block key/value cache for incremental decoding."""
        return [{"self": {}, "cross": {}} for _ in self.block]

    def new_static_cache(self, index: Tensor, length: int) -> list[dict[str, dict]]:
        """Per-block cache whose self-attention keys/values go into ``length``-row buffers
        at the key rows ``index`` (a device tensor the caller advances in place between
        steps); see :class:`Attention`. ``gather_cache`` reorders it like the dynamic one."""
        return [{"self": {"index": index, "length": length}, "cross": {}} for _ in self.block]

    @staticmethod
    def make_static(cache: list[dict], index: Tensor, extra: int) -> None:
        """Turn a dynamic cache (e.g. after a prompt's prefill) into a static one in place:
        each block's filled self-attention rows followed by ``extra`` zero rows, written
        from now on at the key rows ``index`` (see :meth:`new_static_cache`)."""
        for layer in cache:
            kv = layer["self"]
            filled = kv.pop("n")  # the dynamic buffers' spare rows are dropped
            for name in ("k", "v"):
                x = kv[name][:, :, :filled]
                kv[name] = torch.cat([x, x.new_zeros(*x.shape[:2], extra, x.shape[3])], dim=2)
            kv["index"], kv["length"] = index, filled + extra

    @staticmethod
    def gather_cache(cache: list[dict], rows: Tensor, part: str = "self") -> None:
        """Replace each block's ``part`` keys/values by their rows ``rows`` (beams
        reordered, finished rows dropped).

        A dynamic self-attention cache (:func:`_append`) copies only its filled key rows,
        into new buffers of the same capacity: its spare rows hold nothing yet. Why: beam
        search reorders every step, and the spare rows are most of the buffer early in a
        decode (64 spare rows at step 1); copying them made the reorder ~30% of a t5-small
        beam-4 decode. Static and cross-attention caches are copied whole.
        """
        for layer in cache:
            kv = layer[part]
            if "k" not in kv:
                continue
            filled = kv.get("n")  # only a dynamic self-attention cache counts its rows
            kv["k"], kv["v"] = (_gather_rows(kv[name], rows, filled) for name in ("k", "v"))

    @staticmethod
    def map_cache(cache: list[dict], fn: Callable[[Tensor], Tensor], part: str = "self") -> None:
        """Replace each block's ``part`` ("self" or "cross") keys and values by ``fn`` of
        them (whole buffers), e.g. each row repeated for its beams; empty entries are
        skipped."""
        for layer in cache:
            kv = layer[part]
            if "k" in kv:
                kv["k"], kv["v"] = fn(kv["k"]), fn(kv["v"])

    def forward(
        self,
        embedded: Tensor,
        self_bias: Tensor | None,
        memory: Tensor | None = None,
        cross_bias: Tensor | None = None,
        cache: list[dict] | None = None,
    ) -> Tensor:
        dtype = compute_dtype(embedded)
        self_bias, cross_bias = bias_as(self_bias, dtype), bias_as(cross_bias, dtype)
        packs = None if torch.compiler.is_compiling() else _ACTIVE_PACKS.get()
        if packs is not None and cache is not None and _lean_step_applies(
                self, embedded, memory, cache):
            return _lean_step(self, embedded, self_bias, cross_bias, cache, packs)
        x = self.dropout(embedded)
        for i, block in enumerate(self.block):
            x = block(x, self_bias, memory, cross_bias, None if cache is None else cache[i])
        return self.dropout(self.final_layer_norm(x))


# ----------------------------------------------------------------------- lean step
def _lean_step_applies(stack: Stack, embedded: Tensor, memory: Tensor | None,
                       cache: list[dict]) -> bool:
    """Whether :func:`_lean_step` computes exactly what ``stack``'s modules would: one
    float32 position per row, no autograd or autocast, every module one of ours in eval
    mode (so no dropout and no adapter) with no hooks, dynamic self-attention caches and,
    with ``memory``, cross-attention keys/values already cached (per row, or per example
    for its beams)."""
    if (embedded.dim() != 3 or embedded.shape[1] != 1 or embedded.dtype != torch.float32
            or torch.is_grad_enabled() or torch.is_autocast_enabled(embedded.device.type)
            or _module._global_forward_pre_hooks or _module._global_forward_hooks):
        return False
    for m in stack.modules():
        if (type(m) not in _LEAN_TYPES or m.training or m._forward_hooks
                or m._forward_pre_hooks):
            return False
    if len(cache) != len(stack.block):
        return False
    for block, layer in zip(stack.block, cache, strict=True):
        if len(block.layer) != 2 + (memory is not None) or "index" in layer["self"]:
            return False
        if memory is not None and "k" not in layer["cross"]:
            return False
    return True


def _lean_step(stack: Stack, embedded: Tensor, self_bias: Tensor | None,
               cross_bias: Tensor | None, cache: list[dict], packs: PackedWeights) -> Tensor:
    """``stack(embedded, ...)`` for one decoding position, as the modules compute it (the
    same ops on the same values, so the same bits) but without their per-call cost:
    module dispatch, the layout checks of :class:`Linear` and :func:`residual`, 3-d
    reshapes. That cost is ~15% of a t5-small greedy step on CPU (4-6 ms of 25-60).
    Only under :func:`_lean_step_applies`; the products go through ``packs``."""
    rows = embedded.shape[0]
    x = embedded.view(rows, -1)

    def linear(h: Tensor, module: Linear) -> Tensor:
        out = packs.linear(h, module.weight)
        return module(h) if out is None else out  # unpacked rows: the module's layout

    def norm(h: Tensor, module: RMSNorm) -> Tensor:
        if module.weight.dtype != torch.float32:  # RMSNorm's other branch
            return module(h)
        return F.rms_norm(h, module.weight.shape, module.weight, module.eps)

    def attend(att: Attention, h: Tensor, bias: Tensor | None, kv: dict) -> Tensor:
        heads, d_kv = att.num_heads, att.d_kv
        q = linear(h, att.q).view(rows, heads, 1, d_kv)
        if "k" in kv and "n" not in kv:  # cross-attention: the memory's cached keys/values
            k, v = kv["k"], kv["v"]
        else:
            k, v = _append(kv, linear(h, att.k).view(rows, heads, 1, d_kv),
                           linear(h, att.v).view(rows, heads, 1, d_kv))
        return linear(att.attend(q, k, v, bias).view(rows, -1), att.o)

    for block, layer in zip(stack.block, cache, strict=True):
        sub = block.layer
        x = x + attend(sub[0].SelfAttention, norm(x, sub[0].layer_norm), self_bias,
                       layer["self"])
        if len(sub) == 3:
            x = x + attend(sub[1].EncDecAttention, norm(x, sub[1].layer_norm), cross_bias,
                           layer["cross"])
        ffn = sub[-1].DenseReluDense
        x = x + linear(linear(norm(x, sub[-1].layer_norm), ffn.wi).relu_(), ffn.wo)
    return norm(x, stack.final_layer_norm).view(rows, 1, -1)


#: the module types a lean decoding step knows the exact forward of (subclasses may
#: change it, so they take the modules)
_LEAN_TYPES = frozenset({Stack, nn.ModuleList, Block, SelfAttentionLayer, CrossAttentionLayer,
                         FeedForwardLayer, Attention, DenseReluDense, Linear, RMSNorm, Dropout,
                         RelativePositionBias})


# --------------------------------------------------------------------------- init
def init_weights(model: nn.Module, scheme: str, generator: torch.Generator | None = None) -> None:
    """Initialise every T5 module of ``model`` in place (facts §1.8).

    ``"mtf"`` (the paper's Mesh TF): embeddings N(0, 1); q N(0, (d·d_kv)^-0.5) (the
    folded 1/sqrt(d_kv)), k/v N(0, d^-0.5), o N(0, (H·d_kv)^-0.5); FFN wi/wo truncated
    normal (±2σ, as ``tf.truncated_normal_initializer``) with σ = fan_in^-0.5; relative
    bias glorot-uniform over its [H, buckets] shape; norm scales 1.
    ``"hf"`` (Hugging Face ``_init_weights``): the same except plain normal FFN weights and
    relative bias N(0, d^-0.5). Embeddings are any ``nn.Embedding`` in ``model``.
    """
    if scheme not in ("mtf", "hf"):
        raise ValueError(f"unknown init scheme {scheme!r}; allowed: 'mtf', 'hf'")

    def normal(t: Tensor, std: float) -> None:
        t.normal_(0.0, std, generator=generator)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                normal(module.weight, 1.0)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
            elif isinstance(module, Attention):
                d_model = module.q.in_features
                inner = module.q.out_features
                normal(module.q.weight, (d_model * module.d_kv) ** -0.5)
                normal(module.k.weight, d_model**-0.5)
                normal(module.v.weight, d_model**-0.5)
                normal(module.o.weight, inner**-0.5)
                rel = getattr(module, "relative_attention_bias", None)
                if rel is not None:
                    if scheme == "mtf":
                        buckets, heads = rel.weight.shape
                        limit = math.sqrt(6.0 / (buckets + heads))
                        rel.weight.uniform_(-limit, limit, generator=generator)
                    else:
                        normal(rel.weight, d_model**-0.5)
            elif isinstance(module, DenseReluDense):
                for lin in (module.wi, module.wo):
                    std = lin.in_features**-0.5
                    if scheme == "mtf":
                        nn.init.trunc_normal_(
                            lin.weight, 0.0, std, -2 * std, 2 * std, generator=generator
                        )
                    else:
                        normal(lin.weight, std)
