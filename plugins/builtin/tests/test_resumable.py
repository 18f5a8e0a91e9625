"""Every objective's example stream resumes exactly from a saved ``state()``.

The state is taken after any number of examples, sent through JSON (as the run loop
stores it in ``state.json``) and handed to a fresh objective with a differently seeded
generator: the resumed stream must continue with exactly the examples the uninterrupted
stream gives, and recompute no more than the one block the position falls in.
"""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t5k_builtin.configs import IidSpansConfig, SpanConfig
from t5k_builtin.objectives import denoise, others, span
from t5kernel.api import BuildContext, StatefulIterator
from t5kernel.errors import DataError

VOCAB = SimpleNamespace(vocab_size=32100, eos_id=1, base_vocab_size=32000)
KINDS = {
    "iid_spans": (denoise.IidSpans, IidSpansConfig),
    "span": (span.Span, SpanConfig),
    "prefix_lm": (others.PrefixLm, others.PrefixLmConfig),
    "lm": (others.Lm, others.LmConfig),
    "bert": (others.Bert, others.BertConfig),
    "mass": (others.Mass, others.MassConfig),
    "deshuffle": (others.Deshuffle, others.DeshuffleConfig),
    "iid_drop": (others.IidDrop, others.IidDropConfig),
}
LENGTHS = {"span": (64, 24), "lm": (8, 64)}


def objective(kind, **options):
    cls, config_cls = KINDS[kind]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    cfg = dataclasses.replace(config_cls(), **{k: v for k, v in options.items() if k in fields})
    return cls(cfg, BuildContext(extras={"vocabulary": VOCAB}))


class ListDocs:
    """A document stream over a list with the kernel's stateful-iterator surface; counts
    how many documents it hands out."""

    def __init__(self, docs, state=None):
        self.docs, self.index = docs, int((state or {}).get("index", 0))
        self.opened_at, self.reads = self.index, 0

    def state(self):
        return {"index": self.index}

    def __iter__(self):
        return self

    def __next__(self):
        if self.index >= len(self.docs):
            raise StopIteration
        self.index += 1
        self.reads += 1
        return self.docs[self.index - 1]


def make_docs(seed, n, max_len=150):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 32000, rng.integers(0, max_len)).astype(np.int32) for _ in range(n)]


def opener(docs, log):
    def open_docs(state):
        stream = ListDocs(docs, state)
        log.append(stream)
        return stream

    return open_docs


def same(a, b):
    return all(
        x["inputs"].tolist() == y["inputs"].tolist() and x["targets"].tolist() == y["targets"].tolist()
        for x, y in zip(a, b, strict=True)
    )


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(sorted(KINDS)),
    st.integers(0, 2**32 - 1),
    st.integers(1, 4),
    st.lists(st.floats(0, 1), min_size=1, max_size=3),
)
def test_resume_from_any_example_continues_the_stream(kind, seed, concat, cuts):
    docs = make_docs(seed, 300)
    obj = objective(kind, concat_documents=concat)
    lengths = LENGTHS.get(kind, (32, 32))
    whole = list(obj.examples(iter(docs), *lengths, np.random.default_rng(seed)))
    assert len(whole) > 128  # several blocks
    for fraction in cuts:
        k = int(fraction * len(whole))
        log = []
        it = obj.resumable_examples(opener(docs, log), *lengths, np.random.default_rng(seed))
        assert isinstance(it, StatefulIterator)
        head = [next(it) for _ in range(k)]
        saved = json.loads(json.dumps(it.state()))
        fresh = objective(kind, concat_documents=concat)
        resumed = fresh.resumable_examples(
            opener(docs, log), *lengths, np.random.default_rng(seed + 1), saved
        )
        assert same(head, whole[:k])
        assert same(list(resumed), whole[k:])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_resume_recomputes_one_block_only(kind):
    docs = make_docs(7, 5000, max_len=60)
    lengths = LENGTHS.get(kind, (32, 32))
    obj = objective(kind, concat_documents=16)
    log = []
    it = obj.resumable_examples(opener(docs, log), *lengths, np.random.default_rng(1))
    for _ in range(1000):
        next(it)
    saved = json.loads(json.dumps(it.state()))
    expected_next = next(it)
    read_by_original = log[0].index
    resumed = obj.resumable_examples(opener(docs, log), *lengths, np.random.default_rng(1), saved)
    assert same([next(resumed)], [expected_next])
    reopened = log[-1]
    assert reopened.opened_at == saved["docs"]["index"] > 0
    # the resumed stream read exactly the documents of the block it was in, no more
    assert reopened.opened_at + reopened.reads == read_by_original
    assert reopened.reads <= 400 < reopened.opened_at


def test_a_state_that_does_not_fit_is_refused():
    docs = make_docs(0, 400)
    obj = objective("span")
    it = obj.resumable_examples(opener(docs, []), 64, 24, np.random.default_rng(0))
    for _ in range(5):
        next(it)
    saved = it.state()
    with pytest.raises(DataError, match="saved position is example 10000"):
        obj.resumable_examples(opener(docs, []), 64, 24, np.random.default_rng(0),
                               {**saved, "offset": 10000})
    with pytest.raises(DataError, match="generator state"):
        obj.resumable_examples(opener(docs, []), 64, 24, np.random.default_rng(0),
                               {**saved, "rng": {"bit_generator": "MT19937"}})
