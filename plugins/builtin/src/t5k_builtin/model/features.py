"""Encoder-decoder feature conversion in numpy (seqio ``EncDecFeatureConverter``, facts §1.11).

Input examples are ``{"inputs": ids, "targets": ids}`` with EOS (1) already appended.
Output is a dict of int32 arrays ``[rows, length]``:

- ``encoder_input_tokens``, ``encoder_segment_ids``, ``encoder_positions``
- ``decoder_target_tokens``, ``decoder_input_tokens``, ``decoder_segment_ids``,
  ``decoder_positions``, ``decoder_loss_weights``

Segment ids number the examples of a row 1, 2, ... (0 = padding); positions restart at 0
in every segment (0 on padding). ``decoder_input_tokens`` are the targets shifted right
by one with 0 at the start of every segment (seqio ``autoregressive_inputs`` with
``sequence_id``; facts §1.10), so padding positions get 0 too. Loss weights are 1 where
the target token is > 0.

Over-long examples are truncated, not rejected: the sequence is cut to ``length - 1``
tokens and EOS is put last (seqio ``append_eos_after_trim`` semantics), so every example
still ends in EOS and fits its row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from t5kernel.errors import DataError

EOS_ID = 1

FEATURE_KEYS: tuple[str, ...] = (
    "encoder_input_tokens",
    "encoder_segment_ids",
    "encoder_positions",
    "decoder_target_tokens",
    "decoder_input_tokens",
    "decoder_segment_ids",
    "decoder_positions",
    "decoder_loss_weights",
)


def trim_with_eos(ids: Any, length: int, name: str = "sequence") -> np.ndarray:
    """1-D int array cut to at most ``length`` tokens, EOS last when it was cut."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D sequence of token ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise DataError(f"{name} holds a negative token id; ids must be >= 0")
    arr = arr.astype(np.int64)
    if length < 1:
        raise DataError(f"sequence length must be >= 1, got {length}")
    if arr.size > length:
        arr = np.concatenate([arr[: length - 1], np.array([EOS_ID], dtype=np.int64)])
    return arr


def _pairs(
    examples: Sequence[Mapping[str, Any]], inputs_length: int, targets_length: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i, ex in enumerate(examples):
        if "inputs" not in ex or "targets" not in ex:
            raise DataError(f"example {i} needs 'inputs' and 'targets'; has {sorted(ex)}")
        out.append(
            (
                trim_with_eos(ex["inputs"], inputs_length, f"example {i} inputs"),
                trim_with_eos(ex["targets"], targets_length, f"example {i} targets"),
            )
        )
    return out


def _greedy_groups(
    lengths: Sequence[tuple[int, int]], inputs_length: int, targets_length: int
) -> list[list[int]]:
    rows: list[list[int]] = []
    cur: list[int] = []
    used_in = used_tg = 0
    for i, (n_in, n_tg) in enumerate(lengths):
        if cur and (used_in + n_in > inputs_length or used_tg + n_tg > targets_length):
            rows.append(cur)
            cur, used_in, used_tg = [], 0, 0
        cur.append(i)
        used_in += n_in
        used_tg += n_tg
    if cur:
        rows.append(cur)
    return rows


def pack_examples(
    examples: Sequence[Mapping[str, Any]], inputs_length: int, targets_length: int
) -> list[list[int]]:
    """Greedy sequential packing (facts §1.11): example indices of each row, in order.

    An example joins the current row only if BOTH its (truncated) inputs and targets
    still fit; otherwise the row is closed and a new one started.
    """
    pairs = _pairs(examples, inputs_length, targets_length)
    return _greedy_groups([(a.size, b.size) for a, b in pairs], inputs_length, targets_length)


def _fill(
    rows: list[list[np.ndarray]], length: int, num_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tokens = np.zeros((num_rows, length), np.int32)
    segments = np.zeros((num_rows, length), np.int32)
    positions = np.zeros((num_rows, length), np.int32)
    for r, seqs in enumerate(rows):
        start = 0
        for s, seq in enumerate(seqs, start=1):
            end = start + seq.size
            tokens[r, start:end] = seq
            segments[r, start:end] = s
            positions[r, start:end] = np.arange(seq.size)
            start = end
    return tokens, segments, positions


def shift_right_per_segment(targets: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Targets shifted right by one, 0 wherever a new segment (or padding) begins."""
    shifted = np.zeros_like(targets)
    shifted[:, 1:] = targets[:, :-1]
    prev_seg = np.zeros_like(segments)
    prev_seg[:, 1:] = segments[:, :-1]
    return np.where(segments == prev_seg, shifted, 0).astype(targets.dtype)


def row_groups(
    sizes: Sequence[tuple[int, int]],
    inputs_length: int,
    targets_length: int,
    pack: bool,
    num_rows: int | None,
) -> tuple[list[list[int]], int]:
    """Which examples share each row, and the batch's row count.

    ``pack`` groups greedily by the per-example (inputs, targets) ``sizes`` within the
    row lengths; otherwise one example per row. ``num_rows`` fixes the row count
    (DataError when the examples need more rows).
    """
    if pack:
        groups = _greedy_groups(list(sizes), inputs_length, targets_length)
    else:
        groups = [[i] for i in range(len(sizes))]
    rows = len(groups) if num_rows is None else num_rows
    if len(groups) > rows:
        raise DataError(
            f"the examples need {len(groups)} rows but num_rows={num_rows}; "
            "pass fewer examples or a larger num_rows"
        )
    return groups, rows


def encdec_features(
    examples: Sequence[Mapping[str, Any]],
    inputs_length: int,
    targets_length: int,
    pack: bool,
    num_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """Features of one batch; see the module docstring for the layout.

    ``pack=True`` packs greedily (rows = rows used); ``pack=False`` puts one example per
    row. ``num_rows`` pads the batch with all-zero rows up to that count (DataError when
    the examples need more rows).
    """
    pairs = _pairs(examples, inputs_length, targets_length)
    groups, rows = row_groups(
        [(a.size, b.size) for a, b in pairs], inputs_length, targets_length, pack, num_rows
    )
    enc, enc_seg, enc_pos = _fill([[pairs[i][0] for i in g] for g in groups], inputs_length, rows)
    dec, dec_seg, dec_pos = _fill([[pairs[i][1] for i in g] for g in groups], targets_length, rows)
    return {
        "encoder_input_tokens": enc,
        "encoder_segment_ids": enc_seg,
        "encoder_positions": enc_pos,
        "decoder_target_tokens": dec,
        "decoder_input_tokens": shift_right_per_segment(dec, dec_seg),
        "decoder_segment_ids": dec_seg,
        "decoder_positions": dec_pos,
        "decoder_loss_weights": (dec > 0).astype(np.int32),
    }
