"""The run configuration: an OmegaConf structured config plus each plugin's own dataclass.

A run config has kernel sections (seed, stages, loss, eval, ...) typed by the dataclasses
below, and *plugin sections* (``model``, ``objective``, ``corpus``, ``tasks.*``, ``mixer``,
``finetune.strategy``, ``backend``, ``optimizer``, ``vocabulary``, ``*.schedule``), each a
mapping with a ``name`` that selects a plugin and the plugin's options. Resolution:

1. start from :class:`RunConfig` (whose defaults are the embedded default run),
2. merge each ``--config`` YAML file, then the ``key=value`` dot-list overrides; a layer
   that sets ``<section>.size`` first writes that size preset's keys (the plugin
   config's ``PRESETS``) into the section, so the same or later layers still override,
3. validate every plugin section against its plugin's config dataclass (unknown keys and
   wrong types are errors naming the key, the plugin and the allowed keys), range-check
   kernel and plugin values and run the plugins' cross checks (:func:`validate`), all
   before any work starts,
4. fill in the plugin defaults and make path options absolute (plugin fields made with
   :func:`t5kernel.api.path_option`, the kernel's ``init_checkpoint``), so the saved
   ``config.yaml`` is complete and re-running it, from any working directory,
   reproduces the run.

A config file cannot execute code: YAML is read with OmegaConf's safe loader (no Python
tags), t5kernel registers no resolver, and composing and resolving run with OmegaConf's
built-in resolvers only (:data:`BUILTIN_RESOLVERS`), so ``${eval:...}`` or
``${python:...}`` is an unknown resolver even if some library registered one. Every
mistake is a one-line ConfigError (or PluginError) naming the file, override or key.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.basecontainer import BaseContainer
from omegaconf.errors import (
    GrammarParseError,
    OmegaConfBaseException,
    UnsupportedInterpolationType,
)

from t5kernel.api import PATH_OPTION, path_option
from t5kernel.errors import ConfigError, PluginError, T5KError


def _section(name: str, **options: Any):
    return field(default_factory=lambda: {"name": name, **options})


@dataclass
class LossConfig:
    """How the training loss is formed from the model's summed token losses (facts §1.7)."""

    #: weight of the auxiliary z-loss, 1e-4 * logsumexp(logits)^2 per token (Mesh TF)
    z_loss: float = 1e-4
    #: "constant": divide by batch rows x targets length (Mesh TF's loss_denominator);
    #: "tokens": divide by the number of target tokens (Hugging Face)
    denominator: str = "constant"
    #: a NaN or infinite loss: "stop" the stage (nothing is written after the last good
    #: checkpoint) or "skip" the step (no update; counted in results.json) — skipping
    #: stops too once more than ``max_skipped_steps`` steps of a stage were skipped
    nonfinite: str = "stop"
    max_skipped_steps: int = 10


@dataclass
class StageConfig:
    """One training stage: how long, how big, which schedule, how often to log and save."""

    steps: int = 0
    #: rows per batch (packed rows when ``pack``)
    batch_size: int = 8
    inputs_length: int = 512
    targets_length: int = 114
    #: pack several examples per row (T5 always packs for training)
    pack: bool = True
    schedule: dict[str, Any] = _section("constant")
    log_every: int = 10
    #: save a checkpoint every N steps (0 = only at the end of the stage)
    checkpoint_every: int = 0


@dataclass
class PretrainConfig(StageConfig):
    """The pre-training stage."""

    #: token budget of the pre-training corpus (P §3.4.2, Table 9: 2^23 ... 2^29): the
    #: corpus is cut after its first ``max_tokens`` tokens (run vocabulary, in corpus
    #: order; the last document is truncated) and repeated for the run's length, the
    #: objective re-drawing its noise every pass. 0 = the whole corpus.
    max_tokens: int = 0
    #: pre-train on the unsupervised objective over ``corpus`` (False: supervised
    #: multi-task pre-training only, P Table 12)
    unsupervised: bool = True
    #: downstream tasks (names under ``tasks``) mixed into pre-training by ``mixer``:
    #: multi-task training / pre-training (P §3.5.2-3.5.3); ["all"] = every task
    tasks: list[str] = field(default_factory=list)
    #: the unsupervised stream's mixing weight: 0 = unknown size (the mixer's limit K
    #: applies, the paper's studies); > 0 = a fixed weight beside the tasks' capped ones,
    #: as T5's ``rate_unsupervised`` (the final models: 710,000 ... 133,000,000, P §3.7)
    unsupervised_size: int = 0


@dataclass
class FinetuneConfig(StageConfig):
    """The fine-tuning stage; ``strategy`` selects the finetune plugin."""

    strategy: dict[str, Any] = _section("full")
    #: tasks (names under ``tasks``) to fine-tune on, as one mixture; [] = every task
    #: (leave-one-out: pre-train on the others, fine-tune on one)
    tasks: list[str] = field(default_factory=list)
    #: False: continue the pre-training optimizer state and step count (Mesh TF, the
    #: paper); True: fresh optimizer state for fine-tuning (Hugging Face practice)
    reset_optimizer: bool = False


