"""The run loop: pre-train -> fine-tune -> evaluate, writing the run directory (DESIGN §7).

It reaches plugins only through the registry and the Protocols of :mod:`t5kernel.api`.
Steps are counted globally across stages (fine-tuning continues the pre-training step
counter, as Mesh TF does), so checkpoint ``step_N`` names are unique within a run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from omegaconf import DictConfig, OmegaConf

from t5kernel import checkpoint as ckpt
from t5kernel import data, jsonout
from t5kernel.api import BuildContext
from t5kernel.config import plugin_config
from t5kernel.distributed import launch_rank, rank_of, world_size_of
from t5kernel.errors import ConfigError, DataError, RunDirError, StoppedError, T5KError

#: at most this many training steps' losses wait on the device before they are read
#: (loss.nonfinite=stop reads them when it logs or checkpoints, else this often)
PENDING_LOSSES = 64

#: the run directory's folder of tokenised training tasks (Runner._task_caches; beside
#: the corpus plugins' own caches in cache/)
TASK_CACHE = "cache/tasks"

#: keys that may differ between a run and its resumption; ``backend`` says how the same
#: computation executes (device, DDP/FSDP, threads), so a run may resume on other hardware
#: or another world size (checkpoints hold full, unsharded tensors)
_VOLATILE_KEYS = ("resume", "run_dir", "runs_root", "backend")


class NumericalError(T5KError):
    """The training loss became NaN or infinite."""


# ---------------------------------------------------------------------------- run dir
def prepare_run_dir(cfg: DictConfig) -> Path:
    """Create (or, when resuming, reopen) the run directory and write config.yaml."""
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
    else:
        if cfg.resume:
            raise ConfigError("resume=true needs run_dir=<the run to continue>")
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(cfg.runs_root) / f"{stamp}-{cfg.name}"
    text = OmegaConf.to_yaml(cfg)
    config_path = run_dir / "config.yaml"
    if config_path.exists():
        previous = OmegaConf.load(config_path)
        if _comparable(previous) != _comparable(cfg):
            diff = _first_difference(_comparable(previous), _comparable(cfg))
            raise RunDirError(
                f"run directory {str(run_dir)!r} holds a different run ({diff}); "
                "choose another run_dir, or pass the same config with resume=true"
            )
        if not cfg.resume:
            raise RunDirError(
                f"run directory {str(run_dir)!r} already holds this run; pass resume=true "
                "to continue it or choose another run_dir"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirError(
            f"run directory {str(run_dir)!r} is not empty and holds no t5k run; choose another"
        )
    elif cfg.resume:
        raise RunDirError(f"resume=true but {str(run_dir)!r} holds no run to continue")
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_text(config_path, text)
    return run_dir


def _comparable(cfg: Any) -> dict[str, Any]:
    d = OmegaConf.to_container(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    for key in _VOLATILE_KEYS:
        d.pop(key, None)
    return d


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key, "<unset>") != b.get(key, "<unset>"):
                return _first_difference(a.get(key, "<unset>"), b.get(key, "<unset>"),
                                         f"{prefix}{key}.")
    return f"{prefix.rstrip('.')}: {a!r} there, {b!r} here"


# ---------------------------------------------------------------------------- logging
class _LazyCorpus:
    """A corpus built on its first ``examples`` call (the vocabulary's training texts of
    a run that does not pre-train: nothing is read unless a vocabulary is trained)."""

    def __init__(self, build: Any) -> None:
        self._build, self._corpus = build, None

    def examples(self, split: str) -> Any:
        if self._corpus is None:
            self._corpus = self._build()
        return self._corpus.examples(split)


class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl (flushed per line).

    A resumed run keeps the lines up to its checkpoint's step and drops the rest (written
    after that checkpoint by the run that died); a last line torn by a kill mid-write is
    dropped too."""

    def __init__(self, path: Path, keep_until_step: int | None):
        self.path = path
        if keep_until_step is not None and path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if (row := _json_line(line)) is not None
                    and row.get("step", 0) <= keep_until_step]
            ckpt.atomic_write_text(path, "".join(line + "\n" for line in kept))
        elif keep_until_step is None and path.exists():
            path.unlink()
        self._f = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _json_line(line: str) -> dict[str, Any] | None:
    """The JSON object on ``line``, or None for a blank or torn (unparsable) line."""
    try:
        row = json.loads(line) if line.strip() else None
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


