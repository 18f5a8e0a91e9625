"""Noise masks and input/target encoders shared by every denoising objective.

NumPy re-statements of the functions in T5's ``t5/data/preprocessors.py`` (facts §3.2,
§3.3, §3.5). Every function works on one 1-D token array, is vectorised (no Python loop
per token) and draws randomness only from the ``numpy.random.Generator`` it is given, so
an objective's output is a pure function of its inputs and the generator state.

Uniform signatures let objectives pick functions by name (``MASKS``, ``ENCODERS``):

* a mask function is ``fn(length, noise_density, rng, **options) -> bool[length]``;
* an encoder is ``fn(tokens, noise_mask, vocab_size=None, rng=None) -> int array``
  (the reference's ``(tokens, noise_mask, vocabulary, seeds)``); encoders that need no
  vocabulary or randomness ignore those arguments.

Sentinels are numbered from the end of the vocabulary (facts §1.10): the k-th sentinel
is ``vocab_size - 1 - k`` and the single BERT/MASS mask token is ``vocab_size - 1``.
As in the reference, sentinel ids keep counting down into ordinary pieces if a sequence
has more spans than the vocabulary has extra ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: ids below this are never drawn as random replacement tokens (pad, eos, unk; facts §3.3)
NUM_RESERVED_TOKENS = 3


# ------------------------------------------------------------------------------ masks


def iid_noise_mask(length: int, noise_density: float, rng: np.random.Generator) -> np.ndarray:
    """Each position is noise independently with probability ``noise_density`` (§3.2)."""
    return rng.random(int(length)) < noise_density


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``num_items`` into ``num_segments`` non-empty runs; all splits equally likely.

    As the reference: shuffle a 0/1 vector over the ``num_items - 1`` gaps holding
    ``num_segments - 1`` ones, prepend 0, cumsum -> segment id per item -> run lengths.
    """
    gaps = (np.arange(num_items - 1) < num_segments - 1).astype(np.int64)
    first_in_segment = np.concatenate([[0], rng.permutation(gaps)])
    segment_id = np.cumsum(first_in_segment)
    return np.bincount(segment_id, minlength=num_segments)


def random_spans_noise_mask(
    length: int,
    noise_density: float,
    rng: np.random.Generator,
    mean_noise_span_length: float = 3.0,
) -> np.ndarray:
    """Noise in random spans: exact noise count, alternating clean/noise runs (§3.2).

    ``n_noise = clip(round(L * density), 1, L - 1)`` with L = max(length, 2) and
    ``n_spans = max(1, round(n_noise / mean))``, both rounded half to even in float32 as
    ``tf.round`` does; the mask always starts clean and ends with noise. Where the
    reference would fail (more spans than clean tokens, e.g. density 0.9 on a short
    chunk) the span count is lowered to the clean-token count instead.
    """
    if noise_density == 0.0:
        return np.zeros(int(length), dtype=bool)
    orig_length = int(length)
    length = max(orig_length, 2)
    num_noise = int(np.round(np.float32(length) * np.float32(noise_density)))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = int(np.round(np.float32(num_noise) / np.float32(mean_noise_span_length)))
    num_clean = length - num_noise
    num_spans = min(max(num_spans, 1), num_noise, num_clean)
    noise_lengths = _random_segmentation(num_noise, num_spans, rng)
    clean_lengths = _random_segmentation(num_clean, num_spans, rng)
    interleaved = np.stack([clean_lengths, noise_lengths], axis=1).reshape(-1)
    span_starts = np.cumsum(interleaved)[:-1]
    span_start_indicator = np.zeros(length, dtype=np.int64)
    span_start_indicator[span_starts] = 1
    is_noise = np.cumsum(span_start_indicator) % 2 == 1
    return is_noise[:orig_length]


def random_prefix_noise_mask(
    length: int, noise_density: float, rng: np.random.Generator
) -> np.ndarray:
    """The first k positions are noise, k uniform in [1, length - 1] (prefix LM, §3.2).

    Only density 0.5 is defined, as in the reference (which raises otherwise).
    """
    if noise_density != 0.5:
        raise ValueError(f"random_prefix_noise_mask needs noise_density 0.5, got {noise_density}")
    length = int(length)
    max_input_tokens = length - 1
    min_input_tokens = min(max_input_tokens, 1)
    k = int(rng.integers(min_input_tokens, max_input_tokens + 1))
    return np.arange(length) < k


def random_spans_helper(
    inputs_length: int,
    noise_density: float,
    mean_noise_span_length: float,
    extra_tokens_per_span_inputs: int = 1,
    extra_tokens_per_span_targets: int = 1,
) -> tuple[int, int]:
    """(raw tokens per chunk, encoded targets length) so random-span inputs need no padding.

    Facts §3.5: the largest raw length T whose encoded inputs (+EOS) still fit in
    ``inputs_length``; Python ``round`` (half to even) as the reference; at density 0.5
    T is lowered by one when the targets would be longer than the inputs.
    """

    def encoded_lengths(tokens_length: int) -> tuple[int, int]:
        num_noise = int(round(tokens_length * noise_density))
        num_clean = tokens_length - num_noise
        num_spans = int(round(num_noise / mean_noise_span_length))
        return (
            num_clean + num_spans * extra_tokens_per_span_inputs + 1,
            num_noise + num_spans * extra_tokens_per_span_targets + 1,
        )

    tokens_length = inputs_length - 1
    while encoded_lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    final_inputs_length, targets_length = encoded_lengths(tokens_length)
    if noise_density == 0.5 and targets_length > final_inputs_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


# --------------------------------------------------------------------------- encoders


