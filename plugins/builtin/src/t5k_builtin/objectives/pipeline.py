"""The common token pipeline every pre-training objective runs before corrupting text.

NumPy generator versions of T5's ``select_random_chunk``, ``reduce_concat_tokens``,
``split_tokens`` and SeqIO's ``append_eos_after_trim`` (facts §3.1). They work on
streams of 1-D int arrays (SentencePiece ids, no EOS), are lazy, and draw randomness only
from the ``numpy.random.Generator`` they are given, so the stream is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

#: token dtype of every array the pipeline yields (ids fit easily: 32,100 in T5)
TOKEN_DTYPE = np.int32


def as_tokens(doc) -> np.ndarray:
    """One document as a 1-D int array (accepts lists, tuples and arrays)."""
    return np.asarray(doc, dtype=TOKEN_DTYPE).reshape(-1)


def select_random_chunk(
    docs: Iterable, max_length: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Drop empty documents; keep one random aligned ``max_length`` piece of each (§3.1.1).

    A document of n tokens is cut into ceil(n / max_length) aligned segments and one is
    chosen uniformly (the last may be shorter); documents that fit are kept whole and
    consume no randomness.
    """
    if max_length < 1:
        raise ValueError(f"select_random_chunk: max_length must be >= 1, got {max_length}")
    for doc in docs:
        tokens = as_tokens(doc)
        n = tokens.size
        if n == 0:
            continue
        if n <= max_length:
            yield tokens
            continue
        num_segments = -(-n // max_length)
        start = max_length * int(rng.integers(num_segments))
        yield tokens[start : start + max_length]


def reduce_concat_tokens(docs: Iterable, batch_size: int) -> Iterator[np.ndarray]:
    """Concatenate ``batch_size`` consecutive documents back to back, no separator (§3.1.2).

    The last group may hold fewer documents. As the reference (which pads a batch and
    then strips every 0), pad ids (0) are removed, so spans can cross document borders.
    """
    if batch_size < 1:
        raise ValueError(f"reduce_concat_tokens: batch_size must be >= 1, got {batch_size}")
    group: list[np.ndarray] = []
    for doc in docs:
        group.append(as_tokens(doc))
        if len(group) == batch_size:
            yield _concat_strip_pad(group)
            group = []
    if group:
        yield _concat_strip_pad(group)


def _concat_strip_pad(group: list[np.ndarray]) -> np.ndarray:
    tokens = np.concatenate(group)
    return tokens[tokens != 0]


def split_tokens(seqs: Iterable, max_tokens_per_segment: int) -> Iterator[np.ndarray]:
    """Cut each sequence into consecutive pieces of ``max_tokens_per_segment`` (§3.1.3).

    Only the last piece of a sequence may be shorter; empty sequences are dropped.
    """
    if max_tokens_per_segment < 1:
        raise ValueError(
            f"split_tokens: max_tokens_per_segment must be >= 1, got {max_tokens_per_segment}"
        )
    for seq in seqs:
        tokens = as_tokens(seq)
        for start in range(0, tokens.size, max_tokens_per_segment):
            yield tokens[start : start + max_tokens_per_segment]


def append_eos_after_trim(tokens, max_length: int | None, eos_id: int = 1) -> np.ndarray:
    """Truncate to ``max_length - 1`` tokens, then append EOS (§3.1.5; SeqIO).

    ``max_length`` None appends EOS without truncating.
    """
    tokens = as_tokens(tokens)
    if max_length is not None:
        if max_length < 1:
            raise ValueError(f"append_eos_after_trim: max_length must be >= 1, got {max_length}")
        tokens = tokens[: max_length - 1]
    return np.concatenate([tokens, np.asarray([eos_id], dtype=TOKEN_DTYPE)])
