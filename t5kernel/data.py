"""Generic data plumbing of the run loop: document and task streams, mixtures, batching.

Every stream here is a *stateful iterator* (``api.StatefulIterator``): besides
``__next__`` it has ``state()``, a small JSON-able description of its position (the
position before the item ``__next__`` would return), and its constructor takes such a
state to continue from there. The run loop saves the batch stream's state in each
checkpoint, so a resumed run continues its data exactly where it stopped without
replaying what it already consumed (a corpus is re-read from the saved document index;
the objective recomputes at most one block of its own work).

Nothing here knows a paper variant: tokenisation goes through the vocabulary,
corruption through the objective, packing through the architecture.
"""

from __future__ import annotations

import array
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from t5kernel.errors import DataError

State = dict[str, Any]

#: a run's random streams, each seeded by :func:`seed_key` from the run seed and its domain
SEED_DOMAINS = {"objective": 1, "mixture": 2, "task": 3, "dropout": 4}
_SEED_PATHS = {"objective": 1, "mixture": 1, "task": 2, "dropout": 2}


def seed_key(seed: int, domain: str, *path: int) -> list[int]:
    """The entropy ``[seed, domain number, *path]`` of one of a run's random streams
    (``np.random.default_rng(key)``; the streams here append their own counter, an epoch
    or a block).

    Keys are kept apart because numpy's ``SeedSequence`` pads its entropy with zeros:
    ``default_rng([s])``, ``default_rng([s, 0])`` and ``default_rng([s, 0, 0])`` are one
    stream, so plain ``[seed]``, ``[seed, block]`` and ``[seed, task, epoch]`` keys made
    the objective's draws, the first mixing block and the first task's first shuffle
    the same random bits. A domain's keys have one length (``path``: objective and
    mixture the stage; task the stage and task index; dropout the rank and global
    step), and domains differ in the second word, so no two keys coincide.
    """
    if domain not in SEED_DOMAINS:
        raise ValueError(f"unknown seed domain {domain!r}; one of {sorted(SEED_DOMAINS)}")
    if len(path) != _SEED_PATHS[domain]:
        raise ValueError(f"seed domain {domain!r} takes {_SEED_PATHS[domain]} path numbers, "
                         f"got {len(path)}")
    return [int(seed), SEED_DOMAINS[domain], *(int(p) for p in path)]


class DocumentStream:
    """Token arrays of a corpus split, repeated forever, with their position.

    Documents are read in the corpus's order (the reference reads a shuffled stream of
    C4 documents once; the objective adds the randomness). Empty texts and texts that
    tokenise to nothing are skipped but counted, so the position's ``index`` is the
    number of raw examples of the current pass already read; resuming skips that many
    raw examples without tokenising them.

    ``max_tokens`` > 0 is a token budget (P §3.4.2, Table 9): a pass ends once that many
    tokens were read, the last document cut to fit, so every pass reads the same first
    ``max_tokens`` tokens of the corpus. A corpus with fewer tokens is used whole.
    """

    def __init__(self, corpus: Any, split: str, vocab: Any, label: str,
                 state: State | None = None, max_tokens: int = 0) -> None:
        self._corpus, self._split, self._vocab, self._label = corpus, split, vocab, label
        self.max_tokens = int(max_tokens)
        state = state or {"epoch": 0, "index": 0}
        try:
            self._epoch, self._index = int(state["epoch"]), int(state["index"])
            #: tokens read in the current pass, and in a whole pass once one has ended
            self._tokens = int(state.get("tokens", 0))
            self.pass_tokens = state.get("pass_tokens")
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DataError(f"corpus {label!r}: saved document position {state!r} is not "
                            "{'epoch': int, 'index': int, ...}") from None
        self._found = self._index > 0  # documents seen in this pass (for the empty check)
        self._open(skip=self._index)

    def _open(self, skip: int) -> None:
        self._raw = self._corpus.examples(self._split)
        if skip:
            skipped = sum(1 for _ in itertools.islice(self._raw, skip))
            if skipped < skip:
                raise DataError(
                    f"corpus {self._label!r}: saved position is document {skip} of pass "
                    f"{self._epoch}, but split {self._split!r} has only {skipped}; the "
                    "corpus changed since the checkpoint was written")

    def state(self) -> State:
        return {"epoch": self._epoch, "index": self._index, "tokens": self._tokens,
                "pass_tokens": self.pass_tokens}

    @property
    def passes(self) -> float:
        """How many times the corpus (or its budget) has been read: whole passes plus
        the fraction of the current one (the fraction needs one finished pass)."""
        if not self.pass_tokens:
            return float(self._epoch)
        return self._epoch + self._tokens / self.pass_tokens

    def __iter__(self) -> DocumentStream:
        return self

    def _next_pass(self) -> None:
        if not self._found:
            raise DataError(f"corpus {self._label!r} has no non-empty documents in split "
                            f"{self._split!r}")
        self.pass_tokens = self._tokens
        self._epoch, self._index, self._tokens, self._found = self._epoch + 1, 0, 0, False
        self._open(skip=0)

    def __next__(self) -> np.ndarray:
        budget = self.max_tokens
        while True:
            if budget and self._tokens >= budget:
                self._next_pass()
            for ex in self._raw:
                self._index += 1
                text = ex.get("text", "")
                ids = self._vocab.encode(text) if text else None
                if ids:
                    self._found = True
                    if budget:
                        ids = ids[: budget - self._tokens]
                    self._tokens += len(ids)
                    return np.asarray(ids, dtype=np.int32)
            self._next_pass()


