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
from t5k_builtin.objectives.resumable import BlockObjective
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


def check_positive_ints(objective: str, config: Any, keys: tuple[str, ...]) -> None:
    """Raise ConfigError unless each of ``keys`` the config has is >= 1."""
    for key in keys:
        if hasattr(config, key) and int(getattr(config, key)) < 1:
            raise ConfigError(
                f"objective {objective}: objective.{key} must be >= 1, got {getattr(config, key)}"
            )


def encode_sentinels(
    tokens: np.ndarray, noise_mask: np.ndarray, vocab_size: int, eos_id: int,
    inputs_length: int, targets_length: int, clean_before: bool = False,
    clean_after: bool = False,
) -> dict[str, np.ndarray]:
    """One chunk: inputs = noise spans -> sentinels, targets = clean spans -> sentinels,
    EOS appended after trimming (facts §3.3). ``clean_before`` / ``clean_after`` put a
    virtual clean token around the chunk when building targets: the named fixes of the
    reference's quirks (§3.6)."""
    tokens = pipeline.as_tokens(tokens)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    inputs = noise.noise_span_to_unique_sentinel(tokens, noise_mask, vocab_size)
    if clean_before or clean_after:
        before, after = int(clean_before), int(clean_after)
        tokens = np.concatenate(
            [np.zeros(before, tokens.dtype), tokens, np.zeros(after, tokens.dtype)])
        noise_mask = np.concatenate([np.zeros(before, bool), noise_mask, np.zeros(after, bool)])
    targets = noise.nonnoise_span_to_unique_sentinel(tokens, noise_mask, vocab_size)
    return {
        "inputs": pipeline.append_eos_after_trim(inputs, inputs_length, eos_id),
        "targets": pipeline.append_eos_after_trim(targets, targets_length, eos_id),
    }


def encode_sentinels_batch(
    tokens: np.ndarray, noise_mask: np.ndarray, vocab_size: int, eos_id: int,
    inputs_length: int, targets_length: int, clean_before: bool = False,
    clean_after: bool = False,
) -> list[dict[str, np.ndarray]]:
    """:func:`encode_sentinels` of a (batch, length) array of chunks, vectorised."""
    inputs = batched.noise_span_to_unique_sentinel(tokens, noise_mask, vocab_size)
    if clean_before or clean_after:
        tokens, noise_mask = batched.pad_columns(tokens, noise_mask, clean_before, clean_after)
    targets = batched.nonnoise_span_to_unique_sentinel(tokens, noise_mask, vocab_size)
    inputs = batched.append_eos_after_trim(*inputs, inputs_length, eos_id)
    targets = batched.append_eos_after_trim(*targets, targets_length, eos_id)
    return [
        {"inputs": i, "targets": t}
        for i, t in zip(batched.split_rows(*inputs), batched.split_rows(*targets), strict=True)
    ]


def vocabulary_from(objective: str, context: Any) -> Any:
    """The run's vocabulary, which objectives receive in ``context.extras``."""
    vocab = (getattr(context, "extras", None) or {}).get("vocabulary")
    if vocab is None:
        raise ConfigError(
            f"objective {objective} needs the run's vocabulary in context.extras['vocabulary']"
        )
    return vocab


class IidSpans(BlockObjective):
    """Baseline denoising objective (P Table 5 "Replace corrupted spans")."""

    name = "iid_spans"

    def __init__(self, config: Any, context: Any) -> None:
        check_density(self.name, config.noise_density)
        check_positive_ints(self.name, config, ("concat_documents", "max_document_tokens"))
        self.config = config
        vocab = vocabulary_from(self.name, context)
        self.vocab_size = int(vocab.vocab_size)
        self.eos_id = int(vocab.eos_id)

    def raw_length(self, inputs_length: int, targets_length: int) -> int:
        """Raw tokens per chunk: ``inputs_length - 1`` (room for EOS; facts §3.1.3)."""
        check_lengths(self.name, inputs_length, targets_length)
        return int(inputs_length) - 1

    def blocks(
        self,
        docs: Iterator[Any],
        inputs_length: int,
        targets_length: int,
        rng: np.random.Generator,
    ) -> Iterator[list[dict[str, np.ndarray]]]:
        """Lists of ``{"inputs", "targets"}`` (EOS-terminated, within the given lengths),
        one per batch of chunks (``batched``).

        The i.i.d. mask of each concatenated sequence is drawn when it arrives, which is
        the per-example draw order, so the examples equal ``reference_examples`` for the
        same generator state.
        """
        chunk_length = self.raw_length(inputs_length, targets_length)
        cfg = self.config
        density = cfg.noise_density

        def draw_mask(seq: np.ndarray) -> np.ndarray:
            return rng.random(seq.size) < density

        def encode(tokens: np.ndarray, mask: np.ndarray | None) -> list[dict[str, np.ndarray]]:
            return self.encode_batch(tokens, mask, inputs_length, targets_length)

        for batch in batched.chunk_batches(
            docs, chunk_length, cfg.max_document_tokens, cfg.concat_documents, rng, draw_mask
        ):
            yield batched.encode_in_order(batch, encode)

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
        return encode_sentinels_batch(
            tokens, noise_mask, self.vocab_size, self.eos_id, inputs_length, targets_length,
            clean_before=self.config.fix_leading_noise,
        )

    def encode(
        self, tokens: np.ndarray, noise_mask: np.ndarray, inputs_length: int, targets_length: int
    ) -> dict[str, np.ndarray]:
        """(inputs, targets) of one chunk under a given mask (deterministic; facts §3.3).

        With ``fix_leading_noise`` a virtual clean token is put before the chunk when
        building targets, so a chunk starting with noise gets ``<s0> noise0 <s1> ...``
        instead of the reference's shifted ``noise0 <s0> ...`` (facts §3.6); chunks that
        start clean are unchanged.
        """
        return encode_sentinels(
            tokens, noise_mask, self.vocab_size, self.eos_id, inputs_length, targets_length,
            clean_before=self.config.fix_leading_noise,
        )
