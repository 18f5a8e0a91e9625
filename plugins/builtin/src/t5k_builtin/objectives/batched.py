"""Batch versions of the noise masks, sentinel encoders and EOS step (facts §3.1-§3.3).

``noise.py`` states the reference functions for one token array; this module computes
the same thing for a batch of chunks of one length at once (NumPy, no Python loop per
example or per token in the hot path): a per-example Python loop is what limits the
widely copied NumPy collators, and issue 4 asks for 10x their throughput.

Distributions equal the per-example functions; the order in which random numbers are
drawn differs, so outputs for one seed differ from ``noise.py``'s. Exactness notes:

* i.i.d. masks draw ``rng.random`` row after row, so a batch is bit-identical to the
  per-example calls in the same order.
* random-span segmentations choose their cut points as a uniform k-subset of the gaps
  (what the reference's shuffle of a 0/1 vector gives) with NumPy's multivariate
  hypergeometric sampler, for all rows in one call; noise runs are drawn before clean
  runs, as in the reference.

Encoders take ``tokens`` and ``noise_mask`` of shape (batch, length) and return
``(values, lengths)``: a (batch, width) array whose row ``i`` holds ``lengths[i]``
valid ids followed by padding 0. Chunks of different lengths are processed one length
at a time (``chunk_batches`` yields them grouped that way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from t5k_builtin.objectives import pipeline

#: chunks processed together by the objectives
BATCH_SIZE = 128


# ------------------------------------------------------------------------------ masks


def iid_noise_mask(
    batch: int, length: int, noise_density: float, rng: np.random.Generator
) -> np.ndarray:
    """bool (batch, length): each position noise with probability ``noise_density`` (§3.2)."""
    return rng.random((int(batch), int(length))) < noise_density


def span_counts(length: int, noise_density: float, mean_noise_span_length: float):
    """(padded length, noise tokens, spans) exactly as ``noise.random_spans_noise_mask``.

    ``L = max(length, 2)``, ``n_noise = clip(round(L * d), 1, L - 1)``, ``n_spans =
    max(1, round(n_noise / mean))`` in float32 half-to-even as ``tf.round``; the span
    count is also capped at the clean-token count where the reference would fail.
    """
    padded = max(int(length), 2)
    num_noise = int(np.round(np.float32(padded) * np.float32(noise_density)))
    num_noise = min(max(num_noise, 1), padded - 1)
    num_spans = int(np.round(np.float32(num_noise) / np.float32(mean_noise_span_length)))
    num_spans = min(max(num_spans, 1), num_noise, padded - num_noise)
    return padded, num_noise, num_spans


def segmentations(
    num_items: int, num_segments: int, rows: int, rng: np.random.Generator
) -> np.ndarray:
    """int64 (rows, num_segments): each row splits ``num_items`` items into non-empty runs,
    every split equally likely — the reference's ``_random_segmentation`` per row (§3.2).

    Returned as run ends (the cumulative lengths; the last is ``num_items``); the run
    lengths are ``np.diff(ends, prepend=0)``. A split is a uniform choice of
    ``num_segments - 1`` of the ``num_items - 1`` gaps (the reference shuffles a 0/1
    vector over the gaps). NumPy's multivariate hypergeometric sampler draws that subset
    for all rows in one call: one ball per gap, ``num_segments - 1`` drawn without
    replacement (its "count" method is a partial Fisher-Yates shuffle with exact bounded
    integers).
    """
    num_items, cuts, rows = int(num_items), int(num_segments) - 1, int(rows)
    if not 0 <= cuts < num_items:
        raise ValueError(f"segmentations: cannot split {num_items} items into {num_segments}")
    ends = np.empty((rows, cuts + 1), dtype=np.int64)
    ends[:, -1] = num_items
    if cuts:
        ones, row_gap_base = _constants("gaps", rows, num_items - 1)
        chosen = rng.multivariate_hypergeometric(ones, cuts, size=rows, method="count")
        # gap g (0-based) ends a run at item g + 1; the base also removes the row offset
        np.subtract(
            np.flatnonzero(chosen.astype(bool)).reshape(rows, cuts), row_gap_base, out=ends[:, :-1]
        )
    return ends


def random_spans_segments(
    batch: int,
    length: int,
    noise_density: float,
    rng: np.random.Generator,
    mean_noise_span_length: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(clean run ends, noise run ends), each int64 (batch, n_spans) as ``segmentations``
    returns them, of random-span masks over ``max(length, 2)`` positions (§3.2; the two
    segmentations are uniform and independent, noise drawn first as in the reference)."""
    padded, num_noise, num_spans = span_counts(length, noise_density, mean_noise_span_length)
    noise_ends = segmentations(num_noise, num_spans, batch, rng)
    clean_ends = segmentations(padded - num_noise, num_spans, batch, rng)
    return clean_ends, noise_ends