#: P §3.1.3: the vocabulary was trained on C4 mixed 10:1:1:1 with German, French and
#: Romanian web pages; each other language gets this share of the corpus's characters
OTHER_LANGUAGE_SHARE = 0.1


def vocabulary_texts(corpus: Any, tasks: Mapping[str, Any]) -> Iterator[str]:
    """Texts a vocabulary may train on: the corpus's ``train`` split, mixed with each
    other language the tasks bring at :data:`OTHER_LANGUAGE_SHARE` of its characters
    (P §3.1.3's 10:1:1:1); without a corpus, every task's inputs and targets.

    A task brings a language through its optional ``vocabulary_texts()``, a mapping of
    language code -> texts (a WMT pair's non-English side). Without them a vocabulary of
    English C4 maps most accented letters to ``<unk>``, e.g. 3-9% of WMT's German, French
    and Romanian tokens. Each corpus document is followed, in one text, by the lines of
    the other languages that keep their share; a language whose texts run out stops.
    """
    if corpus is None:
        for task in tasks.values():
            for ex in task.examples("train"):
                yield ex["inputs"]
                yield ex["targets"]
        return
    others: dict[str, Iterator[str] | None] = {}
    for _, task in sorted(tasks.items()):
        offered = getattr(task, "vocabulary_texts", None)
        for language, texts in (offered() if callable(offered) else {}).items():
            before = others.get(language)
            others[language] = itertools.chain(before, texts) if before else iter(texts)
    corpus_chars = 0
    added = dict.fromkeys(others, 0)
    for ex in corpus.examples("train"):
        text = ex["text"]
        corpus_chars += len(text)
        lines = [text]
        for language, texts in others.items():
            while texts is not None and added[language] < OTHER_LANGUAGE_SHARE * corpus_chars:
                line = next(texts, None)
                if line is None:
                    others[language] = texts = None
                else:
                    lines.append(line)
                    added[language] += len(line)
        yield "\n".join(lines)


class ReplayStream:
    """The generic fallback for iterators that cannot describe their position.

    ``make()`` must rebuild the same deterministic stream each time; the state is the
    number of items consumed and resuming skips that many (exact, but the skipped work
    is redone — objectives that implement ``resumable_examples`` avoid it).
    """

    def __init__(self, make: Callable[[], Iterator[Any]], state: State | None = None) -> None:
        self._it = make()
        self._consumed = 0
        target = int((state or {}).get("consumed", 0))
        for _ in range(target):
            next(self._it)
            self._consumed += 1

    def state(self) -> State:
        return {"consumed": self._consumed}

    def __iter__(self) -> ReplayStream:
        return self

    def __next__(self) -> Any:
        item = next(self._it)
        self._consumed += 1
        return item