@dataclass
class EvalConfig:
    """Decoding and scoring of the downstream tasks."""

    split: str = "validation"
    batch_size: int = 32
    #: maximum decoded length (T5's eval.gin caps at 128 tokens)
    max_decode_length: int = 128
    #: evaluate at every fine-tuning checkpoint and report the best per task (paper); a
    #: run without fine-tuning that pre-trains on the tasks (multi-task training) is
    #: evaluated at its pre-training checkpoints instead
    best_checkpoint_per_task: bool = True
    #: evaluate only the first N validation examples of each task (0 = all); the cut moves
    #: on to the end of a group scored together (a MultiRC question's answers)
    max_examples: int = 0
    #: 1 = greedy decoding (the paper's study setting); > 1 = beam search (final models:
    #: 4 with alpha 0.6, for WMT and CNN/DM only; facts §5.4)
    num_beams: int = 1
    #: beam-search length-penalty exponent
    alpha: float = 0.6
    #: beam-search reference: "mtf" (the paper's, GNMT ((5+len)/6)^alpha) or "hf"
    #: (Hugging Face generate, len^alpha); see t5kernel.decoding
    length_penalty: str = "mtf"
    #: how `t5k eval` with several checkpoints combines them: "mean_logit" (the paper)
    #: or "mean_prob" (Mesh TF's default reducer); facts §7.3
    ensemble_reduce: str = "mean_logit"
    #: evaluator plugins with ``aggregate(results, benchmarks)`` that add benchmark
    #: averages (the paper's GLUE / SuperGLUE rule) to results.json, for tasks that
    #: declare a ``benchmark``
    averages: list[str] = field(default_factory=lambda: ["paper_averages"])
    #: which configured tasks to decode and score (empty = all); e.g. the one benchmark a
    #: run fine-tunes on when the others share its config (``t5k sweep``'s groups)
    tasks: list[str] = field(default_factory=list)
    #: evaluate when training ends (a run whose fine-tuning steps are 0 scores the
    #: pre-trained model); false for a pre-training run that others fine-tune from
    after_training: bool = True


@dataclass
class RunConfig:
    """A whole experiment. The defaults are the embedded default run (DESIGN §6)."""

    name: str = "default"
    seed: int = 0
    #: the run directory; None = ``<runs_root>/<timestamp>-<name>``
    run_dir: str | None = None
    runs_root: str = "runs"
    #: continue the run in ``run_dir`` from its latest valid checkpoint
    resume: bool = False
    #: how many step checkpoints of each stage to keep (the best per task are kept too)
    keep_checkpoints: int = 2
    #: free-form metadata the run loop ignores: configs/paper rows keep the paper's label,
    #: scores and sweep settings here (``t5k sweep``)
    paper: dict[str, Any] = field(default_factory=dict)
    #: a checkpoint folder (e.g. ``t5k convert``'s ``checkpoints/step_0``) whose
    #: model.safetensors initialises the model before training (strict; not on resume)
    init_checkpoint: str | None = path_option()
    # The embedded default is the paper's baseline recipe scaled to minutes on a laptop
    # CPU. Measured trade-offs at this scale (see the README): the paper's fine-tuning
    # rate (1e-3, meant after 2^19 pre-training steps) and dropout 0.1 leave a model this
    # small untrained after a few hundred steps, and fine-tuning from fresh optimizer
    # state learns the copy-like demo tasks sooner; so the demo uses dropout 0, a short
    # pre-training at 1/sqrt(max(step, 1111)), fine-tuning at a constant 0.05 with
    # reset_optimizer. Fine-tuning runs 1,040 steps: its loss plateaus near 2 until the
    # model learns to copy (step ~400-480, depending on the seed); measured at seeds 0-5,
    # 520 steps beat every trivial baseline at seeds 0 and 5 only, 1,040 steps at all six.
    # Paper-scale runs keep the paper's settings (configs/).
    vocabulary: dict[str, Any] = _section("sentencepiece", size=1000, max_training_texts=20000)
    model: dict[str, Any] = _section(
        "encdec", num_layers=2, d_model=128, d_ff=512, d_kv=32, num_heads=4, dropout_rate=0.0
    )
    objective: dict[str, Any] = _section("iid_spans")
    corpus: dict[str, Any] = _section("embedded")
    tasks: dict[str, Any] = field(
        default_factory=lambda: {
            "demo_acceptability": {"num_train": 4000},
            "demo_summarize": {},
            "demo_pig_latin": {},
        }
    )
    mixer: dict[str, Any] = _section("proportional")
    backend: dict[str, Any] = _section("cpu")
    optimizer: dict[str, Any] = _section("adafactor")
    loss: LossConfig = field(default_factory=LossConfig)
    pretrain: PretrainConfig = field(
        default_factory=lambda: PretrainConfig(
            steps=40, batch_size=32, inputs_length=128, targets_length=48,
            schedule={"name": "rsqrt", "warmup_steps": 1111}, log_every=10,
        )
    )
    finetune: FinetuneConfig = field(
        default_factory=lambda: FinetuneConfig(
            steps=1040, batch_size=32, inputs_length=128, targets_length=64,
            schedule={"name": "constant", "value": 0.05}, log_every=20, checkpoint_every=520,
            reset_optimizer=True,
        )
    )
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(batch_size=100, max_decode_length=64))


