"""The ``ul2`` objective: mode tokens, each denoiser's statistics, the S-denoiser's
prefix split, mixing proportions, determinism and exact resumption."""

from __future__ import annotations

import json

import numpy as np
import pytest
from t5kernel.api import BuildContext, Objective, StatefulIterator
from t5kernel.errors import ConfigError

from t5k_plugin_example.config import Ul2Config
from t5k_plugin_example.ul2 import Ul2

#: document tokens are drawn below TOKEN_HIGH; sentinels count down from V - 1, so with
#: V this large even thousands of spans never reach an ordinary token
V = 100_000
TOKEN_HIGH = 30_000


class CharVocabulary:
    """Enough of the Vocabulary protocol for an objective: one id per character."""

    vocab_size = V
    eos_id = 1

    def encode(self, text):
        return [TOKEN_HIGH + ord(c) for c in text]


def ul2(vocab=None, **options) -> Ul2:
    return Ul2(Ul2Config(**options), BuildContext(extras={"vocabulary": vocab or CharVocabulary()}))


def prefix_of(text):
    return CharVocabulary().encode(text)


def random_docs(seed, n, low=20, high=400):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, TOKEN_HIGH, rng.integers(low, high)).astype(np.int32)
            for _ in range(n)]


def tagged(objective, docs, inputs_length, targets_length, seed):
    rng = np.random.default_rng(seed)
    out = []
    for block in objective.tagged_blocks(iter(docs), inputs_length, targets_length, rng):
        out.extend(block)
    return out


def body(a):
    """An EOS-terminated array without its EOS (asserting there is exactly one, last)."""
    a = np.asarray(a).tolist()
    assert a[-1] == 1 and 1 not in a[:-1]
    return a[:-1]


def is_sentinel(i):
    return i >= V - 10_000


def reconstruct(inputs, targets):
    """The chunk back from span corruption: each input sentinel replaced by the noise
    run that follows the same sentinel in the targets. Returns (chunk, noise, spans)."""
    runs, current = {}, None
    for i in targets:
        if is_sentinel(i):
            current = runs.setdefault(i, [])
        else:
            current.append(i)
    chunk, spans = [], 0
    for i in inputs:
        if is_sentinel(i):
            chunk.extend(runs[i])
            spans += 1
        else:
            chunk.append(i)
    return chunk, sum(len(r) for r in runs.values()), spans


def test_it_is_an_objective_with_resumable_examples():
    objective = ul2()
    assert isinstance(objective, Objective)
    assert callable(objective.resumable_examples)


def test_every_example_starts_with_its_denoisers_mode_token():
    objective = ul2()
    pairs = tagged(objective, random_docs(0, 300), 64, 64, seed=1)
    assert {k for k, _ in pairs} == set(range(7))
    for k, example in pairs:
        d = objective.denoisers[k]
        expected = {"span": "[NLU]" if d.noise_density < 0.3 and d.mean_noise_span_length < 12
                    else "[NLG]", "prefix_lm": "[S2S]"}[d.kind]
        assert d.mode == expected  # R -> [NLU], X -> [NLG], S -> [S2S] (the paper's rule)
        assert example["inputs"][: len(d.prefix)].tolist() == prefix_of(expected)
        assert len(example["inputs"]) <= 64 and len(example["targets"]) <= 64


def test_an_empty_mode_string_means_no_mode_token():
    objective = ul2(span_modes=[""] * 6, prefix_lm_mode="")
    for _, example in tagged(objective, random_docs(0, 40), 64, 64, seed=1):
        assert not any(i >= TOKEN_HIGH and i < V - 10_000 for i in example["inputs"].tolist())


@pytest.mark.parametrize("k", range(6))
def test_each_span_denoiser_has_its_noise_rate_and_mean_span_length(k):
    """Full chunks at inputs 4096: the noise count is round(T * r) and the mean span
    length noise / round(noise / mu), within 5% of mu; the chunk is recovered exactly
    (nothing was trimmed) and span lengths vary (random segmentation)."""
    objective = ul2()
    d = objective.denoisers[k]
    raw = objective.raw_lengths(4096, 4096)[k]
    rng = np.random.default_rng(k)
    lengths = []
    for _ in range(4):
        chunk = rng.integers(3, TOKEN_HIGH, raw).astype(np.int32)
        example = objective.encode(k, chunk, 4096, 4096, rng)
        inputs, targets = body(example["inputs"]), body(example["targets"])
        assert inputs[: len(d.prefix)] == list(d.prefix)
        restored, num_noise, num_spans = reconstruct(inputs[len(d.prefix):], targets)
        assert restored == chunk.tolist()
        assert num_noise == int(np.round(np.float32(raw) * np.float32(d.noise_density)))
        assert abs(num_noise / raw - d.noise_density) <= 1 / raw
        assert num_noise / num_spans == pytest.approx(d.mean_noise_span_length, rel=0.05)
        assert len(inputs) <= 4096 - 1
        span_lengths = np.diff(np.flatnonzero([is_sentinel(i) for i in targets] + [True]))
        lengths.extend((span_lengths - 1).tolist())
    if d.mean_noise_span_length > 1 and len(lengths) > 4:
        assert len(set(lengths)) > 1


