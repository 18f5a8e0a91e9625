"""P Table 2 decoder-only variants: "Language model" and "Prefix LM" (facts §2).

Both are one causal :class:`~t5k_builtin.model.layers.Stack` without cross-attention
(``lm_v1.gin`` / ``lm_v1_ifa.gin``), with the baseline's shared embedding and tied logits
(inherited from :class:`EncDecModel`). Text-to-text examples are fed the Mesh TF
"delimited_lm" way: each packed segment is ``[inputs..., EOS, targets..., EOS]`` (inputs
already end in EOS), rows are ``inputs_length + targets_length`` long, and the decoder
inputs are that sequence shifted right by one with 0 at each segment start (§1.10). As
Mesh TF packs the two features before it concatenates them (``pack_dataset`` then
``_dynamic_text2self``), an example joins a row only while the row's inputs fit in
``inputs_length`` and its targets in ``targets_length``. A batch without inputs (the
``lm`` objective's; the reference has only a ``targets`` feature there) has rows
``targets_length`` long: one 512-token chunk per row in P Table 2's "LM, LM" row, as
the reference's 128 x 512 tokens per step.

One deliberate difference: segment starts get decoder input 0 as in decoding (and seqio's
``autoregressive_inputs``), where Mesh TF's training shift of a packed row feeds the
previous segment's final EOS to the first token of segments 2, 3, ...

- ``lm``: causal attention, causal buckets, loss on the whole sequence (MTF default
  ``loss_on_targets_only=False``).
- ``prefix_lm``: the "inputs region" (the inputs incl. their EOS plus ONE extra position,
  the one that predicts the first target) is fully visible to itself, the rest is causal
  (tr ``delimited_lm_inputs_mask``, seqio ``PrefixLMFeatureConverter``); buckets are
  bidirectional (§1.4: ``input_full_attention`` → not fully autoregressive); loss on the
  targets only.

Features (numpy, int32, ``[rows, width]``, width as above): ``decoder_target_tokens``,
``decoder_input_tokens``, ``decoder_segment_ids``, ``decoder_positions``,
``decoder_loss_weights``, and ``decoder_causal_attention`` (seqio's name: 1 on the fully
visible inputs region; the prefix LM reads it). Unpacked features (``pack=False``, as
``runloop.predict`` asks) also carry the prompt as ``encoder_input_tokens`` /
``encoder_segment_ids`` (``[rows, inputs_length]``): the run loop hands only the
``encoder*`` keys to :meth:`DecoderOnlyModel.generate`, which builds the decoder-only
sequence ``[0, prompt...]`` itself and continues it greedily.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model import layers
from t5k_builtin.model.encdec import (
    PAD_ID,
    EncDecArchitecture,
    EncDecModel,
    bucket_padding,
    check_compiled_decoding,
    padded_vocab_size,
    parameter_counts,
    single_stack_blocks,
    static_decode_length,
    token_loss,
    trim_padding,
)
from t5k_builtin.model.features import (
    _fill,
    _greedy_groups,
    _pairs,
    row_groups,
    shift_right_per_segment,
)
from t5k_builtin.model.layers import Stack, StepUnembedding, mask_bias, visibility
from t5kernel.api import BlockInfo, BuildContext
from t5kernel.errors import ConfigError, DataError


def _check_depths(config: EncDecConfig) -> None:
    """One stack of ``num_layers`` layers; a different decoder depth has no meaning."""
    if config.num_decoder_layers not in (None, config.num_layers):
        raise ConfigError(
            "decoder-only models have one stack: num_decoder_layers must be null or equal "
            f"num_layers ({config.num_layers}), got {config.num_decoder_layers}"
        )


# -------------------------------------------------------------------- features
def delimited_lm_groups(
    examples: Sequence[Mapping[str, Any]], inputs_length: int, targets_length: int
) -> list[list[int]]:
    """Greedy sequential packing (facts §1.11), as Mesh TF's ``pack_dataset`` before
    ``_dynamic_text2self``: an example joins the current row only if both its (truncated)
    inputs and targets still fit their lengths."""
    pairs = _pairs(examples, inputs_length, targets_length)
    return _greedy_groups([(a.size, b.size) for a, b in pairs], inputs_length, targets_length)


def delimited_lm_width(pairs: Sequence[tuple[np.ndarray, np.ndarray]], inputs_length: int,
                       targets_length: int) -> int:
    """Row length: ``inputs_length + targets_length``, or ``targets_length`` for a batch
    without inputs (the reference's targets-only LM feature)."""
    if pairs and not any(a.size for a, _ in pairs):
        return targets_length
    return inputs_length + targets_length


def delimited_lm_features(
    examples: Sequence[Mapping[str, Any]],
    inputs_length: int,
    targets_length: int,
    pack: bool,
    num_rows: int | None = None,
    loss_on_targets_only: bool = False,
) -> dict[str, np.ndarray]:
    """Decoder-only features of one batch (module docstring lists the keys).

    The inputs region of a segment covers its first ``len(inputs) + 1`` positions (capped at
    the segment): in decoder-input coordinates that is the start token 0 and every input
    token incl. EOS, so the extra position is the one whose input is the inputs' EOS and
    whose target is the first target token (no target token is ever visible there).
    """
    pairs = _pairs(examples, inputs_length, targets_length)
    length = delimited_lm_width(pairs, inputs_length, targets_length)
    groups, rows = row_groups([(a.size, b.size) for a, b in pairs], inputs_length,
                              targets_length, pack, num_rows)
    seqs = [[np.concatenate(pairs[i]) for i in g] for g in groups]
    tokens, segments, positions = _fill(seqs, length, rows)
    n_in = np.zeros((rows, length), np.int32)  # inputs length of each position's segment
    for r, g in enumerate(groups):
        start = 0
        for i in g:
            size = pairs[i][0].size + pairs[i][1].size
            n_in[r, start : start + size] = pairs[i][0].size
            start += size
    real = segments > 0
    region = real & (positions <= n_in)
    weights = (tokens > 0) & (positions >= n_in) if loss_on_targets_only else tokens > 0
    feats = {
        "decoder_target_tokens": tokens,
        "decoder_input_tokens": shift_right_per_segment(tokens, segments),
        "decoder_segment_ids": segments,
        "decoder_positions": positions,
        "decoder_loss_weights": weights.astype(np.int32),
        "decoder_causal_attention": region.astype(np.int32),
    }
    if not pack:
        prompt, prompt_seg, _ = _fill([[pairs[i][0] for i in g] for g in groups], inputs_length, rows)
        feats["encoder_input_tokens"] = prompt
        feats["encoder_segment_ids"] = prompt_seg
    return feats


# ----------------------------------------------------------------------- model
class DecoderOnlyModel(EncDecModel):
    """One causal stack (``decoder``) over ``[inputs, targets]`` with tied embeddings.

    ``prefix`` selects the prefix LM: the ``decoder_causal_attention`` region is fully
    visible within itself and the stack's buckets are bidirectional. The encoder-decoder
    pieces (``encode``/``decode``) do not apply; ``shared`` and :meth:`logits` are the
    baseline's.
    """

    prefix = False

    def _build_stacks(self, config: EncDecConfig) -> None:
        _check_depths(config)
        self.decoder = Stack(
            config, config.num_layers, bidirectional=self.prefix, cross_attention=False
        )

    def run(
        self,
        tokens: Tensor,
        segments: Tensor,
        positions: Tensor,
        region: Tensor | None,
        cache: list[dict] | None = None,
        key_segments: Tensor | None = None,
        key_positions: Tensor | None = None,
        key_region: Tensor | None = None,
        query_index: Tensor | None = None,
        key_index: Tensor | None = None,
    ) -> Tensor:
        """Stack output ``[B, L, d]`` for queries ``tokens``; keys default to the queries.

        Visible: same segment and (key row <= query row, or both in the prefix region).
        ``positions`` (``[B or 1, L]``) feed the relative bias; for pairs in one segment
        only their difference matters, so callers may pass row indices instead.
        ``cache`` (with explicit key_* tensors covering cached + new positions) decodes
        incrementally.
        """
        if key_segments is None:
            key_segments, key_positions, key_region = segments, positions, region
        visible = visibility(segments, key_segments, True, query_index, key_index)
        if self.prefix:
            if region is None or key_region is None:
                raise DataError("prefix_lm batches must carry decoder_causal_attention")
            same = segments[:, :, None] == key_segments[:, None, :]
            visible = visible | (same & region.bool()[:, :, None] & key_region.bool()[:, None, :])
        bias = self.decoder.position_bias(positions, key_positions) + mask_bias(visible)
        return self.decoder(self.shared(tokens.long()), bias, cache=cache)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Mapping[str, Tensor], return_logits: bool | None = None):
        if self._flex():
            raise NotImplementedError(
                "flex_attention covers the encoder-decoder models (encdec, encdec_shared, "
                "encdec_half); lm and prefix_lm train through the dense path")
        targets = batch["decoder_target_tokens"].long()
        seg = batch.get("decoder_segment_ids")
        packed = seg is not None and int(seg.max()) > 1
        seg = (targets != PAD_ID).long() if seg is None else seg.long()
        dec_in = batch.get("decoder_input_tokens")
        if dec_in is None:
            if packed:
                raise DataError("packed batches must carry decoder_input_tokens")
            dec_in = torch.zeros_like(targets)
            dec_in[:, 1:] = targets[:, :-1]
        index = torch.arange(targets.shape[1], device=targets.device)[None, :]
        hidden = self.run(dec_in, seg, index, batch.get("decoder_causal_attention"))
        keep = self.keep_logits if return_logits is None else return_logits
        return token_loss(self.logits(hidden), targets, batch.get("decoder_loss_weights"), keep)

    # ----------------------------------------------------------------- decoding
    def incremental_decoder(
        self,
        batch: Mapping[str, Tensor],
        num_beams: int = 1,
        use_cache: bool = True,
        static_shapes: bool = False,
        max_length: int | None = None,
        compile: bool = False,
    ) -> DecoderOnlyIncremental:
        """Continuation of ``[0, prompt...]`` (facts §5.4) as a decoding.IncrementalDecoder.

        The prompt is ``encoder_input_tokens`` (the inputs incl. EOS, right-padded).
        Generation (greedy or beam, :meth:`EncDecModel.generate`) returns only the
        generated ids. ``static_shapes`` (with the search's ``max_length``) gives the
        fixed-shape :class:`DecoderOnlyStaticIncremental`, whose steps ``compile`` runs
        through the compiled :meth:`run`
        (:func:`~t5k_builtin.model.layers.compiled_for_decoding`).
        """
        seg = batch.get("encoder_segment_ids")
        if seg is not None and int(seg.max()) > 1:
            raise DataError("generate takes unpacked batches (encoder_segment_ids <= 1)")
        check_compiled_decoding(compile, static_shapes, use_cache)
        if static_shapes:
            prompt, seg = bucket_padding(batch["encoder_input_tokens"].long(), seg)
            return DecoderOnlyStaticIncremental(
                self, prompt, seg, num_beams, use_cache, static_decode_length(max_length),
                compile)
        prompt, seg = trim_padding(batch["encoder_input_tokens"].long(), seg)
        return DecoderOnlyIncremental(self, prompt, seg, num_beams, use_cache)

    # ------------------------------------------------------------------ blocks
    def blocks(self) -> list[BlockInfo]:
        """The stack's blocks, bottom first; the top one also lists the final RMSNorm."""
        return single_stack_blocks(self)