#: (path of a plugin section, plugin kind) for every single plugin section.
PLUGIN_SECTIONS: tuple[tuple[str, str], ...] = (
    ("vocabulary", "vocabulary"),
    ("model", "architecture"),
    ("objective", "objective"),
    ("corpus", "corpus"),
    ("mixer", "mixer"),
    ("backend", "backend"),
    ("optimizer", "optimizer"),
    ("pretrain.schedule", "schedule"),
    ("finetune.schedule", "schedule"),
    ("finetune.strategy", "finetune"),
)

#: plugin sections that decoding and exporting a run's model do not use (``t5k eval``,
#: ``t5k predict``, ``t5k convert``): their plugins need not be installed there
NOT_FOR_DECODING: tuple[str, ...] = ("objective", "corpus", "mixer", "optimizer",
                                     "pretrain.schedule", "finetune.schedule")


def without_unavailable(cfg: DictConfig, registry: Any, tasks: bool = False) -> list[str]:
    """In a run's composed config about to be decoded or exported, replace each section of
    :data:`NOT_FOR_DECODING` whose plugin is not installed here by the default section
    (and, with ``tasks``, drop tasks whose plugin is not installed), so a run trained with
    a third-party objective can still be evaluated, queried or exported where that plugin
    is missing. Returns one line per replacement, for the user."""
    notes = []
    kinds = dict(PLUGIN_SECTIONS)
    defaults = _schema(RunConfig)
    for path in NOT_FOR_DECODING:
        name = OmegaConf.select(cfg, f"{path}.name", default=None)
        if name is None or _installed(registry, kinds[path], str(name)):
            continue
        default = OmegaConf.to_container(OmegaConf.select(defaults, path))
        OmegaConf.update(cfg, path, default, merge=False)
        notes.append(f"note: the run's {path} plugin {name!r} is not installed here; it is "
                     f"not needed for this command (replaced by {default['name']!r})")
    if tasks:
        for task in [t for t in (cfg.tasks or {}) if not _installed(registry, "corpus", t)]:
            del cfg.tasks[task]
            notes.append(f"note: the run's task {task!r} is not installed here; it is not "
                         "needed for this command (left out)")
    return notes


def run_config_to_decode(config_file: Path, overrides: Sequence[str], registry: Any,
                         say: Any, tasks: bool = False) -> DictConfig:
    """A run's saved config (``config_file``) with ``overrides``, for a command that
    decodes or exports its model (``t5k eval``, ``t5k predict``, ``t5k convert``):
    composed, with the sections those commands do not need made independent of plugins
    installed here (:func:`without_unavailable`, whose notes go to ``say``), validated."""
    cfg = compose([config_file], list(overrides), registry)
    for line in without_unavailable(cfg, registry, tasks=tasks):
        say(line)
    return validate(cfg, registry)


def _installed(registry: Any, kind: str, name: str) -> bool:
    try:
        registry.get(kind, name)
    except PluginError:
        return False
    return True


#: CLI shorthands -> config keys.
SHORTHANDS = {"arch": "model.name", "objective": "objective.name", "backend": "backend.name",
              "corpus": "corpus.name", "finetune": "finetune.strategy.name"}


#: OmegaConf's own resolvers (registered when omegaconf is imported), the only ones a
#: config may use. None of them runs code: ``oc.env`` reads an environment variable,
#: ``oc.select`` and ``oc.dict.keys`` / ``oc.dict.values`` read other keys of the config,
#: ``oc.create`` / ``oc.decode`` parse a string with OmegaConf's own grammar (literals,
#: lists, mappings and interpolations; no YAML tags, no Python), ``oc.deprecated``
#: redirects a renamed key.
BUILTIN_RESOLVERS = frozenset({"oc.create", "oc.decode", "oc.deprecated", "oc.env",
                               "oc.select", "oc.dict.keys", "oc.dict.values"})


