"""Encoder-decoder feature conversion and packing (facts §1.10, §1.11)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t5k_builtin.model.features import (
    FEATURE_KEYS,
    encdec_features,
    pack_examples,
    trim_with_eos,
)
from t5kernel.errors import DataError

IN_LEN, TG_LEN = 12, 9


def _seq(max_len):
    """Token ids 2..50 followed by EOS; may exceed the row length (truncation)."""
    return st.lists(st.integers(2, 50), min_size=0, max_size=max_len).map(
        lambda xs: np.array(xs + [1], dtype=np.int64)
    )


examples_st = st.lists(
    st.fixed_dictionaries({"inputs": _seq(IN_LEN + 3), "targets": _seq(TG_LEN + 3)}),
    min_size=1,
    max_size=10,
)


def _segments_of(tokens, segments):
    """{segment id: token array} of one row."""
    return {int(s): tokens[segments == s] for s in np.unique(segments) if s > 0}


@settings(max_examples=60, deadline=None)
@given(examples_st)
def test_packing_invariants(examples):
    groups = pack_examples(examples, IN_LEN, TG_LEN)
    assert [i for g in groups for i in g] == list(range(len(examples)))  # each once, in order
    trimmed = [
        (trim_with_eos(e["inputs"], IN_LEN), trim_with_eos(e["targets"], TG_LEN)) for e in examples
    ]
    for g, nxt in zip(groups, groups[1:], strict=False):  # greedy: the next example did not fit
        used_in = sum(trimmed[i][0].size for i in g)
        used_tg = sum(trimmed[i][1].size for i in g)
        n_in, n_tg = trimmed[nxt[0]][0].size, trimmed[nxt[0]][1].size
        assert used_in + n_in > IN_LEN or used_tg + n_tg > TG_LEN

    f = encdec_features(examples, IN_LEN, TG_LEN, pack=True)
    assert set(f) == set(FEATURE_KEYS)
    assert all(v.dtype == np.int32 for v in f.values())
    assert f["encoder_input_tokens"].shape == (len(groups), IN_LEN)
    assert f["decoder_target_tokens"].shape == (len(groups), TG_LEN)
    for r, g in enumerate(groups):
        for prefix, k, length in (("encoder", 0, IN_LEN), ("decoder", 1, TG_LEN)):
            tokens = f["encoder_input_tokens" if k == 0 else "decoder_target_tokens"][r]
            seg, pos = f[f"{prefix}_segment_ids"][r], f[f"{prefix}_positions"][r]
            # segments are contiguous, non-decreasing, padding (0) only at the end
            nz = seg[seg > 0]
            assert (np.diff(nz) >= 0).all() and (seg[nz.size :] == 0).all()
            assert (tokens[seg == 0] == 0).all() and (pos[seg == 0] == 0).all()
            found = _segments_of(tokens, seg)
            for s, i in enumerate(g, start=1):
                expected = trimmed[i][k]
                assert expected[-1] == 1 and expected.size <= length
                got = found.get(s, np.zeros(0, np.int64))
                assert np.array_equal(got, expected)
                assert np.array_equal(pos[seg == s], np.arange(expected.size))
        tgt, seg = f["decoder_target_tokens"][r], f["decoder_segment_ids"][r]
        dec_in = f["decoder_input_tokens"][r]
        for s in _segments_of(tgt, seg):
            t = tgt[seg == s]
            assert np.array_equal(dec_in[seg == s], np.concatenate([[0], t[:-1]]))
        assert (dec_in[seg == 0] == 0).all()
        assert np.array_equal(f["decoder_loss_weights"][r], (tgt > 0).astype(np.int32))


@settings(max_examples=30, deadline=None)
@given(examples_st)
def test_unpacked_one_example_per_row(examples):
    f = encdec_features(examples, IN_LEN, TG_LEN, pack=False)
    assert f["encoder_input_tokens"].shape[0] == len(examples)
    for r, e in enumerate(examples):
        for key, seg_key, pos_key, src, length in (
            ("encoder_input_tokens", "encoder_segment_ids", "encoder_positions", "inputs", IN_LEN),
            (
                "decoder_target_tokens",
                "decoder_segment_ids",
                "decoder_positions",
                "targets",
                TG_LEN,
            ),
        ):
            seq = trim_with_eos(e[src], length)
            n = seq.size
            assert np.array_equal(f[key][r, :n], seq) and (f[key][r, n:] == 0).all()
            assert (f[seg_key][r, :n] == 1).all() and (f[seg_key][r, n:] == 0).all()
            assert np.array_equal(f[pos_key][r, :n], np.arange(n))
        t = f["decoder_target_tokens"][r]
        assert f["decoder_input_tokens"][r, 0] == 0
        n = int((t > 0).sum())
        assert np.array_equal(f["decoder_input_tokens"][r, 1:n], t[: n - 1])


def test_hand_worked_packing():
    ex = [
        {"inputs": [7, 8, 5, 1], "targets": [3, 9, 1]},
        {"inputs": [8, 4, 9, 3, 1], "targets": [4, 1]},
        {"inputs": [9, 1], "targets": [5, 6, 7, 8, 1]},  # inputs fit row 1, targets do not
    ]
    assert pack_examples(ex, 12, 7) == [[0, 1], [2]]
    assert pack_examples(ex, 12, 10) == [[0, 1, 2]]
    f = encdec_features(ex, 12, 7, pack=True)
    np.testing.assert_array_equal(
        f["encoder_input_tokens"], [[7, 8, 5, 1, 8, 4, 9, 3, 1, 0, 0, 0], [9, 1] + [0] * 10]
    )
    np.testing.assert_array_equal(
        f["encoder_segment_ids"], [[1, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0], [1, 1] + [0] * 10]
    )
    np.testing.assert_array_equal(
        f["encoder_positions"], [[0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 0, 0], [0, 1] + [0] * 10]
    )
    np.testing.assert_array_equal(
        f["decoder_target_tokens"], [[3, 9, 1, 4, 1, 0, 0], [5, 6, 7, 8, 1, 0, 0]]
    )
    np.testing.assert_array_equal(
        f["decoder_input_tokens"], [[0, 3, 9, 0, 4, 0, 0], [0, 5, 6, 7, 8, 0, 0]]
    )
    np.testing.assert_array_equal(
        f["decoder_segment_ids"], [[1, 1, 1, 2, 2, 0, 0], [1, 1, 1, 1, 1, 0, 0]]
    )
    np.testing.assert_array_equal(
        f["decoder_positions"], [[0, 1, 2, 0, 1, 0, 0], [0, 1, 2, 3, 4, 0, 0]]
    )
    np.testing.assert_array_equal(
        f["decoder_loss_weights"], [[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 0]]
    )


def test_truncation_keeps_eos_last():
    np.testing.assert_array_equal(trim_with_eos([5, 6, 7, 8, 1], 3), [5, 6, 1])
    np.testing.assert_array_equal(trim_with_eos([5, 6, 1], 3), [5, 6, 1])
    f = encdec_features([{"inputs": [4, 4, 4, 4, 1], "targets": [2, 2, 2, 1]}], 3, 2, pack=False)
    np.testing.assert_array_equal(f["encoder_input_tokens"], [[4, 4, 1]])
    np.testing.assert_array_equal(f["decoder_target_tokens"], [[2, 1]])


def test_num_rows_pads_and_limits():
    ex = [{"inputs": [3, 1], "targets": [4, 1]}] * 3
    f = encdec_features(ex, 4, 4, pack=True, num_rows=4)
    assert f["encoder_input_tokens"].shape == (4, 4)
    assert (f["encoder_segment_ids"][2:] == 0).all() and (f["decoder_loss_weights"][2:] == 0).all()
    with pytest.raises(DataError):
        encdec_features(ex, 4, 4, pack=False, num_rows=2)


def test_bad_examples_raise_data_error():
    with pytest.raises(DataError):
        encdec_features([{"inputs": [1]}], 4, 4, pack=True)
    with pytest.raises(DataError):
        encdec_features([{"inputs": [[1, 2]], "targets": [1]}], 4, 4, pack=True)
    with pytest.raises(DataError):
        encdec_features([{"inputs": [-3, 1], "targets": [1]}], 4, 4, pack=True)
