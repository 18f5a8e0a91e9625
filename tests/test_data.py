"""Stateful data streams: batching packs like the whole stream, and every stream resumes
exactly from its JSON-able ``state()``."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t5kernel import data
from t5kernel.api import StatefulIterator
from t5kernel.errors import DataError


class Listed:
    """A stateful iterator over a list (state: the index of the next item)."""

    def __init__(self, items, state=None):
        self.items, self.index = items, int((state or {}).get("index", 0))

    def state(self):
        return {"index": self.index}

    def __iter__(self):
        return self

    def __next__(self):
        if self.index >= len(self.items):
            raise StopIteration
        self.index += 1
        return self.items[self.index - 1]


def roundtrip(state):
    return json.loads(json.dumps(state))


def greedy_pack(examples, li, lt):
    """Reference greedy packing (seqio): a new row when either feature would overflow."""
    rows, cur, used_i, used_t = [], [], 0, 0
    for i, ex in enumerate(examples):
        a, b = len(ex["inputs"]), len(ex["targets"])
        if cur and (used_i + a > li or used_t + b > lt):
            rows.append(cur)
            cur, used_i, used_t = [], 0, 0
        cur.append(i)
        used_i, used_t = used_i + a, used_t + b
    if cur:
        rows.append(cur)
    return rows


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10), st.integers(1, 6)), min_size=1, max_size=80),
       st.integers(1, 5))
def test_packed_batches_equal_packing_the_whole_stream(lengths, batch_size):
    examples = [{"inputs": np.full(a, i), "targets": np.full(b, i)}
                for i, (a, b) in enumerate(lengths)]
    li, lt = 12, 8
    stream = Listed(examples + [{"inputs": np.zeros(li), "targets": np.zeros(lt)}] * 1000)
    gen = data.Batches(stream, lambda exs: greedy_pack(exs, li, lt),
                       lambda exs: {"rows": greedy_pack(exs, li, lt), "exs": exs},
                       batch_size, packed=True)
    whole = greedy_pack(examples, li, lt)
    got = []
    while len(got) < len(whole):
        b = next(gen)
        assert len(b["rows"]) == batch_size or len(got) + len(b["rows"]) >= len(whole)
        got.extend([[int(b["exs"][i]["inputs"][0]) for i in row] for row in b["rows"]])
    assert got[: len(whole)] == whole


def test_unpacked_batches_have_one_example_per_row():
    stream = Listed([{"x": i} for i in range(10)])
    gen = data.Batches(stream, None, lambda exs: [e["x"] for e in exs], 4, packed=False)
    assert next(gen) == [0, 1, 2, 3] and next(gen) == [4, 5, 6, 7]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10), st.integers(1, 6)), min_size=30, max_size=120),
       st.integers(1, 4), st.booleans(), st.integers(0, 6))
def test_batches_resume_from_their_state(lengths, batch_size, packed, cut):
    examples = [{"inputs": np.full(a, i), "targets": np.full(b, i)}
                for i, (a, b) in enumerate(lengths)]
    li, lt = 12, 8

    def make(state=None):
        return data.Batches(Listed(examples, state), lambda exs: greedy_pack(exs, li, lt),
                            lambda exs: [int(e["inputs"][0]) for e in exs], batch_size, packed)

    whole = list(make())
    first = make()
    head = list(itertools.islice(first, cut))
    assert head == whole[: len(head)]
    assert list(make(roundtrip(first.state()))) == whole[len(head):]


class _Const:
    def __init__(self, value):
        self.value, self.n = value, 0

    def state(self):
        return {"n": self.n}

    def __next__(self):
        self.n += 1
        return self.value


def test_mixture_stream_follows_the_rates():
    mix = data.MixtureStream({"a": _Const("a"), "b": _Const("b")}, {"a": 0.8, "b": 0.2}, 0)
    draws = [next(mix) for _ in range(5000)]
    assert abs(draws.count("a") / 5000 - 0.8) < 0.02
    assert mix.state()["tasks"] == {"a": {"n": draws.count("a")}, "b": {"n": draws.count("b")}}


class _Task:
    def __init__(self, n, tag):
        self.rows = [{"inputs": f"{tag}{i}", "targets": "t"} for i in range(n)]

    def examples(self, split):
        return iter(self.rows)


def _mixture(state=None):
    tasks = {"a": _Task(7, "a"), "b": _Task(3, "b")}
    streams = {name: data.TaskStream(t, _Vocab(), 8, 4, [5, i], name,
                                     (state or {}).get("tasks", {}).get(name))
               for i, (name, t) in enumerate(sorted(tasks.items()))}
    return data.MixtureStream(streams, {"a": 0.5, "b": 0.5}, 5, state)


@pytest.mark.parametrize("cut", [0, 1, 9, 1023, 1024, 1500])
def test_task_mixture_resumes_from_its_state(cut):
    def text(ex):
        return "".join(map(chr, ex["inputs"][:-1]))

    whole = [text(ex) for ex in itertools.islice(_mixture(), 2200)]
    first = _mixture()
    assert [text(next(first)) for _ in range(cut)] == whole[:cut]
    resumed = _mixture(roundtrip(first.state()))
    assert isinstance(resumed, StatefulIterator)
    assert [text(ex) for ex in itertools.islice(resumed, 2200 - cut)] == whole[cut:]
    # every epoch of a task is a permutation of its examples
    a_seq = [w for w in whole if w.startswith("a")]
    assert all(sorted(a_seq[i : i + 7]) == [f"a{j}" for j in range(7)] for i in (0, 7, 14))


def test_replay_stream_skips_what_was_consumed():
    first = data.ReplayStream(lambda: iter(range(100)))
    assert [next(first) for _ in range(30)] == list(range(30))
    resumed = data.ReplayStream(lambda: iter(range(100)), roundtrip(first.state()))
    assert next(resumed) == 30 and resumed.state() == {"consumed": 31}


class _Corpus:
    def __init__(self, texts):
        self.texts = texts

    def examples(self, split):
        return iter([{"text": t} for t in self.texts])


class _CountingVocab:
    eos_id = 1

    def __init__(self):
        self.encoded = []

    def encode(self, text):
        self.encoded.append(text)
        return [ord(c) for c in text]


def test_document_stream_cycles_and_resumes_without_retokenising():
    corpus = _Corpus(["ab", "", "c", "def"])
    vocab = _CountingVocab()
    docs = data.DocumentStream(corpus, "train", vocab, "c")
    got = ["".join(map(chr, next(docs))) for _ in range(5)]
    assert got == ["ab", "c", "def", "ab", "c"]
    state = roundtrip(docs.state())
    assert state == {"epoch": 1, "index": 3, "tokens": 3, "pass_tokens": 6}
    assert docs.passes == 1.5
    vocab.encoded.clear()
    resumed = data.DocumentStream(corpus, "train", vocab, "c", state)
    assert "".join(map(chr, next(resumed))) == "def" and vocab.encoded == ["def"]


def test_token_budget_truncates_and_repeats_the_corpus():
    corpus = _Corpus(["abcd", "", "efg", "hijkl", "mn"])  # 4 + 3 + 5 + 2 = 14 tokens
    docs = data.DocumentStream(corpus, "train", _CountingVocab(), "c", max_tokens=9)
    read = ["".join(map(chr, next(docs))) for _ in range(9)]
    # every pass: the first 9 tokens, the third document cut to fit
    assert read == ["abcd", "efg", "hi"] * 3
    assert docs.pass_tokens == 9 and docs.passes == 3.0
    # tokens read over a long run / budget = the paper's number of repeats
    for _ in range(3 * 64 - 9):
        next(docs)
    assert docs.passes == 64.0


@pytest.mark.parametrize("budget", [0, 9, 100])
def test_budgeted_stream_resumes_mid_pass(budget):
    corpus = _Corpus(["abcd", "", "efg", "hijkl", "mn"])
    whole = data.DocumentStream(corpus, "train", _CountingVocab(), "c", max_tokens=budget)
    expected = ["".join(map(chr, next(whole))) for _ in range(20)]
    first = data.DocumentStream(corpus, "train", _CountingVocab(), "c", max_tokens=budget)
    head = ["".join(map(chr, next(first))) for _ in range(7)]
    resumed = data.DocumentStream(corpus, "train", _CountingVocab(), "c",
                                  roundtrip(first.state()), max_tokens=budget)
    assert head + ["".join(map(chr, next(resumed))) for _ in range(13)] == expected
    assert resumed.passes == whole.passes


def test_document_stream_errors_name_the_problem():
    with pytest.raises(DataError, match="no non-empty documents"):
        next(data.DocumentStream(_Corpus(["", ""]), "train", _CountingVocab(), "blank"))
    with pytest.raises(DataError, match="has only 2; the corpus changed"):
        data.DocumentStream(_Corpus(["a", "b"]), "train", _CountingVocab(), "c",
                            {"epoch": 0, "index": 5})
    with pytest.raises(DataError, match="saved document position"):
        data.DocumentStream(_Corpus(["a"]), "train", _CountingVocab(), "c", {"index": "x"})


class _Vocab:
    eos_id = 1

    def encode(self, text):
        return [ord(c) for c in text]


def test_encode_example_truncates_and_appends_eos():
    ex = data.encode_example({"inputs": "abcdef", "targets": "xy"}, _Vocab(), 4, 5)
    assert ex["inputs"].tolist() == [97, 98, 99, 1] and ex["targets"].tolist() == [120, 121, 1]


class _Corpus:
    def __init__(self, texts):
        self.texts = texts

    def examples(self, split):
        assert split == "train"
        return iter({"text": t} for t in self.texts)


class _Translation:
    def __init__(self, texts_by_language):
        self.texts_by_language = texts_by_language

    def vocabulary_texts(self):
        return {lang: iter(texts) for lang, texts in self.texts_by_language.items()}

    def examples(self, split):
        raise AssertionError("a corpus run reads only vocabulary_texts from tasks")


def test_vocabulary_texts_mix_other_languages_at_a_tenth_of_the_corpus():
    """P §3.1.3: C4 mixed 10:1:1:1 with German, French and Romanian, by characters."""
    docs = [("english " * 50).strip()] * 200
    de = [f"deutsch {i} äöü" for i in range(10_000)]
    ro = [f"română {i}" for i in range(30)]  # runs out
    tasks = {"wmt_ende": _Translation({"de": de}), "wmt_enro": _Translation({"ro": ro}),
             "glue_cola": object()}  # no vocabulary_texts: contributes nothing
    texts = list(data.vocabulary_texts(_Corpus(docs), tasks))
    assert len(texts) == len(docs)  # one text per corpus document
    lines = [line for text in texts for line in text.split("\n")]
    english = sum(len(line) for line in lines if line.startswith("english"))
    german = [line for line in lines if line.startswith("deutsch")]
    assert english == sum(map(len, docs))
    assert german == de[:len(german)]  # in order
    assert 0.1 * english <= sum(map(len, german)) <= 0.1 * english + len(de[0]) + 1
    assert [line for line in lines if line.startswith("română")] == ro
    assert texts[0].startswith(docs[0] + "\n" + de[0])


def test_vocabulary_texts_without_other_languages_are_the_corpus():
    docs = ["one", "two", "three"]
    assert list(data.vocabulary_texts(_Corpus(docs), {})) == docs

    class Task:
        def examples(self, split):
            return iter([{"inputs": "a", "targets": "b"}, {"inputs": "c", "targets": "d"}])

    assert list(data.vocabulary_texts(None, {"t": Task()})) == ["a", "b", "c", "d"]


class _SizedVocab:
    eos_id = 1

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size

    def encode(self, text):
        return [3 + (ord(c) * 7919) % (self.vocab_size - 3) for c in text]


@pytest.mark.parametrize(("vocab_size", "dtype"), [(32128, np.uint16), (250_112, np.int32)])
def test_task_stream_holds_the_encoded_examples_compactly(vocab_size, dtype):
    """Each epoch yields every encoded example once, in that epoch's permutation, as
    read-only views of one flat array per feature (uint16 ids when they fit)."""
    vocab = _SizedVocab(vocab_size)
    task = _Task(11, "ab" * 9)
    stream = data.TaskStream(task, vocab, 6, 4, [3, 1], "t")
    expected = [data.encode_example(ex, vocab, 6, 4) for ex in task.rows]
    for epoch in range(2):
        order = np.random.default_rng([3, 1, epoch]).permutation(len(expected))
        for i in order:
            got = next(stream)
            assert got["inputs"].dtype == dtype and not got["inputs"].flags.writeable
            for key in ("inputs", "targets"):
                assert got[key].tolist() == expected[i][key].tolist()


def _run_keys(seed: int, tasks: int, counters: int) -> dict[tuple, list[int]]:
    """Every stream key a run with ``tasks`` tasks draws from in its first ``counters``
    epochs/blocks/steps, by what it seeds."""
    keys = {}
    for stage in (0, 1):
        keys["objective", stage] = data.seed_key(seed, "objective", stage)
        for c in range(counters):
            keys["mixture", stage, c] = [*data.seed_key(seed, "mixture", stage), c]
            for i in range(tasks):
                keys["task", stage, i, c] = [*data.seed_key(seed, "task", stage, i), c]
    for rank in range(2):
        for step in range(counters):
            keys["dropout", rank, step] = data.seed_key(seed, "dropout", rank, step)
    return keys


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_no_two_of_a_runs_random_streams_coincide(seed):
    """numpy's SeedSequence pads entropy with zeros ([s] and [s, 0] are one stream), so
    keys are (seed, domain, fixed-length path, counter): every stream a run seeds (the
    objective's, each mixing block, each task's epoch shuffles, each step's dropout) is
    its own."""
    assert np.random.SeedSequence([seed]).generate_state(4).tolist() == (
        np.random.SeedSequence([seed, 0, 0]).generate_state(4).tolist())  # the pitfall
    keys = _run_keys(seed, tasks=3, counters=3)
    states = {tuple(np.random.SeedSequence(k).generate_state(4).tolist()) for k in keys.values()}
    assert len(states) == len(keys)


def test_seed_keys_refuse_unknown_domains_and_paths():
    with pytest.raises(ValueError, match="unknown seed domain 'dropuot'"):
        data.seed_key(0, "dropuot", 0, 0)
    with pytest.raises(ValueError, match="'task' takes 2 path numbers, got 1"):
        data.seed_key(0, "task", 0)


class _CountingTask(_Task):
    """A task that counts how often its training examples are read."""

    def __init__(self, rows):
        self.rows, self.reads = rows, 0

    def examples(self, split):
        self.reads += 1
        return iter(self.rows)


def _drain(stream, n):
    return [(x["inputs"].tolist(), x["targets"].tolist()) for x in itertools.islice(stream, n)]


@settings(max_examples=30, deadline=None)
@given(texts=st.lists(st.tuples(st.text("abcxyz", max_size=12), st.text("pq", max_size=6)),
                      min_size=1, max_size=25),
       chunk=st.integers(1, 8), vocab_size=st.sampled_from([32128, 250_112]))
def test_a_cached_task_stream_yields_what_the_in_memory_one_does(tmp_path_factory, texts,
                                                                 chunk, vocab_size):
    """Written in chunks of any size and memory-mapped back, the cache gives the same
    examples in the same order, ids of the same dtype, read-only."""
    folder = tmp_path_factory.mktemp("cache") / "t"
    rows = [{"inputs": a, "targets": b} for a, b in texts]
    vocab = _SizedVocab(vocab_size)
    old = data.TASK_CACHE_CHUNK
    data.TASK_CACHE_CHUNK = chunk
    try:
        cached = data.TaskStream(_CountingTask(rows), vocab, 6, 4, [3, 1], "t", cache=folder)
    finally:
        data.TASK_CACHE_CHUNK = old
    plain = data.TaskStream(_CountingTask(rows), vocab, 6, 4, [3, 1], "t")
    n = 2 * len(rows) + 1
    first = next(cached)
    assert first["inputs"].dtype == plain._ids["inputs"].dtype
    assert not first["inputs"].flags.writeable
    got = [(first["inputs"].tolist(), first["targets"].tolist()), *_drain(cached, n - 1)]
    assert got == _drain(plain, n)


def test_a_task_cache_is_reused_and_rebuilt_only_when_stale(tmp_path):
    rows = [{"inputs": f"a{i}", "targets": "b"} for i in range(9)]
    task, vocab, folder = _CountingTask(rows), _SizedVocab(32128), tmp_path / "t"
    want = _drain(data.TaskStream(task, vocab, 6, 4, [1], "t", cache=folder), 9)
    assert task.reads == 1 and json.loads((folder / "info.json").read_text())["examples"] == 9
    # again (a resumed run; another process of the run): read from the files only
    assert _drain(data.TaskStream(task, vocab, 6, 4, [1], "t", cache=folder), 9) == want
    assert task.reads == 1
    # other lengths or another vocabulary: rebuilt
    data.TaskStream(task, vocab, 5, 4, [1], "t", cache=folder)
    assert task.reads == 2 and json.loads((folder / "info.json").read_text())["inputs_length"] == 5
    data.TaskStream(task, _SizedVocab(250_112), 5, 4, [1], "t", cache=folder)
    assert task.reads == 3
    # a damaged cache (a truncated file): rebuilt, not trusted
    ids = folder / "inputs.ids"
    ids.write_bytes(ids.read_bytes()[:-2])
    data.TaskStream(task, _SizedVocab(250_112), 5, 4, [1], "t", cache=folder)
    assert task.reads == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_task_without_examples_leaves_no_cache(tmp_path):
    with pytest.raises(DataError, match="task 'empty' has no training examples"):
        data.TaskStream(_CountingTask([]), _SizedVocab(300), 6, 4, [1], "empty",
                        cache=tmp_path / "empty")
    assert list(tmp_path.iterdir()) == []