class _BuiltinResolverTable(dict):
    """The resolver table while a config is composed or resolved: OmegaConf's built-ins
    only; resolvers registered meanwhile (e.g. by a plugin's hooks module imported by
    registry discovery) are kept aside and restored afterwards, never used here."""

    def __init__(self, table: dict[str, Any]) -> None:
        super().__init__({k: v for k, v in table.items() if k in BUILTIN_RESOLVERS})
        self.aside: dict[str, Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        if key in BUILTIN_RESOLVERS:
            super().__setitem__(key, value)
        else:
            self.aside[key] = value


@contextlib.contextmanager
def _builtin_resolvers_only() -> Iterator[None]:
    """Compose / resolve with :data:`BUILTIN_RESOLVERS` only, whatever else is registered.

    t5kernel registers no resolver. This guard keeps config files and overrides unable to
    run code even when some imported library or plugin registered an evaluating resolver
    (an ``${eval:...}`` of the kind other projects define): such an interpolation is an
    unknown resolver here, refused as a ConfigError naming the key.
    """
    original = BaseContainer._resolvers
    table = _BuiltinResolverTable(original)
    BaseContainer._resolvers = table
    try:
        yield
    finally:
        BaseContainer._resolvers = original
        original.update(table.aside)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _oc_message(exc: OmegaConfBaseException) -> str:
    msg = _first_line(exc)
    if isinstance(exc, UnsupportedInterpolationType):
        found = re.search(r"Unsupported interpolation type (\S+)", msg)
        name = found.group(1) if found else "?"
        msg = (f"unknown resolver {name!r}: only OmegaConf's built-in resolvers ("
               f"{', '.join(sorted(BUILTIN_RESOLVERS))}) are available; a config cannot run "
               "code")
    elif isinstance(exc, GrammarParseError):
        msg = f"not valid interpolation syntax: {msg}"
    key = getattr(exc, "full_key", None)
    return f"{msg} (key: {key})" if key and key not in msg else msg


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """Every T5KError leaving the config stage has a one-line message (the CLI prints
    ``error: <message>``); a user's key or value may carry a line break."""
    try:
        yield
    except T5KError as exc:
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        if text != str(exc):
            exc.args = (text,)
        raise


@functools.lru_cache(maxsize=256)
def _schema(config_class: type) -> DictConfig:
    """``OmegaConf.structured(config_class)``, built once: it is the slow part of composing
    and validating. Callers copy it (``OmegaConf.merge`` copies its first argument)."""
    return OmegaConf.structured(config_class)


def compose(
    files: list[str | Path] = (), overrides: list[str] = (), registry: Any = None
) -> DictConfig:
    """Defaults <- YAML files <- dot-list overrides; kernel sections type-checked.

    ``registry`` looks up the plugins whose size presets a layer selects (see
    :func:`_expand_size_presets`); None = the default registry, consulted only then.
    Unreadable files, YAML syntax errors, malformed overrides and values of the wrong
    type are ConfigErrors naming the file, override or key.
    """
    cfg = copy.deepcopy(_schema(RunConfig))
    with _one_line_errors(), _builtin_resolvers_only():
        try:
            for path in files:
                loaded = _load_file(Path(path))
                if "tasks" in loaded:  # a file's task set replaces the current one
                    cfg.tasks = {}
                cfg = _merge_layer(cfg, loaded, registry, f"config file {str(path)!r}")
            if overrides:
                cfg = _merge_layer(cfg, _parse_overrides(overrides), registry, "the overrides")
        except OmegaConfBaseException as exc:
            raise ConfigError(f"invalid configuration: {_oc_message(exc)}") from exc
    return cfg


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or _first_line(exc)
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def _load_file(path: Path) -> DictConfig:
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise ConfigError(f"config file {str(path)!r} {what}")
    try:
        loaded = OmegaConf.load(path)
    except yaml.YAMLError as exc:  # also YAML tags such as !!python/object: not loadable
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: "
                          f"{_yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {_first_line(exc)}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at top level")
    return loaded


def _parse_overrides(overrides: Sequence[str]) -> DictConfig:
    """The dot-list overrides as one layer; a malformed one is named."""
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            OmegaConf.from_dotlist([item])
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: "
                              f"{_yaml_problem(exc)}") from None
        except OmegaConfBaseException as exc:
            raise ConfigError(f"override {item!r}: {_oc_message(exc)}") from None
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except (OmegaConfBaseException, TypeError, ValueError) as exc:  # e.g. model=[] model.x=1
        culprit = next(item for i, item in enumerate(overrides)
                       if _dotlist_fails(overrides[: i + 1]))
        message = _oc_message(exc) if isinstance(exc, OmegaConfBaseException) else _first_line(exc)
        raise ConfigError(f"override {culprit!r} does not fit the overrides before it: "
                          f"{message}") from None


def _dotlist_fails(items: Sequence[str]) -> bool:
    try:
        OmegaConf.from_dotlist(list(items))
    except Exception:  # any failure: this only finds which override it is
        return True
    return False


def _merge_layer(cfg: DictConfig, layer: DictConfig, registry: Any, what: str) -> DictConfig:
    """``cfg`` with one layer (a file, or all overrides) merged over it (module doc, step 2)."""
    layer = _replace_plugin_sections(cfg, layer, registry)
    _expand_size_presets(cfg, layer, registry)
    try:
        return OmegaConf.merge(cfg, layer)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, OmegaConfBaseException):
            raise
        # OmegaConf's own complaints about shapes, e.g. a list where a mapping is
        key = _shape_conflict(cfg, layer)
        raise ConfigError(f"invalid configuration in {what}: {_first_line(exc)}"
                          + (f" (key: {key})" if key else "")) from None


