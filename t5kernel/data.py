"""Generic data plumbing of the run loop: token streams, task mixtures, batching.

Everything here is deterministic given a seed so that a resumed run can rebuild its data
stream and skip the batches it already consumed (exact resumption without pickling
iterators). Nothing here knows a paper variant: tokenisation goes through the
vocabulary, corruption through the objective, packing through the architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from t5kernel.errors import DataError


def cycle_documents(corpus: Any, split: str, vocab: Any, rng: np.random.Generator,
                    label: str) -> Iterator[np.ndarray]:
    """Token arrays of a corpus split, repeated forever (documents are not shuffled:
    the reference reads a shuffled stream of C4 documents once; the objective adds the
    randomness)."""
    epoch = 0
    while True:
        count = 0
        for ex in corpus.examples(split):
            text = ex.get("text", "")
            if not text:
                continue
            ids = vocab.encode(text)
            if ids:
                count += 1
                yield np.asarray(ids, dtype=np.int32)
        if count == 0:
            raise DataError(f"corpus {label!r} has no non-empty documents in split {split!r}")
        epoch += 1


def encode_example(ex: Mapping[str, Any], vocab: Any, inputs_length: int,
                   targets_length: int) -> dict[str, np.ndarray]:
    """Tokenise a text-to-text example; truncate to length-1 and append EOS (seqio)."""
    out = {}
    for key, length in (("inputs", inputs_length), ("targets", targets_length)):
        ids = vocab.encode(ex[key])[: length - 1] + [vocab.eos_id]
        out[key] = np.asarray(ids, dtype=np.int32)
    return out


def task_stream(task: Any, vocab: Any, inputs_length: int, targets_length: int,
                rng: np.random.Generator, label: str) -> Iterator[dict[str, np.ndarray]]:
    """A task's training examples, reshuffled every epoch, repeated forever."""
    examples = [encode_example(ex, vocab, inputs_length, targets_length)
                for ex in task.examples("train")]
    if not examples:
        raise DataError(f"task {label!r} has no training examples")
    while True:
        for i in rng.permutation(len(examples)):
            yield examples[i]


def mixture_stream(streams: Mapping[str, Iterator[dict[str, Any]]], rates: Mapping[str, float],
                   rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """Each example drawn from task m with probability rates[m] (tf.data sample_from_datasets)."""
    names = sorted(streams)
    p = np.asarray([rates[n] for n in names], dtype=np.float64)
    p = p / p.sum()
    while True:
        for idx in rng.choice(len(names), size=1024, p=p):
            yield next(streams[names[idx]])


def batches(examples: Iterator[dict[str, Any]], pack: Callable[[Sequence[Any]], list[list[int]]],
            featurize: Callable[[Sequence[Any]], dict[str, np.ndarray]], batch_size: int,
            packed: bool) -> Iterator[dict[str, np.ndarray]]:
    """Group a stream of examples into batches of exactly ``batch_size`` rows.

    With packing, rows are filled greedily in stream order and a row that is still open
    when the batch is full carries its examples over to the next batch, so the rows are
    the same as if the whole stream had been packed at once.
    """
    buffer: list[Any] = []
    while True:
        if not packed:
            while len(buffer) < batch_size:
                buffer.append(next(examples))
            chunk, buffer = buffer[:batch_size], buffer[batch_size:]
            yield featurize(chunk)
            continue
        want = max(batch_size, 1)
        while True:
            while len(buffer) < want:
                buffer.append(next(examples))
            rows = pack(buffer)
            if len(rows) > batch_size:
                break
            want = len(buffer) * 2
        taken = [i for row in rows[:batch_size] for i in row]
        cut = max(taken) + 1
        chunk, buffer = buffer[:cut], buffer[cut:]
        yield featurize(chunk)
