"""Random-span corruption (facts §3.2, §3.4-§3.6) and the batched primitives behind it."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from test_iid_spans import docs_of, reconstruct  # same vocabulary layout (BASE = 32000)

from t5k_builtin.configs import IidSpansConfig
from t5k_builtin.objectives import batched, noise, pipeline
from t5k_builtin.objectives.denoise import IidSpans
from t5k_builtin.objectives.span import Span, SpanConfig
from t5kernel.api import BuildContext, Objective
from t5kernel.errors import ConfigError
from t5kernel.testing import unchecked

V = 32100
BASE = 32000
VOCAB = SimpleNamespace(vocab_size=V, eos_id=1, base_vocab_size=BASE)
CONTEXT = BuildContext(extras={"vocabulary": VOCAB})
WORDS = "Thank you for inviting me to your party last week .".split()
TOK = {w: 100 + i for i, w in enumerate(WORDS)}
X, Y, Z = V - 1, V - 2, V - 3


def ids(text):
    return [TOK[w] for w in text.split()]


def span(**options) -> Span:
    return Span(unchecked(SpanConfig, **options), CONTEXT)


def iid(**options) -> IidSpans:
    return IidSpans(unchecked(IidSpansConfig, **options), CONTEXT)


def strip_eos(a):
    assert a[-1] == 1 and 1 not in a[:-1].tolist()
    return a[:-1].tolist()


def runs(mask_row) -> int:
    m = np.asarray(mask_row, dtype=np.int8)
    return int(np.sum(np.diff(np.concatenate([[0], m])) == 1))


def examples(obj, docs, seed, inputs_length=512, targets_length=114):
    return list(
        obj.examples(iter(docs), inputs_length, targets_length, np.random.default_rng(seed))
    )


# ------------------------------------------------------------------ paper, Table 3


def test_satisfies_protocol_and_helper_lengths():
    assert isinstance(span(), Objective)
    assert span().raw_length(512, 114) == 568
    assert span(mean_noise_span_length=10.0).raw_length(512, 99) == 591
    assert span(noise_density=0.5, mean_noise_span_length=2.0).raw_length(512, 512) == 682
    with pytest.raises(ConfigError, match="need >= 114"):
        span().raw_length(512, 113)
    with pytest.raises(ConfigError, match="need >= 115"):
        span(trailing_sentinel=True).raw_length(512, 114)


def test_table3_random_spans_row():
    """P Table 3 "random spans": "for inviting me" and "your party last" corrupted."""
    tokens = np.array(ids(" ".join(WORDS)), dtype=np.int32)
    mask = np.array([w in ("for", "inviting", "me", "your", "party", "last") for w in WORDS])
    want_inputs = [*ids("Thank you"), X, *ids("to"), Y, *ids("week ."), 1]
    want_targets = [X, *ids("for inviting me"), Y, *ids("your party last"), Z, 1]
    one = span().encode(tokens, mask, 512, 114)
    assert one["inputs"].tolist() == want_inputs and one["targets"].tolist() == want_targets
    (batch,) = span().encode_batch(tokens[None], mask[None], 512, 114)
    assert batch["inputs"].tolist() == want_inputs and batch["targets"].tolist() == want_targets


def test_no_trailing_sentinel_quirk_and_fix():
    """A reference mask ends with noise, so targets end with a noise span (facts §3.6)."""
    tokens = np.array(ids("Thank you for inviting me to your party"), dtype=np.int32)
    clean_ends, noise_ends = np.array([[2, 3]]), np.array([[3, 5]])  # C2 N3 C1 N2
    mask = batched.spans_to_mask(clean_ends, noise_ends)
    assert mask[0].tolist() == [False, False, True, True, True, False, True, True]
    ref_in, ref_tg = batched.span_corruption_pairs(tokens[None], clean_ends, noise_ends, V)
    assert ref_in[0].tolist() == [*ids("Thank you"), X, *ids("to"), Y, 1]
    assert ref_tg[0].tolist() == [X, *ids("for inviting me"), Y, *ids("your party"), 1]
    fix_in, fix_tg = batched.span_corruption_pairs(tokens[None], clean_ends, noise_ends, V, 1, True)
    assert fix_in.tolist() == ref_in.tolist()
    assert fix_tg[0].tolist() == [*ref_tg[0, :-1].tolist(), Z, 1]
    assert span(trailing_sentinel=True).encode(tokens, mask[0], 512, 115)["targets"].tolist() == (
        fix_tg[0].tolist()
    )


# ------------------------------------------------------------ masks: structure, law


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 700),
    st.sampled_from([0.1, 0.15, 0.25, 0.5, 0.9]),
    st.sampled_from([1.0, 2.0, 3.0, 5.0, 10.0]),
    st.integers(1, 9),
    st.integers(0, 2**32 - 1),
)
def test_random_spans_mask_structure(length, density, mean, rows, seed):
    rng = np.random.default_rng(seed)
    masks = batched.random_spans_noise_mask(rows, length, density, rng, mean)
    reference = noise.random_spans_noise_mask(length, density, rng, mean)
    padded, num_noise, num_spans = batched.span_counts(length, density, mean)
    assert masks.shape == (rows, length) and masks.dtype == bool
    for row in masks:  # same counts as the per-example reference, starts clean
        assert row.sum() == reference.sum() and runs(row) == runs(reference)
        assert not row[0]
        if length >= 2:
            assert row[-1] and row.sum() == num_noise and runs(row) == num_spans


def test_counts_at_paper_defaults():
    assert batched.span_counts(568, 0.15, 3.0) == (568, 85, 28)
    assert batched.span_counts(1, 0.15, 3.0) == (2, 1, 1)


def _chi2_uniform(counter: Counter, n_outcomes: int, n_samples: int) -> float:
    observed = np.array(list(counter.values()) + [0] * (n_outcomes - len(counter)))
    return stats.chisquare(observed, np.full(n_outcomes, n_samples / n_outcomes)).pvalue


def test_segmentation_law_is_uniform_like_the_reference():
    """Every split of 7 items into 3 non-empty runs (C(6,2) = 15) equally likely, for the
    batched sampler and the reference alike."""
    n = 15000
    rng = np.random.default_rng(0)
    ends = batched.segmentations(7, 3, n, rng)
    lengths = batched.run_lengths(ends)
    assert (lengths >= 1).all() and (lengths.sum(1) == 7).all()
    ours = Counter(map(tuple, lengths.tolist()))
    ref = Counter(tuple(noise._random_segmentation(7, 3, rng).tolist()) for _ in range(n))
    assert set(ours) == set(ref) and len(ours) == 15
    assert _chi2_uniform(ours, 15, n) > 1e-3 and _chi2_uniform(ref, 15, n) > 1e-3
    both = np.array([[ours[k] for k in sorted(ours)], [ref[k] for k in sorted(ours)]])
    assert stats.chi2_contingency(both).pvalue > 1e-3


def test_mask_law_matches_the_reference():
    """Length 9, density 0.35, mean 1.5: 3 noise tokens in 2 runs; the mask distribution of
    the batched sampler equals the reference's (uniform over the C(2,1) * C(5,1) masks)."""
    n = 10000
    rng = np.random.default_rng(1)
    ours = Counter(map(tuple, batched.random_spans_noise_mask(n, 9, 0.35, rng, 1.5).tolist()))
    ref = Counter(
        tuple(noise.random_spans_noise_mask(9, 0.35, rng, 1.5).tolist()) for _ in range(n)
    )
    assert set(ours) == set(ref) and len(ours) == 10
    assert _chi2_uniform(ours, 10, n) > 1e-3
    both = np.array([[ours[k] for k in sorted(ours)], [ref[k] for k in sorted(ours)]])
    assert stats.chi2_contingency(both).pvalue > 1e-3