def _shape_conflict(base: Any, update: Any, prefix: str = "") -> str | None:
    """The first key whose value is a mapping on one side and a list on the other."""
    if not isinstance(update, DictConfig) or not isinstance(base, DictConfig):
        return None
    for key in update:
        if key not in base:
            continue
        new, old = update._get_node(key), base._get_node(key)
        full = f"{prefix}{key}"
        if isinstance(new, DictConfig) and isinstance(old, DictConfig):
            found = _shape_conflict(old, new, f"{full}.")
            if found:
                return found
        elif isinstance(new, (DictConfig, ListConfig)) and isinstance(old, (DictConfig, ListConfig)):
            if type(new) is not type(old):
                return full
    return None


def _replace_plugin_sections(base: DictConfig, update: DictConfig,
                             registry: Any = None) -> DictConfig:
    """When an update picks a different plugin for a section, drop the old plugin's options.

    Options of one plugin mean nothing to another (``--objective span`` must not inherit
    options of ``iid_spans``), so a section whose ``name`` changes starts from the new
    name alone, plus whatever the same update sets. The ``model`` section is the
    exception: every architecture takes the same dimensions (layers, widths, heads,
    dropout, ...), so the ones the new architecture also has are kept (``--arch lm`` on
    the embedded default is a decoder-only model of the default's size and dropout, not
    the architecture's own defaults).
    """
    for path, kind in PLUGIN_SECTIONS:
        new_name = OmegaConf.select(update, f"{path}.name", default=None)
        old_name = OmegaConf.select(base, f"{path}.name", default=None)
        if new_name is not None and new_name != old_name:
            kept = _shared_options(base, path, kind, str(new_name), registry) if (
                path == "model") else {}
            OmegaConf.update(base, path, {"name": new_name, **kept}, merge=False)
    return update


def _shared_options(base: DictConfig, path: str, kind: str, name: str,
                    registry: Any) -> dict[str, Any]:
    """The options of ``base``'s section ``path`` that plugin ``name`` also has."""
    schema = _plugin_config_class(kind, name, registry)
    if schema is None:
        return {}
    fields = {f.name for f in dataclasses.fields(schema)}
    section = OmegaConf.to_container(OmegaConf.select(base, path), resolve=False)
    return {k: v for k, v in section.items() if k in fields and k != "name"}


def _plugin_config_class(kind: str, name: str, registry: Any) -> type | None:
    """Plugin ``name``'s config dataclass, looked up while composing (``registry`` None:
    the default one); None for an unknown or broken plugin, which validate() reports."""
    if registry is None:
        from t5kernel.registry import default_registry

        registry = default_registry()
    try:
        return registry.get(kind, name).config
    except PluginError:
        return None


def _expand_size_presets(base: DictConfig, update: DictConfig, registry: Any) -> None:
    """Write the preset named by ``update``'s ``<section>.size`` into ``base``'s section.

    A plugin config dataclass offers sizes through a ``PRESETS`` class attribute
    (``{size: {key: value}}``) beside a ``size`` field; without ``PRESETS``, ``size`` is
    an ordinary option if the dataclass has that field (``vocabulary.size``, the number of
    pieces) and an error otherwise. The preset replaces what earlier layers set for its
    keys (``model.size=base`` over the embedded default's 2 layers gives 12), and
    ``update`` is merged afterwards, so the keys it sets itself win (``model.size=base
    model.num_layers=6`` gives 6). ``size`` itself stays in the section, so the saved
    config records it. Runs after :func:`_replace_plugin_sections`, so the plugin is the
    one the section names once ``update`` is applied.
    """
    for path, kind in PLUGIN_SECTIONS:
        size = OmegaConf.select(update, f"{path}.size", default=None)
        if size is None:
            continue
        name = OmegaConf.select(update, f"{path}.name", default=None) or OmegaConf.select(
            base, f"{path}.name", default=None)
        if not name:
            raise ConfigError(f"{path}.size: {path}.name is missing; sizes belong to a plugin")
        schema = _plugin_config_class(kind, str(name), registry)
        if schema is None:
            continue
        presets = getattr(schema, "PRESETS", None)
        if not presets:
            if "size" in {f.name for f in dataclasses.fields(schema)}:
                continue  # an ordinary option of this plugin (e.g. vocabulary.size)
            raise ConfigError(f"{path}.size={size!r}: {kind} {name!r} has no size presets")
        if str(size) not in presets:
            raise ConfigError(
                f"{path}.size={size!r} is not a size of {kind} {name!r}; allowed: "
                f"{', '.join(presets)}"
            )
        for key, value in presets[str(size)].items():
            OmegaConf.update(base, f"{path}.{key}", value, merge=False)


