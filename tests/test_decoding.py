"""The kernel's search algorithms on scripted decoders (facts §5.4, §7.3).

A :class:`TableDecoder` returns, for every row, logits that depend only on that row's
token history, drawn once from a seeded generator; so the probability of every sequence
is known and beam search can be checked against brute-force enumeration.
"""

from __future__ import annotations

import itertools
import math
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from t5kernel import decoding
from t5kernel.errors import ConfigError

EOS, PAD = 1, 0


class TableDecoder:
    """Logits as a deterministic function of (example, history)."""

    def __init__(self, batch_size, num_beams, vocab, seed=0, table=None, scale=2.0, default=None):
        self.k, self.vocab, self.seed, self.scale = num_beams, vocab, seed, scale
        self.default = default
        self.table = {} if table is None else table
        self.hist = [(r // num_beams, ()) for r in range(batch_size * num_beams)]
        self.calls = 0

    def logits_for(self, example, history):
        key = (example, history)
        if key not in self.table and self.default is not None:
            return torch.tensor(self.default, dtype=torch.float32)
        if key not in self.table:
            rng = np.random.default_rng(abs(hash((self.seed, key))) % 2**32)
            self.table[key] = rng.normal(size=self.vocab) * self.scale
        return torch.tensor(self.table[key], dtype=torch.float32)

    def step(self, tokens):
        self.calls += 1
        if tokens is not None:
            pairs = zip(self.hist, tokens.tolist(), strict=True)
            self.hist = [(e, h + (int(t),)) for (e, h), t in pairs]
        return torch.stack([self.logits_for(e, h) for e, h in self.hist])

    def reorder(self, rows):
        self.hist = [self.hist[r] for r in rows.tolist()]

    def logprob(self, example, seq):
        total = 0.0
        for i, tok in enumerate(seq):
            lp = torch.log_softmax(self.logits_for(example, tuple(seq[:i])), -1)
            total += float(lp[tok])
        return total


def gnmt(lp, n, alpha):
    return lp / ((5.0 + n) / 6.0) ** alpha


def all_finished(vocab, max_len):
    """Every sequence that ends in EOS within ``max_len`` tokens (no earlier EOS)."""
    others = [t for t in range(vocab) if t != EOS]
    for n in range(1, max_len + 1):
        for body in itertools.product(others, repeat=n - 1):
            yield (*body, EOS)


def strip(row):
    row = [int(t) for t in row]
    return tuple(row[: row.index(EOS) + 1]) if EOS in row else tuple(row)


# --------------------------------------------------------------------------- greedy
def test_greedy_follows_argmax_and_pads_after_eos():
    dec = TableDecoder(3, 1, 5, seed=3)
    ids = decoding.greedy_search(dec, 3, 6)
    for e in range(3):
        row = strip(ids[e])
        for i, tok in enumerate(row):  # each token is the argmax given its prefix
            assert tok == int(dec.logits_for(e, row[:i]).argmax())
        assert all(int(t) == PAD for t in ids[e, len(row):])
    assert ids.shape[1] == max(len(strip(r)) for r in ids)  # stopped when all rows ended


# ---------------------------------------------------------------------- beam search
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), alpha=st.sampled_from([0.0, 0.6, 1.0, 2.0]))
def test_mtf_beam_is_exact_when_wide_enough(seed, alpha):
    """K >= every live prefix: beam search = brute force over the GNMT-scored endings."""
    vocab, max_len, k = 4, 3, 27
    dec = TableDecoder(2, k, vocab, seed=seed)
    ids, scores = decoding.beam_search(dec, 2, k, max_len, alpha=alpha, length_penalty="mtf")
    for e in range(2):
        best = max(all_finished(vocab, max_len),
                   key=lambda s: gnmt(dec.logprob(e, s), len(s), alpha))
        got = strip(ids[e])
        want = gnmt(dec.logprob(e, best), len(best), alpha)
        assert got[-1] == EOS
        assert math.isclose(gnmt(dec.logprob(e, got), len(got), alpha), want, abs_tol=1e-5)
        assert math.isclose(float(scores[e]), want, abs_tol=1e-4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_hf_beam_is_exact_without_length_penalty_when_wide_enough(seed):
    """HF reference, alpha 0: its early-stop heuristic is exact, and max-length
    hypotheses count as finished."""
    vocab, max_len, k = 4, 3, 40
    dec = TableDecoder(2, k, vocab, seed=seed)
    ids, scores = decoding.beam_search(dec, 2, k, max_len, alpha=0.0, length_penalty="hf")
    others = [t for t in range(vocab) if t != EOS]
    for e in range(2):
        cands = list(all_finished(vocab, max_len)) + list(itertools.product(others, repeat=3))
        best = max(dec.logprob(e, s) for s in cands)
        assert math.isclose(dec.logprob(e, strip(ids[e])), best, abs_tol=1e-5)
        assert math.isclose(float(scores[e]), best, abs_tol=1e-4)


def scripted_penalty_case():
    """Two endings: ``[EOS]`` (log p = -1) and ``[2, 3, EOS]`` (log p = -2.4); every
    other continuation is uniform over 50 tokens, so much worse."""
    v = 50
    big = -30.0
    table = {}

    def dist(pairs):
        logits = np.full(v, big)
        for tok, lp in pairs:
            logits[tok] = lp
        return logits  # close to log-probs already: every other entry ~e^-30

    table[(0, ())] = dist([(EOS, -1.0), (2, math.log(1 - math.exp(-1.0)))])
    table[(0, (2,))] = dist([(3, 0.0)])
    p = math.log(1 - math.exp(-1.0))
    table[(0, (2, 3))] = dist([(EOS, -2.4 - p), (4, math.log(1 - math.exp(-2.4 - p)))])
    return table, v


def test_length_penalty_references_differ_as_documented():
    """Pinned difference: with alpha = 1, HF's log p / len prefers the longer ending
    (-2.4 / 3 = -0.8 > -1), the paper's GNMT penalty the shorter (-1 / 1 > -2.4 / (8/6))."""
    table, v = scripted_penalty_case()
    for style, want in (("hf", (2, 3, EOS)), ("mtf", (EOS,))):
        dec = TableDecoder(1, 2, v, table=dict(table), default=np.zeros(v))
        ids, _ = decoding.beam_search(dec, 1, 2, 5, alpha=1.0, length_penalty=style)
        assert strip(ids[0]) == want, style


def test_beam_of_one_example_is_independent_of_batch():
    k, vocab = 4, 7
    both = TableDecoder(3, k, vocab, seed=11, scale=1.0)
    ids, _ = decoding.beam_search(both, 3, k, 6, alpha=0.6)
    for e in range(3):
        alone = TableDecoder(1, k, vocab, seed=11, scale=1.0)
        alone.hist = [(e, ()) for _ in range(k)]
        one, _ = decoding.beam_search(alone, 1, k, 6, alpha=0.6)
        assert strip(one[0]) == strip(ids[e])


def test_mtf_without_any_ending_returns_best_alive():
    v = 8  # EOS never among the 2K = 4 best continuations
    dec = TableDecoder(1, 2, v, table={}, default=np.array([-5, -50, 0, -1, -1.5, -2, -2.5, -3.0]))
    ids, score = decoding.beam_search(dec, 1, 2, 3, alpha=0.6, length_penalty="mtf")
    assert strip(ids[0]) == (2, 2, 2)
    assert math.isclose(float(score[0]), dec.logprob(0, (2, 2, 2)), abs_tol=1e-5)


def test_bad_search_options():
    dec = TableDecoder(1, 2, 4)
    with pytest.raises(ConfigError, match="allowed: mtf, hf"):
        decoding.beam_search(dec, 1, 2, 3, length_penalty="gnmt")
    with pytest.raises(ConfigError, match="allowed: mean_logit, mean_prob"):
        decoding.EnsembleDecoder([dec], "max")


# ------------------------------------------------------------------------ ensembles
def test_ensemble_reductions():
    a, b = TableDecoder(2, 1, 6, seed=1), TableDecoder(2, 1, 6, seed=2)
    la, lb = a.step(None), b.step(None)
    a2, b2 = TableDecoder(2, 1, 6, seed=1), TableDecoder(2, 1, 6, seed=2)
    mean_logit = decoding.EnsembleDecoder([a2, b2], "mean_logit").step(None)
    # averaging log-probs then renormalising == softmax of the averaged logits (paper)
    assert torch.allclose(mean_logit, torch.log_softmax((la + lb) / 2, -1), atol=1e-6)
    a3, b3 = TableDecoder(2, 1, 6, seed=1), TableDecoder(2, 1, 6, seed=2)
    mean_prob = decoding.EnsembleDecoder([a3, b3], "mean_prob").step(None)
    want = torch.log((torch.softmax(la, -1) + torch.softmax(lb, -1)) / 2)
    assert torch.allclose(mean_prob, want, atol=1e-6)
    assert torch.allclose(mean_prob.exp().sum(-1), torch.ones(2), atol=1e-6)


def test_ensemble_of_copies_decodes_like_one_member():
    one = TableDecoder(2, 3, 6, seed=5)
    ids, _ = decoding.beam_search(one, 2, 3, 5)
    pair = decoding.EnsembleDecoder([TableDecoder(2, 3, 6, seed=5), TableDecoder(2, 3, 6, seed=5)])
    ids2, _ = decoding.beam_search(pair, 2, 3, 5)
    assert torch.equal(ids, ids2)
    members = pair.members
    assert members[0].hist == members[1].hist  # reorders reach every member


# ----------------------------------------------------------------------- compaction
class SelectableTableDecoder(TableDecoder):
    """A TableDecoder that can drop rows, recording how many rows each step computed."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.rows_per_step = []

    def step(self, tokens):
        out = super().step(tokens)
        self.rows_per_step.append(out.shape[0])
        return out

    def select(self, rows):
        self.reorder(rows)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), style=st.sampled_from(["mtf", "hf"]),
       alpha=st.sampled_from([0.0, 0.6]), k=st.sampled_from([1, 2, 4]))
def test_dropping_settled_rows_changes_nothing(seed, style, alpha, k):
    """Rows whose result is fixed leave the decoder; outputs and scores stay identical."""
    vocab, b, n = 6, 5, 7
    plain = TableDecoder(b, k, vocab, seed=seed, scale=1.5)
    smart = SelectableTableDecoder(b, k, vocab, seed=seed, scale=1.5)
    if k == 1:
        want = decoding.greedy_search(plain, b, n)
        got = decoding.greedy_search(smart, b, n)
        assert torch.equal(want, got)
    else:
        want, want_s = decoding.beam_search(plain, b, k, n, alpha, style)
        got, got_s = decoding.beam_search(smart, b, k, n, alpha, style)
        assert torch.equal(want, got)
        assert torch.allclose(want_s, got_s)
    assert smart.rows_per_step == sorted(smart.rows_per_step, reverse=True)


def test_greedy_stops_computing_finished_rows():
    dec = SelectableTableDecoder(6, 1, 5, seed=4, scale=1.5)
    ids = decoding.greedy_search(dec, 6, 12)
    lengths = [len(strip(r)) for r in ids]
    assert min(lengths) < max(lengths)  # the case is informative
    # step t computes exactly the rows that have not ended before t
    assert dec.rows_per_step == [sum(n > t for n in lengths) for t in range(max(lengths))]


# --------------------------------------------------------------------- static shapes
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), style=st.sampled_from(["mtf", "hf"]),
       alpha=st.sampled_from([0.0, 0.6]), k=st.sampled_from([1, 2, 3]))
def test_static_shapes_keep_every_row_and_change_nothing(seed, style, alpha, k):
    """With static_shapes the search never drops rows (even from a decoder that could),
    calls sync once per step, and returns the dynamic search's ids and scores."""
    vocab, b, n = 6, 5, 7
    dynamic = SelectableTableDecoder(b, k, vocab, seed=seed, scale=1.5)
    static = SelectableTableDecoder(b, k, vocab, seed=seed, scale=1.5)
    syncs = []
    if k == 1:
        want = decoding.greedy_search(dynamic, b, n)
        got = decoding.greedy_search(static, b, n, static_shapes=True,
                                     sync=lambda: syncs.append(1))
    else:
        want, want_s = decoding.beam_search(dynamic, b, k, n, alpha, style)
        got, got_s = decoding.beam_search(static, b, k, n, alpha, style, static_shapes=True,
                                          sync=lambda: syncs.append(1))
        assert torch.equal(want_s, got_s)
    assert torch.equal(want, got)
    assert static.rows_per_step == [b * k] * len(static.rows_per_step)
    assert len(syncs) == len(static.rows_per_step)


def test_greedy_static_runs_until_every_row_ends():
    dec = SelectableTableDecoder(6, 1, 5, seed=4, scale=1.5)
    ids = decoding.greedy_search(dec, 6, 12, static_shapes=True)
    lengths = [len(strip(r)) for r in ids]
    assert min(lengths) < max(lengths)  # rows end at different steps...
    assert dec.rows_per_step == [6] * max(lengths)  # ...and all are computed to the last


class RecordingModel(torch.nn.Module):
    """A model whose incremental decoders are TableDecoders; records the keywords."""

    def __init__(self, static_keywords: bool):
        super().__init__()
        self.seen = []
        if not static_keywords:  # a third-party model that predates static shapes
            self.incremental_decoder = self._plain

    def _plain(self, batch, num_beams, use_cache):
        self.seen.append({})
        return TableDecoder(batch["encoder_input_tokens"].shape[0], num_beams, 5, seed=2)

    def incremental_decoder(self, batch, num_beams, use_cache, **static):
        self.seen.append(static)
        return TableDecoder(batch["encoder_input_tokens"].shape[0], num_beams, 5, seed=2)


@pytest.mark.parametrize("beams", [1, 2])
def test_generate_passes_static_keywords_only_when_asked(beams):
    batch = {"encoder_input_tokens": torch.ones(3, 4, dtype=torch.long)}
    old = RecordingModel(static_keywords=False)
    want = decoding.generate(old, batch, 6, num_beams=beams)
    assert old.seen == [{}]
    new = RecordingModel(static_keywords=True)
    got = decoding.generate([new, new], batch, 6, num_beams=beams, static_shapes=True)
    assert new.seen == [{"static_shapes": True, "max_length": 6}] * 2
    assert torch.equal(got, want)


# ----------------------------------------------------------------------------- argmax
_SPECIAL = st.sampled_from([0.0, 1.0, -1.0, 2.5, float("inf"), float("-inf"), float("nan")])


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(1, 6), blocks=st.integers(1, 5), seed=st.integers(0, 2**31 - 1),
       specials=st.lists(st.tuples(st.integers(0, 10**6), _SPECIAL), max_size=12),
       column_major=st.booleans(), tied=st.booleans())
