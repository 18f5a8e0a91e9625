"""prefix_lm, lm, bert, mass, deshuffle, iid_drop: P Table 3 rows and stream properties."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t5k_builtin.objectives import others
from t5kernel.api import BuildContext, Objective
from t5kernel.errors import ConfigError
from t5kernel.testing import unchecked

V = 32100
BASE = 32000
M = V - 1  # the single BERT/MASS mask id
VOCAB = SimpleNamespace(vocab_size=V, eos_id=1, base_vocab_size=BASE)
WORDS = "Thank you for inviting me to your party last week .".split()
TOK = {w: 100 + i for i, w in enumerate([*WORDS, "apple"])}
SENTENCE = np.array([TOK[w] for w in WORDS], dtype=np.int32)
CORRUPTED = np.array([w in ("for", "inviting", "last") for w in WORDS])  # P Table 3

KINDS = {
    "prefix_lm": (others.PrefixLm, others.PrefixLmConfig),
    "lm": (others.Lm, others.LmConfig),
    "bert": (others.Bert, others.BertConfig),
    "mass": (others.Mass, others.MassConfig),
    "deshuffle": (others.Deshuffle, others.DeshuffleConfig),
    "iid_drop": (others.IidDrop, others.IidDropConfig),
}


def ids(text):
    return [TOK[w] for w in text.split()]


def objective(kind, **options):
    cls, config_cls = KINDS[kind]
    return cls(unchecked(config_cls, **options), BuildContext(extras={"vocabulary": VOCAB}))


def docs_of(rng, n_docs, max_len=300):
    return [rng.integers(3, BASE, rng.integers(0, max_len)).astype(np.int32) for _ in range(n_docs)]


def examples(obj, docs, seed, inputs_length=64, targets_length=64):
    return list(obj.examples(iter(docs), inputs_length, targets_length, np.random.default_rng(seed)))


def expected_chunks(docs, concat, n):
    """Reference chunking in plain Python: groups of ``concat`` non-empty documents joined
    without separators, each cut into pieces of ``n`` tokens (facts §3.1)."""
    docs = [list(d) for d in docs if len(d)]
    joined = [sum(docs[i : i + concat], []) for i in range(0, len(docs), concat)]
    return [g[i : i + n] for g in joined for i in range(0, len(g), n)]


def body(a):
    assert a[-1] == 1 and 1 not in a[:-1].tolist()
    return a[:-1].tolist()


class FixedDraws:
    """Stands in for the generator where Table 3 fixes the random choices."""

    def __init__(self, uniform=None, token=None, order=None):
        self.uniform, self.token, self.order = uniform, token, order

    def random(self, shape):
        return np.asarray(self.uniform, dtype=float).reshape(shape)

    def integers(self, low, high, size):
        assert low <= self.token < high
        return np.full(size, self.token)

    def permutation(self, x):
        return np.asarray(x)[self.order]


# ------------------------------------------------------------------- P Table 3 rows


def test_all_satisfy_protocol():
    for kind in KINDS:
        assert isinstance(objective(kind), Objective)


def test_table3_prefix_lm():
    mask = np.arange(SENTENCE.size) < 4
    out = objective("prefix_lm").encode(SENTENCE, mask, 512, 512)
    assert body(out["inputs"]) == ids("Thank you for inviting")
    assert body(out["targets"]) == ids("me to your party last week .")


def test_table3_bert():
    uniform = np.where(np.array(WORDS) == "last", 0.05, 0.5)  # only "last" draws u < 0.1
    out = objective("bert").encode(
        SENTENCE, CORRUPTED, 512, 512, FixedDraws(uniform, token=TOK["apple"])
    )
    assert body(out["inputs"]) == [*ids("Thank you"), M, M, *ids("me to your party apple week .")]
    assert body(out["targets"]) == SENTENCE.tolist()


def test_table3_mass():
    out = objective("mass").encode(SENTENCE, CORRUPTED, 512, 512)
    assert body(out["inputs"]) == [*ids("Thank you"), M, M, *ids("me to your party"), M,
                                   *ids("week .")]
    assert body(out["targets"]) == SENTENCE.tolist()


def test_table3_deshuffle():
    # the paper's row "party me for your to . last fun you inviting week Thank" less the
    # stray "fun", which is not in the sentence (a typo no permutation can produce)
    shuffled = "party me for your to . last you inviting week Thank".split()
    order = [WORDS.index(w) for w in shuffled]
    obj = objective("deshuffle")
    mask = obj.mask(SENTENCE.size, np.random.default_rng(0))
    assert mask.all()
    out = obj.encode(SENTENCE, mask, 512, 512, FixedDraws(order=order))
    assert body(out["inputs"]) == ids(" ".join(shuffled))
    assert body(out["targets"]) == SENTENCE.tolist()


def test_table3_iid_drop():
    out = objective("iid_drop").encode(SENTENCE, CORRUPTED, 512, 104)
    assert body(out["inputs"]) == ids("Thank you me to your party week .")
    assert body(out["targets"]) == ids("for inviting last")


def test_lm_predicts_the_whole_chunk():
    (ex,) = examples(objective("lm"), [SENTENCE], 0, 512, 512)
    assert ex["inputs"].size == 0 and body(ex["targets"]) == SENTENCE.tolist()


# ----------------------------------------------------------------- per-chunk properties

tokens_and_mask = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(3, BASE - 1), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@settings(max_examples=50, deadline=None)
@given(tokens_and_mask)
def test_iid_drop_merges_back_by_position(pair):
    tokens, mask = np.array(pair[0]), np.array(pair[1])
    out = objective("iid_drop").encode(tokens, mask, 512, 512)
    merged = np.empty_like(tokens)
    merged[~mask], merged[mask] = body(out["inputs"]), body(out["targets"])
    assert merged.tolist() == tokens.tolist()


@settings(max_examples=50, deadline=None)
@given(tokens_and_mask, st.integers(0, 2**32 - 1))
def test_mass_and_bert_keep_clean_positions(pair, seed):
    tokens, mask = np.array(pair[0]), np.array(pair[1])
    for kind in ("mass", "bert"):
        out = objective(kind).encode(tokens, mask, 512, 512, np.random.default_rng(seed))
        inputs = np.array(body(out["inputs"]))
        assert body(out["targets"]) == tokens.tolist() and inputs.size == tokens.size
        assert (inputs[~mask] == tokens[~mask]).all()
        if kind == "mass":
            assert (inputs[mask] == M).all()
        else:
            assert ((inputs[mask] == M) | (inputs[mask] >= 3)).all() and inputs.max() < V


# ----------------------------------------------------------------- stream properties


@settings(max_examples=20, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(sorted(KINDS)),
    st.integers(2, 80),
    st.integers(2, 80),
)
def test_lengths_and_eos(seed, kind, inputs_length, targets_length):
    docs = docs_of(np.random.default_rng(seed), 8)
    obj = objective(kind, **({"concat_documents": 3} if kind not in ("prefix_lm", "deshuffle")
                             else {}))
    for ex in examples(obj, docs, seed, inputs_length, targets_length):
        assert ex["inputs"].dtype == ex["targets"].dtype == np.int32
        assert 1 <= ex["targets"].size <= targets_length
        body(ex["targets"])
        if kind == "lm":
            assert ex["inputs"].size == 0
        else:
            assert 1 <= ex["inputs"].size <= inputs_length
            body(ex["inputs"])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_deshuffle_is_a_permutation_of_one_document_chunk(seed):
    rng = np.random.default_rng(seed)
    docs = docs_of(rng, 6, max_len=150)
    exs = examples(objective("deshuffle"), docs, seed, 64, 64)
    assert [body(ex["targets"]) for ex in exs] == expected_chunks(docs, 1, 63)
    for ex in exs:
        assert Counter(body(ex["inputs"])) == Counter(body(ex["targets"]))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_prefix_lm_splits_each_document_chunk(seed):
    docs = docs_of(np.random.default_rng(seed), 6, max_len=150)
    exs = examples(objective("prefix_lm"), docs, seed, 64, 64)
    chunks = expected_chunks(docs, 1, 63)
    assert [body(ex["inputs"]) + body(ex["targets"]) for ex in exs] == chunks
    for ex, chunk in zip(exs, chunks, strict=True):
        n_in = len(body(ex["inputs"]))
        assert 1 <= n_in <= len(chunk) - 1 or len(chunk) == 1


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_concatenating_objectives_cover_the_stream(seed, concat):
    docs = docs_of(np.random.default_rng(seed), 8)
    chunks = expected_chunks(docs, concat, 39)
    lm = examples(objective("lm", concat_documents=concat), docs, seed, 8, 40)
    assert [body(ex["targets"]) for ex in lm] == chunks
    for kind in ("bert", "mass"):
        exs = examples(objective(kind, concat_documents=concat), docs, seed, 40, 64)
        assert [body(ex["targets"]) for ex in exs] == chunks
    drop = examples(objective("iid_drop", concat_documents=concat), docs, seed, 40, 64)
    assert len(drop) == len(chunks)
    for ex, chunk in zip(drop, chunks, strict=True):
        assert Counter(body(ex["inputs"]) + body(ex["targets"])) == Counter(chunk)


def test_targets_truncated_then_eos():
    out = objective("iid_drop").encode(np.arange(3, 23), np.ones(20, bool), 64, 5)
    assert out["targets"].tolist() == [3, 4, 5, 6, 1]
    out = objective("mass").encode(np.arange(3, 23), np.zeros(20, bool), 64, 3)
    assert out["targets"].tolist() == [3, 4, 1]


# --------------------------------------------------------- rates over many samples


@pytest.fixture(scope="module")
def big_docs():
    return docs_of(np.random.default_rng(7), 120, max_len=800)


@pytest.mark.parametrize("density", [0.1, 0.15, 0.5])
def test_measured_noise_density(big_docs, density):
    for kind in ("mass", "iid_drop"):
        exs = examples(objective(kind, noise_density=density), big_docs, 3, 512, 1024)
        if kind == "mass":
            inputs = np.concatenate([e["inputs"][:-1] for e in exs])
            rate = np.mean(inputs == M)
        else:
            n_tg = sum(e["targets"].size - 1 for e in exs)
            rate = n_tg / (n_tg + sum(e["inputs"].size - 1 for e in exs))
        assert abs(rate - density) < 0.01, (kind, rate)


def test_bert_corruption_rates(big_docs):
    exs = examples(objective("bert"), big_docs, 4, 512, 512)
    inputs = np.concatenate([e["inputs"][:-1] for e in exs])
    targets = np.concatenate([e["targets"][:-1] for e in exs])
    changed = inputs != targets
    assert abs(changed.mean() - 0.15) < 0.01
    assert abs(np.mean(inputs[changed] == M) - 0.9) < 0.02
    randoms = inputs[changed & (inputs != M)]
    assert randoms.min() >= 3 and randoms.max() < V
    assert abs(randoms.mean() / ((3 + V - 1) / 2) - 1) < 0.1  # uniform over [3, V)


def test_prefix_lm_split_fraction(big_docs):
    exs = examples(objective("prefix_lm"), big_docs, 5, 512, 512)
    n_in = np.array([e["inputs"].size - 1 for e in exs])
    n_all = n_in + np.array([e["targets"].size - 1 for e in exs])
    long = n_all > 100
    # prefix length uniform in [1, n-1]: mean fraction 1/2, spread like U(0, 1)
    assert abs(np.mean(n_in[long] / n_all[long]) - 0.5) < 0.05
    assert np.std(n_in[long] / n_all[long]) > 0.2


def test_deshuffle_partial_density(big_docs):
    exs = examples(objective("deshuffle", noise_density=0.5), big_docs[:30], 6, 512, 512)
    moved = np.mean(np.concatenate([e["inputs"] != e["targets"] for e in exs]))
    assert abs(moved - 0.5) < 0.02  # half the positions shuffled (a few land on themselves)
    assert all(Counter(e["inputs"].tolist()) == Counter(e["targets"].tolist()) for e in exs)


# -------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"lm"}))
def test_same_seed_same_output_other_seed_differs(kind):
    docs = docs_of(np.random.default_rng(9), 20)
    obj = objective(kind)
    a, b, c = (examples(obj, docs, s) for s in (1, 1, 2))
    same = [np.array_equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x]
    assert len(a) == len(b) and all(same)
    diff = [np.array_equal(x[k], y[k]) for x, y in zip(a, c, strict=True) for k in x]
    assert not all(diff)


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize("kind", ["bert", "mass", "iid_drop"])
@pytest.mark.parametrize("density", [0.0, 1.0, -0.1, float("nan")])
def test_bad_noise_density(kind, density):
    with pytest.raises(ConfigError, match=rf"{kind}: objective.noise_density.*\(0, 1\)"):
        objective(kind, noise_density=density)


@pytest.mark.parametrize("density", [0.0, 1.5, float("nan")])
def test_bad_deshuffle_density(density):
    with pytest.raises(ConfigError, match=r"objective.noise_density.*\(0, 1\]"):
        objective("deshuffle", noise_density=density)


def test_bad_options_and_lengths():
    with pytest.raises(ConfigError, match=r"objective.random_prob must be in \[0, 1\]"):
        objective("bert", random_prob=1.5)
    with pytest.raises(ConfigError, match="objective.concat_documents must be >= 1"):
        objective("lm", concat_documents=0)
    with pytest.raises(ConfigError, match="objective.max_document_tokens must be >= 1"):
        objective("prefix_lm", max_document_tokens=0)
    with pytest.raises(ConfigError, match="lm: targets_length must be >= 2"):
        objective("lm").raw_length(512, 1)
    with pytest.raises(ConfigError, match="inputs_length must be >= 2"):
        next(objective("mass").examples(iter([[3, 4]]), 1, 10, np.random.default_rng(0)))
    assert objective("lm").raw_length(1, 512) == 511
    assert objective("iid_drop").raw_length(512, 104) == 511


def test_needs_vocabulary():
    with pytest.raises(ConfigError, match="vocabulary"):
        others.Bert(others.BertConfig(), BuildContext())


# ------------------------------------------- batched examples vs the per-example oracle


def docs_with_pads(seed, n_docs=60, max_len=900):
    """Documents of 0..max_len tokens, some empty, some holding pad ids (0)."""
    docs = docs_of(np.random.default_rng(seed), n_docs, max_len)
    for d in docs[::4]:
        d[::9] = 0
    return docs


def assert_same_examples(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for key in ("inputs", "targets"):
            assert x[key].dtype == y[key].dtype and np.array_equal(x[key], y[key]), key


@pytest.mark.parametrize(
    "kind, options",
    [
        ("mass", {}),
        ("iid_drop", {}),
        ("iid_drop", {"noise_density": 0.5}),
        ("prefix_lm", {}),
        ("deshuffle", {}),
        ("deshuffle", {"noise_density": 0.4}),
    ],
)
@pytest.mark.parametrize(
    "lengths, max_tokens, concat",
    [((512, 114), 65536, 128), ((17, 5), 40, 3), ((2, 1), 7, 1), ((64, 300), 500, 2)],
)
def test_batched_examples_equal_reference(kind, options, lengths, max_tokens, concat):
    if objective(kind).concat:
        options = {**options, "concat_documents": concat}
    obj = objective(kind, max_document_tokens=max_tokens, **options)
    docs = docs_with_pads(11)
    a = list(obj.examples(iter(docs), *lengths, np.random.default_rng(3)))
    b = list(obj.reference_examples(iter(docs), *lengths, np.random.default_rng(3)))
    assert_same_examples(a, b)


class ReplayDraws:
    """Serves given uniforms and ids to the per-example ``encode`` of BERT."""

    def __init__(self, uniform, token_ids):
        self.uniform, self.token_ids = uniform, token_ids

    def random(self, shape):
        assert self.uniform.shape == (shape if isinstance(shape, tuple) else (shape,))
        return self.uniform

    def integers(self, low, high, size):
        assert (low, high) == (3, V) and self.token_ids.shape == tuple(np.atleast_1d(size))
        return self.token_ids


@pytest.mark.parametrize("lengths, concat", [((512, 114), 128), ((17, 9), 3), ((2, 1), 1)])
def test_bert_batched_equals_per_example_encode_on_the_same_draws(lengths, concat):
    """The batched BERT draws, per concatenated sequence, its mask, then one uniform and
    one random id per noise token; fed those draws, the per-example ``encode`` gives the
    same examples (random ids where u < random_prob, the mask id elsewhere)."""
    obj = objective("bert", concat_documents=concat, random_prob=0.3)
    docs = docs_with_pads(12, n_docs=40)
    got = list(obj.examples(iter(docs), *lengths, np.random.default_rng(8)))
    rng = np.random.default_rng(8)  # documents fit max_document_tokens: no chunk draws
    expected = []
    nonempty = [np.asarray(d) for d in docs if len(d)]
    for g in range(0, len(nonempty), concat):
        seq = np.concatenate(nonempty[g : g + concat])
        seq = seq[seq != 0]
        noisy = rng.random(seq.size) < obj.config.noise_density
        k = int(noisy.sum())
        uniform, token_ids = np.full(seq.size, 0.99), np.zeros(seq.size, np.int64)
        uniform[noisy] = np.where(rng.random(k) < 0.3, 0.0, 0.99)
        token_ids[noisy] = rng.integers(3, V, k)
        n = lengths[0] - 1
        for lo in range(0, seq.size, n):
            part = slice(lo, lo + n)
            replay = ReplayDraws(uniform[part], token_ids[part])
            expected.append(obj.encode(seq[part], noisy[part], *lengths, rng=replay))
    assert_same_examples(got, expected)


def test_bert_batched_rates_match_the_reference(big_docs):
    """Other draw order, same distribution: corruption, mask and random-id rates and the
    uniformity of random ids agree between ``examples`` and ``reference_examples``."""
    from scipy.stats import chisquare

    obj = objective("bert")
    stats = []
    for run in (obj.examples, obj.reference_examples):
        exs = list(run(iter(big_docs), 512, 512, np.random.default_rng(21)))
        inputs = np.concatenate([e["inputs"][:-1] for e in exs])
        targets = np.concatenate([e["targets"][:-1] for e in exs])
        changed = inputs != targets
        randoms = inputs[changed & (inputs != M)]
        assert abs(changed.mean() - 0.15) < 0.01
        assert abs(np.mean(inputs[changed] == M) - 0.9) < 0.02
        assert randoms.min() >= 3 and randoms.max() < V
        counts = np.bincount((randoms - 3) * 8 // (V - 3), minlength=8)
        assert chisquare(counts).pvalue > 1e-4
        stats.append((changed.mean(), np.mean(inputs[changed] == M)))
    (c1, m1), (c2, m2) = stats
    assert abs(c1 - c2) < 0.01 and abs(m1 - m2) < 0.03


def test_batched_drop_encoders_match_per_row():
    from t5k_builtin.objectives import batched, noise

    rng = np.random.default_rng(2)
    tokens = rng.integers(3, BASE, (9, 31)).astype(np.int32)
    mask = rng.random((9, 31)) < 0.3
    for fn, ref in (
        (batched.drop_noise_tokens, noise.drop_noise_tokens),
        (batched.drop_nonnoise_tokens, noise.drop_nonnoise_tokens),
    ):
        rows = batched.split_rows(*fn(tokens, mask))
        assert all(np.array_equal(r, ref(t, m)) for r, t, m in zip(rows, tokens, mask, strict=True))
    lengths = np.array([3, 0, 5])
    padded = batched.pad_rows([np.arange(3), np.arange(0), np.arange(5)], lengths)
    assert padded.tolist() == [[0, 1, 2, 0, 0], [0] * 5, [0, 1, 2, 3, 4]]
