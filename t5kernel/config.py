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
   wrong types are errors naming the key, the plugin and the allowed keys),
4. fill in the plugin defaults, so the saved ``config.yaml`` is complete and re-running
   with it reproduces the run.

No custom resolvers are registered: a config file cannot execute code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from t5kernel.errors import ConfigError, PluginError


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
    #: the size the mixer is told for the unsupervised stream (0 = unknown: the mixer's
    #: limit K applies; the final T5 models used 710,000 ... 133,000,000, P §3.7)
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
    #: evaluate at every fine-tuning checkpoint and report the best per task (paper)
    best_checkpoint_per_task: bool = True
    #: evaluate only the first N validation examples of each task (0 = all)
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
    #: a checkpoint folder (e.g. ``t5k convert``'s ``checkpoints/step_0``) whose
    #: model.safetensors initialises the model before training (strict; not on resume)
    init_checkpoint: str | None = None
    # The embedded default is the paper's baseline recipe scaled to minutes on a laptop
    # CPU. Measured trade-offs at this scale (see the README): the paper's fine-tuning
    # rate (1e-3, meant after 2^19 pre-training steps) and dropout 0.1 leave a model this
    # small untrained after a few hundred steps, and fine-tuning from fresh optimizer
    # state learns the copy-like demo tasks sooner; so the demo uses dropout 0, a short
    # pre-training at 1/sqrt(max(step, 1111)), fine-tuning at a constant 0.05 with
    # reset_optimizer. Paper-scale runs keep the paper's settings (configs/).
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
            steps=520, batch_size=32, inputs_length=128, targets_length=64,
            schedule={"name": "constant", "value": 0.05}, log_every=20, checkpoint_every=260,
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

#: CLI shorthands -> config keys.
SHORTHANDS = {"arch": "model.name", "objective": "objective.name", "backend": "backend.name",
              "corpus": "corpus.name", "finetune": "finetune.strategy.name"}


def _oc_message(exc: OmegaConfBaseException) -> str:
    msg = str(exc).splitlines()[0]
    key = getattr(exc, "full_key", None)
    return f"{msg} (key: {key})" if key and key not in msg else msg


def compose(
    files: list[str | Path] = (), overrides: list[str] = (), registry: Any = None
) -> DictConfig:
    """Defaults <- YAML files <- dot-list overrides; kernel sections type-checked.

    ``registry`` looks up the plugins whose size presets a layer selects (see
    :func:`_expand_size_presets`); None = the default registry, consulted only then.
    """
    cfg = OmegaConf.structured(RunConfig)
    try:
        for path in files:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file {str(path)!r} does not exist")
            loaded = OmegaConf.load(path)
            if not isinstance(loaded, DictConfig):
                raise ConfigError(f"config file {str(path)!r} must hold a mapping at top level")
            if "tasks" in loaded:  # a file's task set replaces the current one
                cfg.tasks = {}
            loaded = _replace_plugin_sections(cfg, loaded)
            _expand_size_presets(cfg, loaded, registry)
            cfg = OmegaConf.merge(cfg, loaded)
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
        if overrides:
            dot = _replace_plugin_sections(cfg, OmegaConf.from_dotlist(list(overrides)))
            _expand_size_presets(cfg, dot, registry)
            cfg = OmegaConf.merge(cfg, dot)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid configuration: {_oc_message(exc)}") from exc
    return cfg


def _replace_plugin_sections(base: DictConfig, update: DictConfig) -> DictConfig:
    """When an update picks a different plugin for a section, drop the old plugin's options.

    Options of one plugin mean nothing to another (``--objective span`` must not inherit
    options of ``iid_spans``), so a section whose ``name`` changes starts from the new
    name alone, plus whatever the same update sets.
    """
    for path, _kind in PLUGIN_SECTIONS:
        new_name = OmegaConf.select(update, f"{path}.name", default=None)
        old_name = OmegaConf.select(base, f"{path}.name", default=None)
        if new_name is not None and new_name != old_name:
            OmegaConf.update(base, path, {"name": new_name}, merge=False)
    return update


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
        if registry is None:
            from t5kernel.registry import default_registry

            registry = default_registry()
        try:
            schema = registry.get(kind, str(name)).config
        except PluginError:  # unknown or broken plugin: validate() reports it
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
    """Check every plugin section against its plugin's dataclass; return the full config."""
    try:  # the saved config must be literal: resolve interpolations once, here
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid configuration: {_oc_message(exc)}") from exc
    out = OmegaConf.to_container(cfg)
    assert isinstance(out, dict)
    _check_kernel_values(cfg)
    for path, kind in PLUGIN_SECTIONS:
        section = OmegaConf.select(cfg, path)
        full = _validate_section(path, kind, section, registry)
        _set_path(out, path, full)
    tasks = {}
    for task_name, options in (cfg.tasks or {}).items():
        section = {"name": task_name, **(OmegaConf.to_container(options) if options else {})}
        full = _validate_section(f"tasks.{task_name}", "corpus", section, registry)
        full.pop("name")
        tasks[task_name] = full
    out["tasks"] = tasks
    return OmegaConf.create(out)


