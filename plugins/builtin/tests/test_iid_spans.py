"""The token pipeline (facts §3.1) and the baseline objective iid_spans (§3.4, §3.6)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t5k_builtin.configs import IidSpansConfig
from t5k_builtin.objectives import pipeline
from t5k_builtin.objectives.denoise import IidSpans
from t5kernel.api import BuildContext, Objective
from t5kernel.errors import ConfigError
from t5kernel.testing import unchecked

V = 32100
BASE = 32000
VOCAB = SimpleNamespace(vocab_size=V, eos_id=1, base_vocab_size=BASE)
WORDS = "Thank you for inviting me to your party last week .".split()
TOK = {w: 100 + i for i, w in enumerate(WORDS)}
X, Y, Z = V - 1, V - 2, V - 3


def ids(text):
    return [TOK[w] for w in text.split()]


def objective(**options) -> IidSpans:
    config = unchecked(IidSpansConfig, **options)
    return IidSpans(config, BuildContext(extras={"vocabulary": VOCAB}))


def docs_of(rng, n_docs, max_len=300):
    return [rng.integers(3, BASE, rng.integers(0, max_len)).astype(np.int32) for _ in range(n_docs)]


def strip_eos(a):
    assert a[-1] == 1
    return a[:-1].tolist()


def reconstruct(inputs, targets):
    """Substitute each input sentinel by the target span that follows the same sentinel."""
    spans, key = {}, None
    for t in targets:
        if t >= BASE:
            key = t
            spans[key] = []
        elif key is not None:
            spans[key].append(t)
    out = []
    for t in inputs:
        out.extend(spans[t] if t >= BASE else [t])
    return out


# --------------------------------------------------------------------- pipeline


def test_select_random_chunk_aligned_and_drops_empty():
    rng = np.random.default_rng(0)
    doc = np.arange(3, 3 + 25)
    chunks = list(pipeline.select_random_chunk([[], doc, [5, 6]], 10, rng))
    assert len(chunks) == 2 and chunks[1].tolist() == [5, 6]
    seen = set()
    for _ in range(200):
        (chunk,) = pipeline.select_random_chunk([doc], 10, rng)
        seen.add(tuple(chunk.tolist()))
    assert seen == {tuple(range(3, 13)), tuple(range(13, 23)), tuple(range(23, 28))}


def test_reduce_concat_tokens_no_separator():
    docs = [[3, 4], [5], [6, 7, 8], [9]]
    out = [a.tolist() for a in pipeline.reduce_concat_tokens(docs, 3)]
    assert out == [[3, 4, 5, 6, 7, 8], [9]]
    assert [a.tolist() for a in pipeline.reduce_concat_tokens([[3, 0, 4]], 2)] == [[3, 4]]


def test_split_tokens():
    out = [a.tolist() for a in pipeline.split_tokens([np.arange(3, 10), [], [11]], 3)]
    assert out == [[3, 4, 5], [6, 7, 8], [9], [11]]


def test_append_eos_after_trim():
    assert pipeline.append_eos_after_trim([3, 4, 5], 3).tolist() == [3, 4, 1]
    assert pipeline.append_eos_after_trim([3], 3).tolist() == [3, 1]
    assert pipeline.append_eos_after_trim([3, 4, 5], None).tolist() == [3, 4, 5, 1]
    assert pipeline.append_eos_after_trim([], 1).tolist() == [1]


# ------------------------------------------------------------- Table 3 / quirks


def test_satisfies_protocol():
    assert isinstance(objective(), Objective)
    assert objective().raw_length(512, 192) == 511


def test_table3_example():
    tokens = np.array(ids(" ".join(WORDS)))
    mask = np.array([w in ("for", "inviting", "last") for w in WORDS])
    out = objective().encode(tokens, mask, 512, 192)
    assert out["inputs"].tolist() == [
        *ids("Thank you"),
        X,
        *ids("me to your party"),
        Y,
        *ids("week ."),
        1,
    ]
    assert out["targets"].tolist() == [X, *ids("for inviting"), Y, *ids("last"), Z, 1]


def test_leading_noise_quirk_and_fix():
    tokens = np.array(ids("Thank you for inviting me"))
    mask = np.array([True, False, True, True, False])
    ref = objective().encode(tokens, mask, 512, 192)
    fixed = objective(fix_leading_noise=True).encode(tokens, mask, 512, 192)
    assert ref["inputs"].tolist() == fixed["inputs"].tolist() == [X, TOK["you"], Y, TOK["me"], 1]
    assert ref["targets"].tolist() == [TOK["Thank"], X, *ids("for inviting"), Y, 1]
    assert fixed["targets"].tolist() == [X, TOK["Thank"], Y, *ids("for inviting"), Z, 1]
    assert reconstruct(strip_eos(fixed["inputs"]), strip_eos(fixed["targets"])) == tokens.tolist()
    # chunks starting clean are untouched by the fix
    clean_start = np.array([False, True, False, True, False])
    assert (
        objective().encode(tokens, clean_start, 512, 192)["targets"].tolist()
        == objective(fix_leading_noise=True)
        .encode(tokens, clean_start, 512, 192)["targets"]
        .tolist()
    )


def test_targets_truncated_then_eos():
    tokens = np.arange(3, 23)
    mask = np.zeros(20, bool)
    mask[::2] = True  # 10 noise runs -> targets of 20 tokens
    out = objective(fix_leading_noise=True).encode(tokens, mask, 64, 5)
    assert out["targets"].tolist() == [X, 3, Y, 5, 1]


# --------------------------------------------------------------- stream properties


def _examples(obj, docs, seed, inputs_length=64, targets_length=64):
    return list(
        obj.examples(iter(docs), inputs_length, targets_length, np.random.default_rng(seed))
    )


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(2, 80),
    st.integers(1, 80),
    st.sampled_from([0.1, 0.15, 0.5]),
)
def test_lengths_within_limits(seed, inputs_length, targets_length, density):
    docs = docs_of(np.random.default_rng(seed), 12)
    obj = objective(noise_density=density, concat_documents=4)
    for ex in _examples(obj, docs, seed, inputs_length, targets_length):
        assert 2 <= ex["inputs"].size <= inputs_length
        assert 1 <= ex["targets"].size <= targets_length
        assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1
        assert 1 not in ex["inputs"][:-1].tolist()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_fixed_output_reconstructs_the_whole_stream(seed, concat):
    docs = docs_of(np.random.default_rng(seed), 10)
    obj = objective(fix_leading_noise=True, concat_documents=concat, max_document_tokens=10**6)
    rebuilt = []
    for ex in _examples(obj, docs, seed, inputs_length=40, targets_length=200):
        rebuilt.extend(reconstruct(strip_eos(ex["inputs"]), strip_eos(ex["targets"])))
    assert rebuilt == np.concatenate(docs).tolist()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_reference_output_differs_from_fix_only_after_leading_noise(seed):
    """Same masks (same seed): chunks starting clean give identical pairs; chunks starting
    with noise give reference targets 'noise0 <s0> ...' = the fixed targets without their
    leading <s0> and with every sentinel one id higher (facts §3.6)."""
    docs = docs_of(np.random.default_rng(seed), 10)
    ref = _examples(objective(concat_documents=3), docs, seed, 30, 200)
    fixed = _examples(objective(concat_documents=3, fix_leading_noise=True), docs, seed, 30, 200)
    assert len(ref) == len(fixed)
    for r, f in zip(ref, fixed, strict=True):
        assert np.array_equal(r["inputs"], f["inputs"])
        r_targets, f_targets = strip_eos(r["targets"]), strip_eos(f["targets"])
        if r["inputs"][0] >= BASE:
            assert r_targets[0] < BASE and f_targets[0] == X
            assert f_targets[1:] == [t - 1 if t >= BASE else t for t in r_targets]
        else:
            assert r_targets == f_targets and r_targets[0] == X


def test_noise_fraction_close_to_density():
    rng = np.random.default_rng(0)
    docs = docs_of(rng, 400, max_len=600)
    for density in (0.15, 0.5):
        noisy = total = 0
        for ex in _examples(objective(noise_density=density), docs, 1, 512, 1024):
            targets = strip_eos(ex["targets"])
            n_noise = sum(t < BASE for t in targets)
            noisy += n_noise
            total += sum(t < BASE for t in strip_eos(ex["inputs"])) + n_noise
        assert abs(noisy / total - density) < 0.01


def test_chunks_are_inputs_length_minus_one():
    docs = docs_of(np.random.default_rng(3), 50)
    examples = _examples(objective(fix_leading_noise=True), docs, 0, 100, 200)
    sizes = [len(reconstruct(strip_eos(e["inputs"]), strip_eos(e["targets"]))) for e in examples]
    assert all(s == 99 for s in sizes[:-1]) and 1 <= sizes[-1] <= 99


def test_deterministic_given_seed():
    docs = docs_of(np.random.default_rng(5), 30)
    obj = objective(concat_documents=4, max_document_tokens=50)
    a, b, c = (_examples(obj, docs, s) for s in (11, 11, 12))
    assert len(a) == len(b)
    assert all(np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(a, b, strict=True))
    assert all(np.array_equal(x["targets"], y["targets"]) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(a, c, strict=True))


def test_max_document_tokens_keeps_one_piece_per_document():
    docs = [np.arange(3, 3 + 1000)]
    obj = objective(max_document_tokens=100, fix_leading_noise=True)
    (ex,) = _examples(obj, docs, 0, 512, 512)
    chunk = reconstruct(strip_eos(ex["inputs"]), strip_eos(ex["targets"]))
    assert len(chunk) == 100 and (chunk[0] - 3) % 100 == 0


# -------------------------------------------------------------------- validation


@pytest.mark.parametrize("density", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_bad_noise_density(density):
    with pytest.raises(ConfigError, match=r"objective.noise_density.*\(0, 1\)"):
        objective(noise_density=density)


def test_bad_lengths_and_options():
    with pytest.raises(ConfigError, match="inputs_length"):
        objective().raw_length(1, 10)
    with pytest.raises(ConfigError, match="inputs_length"):
        next(objective().examples(iter([[3, 4]]), 1, 10, np.random.default_rng(0)))
    with pytest.raises(ConfigError, match="objective.concat_documents"):
        objective(concat_documents=0)


def test_needs_vocabulary():
    with pytest.raises(ConfigError, match="vocabulary"):
        IidSpans(IidSpansConfig(), BuildContext())