def validate(cfg: DictConfig, registry: Any) -> DictConfig:
    """Check every section and value before any work starts; return the full config.

    1. Interpolations are resolved once, here, with OmegaConf's built-in resolvers only
       (:data:`BUILTIN_RESOLVERS`; an unknown one, e.g. ``${eval:...}``, is a ConfigError
       naming the key), so the saved config is literal.
    2. Kernel values are range-checked (:func:`_check_kernel_values`).
    3. Each plugin section's keys and types are checked against the plugin's config
       dataclass, then the dataclass is *instantiated*, so its ``__post_init__`` range
       checks run: a ConfigError / ValueError / TypeError from it becomes a ConfigError
       prefixed with the full key path (``objective.noise_density=1.5 is out of range;
       allowed: a number in (0, 1)``). Nested dataclasses (``corpus.cleaning``) are
       instantiated first, so their errors name their own path.
    4. Cross checks: a plugin config dataclass may define ``check_run(run: DictConfig) ->
       None``; it is called with the whole validated config (read-only) once every section
       passed, and raises ConfigError when its options do not fit the rest of the run
       (e.g. an objective refusing ``pretrain.targets_length`` too short for its
       examples). Its messages name the keys themselves (``pretrain.targets_length=...``);
       a ValueError / TypeError from it becomes a ConfigError naming the section.

    An exception of any other type raised by a plugin's config code is reported as a
    PluginError naming the plugin, so a config never fails with a traceback.
    """
    with _one_line_errors():
        with _builtin_resolvers_only():
            try:  # the saved config must be literal: resolve interpolations once, here
                cfg = OmegaConf.create(_literal(OmegaConf.to_container(cfg, resolve=True)))
            except OmegaConfBaseException as exc:
                raise ConfigError(f"invalid configuration: {_oc_message(exc)}") from exc
        _absolute_paths(cfg, RunConfig)
        out = OmegaConf.to_container(cfg)
        assert isinstance(out, dict)
        _check_kernel_values(cfg, registry)
        built: list[tuple[str, str, str, Any]] = []
        for path, kind in PLUGIN_SECTIONS:
            section = OmegaConf.select(cfg, path)
            full, instance = _validate_section(path, kind, section, registry)
            _set_path(out, path, full)
            built.append((path, kind, full["name"], instance))
        tasks = {}
        for task_name, options in (cfg.tasks or {}).items():
            path = f"tasks.{task_name}"
            if options is not None and not isinstance(options, DictConfig):
                raise ConfigError(f"{path}={options!r} is not a mapping; allowed: the options of "
                                  f"corpus plugin {str(task_name)!r} (or nothing)")
            section = {"name": task_name, **(OmegaConf.to_container(options) if options else {})}
            full, instance = _validate_section(path, "corpus", section, registry)
            built.append((path, "corpus", full.pop("name"), instance))
            tasks[task_name] = full
        out["tasks"] = tasks
        run = OmegaConf.create(out)
        OmegaConf.set_readonly(run, True)  # a check reads the run, it does not change it
        try:
            for path, kind, name, instance in built:
                check = getattr(instance, "check_run", None)
                if callable(check):
                    with _plugin_errors(path, kind, name, type(instance)):
                        check(run)
        finally:
            OmegaConf.set_readonly(run, None)
        return run


def _literal(value: Any) -> Any:
    """A resolved container whose strings stay literal in a new config: a ``${`` that a
    resolution produced (an escaped ``\\${...}``, an environment variable's value) is
    escaped again, so it is never resolved later, outside :func:`_builtin_resolvers_only`
    (and the saved config.yaml reads back the same)."""
    if isinstance(value, str):
        return _INTERPOLATION_START.sub(
            lambda m: "\\" * (2 * len(m.group(1)) + 1) + "${", value)
    if isinstance(value, dict):
        return {key: _literal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_literal(item) for item in value]
    return value


#: ``${`` with the backslashes before it (OmegaConf: ``\${`` is a literal ``${``, and
#: ``\\`` before ``${`` a literal backslash)
_INTERPOLATION_START = re.compile(r"(\\*)\$\{")


def _validate_section(
    path: str, kind: str, section: Any, registry: Any
) -> tuple[dict[str, Any], Any]:
    """(the section with the plugin's defaults filled in, the plugin's config object)."""
    if section is None:
        raise ConfigError(f"{path}: missing; it must name a {kind} plugin ({path}.name=...)")
    data = OmegaConf.to_container(section) if isinstance(section, DictConfig) else dict(section)
    name = data.pop("name", None)
    if not name:
        raise ConfigError(f"{path}.name: missing; it must name a {kind} plugin")
    try:
        record = registry.get(kind, str(name))
    except PluginError as exc:  # same type, the key named
        raise type(exc)(f"{path}.name: {exc}") from None
    schema = _schema(record.config)
    unknown = _unknown_option(schema, data)
    if unknown is not None:
        key, allowed = unknown
        raise ConfigError(
            f"{path}.{key}: unknown option of {kind} {name!r}; allowed: "
            f"{', '.join(allowed) or '(none)'}"
        )
    try:
        merged = OmegaConf.merge(schema, data)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise ConfigError(
            f"{path}.{key}: {_first_line(exc)} (option of {kind} {name!r})"
        ) from exc
    _absolute_paths(merged, record.config)
    instance = _instantiate(path, kind, str(name), merged)
    return {"name": str(name), **OmegaConf.to_container(merged)}, instance


