"""The T5 v1.0 encoder-decoder, the paper's baseline architecture (facts §1, §2 row 1).

``EncDecArchitecture`` is the plugin target (``encdec``); ``EncDecModel`` is the
``torch.nn.Module`` it builds. Parameter names are those of Hugging Face's
``T5ForConditionalGeneration`` minus the tied aliases (``encoder.embed_tokens``,
``decoder.embed_tokens``, ``lm_head``); :func:`load_hf_state_dict` drops those aliases so a
Hugging Face T5 v1.0 state dict loads as is (facts §11).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model import layers
from t5k_builtin.model.features import encdec_features, pack_examples
from t5k_builtin.model.layers import Stack, flex_bias, init_weights, mask_bias, visibility
from t5kernel import decoding
from t5kernel.api import BlockInfo, BuildContext, ModelOutput
from t5kernel.errors import ConfigError, DataError

PAD_ID = 0
EOS_ID = 1

#: Hugging Face keys that alias ``shared.weight`` (tied embeddings) or hold an unused
#: cross-attention bias; they have no parameter of their own here.
_HF_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
_HF_UNUSED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)


def padded_vocab_size(vocab_size: int, divisor: int) -> int:
    """Embedding rows: ``vocab_size`` rounded up to a multiple of ``divisor`` (facts §1.7)."""
    return -(-vocab_size // divisor) * divisor


def validate_config(cfg: Any) -> None:
    """ConfigError naming the first field outside its allowed range."""
    for name in ("num_layers", "d_model", "d_ff", "d_kv", "num_heads", "vocab_divisor"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.num_decoder_layers is not None and cfg.num_decoder_layers < 1:
        raise ConfigError(f"num_decoder_layers must be >= 1 or null, got {cfg.num_decoder_layers}")
    if cfg.relative_attention_num_buckets < 4:
        raise ConfigError(
            f"relative_attention_num_buckets must be >= 4, got {cfg.relative_attention_num_buckets}"
        )
    if cfg.relative_attention_max_distance <= cfg.relative_attention_num_buckets // 2:
        # equal would divide by log(max_distance / max_exact) = 0 in the causal buckets
        raise ConfigError("relative_attention_max_distance must be > num_buckets / 2")
    if not 0.0 <= cfg.dropout_rate < 1.0:
        raise ConfigError(f"dropout_rate must be in [0, 1), got {cfg.dropout_rate}")
    if cfg.layer_norm_epsilon <= 0:
        raise ConfigError(f"layer_norm_epsilon must be > 0, got {cfg.layer_norm_epsilon}")
    if cfg.init not in ("mtf", "hf"):
        raise ConfigError(f"init must be 'mtf' or 'hf', got {cfg.init!r}")


def _row_index(tokens: Tensor) -> Tensor:
    """Row indices ``[1, L]`` used in place of the per-segment positions for the bias.

    Packed positions restart at 0 in every segment and count up by one (features.py),
    so for every pair that may attend to each other (same segment) key_pos - query_pos
    equals the difference of row indices; pairs across segments are masked to -1e9
    either way. The relative bias is therefore computed once, ``[1, H, L, L]``, and
    broadcast over the batch: the same numbers for every visible pair, with a B-times
    smaller table lookup (whose backward dominated small-model training steps).
    """
    return torch.arange(tokens.shape[1], device=tokens.device)[None, :]


def token_loss(
    logits: Tensor, targets: Tensor, weights: Tensor | None, keep_logits: bool
) -> ModelOutput:
    """Summed weighted cross-entropy and z-loss terms (facts §1.7).

    ``weights`` default to 1 where the target id is > 0 (pad ignored); normalisation and
    the z-loss factor are the run loop's business. Shared by every architecture.
    """
    weights = (targets > PAD_ID) if weights is None else weights
    weights = weights.to(torch.float32)
    loss_sum, z_loss_sum = SoftmaxCrossEntropy.apply(logits, targets, weights)
    return ModelOutput(
        loss_sum=loss_sum,
        z_loss_sum=z_loss_sum,
        num_tokens=weights.sum(),
        logits=logits if keep_logits else None,
    )


class SoftmaxCrossEntropy(torch.autograd.Function):
    """``(sum w * (lse - logit[target]), sum w * lse^2)`` with one fused backward.

    Same values and gradients as composing ``logsumexp`` and ``gather`` (the z-loss term
    of facts §1.7 shares the log-partition ``lse``), but the backward writes the logits'
    gradient once: ``softmax * w * (g_ce + 2 g_z lse)``, then ``-w g_ce`` at the
    targets, instead of separate logsumexp, gather (a zero-filled vocab-sized tensor) and
    sum backwards. The vocab-sized softmax is recomputed from the saved logits rather than
    stored, so memory is that of the logits alone.

    Both directions run over blocks of :data:`CE_BLOCK_ELEMENTS` logits (32 rows at T5's
    32k vocabulary): ``torch.logsumexp`` of the whole tensor makes two vocab-sized
    temporaries, and ``exp(logits - lse)`` one more, each a fresh allocation whose pages
    fault in on first write and that never stays in cache. Per block the temporaries are
    small and reused, and the backward's subtract, exp and scale touch each block once
    while it is in cache (tiny benchmark shape: forward 60 -> 23 ms, backward 92 -> 60
    ms). The values are bit-for-bit those of the whole-tensor ops: a row's reduction does
    not depend on how many rows share the call (given at least two, see
    :func:`_row_blocks`), and the rest is element-wise (``test_fast_paths`` checks this
    against ``torch.logsumexp``).
    """

    @staticmethod
    def forward(
        ctx: Any, logits: Tensor, targets: Tensor, weights: Tensor
    ) -> tuple[Tensor, Tensor]:
        lse = blockwise_logsumexp(logits)
        target_logit = logits.gather(-1, targets[..., None]).squeeze(-1)
        ctx.save_for_backward(logits, targets, weights, lse)
        return ((lse - target_logit) * weights).sum(), (lse.square() * weights).sum()

    @staticmethod
    def backward(ctx: Any, g_ce: Tensor, g_z: Tensor) -> tuple[Tensor, None, None]:
        logits, targets, weights, lse = ctx.saved_tensors
        ce = weights * g_ce
        scale = ce + 2.0 * g_z * lse * weights
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        flat_logits, flat_grad = _rows(logits), grad.view(-1, logits.shape[-1])
        flat_lse, flat_scale = lse.reshape(-1, 1), scale.reshape(-1, 1)
        for block in _row_blocks(flat_logits):
            out = flat_grad[block]
            torch.sub(flat_logits[block], flat_lse[block], out=out)
            out.exp_().mul_(flat_scale[block])
        grad.scatter_add_(-1, targets[..., None], -ce[..., None])
        return grad, None, None


#: logits per block of :class:`SoftmaxCrossEntropy` (4 MiB of float32)
CE_BLOCK_ELEMENTS = 1 << 20


def _row_blocks(flat: Tensor) -> list[slice]:
    """Row slices of ``flat`` (``[rows, vocab]``): about :data:`CE_BLOCK_ELEMENTS`
    elements each on the CPU; one block elsewhere (an accelerator's caching allocator has
    no page faults to avoid, and every block would cost kernel launches or graph nodes)
    and while compiling (inductor loops over the rows itself; traced blocks become one
    kernel that selects among a copy per block, ~4x slower than the whole-tensor one).

    A block never holds a single row of a multi-row tensor: torch splits a one-output
    reduction of 32k+ elements across threads (another summation order), while rows of a
    multi-row reduction are each summed whole by one thread, as in the whole tensor.
    """
    total = flat.shape[0]
    if flat.device.type != "cpu" or total <= 2 or torch.compiler.is_compiling():
        return [slice(0, total)]
    rows = max(2, CE_BLOCK_ELEMENTS // max(1, flat.shape[-1]))
    starts = list(range(0, total, rows))
    if total - starts[-1] == 1:  # fold a one-row tail into the block before it
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [total], strict=True)]


def _rows(logits: Tensor) -> Tensor:
    """``logits`` as ``[rows, vocab]`` (a view when contiguous)."""
    return logits.reshape(-1, logits.shape[-1])


def blockwise_logsumexp(logits: Tensor) -> Tensor:
    """``torch.logsumexp(logits, -1)``, bit-for-bit, computed a block of rows at a time so
    its vocab-sized temporaries stay small (see :class:`SoftmaxCrossEntropy`)."""
    flat = _rows(logits)
    out = torch.empty(flat.shape[0], dtype=logits.dtype, device=logits.device)
    for block in _row_blocks(flat):
        torch.logsumexp(flat[block], -1, out=out[block])
    return out.view(logits.shape[:-1])


class EncDecModel(nn.Module):
    """Encoder + decoder sharing one embedding that is also the (tied) softmax matrix.

    ``forward(batch)`` takes the features of :func:`encdec_features` as tensors (segment
    ids and positions may be omitted for unpacked batches) and returns a
    :class:`ModelOutput` with summed cross-entropy and z-loss terms; normalisation and the
    z-loss weight are the run loop's business. Logits are float32 over the padded vocab,
    with columns ``>= vocab_size`` set to -inf so padding rows can never be predicted
    (a deviation from Mesh TF, which leaves them in the softmax; irrelevant once trained).
    """

    def __init__(self, config: EncDecConfig, vocab_size: int) -> None:
        super().__init__()
        validate_config(config)
        self.config = config
        self.vocab_size = vocab_size
        self.padded_vocab_size = padded_vocab_size(vocab_size, config.vocab_divisor)
        self.shared = nn.Embedding(self.padded_vocab_size, config.d_model)
        self._build_stacks(config)
        self.register_buffer(
            "_unused_vocab",
            torch.arange(self.padded_vocab_size) >= vocab_size,
            persistent=False,
        )
        #: forward keeps logits in its output unless told otherwise
        self.keep_logits = True
        #: decoding on CPU runs the decoder's and the unembedding's products (and the
        #: encoder's where that measured faster) on packed copies of the weights
        #: (layers.PackedWeights: MKL's or oneDNN's, whichever is faster on this CPU;
        #: 1.1-1.4x faster greedy decoding, for one more copy of those weights while in
        #: eval mode) and, where they apply, cached steps as one lean function
        #: (layers._lean_step); "mkl" or "onednn" fix the library; False decodes through
        #: the modules without the copies
        self.pack_decoding_weights = True
        #: training attention runs through FlexAttention (layers.FlexBias): the position
        #: bias is added inside the kernel and the segment masks become a block mask, so
        #: no [B, H, L, L] bias or bias gradient is made. For CUDA with the model compiled
        #: (its backward has no CPU kernel); evaluation and decoding keep the dense path.
        #: Experimental: measured in benchmarks/vs_hf.py --flex-attention.
        self.flex_attention = False

    def train(self, mode: bool = True) -> EncDecModel:
        """``nn.Module.train``; entering training mode also frees the packed decoding
        weights (:attr:`pack_decoding_weights`), which training would make stale."""
        if mode:
            layers.drop_decoding_packs(self)
        return super().train(mode)

    def _build_stacks(self, config: EncDecConfig) -> None:
        """Create ``self.encoder`` and ``self.decoder`` (overridden by the shared variant)."""
        num_dec = config.num_decoder_layers or config.num_layers
        self.encoder = Stack(config, config.num_layers, bidirectional=True, cross_attention=False)
        self.decoder = Stack(config, num_dec, bidirectional=False, cross_attention=True)

    # ------------------------------------------------------------------ pieces
    def encode(
        self, tokens: Tensor, segments: Tensor | None = None, embedded: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Encoder output ``[B, L, d]`` and the segment ids used (derived from pads if absent).

        ``embedded``: ``shared(tokens)`` if the caller already looked it up."""
        tokens = tokens.long()
        segments = (tokens != PAD_ID).long() if segments is None else segments.long()
        index = _row_index(tokens)
        # explicit direction: the shared variant's encoder reads the decoder's table (§2)
        position = self.encoder.position_bias(index, index, bidirectional=True)
        if self._flex():
            bias = flex_bias(position, segments, segments, causal=False)
        else:
            bias = position + mask_bias(visibility(segments, segments, causal=False))
        if embedded is None:
            embedded = self.shared(tokens)
        return self.encoder(embedded, bias), segments

    def decode(
        self,
        tokens: Tensor,
        memory: Tensor,
        encoder_segments: Tensor,
        segments: Tensor | None = None,
        embedded: Tensor | None = None,
    ) -> Tensor:
        """Decoder output ``[B, T, d]`` for full (teacher-forced) decoder inputs
        (``embedded``: ``shared(tokens)`` if the caller already looked it up)."""
        tokens = tokens.long()
        if segments is None:
            segments = torch.ones_like(tokens)
        segments = segments.long()
        index = _row_index(tokens)
        position = self.decoder.position_bias(index, index)
        if self._flex():
            self_bias = flex_bias(position, segments, segments, causal=True)
            cross_bias = flex_bias(None, segments, encoder_segments, causal=False)
        else:
            self_bias = position + mask_bias(visibility(segments, segments, causal=True))
            cross_bias = mask_bias(visibility(segments, encoder_segments, causal=False))
        if embedded is None:
            embedded = self.shared(tokens)
        return self.decoder(embedded, self_bias, memory, cross_bias)

    def _flex(self) -> bool:
        """Whether this forward's attention goes through FlexAttention."""
        return self.flex_attention and self.training

    def logits(self, hidden: Tensor, unembed: layers.StepUnembedding | None = None) -> Tensor:
        """Tied logits ``(h * d^-0.5) @ E^T`` in float32 (facts §1.7).

        ``unembed``: decoding steps pass a :class:`~t5k_builtin.model.layers.StepUnembedding`
        of ``shared.weight`` (made once per batch), which computes the same products in a
        layout faster for a few rows.
        """
        scaled = hidden * self.config.d_model**-0.5
        if unembed is None:
            out = nn.functional.linear(scaled, self.shared.weight)
        else:
            out = unembed(scaled)
        out = out.float()
        if self.padded_vocab_size > self.vocab_size:
            out = out.masked_fill(self._unused_vocab, float("-inf"))
        return out

    # ------------------------------------------------------------------ forward
    def forward(
        self, batch: Mapping[str, Tensor], return_logits: bool | None = None
    ) -> ModelOutput:
        enc_tokens = batch["encoder_input_tokens"].long()
        targets = batch["decoder_target_tokens"].long()
        dec_seg = batch.get("decoder_segment_ids")
        if dec_seg is None:
            dec_seg = (targets != PAD_ID).long()
        dec_in = batch.get("decoder_input_tokens")
        if dec_in is None:
            if batch.get("decoder_segment_ids") is not None and int(dec_seg.max()) > 1:
                raise DataError("packed batches must carry decoder_input_tokens")
            dec_in = torch.zeros_like(targets)
            dec_in[:, 1:] = targets[:, :-1]
        enc_emb, dec_emb = self.embed_pair(enc_tokens, dec_in.long())
        memory, enc_seg = self.encode(enc_tokens, batch.get("encoder_segment_ids"), enc_emb)
        hidden = self.decode(dec_in, memory, enc_seg, dec_seg, dec_emb)
        keep = self.keep_logits if return_logits is None else return_logits
        return token_loss(self.logits(hidden), targets, batch.get("decoder_loss_weights"), keep)

    def embed_pair(self, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        """``shared(first), shared(second)`` through one lookup: in training, one
        embedding backward (one vocab-sized zero-filled gradient instead of two, and no
        sum of the two)."""
        flat = self.shared(torch.cat([first.reshape(-1), second.reshape(-1)]))
        n = first.numel()
        return (flat[:n].view(*first.shape, -1), flat[n:].view(*second.shape, -1))

    # ----------------------------------------------------------------- decoding
    def generate(
        self,
        batch: Mapping[str, Tensor],
        max_length: int,
        use_cache: bool = True,
        **search: Any,
    ) -> Tensor:
        """Decode ``batch`` (facts §5.4): ids ``[B, <= max_length]``, 0 after each row's EOS.

        Greedy by default; ``num_beams``, ``alpha``, ``length_penalty`` select beam search,
        ``static_shapes`` (and ``sync``) fixed-shape decoding for XLA
        (:func:`t5kernel.decoding.generate`). ``use_cache=False`` re-runs the whole
        decoder every step (a reference for tests). Runs in eval mode.
        """
        return decoding.generate(self, batch, max_length, use_cache=use_cache, **search)

    def incremental_decoder(
        self,
        batch: Mapping[str, Tensor],
        num_beams: int = 1,
        use_cache: bool = True,
        static_shapes: bool = False,
        max_length: int | None = None,
        compile: bool = False,
    ) -> EncDecIncremental:
        """A :class:`~t5kernel.decoding.IncrementalDecoder` over an unpacked batch;
        ``static_shapes`` (with the ``max_length`` of the search) gives the fixed-shape
        :class:`EncDecStaticIncremental`, whose steps ``compile`` runs through the
        compiled decoder stack (:func:`~t5k_builtin.model.layers.compiled_for_decoding`)."""
        seg = batch.get("encoder_segment_ids")
        if seg is not None and int(seg.max()) > 1:
            raise DataError("generate takes unpacked batches (encoder_segment_ids <= 1)")
        check_compiled_decoding(compile, static_shapes, use_cache)
        if static_shapes:
            return EncDecStaticIncremental(
                self, batch, num_beams, use_cache, static_decode_length(max_length), compile)
        return EncDecIncremental(self, batch, num_beams, use_cache)

    # ------------------------------------------------------------------ adapters
    def add_adapters(
        self, inner_dim: int, init: str = "near_identity", generator: torch.Generator | None = None
    ) -> list[str]:
        """Add one adapter after the feed-forward sublayer of every block (P §3.5.1, facts
        §7.1) and return the new parameters' names.

        ``init``: "mtf" = the reference's standard initialisation (not an identity);
        "near_identity" = the same but ``W_o`` scaled by 1e-3, so the model's outputs
        barely change at step 0 (Houlsby et al.'s choice); "zero" = ``W_o`` = 0, exactly
        the pre-trained function. The adapter has its own RMSNorm scale.
        """
        if init not in ("mtf", "near_identity", "zero"):
            raise ConfigError(f"adapter init {init!r}; allowed: 'mtf', 'near_identity', 'zero'")
        if int(inner_dim) < 1:
            raise ConfigError(f"adapter inner dimension must be >= 1, got {inner_dim}")
        before = {n for n, _ in self.named_parameters()}
        device = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        seen: set[int] = set()
        for module in list(self.modules()):
            if isinstance(module, layers.Block) and id(module) not in seen:
                seen.add(id(module))
                adapter = module.add_adapter(self.config, int(inner_dim)).to(device, dtype)
                layers.init_weights(adapter, "mtf", generator)
                with torch.no_grad():
                    if init == "near_identity":
                        adapter.DenseReluDense.wo.weight.mul_(1e-3)
                    elif init == "zero":
                        adapter.DenseReluDense.wo.weight.zero_()
        return [n for n, _ in self.named_parameters() if n not in before]

    # ------------------------------------------------------------------ blocks
    def blocks(self) -> list[BlockInfo]:
        """Encoder then decoder blocks, bottom first (block 0 owns the bias table).

        The final RMSNorm of a stack counts as part of its top block (facts §6 gradual
        unfreezing note); the shared embedding belongs to no block.
        """
        names = [n for n, _ in self.named_parameters()]
        infos = []
        for stack_name, stack in (("encoder", self.encoder), ("decoder", self.decoder)):
            top = len(stack.block) - 1
            for i in range(top + 1):
                prefix = f"{stack_name}.block.{i}."
                params = [n for n in names if n.startswith(prefix)]
                if i == top:
                    params.append(f"{stack_name}.final_layer_norm.weight")
                infos.append(BlockInfo(stack_name, i, tuple(params)))
        return infos


def trim_padding(tokens: Tensor, segments: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Drop the trailing columns that are padding in every row (decoding only).

    Evaluation batches are padded to a fixed ``inputs_length`` (e.g. 512) while most
    inputs are much shorter. Padding keys are masked (their softmax weight is exactly 0)
    and padding queries' outputs are never read, so the encoder and cross-attention
    results of the real positions do not depend on those columns; cutting them saves
    their whole cost.
    """
    real = tokens != PAD_ID if segments is None else segments > 0
    width = int(real.any(0).nonzero().max()) + 1 if bool(real.any()) else 1
    if width == tokens.shape[1]:
        return tokens, segments
    return tokens[:, :width], None if segments is None else segments[:, :width]


def bucket_width(width: int, given: int) -> int:
    """Encoder width of static-shape decoding: ``width`` rounded up to a power of two, at
    least 8 and at most ``given`` (the batch's own width), so a run's batches fall into a
    few shapes (one compiled graph each) instead of one shape per distinct length."""
    return min(max(8, 1 << (max(width, 1) - 1).bit_length()), given)


def bucket_padding(tokens: Tensor, segments: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """:func:`trim_padding` to the :func:`bucket_width` of the trimmed width.

    The columns kept beyond the trimmed width are padding in every row, which changes no
    real position's result (see :func:`trim_padding`). The width is found with a
    fixed-shape reduction (no ``nonzero``, whose output shape depends on the data).
    """
    real = tokens != PAD_ID if segments is None else segments > 0
    cols = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    width = bucket_width(int((real.any(0).long() * cols).max()), int(tokens.shape[1]))
    if width == tokens.shape[1]:
        return tokens, segments
    return tokens[:, :width], None if segments is None else segments[:, :width]


def check_compiled_decoding(compile: bool, static_shapes: bool, use_cache: bool) -> None:
    """ConfigError unless a ``compile=True`` incremental decoder is the static cached one
    (the only one whose steps keep their shapes, so that one graph serves them all)."""
    if compile and not (static_shapes and use_cache):
        raise ConfigError("compile=True decodes with static_shapes=True and use_cache=True")


def static_decode_length(max_length: int | None) -> int:
    """The ``max_length`` a static decoder preallocates for (ConfigError if missing)."""
    if max_length is None or int(max_length) < 1:
        raise ConfigError(f"static-shape decoding needs max_length >= 1, got {max_length}")
    return int(max_length)


class EncDecIncremental(layers.PackedSteps):
    """Step-by-step decoder of :class:`EncDecModel` (the decoding.IncrementalDecoder).

    The encoder runs once per example. With ``use_cache`` each decoder layer keeps its
    self-attention keys/values and computes the cross-attention keys/values once per
    example: the ``num_beams`` consecutive rows of an example share them (the decoder's
    rows outnumber ``memory``'s, :class:`~t5k_builtin.model.layers.Attention`), so
    :meth:`reorder`, which moves rows within their example, leaves them alone; each step
    then costs one position. Without the cache the whole decoder re-runs over the history
    every step, over the encoder output repeated for each beam.
    """

    #: how the encoder input's all-padding columns are cut (the static variant buckets)
    cut_padding = staticmethod(trim_padding)

    def __init__(
        self, model: EncDecModel, batch: Mapping[str, Tensor], num_beams: int, use_cache: bool
    ) -> None:
        tokens, seg = self.cut_padding(
            batch["encoder_input_tokens"], batch.get("encoder_segment_ids"))
        self.use_packs(model, use_cache)
        with layers.packed_step(self.step_packs):  # where packing beats F.linear for its rows
            memory, enc_seg = model.encode(tokens, seg)
        #: decoder rows per row of ``memory``: the beams of one example
        self.group = num_beams if use_cache else 1
        if num_beams > 1 and not use_cache:
            memory = memory.repeat_interleave(num_beams, dim=0)
            enc_seg = enc_seg.repeat_interleave(num_beams, dim=0)
        self.model, self.memory, self.enc_seg = model, memory, enc_seg
        rows, device = memory.shape[0] * self.group, memory.device
        self.ones = torch.ones(rows, 1, dtype=torch.long, device=device)
        self.cross_bias = mask_bias(visibility(self.ones[:memory.shape[0]], enc_seg, causal=False))
        self.cache = model.decoder.new_cache() if use_cache else None
        self.history = torch.zeros(rows, 0, dtype=torch.long, device=device)
        self.t = 0
        self.unembed = layers.StepUnembedding(model.shared.weight, self.packs)
        self._bias_table: Tensor | None = None  # see _step_bias

    def _step(self, tokens: Tensor | None) -> Tensor:
        model = self.model
        prev = torch.full_like(self.ones, PAD_ID) if tokens is None else tokens[:, None].long()
        if self.cache is not None:
            bias = self._step_bias(self.t)
            hidden = model.decoder(model.shared(prev), bias, self.memory, self.cross_bias, self.cache)
        else:
            self.history = torch.cat([self.history, prev], dim=1)
            hidden = model.decode(
                self.history, self.memory, self.enc_seg, self.ones.expand_as(self.history)
            )
        self.t += 1
        return model.logits(hidden[:, -1], unembed=self.unembed)

    def _step_bias(self, t: int) -> Tensor:
        """Decoder self-attention bias ``[1, H, 1, t + 1]`` of step ``t``: the tail of one
        row of biases by relative position (``-(size - 1) .. 0``, the causal bias depends on
        nothing else), computed once for 64 positions and doubled when a decode runs
        longer, so steps do not re-bucket relative positions and the table stays
        ``[1, H, 1, size]`` however long the decode."""
        table = self._bias_table
        if table is None or t >= table.shape[3]:
            size = max(64, 2 * (t + 1))
            keys = torch.arange(size, device=self.memory.device)[None, :]
            table = self._bias_table = self.model.decoder.position_bias(keys[:, -1:], keys)
        return table[:, :, :, table.shape[3] - 1 - t:]

    def reorder(self, rows: Tensor) -> None:
        self.history = self.history.index_select(0, rows)
        if self.cache is not None:
            Stack.gather_cache(self.cache, rows)

    def select(self, rows: Tensor) -> None:
        """Keep only ``rows``: every per-row tensor, including the encoder side. With
        beams, ``rows`` come in whole examples (``num_beams`` rows of one example each)."""
        self.reorder(rows)
        examples = rows if self.group == 1 else rows.view(-1, self.group)[:, 0] // self.group
        self.memory = self.memory.index_select(0, examples)
        self.enc_seg = self.enc_seg.index_select(0, examples)
        self.cross_bias = self.cross_bias.index_select(0, examples)
        self.ones = self.ones.index_select(0, rows)
        if self.cache is not None:
            Stack.gather_cache(self.cache, examples, part="cross")


class EncDecStaticIncremental(EncDecIncremental):
    """:class:`EncDecIncremental` with the same shapes at every step and for every batch
    of one row count and width bucket (t5kernel.decoding: static shapes; for XLA).

    The encoder input is cut to its :func:`bucket_width` instead of exactly; the decoder's
    self-attention keys/values go into ``[rows, H, max_length, d_kv]`` buffers at the
    step index ``self.index`` (a 1-element device tensor advanced in place), and each step
    attends over all ``max_length`` key rows with those after the step masked. The
    decoder's position bias (plus the causal mask) for all ``max_length`` query/key
    positions is computed once and step ``t`` gathers its query row with the device
    index. Without the cache the whole ``max_length`` history buffer re-runs every step.
    Rows are never dropped (no ``select``).

    ``compile``: the cached steps run the decoder stack through ``torch.compile``
    (:func:`~t5k_builtin.model.layers.compiled_for_decoding`): the fixed shapes make one
    graph per batch shape, reused by every step after the first (which fills the caches:
    eager, so that it needs no graph of its own). The encoder and the unembedding stay
    eager (once per batch, and already at their BLAS rate).
    """

    cut_padding = staticmethod(bucket_padding)
    #: a fixed row count: the search never drops rows of a static decoder
    select = None

    def __init__(
        self,
        model: EncDecModel,
        batch: Mapping[str, Tensor],
        num_beams: int,
        use_cache: bool,
        max_length: int,
        compile: bool = False,
    ) -> None:
        super().__init__(model, batch, num_beams, use_cache)
        self.stack = layers.compiled_for_decoding(model.decoder) if compile else model.decoder
        device, rows = self.memory.device, self.ones.shape[0]
        self.index = torch.zeros(1, dtype=torch.long, device=device)
        if not use_cache:  # the whole history, re-run every step
            self.history = torch.zeros(rows, max_length, dtype=torch.long, device=device)
        else:
            self.cache = model.decoder.new_static_cache(self.index, max_length)
            pos = torch.arange(max_length, device=device)[None, :]
            causal = visibility(torch.ones_like(pos), torch.ones_like(pos), causal=True)
            self.bias = model.decoder.position_bias(pos, pos) + mask_bias(causal)

    def _step(self, tokens: Tensor | None) -> Tensor:
        model = self.model
        prev = torch.full_like(self.ones, PAD_ID) if tokens is None else tokens[:, None].long()
        if self.cache is not None:
            bias = self.bias.index_select(2, self.index)  # [1, H, 1, max_length]
            # step 0 fills the caches (a different graph): eager, so compiling makes one
            stack = self.stack if self.t else model.decoder
            hidden = stack(model.shared(prev), bias, self.memory, self.cross_bias,
                           self.cache)[:, 0]
        else:
            self.history.index_copy_(1, self.index, prev)
            hidden = model.decode(self.history, self.memory, self.enc_seg,
                                  self.ones.expand_as(self.history))
            hidden = hidden.index_select(1, self.index)[:, 0]
        self.index += 1
        self.t += 1
        return model.logits(hidden, unembed=self.unembed)


def single_stack_blocks(model: nn.Module, stack: str = "decoder") -> list[BlockInfo]:
    """Blocks of a model with one stack (shared enc-dec, decoder-only), bottom first.

    Block 0 owns the bias table; the top block also lists the stack's final RMSNorm.
    """
    names = [n for n, _ in model.named_parameters()]
    top = len(getattr(model, stack).block) - 1
    infos = []
    for i in range(top + 1):
        params = [n for n in names if n.startswith(f"{stack}.block.{i}.")]
        if i == top:
            params.append(f"{stack}.final_layer_norm.weight")
        infos.append(BlockInfo(stack, i, tuple(params)))
    return infos


def load_hf_state_dict(model: EncDecModel, state_dict: Mapping[str, Tensor]) -> None:
    """Load a Hugging Face ``T5ForConditionalGeneration`` (v1.0, tied) state dict.

    Drops the tied aliases of ``shared.weight`` (ConfigError if ``lm_head.weight`` is not
    the same matrix, i.e. an untied T5.1.1 checkpoint) and the unused decoder
    cross-attention bias; a checkpoint with fewer embedding rows than the model fills the
    first rows. Everything else must match exactly (``strict=True``).
    """
    sd = dict(state_dict)
    shared = sd.get("shared.weight")
    if shared is None:
        raise ConfigError("state dict has no 'shared.weight'")
    lm_head = sd.get("lm_head.weight")
    if lm_head is not None and not torch.equal(lm_head, shared):
        raise ConfigError("lm_head.weight differs from shared.weight: untied (T5.1.1) checkpoint")
    for key in _HF_ALIASES + _HF_UNUSED:
        sd.pop(key, None)
    rows = model.shared.weight.shape[0]
    if shared.shape[0] > rows:
        raise ConfigError(f"checkpoint has {shared.shape[0]} embedding rows, model {rows}")
    if shared.shape[0] < rows:
        full = model.shared.weight.detach().clone()
        full[: shared.shape[0]] = shared
        sd["shared.weight"] = full
    model.load_state_dict(sd, strict=True)


# --------------------------------------------------------------------- plugin
def parameter_counts(cfg: EncDecConfig, vocab_size: int) -> dict[str, int]:
    """Exact parameter counts of :class:`EncDecModel`, computed from the shape formulas."""
    d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
    attn = 4 * d * inner
    ffn = 2 * d * cfg.d_ff
    table = cfg.relative_attention_num_buckets * cfg.num_heads
    num_dec = cfg.num_decoder_layers or cfg.num_layers
    encoder = cfg.num_layers * (attn + ffn + 2 * d) + d + table
    decoder = num_dec * (2 * attn + ffn + 3 * d) + d + table
    embedding = padded_vocab_size(vocab_size, cfg.vocab_divisor) * d
    return {
        "parameters": encoder + decoder + embedding,
        "parameters_excluding_embedding": encoder + decoder,
        "embedding_parameters": embedding,
        "encoder_parameters": encoder,
        "decoder_parameters": decoder,
    }


class EncDecArchitecture:
    """Plugin target ``encdec``: builds :class:`EncDecModel` and its features."""

    name = "encdec"

    #: the module class :meth:`build` instantiates (variants substitute their own)
    model_class: type[EncDecModel] = EncDecModel

    def __init__(self, config: EncDecConfig, context: BuildContext | None = None) -> None:
        validate_config(config)
        self.config = config
        self.context = context if context is not None else BuildContext()

    def build(self, vocab_size: int) -> EncDecModel:
        """A fresh model initialised per ``config.init`` from a generator seeded with
        ``context.seed`` (so equal seeds give equal models regardless of global RNG state)."""
        if vocab_size < 2:
            raise ConfigError(f"vocab_size must be >= 2 (pad and eos), got {vocab_size}")
        model = self.model_class(self.config, vocab_size)
        generator = torch.Generator().manual_seed(int(self.context.seed))
        init_weights(model, self.config.init, generator)
        return model

    def pack(
        self, examples: Sequence[Mapping[str, Any]], inputs_length: int, targets_length: int
    ) -> list[list[int]]:
        """Greedy packing: which consecutive examples share a row (:func:`pack_examples`)."""
        return pack_examples(examples, inputs_length, targets_length)

    def features(
        self,
        examples: Sequence[Mapping[str, Any]],
        inputs_length: int,
        targets_length: int,
        pack: bool,
        num_rows: int | None = None,
    ) -> dict[str, Any]:
        """:func:`encdec_features` (``num_rows`` pads the batch to a fixed row count).

        An example without inputs is refused: the encoder would see nothing. Only the
        ``lm`` objective makes those, and the paper's encoder-decoder "LM" rows (P Table
        2) use the prefix-LM objective instead.
        """
        if any(len(ex["inputs"]) == 0 for ex in examples):
            raise ConfigError(
                f"architecture {self.name}: an example has no inputs, "
                "so the encoder would see nothing (the objective 'lm' makes such examples); "
                "use objective prefix_lm (the paper's LM objective for encoder-decoder "
                "models) or a decoder-only architecture (lm, prefix_lm)"
            )
        return encdec_features(examples, inputs_length, targets_length, pack, num_rows)

    def describe(self, vocab_size: int) -> dict[str, Any]:
        """Layout, exact parameter counts and forward matmul FLOPs.

        FLOPs count 2 per multiply-add of the weight matmuls only (the attention
        score/value products, 4·H·d_kv FLOPs per query per visible key per attention
        layer, depend on lengths and are excluded). Per input token: encoder layers plus
        the decoder's cross-attention k/v projections of that token. Per target token:
        decoder self-attention, cross-attention q/o, FFN, and the logits over the padded
        vocab. Training costs about 3x the forward figure.
        """
        cfg = self.config
        d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
        num_dec = cfg.num_decoder_layers or cfg.num_layers
        padded = padded_vocab_size(vocab_size, cfg.vocab_divisor)
        per_input = 2 * (
            cfg.num_layers * (4 * d * inner + 2 * d * cfg.d_ff) + num_dec * 2 * d * inner
        )
        per_target = 2 * (num_dec * (6 * d * inner + 2 * d * cfg.d_ff) + d * padded)
        return {
            "architecture": "encdec",
            **(dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}),
            "encoder_layers": cfg.num_layers,
            "decoder_layers": num_dec,
            "vocab_size": vocab_size,
            "padded_vocab_size": padded,
            **parameter_counts(cfg, vocab_size),
            "forward_matmul_flops_per_input_token": per_input,
            "forward_matmul_flops_per_target_token": per_target,
            "forward_matmul_flops_per_token_pair": per_input + per_target,
            "flops_note": "2 FLOPs per weight multiply-add; attention score products excluded",
        }

    # ------------------------------------------------------- Hugging Face interop
    @classmethod
    def from_hf(cls, folder: Any) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """``(model options, state dict)`` of a Hugging Face T5 v1.0 folder (hf_interop).

        Only the plain ``encdec`` imports: a T5ForConditionalGeneration is exactly that
        model, and the variants (half depth, shared stack, decoder-only) would reinterpret
        its layers.
        """
        from t5k_builtin.model import hf_interop

        if cls is not EncDecArchitecture:
            raise ConfigError(
                f"{cls.__name__} cannot import a Hugging Face T5 checkpoint; import it as "
                f"the plain encoder-decoder (--arch encdec)"
            )
        return hf_interop.from_hf(folder)

    @classmethod
    def hf_vocabulary(cls, folder: Any, dst: Any) -> dict[str, Any] | None:
        """The vocabulary section for the folder's ``spiece.model`` (copied into ``dst``)."""
        from t5k_builtin.model import hf_interop

        return hf_interop.hf_vocabulary(folder, dst)

    def to_hf(self, model: EncDecModel, vocab_size: int, folder: Any,
              vocabulary: Any = None) -> None:
        """Write ``model`` as a Hugging Face T5 folder (``T5ForConditionalGeneration``).

        Works for ``encdec`` and ``encdec_half`` (a plain, shallower encdec); the shared
        and decoder-only variants have no Hugging Face equivalent and are refused.
        """
        from t5k_builtin.model import hf_interop

        hf_interop.to_hf(self.config, model, vocab_size, folder, vocabulary)


class EncDecHalfArchitecture(EncDecArchitecture):
    """Plugin target ``encdec_half``: P Table 2 "Enc-dec, 6 layers" (facts §2, bi_v1_l6.gin).

    The baseline with half the layers in each stack (P params, M/2 FLOPs): the configured
    ``num_layers`` / ``num_decoder_layers`` are those of the full-size baseline, and the
    model is built with ``num_layers // 2`` encoder and ``(num_decoder_layers or
    num_layers) // 2`` decoder layers, so one config compares the two variants.
    """

    name = "encdec_half"

    def __init__(self, config: EncDecConfig, context: BuildContext | None = None) -> None:
        validate_config(config)
        enc = config.num_layers // 2
        dec = (config.num_decoder_layers or config.num_layers) // 2
        if enc < 1 or dec < 1:
            raise ConfigError(
                f"encdec_half needs num_layers (and num_decoder_layers) >= 2 to halve, got "
                f"{config.num_layers} / {config.num_decoder_layers}"
            )
        self.full_config = config
        super().__init__(dataclasses.replace(config, num_layers=enc, num_decoder_layers=dec), context)

    def describe(self, vocab_size: int) -> dict[str, Any]:
        """:meth:`EncDecArchitecture.describe` of the halved model, plus the full depths."""
        full = self.full_config
        return {
            **super().describe(vocab_size),
            "architecture": "encdec_half",
            "halved_from_layers": [full.num_layers, full.num_decoder_layers or full.num_layers],
        }