def _validate_section(path: str, kind: str, section: Any, registry: Any) -> dict[str, Any]:
    if section is None:
        raise ConfigError(f"{path}: missing; it must name a {kind} plugin ({path}.name=...)")
    data = OmegaConf.to_container(section) if isinstance(section, DictConfig) else dict(section)
    name = data.pop("name", None)
    if not name:
        raise ConfigError(f"{path}.name: missing; it must name a {kind} plugin")
    record = registry.get(kind, str(name))
    schema = OmegaConf.structured(record.config)
    allowed = [f.name for f in dataclasses.fields(record.config)]
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{path}.{key}: unknown option of {kind} {name!r}; allowed: "
                f"{', '.join(allowed) or '(none)'}"
            )
    try:
        merged = OmegaConf.merge(schema, data)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise ConfigError(
            f"{path}.{key}: {str(exc).splitlines()[0]} (option of {kind} {name!r})"
        ) from exc
    return {"name": str(name), **OmegaConf.to_container(merged)}


def _check_kernel_values(cfg: DictConfig) -> None:
    """Range checks the types alone cannot express."""
    def need(cond: bool, key: str, allowed: str, value: Any) -> None:
        if not cond:
            raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}")

    for stage in ("pretrain", "finetune"):
        s = cfg[stage]
        need(s.steps >= 0, f"{stage}.steps", "an integer >= 0", s.steps)
        need(s.batch_size >= 1, f"{stage}.batch_size", "an integer >= 1", s.batch_size)
        need(s.inputs_length >= 4, f"{stage}.inputs_length", "an integer >= 4", s.inputs_length)
        need(s.targets_length >= 2, f"{stage}.targets_length", "an integer >= 2", s.targets_length)
        need(s.log_every >= 1, f"{stage}.log_every", "an integer >= 1", s.log_every)
        need(s.checkpoint_every >= 0, f"{stage}.checkpoint_every", "an integer >= 0",
             s.checkpoint_every)
    need(cfg.pretrain.max_tokens >= 0, "pretrain.max_tokens", "an integer >= 0 (0 = no limit)",
         cfg.pretrain.max_tokens)
    need(cfg.loss.z_loss >= 0, "loss.z_loss", "a number >= 0", cfg.loss.z_loss)
    need(cfg.loss.denominator in ("constant", "tokens"), "loss.denominator",
         "'constant' or 'tokens'", cfg.loss.denominator)
    need(cfg.eval.batch_size >= 1, "eval.batch_size", "an integer >= 1", cfg.eval.batch_size)
    need(cfg.eval.max_decode_length >= 1, "eval.max_decode_length", "an integer >= 1",
         cfg.eval.max_decode_length)
    need(cfg.eval.num_beams >= 1, "eval.num_beams", "an integer >= 1", cfg.eval.num_beams)
    need(cfg.eval.alpha >= 0, "eval.alpha", "a number >= 0", cfg.eval.alpha)
    need(cfg.eval.length_penalty in ("mtf", "hf"), "eval.length_penalty", "'mtf' or 'hf'",
         cfg.eval.length_penalty)
    need(cfg.eval.ensemble_reduce in ("mean_logit", "mean_prob"), "eval.ensemble_reduce",
         "'mean_logit' or 'mean_prob'", cfg.eval.ensemble_reduce)
    need(cfg.keep_checkpoints >= 1, "keep_checkpoints", "an integer >= 1", cfg.keep_checkpoints)
    if cfg.finetune.steps > 0:
        need(len(cfg.tasks or {}) > 0, "tasks", "at least one task when finetune.steps > 0", {})
    known = sorted(cfg.tasks or {})
    for key, names, allow_all in (("pretrain.tasks", cfg.pretrain.tasks, True),
                                  ("finetune.tasks", cfg.finetune.tasks, False)):
        for task in names:
            if not (allow_all and task == "all") and task not in known:
                raise ConfigError(
                    f"{key}: {task!r} is not a configured task; configured: "
                    f"{', '.join(known) or '(none)'}" + ("; or 'all'" if allow_all else ""))
    if cfg.pretrain.steps > 0:
        need(cfg.pretrain.unsupervised or len(cfg.pretrain.tasks) > 0, "pretrain.unsupervised",
             "true, or pretrain.tasks non-empty (something to pre-train on)",
             cfg.pretrain.unsupervised)
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
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(record.config), data))