def encode_example(ex: Mapping[str, Any], vocab: Any, inputs_length: int,
                   targets_length: int) -> dict[str, np.ndarray]:
    """Tokenise a text-to-text example; truncate to length-1 and append EOS (seqio)."""
    out = {}
    for key, length in (("inputs", inputs_length), ("targets", targets_length)):
        ids = vocab.encode(ex[key])[: length - 1] + [vocab.eos_id]
        out[key] = np.asarray(ids, dtype=np.int32)
    return out


#: what a task cache's info.json says about its layout (a folder of another is rebuilt)
TASK_CACHE_FORMAT = 1
#: examples tokenised between two writes of a task cache (memory stays bounded)
TASK_CACHE_CHUNK = 1 << 16
_FEATURES = ("inputs", "targets")


def _id_dtype(vocab: Any) -> np.dtype:
    """uint16 when every id fits (vocabularies up to 65,536 pieces), else int32."""
    size = getattr(vocab, "vocab_size", None)
    return np.dtype(np.uint16 if size is not None and int(size) <= 1 << 16 else np.int32)


def _task_cache_info(vocab: Any, inputs_length: int, targets_length: int) -> dict[str, Any]:
    """What a task cache was built with (its info.json, less the example count): a folder
    built with other lengths or another vocabulary is not reused."""
    import hashlib

    proto = getattr(vocab, "model_proto", None)
    return {"format": TASK_CACHE_FORMAT, "inputs_length": int(inputs_length),
            "targets_length": int(targets_length),
            "vocab_size": int(getattr(vocab, "vocab_size", 0) or 0),
            "vocabulary_sha256": (hashlib.sha256(proto).hexdigest()
                                  if isinstance(proto, bytes) else None),
            "dtype": _id_dtype(vocab).name}