class DecoderOnlyIncremental(layers.PackedSteps):
    """Step-by-step decoder of :class:`DecoderOnlyModel`.

    The prompt ``[0, prompt...]`` runs once per example as a block (fully visible for the
    prefix LM, as in training, where the block is exactly the inputs region); its
    key/value cache is then repeated for the ``num_beams`` rows of each example and every
    step feeds one token. Rows keep their own positions (``len(prompt) + 1 + t``); padding
    keys between a short prompt and its continuation are masked. Without ``use_cache`` the
    whole sequence re-runs every step (a reference for tests).
    """

    def __init__(
        self,
        model: DecoderOnlyModel,
        prompt: Tensor,
        seg: Tensor | None,
        num_beams: int,
        use_cache: bool,
    ) -> None:
        b, device = prompt.shape[0], prompt.device
        seg = (prompt != PAD_ID).long() if seg is None else seg.long()
        ones = torch.ones(b, 1, dtype=torch.long, device=device)
        tokens = torch.cat([torch.full_like(ones, PAD_ID), prompt], dim=1)  # [B, P]
        p_seg = torch.cat([ones, seg], dim=1)
        last = p_seg.sum(1) - 1  # row index of each prompt's final token
        p_pos = torch.arange(tokens.shape[1], device=device)[None, :].expand(b, -1)
        cache = model.decoder.new_cache() if use_cache else None
        self.use_packs(model, use_cache)
        unembed = StepUnembedding(model.shared.weight, self.packs)  # see EncDecModel.logits
        first = None
        if cache is not None:
            with layers.packed_step(self.step_packs):  # where packing beats F.linear for its rows
                hidden = model.run(tokens, p_seg, p_pos, p_seg, cache)
            # unpacked: the steps' row count is the beams' (the packs keep one per weight)
            first = model.logits(hidden[torch.arange(b, device=device), last],
                                 unembed=StepUnembedding(model.shared.weight))

        def rep(x: Tensor) -> Tensor:
            return x.repeat_interleave(num_beams, dim=0) if num_beams > 1 else x

        if cache is not None and num_beams > 1:
            Stack.map_cache(cache, rep)
            first = rep(first)

        self.model, self.cache, self.first, self.unembed = model, cache, first, unembed
        self.tokens, self.p_seg, self.p_pos = rep(tokens), rep(p_seg), rep(p_pos.contiguous())
        self.last = rep(last)
        self.ones = rep(ones)
        self.p_len = int(tokens.shape[1])
        self.out = torch.zeros(self.ones.shape[0], 0, dtype=torch.long, device=device)
        self.t = 0

    def _step(self, tokens: Tensor | None) -> Tensor:
        model, device = self.model, self.tokens.device
        if tokens is None:
            if self.first is not None:
                return self.first
            hidden = model.run(self.tokens, self.p_seg, self.p_pos, self.p_seg)
            rows = torch.arange(hidden.shape[0], device=device)
            return model.logits(hidden[rows, self.last], unembed=self.unembed)
        t, rows, ones = self.t, self.ones.shape[0], self.ones
        self.out = torch.cat([self.out, tokens[:, None].long()], dim=1)
        gen_pos = self.last[:, None] + 1 + torch.arange(t + 1, device=device)[None, :]
        k_seg = torch.cat([self.p_seg, ones.expand(rows, t + 1)], dim=1)
        k_pos = torch.cat([self.p_pos, gen_pos], dim=1)
        k_region = torch.cat([self.p_seg, torch.zeros_like(gen_pos)], dim=1)
        self.t += 1
        if self.cache is not None:
            index = torch.tensor([self.p_len + t], device=device)
            state = model.run(
                tokens[:, None].long(), ones, gen_pos[:, -1:], torch.zeros_like(ones),
                self.cache, k_seg, k_pos, k_region, index,
                torch.arange(self.p_len + t + 1, device=device),
            )[:, -1]
        else:
            full = torch.cat([self.tokens, self.out], dim=1)
            state = model.run(full, k_seg, k_pos, k_region)[:, -1]
        return model.logits(state, unembed=self.unembed)

    def reorder(self, rows: Tensor) -> None:
        # rows stay within one example's group, whose prompt tensors are identical
        self.out = self.out.index_select(0, rows)
        if self.cache is not None:
            Stack.gather_cache(self.cache, rows)

    def select(self, rows: Tensor) -> None:
        """Keep only ``rows``: the generated history, the cache and the prompt tensors."""
        self.reorder(rows)
        for name in ("tokens", "p_seg", "p_pos", "last", "ones"):
            setattr(self, name, getattr(self, name).index_select(0, rows))
        if self.first is not None:
            self.first = self.first.index_select(0, rows)