def test_span_length_law_at_paper_shape():
    """568 tokens: 28 noise runs of mean 85/28; run lengths follow the same law as the
    reference's (two-sample KS over pooled runs)."""
    rng = np.random.default_rng(2)
    clean_ends, noise_ends = batched.random_spans_segments(400, 568, 0.15, rng, 3.0)
    ours = batched.run_lengths(noise_ends).reshape(-1)
    ref_masks = [noise.random_spans_noise_mask(568, 0.15, rng, 3.0) for _ in range(400)]
    ref = np.concatenate([np.diff(np.flatnonzero(np.diff(np.r_[0, m, 0])))[::2] for m in ref_masks])
    assert abs(ours.mean() - 85 / 28) < 1e-9 and abs(ref.mean() - 85 / 28) < 1e-9
    assert stats.ks_2samp(ours, ref).pvalue > 1e-3
    clean = batched.run_lengths(clean_ends)
    assert (clean >= 1).all() and (clean.sum(1) == 483).all()


def test_iid_mask_draws_like_per_example_calls():
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    masks = batched.iid_noise_mask(5, 40, 0.15, a)
    assert np.array_equal(masks, np.stack([noise.iid_noise_mask(40, 0.15, b) for _ in range(5)]))


# -------------------------------------------------------- encoders: batch == example


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 60),
    st.floats(0.0, 1.0),
    st.integers(1, 70),
    st.integers(0, 2**32 - 1),
)
def test_batched_encoders_equal_per_example(rows, length, density, max_length, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, BASE, (rows, length)).astype(np.int32)
    mask = rng.random((rows, length)) < density
    for fn_b, fn_1 in (
        (batched.noise_span_to_unique_sentinel, noise.noise_span_to_unique_sentinel),
        (batched.nonnoise_span_to_unique_sentinel, noise.nonnoise_span_to_unique_sentinel),
    ):
        values, lengths = batched.append_eos_after_trim(*fn_b(tokens, mask, V), max_length, 1)
        rows_out = batched.split_rows(values, lengths)
        for r in range(rows):
            want = pipeline.append_eos_after_trim(fn_1(tokens[r], mask[r], V), max_length, 1)
            assert rows_out[r].tolist() == want.tolist()