def _absolute_paths(node: DictConfig, schema: type) -> None:
    """Rewrite, in ``node``, every option of ``schema`` (a config dataclass) marked
    with :func:`t5kernel.api.path_option` to an absolute path, nested option groups
    included; see there for why and for which values are kept."""
    for f in dataclasses.fields(schema):
        if f.name not in node:
            continue
        mode = f.metadata.get(PATH_OPTION)
        value = node._get_node(f.name)
        if mode is not None:
            if isinstance(value, ListConfig):
                node[f.name] = [_absolute(v, mode) for v in value]
            elif isinstance(node[f.name], str):
                node[f.name] = _absolute(node[f.name], mode)
        elif isinstance(value, DictConfig):
            nested = OmegaConf.get_type(value)
            if nested is not None and dataclasses.is_dataclass(nested):
                _absolute_paths(value, nested)


def _absolute(value: Any, mode: str) -> Any:
    """``value`` as an absolute local path, or as it is (see ``path_option``)."""
    if not isinstance(value, str) or not value or "://" in value:
        return value
    local = os.path.expanduser(value)
    if mode == "hub_or_local" and not os.path.exists(local):
        return value  # a hub id, as datasets.load_dataset reads it
    return os.path.abspath(local)


def _unknown_option(schema: DictConfig, data: dict[str, Any], prefix: str = ""
                    ) -> tuple[str, list[str]] | None:
    """The first key of ``data`` that ``schema`` (a structured config) lacks, with the keys
    it has at that level; nested option groups (``corpus.cleaning.*``) are searched too."""
    allowed = [str(k) for k in schema.keys()]
    for key, value in data.items():
        if key not in allowed:
            return f"{prefix}{key}", allowed
        node = schema._get_node(key)
        if isinstance(value, dict) and isinstance(node, DictConfig) and (
                OmegaConf.get_type(node) not in (dict, None)):
            found = _unknown_option(node, value, f"{prefix}{key}.")
            if found is not None:
                return found
    return None


def _instantiate(path: str, kind: str, name: str, node: DictConfig) -> Any:
    """The config object of a merged section; nested dataclasses first (their own paths)."""
    schema = OmegaConf.get_type(node)
    for f in dataclasses.fields(schema):
        value = node._get_node(f.name)
        if isinstance(value, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(value)):
            _instantiate(f"{path}.{f.name}", kind, name, value)
    with _plugin_errors(path, kind, name, schema):
        return OmegaConf.to_object(node)


@contextlib.contextmanager
def _plugin_errors(path: str, kind: str, name: str, schema: Any) -> Iterator[None]:
    """Errors of a plugin's config code as one-line ConfigErrors naming the key path.

    A message that starts with one of the dataclass's field names (``noise_density=1.5
    is out of range ...``) gets the section's path put in front (``objective.``); a
    message that names full keys itself (from ``check_run``) is kept as it is.
    """
    try:
        yield
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {_oc_message(exc)} (option of {kind} {name!r})") from None
    except T5KError as exc:
        if not isinstance(exc, ConfigError):
            raise
        raise ConfigError(_at_path(path, _first_line(exc), schema)) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(_at_path(path, _first_line(exc), schema)
                          + f" ({kind} {name!r})") from None
    except Exception as exc:  # the plugin's own failure: report it, do not crash the kernel
        raise PluginError(f"{path}: checking the options of {kind} plugin {name!r} raised "
                          f"{type(exc).__name__}: {_first_line(exc)}") from None


def _at_path(path: str, message: str, schema: Any) -> str:
    fields = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else ()
    head = re.match(r"[A-Za-z_][A-Za-z0-9_]*", message)
    if head and head.group(0) in fields and message[head.end():head.end() + 1] in ("=", ":", " "):
        return f"{path}.{message}"
    if re.match(r"[a-z_]+(\.[A-Za-z0-9_]+)+[=: ]", message):  # names a full key already
        return message
    return f"{path}: {message}"


#: longest inputs / targets a stage may ask for: 2^20 tokens per row is far beyond any
#: T5 setting (512 / 114) and keeps the objectives' length arithmetic bounded
MAX_SEQUENCE_LENGTH = 2**20


