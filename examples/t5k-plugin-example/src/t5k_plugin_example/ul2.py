"""UL2's mixture of denoisers (Tay et al. 2022, "UL2: Unifying Language Learning
Paradigms", §3.1 and the ``ul2_objective`` preprocessor of its appendix).

One objective that mixes three kinds of denoising so that a single model learns both
to fill in text and to continue it:

* R-denoisers: T5's span corruption, short spans at the usual rate (mu 3 and 8, r 0.15);
* X-denoisers: "extreme" span corruption, long spans or a high rate (mu 3/8/64 at
  r 0.5, mu 64 at r 0.15), so the model writes long targets from little context;
* the S-denoiser: prefix LM, inputs = a prefix of the chunk, targets = the rest.

Each example's inputs start with the mode token of its denoiser ([NLU] for R, [NLG]
for X, [S2S] for S): "mode switching" lets a fine-tuning task or a prompt choose the
behaviour learned in pre-training by starting its inputs with the same token.

Recipe, as the reference (T5 facts §3.1-§3.5 for the shared pieces, all reused from
``t5k_builtin.objectives``): ``select_random_chunk(65536) -> reduce_concat_tokens(128)``;
then for every example a denoiser is drawn with probability proportional to its weight
and the next chunk of *that denoiser's* raw length is cut from the concatenated
sequence (``split_tokens``: chunks never cross a sequence end, the last one may be
shorter). A span denoiser's raw length comes from ``random_spans_helper`` so that its
inputs need no padding, its mask is ``random_spans_noise_mask(r, mu)`` and its encoders
are ``noise_span_to_unique_sentinel`` / ``nonnoise_span_to_unique_sentinel``; the
S-denoiser cuts ``inputs_length - 1`` tokens (less the mode token's) and splits them with
``random_prefix_noise_mask`` (a uniform split point, as T5's ``prefix_lm``). EOS is
appended after trimming (``append_eos_after_trim``).

Where this differs from the reference, and why:

* The reference gives each denoiser its own shard of concatenated sequences and then
  samples examples from the shards with ``rates``; here the denoiser is drawn per
  example from one stream. Each example has the same distribution given its denoiser
  and the shares of examples are the same (the rates), but nothing has to be
  buffered per shard, so the stream is resumable block by block (see ``blocks``).
* The reference prepends the mode token after ``random_spans_helper`` has sized the
  chunk for the full ``inputs_length``, so full chunks overflow by the token's length
  and lose their last tokens (a sentinel among them) to trimming. Here the mode
  token's ids are subtracted first, so no example is cut.
* The helper counts ``round(noise / mu)`` spans, which is 0 for short chunks at mu 64,
  while the mask always draws at least one; the raw length is lowered until the mask's
  true counts fit (``batched.span_counts``), as the builtin ``span`` objective checks.

Mode tokens are text, encoded by the run's vocabulary, not reserved ids: (1) that is
what the reference does (``prepend_prompt`` encodes the prompt string with the
output vocabulary) and how the released UL2 checkpoints are prompted (``"[NLG] ..."``
as plain text); (2) a downstream task then selects a mode by starting its inputs text
with the same string, with no new embedding rows; (3) the kernel's vocabularies have
no spare ids — the only reserved ones are the sentinels at the end, which the
X-denoisers use up fastest. The objective refuses mode strings that encode to nothing
or that two modes encode to the same ids (the model could not tell them apart).

As in the reference, a chunk with more spans than the vocabulary has extra ids numbers
its sentinels on into ordinary pieces: at inputs_length 512 the X-denoiser (3, 0.5) has
127 spans per full chunk, so give the vocabulary >= 128 extra ids for a clean split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
from t5k_builtin.objectives import batched, noise, pipeline
from t5k_builtin.objectives.denoise import encode_sentinels, vocabulary_from
from t5k_builtin.objectives.resumable import BlockObjective
from t5kernel.errors import ConfigError

from t5k_plugin_example.config import Ul2Config

#: how many raw tokens a span chunk may exceed its inputs length by: bounds the work of
#: ``random_spans_helper`` (it steps one token at a time) for extreme settings
MAX_EXTRA_TOKENS = 2**20


@dataclasses.dataclass(frozen=True)
class Denoiser:
    """One member of the mixture, as built from the config."""

    #: "span" (R/X: random-span corruption) or "prefix_lm" (S)
    kind: str
    #: mode token text and its ids (empty when the mode is "")
    mode: str
    prefix: tuple[int, ...]
    #: probability of drawing this denoiser for an example
    probability: float
    noise_density: float = 0.0
    mean_noise_span_length: float = 0.0

    @property
    def label(self) -> str:
        if self.kind == "prefix_lm":
            return f"prefix_lm {self.mode!r}"
        return f"span(mu={self.mean_noise_span_length:g}, r={self.noise_density:g}) {self.mode!r}"


def denoisers_of(config: Ul2Config, prefixes: dict[str, tuple[int, ...]]) -> tuple[Denoiser, ...]:
    """The mixture of ``config`` in order (span denoisers, then S), with probabilities;
    ``prefixes`` maps each mode string to its ids."""
    weights = [float(w) for w in config.span_weights] + [float(config.prefix_lm_weight)]
    total = sum(weights)
    spans = zip(config.span_modes, config.noise_densities, config.mean_noise_span_lengths,
                strict=True)
    denoisers = [
        Denoiser("span", mode, prefixes[mode], weights[i] / total, float(r), float(mu))
        for i, (mode, r, mu) in enumerate(spans)
    ]
    denoisers.append(Denoiser("prefix_lm", config.prefix_lm_mode,
                              prefixes[config.prefix_lm_mode], weights[-1] / total))
    return tuple(denoisers)


def plan_lengths(
    denoisers: tuple[Denoiser, ...], inputs_length: int, targets_length: int,
    exact_prefixes: bool = True,
) -> tuple[int, ...]:
    """Raw tokens per chunk of each denoiser (0 for denoisers with probability 0).

    Raises ConfigError when the lengths cannot hold a denoiser's full chunk: the inputs
    must leave room for a token, a sentinel and EOS after the mode token, and the
    targets must hold a full span chunk's targets untrimmed (the reference refuses too
    short targets too). With ``exact_prefixes=False`` the prefixes are upper bounds on
    the mode tokens' lengths (``Ul2Config.check_run``, before the vocabulary exists):
    only the targets are checked, against what the shortest possible chunks need.
    """
    lengths, short = [], []
    for d in denoisers:
        if d.probability == 0.0:
            lengths.append(0)
            continue
        room = inputs_length - len(d.prefix)
        if room < 3:
            if exact_prefixes:
                raise ConfigError(
                    f"pretrain.inputs_length={inputs_length} is too short for objective ul2: "
                    f"denoiser {d.label} has {len(d.prefix)} mode-token ids; allowed: an "
                    f"integer >= {len(d.prefix) + 3} (mode token, a token, a sentinel and EOS)")
            room = 3  # the least room the objective accepts: a lower bound of the need
        if d.kind == "prefix_lm":
            lengths.append(room - 1)  # split_tokens_to_inputs_length, less the mode token
            needed = 2
        else:
            tokens, needed = span_chunk_length(d, room)
            lengths.append(tokens)
        if targets_length < needed:
            short.append((needed, d))
    if short:
        needed, d = max(short, key=lambda item: item[0])
        at_least = "" if exact_prefixes else "at least "
        raise ConfigError(
            f"pretrain.targets_length={targets_length} is too short for objective ul2 at "
            f"pretrain.inputs_length={inputs_length}: full chunks of denoiser {d.label} "
            f"need {at_least}{needed} target tokens; allowed: an integer >= {needed} (UL2 "
            "pre-trains with targets as long as the inputs), or weight 0 for the denoisers "
            "that need more")
    return tuple(lengths)


def span_chunk_length(d: Denoiser, room: int) -> tuple[int, int]:
    """(raw chunk length, encoded targets length with EOS) of span denoiser ``d`` whose
    encoded inputs (with EOS) may take ``room`` ids; both grow with ``room``."""
    r, mu = d.noise_density, d.mean_noise_span_length
    extra = room * (1.0 / (1.0 - r + r / mu) - 1.0)
    if extra > MAX_EXTRA_TOKENS:
        raise ConfigError(
            f"objective ul2: denoiser {d.label} would cut raw chunks of about "
            f"{int(room + extra)} tokens; allowed: settings whose chunks exceed the inputs "
            f"by at most {MAX_EXTRA_TOKENS} tokens (a shorter mean span or a lower rate)")
    tokens, _ = noise.random_spans_helper(room, r, mu)

    def encoded(length: int) -> tuple[int, int]:
        _, num_noise, num_spans = batched.span_counts(length, r, mu)
        return length - num_noise + num_spans + 1, num_noise + num_spans + 1

    while tokens > 2 and encoded(tokens)[0] > room:
        tokens -= 1
    return tokens, encoded(tokens)[1]


class Ul2(BlockObjective):
    """The ``ul2`` objective (an ``Objective`` with ``resumable_examples``)."""

    name = "ul2"

    def __init__(self, config: Ul2Config, context: Any) -> None:
        # re-run the range checks: the objective may be built directly from a config
        # that was changed after construction
        self.config = config = dataclasses.replace(config)
        vocab = vocabulary_from(self.name, context)
        self.vocab_size = int(vocab.vocab_size)
        self.eos_id = int(vocab.eos_id)
        self.denoisers: tuple[Denoiser, ...] = denoisers_of(config, self._encode_modes(vocab))
        # u ~ U[0, 1) picks the first k with u < cumulative[k]; from the last denoiser
        # with a positive probability on, cumulative is exactly 1 (no round-off gap)
        probabilities = np.asarray([d.probability for d in self.denoisers])
        cumulative = np.cumsum(probabilities)
        cumulative[int(np.flatnonzero(probabilities > 0)[-1]):] = 1.0
        self._cumulative = cumulative
        self._lengths: dict[tuple[int, int], tuple[int, ...]] = {}

    def _encode_modes(self, vocab: Any) -> dict[str, tuple[int, ...]]:
        """Ids of every mode string; refuses empty encodings and indistinguishable modes."""
        cfg = self.config
        texts = [*cfg.span_modes, cfg.prefix_lm_mode]
        ids = {text: tuple(int(i) for i in vocab.encode(text)) if text else () for text in texts}
        by_ids: dict[tuple[int, ...], str] = {}
        for text, encoded in ids.items():
            if text and not encoded:
                raise ConfigError(
                    f"objective ul2: mode token {text!r} encodes to no ids with this "
                    "vocabulary; allowed: text the vocabulary encodes, or '' for no mode token")
            other = by_ids.setdefault(encoded, text)
            if other != text:
                raise ConfigError(
                    f"objective ul2: mode tokens {other!r} and {text!r} encode to the same ids "
                    f"{list(encoded)} with this vocabulary, so the model cannot tell the modes "
                    "apart; allowed: mode strings the vocabulary encodes differently")
        return ids

    def raw_lengths(self, inputs_length: int, targets_length: int) -> tuple[int, ...]:
        """Raw tokens per chunk of each denoiser at these lengths (:func:`plan_lengths`)."""
        key = (int(inputs_length), int(targets_length))
        if key not in self._lengths:
            self._lengths[key] = plan_lengths(self.denoisers, *key)
        return self._lengths[key]

    # ------------------------------------------------------------------ stream

    def choose(self, rng: np.random.Generator) -> int:
        """Index of the denoiser of the next example (one uniform draw)."""
        return int(np.searchsorted(self._cumulative, rng.random(), side="right"))

    def tagged_blocks(
        self, docs: Iterator[Any], inputs_length: int, targets_length: int,
        rng: np.random.Generator,
    ) -> Iterator[list[tuple[int, dict[str, np.ndarray]]]]:
        """Per concatenated sequence, its ``(denoiser index, example)`` pairs in order.

        A block ends where a concatenated sequence ends, so between blocks every
        document read has been turned into examples and every random number drawn has
        been used: the invariant ``BlockObjective.resumable_examples`` relies on.
        """
        lengths = self.raw_lengths(inputs_length, targets_length)
        cfg = self.config
        stream = pipeline.select_random_chunk(docs, cfg.max_document_tokens, rng)
        for seq in pipeline.reduce_concat_tokens(stream, cfg.concat_documents):
            block, start = [], 0
            while start < seq.size:
                k = self.choose(rng)
                chunk = seq[start : start + lengths[k]]
                start += lengths[k]
                block.append((k, self.encode(k, chunk, inputs_length, targets_length, rng)))
            yield block

    def blocks(
        self, docs: Iterator[Any], inputs_length: int, targets_length: int,
        rng: np.random.Generator,
    ) -> Iterator[list[dict[str, np.ndarray]]]:
        """``{"inputs", "targets"}`` examples, one list per concatenated sequence."""
        for block in self.tagged_blocks(docs, inputs_length, targets_length, rng):
            yield [example for _, example in block]

    def encode(
        self, k: int, chunk: Any, inputs_length: int, targets_length: int,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Denoiser ``k``'s example of one chunk: draws its mask from ``rng``, encodes,
        appends EOS after trimming and puts the mode token's ids first."""
        d = self.denoisers[k]
        tokens = pipeline.as_tokens(chunk)
        room = int(inputs_length) - len(d.prefix)
        if d.kind == "prefix_lm":
            split = noise.random_prefix_noise_mask(tokens.size, 0.5, rng)
            inputs = pipeline.append_eos_after_trim(
                noise.drop_nonnoise_tokens(tokens, split), room, self.eos_id)
            targets = pipeline.append_eos_after_trim(
                noise.drop_noise_tokens(tokens, split), targets_length, self.eos_id)
        else:
            mask = noise.random_spans_noise_mask(
                tokens.size, d.noise_density, rng, d.mean_noise_span_length)
            pair = encode_sentinels(
                tokens, mask, self.vocab_size, self.eos_id, room, targets_length)
            inputs, targets = pair["inputs"], pair["targets"]
        prefix = np.asarray(d.prefix, dtype=pipeline.TOKEN_DTYPE)
        return {"inputs": np.concatenate([prefix, inputs]), "targets": targets}
