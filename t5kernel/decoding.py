"""Search over any model that decodes one position at a time (facts §5.4, §7.3).

A model opts in by returning an :class:`IncrementalDecoder` from
``model.incremental_decoder(batch, num_beams, use_cache)``; the search algorithms here
(greedy, beam search, ensembles of several models) then work for every architecture
without knowing its layout. The decoder owns the key/value cache; the search owns the
hypotheses.

Static shapes (``generate(..., static_shapes=True)``, opt-in; the xla backend asks for it)
make every decoding step run the same tensor shapes and the same operations, so a
graph-compiling device (XLA) compiles the step once and reuses it for every step and
every batch of the same row count. The search then never drops rows (no ``select``),
writes step ``t``'s tokens at a step index held on the device (no Python-int indexing,
which XLA bakes into the graph), calls ``sync()`` (the backend's graph cut) once per step
before it reads a stop condition on the host, and trims the result to the generated
length on the host. The decoder is created with
``model.incremental_decoder(batch, num_beams, use_cache, static_shapes=True,
max_length=max_length)`` (the keywords are passed only in this mode, so a model without
them still works by default) and must keep its shapes fixed too: the builtin models pad
the encoder input to a power-of-two width bucket instead of trimming it exactly and
write keys/values into buffers preallocated for ``max_length`` positions. The ids are
the dynamic mode's: the extra (masked) keys get exactly zero attention weight, and only
the kernels' summation order may differ.

Compiled steps (``generate(..., compile=True)``, opt-in) are static shapes whose decoder
runs each step through ``torch.compile``: the decoder is created with ``compile=True``
added to the static keywords, and a model whose ``incremental_decoder`` has no
``compile`` parameter is refused with a ConfigError. Compiling costs tens of seconds per
batch shape on a small CPU and then saves most of a step's per-op framework overhead, so
it pays for long evaluations, not for one batch.

Beam search follows one of two references, chosen by ``length_penalty``:

- ``"mtf"`` (the paper's, Mesh TF / tensor2tensor ``beam_search``): hypotheses are scored
  ``log p / ((5 + len) / 6) ** alpha`` (GNMT), the best ``2·K`` continuations of the ``K``
  alive beams are drawn each step, every EOS among them may enter the finished set, the
  search stops once the worst finished score beats the best alive hypothesis could still
  reach at ``max_length``, and an example with no finished hypothesis returns its best
  alive one.
- ``"hf"`` (Hugging Face ``generate(num_beams=K, length_penalty=alpha)``): scores are
  ``log p / len ** alpha``, only an EOS ranked within the top ``K`` of the ``2·K``
  candidates finishes, every candidate finishes at ``max_length``, and the search stops by
  HF's ``early_stopping=False`` heuristic (the best alive score at the current length).

``len`` counts generated tokens including the EOS. Outputs never contain the decoder's
start token; positions after a sequence's EOS are ``pad_id``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from t5kernel.errors import ConfigError

#: the two beam-search references (module docstring)
LENGTH_PENALTIES = ("mtf", "hf")
#: how an ensemble combines its members' per-step distributions (facts §7.3)
ENSEMBLE_REDUCTIONS = ("mean_logit", "mean_prob")
_NEG = -1.0e9


# ------------------------------------------------------------------------ step logits
#: elements per block of :func:`row_major`'s copy (512 KiB of float32: it stays in cache)
ROW_MAJOR_BLOCK = 1 << 17


def row_major(logits: Tensor) -> Tensor:
    """``[rows, vocab]`` logits with each row contiguous (the same values).

    Why: on CPU a decoder's step logits for 2-64 rows arrive column-major (the layout the
    few-row output matmul is fastest in), and torch's ``log_softmax`` over such a tensor
    takes a strided path: 15.5 ms at 64 x 32,128 against 1.8 ms for contiguous rows (the
    same bits), and ``.contiguous()`` copies element by element across rows (7.8 ms).
    Copying blocks of vocabulary columns that fit in cache takes 1.7 ms.
    """
    if logits.device.type != "cpu" or not _column_major(logits):
        return logits
    rows, vocab = logits.shape
    out = logits.new_empty(rows, vocab)
    width = max(1, ROW_MAJOR_BLOCK // rows)
    for start in range(0, vocab, width):
        out[:, start:start + width] = logits[:, start:start + width]
    return out


def _column_major(logits: Tensor) -> bool:
    """Whether 2-D ``logits`` run down their columns (and not along their rows too)."""
    return (logits.dim() == 2 and logits.shape[0] > 1 and logits.t().is_contiguous()
            and not logits.is_contiguous())


def log_probs(logits: Tensor) -> Tensor:
    """Float32 ``log_softmax`` of step logits over the vocabulary (row-major first)."""
    return torch.log_softmax(row_major(logits).float(), dim=-1)


@runtime_checkable
class IncrementalDecoder(Protocol):
    """One decoding session over a batch of ``B`` examples, ``K`` rows (beams) each.

    Row ``r`` belongs to example ``r // K``. ``step(tokens)`` feeds each row's previous
    token (``None`` on the first call: the decoder's own start) and returns float32
    logits ``[B·K, V]`` for the next position; unusable vocabulary columns are ``-inf``.
    ``reorder(rows)`` makes row ``i`` continue the history of row ``rows[i]`` (the search
    only moves rows within one example's group). A decoder made with
    ``static_shapes=True`` (module docstring) keeps every tensor's shape fixed across
    steps and accepts at most ``max_length`` calls to ``step``.
    """

    def step(self, tokens: Tensor | None) -> Tensor: ...

    def reorder(self, rows: Tensor) -> None: ...


def can_select(decoder: Any) -> bool:
    """Whether ``decoder`` also offers ``select(rows)``: keep only ``rows`` (any subset, in
    the given order) and drop every other row's state. The search then stops computing
    rows whose result is already fixed (greedy rows past EOS, beam examples whose best
    hypothesis can no longer change) instead of carrying them to the end as Hugging Face
    does; the outputs are the same."""
    return callable(getattr(decoder, "select", None))


class EnsembleDecoder:
    """Several decoders over the same batch, read as one (facts §7.3, P Table 13).

    ``"mean_logit"`` averages the members' log-probabilities per step, which after
    renormalisation is exactly the softmax of their mean logits (each member's
    log-partition is a per-row constant), the paper's description. ``"mean_prob"``
    averages probabilities, Mesh TF's default ``reduce_ensemble_logits_mean_prob``.
    The returned logits are log-probabilities (already normalised).
    """

    def __init__(self, members: Sequence[IncrementalDecoder], reduce: str = "mean_logit"):
        if not members:
            raise ConfigError("an ensemble needs at least one model")
        if reduce not in ENSEMBLE_REDUCTIONS:
            raise ConfigError(
                f"ensemble reduce {reduce!r} is unknown; allowed: {', '.join(ENSEMBLE_REDUCTIONS)}"
            )
        self.members = list(members)
        self.reduce = reduce

    def step(self, tokens: Tensor | None) -> Tensor:
        logps = [log_probs(m.step(tokens)) for m in self.members]
        widths = {lp.shape[-1] for lp in logps}
        if len(widths) > 1:
            raise ConfigError(f"ensemble members disagree on the vocabulary width: {widths}")
        stacked = torch.stack(logps)
        if self.reduce == "mean_logit":
            return torch.log_softmax(stacked.mean(0), dim=-1)
        return torch.logsumexp(stacked, dim=0) - torch.log(torch.tensor(float(len(logps))))

    def reorder(self, rows: Tensor) -> None:
        for m in self.members:
            m.reorder(rows)

    def __getattr__(self, name: str) -> Any:
        if name == "select" and all(can_select(m) for m in self.members):
            def select(rows: Tensor) -> None:
                for m in self.members:
                    m.select(rows)
            return select
        raise AttributeError(name)


# ----------------------------------------------------------------------------- greedy
def _blockable(x: Tensor, block: int, minimum: int) -> bool:
    """Whether ``[rows, vocab]`` ``x`` takes a blocked vocabulary reduction (:func:`argmax`,
    :func:`row_topk`): on the CPU, at least ``minimum`` elements, ``block`` divides the
    vocabulary."""
    return (x.device.type == "cpu" and x.dim() == 2 and x.numel() >= minimum
            and x.shape[1] % block == 0)


#: vocabulary entries per block of :func:`argmax` (it needs a divisor of the vocabulary)
ARGMAX_BLOCK = 128
#: logits (rows x vocabulary) from which :func:`argmax` takes the blocked path
ARGMAX_BLOCKED_MIN = 1 << 17


def argmax(logits: Tensor) -> Tensor:
    """``logits.argmax(-1)`` of ``[rows, vocab]`` logits, exactly: the first maximal index,
    a NaN counting as maximal (torch's rule).

    Why: torch's CPU argmax reduces (value, index) pairs one element at a time, ~10x
    slower than ``amax``: 2.6 ms of a ~45 ms t5-small greedy step (32 rows x 32,128, our
    step logits are column-major) against 0.2 ms here. The vocabulary is cut into blocks
    of :data:`ARGMAX_BLOCK`; ``amax`` (vectorised) gives each block's maximum, the argmax
    over those picks the first block holding the row's maximum (every earlier block's
    maximum is smaller; ``amax`` propagates NaN as argmax ranks it), and an argmax over
    that one block gives the index. Other devices, small logits and vocabularies that the
    block does not divide take ``argmax`` itself.
    """
    if not _blockable(logits, ARGMAX_BLOCK, ARGMAX_BLOCKED_MIN):
        return logits.argmax(-1)
    rows, vocab = logits.shape
    each_row = torch.arange(rows)
    if _column_major(logits):  # reduce down the columns
        blocks = logits.t().view(vocab // ARGMAX_BLOCK, ARGMAX_BLOCK, rows)
        first = blocks.amax(1).argmax(0)
        within = blocks[first, :, each_row]
    else:
        blocks = logits.unflatten(-1, (vocab // ARGMAX_BLOCK, ARGMAX_BLOCK))
        first = blocks.amax(-1).argmax(-1)
        within = blocks[each_row, first]
    return first * ARGMAX_BLOCK + within.argmax(-1)


def greedy_search(
    decoder: IncrementalDecoder, batch_size: int, max_length: int, eos_id: int = 1,
    pad_id: int = 0, static_shapes: bool = False, sync: Callable[[], None] | None = None,
) -> Tensor:
    """Argmax decoding (``beam_size = 1``, the paper's study setting): ids ``[B, <= max_length]``.

    Stops once every row has produced EOS. Rows that ended are dropped from the decoder
    when it can :func:`can_select` (never with ``static_shapes``), else fed ``pad_id``
    until the others end. ``sync`` is called once per step before the stop test
    (module docstring: static shapes).
    """
    compact = can_select(decoder) and not static_shapes
    out = None
    live = None  # original row of each decoder row
    tokens = None
    steps = 0
    for t in range(max_length):
        nxt = argmax(decoder.step(tokens))
        if out is None:
            out = torch.full((batch_size, max_length), pad_id, dtype=torch.long, device=nxt.device)
            live = torch.arange(batch_size, device=nxt.device)
            done = torch.zeros(batch_size, dtype=torch.bool, device=nxt.device)
            column = torch.zeros(1, dtype=torch.long, device=nxt.device)  # t, on the device
        steps = t + 1
        if compact:
            out[live, t] = nxt
            going = nxt != eos_id
            if not bool(going.any()):
                break
            if not bool(going.all()):
                keep = going.nonzero()[:, 0]
                decoder.select(keep)
                live, nxt = live[keep], nxt[keep]
        else:
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            if static_shapes:
                out.index_copy_(1, column, nxt[:, None])
                column += 1
            else:
                out[:, t] = nxt
            done = done | (nxt == eos_id)
            if sync is not None:
                sync()
            if bool(done.all()):
                break
        tokens = nxt
    if out is None:
        return torch.zeros(batch_size, 0, dtype=torch.long)
    if static_shapes:  # the data-dependent length is cut on the host
        out = out.cpu()
    return out[:, :steps]


# ------------------------------------------------------------------------ beam search
#: vocabulary entries per block of :func:`row_topk` (it needs a divisor of the vocabulary)
TOPK_BLOCK = 128
#: elements (rows x vocabulary) from which :func:`row_topk` takes the blocked path
TOPK_BLOCKED_MIN = 1 << 17


def row_topk(x: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """``torch.topk(x, n)`` over the rows of 2-D ``x``: the same values, largest first, and
    their indices (which of several equal values is taken is unspecified, as in torch).

    Why: torch's CPU ``topk`` over 32k-wide rows is ~10x slower than a vectorised ``amax``
    over them. Here the vocabulary is cut into blocks of :data:`TOPK_BLOCK`: each block's
    maximum (``amax``), the ``n`` blocks with the largest maxima, then a ``topk`` over
    those blocks' entries alone. That is exact: a block holding one of the ``n`` largest
    values has a maximum at least that large, and at most ``n`` blocks can have one
    larger than the ``n``-th largest value; a block whose maximum ties it holds a value
    just as large. NaN ranks largest in both ``amax`` and ``topk``. Other devices, small
    inputs and vocabularies the block does not divide take ``torch.topk`` itself.
    """
    rows, vocab = x.shape
    per_block = TOPK_BLOCK
    if not _blockable(x, per_block, TOPK_BLOCKED_MIN) or n * per_block >= vocab:
        return torch.topk(x, n)
    num_blocks = vocab // per_block
    blocks = x.contiguous().view(rows * num_blocks, per_block)
    best = torch.topk(blocks.view(rows, num_blocks, per_block).amax(-1), n).indices
    first = torch.arange(rows, device=x.device)[:, None] * num_blocks
    entries = blocks.index_select(0, (best + first).view(-1)).view(rows, n * per_block)
    values, where = torch.topk(entries, n)
    return values, torch.take_along_dim(best, where // per_block, 1) * per_block + where % per_block


def beam_candidates(logp: Tensor, alive_lp: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The ``n`` best continuations of each example's beams: ``torch.topk`` over
    ``logp[b, k, V] + alive_lp[b, k, None]`` flattened to ``[b, k * V]``, as values and
    flat indices ``beam * V + token``.

    The best ``n`` of an example are among the best ``n`` of each beam, and adding the
    beam's score is monotonic, so each beam's row is cut to its ``n`` best log-probs
    (:func:`row_topk`) before the scores are added: the same sums, bit for bit, without
    a ``[b, k * V]`` temporary (beam-4 at tiny: 12-15 ms -> ~2.5 ms per step on CPU).
    """
    b, k, vocab = logp.shape
    values, tokens = row_topk(logp.reshape(b * k, vocab), min(n, vocab))
    width = values.shape[-1]
    scores = (values.view(b, k, width) + alive_lp[:, :, None]).view(b, k * width)
    top, pick = torch.topk(scores, n)
    return top, torch.take_along_dim(tokens.view(b, k * width), pick, 1) + (pick // width) * vocab


def beam_search(
    decoder: IncrementalDecoder,
    batch_size: int,
    num_beams: int,
    max_length: int,
    alpha: float = 0.6,
    length_penalty: str = "mtf",
    eos_id: int = 1,
    pad_id: int = 0,
    static_shapes: bool = False,
    sync: Callable[[], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Batched beam search; returns the best sequence ``[B, L]`` and its score ``[B]``.

    ``decoder`` must have ``num_beams`` rows per example. The score is the length-penalised
    log-probability of the returned sequence (for an "mtf" example without a finished
    hypothesis: the raw log-probability of its best alive one, as tensor2tensor does).
    An example whose best hypothesis can no longer change leaves the decoder when it can
    :func:`can_select` (never with ``static_shapes``: then every example stays to the end
    and the ids come back on the host). ``sync`` is called once per step before the stop
    tests (module docstring: static shapes).
    """
    if length_penalty not in LENGTH_PENALTIES:
        raise ConfigError(
            f"length_penalty {length_penalty!r} is unknown; allowed: {', '.join(LENGTH_PENALTIES)}"
        )
    if num_beams < 1 or max_length < 1:
        raise ConfigError(f"num_beams and max_length must be >= 1, got {num_beams}, {max_length}")
    k, hf = num_beams, length_penalty == "hf"
    compact = can_select(decoder) and not static_shapes
    state: _Beams | None = None
    tokens = None
    for i in range(max_length):
        logp = log_probs(decoder.step(tokens))
        if state is None:
            state = _Beams(batch_size, k, max_length, pad_id, logp.device)
            column = torch.zeros(1, dtype=torch.long, device=logp.device)  # i, on the device
        b, vocab, device = state.live.numel(), logp.shape[-1], logp.device
        state.steps = i + 1
        top_lp, top_idx = beam_candidates(logp.view(b, k, vocab), state.alive_lp, 2 * k)
        src = top_idx // vocab  # [b, 2K] source beam
        tok = top_idx % vocab
        top_seq = torch.take_along_dim(state.seq, src[:, :, None], dim=1)
        if static_shapes:
            top_seq.index_copy_(2, column, tok[:, :, None])
        else:
            top_seq[:, :, i] = tok
        ended = tok == eos_id
        if hf:
            ended = ended | (i + 1 >= max_length)
        # alive: the best K continuations that did not end
        run_lp = top_lp + ended.float() * _NEG
        keep = torch.topk(run_lp, k).indices
        state.seq = torch.take_along_dim(top_seq, keep[:, :, None], dim=1)
        state.alive_lp = torch.take_along_dim(run_lp, keep, dim=1)
        rows = (torch.take_along_dim(src, keep, dim=1)
                + torch.arange(b, device=device)[:, None] * k).reshape(-1)
        # finished: merge the new endings into the K best so far
        if hf:
            new_score = top_lp / ((i + 1) ** alpha)
            new_score = new_score + (~state.unsatisfied).float() * _NEG
            new_flag = ended & (torch.arange(2 * k, device=device)[None, :] < k)
        else:
            new_score = top_lp / (((5.0 + i + 1) / 6.0) ** alpha)
            new_flag = ended
        new_score = new_score + (~new_flag).float() * _NEG
        merged = torch.cat([state.fin_score, new_score], dim=1)
        best = torch.topk(merged, k).indices
        state.fin_seq = torch.take_along_dim(
            torch.cat([state.fin_seq, top_seq], dim=1), best[:, :, None], dim=1)
        state.fin_score = torch.take_along_dim(merged, best, dim=1)
        state.fin_flag = torch.take_along_dim(
            torch.cat([state.fin_flag, new_flag], dim=1), best, dim=1)
        # which examples are settled: their best finished hypothesis cannot change
        if hf:
            best_alive = state.alive_lp[:, :1] / ((i + 1) ** alpha)
            worst = state.fin_score.min(dim=1, keepdim=True).values
            worst = torch.where(state.fin_flag, worst, torch.full_like(state.fin_score, _NEG))
            state.unsatisfied = state.unsatisfied & (best_alive > worst).any(-1, keepdim=True)
            settled = ~state.unsatisfied[:, 0]
            if sync is not None:
                sync()
            if bool(ended.all()):
                break
        else:
            bound = state.alive_lp[:, 0] / (((5.0 + max_length) / 6.0) ** alpha)
            lowest = torch.where(state.fin_flag, state.fin_score,
                                 torch.zeros_like(state.fin_score)).min(dim=1).values
            lowest = torch.where(state.fin_flag.any(1), lowest, torch.full_like(lowest, _NEG))
            settled = lowest > bound
            if sync is not None:
                sync()
        if bool(settled.all()) or i + 1 == max_length:
            break
        if compact and bool(settled.any()):
            state.retire(settled)
            going = (~settled).nonzero()[:, 0]
            decoder.select(rows.view(b, k)[going].reshape(-1))
            state.keep(going)
        else:
            decoder.reorder(rows)
        if static_shapes:
            tokens = state.seq.index_select(2, column).reshape(-1)
            column += 1
        else:
            tokens = state.seq[:, :, i].reshape(-1)
    assert state is not None
    if static_shapes:  # every example is live: no boolean indexing; length cut on the host
        state.retire_all(fallback=not hf)
        out = state.out.cpu()[:, : state.steps]
    else:
        state.retire(torch.ones_like(state.live, dtype=torch.bool), fallback=not hf)
        out = state.out[:, : state.steps]
    lengths = _lengths(out, eos_id)
    return out[:, : int(lengths.max()) if lengths.numel() else 0], state.out_score


class _Beams:
    """The beam-search state of the live examples, and the results of settled ones."""

    def __init__(self, batch: int, k: int, max_length: int, pad_id: int, device: Any):
        self.live = torch.arange(batch, device=device)  # original example of each live one
        self.seq = torch.full((batch, k, max_length), pad_id, dtype=torch.long, device=device)
        self.fin_seq = self.seq.clone()
        self.alive_lp = torch.full((batch, k), _NEG, device=device)
        self.alive_lp[:, 0] = 0.0
        self.fin_score = torch.full((batch, k), _NEG, device=device)
        self.fin_flag = torch.zeros((batch, k), dtype=torch.bool, device=device)
        self.unsatisfied = torch.ones((batch, 1), dtype=torch.bool, device=device)
        self.out = torch.full((batch, max_length), pad_id, dtype=torch.long, device=device)
        self.out_score = torch.zeros(batch, device=device)
        self.steps = 0

    def best(self, fallback: bool) -> tuple[Tensor, Tensor]:
        """Each live example's best finished sequence and score (with ``fallback`` its
        best alive one when none finished)."""
        seq, score = self.fin_seq[:, 0], self.fin_score[:, 0]
        if fallback:
            any_fin = self.fin_flag.any(1)
            seq = torch.where(any_fin[:, None], seq, self.seq[:, 0])
            score = torch.where(any_fin, score, self.alive_lp[:, 0])
        return seq, score

    def retire_all(self, fallback: bool = False) -> None:
        """Write every example's result; only when no example ever left (static shapes)."""
        self.out, self.out_score = self.best(fallback)

    def retire(self, which: Tensor, fallback: bool = False) -> None:
        """Write the results of the live examples in ``which`` (the best finished; with
        ``fallback`` the best alive when none finished)."""
        seq, score = self.best(fallback)
        idx = self.live[which]
        self.out[idx] = seq[which]
        self.out_score[idx] = score[which]

    def keep(self, going: Tensor) -> None:
        self.live = self.live[going]
        for name in ("seq", "fin_seq", "alive_lp", "fin_score", "fin_flag", "unsatisfied"):
            setattr(self, name, getattr(self, name)[going])


def _lengths(ids: Tensor, eos_id: int) -> Tensor:
    """Generated length of each row: up to and including its first EOS, else all."""
    n = ids.shape[1]
    is_eos = ids == eos_id
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1) + 1, torch.full_like(ids[:, 0], n))
    return first


# --------------------------------------------------------------------------- driver
@contextlib.contextmanager
def _eval_mode(models: Sequence[Any]):
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)


def generate(
    models: Any,
    batch: Mapping[str, Tensor],
    max_length: int,
    num_beams: int = 1,
    alpha: float = 0.6,
    length_penalty: str = "mtf",
    reduce: str = "mean_logit",
    use_cache: bool = True,
    eos_id: int = 1,
    pad_id: int = 0,
    static_shapes: bool = False,
    sync: Callable[[], None] | None = None,
    compile: bool = False,
) -> Tensor:
    """Decode ``batch`` with one model or an ensemble (a sequence of models).

    ``num_beams == 1`` is greedy decoding (the paper's study setting); more is beam search
    with ``alpha`` and the ``length_penalty`` reference. Several models average their
    per-step distributions (``reduce``, :class:`EnsembleDecoder`). Models run in eval mode
    without gradients and get their previous mode back. Returns ids ``[B, <= max_length]``.
    ``static_shapes`` decodes with fixed shapes, calling ``sync`` once per step (module
    docstring); the ids are the same. ``compile`` (implies ``static_shapes``) runs the
    steps through ``torch.compile`` (module docstring).
    """
    members = list(models) if isinstance(models, list | tuple) else [models]
    if num_beams < 1:
        raise ConfigError(f"num_beams must be >= 1, got {num_beams}")
    for m in members:
        if not hasattr(m, "incremental_decoder"):
            raise ConfigError(
                f"{type(m).__name__} has no incremental_decoder(); it cannot be beam-searched "
                "or ensembled"
            )
        if compile and "compile" not in inspect.signature(m.incremental_decoder).parameters:
            raise ConfigError(
                f"{type(m).__name__}.incremental_decoder() takes no 'compile'; decode it "
                "without compile=True (e.g. backend.compile_decoding=false)"
            )
    static_shapes = static_shapes or compile
    tokens = batch["encoder_input_tokens"]
    b = int(tokens.shape[0])
    with _eval_mode(members):
        static = {"static_shapes": True, "max_length": max_length} if static_shapes else {}
        if compile:
            static["compile"] = True
        decoders = [m.incremental_decoder(batch, num_beams, use_cache, **static)
                    for m in members]
        dec: IncrementalDecoder = (
            decoders[0] if len(decoders) == 1 else EnsembleDecoder(decoders, reduce)
        )
        if num_beams == 1:
            ids = greedy_search(dec, b, max_length, eos_id, pad_id, static_shapes, sync)
        else:
            ids, _ = beam_search(dec, b, num_beams, max_length, alpha, length_penalty,
                                 eos_id, pad_id, static_shapes, sync)
    return ids.to(tokens.device)