def _check_kernel_values(cfg: DictConfig, registry: Any) -> None:
    """Range checks the types alone cannot express."""
    def need(cond: bool, key: str, allowed: str, value: Any) -> None:
        if not cond:
            raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}")

    def finite(value: Any) -> bool:
        return math.isfinite(float(value))

    # numpy's generators take seeds >= 0; stage seeds add small offsets (seed + 1, ...)
    need(0 <= cfg.seed < 2**32, "seed", f"an integer in [0, {2**32 - 1}]", cfg.seed)
    for stage in ("pretrain", "finetune"):
        s = cfg[stage]
        need(s.steps >= 0, f"{stage}.steps", "an integer >= 0", s.steps)
        need(s.batch_size >= 1, f"{stage}.batch_size", "an integer >= 1", s.batch_size)
        for key, low in (("inputs_length", 4), ("targets_length", 2)):
            need(low <= s[key] <= MAX_SEQUENCE_LENGTH, f"{stage}.{key}",
                 f"an integer in [{low}, {MAX_SEQUENCE_LENGTH}]", s[key])
        need(s.log_every >= 1, f"{stage}.log_every", "an integer >= 1", s.log_every)
        need(s.checkpoint_every >= 0, f"{stage}.checkpoint_every", "an integer >= 0",
             s.checkpoint_every)
    need(cfg.pretrain.max_tokens >= 0, "pretrain.max_tokens", "an integer >= 0 (0 = no limit)",
         cfg.pretrain.max_tokens)
    need(finite(cfg.loss.z_loss) and cfg.loss.z_loss >= 0, "loss.z_loss", "a finite number >= 0",
         cfg.loss.z_loss)
    need(cfg.loss.denominator in ("constant", "tokens"), "loss.denominator",
         "'constant' or 'tokens'", cfg.loss.denominator)
    need(cfg.loss.nonfinite in ("stop", "skip"), "loss.nonfinite", "'stop' or 'skip'",
         cfg.loss.nonfinite)
    need(cfg.loss.max_skipped_steps >= 0, "loss.max_skipped_steps", "an integer >= 0",
         cfg.loss.max_skipped_steps)
    need(cfg.eval.batch_size >= 1, "eval.batch_size", "an integer >= 1", cfg.eval.batch_size)
    need(cfg.eval.max_decode_length >= 1, "eval.max_decode_length", "an integer >= 1",
         cfg.eval.max_decode_length)
    need(cfg.eval.max_examples >= 0, "eval.max_examples", "an integer >= 0 (0 = all)",
         cfg.eval.max_examples)
    need(cfg.eval.num_beams >= 1, "eval.num_beams", "an integer >= 1", cfg.eval.num_beams)
    need(finite(cfg.eval.alpha) and cfg.eval.alpha >= 0, "eval.alpha", "a finite number >= 0",
         cfg.eval.alpha)
    need(cfg.eval.length_penalty in ("mtf", "hf"), "eval.length_penalty", "'mtf' or 'hf'",
         cfg.eval.length_penalty)
    need(cfg.eval.ensemble_reduce in ("mean_logit", "mean_prob"), "eval.ensemble_reduce",
         "'mean_logit' or 'mean_prob'", cfg.eval.ensemble_reduce)
    for name in cfg.eval.averages:  # used after training: a typo must not cost a run
        try:
            registry.get("evaluator", str(name))
        except PluginError as exc:
            raise type(exc)(f"eval.averages: {exc}") from None
    need(cfg.keep_checkpoints >= 1, "keep_checkpoints", "an integer >= 1", cfg.keep_checkpoints)
    if cfg.finetune.steps > 0:
        need(len(cfg.tasks or {}) > 0, "tasks", "at least one task when finetune.steps > 0", {})
    known = sorted(cfg.tasks or {})
    for key, names, allow_all in (("pretrain.tasks", cfg.pretrain.tasks, True),
                                  ("finetune.tasks", cfg.finetune.tasks, False),
                                  ("eval.tasks", cfg.eval.tasks, False)):
        for task in names:
            if not (allow_all and task == "all") and task not in known:
                raise ConfigError(
                    f"{key}: {task!r} is not a configured task; configured: "
                    f"{', '.join(known) or '(none)'}" + ("; or 'all'" if allow_all else ""))
    if cfg.pretrain.steps > 0:
        need(cfg.pretrain.unsupervised or len(cfg.pretrain.tasks) > 0, "pretrain.unsupervised",
             "true, or pretrain.tasks non-empty (something to pre-train on)",
             cfg.pretrain.unsupervised)
        mixed = known if "all" in cfg.pretrain.tasks else list(cfg.pretrain.tasks)
        corpus = cfg.corpus.get("name") if isinstance(cfg.corpus, DictConfig) else None
        need(not (cfg.pretrain.unsupervised and corpus in mixed), "corpus.name",
             "a name other than the tasks mixed into pre-training (rename the task)", corpus)
    need(cfg.pretrain.unsupervised_size >= 0, "pretrain.unsupervised_size",
         "an integer >= 0 (0 = the mixer's limit)", cfg.pretrain.unsupervised_size)


def _set_path(root: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = root
    for p in parents:
        node = node[p]
    node[leaf] = value


def plugin_config(section: Any, record: Any) -> Any:
    """The plugin's config dataclass instance from a validated section."""
    data = OmegaConf.to_container(section) if isinstance(section, DictConfig) else dict(section)
    data.pop("name", None)
    return OmegaConf.to_object(OmegaConf.merge(_schema(record.config), data))