class DecoderOnlyStaticIncremental(DecoderOnlyIncremental):
    """:class:`DecoderOnlyIncremental` with the same shapes at every step and for every
    batch of one row count and prompt-width bucket (t5kernel.decoding: static shapes).

    The prompt is cut to its width bucket (``bucket_padding``), so the sequence is ``P``
    prompt rows then ``max_length`` generated rows, ``n = P + max_length`` keys in all,
    whose segments, positions and prefix region are laid out once. The prompt runs as
    in the dynamic decoder; its keys/values then move into ``[rows, H, n, d_kv]`` buffers
    written at key row ``self.index`` (a 1-element device tensor, ``P + t`` at step
    ``t``), and each step attends over all ``n`` keys with those after it masked.
    Without the cache the whole ``n``-row sequence re-runs every step. Rows are never
    dropped (no ``select``). ``compile``: the cached steps run :meth:`DecoderOnlyModel.run`
    (bias and stack) through ``torch.compile``, one graph per batch shape.
    """

    #: a fixed row count: the search never drops rows of a static decoder
    select = None

    def __init__(
        self,
        model: DecoderOnlyModel,
        prompt: Tensor,
        seg: Tensor | None,
        num_beams: int,
        use_cache: bool,
        max_length: int,
        compile: bool = False,
    ) -> None:
        super().__init__(model, prompt, seg, num_beams, use_cache)
        self.run = layers.compiled_for_decoding(model, "run") if compile else model.run
        device, rows, p = self.tokens.device, self.ones.shape[0], self.p_len
        n = p + max_length
        gen_pos = self.last[:, None] + 1 + torch.arange(max_length, device=device)[None, :]
        self.k_seg = torch.cat([self.p_seg, self.ones.expand(rows, max_length)], dim=1)
        self.k_pos = torch.cat([self.p_pos, gen_pos], dim=1)
        self.k_region = torch.cat([self.p_seg, torch.zeros_like(gen_pos)], dim=1)
        self.key_index = torch.arange(n, device=device)
        self.index = torch.full((1,), p, dtype=torch.long, device=device)
        self.out = torch.zeros(rows, max_length, dtype=torch.long, device=device)
        if self.cache is not None:  # the prompt's keys/values, then room for the steps
            Stack.make_static(self.cache, self.index, max_length)

    def _step(self, tokens: Tensor | None) -> Tensor:
        model = self.model
        if tokens is None:
            return super()._step(None)  # the prompt's own last position, as computed there
        tokens = tokens[:, None].long()
        if self.cache is not None:
            q_pos = self.k_pos.index_select(1, self.index)
            state = self.run(tokens, self.ones, q_pos, torch.zeros_like(self.ones), self.cache,
                             self.k_seg, self.k_pos, self.k_region, self.index,
                             self.key_index)[:, 0]
        else:
            self.out.index_copy_(1, self.index - self.p_len, tokens)
            full = torch.cat([self.tokens, self.out], dim=1)
            state = model.run(full, self.k_seg, self.k_pos, self.k_region)
            state = state.index_select(1, self.index)[:, 0]
        self.index += 1
        return model.logits(state, unembed=self.unembed)