@settings(max_examples=50, deadline=None)
@given(
    st.integers(2, 700),
    st.sampled_from([0.1, 0.15, 0.5, 0.8]),
    st.sampled_from([1.0, 2.0, 3.0, 10.0]),
    st.integers(1, 5),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_structured_pairs_equal_mask_encoders(length, density, mean, rows, trailing, seed):
    """The fast path (from run ends) == the generic encoders of the same mask == noise.py."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, BASE, (rows, length)).astype(np.int32)
    clean_ends, noise_ends = batched.random_spans_segments(rows, length, density, rng, mean)
    mask = batched.spans_to_mask(clean_ends, noise_ends)
    fast_in, fast_tg = batched.span_corruption_pairs(tokens, clean_ends, noise_ends, V, 1, trailing)
    obj = span(trailing_sentinel=trailing)
    for r, pair in enumerate(obj.encode_batch(tokens, mask, 10**4, 10**4)):
        one = obj.encode(tokens[r], mask[r], 10**4, 10**4)
        assert fast_in[r].tolist() == pair["inputs"].tolist() == one["inputs"].tolist()
        assert fast_tg[r].tolist() == pair["targets"].tolist() == one["targets"].tolist()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 90), max_size=40),
    st.integers(1, 30),
    st.integers(1, 5),
    st.integers(1, 9),
)
def test_chunk_batches_is_split_tokens_in_order(doc_lengths, chunk_length, concat, batch_size):
    docs = [
        np.arange(1000 * i + 3, 1000 * i + 3 + n, dtype=np.int32) for i, n in enumerate(doc_lengths)
    ]
    want = list(
        pipeline.split_tokens(
            pipeline.reduce_concat_tokens(
                pipeline.select_random_chunk(docs, 10**6, np.random.default_rng(0)), concat
            ),
            chunk_length,
        )
    )
    got, sizes = [], []
    for batch in batched.chunk_batches(
        docs, chunk_length, 10**6, concat, np.random.default_rng(0), batch_size=batch_size
    ):
        sizes.append(batched.count_rows(batch))
        order = [None] * sizes[-1]
        for tokens, _, positions in batched.by_width(batch):
            for p, row in zip(positions.tolist(), tokens, strict=True):
                order[p] = row.tolist()
        got.extend(order)
    assert got == [c.tolist() for c in want]
    assert all(s >= batch_size for s in sizes[:-1])
    # a batch closes at the first sequence end where it is full: nothing is carried over
    seqs = pipeline.reduce_concat_tokens(
        pipeline.select_random_chunk(docs, 10**6, np.random.default_rng(0)), concat
    )
    seq_ends = np.cumsum([-(-len(q) // chunk_length) for q in seqs if len(q)]).tolist()
    batch_ends = np.cumsum(sizes).tolist()
    assert set(batch_ends) <= set(seq_ends)
    previous = 0
    for end in batch_ends[:-1]:
        earlier = [e for e in seq_ends if previous < e < end]
        assert all(e - previous < batch_size for e in earlier)
        previous = end


# ------------------------------------------------------------- the span objective


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.booleans())
def test_reconstructs_the_whole_stream(seed, concat, trailing):
    docs = docs_of(np.random.default_rng(seed), 12, max_len=200)
    obj = span(concat_documents=concat, max_document_tokens=10**6, trailing_sentinel=trailing)
    rebuilt = []
    for ex in examples(obj, docs, seed, 64, 40):
        rebuilt.extend(reconstruct(strip_eos(ex["inputs"]), strip_eos(ex["targets"])))
    assert rebuilt == np.concatenate(docs).tolist()


def test_paper_lengths_eos_and_noise_statistics():
    docs = docs_of(np.random.default_rng(3), 1200, max_len=800)
    exs = examples(span(), docs, 0)
    full = [e for e in exs if e["inputs"].size == 512]
    # ragged chunks only at the end of each concatenation of 128 documents
    assert len(full) >= len(exs) - -(-1200 // 128)
    noisy = total = n_spans = 0
    for ex in exs:
        inputs, targets = strip_eos(ex["inputs"]), strip_eos(ex["targets"])
        assert ex["inputs"].size <= 512 and ex["targets"].size <= 114
        assert inputs[-1] >= BASE and targets[0] == X and targets[-1] < BASE  # no trailing <s>
        n_noise = sum(t < BASE for t in targets)
        noisy += n_noise
        total += n_noise + sum(t < BASE for t in inputs)
        n_spans += sum(t >= BASE for t in targets)
    for ex in full:
        assert ex["targets"].size == 114
    assert abs(noisy / total - 0.15) < 0.005
    assert abs(noisy / n_spans - 3.0) < 0.1


@settings(max_examples=20, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([(0.15, 3.0), (0.5, 2.0), (0.1, 10.0), (0.25, 5.0)]),
    st.integers(16, 200),
)
def test_lengths_within_limits_any_shape(seed, density_mean, inputs_length):
    density, mean = density_mean
    obj = span(noise_density=density, mean_noise_span_length=mean, concat_documents=3)
    raw, targets_length = noise.random_spans_helper(inputs_length, density, mean)
    assert obj.raw_length(inputs_length, targets_length) == raw
    docs = docs_of(np.random.default_rng(seed), 10, max_len=400)
    for ex in examples(obj, docs, seed, inputs_length, targets_length):
        assert 2 <= ex["inputs"].size <= inputs_length
        assert 1 <= ex["targets"].size <= targets_length
        strip_eos(ex["inputs"]), strip_eos(ex["targets"])


def test_deterministic_given_seed():
    docs = docs_of(np.random.default_rng(5), 40)
    obj = span(concat_documents=4, max_document_tokens=50)
    a, b, c = (examples(obj, docs, s, 64, 40) for s in (11, 11, 12))
    assert len(a) == len(b)
    assert all(np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(a, b, strict=True))
    assert all(np.array_equal(x["targets"], y["targets"]) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(a, c, strict=False))
    # documents that fit draw nothing in the pipeline: only the masks differ
    whole = span(concat_documents=4)
    d, e = (examples(whole, docs, s, 64, 40) for s in (11, 12))
    assert len(d) == len(e) and sum(x["inputs"].size for x in d) == sum(x["inputs"].size for x in e)
    assert any(not np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(d, e, strict=True))


def test_validation():
    with pytest.raises(ConfigError, match=r"objective.noise_density"):
        span(noise_density=0.0)
    with pytest.raises(ConfigError, match="objective.mean_noise_span_length"):
        span(mean_noise_span_length=0.5)
    with pytest.raises(ConfigError, match="objective.concat_documents"):
        span(concat_documents=0)
    with pytest.raises(ConfigError, match="vocabulary"):
        Span(SpanConfig(), BuildContext())


# ----------------------------------------------- iid_spans: batched == per-example


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(2, 80),
    st.integers(1, 80),
    st.sampled_from([0.15, 0.5]),
    st.booleans(),
    st.integers(1, 6),
)
def test_iid_spans_batched_equals_per_example(
    seed, inputs_length, targets_length, density, fix, concat
):
    docs = docs_of(np.random.default_rng(seed), 30, max_len=150)
    obj = iid(
        noise_density=density,
        fix_leading_noise=fix,
        concat_documents=concat,
        max_document_tokens=60,
    )
    fast = examples(obj, docs, seed, inputs_length, targets_length)
    slow = list(
        obj.reference_examples(
            iter(docs), inputs_length, targets_length, np.random.default_rng(seed)
        )
    )
    assert len(fast) == len(slow)
    for f, s in zip(fast, slow, strict=True):
        assert f["inputs"].tolist() == s["inputs"].tolist()
        assert f["targets"].tolist() == s["targets"].tolist()


def test_iid_spans_batched_equals_per_example_across_batches():
    """More than 128 chunks of mixed widths: batch borders do not change the stream."""
    docs = docs_of(np.random.default_rng(9), 400, max_len=400)
    obj = iid(concat_documents=7)
    fast = examples(obj, docs, 4, 64, 40)
    slow = list(obj.reference_examples(iter(docs), 64, 40, np.random.default_rng(4)))
    assert len(fast) == len(slow) > 2 * batched.BATCH_SIZE
    assert all(
        np.array_equal(f[k], s[k])
        for f, s in zip(fast, slow, strict=True)
        for k in ("inputs", "targets")
    )
