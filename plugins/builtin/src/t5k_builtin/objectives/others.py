"""The paper's other pre-training objectives: prefix LM, LM, BERT, MASS, deshuffling, drop.

Each is the recipe of one T5 gin file (facts §3.1-§3.4), built from the reference's
pipeline steps (:mod:`pipeline`) and noise/encoder functions (:mod:`noise`):

=============  ==================  ====  ============================  =====================
objective      gin                 cat   mask, inputs                  targets
=============  ==================  ====  ============================  =====================
``prefix_lm``  prefix_lm.gin       no    random prefix; the prefix     the rest
``lm``         lm.gin              yes   none; no inputs               the chunk
``bert``       iid_15_r10s90_f     yes   i.i.d.; 90% mask, 10% random  the whole chunk
``mass``       iid_15_m_f          yes   i.i.d.; every noise -> mask   the whole chunk
``deshuffle``  all_permute.gin     no    i.i.d. 1.0; shuffled tokens   the whole chunk
``iid_drop``   iid_15_d_d          yes   i.i.d.; noise dropped         the dropped tokens
=============  ==================  ====  ============================  =====================

"cat" = documents are concatenated without separators (``reduce_concat_tokens``) before
chunking; the others keep one chunk per document (facts §3.1.2). Chunks are
``inputs_length - 1`` tokens (``split_tokens_to_inputs_length``) except for ``lm``, whose
chunks are ``targets_length - 1`` (``split_tokens_to_targets_length``). EOS is appended
after truncating to the configured lengths (``append_eos_after_trim``, §3.1.5). The mask
token of BERT/MASS is the last vocabulary id (``vocab_size - 1``, §3.3).

Table 3 of the paper, for "Thank you for inviting me to your party last week .":
prefix LM ``Thank you for inviting`` -> ``me to your party last week .``; BERT
``Thank you <M> <M> me to your party apple week .`` -> original; MASS
``Thank you <M> <M> me to your party <M> week .`` -> original; deshuffling a permutation
-> original; drop ``Thank you me to your party week .`` -> ``for inviting last``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from t5k_builtin.configs import (  # noqa: F401  (re-exported: the configs of this module)
    BertConfig,
    DeshuffleConfig,
    IidDropConfig,
    LmConfig,
    MassConfig,
    PrefixLmConfig,
)
from t5k_builtin.objectives import batched, noise, pipeline
from t5k_builtin.objectives.denoise import (
    check_density,
    check_lengths,
    check_positive_ints,
    vocabulary_from,
)
from t5k_builtin.objectives.resumable import BlockObjective
from t5kernel.errors import ConfigError

# ----------------------------------------------------------------------------- configs


# ------------------------------------------------------------------------------ base


class _ChunkObjective(BlockObjective):
    """Shared driver: chunk the documents, draw a mask per chunk, encode, append EOS.

    Subclasses set ``name`` and ``concat`` (whether the recipe runs
    ``reduce_concat_tokens``) and implement ``mask`` and ``corrupt``; the output is a
    pure function of the documents and the generator state.
    """

    name = ""
    concat = True

    def __init__(self, config: Any, context: Any) -> None:
        if hasattr(config, "noise_density"):
            self._check_density(config.noise_density)
        check_positive_ints(self.name, config, ("concat_documents", "max_document_tokens"))
        self.config = config
        vocab = vocabulary_from(self.name, context)
        self.vocab_size = int(vocab.vocab_size)
        self.eos_id = int(vocab.eos_id)

    def _check_density(self, noise_density: float) -> None:
        check_density(self.name, noise_density)

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
        one per batch of at least 128 chunks (``batched``).

        ``sequence_draws`` draws each sequence's random numbers when it arrives, chunk
        after chunk in the per-example order, so the output equals
        ``reference_examples`` for the same generator state (except ``bert``, whose
        draws are regrouped: see ``Bert.sequence_draws``).
        """
        chunk_length = self.raw_length(inputs_length, targets_length)
        draws = self.sequence_draws(chunk_length, rng)
        stream = pipeline.select_random_chunk(docs, self.config.max_document_tokens, rng)
        if not self.concat:
            yield from self._ragged_blocks(
                stream, chunk_length, draws, inputs_length, targets_length
            )
            return
        stream = pipeline.reduce_concat_tokens(stream, self.config.concat_documents)

        def encode(tokens: np.ndarray, aux: np.ndarray | None) -> list[dict[str, np.ndarray]]:
            lengths = batched.full_rows(tokens)[1]
            return self.encode_batch(tokens, aux, lengths, inputs_length, targets_length)

        for batch in batched.sequence_batches(stream, chunk_length, draws):
            yield batched.encode_in_order(batch, encode)

    def _ragged_blocks(self, stream, chunk_length, draws, inputs_length, targets_length):
        """Documents not concatenated: mostly one chunk each, all widths; rows are padded
        to the widest chunk of a batch (``batched.ragged_batches``) and encoded together."""
        for tokens, aux, lengths in batched.ragged_batches(stream, chunk_length, draws):
            yield self.encode_batch(tokens, aux, lengths, inputs_length, targets_length)

    def sequence_draws(
        self, chunk_length: int, rng: np.random.Generator
    ) -> Callable[[np.ndarray], np.ndarray] | None:
        """``seq -> per-token array`` drawing one sequence's randomness, or None when the
        objective draws nothing (``lm``). Its result is cut into chunks with the tokens
        for ``encode_batch``."""
        return None

    def encode_batch(
        self,
        tokens: np.ndarray,
        aux: np.ndarray,
        lengths: np.ndarray,
        inputs_length: int,
        targets_length: int,
    ) -> list[dict[str, np.ndarray]]:
        """``encode`` of (rows, width) chunks given ``sequence_draws``' values, vectorised;
        row ``i`` is ``lengths[i]`` long (then padding 0)."""
        raise NotImplementedError(f"{type(self).__name__} must define encode_batch")

    def _pairs(self, inputs, targets, inputs_length, targets_length):
        """Rows of ``(values, lengths)`` inputs/targets -> EOS-terminated example dicts."""
        inputs = batched.append_eos_after_trim(*inputs, inputs_length, self.eos_id)
        targets = batched.append_eos_after_trim(*targets, targets_length, self.eos_id)
        return [
            {"inputs": i, "targets": t}
            for i, t in zip(batched.split_rows(*inputs), batched.split_rows(*targets), strict=True)
        ]

    def reference_examples(
        self,
        docs: Iterator[Any],
        inputs_length: int,
        targets_length: int,
        rng: np.random.Generator,
    ) -> Iterator[dict[str, np.ndarray]]:
        """``examples`` one chunk at a time with ``noise.py`` (the oracle of the tests)."""
        chunk_length = self.raw_length(inputs_length, targets_length)
        stream = pipeline.select_random_chunk(docs, self.config.max_document_tokens, rng)
        if self.concat:
            stream = pipeline.reduce_concat_tokens(stream, self.config.concat_documents)
        for tokens in pipeline.split_tokens(stream, chunk_length):
            mask = self.mask(tokens.size, rng)
            yield self.encode(tokens, mask, inputs_length, targets_length, rng)

    def mask(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """i.i.d. noise at the configured density (facts §3.2)."""
        return noise.iid_noise_mask(length, self.config.noise_density, rng)

    def corrupt(self, tokens: np.ndarray, mask: np.ndarray, rng: Any) -> tuple[Any, Any]:
        """(inputs, targets) without EOS: the recipe's ``inputs_fn`` / ``targets_fn``."""
        raise NotImplementedError(f"{type(self).__name__} must define corrupt")

    def encode(
        self,
        tokens: Any,
        noise_mask: Any,
        inputs_length: int,
        targets_length: int,
        rng: Any = None,
    ) -> dict[str, np.ndarray]:
        """(inputs, targets) of one chunk under a given mask, EOS appended after trimming.

        ``rng`` is only drawn from by objectives whose encoder is random (BERT's
        replacement tokens, deshuffling's permutation).
        """
        tokens = pipeline.as_tokens(tokens)
        inputs, targets = self.corrupt(tokens, np.asarray(noise_mask, dtype=bool), rng)
        return {
            "inputs": pipeline.append_eos_after_trim(inputs, inputs_length, self.eos_id),
            "targets": pipeline.append_eos_after_trim(targets, targets_length, self.eos_id),
        }


# ------------------------------------------------------------------------ objectives


class PrefixLm(_ChunkObjective):
    """prefix_lm.gin: inputs = a random prefix (1..n-1 tokens), targets = the rest."""

    name = "prefix_lm"
    concat = False

    def mask(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """``random_prefix_noise_mask`` at density 0.5: the prefix is the noise (§3.2)."""
        return noise.random_prefix_noise_mask(length, 0.5, rng)

    def sequence_draws(self, chunk_length, rng):
        """The prefix length of each chunk, drawn chunk after chunk as ``encode`` (scalar
        calls: the array form of ``integers`` costs more than it saves at one chunk per
        document); stored at the chunk's first position (``encode_batch`` reads it)."""

        def draw(seq: np.ndarray) -> np.ndarray:
            aux = np.empty(seq.size, dtype=np.int64)
            for lo in range(0, seq.size, chunk_length):
                high = min(chunk_length, seq.size - lo) - 1
                aux[lo] = rng.integers(min(high, 1), high + 1)
            return aux

        return draw

    def encode_batch(self, tokens, aux, lengths, inputs_length, targets_length):
        """Inputs: the first ``aux[:, 0]`` tokens of each row, targets the rest."""
        position = np.arange(tokens.shape[1])[None, :]
        prefix = position < aux[:, :1]
        inputs = batched.drop_nonnoise_tokens(tokens, prefix)
        targets = batched.drop_nonnoise_tokens(tokens, ~prefix & (position < lengths[:, None]))
        return self._pairs(inputs, targets, inputs_length, targets_length)

    def corrupt(self, tokens, mask, rng):
        return noise.drop_nonnoise_tokens(tokens, mask), noise.drop_noise_tokens(tokens, mask)


class Lm(_ChunkObjective):
    """lm.gin: concatenated documents cut into ``targets_length - 1`` token chunks.

    The reference has no inputs feature for this objective (facts §2, §3.4: "no
    inputs"); the inputs here are an empty array (no EOS), so a decoder-only model's
    ``[inputs, targets]`` sequence is exactly the EOS-terminated chunk.
    """

    name = "lm"
    concat = True

    def raw_length(self, inputs_length: int, targets_length: int) -> int:
        """Raw tokens per chunk: ``targets_length - 1`` (split_tokens_to_targets_length)."""
        if int(targets_length) < 2:
            raise ConfigError(
                f"objective {self.name}: targets_length must be >= 2 (one token plus EOS), "
                f"got {targets_length}"
            )
        return int(targets_length) - 1

    def encode_batch(self, tokens, aux, lengths, inputs_length, targets_length):
        """Empty inputs; targets = each chunk trimmed to ``targets_length - 1`` plus EOS."""
        empty = np.zeros(0, dtype=pipeline.TOKEN_DTYPE)
        targets = batched.append_eos_after_trim(tokens, lengths, targets_length, self.eos_id)
        return [{"inputs": empty, "targets": t} for t in batched.split_rows(*targets)]

    def encode(self, tokens, noise_mask, inputs_length, targets_length, rng=None):
        """Empty inputs; targets = the chunk trimmed to ``targets_length - 1`` plus EOS."""
        return {
            "inputs": np.zeros(0, dtype=pipeline.TOKEN_DTYPE),
            "targets": pipeline.append_eos_after_trim(tokens, targets_length, self.eos_id),
        }


class Bert(_ChunkObjective):
    """iid_15_r10s90_f.gin: ``noise_token_to_random_token_or_sentinel``, targets original.

    Per position u ~ U(0,1): a noise token becomes a uniform id in [3, vocab_size) if
    u < random_prob, else the mask id ``vocab_size - 1`` (facts §3.3). Unlike BERT's
    own 80/10/10 rule no corrupted token is kept unchanged (the paper's variant).
    """

    name = "bert"

    def __init__(self, config: Any, context: Any) -> None:
        p = float(config.random_prob)
        if not 0.0 <= p <= 1.0:
            raise ConfigError(
                f"objective {self.name}: objective.random_prob must be in [0, 1], "
                f"got {config.random_prob}"
            )
        super().__init__(config, context)

    def sequence_draws(self, chunk_length, rng):
        """Per sequence: its i.i.d. mask (the per-chunk masks back to back), then for the
        k noise tokens k uniforms (random id or mask id) and k random ids.

        The draw order differs from ``encode``'s (which draws both for every position of
        every chunk, chunk after chunk: three generator calls per chunk, most of the
        time of this objective), so outputs for one seed differ from
        ``reference_examples``; the distribution is the same (each noise token
        independently a uniform id in [3, vocab_size) with probability ``random_prob``,
        else the mask id; tests compare both).
        """
        density, prob = self.config.noise_density, self.config.random_prob
        vocab_size, low = self.vocab_size, noise.NUM_RESERVED_TOKENS

        def draw(seq: np.ndarray) -> np.ndarray:
            noisy = rng.random(seq.size) < density
            k = int(np.count_nonzero(noisy))
            use_random = rng.random(k) < prob
            return self.corrupt_drawn(seq, noisy, use_random, rng.integers(low, vocab_size, k))

        return draw

    def corrupt_drawn(
        self, tokens: np.ndarray, noisy: np.ndarray, use_random: np.ndarray, random_ids
    ) -> np.ndarray:
        """Inputs of ``tokens`` given its mask and, per noise token in order, whether it
        becomes a random id and which: ``noise_token_to_random_token_or_sentinel``."""
        inputs = tokens.copy()
        inputs[noisy] = np.where(use_random, random_ids, self.vocab_size - 1)
        return inputs

    def encode_batch(self, tokens, aux, lengths, inputs_length, targets_length):
        """``aux`` holds the corrupted inputs; targets are the chunks."""
        return self._pairs((aux, lengths), (tokens, lengths), inputs_length, targets_length)

    def corrupt(self, tokens, mask, rng):
        inputs = noise.noise_token_to_random_token_or_sentinel(
            tokens, mask, self.vocab_size, rng, random_prob=self.config.random_prob
        )
        return inputs, tokens


class Mass(_ChunkObjective):
    """iid_15_m_f.gin (= denoise.gin): ``noise_token_to_sentinel``, targets original."""

    name = "mass"

    def sequence_draws(self, chunk_length, rng):
        """One i.i.d. mask per sequence (= the per-chunk masks back to back); returns the
        corrupted inputs of the whole sequence."""
        density, mask_id = self.config.noise_density, self.vocab_size - 1

        def draw(seq: np.ndarray) -> np.ndarray:
            return np.where(rng.random(seq.size) < density, mask_id, seq).astype(seq.dtype)

        return draw

    def encode_batch(self, tokens, aux, lengths, inputs_length, targets_length):
        """``aux`` holds the corrupted inputs; targets are the chunks."""
        return self._pairs((aux, lengths), (tokens, lengths), inputs_length, targets_length)

    def corrupt(self, tokens, mask, rng):
        return noise.noise_token_to_sentinel(tokens, mask, self.vocab_size), tokens


class Deshuffle(_ChunkObjective):
    """all_permute.gin: i.i.d. mask at density 1.0, ``permute_noise_tokens``, targets
    original; one ``inputs_length - 1`` chunk of a single document (no concatenation)."""

    name = "deshuffle"
    concat = False

    def _check_density(self, noise_density: float) -> None:
        d = float(noise_density)
        if math.isnan(d) or not 0.0 < d <= 1.0:
            raise ConfigError(
                f"objective {self.name}: objective.noise_density must be in (0, 1], "
                f"got {noise_density}"
            )

    def sequence_draws(self, chunk_length, rng):
        """Chunk after chunk, as ``encode``: the mask's uniforms, then the permutation of
        the noise tokens (both per chunk, so outputs equal ``reference_examples``).
        Returns the shuffled inputs of the whole sequence."""
        density = self.config.noise_density

        def draw(seq: np.ndarray) -> np.ndarray:
            inputs = seq.copy()
            for lo in range(0, seq.size, chunk_length):
                chunk = inputs[lo : lo + chunk_length]
                mask = rng.random(chunk.size) < density
                if density >= 1.0:  # every position (u < 1): shuffle in place, same draws
                    rng.shuffle(chunk)
                else:
                    chunk[mask] = rng.permutation(chunk[mask])
            return inputs

        return draw

    def encode_batch(self, tokens, aux, lengths, inputs_length, targets_length):
        """``aux`` holds the shuffled inputs; targets are the chunks."""
        return self._pairs((aux, lengths), (tokens, lengths), inputs_length, targets_length)

    def corrupt(self, tokens, mask, rng):
        return noise.permute_noise_tokens(tokens, mask, rng=rng), tokens


class IidDrop(_ChunkObjective):
    """iid_15_d_d.gin: ``drop_noise_tokens`` / ``drop_nonnoise_tokens``; the paper's
    lengths are (512, 104), 104 being the 99.9th percentile of the targets length."""

    name = "iid_drop"

    def sequence_draws(self, chunk_length, rng):
        """One i.i.d. mask per sequence (= the per-chunk masks back to back)."""
        density = self.config.noise_density

        def draw(seq: np.ndarray) -> np.ndarray:
            return rng.random(seq.size) < density

        return draw

    def encode_batch(self, tokens, aux, lengths, inputs_length, targets_length):
        """``aux`` is the noise mask: inputs keep the clean tokens, targets the noise."""
        aux = aux.astype(bool, copy=False)
        clean = ~aux
        if tokens.shape[1] and lengths.min() < tokens.shape[1]:  # padded rows
            clean &= np.arange(tokens.shape[1])[None, :] < lengths[:, None]
        inputs = batched.drop_nonnoise_tokens(tokens, clean)
        targets = batched.drop_nonnoise_tokens(tokens, aux)
        return self._pairs(inputs, targets, inputs_length, targets_length)

    def corrupt(self, tokens, mask, rng):
        return noise.drop_noise_tokens(tokens, mask), noise.drop_nonnoise_tokens(tokens, mask)
