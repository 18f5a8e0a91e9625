"""P Table 2 "Enc-dec, shared": encoder and decoder share their parameters (facts §2).

Mesh TF's ``bi_v1_shared.gin`` builds the encoder under the decoder's variable scope, with
layers named like the decoder's, so every identically named variable is one tensor: the
embedding, each layer's self-attention, FFN and their RMSNorm scales, the relative
position bias table, and also the stack's final RMSNorm (``decoder/final_layer_norm``
exists under the same name in both stacks, so it is shared too). Only the decoder's
``EncDecAttention`` and its RMSNorm have no encoder counterpart. The single bias table is
read with bidirectional buckets in the encoder and causal ones in the decoder (facts §2,
inferred from the naming).

Here that is one :class:`~t5k_builtin.model.layers.Stack` with cross-attention blocks,
registered as ``decoder``; ``encoder`` is an alias of it, and a block called without
encoder memory skips its cross-attention. Parameter names are therefore those of the
baseline's decoder (``decoder.block.{i}...``) and each tensor is counted once: P params
instead of the baseline's 2P, the same FLOPs as the baseline.
"""

from __future__ import annotations

from typing import Any

from t5k_builtin.configs import EncDecConfig
from t5k_builtin.model.encdec import (
    EncDecArchitecture,
    EncDecModel,
    parameter_counts,
    single_stack_blocks,
)
from t5k_builtin.model.layers import Stack
from t5kernel.api import BlockInfo, BuildContext
from t5kernel.errors import ConfigError


def _check_depths(config: EncDecConfig) -> None:
    """One shared stack: the decoder must be as deep as the encoder."""
    if config.num_decoder_layers not in (None, config.num_layers):
        raise ConfigError(
            "encdec_shared shares one stack: num_decoder_layers must be null or equal "
            f"num_layers ({config.num_layers}), got {config.num_decoder_layers}"
        )


class EncDecSharedModel(EncDecModel):
    """:class:`EncDecModel` whose encoder is the decoder stack itself (see module doc)."""

    def _build_stacks(self, config: EncDecConfig) -> None:
        _check_depths(config)
        self.decoder = Stack(config, config.num_layers, bidirectional=False, cross_attention=True)

    @property
    def encoder(self) -> Stack:
        """The decoder stack, run without memory (so without cross-attention)."""
        return self.decoder

    def blocks(self) -> list[BlockInfo]:
        """The shared stack's blocks, bottom first, each parameter listed once.

        Block 0 owns the bias table; the top block also lists the (shared) final RMSNorm.
        """
        return single_stack_blocks(self)


def shared_parameter_counts(cfg: EncDecConfig, vocab_size: int) -> dict[str, int]:
    """Exact counts of :class:`EncDecSharedModel`: the baseline minus its encoder stack.

    The shared stack is exactly a baseline decoder; ``encoder_parameters`` are the subset
    the encoder uses (all but the cross-attention and its norms), not extra tensors.
    """
    base = parameter_counts(cfg, vocab_size)
    d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
    cross = cfg.num_layers * (4 * d * inner + d)
    stack = base["decoder_parameters"]
    return {
        "parameters": stack + base["embedding_parameters"],
        "parameters_excluding_embedding": stack,
        "embedding_parameters": base["embedding_parameters"],
        "encoder_parameters": stack - cross,
        "decoder_parameters": stack,
        "shared_parameters": stack - cross,
    }


class EncDecSharedArchitecture(EncDecArchitecture):
    """Plugin target ``encdec_shared``: builds :class:`EncDecSharedModel`.

    Packing and features are the baseline's; ``build`` initialises the one stack as the
    baseline initialises its decoder.
    """

    name = "encdec_shared"

    model_class = EncDecSharedModel

    def __init__(self, config: EncDecConfig, context: BuildContext | None = None) -> None:
        _check_depths(config)
        super().__init__(config, context)

    def describe(self, vocab_size: int) -> dict[str, Any]:
        """The baseline's description (same layout and FLOPs) with shared parameter counts."""
        return {
            **super().describe(vocab_size),
            "architecture": "encdec_shared",
            **shared_parameter_counts(self.config, vocab_size),
            "sharing_note": "encoder = decoder stack without cross-attention; final norm shared",
        }