class _NullLog:
    """What ranks other than 0 log to: nothing (rank 0 writes the run directory)."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------- the run
@dataclass
class Components:
    """Everything built from the config for one run."""

    backend: Any
    vocab: Any
    arch: Any
    model: Any
    tasks: dict[str, Any]
    corpus: Any = None
    objective: Any = None


class EvalTarget(NamedTuple):
    """One evaluation result to produce: its name in ``results.json``, the task and split
    it scores, and its best-checkpoint selection group (the task's name)."""

    result: str
    task: Any
    split: str
    group: str


class Runner:
    """Executes a validated config in a run directory."""

    def __init__(self, cfg: DictConfig, registry: Any, run_dir: Path, console: Any = None):
        self.cfg = cfg
        self.registry = registry
        self.run_dir = Path(run_dir)
        self.console = console
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.global_step = 0
        #: whether a training step completed in this process (a run that fails after one
        #: keeps its run directory: its log and vocabulary are evidence, see run())
        self.trained = False
        self.results: dict[str, Any] = {"stages": {}, "eval": {}, "averages": {}}
        self._evaluators: dict[str, Any] = {}
        #: models decoded together (an ensemble); empty = the run's own model
        self.members: list[Any] = []
        #: where evaluate() writes its predictions (None = predictions/step_N of the run)
        self.predictions_dir: Path | None = None
        #: the data position of each stage at its last checkpoint (resumed runs continue there)
        self._data_states: dict[str, Any] = {}
        #: per stage, the losses summed since the last logged line (exact resumption of
        #: a logging window that a checkpoint cut in two)
        self._log_windows: dict[str, Any] = {}
        #: the pre-training document stream (for how many times the corpus was read)
        self._documents: data.DocumentStream | None = None
        #: rank 0 (or a single process) writes the run directory; other ranks only read
        self.main = launch_rank() == 0
        self.comps: Components | None = None

    # -- building -------------------------------------------------------------
    def _build(self, section: Any, kind: str, name: str | None = None, *,
               read_run_dir: bool = False, **extras: Any) -> Any:
        """Build a plugin. It sees the run directory on rank 0 only (so other ranks
        never write there), unless ``read_run_dir``: a rank loading what rank 0 wrote."""
        name = name or section["name"]
        record = self.registry.get(kind, name)
        run_dir = self.run_dir if self.main or read_run_dir else None
        ctx = BuildContext(registry=self.registry, run_dir=run_dir, seed=int(self.cfg.seed),
                           extras=extras)
        return self.registry.build(kind, name, plugin_config(section, record), ctx)

    def build(self, training: bool = True) -> Components:
        """Every component of the run; ``training=False`` (re-evaluation) skips the
        pre-training corpus and gives the vocabulary no texts, so it must load the run's
        own vocabulary instead of training a different one."""
        cfg = self.cfg
        backend = self._build(cfg.backend, "backend")
        backend.seed(int(cfg.seed))
        pretraining = training and cfg.pretrain.steps > 0 and cfg.pretrain.unsupervised
        corpus = self._build(cfg.corpus, "corpus") if pretraining else None
        tasks = self._build_tasks()
        if training and not cfg.resume:
            self._check_batch_sizes(backend)
            self._check_task_data(tasks)
        # a trained vocabulary always comes from the configured corpus, pre-training or not
        # (P Table 1's "no pre-training" and Table 12's supervised-only rows share the
        # baseline's C4 vocabulary); built only if the vocabulary does train
        source = corpus if corpus is not None else _LazyCorpus(
            lambda: self._build(cfg.corpus, "corpus"))
        texts = self._vocab_texts(source, tasks) if training else None
        vocab = self._build_vocabulary(backend, texts)
        arch = self._build(cfg.model, "architecture")
        model = backend.prepare(arch.build(vocab.vocab_size))
        comps = Components(backend, vocab, arch, model, tasks, corpus)
        if corpus is not None:
            comps.objective = self._build(cfg.objective, "objective", vocabulary=vocab)
        return comps

    def _build_tasks(self) -> dict[str, Any]:
        """The configured tasks' corpus plugins, by task name (nothing is read yet)."""
        return {name: self._build({"name": name, **OmegaConf.to_container(opts)}, "corpus")
                for name, opts in self.cfg.tasks.items()}

    def _build_vocabulary(self, backend: Any, texts: Any) -> Any:
        """The vocabulary; with several processes rank 0 builds (and saves) it first and
        the others load what it wrote, so every rank tokenises identically."""
        section = self.cfg.vocabulary
        if world_size_of(backend) == 1:
            return self._build(section, "vocabulary", texts=texts)
        barrier = getattr(backend, "barrier", lambda: None)
        if self.main:
            vocab = self._build(section, "vocabulary", texts=texts)
            barrier()
            return vocab
        barrier()
        return self._build(section, "vocabulary", read_run_dir=True, texts=texts)

    @staticmethod
    def _vocab_texts(corpus: Any, tasks: dict[str, Any]):
        """Texts a vocabulary may train on (:func:`t5kernel.data.vocabulary_texts`)."""
        return data.vocabulary_texts(corpus, tasks)

    # -- main -----------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        comps = self.build()
        self.comps = comps
        resume_state = self._restore(comps) if cfg.resume else None
        if resume_state is None and cfg.get("init_checkpoint"):
            # a resumed run's own checkpoint already holds (trained) weights
            init = Path(cfg.init_checkpoint)
            if self.main:  # same shapes, other pieces: every embedding row would be wrong
                _check_same_vocabulary(
                    self.run_dir, [init], cfg.vocabulary.get("model_file"),
                    "a run starting from it needs that vocabulary: set "
                    f"vocabulary.model_file={init.resolve().parent.parent / 'vocab' / 'spm.model'}"
                    " (or the file it was trained with)")
            ckpt.load_model_weights(comps.model, init)
            self._say(f"init: model weights from {cfg.init_checkpoint}")
        self.main = rank_of(comps.backend) == 0
        self.log = MetricsLog(self.run_dir / "metrics.jsonl",
                              keep_until_step=resume_state["step"] if resume_state else None
                              ) if self.main else _NullLog()
        if resume_state:
            self.results = resume_state.get("results", self.results)
        info = comps.arch.describe(comps.vocab.vocab_size)
        flops = info.get("forward_matmul_flops_per_token_pair")
        self._say(f"[bold]run[/bold] {self.run_dir}  model: {cfg.model.name} "
                  f"({info.get('parameters', '?'):,} parameters"
                  + (f", {flops:,} forward FLOPs per (input, target) token pair" if flops else "")
                  + f")  vocab: {comps.vocab.vocab_size}")
        # One optimizer across stages: fine-tuning continues the pre-training optimizer
        # state and step counter, as Mesh TF does, unless the trainable set changes.
        self.optimizer = self._make_optimizer(comps.model)
        if resume_state:
            self.optimizer.load_state_dict(resume_state["optimizer"])
            comps.backend.set_rng_state(resume_state["rng"])
            scaler = resume_state.get("loss_scaler")
            if scaler is not None and hasattr(comps.backend, "set_loss_scaler_state"):
                comps.backend.set_loss_scaler_state(scaler)
        if cfg.resume:  # a new run checked before training its vocabulary (build)
            self._check_batch_sizes(comps.backend, resume_state)
            self._check_task_data(comps.tasks, resume_state)
        try:
            stages = [("pretrain", cfg.pretrain), ("finetune", cfg.finetune)]
            start = 0
            for stage_name, stage in stages:
                if stage.steps <= 0:
                    continue
                done = resume_state["stage_steps"].get(stage_name, 0) if resume_state else 0
                if done < stage.steps:
                    self._train_stage(comps, stage_name, stage, start, done)
                start += stage.steps
            # evaluation and results: rank 0 only (over a gathered copy under FSDP)
            final_eval = (bool(comps.tasks) and bool(cfg.eval.after_training)
                          and not self.results["eval"])
            with self._evaluation_model(comps, final_eval):
                if self.main and final_eval:
                    scores = self.evaluate(comps)
                    self.results["eval"] = scores
                    self.log.write({"stage": "eval", "step": self.global_step, "eval": scores})
            if self.main:
                self._finalize_results(comps)
        finally:
            self.log.close()
        if self.main:
            ckpt.atomic_write_text(self.run_dir / "results.json",
                                   jsonout.dumps(self.results, indent=1, sort_keys=True))
        self._barrier(comps)
        if self.main:  # a finished run is never resumed: its token caches are scratch
            shutil.rmtree(self.run_dir / TASK_CACHE, ignore_errors=True)
            with contextlib.suppress(OSError):  # cache/ itself, unless plugins' caches stay
                (self.run_dir / TASK_CACHE).parent.rmdir()
        return self.results

    def _check_batch_sizes(self, backend: Any,
                           resume_state: dict[str, Any] | None = None) -> None:
        """Every stage still to train splits its global batch evenly over the processes;
        checked before anything trains (a fine-tuning batch that does not divide was
        found only after the whole pre-training)."""
        world = world_size_of(backend)
        for stage_name, stage in (("pretrain", self.cfg.pretrain),
                                  ("finetune", self.cfg.finetune)):
            done = resume_state["stage_steps"].get(stage_name, 0) if resume_state else 0
            if stage.steps > done and stage.batch_size % world:
                raise ConfigError(
                    f"{stage_name}.batch_size={stage.batch_size} must be a multiple of the "
                    f"{world} processes (each trains on an equal share of rows)")

    def _check_task_data(self, tasks: dict[str, Any],
                         resume_state: dict[str, Any] | None = None,
                         seen: set[str] | None = None) -> None:
        """Open every task split the run will still read and take its first example,
        before training anything: a task whose data cannot be read (a hub dataset not in
        the offline cache, an empty or malformed file) stops the run now, not after
        hours of pre-training when fine-tuning or evaluation first reads it. ``seen``
        (task, split, options) keys are skipped and the checked ones added
        (:func:`check_task_data` over many runs)."""
        cfg = self.cfg
        wanted: dict[tuple[str, str], Any] = {}
        for stage_name, stage in (("pretrain", cfg.pretrain), ("finetune", cfg.finetune)):
            done = resume_state["stage_steps"].get(stage_name, 0) if resume_state else 0
            if stage.steps > done:
                for name, task in self._stage_tasks(tasks, stage_name, stage).items():
                    wanted[name, "train"] = task
        if tasks and (cfg.eval.after_training or cfg.eval.best_checkpoint_per_task):
            for target in self._eval_targets(tasks):
                wanted[target.group, target.split] = target.task
        for (name, split), task in sorted(wanted.items(), key=lambda kv: kv[0]):
            if seen is not None:
                key = json.dumps([name, split, OmegaConf.to_container(cfg.tasks[name])],
                                 sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
            examples = iter(task.examples(split))
            try:
                first = next(examples, None)
            finally:
                close = getattr(examples, "close", None)
                if close is not None:
                    close()
            if first is None:
                raise DataError(f"task {name!r}: split {split!r} has no examples (checked "
                                "before training); check the task's data files or options")

    @contextlib.contextmanager
    def _evaluation_model(self, comps: Components, wanted: bool = True):
        """Within: ``comps.model`` is what rank 0 evaluates. Backends whose model rank 0
        cannot run alone (FSDP shards) offer ``evaluation_model(model)``, a collective that
        gives rank 0 a gathered copy; every rank enters this, and ``wanted`` is rank 0's
        decision (the other ranks do not hold the results it depends on)."""
        pick = getattr(comps.backend, "evaluation_model", None)
        world = world_size_of(comps.backend)
        if pick is None or world == 1:
            yield
            return
        import torch

        flag = torch.tensor([1.0 if (self.main and wanted) else 0.0])
        flag = comps.backend.all_reduce_sum(flag.to(comps.backend.device))
        if float(flag.sum()) == 0:
            yield
            return
        model = comps.model
        chosen = pick(model)
        if chosen is not None:
            comps.model = chosen
        try:
            yield
        finally:
            comps.model = model

    @staticmethod
    def _barrier(comps: Components) -> None:
        barrier = getattr(comps.backend, "barrier", None)
        if barrier is not None:
            barrier()

    # -- training -------------------------------------------------------------
    def _stream(self, comps: Components, stage_name: str, stage: Any,
                state: dict[str, Any] | None = None) -> data.Batches:
        """The stage's batch stream, a stateful iterator; ``state`` (what its ``state()``
        returned when a checkpoint was written) continues it from there.

        Pre-training reads the objective's examples, the configured downstream tasks
        (``pretrain.tasks``), or a mixture of both (multi-task training, P §3.5.2);
        fine-tuning reads the mixture of ``finetune.tasks`` (default: every task).
        """
        seed, stage_no = int(self.cfg.seed), (0 if stage_name == "pretrain" else 1)
        arch, vocab = comps.arch, comps.vocab
        tasks = self._stage_tasks(comps.tasks, stage_name, stage)
        unsupervised = stage_name == "pretrain" and bool(stage.unsupervised)
        if unsupervised and not tasks:
            examples = self._pretrain_examples(comps, stage, stage_no, state)
        else:
            sizes = {name: t.num_examples("train") for name, t in tasks.items()}
            label = str(self.cfg.corpus.name)
            if unsupervised:
                if label in tasks:
                    raise ConfigError(f"corpus name {label!r} is also a task name; rename one")
                sizes[label] = int(stage.unsupervised_size) or None
            mixer = self._build(self.cfg.mixer, "mixer")
            rates = self._mixing_rates(mixer, sizes, label if unsupervised else None)
            self._say(f"{stage_name} mixing rates ({self.cfg.mixer.name}): "
                      + ", ".join(f"{k} {v:.4f}" for k, v in sorted(rates.items())))
            self.results.setdefault("mixing_rates", {})[stage_name] = rates
            sub = (state or {}).get("tasks", {})
            caches = self._task_caches(comps, stage, tasks)
            streams: dict[str, Any] = {
                name: data.TaskStream(t, vocab, stage.inputs_length, stage.targets_length,
                                      data.seed_key(seed, "task", stage_no, i), name,
                                      sub.get(name), cache=caches[name])
                for i, (name, t) in enumerate(sorted(tasks.items()))}
            if unsupervised:
                streams[label] = self._pretrain_examples(comps, stage, stage_no,
                                                         sub.get(label))
            examples = data.MixtureStream(streams, rates,
                                          data.seed_key(seed, "mixture", stage_no), state)
        return data.Batches(
            examples,
            pack=lambda exs: arch.pack(exs, stage.inputs_length, stage.targets_length),
            featurize=lambda exs: arch.features(exs, stage.inputs_length, stage.targets_length,
                                                stage.pack, num_rows=stage.batch_size),
            batch_size=stage.batch_size,
            packed=stage.pack,
        )

    def _task_caches(self, comps: Components, stage: Any,
                     tasks: dict[str, Any]) -> dict[str, Path]:
        """Each task's token cache (:func:`data.build_task_cache`) under
        ``<run_dir>/cache/tasks/<inputs_length>x<targets_length>/``, removed when the run ends:
        tokenised once per run, not on every resume, and memory-mapped, so the processes
        of a multi-process run share one copy. Rank 0 builds them while the others wait."""
        root = self.run_dir / TASK_CACHE / f"{stage.inputs_length}x{stage.targets_length}"
        folders = {name: root / name for name in tasks}
        if world_size_of(comps.backend) > 1:
            if self.main:
                for name, task in sorted(tasks.items()):
                    data.build_task_cache(task, comps.vocab, stage.inputs_length,
                                          stage.targets_length, name, folders[name])
            self._barrier(comps)
        return folders

    @staticmethod
    def _mixing_rates(mixer: Any, sizes: dict[str, int | None],
                      corpus: str | None) -> dict[str, float]:
        """The mixer's rates; when the unsupervised ``corpus`` has a size
        (``pretrain.unsupervised_size`` > 0) and the mixer gives its unnormalised
        ``weights``, that size is the corpus's fixed weight beside the tasks' (K-capped,
        temperature-scaled) ones, as T5's ``rate_unsupervised`` (P §3.7: 710,000 for
        T5-Small, 2,620,000 for Base, ... beside tasks capped at K = 1M): the mixer's cap
        or temperature never applies to it."""
        fixed = sizes.get(corpus) if corpus is not None else None
        weigh = getattr(mixer, "weights", None)
        if not fixed or not callable(weigh):
            return mixer.rates(sizes)
        weights = dict(weigh({k: v for k, v in sizes.items() if k != corpus}))
        weights[corpus] = float(fixed)
        total = sum(weights.values())
        return {k: w / total for k, w in weights.items()}

    @staticmethod
    def _stage_tasks(tasks: dict[str, Any], stage_name: str, stage: Any) -> dict[str, Any]:
        """The downstream tasks a stage trains on (see ``pretrain.tasks``/``finetune.tasks``)."""
        names = list(stage.tasks)
        if stage_name == "pretrain":
            if names == ["all"] or "all" in names:
                names = list(tasks)
        elif not names:
            names = list(tasks)
        return {n: tasks[n] for n in sorted(set(names))}

    def _pretrain_examples(self, comps: Components, stage: Any, stage_no: int,
                           state: dict[str, Any] | None) -> Any:
        """The objective's examples over the corpus, resumable: through the objective's
        own ``resumable_examples`` when it has one, else by replaying the stream."""
        objective, label = comps.objective, self.cfg.corpus.name
        lengths = (stage.inputs_length, stage.targets_length)

        def open_docs(doc_state: dict[str, Any] | None) -> data.DocumentStream:
            self._documents = data.DocumentStream(comps.corpus, "train", comps.vocab, label,
                                                  doc_state, int(stage.max_tokens))
            return self._documents

        rng = np.random.default_rng(data.seed_key(int(self.cfg.seed), "objective", stage_no))
        if hasattr(objective, "resumable_examples"):
            return objective.resumable_examples(open_docs, *lengths, rng, state)
        return data.ReplayStream(lambda: objective.examples(open_docs(None), *lengths, rng), state)

    def _train_stage(self, comps: Components, stage_name: str, stage: Any, start: int,
                     done: int) -> None:
        import torch

        cfg = self.cfg
        model, backend = comps.model, comps.backend
        # schedules see the global step, so the stage ends at global step start + steps
        schedule = self._build(stage.schedule, "schedule", total_steps=start + stage.steps)
        strategy = None
        if stage_name == "finetune":
            strategy = self._finetune_strategy(model)
            if not done:  # a resumed stage has its reports in the restored results
                self._report_trainable(model, stage_name)
            if done:  # replay the strategy's schedule up to the resumed step
                for local in range(done):
                    strategy.update(model, local)
            if stage.reset_optimizer and done == 0:
                self.optimizer = self._make_optimizer(model)
            elif self._trainable(model) != self._optimized:  # parameters kept keep state
                self.optimizer = self._make_optimizer(model, keep=self.optimizer)
        optimizer = self.optimizer
        restart_count = bool(getattr(stage, "reset_optimizer", False))
        saved = self._data_states.get(stage_name) if done else None
        stream = self._stream(comps, stage_name, stage, saved)
        if done and saved is None:  # a checkpoint without a data position: replay and skip
            for _ in range(done):
                next(stream)
        self.global_step = start + done
        best = self.results.setdefault("best", {})
        stage_info = self.results["stages"].setdefault(stage_name, {})
        for key, value in (("steps", stage.steps), ("tokens", 0), ("seconds", 0.0)):
            stage_info.setdefault(key, value)
        z = float(cfg.loss.z_loss)
        world, rank = world_size_of(backend), rank_of(backend)  # (batch: _check_batch_sizes)
        progress = _progress(self.console if self.main else None, stage_name, stage.steps, done)
        t_last, tokens_since, loss_acc, loss_n = time.perf_counter(), 0, 0.0, 0
        window = self._log_windows.get(stage_name) if done else None
        if window:
            loss_acc, loss_n = float(window["loss_sum"]), int(window["count"])
        # loss.nonfinite=stop reads the steps' losses from the device only when it logs or
        # checkpoints (or every PENDING_LOSSES steps): no host read between a step's forward
        # and its backward, which would stall a GPU's queue each step and make XLA run the
        # forward twice (once for the loss, again inside the step's graph). A NaN still
        # stops the run before anything is written after it. skip must decide before the
        # update, so it reads every step's loss.
        lazy = cfg.loss.nonfinite == "stop"
        # (step number, [loss_sum, tokens]) not yet read; step N is the N-th training step
        # of the run, as metrics.jsonl numbers a logged line by the steps done
        pending: list[tuple[int, Any]] = []

        def read_pending() -> None:
            nonlocal loss_acc, loss_n
            for step, (loss_sum, tokens) in ((s, t.tolist()) for s, t in pending):
                token_loss = loss_sum / max(tokens, 1.0)
                if not math.isfinite(token_loss):
                    self._skip_nonfinite(stage_name, stage_info, token_loss, step)
                loss_acc += token_loss
                loss_n += 1
                stage_info.setdefault("first_loss", token_loss)
            pending.clear()
        with progress as bar:
            task_id = bar.add_task(stage_name, total=stage.steps, completed=done, loss=float("nan"),
                                   tps=0.0)
            for local in range(done, stage.steps):
                if strategy is not None and strategy.update(model, local):
                    self.optimizer = optimizer = self._make_optimizer(model, keep=optimizer)
                    self._trainable_changed(model)
                    self._report_trainable(model, stage_name, step=local)
                lr = float(schedule(self.global_step))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                    # optimizers that decay with the step (Adafactor) keep counting across
                    # stages and optimizer rebuilds, as Mesh TF's global step does
                    group["global_step"] = local if restart_count else self.global_step
                global_batch = next(stream)
                np_batch = self._rank_rows(global_batch, stage, world, rank)
                batch = backend.to_device(np_batch)
                backend.seed(step_seed(int(cfg.seed), rank, self.global_step))
                model.train()
                with backend.autocast():
                    out = model(batch)
                # the loss of the global batch: every rank divides by the global
                # denominator; DDP averages gradients over ranks, hence * world
                sums = torch.stack([out.loss_sum.detach().float(),
                                    torch.as_tensor(out.num_tokens).float()])
                if world > 1:
                    sums = backend.all_reduce_sum(sums)
                if cfg.loss.denominator == "constant":
                    denom = float(global_batch["decoder_target_tokens"].size)
                else:
                    denom = sums[1].clamp(min=1)
                loss = (out.loss_sum + z * out.z_loss_sum) / denom * world
                if lazy:
                    backend.step(loss, optimizer)
                    pending.append((self.global_step + 1, sums.detach()))
                else:
                    pending.append((self.global_step + 1, sums.detach()))
                    loss_sum, tokens = pending.pop()[1].tolist()
                    token_loss = loss_sum / max(tokens, 1.0)
                    if math.isfinite(token_loss):
                        backend.step(loss, optimizer)
                        loss_acc += token_loss
                        loss_n += 1
                        stage_info.setdefault("first_loss", token_loss)
                    else:  # the same decision on every rank: token_loss is the global one
                        self._skip_nonfinite(stage_name, stage_info, token_loss,
                                             self.global_step + 1)
                        optimizer.zero_grad(set_to_none=True)
                self.global_step += 1
                self.trained = True
                ntok = int(np.count_nonzero(global_batch["decoder_target_tokens"])
                           + np.count_nonzero(global_batch.get("encoder_input_tokens", 0)))
                tokens_since += ntok
                stage_info["tokens"] += ntok
                step_no = local + 1
                logs = step_no % stage.log_every == 0 or step_no == stage.steps
                every = stage.checkpoint_every
                saves = bool(every and step_no % every == 0) or step_no == stage.steps
                if logs or saves or len(pending) >= PENDING_LOSSES:
                    read_pending()
                if logs:
                    backend.sync()
                    now = time.perf_counter()
                    tps = tokens_since / max(now - t_last, 1e-9)
                    stage_info["seconds"] += now - t_last
                    if loss_n:  # a window of skipped steps only has no loss to report
                        mean_loss = loss_acc / loss_n
                        self.log.write({"stage": stage_name, "step": self.global_step,
                                        "stage_step": step_no, "loss": round(mean_loss, 6),
                                        "lr": lr, "tokens_per_s": round(tps, 1)})
                        stage_info["last_loss"] = mean_loss
                        bar.update(task_id, completed=step_no, loss=mean_loss, tps=tps)
                    t_last, tokens_since, loss_acc, loss_n = now, 0, 0.0, 0
                else:
                    bar.update(task_id, completed=step_no)
                if saves:
                    paused = time.perf_counter()
                    if self._evaluates_checkpoints(stage_name):
                        with self._evaluation_model(comps):
                            if self.main:
                                self._eval_checkpoint(comps, best)
                    if step_no == stage.steps and stage_name == "pretrain":
                        # before the stage's last checkpoint, whose results a run resumed
                        # from it (straight into fine-tuning) carries on with
                        self._report_corpus(comps, stage_info)
                    self._data_states[stage_name] = stream.state()
                    self._log_windows[stage_name] = {"loss_sum": loss_acc, "count": loss_n}
                    self._save(comps, optimizer, stage_name, step_no)
                    t_last += time.perf_counter() - paused  # tokens/s counts training only

    def _evaluates_checkpoints(self, stage_name: str) -> bool:
        """Whether this stage's checkpoints are evaluated (``best_checkpoint_per_task``):
        fine-tuning's, as the paper does; or, in a run without fine-tuning whose
        pre-training trains on the tasks (P Table 11's multi-task training), that
        stage's, whose best checkpoint per task the paper reports the same way."""
        cfg = self.cfg
        if not cfg.eval.best_checkpoint_per_task:
            return False
        if stage_name == "finetune":
            return True
        return cfg.finetune.steps <= 0 and len(cfg.pretrain.tasks) > 0

    def _report_corpus(self, comps: Components, stage_info: dict[str, Any]) -> None:
        """Pre-training's corpus figures in results.json: passes over the corpus and what
        the corpus skipped or filtered (e.g. the C4 rules' counts)."""
        if self._documents is None:  # supervised pre-training: the objective never ran
            return
        self._report_corpus_passes(stage_info)
        report = getattr(comps.corpus, "report", None)
        if report:
            stage_info["corpus"]["report"] = {str(k): int(v) for k, v in report.items()}

    def _skip_nonfinite(self, stage_name: str, stage_info: dict[str, Any],
                        token_loss: float, step: int) -> None:
        """A NaN/inf loss at ``step`` (the step-th of the run, 1-based as metrics.jsonl
        numbers them): stop (``loss.nonfinite=stop``, before
        anything is written after the last good checkpoint), or skip the step without an
        update and count it."""
        skipped = int(stage_info.get("skipped_steps", 0)) + 1
        limit = int(self.cfg.loss.max_skipped_steps)
        where = f"{stage_name} step {step}: loss is {token_loss}"
        if self.cfg.loss.nonfinite != "skip":
            raise NumericalError(f"{where}; stopping (checkpoints written so far are intact; "
                                 "loss.nonfinite=skip would skip such steps)")
        if skipped > limit:
            raise NumericalError(f"{where}; stopping: more than loss.max_skipped_steps={limit} "
                                 f"steps of {stage_name} skipped (checkpoints written so far "
                                 "are intact)")
        stage_info["skipped_steps"] = skipped
        self.log.write({"stage": stage_name, "step": step, "skipped": True,
                        "reason": f"loss is {token_loss}"})
        self._say(f"[yellow]{where}; step skipped ({skipped} of at most {limit})[/yellow]")

    def _report_corpus_passes(self, stage_info: dict[str, Any]) -> None:
        """How many times pre-training read its corpus (P Table 9's "repeats"), counting
        documents the objective read ahead into its current block but has not yet turned
        into training examples."""
        docs = self._documents
        stage_info["corpus"] = {"max_tokens": docs.max_tokens or None,
                                "tokens_per_pass": docs.pass_tokens,
                                "passes": round(docs.passes, 4)}
        budget = f"its {docs.max_tokens:,}-token budget" if docs.max_tokens else "the corpus"
        if docs.pass_tokens:
            self._say(f"pre-training read {budget} {docs.passes:.2f} times "
                      f"({docs.pass_tokens:,} tokens per pass)")
        else:
            self._say(f"pre-training read less than one pass over {budget}")

    @staticmethod
    def _rank_rows(batch: dict[str, Any], stage: Any, world: int, rank: int) -> dict[str, Any]:
        """This rank's rows of the global batch (every rank builds the same batch)."""
        if world == 1:
            return batch
        rows = stage.batch_size // world
        return {k: v[rank * rows:(rank + 1) * rows]
                if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == stage.batch_size else v
                for k, v in batch.items()}

    def _make_optimizer(self, model: Any, keep: Any = None) -> Any:
        """A fresh optimizer over the trainable parameters; with ``keep``, parameters that
        were already being optimised keep their state (e.g. when gradual unfreezing adds
        a block, the blocks above it continue with their Adafactor statistics)."""
        factory = self._build(self.cfg.optimizer, "optimizer")
        self._optimized = self._trainable(model)
        optimizer = factory.create([p for p in model.parameters() if p.requires_grad])
        if keep is not None:
            for param, state in keep.state.items():
                if param.requires_grad:
                    optimizer.state[param] = state
        return optimizer

    def _finetune_strategy(self, model: Any) -> Any:
        """The fine-tuning strategy plugin, set up on ``model`` once (it may add modules,
        so a checkpoint written during fine-tuning is loaded after this)."""
        if getattr(self, "_strategy", None) is None:
            stage = self.cfg.finetune
            self._strategy = self._build(stage.strategy, "finetune")
            self._strategy.setup(model, int(stage.steps))
            self._trainable_changed(model)
        return self._strategy

    def _trainable_changed(self, model: Any) -> None:
        hook = getattr(self.comps.backend, "trainable_changed", None) if self.comps else None
        if hook is not None:  # e.g. DDP fixes its parameter list when built
            hook(model)

    def _report_trainable(self, model: Any, stage_name: str, step: int | None = None) -> None:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        info = self.results["stages"].setdefault(stage_name, {})
        info.setdefault("trainable_parameters", []).append(
            {"step": 0 if step is None else int(step), "trainable": trainable, "total": total})
        where = "" if step is None else f" from step {step}"
        self._say(f"{stage_name} ({self.cfg.finetune.strategy.name}){where}: {trainable:,} of "
                  f"{total:,} parameters train ({100.0 * trainable / max(total, 1):.2f}%)")

    @staticmethod
    def _trainable(model: Any) -> tuple[str, ...]:
        return tuple(n for n, p in model.named_parameters() if p.requires_grad)

    # -- checkpoints ----------------------------------------------------------
    def _save(self, comps: Components, optimizer: Any, stage_name: str, step_no: int) -> None:
        stage_steps = dict(self.results.get("_stage_steps", {}))
        stage_steps[stage_name] = step_no
        self.results["_stage_steps"] = stage_steps
        state = {"step": self.global_step, "stage": stage_name, "stage_steps": stage_steps,
                 "results": self.results, "data": self._data_states,
                 "log_window": self._log_windows}
        proto = getattr(comps.vocab, "model_proto", None)
        if isinstance(proto, bytes):  # which vocabulary the ids mean (t5k eval ensembles)
            state["vocabulary_sha256"] = hashlib.sha256(proto).hexdigest()
        trainer = {"optimizer": optimizer.state_dict(), "rng": comps.backend.rng_state()}
        scaler = getattr(comps.backend, "loss_scaler_state", None)
        if scaler is not None and scaler() is not None:  # fp16 loss scaling: scale, tracker
            trainer["loss_scaler"] = scaler()
        # every rank: device tensors -> host copies; sharded (FSDP) tensors are gathered
        # by collectives, so these two calls happen on all ranks, the write on rank 0
        to_host = getattr(comps.backend, "to_host", None)
        if to_host is not None:
            trainer = to_host(trainer)
        model_state = comps.model.state_dict()
        if self.main:
            self._check_finite_weights(model_state, stage_name)
            ckpt.save(self.ckpt_dir, self.global_step, model_state, trainer, state)
            protect = {int(s) for s in self.results.get("best_step", {}).values()}
            ckpt.prune(self.ckpt_dir, int(self.cfg.keep_checkpoints), protect)
        self._barrier(comps)  # no rank runs ahead of a checkpoint that may be resumed

    def _check_finite_weights(self, model_state: dict[str, Any], stage_name: str) -> None:
        """Stop before writing a checkpoint whose weights are not finite: a finite loss
        can still give a NaN update (a learning rate far too large), which the loss check
        sees only one step later, after this checkpoint would have been written (and, with
        loss.nonfinite=skip, every later step skipped over NaN weights)."""
        import torch

        for name, value in model_state.items():
            if torch.is_floating_point(value) and not bool(torch.isfinite(value).all()):
                raise NumericalError(
                    f"{stage_name} step {self.global_step}: parameter {name} is not finite "
                    "after the update (check the learning rate); stopping before its "
                    "checkpoint (checkpoints written so far are intact)")

    def _restore(self, comps: Components) -> dict[str, Any] | None:
        if self.main:
            for name in ckpt.remove_temporaries(self.ckpt_dir):
                self._say(f"resume: removed {name}, an unfinished checkpoint write")
        path = ckpt.latest_valid(self.ckpt_dir)
        if path is None:
            self._say("resume: no valid checkpoint yet, starting from the beginning")
            return None
        model_state, trainer, state = ckpt.load(path)
        done = state.get("stage_steps", {}).get("finetune")
        if done is not None:  # the strategy may have added modules or frozen some
            strategy = self._finetune_strategy(comps.model)
            for local in range(int(done)):  # its trainable set at the resumed step
                strategy.update(comps.model, local)
        comps.model.load_state_dict(model_state)
        self.global_step = int(state["step"])
        self._data_states = dict(state.get("data", {}))
        self._log_windows = dict(state.get("log_window", {}))
        self._say(f"resume: continuing from {path.name} ({state['stage']})")
        return {**state, "optimizer": trainer["optimizer"], "rng": trainer["rng"],
                "loss_scaler": trainer.get("loss_scaler")}

    # -- evaluation -----------------------------------------------------------
    def _eval_checkpoint(self, comps: Components, best: dict[str, Any]) -> None:
        """Evaluate this checkpoint and keep, per selection group, the best one's scores
        (``best_checkpoint_per_task``), as T5's ``eval_utils.metric_group_max`` picks
        them: a group's score is the mean of its results' metrics, NaN ones skipped (a
        group with no number ranks below every number, so an early NaN -- STS-B's
        correlations of constant predictions -- never sticks); ties keep the earlier
        checkpoint. A task's several evaluation splits (MNLI matched / mismatched) are
        one group, so both come from one checkpoint; every other task is its own."""
        scores = self.evaluate(comps)
        self.log.write({"stage": "eval", "step": self.global_step, "eval": scores})
        best_step = self.results.setdefault("best_step", {})
        members: dict[str, list[str]] = {}
        for target in self._eval_targets(comps.tasks):
            if target.result in scores:
                members.setdefault(target.group, []).append(target.result)
        for group, results in members.items():
            value = _selection_score([v for r in results for v in scores[r].values()])
            if group not in best or value > best[group]:
                best[group] = value
                for result in results:
                    best_step[result] = self.global_step
                    self.results["eval"][result] = scores[result]

    def evaluate(self, comps: Components) -> dict[str, dict[str, float]]:
        """Greedy-decode every task's evaluation split and score it (paper §3.1.2)."""
        comps.model.eval()
        out: dict[str, dict[str, float]] = {}
        for name, task, split, _group in self._eval_targets(comps.tasks):
            examples = self._eval_examples(task, split)
            preds = self.predict(comps, [ex["inputs"] for ex in examples])
            out[name] = self._score(task, preds, examples)
            self._write_predictions(name, examples, preds)
        comps.model.train()
        return out

    def _eval_targets(self, tasks: dict[str, Any]) -> list[EvalTarget]:
        """What to evaluate, as :class:`EvalTarget`. A task may evaluate several splits
        under their own result names (``eval_splits``, e.g. MNLI matched / mismatched)
        when ``eval.split`` is the default "validation"; the task's name is then their
        selection group."""
        split = str(self.cfg.eval.split)
        chosen = set(self.cfg.eval.tasks or tasks)
        out = []
        for name, task in sorted(tasks.items()):
            if name not in chosen:
                continue
            named = getattr(task, "eval_splits", None) if split == "validation" else None
            for result, task_split in (dict(named) if named else {name: split}).items():
                out.append(EvalTarget(result, task, task_split, name))
        return out

    def _write_predictions(self, task: str, examples: list[dict[str, Any]],
                           preds: list[str]) -> None:
        """``predictions/step_N/<task>.jsonl``: what was decoded, beside the reference."""
        folder = self.predictions_dir or self.run_dir / "predictions" / f"step_{self.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = (json.dumps({"inputs": ex["inputs"], "targets": ex["targets"], "prediction": p})
                 for ex, p in zip(examples, preds, strict=True))
        ckpt.atomic_write_text(folder / f"{task}.jsonl", "\n".join(lines) + "\n")

    def _eval_examples(self, task: Any, split: str | None = None) -> list[dict[str, Any]]:
        """The split's examples, the first ``eval.max_examples`` of them if that is set.

        The cut never splits a group of examples scored together (an example's ``"group"``
        key: a MultiRC question's answers): it is moved on to the group's end, since the
        question's exact match over some of its answers is not the metric.
        """
        split = split or str(self.cfg.eval.split)
        examples = list(task.examples(split))
        if not examples:  # e.g. a task file whose every row was malformed (and skipped)
            raise DataError(f"{getattr(task, 'name', type(task).__name__)}: split {split!r} "
                            "has no examples to evaluate; check the task's data files")
        limit = int(self.cfg.eval.max_examples)
        if not limit or limit >= len(examples):
            return examples
        group = examples[limit - 1].get("group")
        while group is not None and limit < len(examples) and examples[limit].get("group") == group:
            limit += 1
        return examples[:limit]

    def _score(self, task: Any, predictions: list[str], examples: list[dict[str, Any]]
               ) -> dict[str, float]:
        """Postprocess predictions and references and run the task's evaluators."""
        post = [task.postprocess(p, ex) for p, ex in zip(predictions, examples, strict=True)]
        refs = [task.reference(ex) for ex in examples]
        scores: dict[str, float] = {}
        for ev_name in task.evaluators:
            if ev_name not in self._evaluators:
                self._evaluators[ev_name] = self._build({"name": ev_name}, "evaluator")
            scores.update({k: float(v) for k, v in self._evaluators[ev_name](post, refs).items()})
        return scores

    def predict(self, comps: Components, inputs: list[str]) -> list[str]:
        """Decode ``inputs`` per ``eval``: greedy or beam search, one model or an ensemble.

        Greedy decoding of one model goes through the model's own ``generate``; beams and
        ensembles through :func:`t5kernel.decoding.generate`, which needs models that
        offer ``incremental_decoder``. A backend with ``static_shapes = True`` (xla) gets
        fixed-shape decoding (``decoding.generate(static_shapes=True)``, its ``sync`` once
        per step) and chunks whose row count is ``eval.batch_size`` or a power of two below
        it (a small last chunk or evaluation set is not padded to the full batch): the
        chunk is filled up with copies of its last input (they end when it ends, so they
        add no steps) whose outputs are dropped. A backend with ``compile_decoding = True``
        gets the same chunks and ``decoding.generate(compile=True)`` (static shapes, the
        decoder step through ``torch.compile``: one graph per chunk shape). The
        predictions are the same either way.
        """
        import torch

        from t5kernel import decoding

        cfg, vocab = self.cfg, comps.vocab
        models = self.members or [comps.model]
        search = {"num_beams": int(cfg.eval.num_beams), "alpha": float(cfg.eval.alpha),
                  "length_penalty": str(cfg.eval.length_penalty),
                  "reduce": str(cfg.eval.ensemble_reduce)}
        compiled = bool(getattr(comps.backend, "compile_decoding", False))
        static = bool(getattr(comps.backend, "static_shapes", False))
        fixed = {"static_shapes": True, "sync": comps.backend.sync} if static else {}
        if compiled:
            fixed["compile"] = True
        few_shapes = static or compiled  # both make one graph per chunk shape
        length, size = int(cfg.finetune.inputs_length), int(cfg.eval.batch_size)
        preds: list[str] = []
        with torch.no_grad(), comps.backend.autocast():
            for i in range(0, len(inputs), size):
                texts = inputs[i: i + size]
                real = len(texts)
                if few_shapes:  # rows: a power of two up to eval.batch_size
                    rows = min(size, 1 << max(real - 1, 0).bit_length())
                    texts = texts + [texts[-1]] * (rows - real)
                chunk = [data.encode_example({"inputs": s, "targets": ""}, vocab, length, 2)
                         for s in texts]
                feats = comps.arch.features(chunk, length, 2, False)
                feats = {k: v for k, v in feats.items() if k.startswith("encoder")}
                feats = comps.backend.to_device(feats)
                if len(models) == 1 and search["num_beams"] == 1 and not compiled:
                    ids = models[0].generate(feats, int(cfg.eval.max_decode_length), **fixed)
                else:
                    ids = decoding.generate(models, feats, int(cfg.eval.max_decode_length),
                                            **search, **fixed)
                # to the host before slicing: on xla a device-side slice of each generated
                # length would compile a graph of its own
                preds.extend(vocab.decode(row) for row in ids.cpu()[:real].tolist())
        return preds

    def _finalize_results(self, comps: Components) -> None:
        self.results.pop("_stage_steps", None)
        self.results.pop("best", None)
        evals = self.results["eval"]
        if evals:
            self.results["averages"] = {"all_tasks": float(np.mean(
                [_task_score(m) for m in evals.values()]))}
            self.results["averages"].update(self._benchmark_averages(comps, evals))
        if self.cfg.eval.after_training:  # a run that scores nothing needs no baselines
            self.results["baselines"] = self._baselines(comps)
        self.results["model"] = comps.arch.describe(comps.vocab.vocab_size)

    def _benchmark_averages(self, comps: Components, evals: dict[str, Any]) -> dict[str, Any]:
        """The paper's benchmark averages (GLUE, SuperGLUE, ...) from the evaluator plugins
        named in ``eval.averages`` that offer ``aggregate(results, benchmarks)``; tasks
        declare their benchmark with a ``benchmark`` attribute."""
        benchmarks = {}
        for name, task, _split, _group in self._eval_targets(comps.tasks):
            if getattr(task, "benchmark", None):
                benchmarks[name] = str(task.benchmark)
        out: dict[str, Any] = {}
        if not benchmarks:
            return out
        for plugin in self.cfg.eval.averages:
            aggregator = self._build({"name": plugin}, "evaluator")
            if not hasattr(aggregator, "aggregate"):
                raise ConfigError(f"eval.averages: evaluator {plugin!r} has no aggregate()")
            out.update(aggregator.aggregate(evals, benchmarks))
        return out

    def _baselines(self, comps: Components) -> dict[str, Any]:
        """Trivial baselines the model must beat: copy the input; always the majority target."""
        from collections import Counter

        out: dict[str, Any] = {}
        for name, task, split, _group in self._eval_targets(comps.tasks):
            examples = self._eval_examples(task, split)
            out[name] = {
                "copy_input": self._score(task, [ex["inputs"] for ex in examples], examples)}
            if "train" in getattr(task, "splits", ("train",)):  # eval-only tasks have none
                majority = Counter(ex["targets"] for ex in task.examples("train")
                                   ).most_common(1)[0][0]
                out[name]["majority_target"] = self._score(task, [majority] * len(examples),
                                                           examples)
        return out

    def _say(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg)


def evaluate_checkpoints(cfg: DictConfig, registry: Any, run_dir: Path,
                         checkpoints: list[Path], name: str | None = None,
                         console: Any = None) -> tuple[Path, dict[str, Any]]:
    """Re-evaluate a finished run: decode its tasks with the weights of ``checkpoints``.

    One checkpoint: that model, decoded per ``cfg.eval`` (e.g. ``eval.num_beams=4``).
    Several: an ensemble (P §3.6 Table 13 "4x ensembled"): each member is built from the
    run's architecture and vocabulary and loaded strictly, so the checkpoints must come
    from runs of the same model layout and vocabulary; their per-step distributions are
    combined per ``eval.ensemble_reduce``. No checkpoint given: the run's latest valid
    one. Writes ``<run_dir>/evals/<name>/`` (results.json, config.yaml, predictions/).
    """
    run_dir = Path(run_dir)
    checkpoints = resolve_checkpoints(run_dir, checkpoints, cfg)
    if name is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        beams = int(cfg.eval.num_beams)
        name = (f"{stamp}-{'greedy' if beams == 1 else f'beam{beams}'}"
                + (f"-ensemble{len(checkpoints)}" if len(checkpoints) > 1 else ""))
    out_dir = run_dir / "evals" / name
    if out_dir.exists():
        raise RunDirError(f"{out_dir} already exists; choose another --name")
    runner = Runner(cfg, registry, run_dir, console)
    comps = runner.build(training=False)
    if not runner._eval_targets(comps.tasks):
        raise ConfigError(f"{run_dir} has no tasks to evaluate (eval.tasks / tasks); add "
                          "some, e.g. tasks.demo_acceptability={} or tasks.glue_cola={...}")
    load_members(runner, comps, checkpoints)
    # the folder appears complete or not at all: an interrupted or failed evaluation
    # leaves nothing that would block its name
    with ckpt.atomic_folder(out_dir) as work:
        runner.predictions_dir = work / "predictions"
        scores = runner.evaluate(comps)
        averages: dict[str, Any] = {}
        if scores:  # the run's summary: all tasks, and the paper's benchmark averages
            averages = {"all_tasks": float(np.mean([_task_score(m) for m in scores.values()])),
                        **runner._benchmark_averages(comps, scores)}
        results = {
            "eval": scores,
            "averages": averages,
            "checkpoints": [str(c) for c in checkpoints],
            "decoding": {k: OmegaConf.to_container(cfg.eval)[k] for k in (
                "num_beams", "alpha", "length_penalty", "ensemble_reduce",
                "max_decode_length")},
        }
        ckpt.atomic_write_text(work / "config.yaml", OmegaConf.to_yaml(cfg))
        ckpt.atomic_write_text(work / "results.json",
                               jsonout.dumps(results, indent=1, sort_keys=True))
    return out_dir, results


def check_task_data(cfg: DictConfig, registry: Any, seen: set[str] | None = None) -> None:
    """Take the first example of every task split a run of ``cfg`` would read, without
    making or writing a run directory (``t5k sweep`` checks all its rows' data before the
    first row trains); ``seen`` as in :meth:`Runner._check_task_data`."""
    runner = Runner(cfg, registry, Path(cfg.run_dir or "."))
    runner.main = False  # the plugins get no run directory to write into
    runner._check_task_data(runner._build_tasks(), seen=seen)


def resolve_checkpoints(run_dir: Path, checkpoints: list[Path], cfg: DictConfig
                        ) -> list[Path]:
    """The checkpoints to decode with: those given, else the run's latest valid one;
    refused when one comes from a run with another vocabulary."""
    if not checkpoints:
        latest = ckpt.latest_valid(run_dir / "checkpoints")
        if latest is None:
            raise RunDirError(f"{run_dir} has no valid checkpoint to decode with; pass "
                              "--checkpoint")
        checkpoints = [latest]
    checkpoints = [Path(c) for c in checkpoints]
    missing = [c for c in checkpoints if not c.is_dir()]
    if missing:
        raise RunDirError(f"checkpoint {missing[0]} does not exist (or is not a folder)")
    _check_same_vocabulary(run_dir, checkpoints, cfg.vocabulary.get("model_file"))
    return checkpoints


def load_members(runner: Runner, comps: Components, checkpoints: list[Path]) -> None:
    """Load ``checkpoints`` into the models ``runner.predict`` decodes with: the first
    into ``comps.model``, each other into a model of its own (an ensemble). Each is built
    from the run's architecture and vocabulary and loaded strictly; a checkpoint written
    while fine-tuning gets the strategy's extra modules (adapters) first."""
    cfg = runner.cfg
    members = []
    for i, path in enumerate(checkpoints):
        model = comps.model if i == 0 else comps.backend.prepare(
            comps.arch.build(comps.vocab.vocab_size))
        if _written_during_finetuning(path):  # e.g. adapters: add them before loading
            runner._build(cfg.finetune.strategy, "finetune").setup(model, int(cfg.finetune.steps))
        ckpt.load_model_weights(model, path)
        members.append(model)
    runner.members = members


def _written_during_finetuning(path: Path) -> bool:
    state = Path(path) / "state.json"
    try:
        return "finetune" in json.loads(state.read_text()).get("stage_steps", {})
    except (OSError, ValueError, AttributeError):
        return False


def _check_same_vocabulary(run_dir: Path, checkpoints: list[Path],
                           model_file: str | None = None,
                           advice: str = "ensemble members must share one vocabulary") -> None:
    """Refuse checkpoints of runs whose trained vocabulary file differs from this run's.

    Two SentencePiece models of the same size have the same embedding shape, so a strict
    weight load cannot tell them apart; ids would silently mean different pieces.
    """
    own = run_dir / "vocab" / "spm.model"
    if not own.is_file() and model_file:
        own = Path(model_file)
    if not own.is_file():
        return
    digest = ckpt.sha256_file(own)
    for path in checkpoints:
        theirs, where = _vocabulary_digest(Path(path))
        if theirs is not None and theirs != digest:
            raise RunDirError(
                f"checkpoint {path} comes from a run with a different vocabulary "
                f"({where} differs from {own}); {advice}")


def _vocabulary_digest(checkpoint: Path) -> tuple[str | None, str]:
    """The sha256 of the vocabulary ``checkpoint`` was trained with: recorded in its
    state.json (checkpoints written since it is), else its run's ``vocab/spm.model``."""
    try:
        recorded = json.loads((checkpoint / "state.json").read_text()).get("vocabulary_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, str):
        return recorded, f"the vocabulary recorded in {checkpoint / 'state.json'}"
    other = checkpoint.resolve().parent.parent / "vocab" / "spm.model"
    return (ckpt.sha256_file(other) if other.is_file() else None), str(other)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of one training step's random draws (dropout masks) on one process.

    Drawn afresh each step from (run seed, rank, global step) (:func:`data.seed_key`,
    apart from the data's streams): every process of a
    multi-process run draws its own masks for its own rows (seeded alike, the ranks drew
    identical masks, so rows i and i + B/W of the global batch shared theirs), and a
    resumed run draws exactly what the uninterrupted one did, whatever ran in between
    (evaluating checkpoints, say, or a once-per-process kernel timing in the first
    decode), so training is the same whether or not its checkpoints are evaluated.
    """
    key = data.seed_key(seed, "dropout", rank, step)
    state = np.random.SeedSequence(key).generate_state(2)
    return int(state[0]) << 31 | int(state[1]) >> 1  # 63 bits: any backend's seed type


def _selection_score(values: list[float]) -> float:
    """A selection group's score (:meth:`Runner._eval_checkpoint`): the mean of its
    metric values without the NaN ones, -inf when none is a number."""
    numbers = [float(v) for v in values if not math.isnan(float(v))]
    return float(np.mean(numbers)) if numbers else float("-inf")


def _task_score(metrics: dict[str, float]) -> float:
    """A task's single score: the mean of its metrics (T5's rule for multi-metric tasks)."""
    return float(np.mean(list(metrics.values()))) if metrics else float("-inf")


def _progress(console: Any, stage: str, total: int, done: int) -> Any:
    if console is None or os.environ.get("T5K_NO_PROGRESS"):
        return _NullProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[tps]:,.0f} tok/s"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )


class _NullProgress(contextlib.AbstractContextManager):
    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def update(self, *a: Any, **k: Any) -> None:
        return None


def _resumed_after_restart(cfg: DictConfig, console: Any) -> DictConfig:
    """``cfg`` with ``resume=true`` when torchrun restarted the workers
    (``--max-restarts``: ``TORCHELASTIC_RESTART_COUNT`` > 0) and the run directory holds
    the run: the restarted command is the first one, which would be refused as "already
    holds this run". A run directory of another run is still refused by prepare_run_dir."""
    try:
        restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    except ValueError:
        return cfg
    if restarts <= 0 or cfg.resume or not cfg.run_dir:
        return cfg
    if not (Path(cfg.run_dir) / "config.yaml").is_file():
        return cfg  # the failure came before the run directory was made: start
    if console is not None and launch_rank() == 0:
        console.print(f"restart {restarts} (torchrun): resuming {cfg.run_dir}")
    resumed = OmegaConf.merge(cfg, {"resume": True})
    assert isinstance(resumed, DictConfig)
    return resumed


@contextlib.contextmanager
def _stopped_by_launcher(launched: bool):
    """Within: SIGTERM raises StoppedError, when ``launched`` by torchrun (which sends it
    to the other processes when one fails), so rank 0 still removes a run directory it
    made before anything trained instead of leaving one that blocks the corrected command."""
    import signal
    import threading

    if not launched or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise StoppedError("stopped by the launcher (SIGTERM): another process of the run "
                           "failed; its error is above")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(cfg: DictConfig, registry: Any, console: Any = None) -> tuple[Path, dict[str, Any]]:
    """Prepare the run directory and run the validated config in it.

    Launched as several processes (torchrun), rank 0 alone creates and writes the run
    directory, which therefore has to be named (``run_dir=``); the others join when the
    backend sets up the process group.
    """
    from t5kernel.distributed import launch_world_size

    cfg = _resumed_after_restart(cfg, console)
    existed = bool(cfg.run_dir) and Path(cfg.run_dir).exists()
    if launch_world_size() > 1:
        if not cfg.run_dir:
            raise ConfigError("a multi-process run needs run_dir=<folder> (every rank must "
                              "agree on it)")
        run_dir = prepare_run_dir(cfg) if launch_rank() == 0 else Path(cfg.run_dir)
        if launch_rank() != 0:
            console = None
    else:
        run_dir = prepare_run_dir(cfg)
    fresh = not cfg.resume and launch_rank() == 0
    runner = Runner(cfg, registry, run_dir, console)
    try:
        with _stopped_by_launcher(launch_world_size() > 1):
            return run_dir, runner.run()
    except T5KError:
        # a run refused before it trained anything (a backend that cannot run here, a
        # bad plugin option found at build time) leaves no half-made run directory behind
        # that would block the corrected command; a run that trained a step is kept (its
        # metrics.jsonl shows what went wrong, e.g. a diverging loss), as is one with
        # checkpoints
        if fresh and not runner.trained and not (run_dir / "checkpoints").exists():
            import shutil

            if existed:  # an empty folder the user made: keep the folder itself
                for child in run_dir.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
        raise
