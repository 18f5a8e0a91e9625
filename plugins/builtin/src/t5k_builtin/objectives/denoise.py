"""The paper's baseline pre-training objective: i.i.d. noise, each corrupted span -> a sentinel.

Recipe of T5's ``iid_15_u_u.gin`` / task ``c4_v220_iid_denoising`` (facts §3.1, §3.4):
``select_random_chunk(65536) -> reduce_concat_tokens(128) -> split_tokens(inputs_length - 1)
-> iid_noise_mask(0.15) -> inputs = noise_span_to_unique_sentinel,
targets = nonnoise_span_to_unique_sentinel -> append_eos_after_trim``.

For "Thank you for inviting me to your party last week ." with "for inviting" and "last"
corrupted this gives inputs ``Thank you <X> me to your party <Y> week . </s>`` and targets
``<X> for inviting <Y> last <Z> </s>`` (P Table 3), sentinels X, Y, Z being the last,
second-to-last, third-to-last vocabulary ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from t5k_builtin.objectives import batched, noise, pipeline
from t5kernel.errors import ConfigError


def check_lengths(objective: str, inputs_length: int, targets_length: int) -> None:
    """Raise ConfigError unless inputs hold a token plus EOS and targets at least EOS."""
    if int(inputs_length) < 2:
        raise ConfigError(
            f"objective {objective}: inputs_length must be >= 2 (one token plus EOS), "
            f"got {inputs_length}"
        )
    if int(targets_length) < 1:
        raise ConfigError(
            f"objective {objective}: targets_length must be >= 1 (room for EOS), "
            f"got {targets_length}"
        )


def check_density(objective: str, noise_density: float) -> None:
    """Raise ConfigError unless 0 < noise_density < 1."""
    if not 0.0 < float(noise_density) < 1.0:
        raise ConfigError(
            f"objective {objective}: objective.noise_density must be in the open interval "
            f"(0, 1), got {noise_density}"
        )


def vocabulary_from(objective: str, context: Any) -> Any:
    """The run's vocabulary, which objectives receive in ``context.extras``."""
    vocab = (getattr(context, "extras", None) or {}).get("vocabulary")
    if vocab is None:
        raise ConfigError(
            f"objective {objective} needs the run's vocabulary in context.extras['vocabulary']"
        )
    return vocab


class IidSpans:
    """Baseline denoising objective (P Table 5 "Replace corrupted spans")."""

    name = "iid_spans"

    def __init__(self, config: Any, context: Any) -> None:
        check_density(self.name, config.noise_density)
        for key in ("concat_documents", "max_document_tokens"):
            if int(getattr(config, key)) < 1:
                raise ConfigError(
                    f"objective {self.name}: objective.{key} must be >= 1, "
                    f"got {getattr(config, key)}"
                )
        self.config = config
        vocab = vocabulary_from(self.name, context)
        self.vocab_size = int(vocab.vocab_size)
        self.eos_id = int(vocab.eos_id)

    def raw_length(self, inputs_length: int, targets_length: int) -> int:
        """Raw tokens per chunk: ``inputs_length - 1`` (room for EOS; facts §3.1.3)."""
        check_lengths(self.name, inputs_length, targets_length)
        return int(inputs_length) - 1

    def examples(
        self,
        docs: Iterator[Any],
        inputs_length: int,
        targets_length: int,
        rng: np.random.Generator,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``{"inputs", "targets"}`` EOS-terminated, within the given lengths.

        Chunks are encoded 128 at a time (``batched``). The i.i.d. mask of each
        concatenated sequence is drawn when it arrives, which is the per-example draw
        order, so the output equals ``reference_examples`` for the same generator state.
        """
        chunk_length = self.raw_length(inputs_length, targets_length)
        cfg = self.config
        density = cfg.noise_density

        def draw_mask(seq: np.ndarray) -> np.ndarray:
            return rng.random(seq.size) < density

        for batch in batched.chunk_batches(
            docs, chunk_length, cfg.max_document_tokens, cfg.concat_documents, rng, draw_mask
        ):
            out: list[dict[str, np.ndarray] | None] = [None] * batched.count_rows(batch)
            for tokens, mask, positions in batched.by_width(batch):
                pairs = self.encode_batch(tokens, mask, inputs_length, targets_length)
                for position, pair in zip(positions.tolist(), pairs, strict=True):
                    out[position] = pair
            yield from out

    def reference_examples(
        self,
        docs: Iterator[Any],
        inputs_length: int,
        targets_length: int,
        rng: np.random.Generator,
    ) -> Iterator[dict[str, np.ndarray]]:
        """``examples`` one chunk at a time with ``noise.py`` (the oracle of the tests)."""
        chunk_length = self.raw_length(inputs_length, targets_length)
        cfg = self.config
        stream = pipeline.select_random_chunk(docs, cfg.max_document_tokens, rng)
        stream = pipeline.reduce_concat_tokens(stream, cfg.concat_documents)
        for tokens in pipeline.split_tokens(stream, chunk_length):
            mask = noise.iid_noise_mask(tokens.size, cfg.noise_density, rng)
            yield self.encode(tokens, mask, inputs_length, targets_length)

    def encode_batch(
        self, tokens: np.ndarray, noise_mask: np.ndarray, inputs_length: int, targets_length: int
    ) -> list[dict[str, np.ndarray]]:
        """``encode`` for a (batch, length) array of chunks and masks, vectorised."""
        inputs = batched.noise_span_to_unique_sentinel(tokens, noise_mask, self.vocab_size)
        if self.config.fix_leading_noise:
            tokens, noise_mask = batched.pad_columns(tokens, noise_mask, True, False)
        targets = batched.nonnoise_span_to_unique_sentinel(tokens, noise_mask, self.vocab_size)
        inputs = batched.append_eos_after_trim(*inputs, inputs_length, self.eos_id)
        targets = batched.append_eos_after_trim(*targets, targets_length, self.eos_id)
        return [
            {"inputs": i, "targets": t}
            for i, t in zip(batched.split_rows(*inputs), batched.split_rows(*targets), strict=True)
        ]

    def encode(
        self, tokens: np.ndarray, noise_mask: np.ndarray, inputs_length: int, targets_length: int
    ) -> dict[str, np.ndarray]:
        """(inputs, targets) of one chunk under a given mask (deterministic; facts §3.3).

        With ``fix_leading_noise`` a virtual clean token is put before the chunk when
        building targets, so a chunk starting with noise gets ``<s0> noise0 <s1> ...``
        instead of the reference's shifted ``noise0 <s0> ...`` (facts §3.6); chunks that
        start clean are unchanged.
        """
        tokens = pipeline.as_tokens(tokens)
        noise_mask = np.asarray(noise_mask, dtype=bool)
        inputs = noise.noise_span_to_unique_sentinel(tokens, noise_mask, self.vocab_size)
        if self.config.fix_leading_noise:
            padded = np.concatenate([np.zeros(1, tokens.dtype), tokens])
            padded_mask = np.concatenate([[False], noise_mask])
            targets = noise.nonnoise_span_to_unique_sentinel(padded, padded_mask, self.vocab_size)
        else:
            targets = noise.nonnoise_span_to_unique_sentinel(tokens, noise_mask, self.vocab_size)
        return {
            "inputs": pipeline.append_eos_after_trim(inputs, inputs_length, self.eos_id),
            "targets": pipeline.append_eos_after_trim(targets, targets_length, self.eos_id),
        }