class PrefixLMModel(DecoderOnlyModel):
    """:class:`DecoderOnlyModel` with the fully visible inputs region (facts §2)."""

    prefix = True


def decoder_only_parameter_counts(cfg: EncDecConfig, vocab_size: int) -> dict[str, int]:
    """Exact counts: one stack shaped like the baseline's encoder (P), plus the embedding."""
    base = parameter_counts(cfg, vocab_size)
    stack = base["encoder_parameters"]
    return {
        "parameters": stack + base["embedding_parameters"],
        "parameters_excluding_embedding": stack,
        "embedding_parameters": base["embedding_parameters"],
        "decoder_parameters": stack,
    }


# ----------------------------------------------------------------------- plugin
class LMArchitecture(EncDecArchitecture):
    """Plugin target ``lm``: decoder-only language model (P Table 2 "Language model")."""

    model_class = DecoderOnlyModel
    name = "lm"
    loss_on_targets_only = False

    def __init__(self, config: EncDecConfig, context: BuildContext | None = None) -> None:
        _check_depths(config)
        super().__init__(config, context)

    def pack(
        self, examples: Sequence[Mapping[str, Any]], inputs_length: int, targets_length: int
    ) -> list[list[int]]:
        """Greedy packing by inputs and targets lengths (:func:`delimited_lm_groups`)."""
        return delimited_lm_groups(examples, inputs_length, targets_length)

    def features(
        self,
        examples: Sequence[Mapping[str, Any]],
        inputs_length: int,
        targets_length: int,
        pack: bool,
        num_rows: int | None = None,
    ) -> dict[str, Any]:
        """:func:`delimited_lm_features` with this variant's loss region."""
        return delimited_lm_features(
            examples, inputs_length, targets_length, pack, num_rows, self.loss_on_targets_only
        )

    def describe(self, vocab_size: int) -> dict[str, Any]:
        """Layout, exact parameter counts and forward matmul FLOPs.

        Every token of the ``inputs + targets`` sequence goes through all layers and the
        logits (2 FLOPs per weight multiply-add; attention score products excluded), so a
        (input token, target token) pair costs twice the per-token figure: the same as the
        baseline encoder-decoder, whose input token skips the logits (P §3.2.2: M FLOPs).
        """
        cfg = self.config
        d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
        padded = padded_vocab_size(vocab_size, cfg.vocab_divisor)
        per_token = 2 * (cfg.num_layers * (4 * d * inner + 2 * d * cfg.d_ff) + d * padded)
        return {
            "architecture": self.name,
            **(dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}),
            "decoder_layers": cfg.num_layers,
            "vocab_size": vocab_size,
            "padded_vocab_size": padded,
            "prefix_fully_visible": self.model_class.prefix,
            "loss_on_targets_only": self.loss_on_targets_only,
            **decoder_only_parameter_counts(cfg, vocab_size),
            "forward_matmul_flops_per_token": per_token,
            "forward_matmul_flops_per_token_pair": 2 * per_token,
            "flops_note": "2 FLOPs per weight multiply-add; attention score products excluded",
        }


class PrefixLMArchitecture(LMArchitecture):
    """Plugin target ``prefix_lm``: P Table 2 "Prefix LM" (loss on targets only)."""

    model_class = PrefixLMModel
    name = "prefix_lm"
    loss_on_targets_only = True