def _read_task_cache(folder: Path, info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The memory-mapped arrays of a task cache built with ``info``, or None."""
    import json

    try:
        have = json.loads((folder / "info.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(have, dict) or {k: have.get(k) for k in info} != dict(info):
        return None
    n = int(have.get("examples", 0))
    out: dict[str, Any] = {}
    try:
        for key in _FEATURES:
            # plain read-only ndarray views of the mappings (examples are slices of them)
            ends = np.asarray(np.memmap(folder / f"{key}.ends", dtype=np.int64, mode="r"))
            ids = np.asarray(np.memmap(folder / f"{key}.ids", dtype=np.dtype(info["dtype"]),
                                       mode="r"))
            if len(ends) != n or n == 0 or int(ends[-1]) != len(ids):
                return None
            out[key] = (ids, ends)
    except (OSError, ValueError):
        return None
    return out


def build_task_cache(task: Any, vocab: Any, inputs_length: int, targets_length: int,
                     label: str, folder: Path) -> bool:
    """Tokenise ``task``'s training examples once into ``folder`` (unless a complete cache
    built with the same lengths and vocabulary is there; returns whether it built one).

    The folder holds, per feature, every example's ids back to back (``.ids``, raw
    uint16/int32) and each example's end offset (``.ends``, int64), plus ``info.json``.
    Written in chunks (memory stays bounded however large the task) into a temporary
    folder renamed when complete, so a killed build leaves no half cache behind.
    """
    import json
    import shutil

    from t5kernel.checkpoint import atomic_folder

    folder = Path(folder)
    info = _task_cache_info(vocab, inputs_length, targets_length)
    if _read_task_cache(folder, info) is not None:
        return False
    if folder.exists():  # stale (other lengths/vocabulary) or incomplete: rebuild
        shutil.rmtree(folder)
    dtype = _id_dtype(vocab)
    with atomic_folder(folder) as tmp:
        files = {key: (open(tmp / f"{key}.ids", "wb"), open(tmp / f"{key}.ends", "wb"))
                 for key in _FEATURES}
        try:
            count = _write_task_tokens(task, vocab, inputs_length, targets_length, dtype,
                                       files)
        finally:
            for pair in files.values():
                for f in pair:
                    f.close()
        if not count:
            raise DataError(f"task {label!r} has no training examples")
        (tmp / "info.json").write_text(json.dumps({**info, "examples": count,
                                                   "task": label}, indent=1))
    return True


def _write_task_tokens(task: Any, vocab: Any, inputs_length: int, targets_length: int,
                       dtype: np.dtype, files: Mapping[str, tuple[Any, Any]]) -> int:
    """Append every training example's ids and end offsets to ``files``,
    :data:`TASK_CACHE_CHUNK` examples at a time; returns the number of examples."""
    chunk = TASK_CACHE_CHUNK
    total = dict.fromkeys(_FEATURES, 0)
    ids: dict[str, list[np.ndarray]] = {key: [] for key in _FEATURES}
    count = 0

    def flush() -> None:
        for key in _FEATURES:
            if not ids[key]:
                continue
            lengths = np.fromiter((len(a) for a in ids[key]), dtype=np.int64)
            ends = total[key] + np.cumsum(lengths)
            ids_file, ends_file = files[key]
            ids_file.write(np.concatenate(ids[key]).astype(dtype).tobytes())
            ends_file.write(ends.tobytes())
            total[key] = int(ends[-1])
            ids[key].clear()

    for ex in task.examples("train"):
        for key, values in encode_example(ex, vocab, inputs_length, targets_length).items():
            ids[key].append(values)
        count += 1
        if count % chunk == 0:
            flush()
    flush()
    return count


class TaskStream:
    """A task's training examples, reshuffled every epoch, repeated forever.

    The permutation of epoch ``e`` comes from ``default_rng([*seed, e])`` (``seed``: the
    run loop's :func:`seed_key`), so the position is just ``{"epoch", "index"}``.

    The tokenised examples are held compactly: every example's ids in one flat array per
    feature (uint16 when the vocabulary fits, else int32) plus offsets, and an example is
    a pair of read-only views into them. Python objects per example cost ~750 bytes; this
    costs 2 bytes a token and 16 an example (~200 bytes for an 82-token pair; WMT
    En-Fr's 40.8M pairs: ~29 GiB -> ~8).

    ``cache``: a folder (:func:`build_task_cache`, built here unless already complete)
    whose files the arrays are memory-mapped from: the task is tokenised once per run,
    not again on every resume, and processes on one machine share one copy of the ids
    in the page cache instead of holding one each.
    """

    def __init__(self, task: Any, vocab: Any, inputs_length: int, targets_length: int,
                 seed: int | Sequence[int], label: str, state: State | None = None,
                 cache: Path | None = None) -> None:
        self._ids, self._ends = {}, {}
        if cache is not None:
            build_task_cache(task, vocab, inputs_length, targets_length, label, Path(cache))
            arrays = _read_task_cache(Path(cache),
                                      _task_cache_info(vocab, inputs_length, targets_length))
            if arrays is None:  # changed under us (another process rebuilding it)
                raise DataError(f"task {label!r}: the token cache {cache} is unreadable")
            for key, (flat, ends) in arrays.items():
                self._ids[key], self._ends[key] = flat, ends
        else:
            self._encode_in_memory(task, vocab, inputs_length, targets_length, label)
        self._size = len(self._ends["inputs"])
        self._seed = [int(s) for s in np.atleast_1d(seed)]
        state = state or {"epoch": 0, "index": 0}
        self._epoch, self._index = int(state["epoch"]), int(state["index"])
        self._order = self._permutation()

    def _encode_in_memory(self, task: Any, vocab: Any, inputs_length: int,
                          targets_length: int, label: str) -> None:
        code = "H" if _id_dtype(vocab) == np.uint16 else "i"
        ids = {"inputs": array.array(code), "targets": array.array(code)}
        ends = {"inputs": array.array("q"), "targets": array.array("q")}
        for ex in task.examples("train"):
            for key, values in encode_example(ex, vocab, inputs_length, targets_length).items():
                ids[key].extend(values.tolist())
                ends[key].append(len(ids[key]))
        if not ends["inputs"]:
            raise DataError(f"task {label!r} has no training examples")
        for key in ids:
            self._ids[key] = np.frombuffer(ids[key], dtype=_id_dtype(vocab))
            self._ids[key].flags.writeable = False  # examples are views: never written
            self._ends[key] = np.frombuffer(ends[key], dtype=np.int64)

    def _example(self, i: int) -> dict[str, np.ndarray]:
        out = {}
        for key, flat in self._ids.items():
            end = int(self._ends[key][i])
            start = int(self._ends[key][i - 1]) if i else 0
            out[key] = flat[start:end]
        return out

    def _permutation(self) -> np.ndarray:
        rng = np.random.default_rng([*self._seed, self._epoch])
        return rng.permutation(self._size)

    def state(self) -> State:
        return {"epoch": self._epoch, "index": self._index}

    def __iter__(self) -> TaskStream:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._index >= len(self._order):
            self._epoch, self._index = self._epoch + 1, 0
            self._order = self._permutation()
        ex = self._example(int(self._order[self._index]))
        self._index += 1
        return ex


class MixtureStream:
    """Each example drawn from task m with probability rates[m] (tf.data
    ``sample_from_datasets``). Choices are drawn 1024 at a time, block ``b`` from
    ``default_rng([*seed, b])`` (``seed``: the run loop's :func:`seed_key`); the position is the block, the offset in it and the
    position of every task stream."""

    BLOCK = 1024

    def __init__(self, streams: Mapping[str, Any], rates: Mapping[str, float],
                 seed: int | Sequence[int], state: State | None = None) -> None:
        self._names = sorted(streams)
        self._streams = streams
        p = np.asarray([rates[n] for n in self._names], dtype=np.float64)
        self._p = p / p.sum()
        self._seed = [int(s) for s in np.atleast_1d(seed)]
        state = state or {"block": 0, "offset": 0}
        self._block, self._offset = int(state["block"]), int(state["offset"])
        self._choices = self._draw()

    def _draw(self) -> np.ndarray:
        rng = np.random.default_rng([*self._seed, self._block])
        return rng.choice(len(self._names), size=self.BLOCK, p=self._p)

    def state(self) -> State:
        return {"block": self._block, "offset": self._offset,
                "tasks": {n: self._streams[n].state() for n in self._names}}

    def __iter__(self) -> MixtureStream:
        return self

    def __next__(self) -> Any:
        if self._offset >= self.BLOCK:
            self._block, self._offset = self._block + 1, 0
            self._choices = self._draw()
        idx = self._choices[self._offset]
        self._offset += 1
        return next(self._streams[self._names[idx]])


class Batches:
    """Group a stateful stream of examples into batches of exactly ``batch_size`` rows.

    With packing, rows are filled greedily in stream order and a row that is still open
    when the batch is full carries its examples over to the next batch, so the rows are
    the same as if the whole stream had been packed at once. That makes the state after
    a batch simply the example stream's state before the first example not yet used:
    resuming there with an empty buffer gives the same next batches.
    """

    def __init__(self, examples: Any, pack: Callable[[Sequence[Any]], list[list[int]]] | None,
                 featurize: Callable[[Sequence[Any]], Any], batch_size: int,
                 packed: bool) -> None:
        self._examples, self._pack, self._featurize = examples, pack, featurize
        self._batch_size, self._packed = int(batch_size), packed
        self._buffer: list[Any] = []
        self._states: list[State] = []  # the stream's state before each buffered example

    def state(self) -> State:
        return self._states[0] if self._states else self._examples.state()

    def __iter__(self) -> Batches:
        return self

    def _fill(self, want: int) -> None:
        while len(self._buffer) < want:
            self._states.append(self._examples.state())
            self._buffer.append(next(self._examples))

    def __next__(self) -> Any:
        size = self._batch_size
        if not self._packed:
            self._fill(size)
            cut = size
        else:
            want = max(size, 1)
            while True:
                self._fill(want)
                rows = self._pack(self._buffer)
                if len(rows) > size:
                    break
                want = len(self._buffer) * 2
            cut = max(i for row in rows[:size] for i in row) + 1
        chunk = self._buffer[:cut]
        del self._buffer[:cut], self._states[:cut]
        return self._featurize(chunk)
