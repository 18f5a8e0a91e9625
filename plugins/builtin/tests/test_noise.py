"""Noise masks and encoders against the reference semantics (facts §3.2, §3.3, §3.5)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t5k_builtin.objectives import noise

V = 32100  # T5's vocab_size: sentinels 32099, 32098, ...
WORDS = "Thank you for inviting me to your party last week .".split()
TOK = {w: 100 + i for i, w in enumerate(WORDS)}  # distinct ordinary ids
X, Y, Z = V - 1, V - 2, V - 3


def ids(text: str) -> np.ndarray:
    return np.array([TOK[w] for w in text.split()], dtype=np.int32)


def mask_of(*noisy: str) -> np.ndarray:
    return np.array([w in noisy for w in WORDS])


def reconstruct(inputs, targets, vocab_size=V, first_sentinel_base=None):
    """Put each sentinel's target span back into the inputs (inverse of the pair)."""
    base = vocab_size - 1
    spans, current, key = {}, [], None
    for t in targets:
        if t > base - 1000:  # a sentinel (test ids are < 1000)
            if key is not None:
                spans[key] = current
            key, current = int(t), []
        else:
            current.append(int(t))
    if key is not None:
        spans[key] = current
    out = []
    for t in inputs:
        out.extend(spans[int(t)] if t > base - 1000 else [int(t)])
    return out


def runs(mask: np.ndarray) -> int:
    """Number of maximal True runs."""
    m = np.asarray(mask, dtype=np.int8)
    return int(np.sum(np.diff(np.concatenate([[0], m])) == 1))


# ------------------------------------------------------------------ paper, Table 3


def test_table3_iid_replace_spans():
    tokens, mask = ids(" ".join(WORDS)), mask_of("for", "inviting", "last")
    inputs = noise.noise_span_to_unique_sentinel(tokens, mask, V)
    targets = noise.nonnoise_span_to_unique_sentinel(tokens, mask, V)
    # "Thank you <X> me to your party <Y> week ." / "<X> for inviting <Y> last <Z>"
    assert inputs.tolist() == [*ids("Thank you"), X, *ids("me to your party"), Y, *ids("week .")]
    assert targets.tolist() == [X, *ids("for inviting"), Y, *ids("last"), Z]
    assert inputs.dtype == tokens.dtype


def test_table3_random_spans_replace():
    tokens = ids(" ".join(WORDS))
    mask = mask_of("for", "inviting", "me", "your", "party", "last")
    inputs = noise.noise_span_to_unique_sentinel(tokens, mask, V)
    targets = noise.nonnoise_span_to_unique_sentinel(tokens, mask, V)
    # "Thank you <X> to <Y> week ." / "<X> for inviting me <Y> your party last <Z>"
    assert inputs.tolist() == [*ids("Thank you"), X, *ids("to"), Y, *ids("week .")]
    assert targets.tolist() == [X, *ids("for inviting me"), Y, *ids("your party last"), Z]


def test_leading_noise_shifts_target_sentinels():
    """Facts §3.6: a chunk starting with noise gets targets 'noise0 <s0> noise1 <s1>'."""
    tokens = ids("Thank you for inviting me")
    mask = np.array([True, False, True, False, False])
    inputs = noise.noise_span_to_unique_sentinel(tokens, mask, V)
    targets = noise.nonnoise_span_to_unique_sentinel(tokens, mask, V)
    assert inputs.tolist() == [X, TOK["you"], Y, *ids("inviting me")]
    assert targets.tolist() == [TOK["Thank"], X, TOK["for"], Y]


def test_all_clean_and_all_noise():
    tokens = ids("Thank you for")
    clean, full = np.zeros(3, bool), np.ones(3, bool)
    assert noise.noise_span_to_unique_sentinel(tokens, clean, V).tolist() == tokens.tolist()
    assert noise.nonnoise_span_to_unique_sentinel(tokens, clean, V).tolist() == [X]
    assert noise.noise_span_to_unique_sentinel(tokens, full, V).tolist() == [X]
    empty = np.zeros(0, np.int32)
    assert noise.noise_span_to_unique_sentinel(empty, np.zeros(0, bool), V).size == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=300), st.integers(0, 2**32 - 1))