def test_full_chunks_fill_the_inputs_without_trimming_at_the_papers_512():
    objective = ul2()
    raws = objective.raw_lengths(512, 512)
    rng = np.random.default_rng(0)
    for k, d in enumerate(objective.denoisers[:6]):
        chunk = rng.integers(3, TOKEN_HIGH, raws[k]).astype(np.int32)
        example = objective.encode(k, chunk, 512, 512, rng)
        restored, _, _ = reconstruct(body(example["inputs"])[len(d.prefix):],
                                     body(example["targets"]))
        assert restored == chunk.tolist()
        # one more raw token would not fit: the helper's length is the largest that does
        assert len(example["inputs"]) >= 512 - 2


def test_the_s_denoiser_splits_a_contiguous_chunk_at_a_uniform_point():
    objective = ul2()
    s = len(objective.denoisers) - 1
    raw = objective.raw_lengths(128, 128)[s]
    prefix = list(objective.denoisers[s].prefix)
    assert raw == 128 - 1 - len(prefix)
    rng = np.random.default_rng(3)
    splits = []
    for _ in range(400):
        chunk = np.arange(100, 100 + raw, dtype=np.int32)
        example = objective.encode(s, chunk, 128, 128, rng)
        inputs, targets = body(example["inputs"]), body(example["targets"])
        assert inputs[: len(prefix)] == prefix
        assert inputs[len(prefix):] + targets == chunk.tolist()  # a prefix split, no noise
        splits.append(len(inputs) - len(prefix))
    assert min(splits) >= 1 and max(splits) <= raw - 1
    assert np.mean(splits) == pytest.approx(raw / 2, rel=0.1)  # uniform in [1, raw - 1]


def test_s_examples_in_the_stream_are_consecutive_tokens_of_the_documents():
    docs = [np.arange(start, start + 300, dtype=np.int32) for start in range(1000, 20000, 1000)]
    objective = ul2(span_weights=[0] * 6, concat_documents=1)
    for k, example in tagged(objective, docs, 32, 32, seed=0):
        assert k == 6
        tokens = body(example["inputs"])[len(prefix_of("[S2S]")):] + body(example["targets"])
        assert tokens == list(range(tokens[0], tokens[0] + len(tokens)))


@pytest.mark.parametrize("span_weights, prefix_lm_weight", [
    ([1, 1, 1, 1, 1, 1], 1.5),  # the paper's: S 20%, each span denoiser 13.3%
    ([0, 0, 3, 0, 0, 1], 0),
])
def test_examples_are_mixed_in_proportion_to_the_weights(span_weights, prefix_lm_weight):
    objective = ul2(span_weights=span_weights, prefix_lm_weight=prefix_lm_weight)
    pairs = tagged(objective, random_docs(5, 150, 50, 2000), 48, 48, seed=2)
    counts = np.bincount([k for k, _ in pairs], minlength=7)
    n = counts.sum()
    weights = np.asarray([*span_weights, prefix_lm_weight], dtype=float)
    p = weights / weights.sum()
    assert n > 2000
    assert np.all(counts[p == 0] == 0)
    assert np.all(np.abs(counts / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12)


def test_the_stream_is_a_function_of_the_seed():
    docs = random_docs(1, 80)
    first = list(ul2().examples(iter(docs), 64, 64, np.random.default_rng(7)))
    again = list(ul2().examples(iter(docs), 64, 64, np.random.default_rng(7)))
    other = list(ul2().examples(iter(docs), 64, 64, np.random.default_rng(8)))
    same = [np.array_equal(a[key], b[key]) for a, b in zip(first, again, strict=True)
            for key in ("inputs", "targets")]
    assert all(same)
    assert len(first) != len(other) or not all(
        np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, other, strict=False))


class ListDocs:
    """A document stream over a list with the kernel's stateful-iterator surface."""

    def __init__(self, docs, state=None):
        self.docs, self.index = docs, int((state or {}).get("index", 0))

    def state(self):
        return {"index": self.index}

    def __iter__(self):
        return self

    def __next__(self):
        if self.index >= len(self.docs):
            raise StopIteration
        self.index += 1
        return self.docs[self.index - 1]


