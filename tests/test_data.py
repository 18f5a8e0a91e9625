"""Batching of example streams: packed rows are those of packing the whole stream."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from t5kernel import data


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
    stream = iter(examples + [{"inputs": np.zeros(li), "targets": np.zeros(lt)}] * 1000)
    gen = data.batches(stream, lambda exs: greedy_pack(exs, li, lt),
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
    stream = iter([{"x": i} for i in range(10)])
    gen = data.batches(stream, None, lambda exs: [e["x"] for e in exs], 4, packed=False)
    assert next(gen) == [0, 1, 2, 3] and next(gen) == [4, 5, 6, 7]


def test_mixture_stream_follows_the_rates():
    def const(v):
        while True:
            yield v

    rng = np.random.default_rng(0)
    mix = data.mixture_stream({"a": const("a"), "b": const("b")}, {"a": 0.8, "b": 0.2}, rng)
    draws = [next(mix) for _ in range(5000)]
    assert abs(draws.count("a") / 5000 - 0.8) < 0.02


class _Vocab:
    eos_id = 1

    def encode(self, text):
        return [ord(c) for c in text]


def test_encode_example_truncates_and_appends_eos():
    ex = data.encode_example({"inputs": "abcdef", "targets": "xy"}, _Vocab(), 4, 5)
    assert ex["inputs"].tolist() == [97, 98, 99, 1] and ex["targets"].tolist() == [120, 121, 1]