def test_reconstruct_from_inputs_and_targets(mask_list, seed):
    mask = np.array([False] + mask_list)  # starts clean: sentinels align
    tokens = np.random.default_rng(seed).integers(3, 1000, mask.size).astype(np.int32)
    inputs = noise.noise_span_to_unique_sentinel(tokens, mask, V)
    targets = noise.nonnoise_span_to_unique_sentinel(tokens, mask, V)
    assert reconstruct(inputs, targets) == tokens.tolist()
    assert inputs.size == int((~mask).sum()) + runs(mask)
    assert targets.size == int(mask.sum()) + runs(~mask)


# ---------------------------------------------------------------------- iid mask


def test_iid_noise_fraction():
    rng = np.random.default_rng(0)
    for density in (0.1, 0.15, 0.25, 0.5):
        fractions = [noise.iid_noise_mask(511, density, rng).mean() for _ in range(200)]
        assert abs(np.mean(fractions) - density) < 0.01


def test_iid_mask_deterministic():
    a = noise.iid_noise_mask(100, 0.15, np.random.default_rng(7))
    b = noise.iid_noise_mask(100, 0.15, np.random.default_rng(7))
    c = noise.iid_noise_mask(100, 0.15, np.random.default_rng(8))
    assert a.dtype == bool and a.shape == (100,)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# ------------------------------------------------------------------ random spans


def test_random_spans_568():
    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = noise.random_spans_noise_mask(568, 0.15, rng, mean_noise_span_length=3.0)
        assert mask.shape == (568,) and mask.sum() == 85 and runs(mask) == 28
        assert not mask[0] and mask[-1]


def test_random_spans_round_half_to_even():
    # 10 * 0.25 = 2.5 -> 2 noise tokens (tf.round), 2 / 2 = 1 span; 14 * 0.25 = 3.5 -> 4
    rng = np.random.default_rng(0)
    assert noise.random_spans_noise_mask(10, 0.25, rng, 2.0).sum() == 2
    m = noise.random_spans_noise_mask(14, 0.25, rng, 8.0)  # 4 / 8 = 0.5 -> 0 -> 1 span
    assert m.sum() == 4 and runs(m) == 1


def test_random_spans_degenerate_lengths():
    rng = np.random.default_rng(0)
    assert noise.random_spans_noise_mask(1, 0.15, rng).tolist() == [False]
    assert noise.random_spans_noise_mask(2, 0.15, rng).tolist() == [False, True]
    assert noise.random_spans_noise_mask(0, 0.15, rng).size == 0
    assert not noise.random_spans_noise_mask(20, 0.0, rng).any()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 1500),
    st.sampled_from([0.1, 0.15, 0.25, 0.5]),
    st.sampled_from([1.0, 2.0, 3.0, 5.0, 10.0]),
    st.integers(0, 2**32 - 1),
)
def test_random_spans_exact_counts(length, density, mean, seed):
    mask = noise.random_spans_noise_mask(length, density, np.random.default_rng(seed), mean)
    n_noise = min(max(int(np.round(np.float32(length) * np.float32(density))), 1), length - 1)
    n_spans = max(int(np.round(np.float32(n_noise) / np.float32(mean))), 1)
    n_spans = min(n_spans, length - n_noise)
    assert mask.sum() == n_noise
    assert runs(mask) == n_spans == runs(~mask)
    assert not mask[0] and mask[-1]


def test_random_spans_all_segmentations_reachable():
    """3 noise tokens in 2 spans: lengths (1,2) and (2,1) both occur, about equally."""
    rng = np.random.default_rng(1)
    firsts = []
    for _ in range(400):
        mask = noise.random_spans_noise_mask(20, 0.15, rng, 1.5)  # 3 noise, 2 spans
        starts = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int)])) == 1)
        ends = np.flatnonzero(np.diff(np.concatenate([mask.astype(int), [0]])) == -1)
        firsts.append(int(ends[0] - starts[0] + 1))
    assert set(firsts) == {1, 2} and 0.4 < np.mean(np.array(firsts) == 1) < 0.6


HELPER_TABLE = {  # facts §3.5: (density, mean) -> (raw tokens T, targets length) at 512
    (0.10, 2): (538, 82),
    (0.10, 3): (548, 74),
    (0.10, 5): (556, 68),
    (0.10, 10): (561, 63),
    (0.15, 2): (552, 126),
    (0.15, 3): (568, 114),
    (0.15, 5): (581, 105),
    (0.15, 10): (591, 99),
    (0.25, 2): (584, 220),
    (0.25, 3): (614, 206),
    (0.25, 5): (639, 193),
    (0.25, 10): (660, 182),
    (0.50, 2): (682, 512),
    (0.50, 3): (766, 512),
    (0.50, 5): (852, 512),
    (0.50, 10): (930, 512),
}


