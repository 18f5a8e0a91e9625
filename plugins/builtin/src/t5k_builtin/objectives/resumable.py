"""Objectives whose example stream can be checkpointed and resumed exactly.

The builtin objectives compute their examples a *block* at a time (one batch of chunks,
``batched.sequence_batches``), and a block always ends where a concatenated sequence
ends. Between blocks nothing is buffered anywhere in the pipeline: every document read
so far has been turned into examples and every random number drawn so far has been
used. So the position before block ``b`` is fully described by

- the document stream's position (``docs.state()``, from the kernel), and
- the generator's ``bit_generator.state`` (a small dict of ints),

and the position inside a block by how many of its examples were already handed out.
Resuming reopens the documents there, restores the generator, recomputes that one block
and skips the consumed examples: bounded work, whatever the step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from t5kernel.errors import DataError

Block = list[dict[str, np.ndarray]]


class BlockExamples:
    """A ``StatefulIterator`` over the examples of a stream of blocks.

    ``blocks(docs)`` must be a generator that, whenever it yields, has consumed exactly
    the documents and random numbers of the blocks yielded so far (see module doc).
    """

    def __init__(
        self,
        open_docs: Callable[[dict | None], Any],
        blocks: Callable[[Any], Iterator[Block]],
        rng: np.random.Generator,
        state: dict[str, Any] | None = None,
        label: str = "objective",
    ) -> None:
        self._rng = rng
        self._docs = open_docs(None if state is None else state["docs"])
        if state is not None:
            try:
                rng.bit_generator.state = state["rng"]
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(
                    f"{label}: the saved generator state does not fit a "
                    f"{type(rng.bit_generator).__name__} generator ({exc})"
                ) from None
        self._blocks = blocks(self._docs)
        self._snapshot = self._position()
        self._block: Block = []
        self._offset = 0
        skip = 0 if state is None else int(state["offset"])
        if skip:
            self._block = next(self._blocks)
            if skip > len(self._block):
                raise DataError(
                    f"{label}: the saved position is example {skip} of a block that now has "
                    f"{len(self._block)}; the objective, its lengths or the corpus changed "
                    "since the checkpoint was written"
                )
            self._offset = skip

    def _position(self) -> dict[str, Any]:
        return {"docs": self._docs.state(), "rng": self._rng.bit_generator.state}

    def state(self) -> dict[str, Any]:
        return {**self._snapshot, "offset": self._offset}

    def __iter__(self) -> BlockExamples:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        while self._offset >= len(self._block):
            snapshot = self._position()
            self._block = next(self._blocks)
            self._snapshot, self._offset = snapshot, 0
        example = self._block[self._offset]
        self._offset += 1
        return example


class BlockObjective:
    """Mixin: ``examples`` and ``resumable_examples`` from one ``blocks`` generator.

    Subclasses define ``blocks(docs, inputs_length, targets_length, rng)`` with the
    invariant of :class:`BlockExamples`.
    """

    name = ""

    def blocks(
        self, docs: Iterator[Any], inputs_length: int, targets_length: int, rng: np.random.Generator
    ) -> Iterator[Block]:
        raise NotImplementedError(f"{type(self).__name__} must define blocks")

    def examples(
        self,
        docs: Iterator[Any],
        inputs_length: int,
        targets_length: int,
        rng: np.random.Generator,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``{"inputs", "targets"}`` EOS-terminated, within the given lengths."""
        for block in self.blocks(iter(docs), inputs_length, targets_length, rng):
            yield from block

    def resumable_examples(
        self,
        open_docs: Callable[[dict | None], Any],
        inputs_length: int,
        targets_length: int,
        rng: np.random.Generator,
        state: dict[str, Any] | None = None,
    ) -> BlockExamples:
        """The same examples as a ``StatefulIterator`` (resumable from ``state()``)."""

        def blocks(docs: Any) -> Iterator[Block]:
            return self.blocks(docs, inputs_length, targets_length, rng)

        return BlockExamples(open_docs, blocks, rng, state, label=f"objective {self.name}")
