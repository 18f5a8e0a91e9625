"""The public surface a plugin may import: kinds, records, interfaces, hook marker.

A plugin distribution registers itself under the ``t5kernel`` entry-point group with a
small *hooks module* (no heavy imports) whose pluggy ``hookimpl`` functions yield
:class:`PluginSpec` records, one hook per kind (see :mod:`t5kernel.hookspecs`)::

    from t5kernel.api import PluginSpec, hookimpl

    @hookimpl
    def t5k_objectives():
        yield PluginSpec(
            name="my_objective",
            target="my_pkg.objective:MyObjective",   # imported only when selected
            config=MyObjectiveConfig,                # a light dataclass
            summary="One line saying what it does.",
        )

The ``target`` is a ``"module:attribute"`` string resolved only when a run selects the
plugin; it is called as ``target(config, context)`` and must return an object that
satisfies the kind's Protocol below. ``config`` is a dataclass whose fields OmegaConf
validates (unknown keys and wrong types are errors naming the key).

Interfaces are :class:`typing.Protocol` classes so implementations can subclass
``torch.nn.Module`` or anything else without a kernel base class. Tensors are typed as
``Any`` here so that importing this module never imports torch.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import pluggy

#: Version of the kernel API. Plugins declare the one they were written for in
#: ``PluginSpec.api_version``; the major number must match and the minor number must
#: not exceed the kernel's.
API_VERSION: tuple[int, int] = (1, 2)

#: The entry-point group (and pluggy project name) plugins register under.
ENTRY_POINT_GROUP = "t5kernel"

hookimpl = pluggy.HookimplMarker(ENTRY_POINT_GROUP)

#: Every plugin kind, in the order listings show them.
KINDS: tuple[str, ...] = (
    "architecture",
    "objective",
    "corpus",
    "mixer",
    "finetune",
    "evaluator",
    "backend",
    "vocabulary",
    "optimizer",
    "schedule",
)

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass
class NoConfig:
    """Config dataclass for plugins that take no options."""


#: ``dataclasses.field`` metadata key of an option that names local files (see
#: :func:`path_option`); its value is ``"local"`` or ``"hub_or_local"``
PATH_OPTION = "t5k_path"


def path_option(default: Any = None, *, hub: bool = False, list_of: bool = False) -> Any:
    """A config field holding a local path (``str | None``) or paths (``list[str]``,
    ``list_of=True``; globs allowed) that validation makes absolute.

    A run's config.yaml is read again by ``t5k eval``, ``t5k convert``, resumed runs and
    sweeps, often from another working directory: a relative ``train_file: train.tsv``
    would then name another file, or none. So the kernel rewrites each such option to
    ``os.path.abspath(os.path.expanduser(value))`` before the plugin sees it, and the
    saved config holds that. URLs (``scheme://...``) and empty values are kept.
    ``hub=True`` marks a value that is a Hugging Face hub id *or* a local folder (as
    ``datasets.load_dataset`` reads it): made absolute only when it exists on disk.

    Use it as the field's default::

        train_file: str | None = path_option()
        data_files: list[str] = path_option(list_of=True)
    """
    mode = "hub_or_local" if hub else "local"
    if list_of:
        if default is not None:
            raise ValueError("path_option(list_of=True) starts empty; give no default")
        return dataclasses.field(default_factory=list, metadata={PATH_OPTION: mode})
    return dataclasses.field(default=default, metadata={PATH_OPTION: mode})


@dataclasses.dataclass(frozen=True)
class PluginSpec:
    """What a hook implementation yields: one plugin of one kind.

    ``name`` is a lowercase slug (``[a-z][a-z0-9_]*``) unique within its kind across all
    installed distributions. ``target`` is ``"module:attribute"`` (resolved lazily) or a
    callable. ``config`` is the dataclass of the plugin's options.
    """

    name: str
    target: str | Callable[..., Any]
    config: type = NoConfig
    summary: str = ""
    api_version: tuple[int, int] = API_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(
                f"plugin name {self.name!r} is not a lowercase slug matching [a-z][a-z0-9_]*"
            )
        if isinstance(self.target, str) and ":" not in self.target:
            raise ValueError(
                f"plugin {self.name!r}: target {self.target!r} must look like 'module:attribute'"
            )
        if not dataclasses.is_dataclass(self.config):
            raise ValueError(f"plugin {self.name!r}: config must be a dataclass type")
        if not is_api_version(self.api_version):
            raise ValueError(f"plugin {self.name!r}: api_version must be (major, minor) "
                             f"integers like {API_VERSION}, got {self.api_version!r}")


def is_api_version(value: Any) -> bool:
    """Whether ``value`` is a kernel API version: two integers, (major, minor)."""
    return (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value))


@dataclasses.dataclass
class BuildContext:
    """What the run loop hands a plugin factory besides its own config.

    ``registry`` lets a plugin build other plugins by (kind, name) (e.g. a mixture corpus)
    without importing them; ``run_dir`` is where it may cache artefacts (a trained
    vocabulary); ``seed`` is the run's seed; ``extras`` carries kind-specific inputs
    (``vocabulary`` for architectures and objectives, ``texts`` for vocabularies, ...).
    """

    registry: Any = None
    run_dir: Any = None
    seed: int = 0
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------


@runtime_checkable
class Vocabulary(Protocol):
    """Maps text to ids and back; T5 conventions: pad=0, eos=1, unk=2, no BOS.

    ``vocab_size`` counts the base pieces plus ``extra_ids`` sentinels appended after
    them; sentinel k is ``vocab_size - 1 - k`` (numbered from the end, as T5 does).
    ``decode`` stops at the first EOS and maps sentinel ids to unk.

    Optional: the plugin's *target* (the factory registered in its ``PluginSpec``) may
    carry ``planned_size(config) -> int | None``, the ``vocab_size`` it would build from
    ``config`` without building (e.g. without training a model); ``t5k describe`` uses it
    to size a model when no ``--vocab-size`` is given.
    """

    pad_id: int
    eos_id: int
    unk_id: int
    base_vocab_size: int
    extra_ids: int
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def sentinel_id(self, k: int) -> int: ...

    def save(self, directory: Any) -> None:
        """Write whatever reloading the vocabulary needs into ``directory``."""
        ...


# --------------------------------------------------------------------------------------
# Corpus (unlabeled text and downstream tasks)
# --------------------------------------------------------------------------------------


@runtime_checkable
class Corpus(Protocol):
    """A source of examples.

    Unlabeled corpora (``supervised = False``) yield ``{"text": str}``. Downstream tasks
    (``supervised = True``) yield examples already cast to text-to-text,
    ``{"inputs": str, "targets": str, ...}`` (extra keys are kept for postprocessing),
    and say how to score them: ``evaluators`` names evaluator plugins, ``postprocess``
    turns a decoded prediction into what those evaluators compare, ``reference`` does the
    same for an example's gold answer.

    ``examples`` must be deterministic for a given split: the run loop relies on it for
    exact resumption. ``splits`` lists what exists (e.g. ``("train", "validation")``).
    """

    supervised: bool
    splits: tuple[str, ...]

    def examples(self, split: str) -> Iterator[dict[str, Any]]: ...

    def num_examples(self, split: str) -> int | None:
        """Number of examples in ``split``, or None when unknown (streaming)."""
        ...


@runtime_checkable
class Task(Corpus, Protocol):
    """A supervised corpus: a downstream task in text-to-text form.

    Optional: ``vocabulary_texts()``, a mapping of language code -> texts in a language
    the pre-training corpus lacks (a translation task's non-English side), which a
    vocabulary trained on the corpus then also covers (:func:`t5kernel.data.vocabulary_texts`).
    """

    evaluators: tuple[str, ...]

    def postprocess(self, prediction: str, example: Mapping[str, Any]) -> Any: ...

    def reference(self, example: Mapping[str, Any]) -> Any: ...


# --------------------------------------------------------------------------------------
# Objective
# --------------------------------------------------------------------------------------


@runtime_checkable
class StatefulIterator(Protocol):
    """An iterator that can say where it is and be rebuilt there.

    ``state()`` returns a small JSON-able dict describing the position *before* the item
    the next ``__next__`` returns; the run loop stores it in each checkpoint (``state.json``)
    and hands it back to whatever built the iterator when a run resumes.
    """

    def __iter__(self) -> Iterator[Any]: ...

    def __next__(self) -> Any: ...

    def state(self) -> dict[str, Any]: ...


@runtime_checkable
class Objective(Protocol):
    """Turns unlabeled token sequences into (inputs, targets) pairs for pre-training.

    Built with the run's vocabulary in ``context.extras["vocabulary"]``.
    ``examples(docs, inputs_length, targets_length, rng)`` consumes an iterator of
    token-id arrays (one per document, no EOS) and yields
    ``{"inputs": np.ndarray, "targets": np.ndarray}`` with EOS already appended and
    lengths within the given limits. ``rng`` is a ``numpy.random.Generator``; the output
    must be a pure function of the inputs and the generator state.

    Optional, for exact resumption without replay: ``resumable_examples(open_docs,
    inputs_length, targets_length, rng, state=None)`` returning a
    :class:`StatefulIterator` over the same examples. ``open_docs(doc_state)`` opens
    the document stream (itself a StatefulIterator; ``None`` = from the start) and
    ``state`` is a value the iterator's ``state()`` returned earlier, possibly in
    another process; the iterator restores ``rng`` itself. Objectives without it are
    resumed by rebuilding the stream and skipping what was consumed.

    Optional, on the class (a static method): ``targets_length_for(config, inputs_length)``,
    the targets length the objective's reference recipe derives for an inputs length (span
    corruption's ``random_spans_helper``). ``t5k sweep`` rows with
    ``paper.targets_from_objective`` use it at every scale.
    """

    def examples(
        self,
        docs: Iterator[Any],
        inputs_length: int,
        targets_length: int,
        rng: Any,
    ) -> Iterator[dict[str, Any]]: ...


# --------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class ModelOutput:
    """What a model's forward returns (tensors are torch tensors).

    ``loss_sum``: summed token cross-entropy over target positions with weight > 0;
    ``z_loss_sum``: summed ``logsumexp(logits)**2`` over the same positions;
    ``num_tokens``: how many positions were counted; ``logits`` may be None when the
    model was asked not to keep them.
    """

    loss_sum: Any
    z_loss_sum: Any
    num_tokens: Any
    logits: Any = None


@dataclasses.dataclass(frozen=True)
class BlockInfo:
    """One block of a model as fine-tuning strategies see it.

    ``stack`` is e.g. ``"encoder"`` or ``"decoder"``; ``index`` counts from the bottom
    (0 = nearest the embedding); ``parameters`` are parameter names as in
    ``model.named_parameters()``.
    """

    stack: str
    index: int
    parameters: tuple[str, ...]


@runtime_checkable
class Model(Protocol):
    """A built model (a ``torch.nn.Module``).

    ``forward(batch)`` takes the feature dict produced by ``Architecture.features`` (as
    tensors) and returns a :class:`ModelOutput`. ``generate(batch, max_length)`` decodes
    greedily with a key/value cache and returns an int tensor [batch, <= max_length] of
    output ids (EOS included when produced, padded with 0 after it). On a backend with
    ``static_shapes = True`` (xla) the run loop calls ``generate(batch, max_length,
    static_shapes=True, sync=backend.sync)``: a model that runs there accepts those
    keywords and decodes with fixed shapes (see :mod:`t5kernel.decoding`).
    """

    def forward(self, batch: Mapping[str, Any]) -> ModelOutput: ...

    def generate(self, batch: Mapping[str, Any], max_length: int) -> Any: ...

    def blocks(self) -> list[BlockInfo]: ...


@runtime_checkable
class Architecture(Protocol):
    """Builds a model and converts (inputs, targets) examples into its features.

    ``features(examples, inputs_length, targets_length, pack, num_rows)`` returns a dict
    of numpy arrays of one batch (packed greedily into fixed-length rows when ``pack`` is
    true, as T5 trains; one example per row otherwise, as T5 evaluates), padded with
    empty rows up to ``num_rows`` when given. ``pack(examples, ...)`` says which examples
    share a row (lists of consecutive indices) so the run loop can cut a stream into
    batches of exactly ``batch_size`` rows. ``build(vocab_size)`` returns a fresh,
    randomly initialised :class:`Model`.

    Optional, for ``t5k convert`` (:mod:`t5kernel.convert`), looked up with ``getattr``:
    ``from_hf(folder) -> (options, state_dict)`` and ``hf_vocabulary(folder, dst) ->
    vocabulary section | None``, classmethods of the plugin target that read a Hugging Face
    model folder (``options`` are the plugin's config fields without ``name``;
    ``hf_vocabulary`` copies the tokenizer into ``dst``); and ``to_hf(model, vocab_size,
    folder, vocabulary=None)`` on the built architecture, which writes ``model`` as a
    Hugging Face model folder. Any of them may raise ConfigError for a model it cannot map.
    """

    def build(self, vocab_size: int) -> Model: ...

    def pack(
        self, examples: Sequence[Mapping[str, Any]], inputs_length: int, targets_length: int
    ) -> list[list[int]]: ...

    def features(
        self,
        examples: Sequence[Mapping[str, Any]],
        inputs_length: int,
        targets_length: int,
        pack: bool,
        num_rows: int | None = None,
    ) -> dict[str, Any]: ...

    def describe(self, vocab_size: int) -> dict[str, Any]:
        """Facts a user compares across variants: parameter count, FLOPs, layout."""
        ...


# --------------------------------------------------------------------------------------
# Mixer, fine-tuning, evaluator
# --------------------------------------------------------------------------------------


@runtime_checkable
class Mixer(Protocol):
    """Sampling rates for several corpora, from their sizes (None = unknown/infinite).

    Optional: ``weights(sizes)``, the unnormalised weights the rates are proportional to.
    With it, ``pretrain.unsupervised_size`` > 0 is the unsupervised corpus's own fixed
    weight beside them (T5's ``rate_unsupervised``), not a size the mixer caps.
    """

    def rates(self, sizes: Mapping[str, int | None]) -> dict[str, float]: ...


@runtime_checkable
class FinetuneStrategy(Protocol):
    """Decides which parameters train, and when.

    ``setup(model, total_steps)`` is called once before fine-tuning (it may add modules);
    ``update(model, step)`` before every step and returns True when the set of trainable
    parameters changed (the run loop then rebuilds its optimizer state for them).
    """

    def setup(self, model: Any, total_steps: int) -> None: ...

    def update(self, model: Any, step: int) -> bool: ...


@runtime_checkable
class Evaluator(Protocol):
    """Scores postprocessed predictions against references: ``{metric: value}``.

    Values are on the paper's scale (percentages for accuracy, F1, BLEU, ROUGE, ...).
    """

    def __call__(self, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]: ...


# --------------------------------------------------------------------------------------
# Backend, optimizer, schedule
# --------------------------------------------------------------------------------------


@runtime_checkable
class Backend(Protocol):
    """Owns device placement, precision, random state and the optimizer-step protocol.

    ``prepare(model)`` moves/compiles the model; ``to_device(batch)`` turns a dict of
    numpy arrays into tensors on the device; ``autocast()`` is the context forward passes
    run in; ``step(loss, optimizer, parameters)`` does backward and the optimizer step;
    ``rng_state``/``set_rng_state`` capture every random generator the backend uses;
    ``sync()`` waits for queued device work (a no-op on CPU).

    Optional: ``loss_scaler_state()`` (a dict of plain values, or None when no loss
    scaling runs) and ``set_loss_scaler_state(state)``: the state of fp16 loss scaling,
    which checkpoints carry so a resumed run scales as the uninterrupted one.

    A model that ``prepare`` wraps so that ``state_dict()`` is a collective (FSDP: full
    tensors on rank 0, ``{}`` elsewhere) offers ``state_dict_shapes()``, every key's full
    shape on every rank without communication; strict loads check against it.

    Optional attributes the run loop reads for evaluation decoding (absent = False):
    ``static_shapes`` (fixed-shape decoding, ``sync`` once per step: graph-compiling
    devices such as XLA) and ``compile_decoding`` (fixed shapes with the decoder step
    through ``torch.compile``); see ``Runner.predict`` and :mod:`t5kernel.decoding`.
    """

    name: str
    device: Any

    def seed(self, seed: int) -> None: ...

    def prepare(self, model: Any) -> Any: ...

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]: ...

    def autocast(self) -> Any: ...

    def step(self, loss: Any, optimizer: Any) -> None: ...

    def rng_state(self) -> dict[str, Any]: ...

    def set_rng_state(self, state: Mapping[str, Any]) -> None: ...

    def sync(self) -> None: ...


@runtime_checkable
class OptimizerFactory(Protocol):
    """``create(parameters)`` returns a ``torch.optim.Optimizer`` over ``parameters``.

    The run loop sets every param group's ``"lr"`` from the schedule before each step.
    """

    def create(self, parameters: Iterable[Any]) -> Any: ...


@runtime_checkable
class Schedule(Protocol):
    """Learning rate as a function of the global step (0-based)."""

    def __call__(self, step: int) -> float: ...


#: the interface each plugin kind's built object satisfies (checked when it is built, so a
#: plugin missing a method fails with its name at build time rather than mid-run)
PROTOCOL_FOR_KIND: dict[str, type] = {
    "architecture": Architecture,
    "objective": Objective,
    "corpus": Corpus,
    "mixer": Mixer,
    "finetune": FinetuneStrategy,
    "evaluator": Evaluator,
    "backend": Backend,
    "vocabulary": Vocabulary,
    "optimizer": OptimizerFactory,
    "schedule": Schedule,
}


def protocol_members(protocol: type) -> list[str]:
    """The attributes and methods ``protocol`` (and the protocols it extends) declares."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass is Protocol or klass is object or not getattr(klass, "_is_protocol", False):
            continue
        names |= {n for n in vars(klass) if not n.startswith("_") or n == "__call__"}
        names |= set(getattr(klass, "__annotations__", {}))
    return sorted(names)