def _need(value: Any, what: str, fn: str) -> Any:
    if value is None:
        raise ValueError(f"{fn} needs {what}")
    return value


def noise_span_to_unique_sentinel(
    tokens: np.ndarray, noise_mask: np.ndarray, vocab_size: int | None = None, rng: Any = None
) -> np.ndarray:
    """Each maximal noise run -> one sentinel, the k-th run -> ``vocab_size - 1 - k`` (§3.3)."""
    vocab_size = _need(vocab_size, "vocab_size", "noise_span_to_unique_sentinel")
    tokens = np.asarray(tokens)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    prev_is_noise = np.zeros_like(noise_mask)
    prev_is_noise[1:] = noise_mask[:-1]
    first_noise = noise_mask & ~prev_is_noise
    subsequent_noise = noise_mask & prev_is_noise
    sentinel = vocab_size - np.cumsum(first_noise)
    out = np.where(first_noise, sentinel, tokens).astype(tokens.dtype, copy=False)
    return out[~subsequent_noise]


def nonnoise_span_to_unique_sentinel(
    tokens: np.ndarray, noise_mask: np.ndarray, vocab_size: int | None = None, rng: Any = None
) -> np.ndarray:
    """The complement: each clean run -> one sentinel numbered by clean-run order (§3.3).

    A sequence that starts with noise gets ``noise0 <s0> noise1 <s1> ...``: the
    reference's shifted-sentinel quirk (facts §3.6).
    """
    return noise_span_to_unique_sentinel(tokens, ~np.asarray(noise_mask, dtype=bool), vocab_size)


def noise_token_to_sentinel(
    tokens: np.ndarray, noise_mask: np.ndarray, vocab_size: int | None = None, rng: Any = None
) -> np.ndarray:
    """Every noise token -> the single mask id ``vocab_size - 1``; length kept (MASS, §3.3)."""
    vocab_size = _need(vocab_size, "vocab_size", "noise_token_to_sentinel")
    tokens = np.asarray(tokens)
    return np.where(noise_mask, vocab_size - 1, tokens).astype(tokens.dtype, copy=False)


def noise_token_to_random_token(
    tokens: np.ndarray,
    noise_mask: np.ndarray,
    vocab_size: int | None = None,
    rng: np.random.Generator | None = None,
    num_reserved_tokens: int = NUM_RESERVED_TOKENS,
) -> np.ndarray:
    """Every noise token -> an id uniform in [num_reserved_tokens, vocab_size) (§3.3)."""
    vocab_size = _need(vocab_size, "vocab_size", "noise_token_to_random_token")
    rng = _need(rng, "a numpy Generator", "noise_token_to_random_token")
    tokens = np.asarray(tokens)
    random_ids = rng.integers(num_reserved_tokens, vocab_size, size=tokens.shape)
    return np.where(noise_mask, random_ids, tokens).astype(tokens.dtype, copy=False)


def noise_token_to_random_token_or_sentinel(
    tokens: np.ndarray,
    noise_mask: np.ndarray,
    vocab_size: int | None = None,
    rng: np.random.Generator | None = None,
    random_prob: float = 0.1,
) -> np.ndarray:
    """BERT-style: per position u ~ U(0,1); noise -> random id if u < random_prob, else the
    mask id ``vocab_size - 1`` (§3.3; the random range includes the sentinel ids)."""
    rng = _need(rng, "a numpy Generator", "noise_token_to_random_token_or_sentinel")
    tokens = np.asarray(tokens)
    use_random = rng.random(tokens.shape) < random_prob
    return np.where(
        use_random,
        noise_token_to_random_token(tokens, noise_mask, vocab_size, rng),
        noise_token_to_sentinel(tokens, noise_mask, vocab_size),
    ).astype(tokens.dtype, copy=False)


def drop_noise_tokens(
    tokens: np.ndarray, noise_mask: np.ndarray, vocab_size: int | None = None, rng: Any = None
) -> np.ndarray:
    """Delete the noise tokens, no sentinels (§3.3)."""
    return np.asarray(tokens)[~np.asarray(noise_mask, dtype=bool)]


def drop_nonnoise_tokens(
    tokens: np.ndarray, noise_mask: np.ndarray, vocab_size: int | None = None, rng: Any = None
) -> np.ndarray:
    """Keep only the noise tokens (§3.3)."""
    return np.asarray(tokens)[np.asarray(noise_mask, dtype=bool)]


def permute_noise_tokens(
    tokens: np.ndarray,
    noise_mask: np.ndarray,
    vocab_size: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Shuffle the noise tokens among the noise positions; clean tokens stay (§3.3)."""
    rng = _need(rng, "a numpy Generator", "permute_noise_tokens")
    out = np.array(tokens, copy=True)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    out[noise_mask] = rng.permutation(out[noise_mask])
    return out


MaskFn = Callable[..., np.ndarray]
EncoderFn = Callable[..., np.ndarray]

#: mask functions by the reference's name
MASKS: dict[str, MaskFn] = {
    "iid_noise_mask": iid_noise_mask,
    "random_spans_noise_mask": random_spans_noise_mask,
    "random_prefix_noise_mask": random_prefix_noise_mask,
}

#: input/target encoders by the reference's name
ENCODERS: dict[str, EncoderFn] = {
    fn.__name__: fn
    for fn in (
        noise_span_to_unique_sentinel,
        nonnoise_span_to_unique_sentinel,
        noise_token_to_sentinel,
        noise_token_to_random_token,
        noise_token_to_random_token_or_sentinel,
        drop_noise_tokens,
        drop_nonnoise_tokens,
        permute_noise_tokens,
    )
}