@pytest.mark.parametrize("taken", [0, 1, 17, 60])
def test_resumes_exactly_from_a_saved_state(taken):
    docs = random_docs(4, 60)
    lengths = (48, 48)

    def open_docs(state):
        return ListDocs(docs, state)

    whole = list(ul2(concat_documents=8).examples(iter(docs), *lengths,
                                                  np.random.default_rng(11)))
    stream = ul2(concat_documents=8).resumable_examples(open_docs, *lengths,
                                                        np.random.default_rng(11))
    assert isinstance(stream, StatefulIterator)
    for _ in range(taken):
        next(stream)
    state = json.loads(json.dumps(stream.state()))  # as the run loop stores it
    resumed = ul2(concat_documents=8).resumable_examples(
        open_docs, *lengths, np.random.default_rng(999), state)
    rest = list(resumed)
    assert len(rest) == len(whole) - taken
    for a, b in zip(rest, whole[taken:], strict=True):
        assert np.array_equal(a["inputs"], b["inputs"])
        assert np.array_equal(a["targets"], b["targets"])


def test_too_short_targets_are_refused_with_the_length_needed():
    objective = ul2()
    with pytest.raises(ConfigError, match=r"pretrain\.targets_length=16 .* an integer >= \d+"):
        objective.raw_lengths(32, 16)
    objective.raw_lengths(32, 32)  # the tiny run's lengths fit


def test_switching_off_the_long_target_denoisers_relaxes_the_targets_length():
    objective = ul2(span_weights=[1, 1, 0, 0, 0, 0])
    objective.raw_lengths(32, 8)
    with pytest.raises(ConfigError, match="targets_length"):
        ul2().raw_lengths(32, 8)


def test_too_short_inputs_are_refused():
    with pytest.raises(ConfigError, match=r"pretrain\.inputs_length=7 is too short"):
        ul2().raw_lengths(7, 64)


def test_modes_the_vocabulary_cannot_tell_apart_are_refused():
    class Lossy(CharVocabulary):
        def encode(self, text):
            return [2 for _ in text]  # every character unknown

    with pytest.raises(ConfigError, match="encode to the same ids"):
        ul2(vocab=Lossy())

    class Empty(CharVocabulary):
        def encode(self, text):
            return []

    with pytest.raises(ConfigError, match="encodes to no ids"):
        ul2(vocab=Empty())


def test_a_config_changed_after_construction_is_checked_again():
    cfg = Ul2Config()
    cfg.mean_noise_span_lengths = [3, 8, 3, 8, 64, 0]
    with pytest.raises(ConfigError, match="mean_noise_span_lengths"):
        Ul2(cfg, BuildContext(extras={"vocabulary": CharVocabulary()}))


def test_a_missing_vocabulary_is_a_config_error():
    with pytest.raises(ConfigError, match="vocabulary"):
        Ul2(Ul2Config(), BuildContext())


def run_config(inputs_length, targets_length, steps=10, unsupervised=True):
    from omegaconf import OmegaConf

    return OmegaConf.create({"pretrain": {"steps": steps, "unsupervised": unsupervised,
                                          "inputs_length": inputs_length,
                                          "targets_length": targets_length}})


def test_config_validation_refuses_too_short_targets_before_any_work():
    with pytest.raises(ConfigError, match=r"pretrain\.targets_length=48 .* need at least \d+"):
        Ul2Config().check_run(run_config(128, 48))
    Ul2Config().check_run(run_config(128, 128))
    Ul2Config().check_run(run_config(128, 48, steps=0))  # no pre-training on the objective
    Ul2Config().check_run(run_config(128, 48, unsupervised=False))


def test_config_validation_never_refuses_lengths_the_objective_accepts():
    """check_run bounds the mode tokens' lengths from above, so whatever it refuses the
    objective refuses too (here with mode tokens of 5 ids and of 1 id)."""
    class OneId(CharVocabulary):
        def encode(self, text):
            return [TOKEN_HIGH + ord(text[3])]  # [NLU] / [NLG] / [S2S] -> U / G / S

    for vocab in (CharVocabulary(), OneId()):
        objective = ul2(vocab=vocab)
        for inputs_length in (9, 12, 20, 33, 64, 100):
            for targets_length in range(2, inputs_length + 8, 3):
                try:
                    Ul2Config().check_run(run_config(inputs_length, targets_length))
                except ConfigError:
                    with pytest.raises(ConfigError):
                        objective.raw_lengths(inputs_length, targets_length)
