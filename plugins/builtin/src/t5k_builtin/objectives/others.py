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
from collections.abc import Iterator
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
from t5k_builtin.objectives import noise, pipeline
from t5k_builtin.objectives.denoise import check_density, check_lengths, vocabulary_from
from t5kernel.errors import ConfigError

# ----------------------------------------------------------------------------- configs


# ------------------------------------------------------------------------------ base


def _check_positive_ints(objective: str, config: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        if hasattr(config, key) and int(getattr(config, key)) < 1:
            raise ConfigError(
                f"objective {objective}: objective.{key} must be >= 1, got {getattr(config, key)}"
            )


class _ChunkObjective:
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
        _check_positive_ints(self.name, config, ("concat_documents", "max_document_tokens"))
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

    def examples(
        self,
        docs: Iterator[Any],
        inputs_length: int,
        targets_length: int,
        rng: np.random.Generator,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``{"inputs", "targets"}`` EOS-terminated, within the given lengths."""
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

    def examples(self, docs, inputs_length, targets_length, rng):
        """Yield ``{"inputs": [], "targets": chunk + EOS}``."""
        chunk_length = self.raw_length(inputs_length, targets_length)
        stream = pipeline.select_random_chunk(docs, self.config.max_document_tokens, rng)
        stream = pipeline.reduce_concat_tokens(stream, self.config.concat_documents)
        for tokens in pipeline.split_tokens(stream, chunk_length):
            yield self.encode(tokens, None, inputs_length, targets_length)

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

    def corrupt(self, tokens, mask, rng):
        inputs = noise.noise_token_to_random_token_or_sentinel(
            tokens, mask, self.vocab_size, rng, random_prob=self.config.random_prob
        )
        return inputs, tokens


class Mass(_ChunkObjective):
    """iid_15_m_f.gin (= denoise.gin): ``noise_token_to_sentinel``, targets original."""

    name = "mass"

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

    def corrupt(self, tokens, mask, rng):
        return noise.permute_noise_tokens(tokens, mask, rng=rng), tokens


class IidDrop(_ChunkObjective):
    """iid_15_d_d.gin: ``drop_noise_tokens`` / ``drop_nonnoise_tokens``; the paper's
    lengths are (512, 104), 104 being the 99.9th percentile of the targets length."""

    name = "iid_drop"

    def corrupt(self, tokens, mask, rng):
        return noise.drop_noise_tokens(tokens, mask), noise.drop_nonnoise_tokens(tokens, mask)