def test_argmax_is_torch_argmax(rows, blocks, seed, specials, column_major, tied):
    """The blocked argmax returns torch's index bit-for-bit: ties (first index wins),
    +-inf and NaN (ranked maximal, first NaN wins), in both memory layouts."""
    vocab = 4 * blocks
    gen = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 3, (rows, vocab), generator=gen).float() if tied else \
        torch.randn(rows, vocab, generator=gen)
    flat = values.view(-1)
    for where, value in specials:
        flat[where % flat.numel()] = value
    logits = values.t().contiguous().t() if column_major else values
    with mock.patch.object(decoding, "ARGMAX_BLOCK", 4), \
            mock.patch.object(decoding, "ARGMAX_BLOCKED_MIN", 1):
        assert torch.equal(decoding.argmax(logits), values.argmax(-1))


@pytest.mark.parametrize("shape", [(32, 32128), (1, 32128), (128, 4096), (4, 1000), (8, 8)])
@pytest.mark.parametrize("column_major", [False, True])
def test_argmax_at_model_shapes(shape, column_major):
    """Real vocabulary sizes, one of them not a multiple of the block (plain argmax)."""
    values = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    values[0, -1] = values[0].max()  # a tie with a later index
    logits = values.t().contiguous().t() if column_major else values
    assert torch.equal(decoding.argmax(logits), values.argmax(-1))


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 9), vocab=st.integers(1, 40), block=st.integers(1, 64),
       column_major=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_row_major_copies_column_major_logits(rows, vocab, block, column_major, seed):
    """Column-major step logits come back row-contiguous with the same values (copied in
    blocks of columns, the last one partial); anything else is returned as it is."""
    values = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed))
    logits = values.t().contiguous().t() if column_major else values
    with mock.patch.object(decoding, "ROW_MAJOR_BLOCK", block):
        out = decoding.row_major(logits)
    assert torch.equal(out, values)
    if column_major and rows > 1 and vocab > 1:
        assert out.is_contiguous() and out.data_ptr() != logits.data_ptr()
    else:
        assert out is logits
    assert torch.equal(decoding.log_probs(logits), torch.log_softmax(values, -1))