@pytest.mark.parametrize(("density", "mean"), sorted(HELPER_TABLE))
def test_random_spans_helper_table(density, mean):
    assert noise.random_spans_helper(512, density, mean) == HELPER_TABLE[(density, mean)]


@pytest.mark.parametrize(("density", "mean"), [(0.15, 3), (0.25, 5), (0.5, 3)])
def test_random_spans_helper_lengths_fit(density, mean):
    """With the helper's T, encoded inputs fit 512 exactly and targets match its length."""
    raw, targets_len = noise.random_spans_helper(512, density, mean)
    rng = np.random.default_rng(0)
    mask = noise.random_spans_noise_mask(raw, density, rng, mean)
    tokens = np.arange(3, 3 + raw)
    inputs = noise.noise_span_to_unique_sentinel(tokens, mask, V)
    targets = noise.nonnoise_span_to_unique_sentinel(tokens, mask, V)
    assert inputs.size + 1 <= 512
    assert targets.size + 1 <= targets_len + (density == 0.5)


# ------------------------------------------------------------------- prefix mask


def test_random_prefix_mask():
    rng = np.random.default_rng(0)
    ks = []
    for _ in range(300):
        m = noise.random_prefix_noise_mask(6, 0.5, rng)
        k = int(m.sum())
        assert m[:k].all() and not m[k:].any()
        ks.append(k)
    assert set(ks) == {1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match="0.5"):
        noise.random_prefix_noise_mask(6, 0.15, rng)


# ------------------------------------------------------------- other encoders


def test_noise_token_to_sentinel_keeps_length():
    tokens, mask = ids(" ".join(WORDS)), mask_of("for", "inviting", "last")
    out = noise.noise_token_to_sentinel(tokens, mask, V)
    assert out.tolist() == [X if m else t for t, m in zip(tokens.tolist(), mask, strict=True)]


def test_random_token_or_sentinel():
    rng = np.random.default_rng(0)
    tokens = np.full(200_000, 500, dtype=np.int32)
    mask = rng.random(tokens.size) < 0.15
    out = noise.noise_token_to_random_token_or_sentinel(tokens, mask, V, rng)
    assert np.all(out[~mask] == 500)
    noisy = out[mask]
    sentinel = noisy == V - 1
    assert 0.88 < sentinel.mean() < 0.92  # 90% mask id (+ rare random hits of it)
    random_ids = noisy[~sentinel]
    assert random_ids.min() >= 3 and random_ids.max() < V
    assert np.mean(random_ids >= 32000) > 0  # the range includes the sentinel ids


def test_drop_tokens():
    tokens, mask = ids(" ".join(WORDS)), mask_of("for", "inviting", "last")
    assert (
        noise.drop_noise_tokens(tokens, mask).tolist()
        == ids("Thank you me to your party week .").tolist()
    )
    assert noise.drop_nonnoise_tokens(tokens, mask).tolist() == ids("for inviting last").tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=0, max_size=200), st.integers(0, 2**32 - 1))
def test_permute_noise_tokens(mask_list, seed):
    mask = np.array(mask_list, dtype=bool)
    tokens = np.arange(3, 3 + mask.size, dtype=np.int32)
    out = noise.permute_noise_tokens(tokens, mask, rng=np.random.default_rng(seed))
    assert np.array_equal(out[~mask], tokens[~mask])
    assert sorted(out[mask].tolist()) == tokens[mask].tolist()
    again = noise.permute_noise_tokens(tokens, mask, rng=np.random.default_rng(seed))
    assert np.array_equal(out, again)


def test_deshuffle_permutes_everything():
    tokens = np.arange(3, 503, dtype=np.int32)
    out = noise.permute_noise_tokens(tokens, np.ones(500, bool), rng=np.random.default_rng(0))
    assert sorted(out.tolist()) == tokens.tolist() and not np.array_equal(out, tokens)


def test_encoders_need_their_arguments():
    tokens, mask = ids("Thank you"), np.array([True, False])
    with pytest.raises(ValueError, match="vocab_size"):
        noise.noise_span_to_unique_sentinel(tokens, mask)
    with pytest.raises(ValueError, match="Generator"):
        noise.permute_noise_tokens(tokens, mask)


def test_registries_name_every_function():
    assert set(noise.MASKS) == {
        "iid_noise_mask",
        "random_spans_noise_mask",
        "random_prefix_noise_mask",
    }
    for name, fn in noise.ENCODERS.items():
        assert fn.__name__ == name