def run_lengths(ends: np.ndarray) -> np.ndarray:
    """Run lengths from run ends (``np.diff(ends, prepend=0)``, in two steps)."""
    lengths = ends.copy()
    lengths[:, 1:] -= ends[:, :-1]
    return lengths


_CACHE: dict[tuple, tuple] = {}


def _constants(kind: str, rows: int, *key: int) -> tuple:
    """Index arrays that depend only on shapes, built once (read-only) for a row count
    rounded up to a multiple of 128 and sliced, since batch sizes vary a little."""
    cap = -(-int(rows) // 128) * 128
    full_key = (kind, cap, *key)
    found = _CACHE.get(full_key)
    if found is None:
        if len(_CACHE) > 256:
            _CACHE.clear()
        found = _build_constants(kind, cap, *key)
        for array in found:
            array.setflags(write=False)
        _CACHE[full_key] = found
    if kind == "gaps":
        ones, base = found
        return ones, base[:rows]
    in_arange, tg_arange, *per_row = found
    in_width, tg_width = key[2], key[3]
    return (in_arange[: rows * in_width], tg_arange[: rows * tg_width],
            *(a[:rows] for a in per_row))


def _build_constants(kind: str, rows: int, *key: int) -> tuple:
    if kind == "gaps":
        (gaps,) = key
        return np.ones(gaps, dtype=np.int64), (np.arange(rows) * gaps - 1)[:, None]
    if kind == "pairs":
        length, spans, in_width, tg_width = key
        s = np.arange(spans)
        r = np.arange(rows)[:, None]
        return (
            np.arange(rows * in_width),
            np.arange(rows * tg_width),
            r * length - r * in_width - s,  # input run offsets: + noise before the run
            r * length - r * tg_width - s - 1,  # target run offsets: + clean run end
            r * in_width + s,  # input sentinel slots: + clean run end
            r * tg_width + s,  # target sentinel slots: + noise before the run
        )
    raise KeyError(kind)


def random_spans_noise_mask(
    batch: int,
    length: int,
    noise_density: float,
    rng: np.random.Generator,
    mean_noise_span_length: float = 3.0,
) -> np.ndarray:
    """bool (batch, length) of random-span masks, distributed as the reference's (§3.2).

    Per row exactly ``n_noise`` noise tokens in ``n_spans`` runs; runs alternate clean,
    noise, ... starting clean and ending with noise (before the cut to ``length``).
    """
    batch, length = int(batch), int(length)
    if noise_density == 0.0:
        return np.zeros((batch, length), dtype=bool)
    clean, noisy = random_spans_segments(batch, length, noise_density, rng, mean_noise_span_length)
    return spans_to_mask(clean, noisy)[:, :length]


def spans_to_mask(clean_ends: np.ndarray, noise_ends: np.ndarray) -> np.ndarray:
    """bool mask of runs clean, noise, clean, ... from their run ends."""
    rows, spans = clean_ends.shape
    interleaved = np.stack([run_lengths(clean_ends), run_lengths(noise_ends)], axis=2)
    pattern = np.tile(np.array([False, True]), rows * spans)
    return np.repeat(pattern, interleaved.reshape(-1)).reshape(rows, -1)


def span_corruption_pairs(
    tokens: np.ndarray,
    clean_ends: np.ndarray,
    noise_ends: np.ndarray,
    vocab_size: int,
    eos_id: int = 1,
    trailing_sentinel: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) with EOS of chunks whose mask is given by its run ends.

    Equal to ``noise_span_to_unique_sentinel`` / ``nonnoise_span_to_unique_sentinel`` of
    ``spans_to_mask(clean_ends, noise_ends)`` then EOS (no trimming), built from the
    structure: inputs are ``C_0 <s0> C_1 <s1> ... C_{k-1} <s_{k-1}> EOS`` and targets
    ``<s0> N_0 <s1> N_1 ... <s_{k-1}> N_{k-1} [<s_k>] EOS``, every row the same length,
    so each is one gather of token ids plus one small scatter of sentinels. Needs
    ``tokens.shape[1]`` = clean + noise tokens (chunks of at least 2 tokens).
    """
    rows, length = tokens.shape
    spans = clean_ends.shape[1]
    num_clean, num_noise = int(clean_ends[0, -1]), int(noise_ends[0, -1])
    extra = 1 + int(trailing_sentinel)
    in_width, tg_width = num_clean + spans + 1, num_noise + spans + extra
    in_arange, tg_arange, in_off, tg_off, in_slot, tg_slot = _constants(
        "pairs", rows, length, spans, in_width, tg_width
    )
    sentinels = np.arange(vocab_size - 1, vocab_size - 1 - spans, -1, dtype=tokens.dtype)
    noise_before = noise_ends - run_lengths(noise_ends)
    flat = tokens.reshape(-1)

    def gather(offsets, run_len, arange, extra):
        """Row r: runs ``offsets[r, s] + position`` back to back (flat index arithmetic);
        the last run of each row runs ``extra`` further (EOS / trailing sentinel slots)."""
        run_len[:, -1] += extra
        index = np.repeat(offsets.reshape(-1), run_len.reshape(-1))
        index += arange
        index[-extra:] = 0  # past the last row's tokens; overwritten below
        return flat.take(index).reshape(rows, -1)

    # inputs: run s = clean span s, then the slot of sentinel s
    inputs = gather(noise_before + in_off, run_lengths(clean_ends) + 1, in_arange, 1)
    inputs.reshape(-1)[clean_ends + in_slot] = sentinels
    inputs[:, -1] = eos_id
    # targets: run s = the slot of sentinel s (the last clean token), then noise span s
    targets = gather(clean_ends + tg_off, run_lengths(noise_ends) + 1, tg_arange, extra)
    targets.reshape(-1)[noise_before + tg_slot] = sentinels
    if trailing_sentinel:
        targets[:, -2] = vocab_size - 1 - spans
    targets[:, -1] = eos_id
    return inputs, targets


# --------------------------------------------------------------------------- encoders


def _compact(values: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-align the kept entries of each row; pad with 0."""
    lengths = keep.sum(axis=1)
    flat = values[keep]
    if lengths.size and np.all(lengths == lengths[0]):
        return flat.reshape(lengths.size, int(lengths[0])), lengths
    width = int(lengths.max()) if lengths.size else 0
    out = np.zeros((lengths.size, width), dtype=values.dtype)
    out[np.arange(width)[None, :] < lengths[:, None]] = flat
    return out, lengths


def noise_span_to_unique_sentinel(
    tokens: np.ndarray, noise_mask: np.ndarray, vocab_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each maximal noise run -> one sentinel, the k-th -> ``vocab_size - 1 - k`` (§3.3)."""
    tokens = np.asarray(tokens)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    prev = np.zeros_like(noise_mask)
    prev[:, 1:] = noise_mask[:, :-1]
    first = noise_mask & ~prev
    sentinel = vocab_size - np.cumsum(first, axis=1, dtype=np.int32)
    values = np.where(first, sentinel, tokens).astype(tokens.dtype, copy=False)
    return _compact(values, ~(noise_mask & prev))


def nonnoise_span_to_unique_sentinel(
    tokens: np.ndarray, noise_mask: np.ndarray, vocab_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The complement: each clean run -> one sentinel by clean-run order (§3.3, §3.6)."""
    return noise_span_to_unique_sentinel(tokens, ~np.asarray(noise_mask, dtype=bool), vocab_size)


def drop_noise_tokens(tokens: np.ndarray, noise_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delete the noise tokens of each row, no sentinels (§3.3)."""
    return _compact(np.asarray(tokens), ~np.asarray(noise_mask, dtype=bool))


def drop_nonnoise_tokens(
    tokens: np.ndarray, noise_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keep only the noise tokens of each row (§3.3)."""
    return _compact(np.asarray(tokens), np.asarray(noise_mask, dtype=bool))


def full_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, lengths)`` of a (batch, width) array whose rows are all valid."""
    return values, np.full(values.shape[0], values.shape[1], dtype=np.int64)


def pad_columns(tokens: np.ndarray, noise_mask: np.ndarray, before: bool, after: bool):
    """Add a virtual clean token (id 0) before and/or after every chunk.

    Encoding targets of the padded chunk is how the quirk fixes work: a leading clean
    token gives an i.i.d. chunk that starts with noise the sentinel ``<s0>`` first, a
    trailing one gives random-span targets their final sentinel (facts §3.6).
    """
    b, n = tokens.shape
    start = int(before)
    out_tokens = np.zeros((b, n + start + int(after)), dtype=tokens.dtype)
    out_mask = np.zeros(out_tokens.shape, dtype=bool)
    out_tokens[:, start : start + n] = tokens
    out_mask[:, start : start + n] = noise_mask
    return out_tokens, out_mask


def append_eos_after_trim(
    values: np.ndarray, lengths: np.ndarray, max_length: int, eos_id: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``max_length - 1`` ids per row, then EOS (§3.1.5, SeqIO)."""
    kept = np.minimum(lengths, int(max_length) - 1)
    width = int(kept.max()) if kept.size else 0
    out = np.zeros((kept.size, width + 1), dtype=values.dtype)
    out[:, :width] = values[:, :width]
    out[np.arange(kept.size), kept] = eos_id
    return out, kept + 1


def split_rows(values: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """One array (a view) per row, ``lengths[i]`` long."""
    if lengths.size and np.all(lengths == values.shape[1]):
        return list(values)
    return [values[i, :n] for i, n in enumerate(lengths.tolist())]


# ---------------------------------------------------------------------- chunk stream


Block = tuple[np.ndarray, "np.ndarray | None"]


def chunk_batches(
    docs: Iterable,
    chunk_length: int,
    max_document_tokens: int,
    concat_documents: int,
    rng: np.random.Generator,
    on_sequence: Callable[[np.ndarray], np.ndarray] | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[list[Block]]:
    """The common pipeline (§3.1.1-3) as batches of chunks, in stream order.

    ``select_random_chunk -> reduce_concat_tokens -> split_tokens(chunk_length)``; the
    split is a reshape (full chunks are a view). See :func:`sequence_batches` for the
    batches. ``on_sequence(seq)`` is called once per concatenated sequence when it
    arrives (before the next documents are read), and its per-token result is split
    along with the tokens — this is how i.i.d. masks keep the per-example draw order.
    """
    stream = pipeline.select_random_chunk(docs, max_document_tokens, rng)
    stream = pipeline.reduce_concat_tokens(stream, concat_documents)
    yield from sequence_batches(stream, chunk_length, on_sequence, batch_size)


def sequence_batches(
    seqs: Iterable[np.ndarray],
    chunk_length: int,
    on_sequence: Callable[[np.ndarray], np.ndarray] | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[list[Block]]:
    """``split_tokens(chunk_length)`` of a sequence stream, as batches of chunks.

    A batch is a list of blocks ``(tokens (n, w), aux (n, w) or None)`` of equal-width
    rows. It closes at the first sequence end where it holds at least ``batch_size``
    chunks (only the last batch of a finite stream may be smaller), and it is yielded
    before the next sequence is read: nothing is ever buffered across a yield, which is
    what makes the objectives' streams resumable (``resumable.BlockExamples``).

    Pipelines that do not concatenate documents (prefix LM, deshuffling keep the pad
    ids a concatenation would strip, facts §3.1.2) pass the output of
    ``pipeline.select_random_chunk``. Empty sequences are skipped before ``on_sequence``
    (the reference's split draws nothing for them).
    """
    pending: list[Block] = []
    count = 0
    for seq in seqs:
        seq = pipeline.as_tokens(seq)
        if seq.size == 0:
            continue
        aux = on_sequence(seq) if on_sequence is not None else None
        n_full = seq.size // chunk_length
        for lo, hi, rows in ((0, n_full * chunk_length, n_full), (n_full * chunk_length, None, 1)):
            part = seq[lo:hi]
            if part.size == 0:
                continue
            block_aux = None if aux is None else aux[lo:hi].reshape(rows, -1)
            pending.append((part.reshape(rows, -1), block_aux))
            count += rows
        if count >= batch_size:
            yield pending
            pending, count = [], 0
    if pending:
        yield pending


def ragged_batches(
    seqs: Iterable[np.ndarray],
    chunk_length: int,
    on_sequence: Callable[[np.ndarray], np.ndarray] | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
    """``split_tokens(chunk_length)`` of sequences mostly shorter than one chunk (documents
    not concatenated), as ``(tokens, aux, lengths)``: row ``i`` holds ``lengths[i]``
    tokens then padding 0 (``pad_rows``), ``aux`` likewise or None.

    A batch closes at the first sequence end where it holds at least ``batch_size``
    chunks and is yielded before the next sequence is read, as in
    :func:`sequence_batches`.
    """
    chunks: list[np.ndarray] = []
    auxes: list[np.ndarray] = []

    def flush():
        lengths = np.fromiter((c.size for c in chunks), dtype=np.int64, count=len(chunks))
        aux = pad_rows(auxes, lengths) if on_sequence is not None else None
        return pad_rows(chunks, lengths), aux, lengths

    for seq in seqs:
        seq = pipeline.as_tokens(seq)
        if seq.size == 0:
            continue
        aux = on_sequence(seq) if on_sequence is not None else None
        if seq.size <= chunk_length:
            chunks.append(seq)
            if aux is not None:
                auxes.append(aux)
        else:
            starts = range(0, seq.size, chunk_length)
            chunks.extend(seq[lo : lo + chunk_length] for lo in starts)
            if aux is not None:
                auxes.extend(aux[lo : lo + chunk_length] for lo in starts)
        if len(chunks) >= batch_size:
            yield flush()
            chunks, auxes = [], []
    if chunks:
        yield flush()


def by_width(batch: list[Block]) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
    """Per chunk width: (tokens, aux, row positions in the batch), blocks stacked."""
    groups: dict[int, list[tuple[int, Block]]] = {}
    offset = 0
    for block in batch:
        groups.setdefault(block[0].shape[1], []).append((offset, block))
        offset += block[0].shape[0]
    for members in groups.values():
        positions = np.concatenate([np.arange(o, o + b[0].shape[0]) for o, b in members])
        if len(members) == 1:
            tokens, aux = members[0][1]
        else:
            tokens = np.concatenate([b[0] for _, b in members])
            aux = None if members[0][1][1] is None else np.concatenate([b[1] for _, b in members])
        yield tokens, aux, positions


def pad_rows(rows: list[np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """Stack 1-D arrays of the given lengths as rows, left-aligned, padded with 0."""
    width = int(lengths.max()) if lengths.size else 0
    out = np.zeros((lengths.size, width), dtype=rows[0].dtype if rows else np.int32)
    if rows:
        out[np.arange(width)[None, :] < lengths[:, None]] = np.concatenate(rows)
    return out


def count_rows(batch: list[Block]) -> int:
    """Chunks in a batch."""
    return sum(block[0].shape[0] for block in batch)


def encode_in_order(
    batch: list[Block], encode: Callable[[np.ndarray, np.ndarray | None], list[Any]]
) -> list[Any]:
    """``encode(tokens, aux)`` of each equal-width group (:func:`by_width`), results put
    back in the batch's stream order."""
    out: list[Any] = [None] * count_rows(batch)
    for tokens, aux, positions in by_width(batch):
        pairs = encode(tokens, aux)
        if len(pairs) == len(out):
            return pairs
        for position, pair in zip(positions.tolist(), pairs, strict=True):
            out[position] = pair
    return out