# ------------------------------------------------------------------------------ top-k
def _assert_same_topk(x: torch.Tensor, got: tuple, want: tuple) -> None:
    """Equal values (NaN where torch has NaN), and indices that are distinct per row and
    point at those values: which of several equal values is taken is unspecified."""
    exact = dict(rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got[0], want[0], **exact)
    torch.testing.assert_close(x.gather(-1, got[1]), got[0], **exact)
    assert all(len(set(row)) == len(row) for row in got[1].tolist())


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(1, 6), blocks=st.integers(2, 9), n=st.integers(1, 5),
       seed=st.integers(0, 2**31 - 1), tied=st.booleans(),
       specials=st.lists(st.tuples(st.integers(0, 10**6), _SPECIAL), max_size=12))
def test_row_topk_is_torch_topk(rows, blocks, n, seed, tied, specials):
    """The blocked top-k gives torch's values, sorted, for ties, +-inf and NaN (ranked
    largest); with distinct values the indices too."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 3, (rows, 4 * blocks), generator=gen).float() if tied else \
        torch.randn(rows, 4 * blocks, generator=gen)
    for where, value in specials:
        x.view(-1)[where % x.numel()] = value
    with mock.patch.object(decoding, "TOPK_BLOCK", 4), \
            mock.patch.object(decoding, "TOPK_BLOCKED_MIN", 1):
        got = decoding.row_topk(x, n)
    want = torch.topk(x, n)
    _assert_same_topk(x, got, want)
    if not tied and not specials:
        assert torch.equal(got[1], want[1])


@settings(max_examples=100, deadline=None)
@given(batch=st.integers(1, 4), beams=st.integers(1, 4), blocks=st.integers(2, 9),
       seed=st.integers(0, 2**31 - 1), tied=st.booleans())
def test_beam_candidates_are_the_top_of_all_beams(batch, beams, blocks, seed, tied):
    """Each beam cut to its best before the beam scores are added: the values (bit for
    bit) and, without ties, the indices of one top-k over every beam's continuations."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, beams, 4 * blocks)
    logp = (torch.randint(-3, 0, shape, generator=gen).float() if tied
            else torch.randn(shape, generator=gen).log_softmax(-1))
    alive = torch.randn(batch, beams, generator=gen)
    alive[:, 1:] -= 1e9 * (seed % 2)  # the first step's lone live beam
    flat = (logp + alive[:, :, None]).view(batch, -1)
    n = min(2 * beams, flat.shape[-1])
    with mock.patch.object(decoding, "TOPK_BLOCK", 4), \
            mock.patch.object(decoding, "TOPK_BLOCKED_MIN", 1):
        got = decoding.beam_candidates(logp, alive, n)
    want = torch.topk(flat, n)
    _assert_same_topk(flat, got, want)
    if not tied:
        assert torch.equal(got[1], want[1])


@pytest.mark.parametrize("shape", [(128, 32128), (32, 32128), (8, 1000)])
def test_row_topk_at_model_shapes(shape):
    """Real vocabulary sizes (the last not a multiple of the block: plain topk)."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    x[:, -28:] = float("-inf")  # padded vocabulary columns
    got, want = decoding.row_topk(x, 8), torch.topk(x, 8)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
