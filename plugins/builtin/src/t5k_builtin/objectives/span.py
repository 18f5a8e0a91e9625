"""The final T5 objective: random-span corruption (``span.gin``, task ``span_corruption``).

Recipe (facts §3.1, §3.2, §3.4, §3.5): ``select_random_chunk(65536) ->
reduce_concat_tokens(128) -> split_tokens(T)`` with ``T`` from ``random_spans_helper``
(568 at inputs 512, density 0.15, mean span 3) ``-> random_spans_noise_mask -> inputs =
noise_span_to_unique_sentinel, targets = nonnoise_span_to_unique_sentinel ->
append_eos_after_trim``. A full 568-token chunk has 85 noise tokens in 28 spans, so its
inputs are exactly 512 tokens and its targets exactly 114.

A random-span mask starts with a clean span and ends with a noise span, so the targets
never end in a sentinel (facts §3.6). For "Thank you for inviting me to your party last
week ." with "for inviting me" and "week ." corrupted: inputs ``Thank you <X> to your
party last <Y> </s>``, targets ``<X> for inviting me <Y> week . </s>``. P Table 3's
illustration ends with a clean span and shows a final sentinel ``<Z>``, which the
reference's masks never produce; ``trailing_sentinel=True`` adds one to every target.

Chunks are masked and encoded 128 at a time by ``batched``; ``encode`` is the
per-example statement of the same mapping (the test oracle).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from t5k_builtin.configs import SpanConfig  # noqa: F401  (re-exported)
from t5k_builtin.objectives import batched, noise
from t5k_builtin.objectives.denoise import (
    check_density,
    check_lengths,
    check_positive_ints,
    encode_sentinels,
    encode_sentinels_batch,
    vocabulary_from,
)
from t5k_builtin.objectives.resumable import BlockObjective
from t5kernel.errors import ConfigError


class Span(BlockObjective):
    """Random-span denoising objective (P Table 7, §3.7 "span corruption")."""

    name = "span"

    def __init__(self, config: Any, context: Any) -> None:
        check_density(self.name, config.noise_density)
        if not float(config.mean_noise_span_length) >= 1.0:
            raise ConfigError(
                f"objective {self.name}: objective.mean_noise_span_length must be >= 1, "
                f"got {config.mean_noise_span_length}"
            )
        check_positive_ints(self.name, config, ("concat_documents", "max_document_tokens"))
        self.config = config
        vocab = vocabulary_from(self.name, context)
        self.vocab_size = int(vocab.vocab_size)
        self.eos_id = int(vocab.eos_id)

    @staticmethod
    def targets_length_for(config: Any, inputs_length: int) -> int:
        """The targets length ``span.gin`` derives for ``inputs_length`` (its
        ``random_spans_helper``; one more with ``trailing_sentinel``): 114 at 512 inputs,
        density 0.15, mean span 3. A full chunk's targets fill it exactly."""
        _, targets = noise.random_spans_helper(
            int(inputs_length), float(config.noise_density),
            float(config.mean_noise_span_length))
        return targets + int(config.trailing_sentinel)

    def raw_length(self, inputs_length: int, targets_length: int) -> int:
        """Raw tokens per chunk from the reference's ``random_spans_helper`` (facts §3.5).

        Raises ConfigError when ``targets_length`` is below what the helper says full
        chunks need (as ``span_corruption`` does), so no target is ever cut.
        """
        check_lengths(self.name, inputs_length, targets_length)
        cfg = self.config
        tokens_length, _ = noise.random_spans_helper(
            int(inputs_length), float(cfg.noise_density), float(cfg.mean_noise_span_length)
        )
        needed = self.targets_length_for(cfg, inputs_length)
        if int(targets_length) < needed:
            raise ConfigError(
                f"objective {self.name}: targets_length {targets_length} is too short for "
                f"inputs_length {inputs_length} at noise_density {cfg.noise_density} and "
                f"mean_noise_span_length {cfg.mean_noise_span_length}; need >= {needed}"
            )
        if tokens_length < 1:
            raise ConfigError(
                f"objective {self.name}: inputs_length {inputs_length} leaves no raw tokens"
            )
        return tokens_length

    def blocks(
        self,
        docs: Iterator[Any],
        inputs_length: int,
        targets_length: int,
        rng: np.random.Generator,
    ) -> Iterator[list[dict[str, np.ndarray]]]:
        """Lists of ``{"inputs", "targets"}`` (EOS-terminated, within the given lengths),
        one per batch of chunks; the masks of a batch are drawn when it is complete."""
        chunk_length = self.raw_length(inputs_length, targets_length)
        cfg = self.config
        for batch in batched.chunk_batches(
            docs, chunk_length, cfg.max_document_tokens, cfg.concat_documents, rng
        ):
            yield self._encode_batch(batch, inputs_length, targets_length, rng)

    def _encode_batch(self, batch, inputs_length, targets_length, rng):
        """Mask and encode one batch, one chunk width at a time, in stream order."""
        cfg = self.config

        def encode(tokens: np.ndarray, _aux: None) -> list[dict[str, np.ndarray]]:
            rows, width = tokens.shape
            if width >= 2:
                clean_ends, noise_ends = batched.random_spans_segments(
                    rows, width, cfg.noise_density, rng, cfg.mean_noise_span_length
                )
                return self._pairs_from_spans(
                    tokens, clean_ends, noise_ends, inputs_length, targets_length
                )
            # a 1-token chunk: the padded mask is cut, so build it explicitly
            mask = batched.random_spans_noise_mask(
                rows, width, cfg.noise_density, rng, cfg.mean_noise_span_length
            )
            return self.encode_batch(tokens, mask, inputs_length, targets_length)

        return batched.encode_in_order(batch, encode)

    def _pairs_from_spans(self, tokens, clean_ends, noise_ends, inputs_length, targets_length):
        """Fast path: pairs straight from the run lengths (``batched.span_corruption_pairs``)."""
        inputs, targets = batched.span_corruption_pairs(
            tokens,
            clean_ends,
            noise_ends,
            self.vocab_size,
            self.eos_id,
            self.config.trailing_sentinel,
        )
        rows = tokens.shape[0]
        if inputs.shape[1] > inputs_length:  # only if lengths were chosen by hand
            full = np.full(rows, inputs.shape[1] - 1)
            inputs = batched.append_eos_after_trim(
                inputs[:, :-1], full, inputs_length, self.eos_id
            )[0]
        if targets.shape[1] > targets_length:
            full = np.full(rows, targets.shape[1] - 1)
            targets = batched.append_eos_after_trim(
                targets[:, :-1], full, targets_length, self.eos_id
            )[0]
        return [{"inputs": i, "targets": t} for i, t in zip(inputs, targets, strict=True)]

    def encode_batch(
        self, tokens: np.ndarray, noise_mask: np.ndarray, inputs_length: int, targets_length: int
    ) -> list[dict[str, np.ndarray]]:
        """``encode`` for a (batch, length) array of chunks and masks, vectorised."""
        return encode_sentinels_batch(
            tokens, noise_mask, self.vocab_size, self.eos_id, inputs_length, targets_length,
            clean_after=self.config.trailing_sentinel,
        )

    def encode(
        self, tokens: np.ndarray, noise_mask: np.ndarray, inputs_length: int, targets_length: int
    ) -> dict[str, np.ndarray]:
        """(inputs, targets) of one chunk under a given mask, with ``noise.py`` (facts §3.3)."""
        return encode_sentinels(
            tokens, noise_mask, self.vocab_size, self.eos_id, inputs_length, targets_length,
            clean_after=self.config.trailing_sentinel,
        )
