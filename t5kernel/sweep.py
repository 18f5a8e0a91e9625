"""``t5k sweep TABLE_DIR [--scale S] [--out DIR] [--rows A,B] [key=value ...]``: one table
of the paper, every row run at a chosen scale, printed beside the paper's numbers.

A table folder (``configs/paper/tNN_topic/``) holds ``table.yaml`` (title, paper table
number, columns, row order) and one YAML per row with only the row's difference from the
folder's parent ``baseline.yaml``, plus ``paper:`` metadata: the row label, the paper's
scores, and the changes that must stay *relative* to the scale (``multiply``,
``model_size``, ``repeats``). ``scales/<scale>.yaml`` beside the baseline sets steps,
batch, lengths and evaluation caps together, and its ``sizes`` the model of each size
step (1x, 2x, 4x).

A row's config is ``baseline <- scale <- row`` (later files win), then its relative
metadata, then the command's ``key=value`` overrides. How it runs follows the paper's
procedure (P §3.1.2, §2.3): pre-train once, then fine-tune a copy of the pre-trained
model (weights, optimizer state and step counter, exactly as one run that continued)
separately on each benchmark group of ``paper.finetune_groups`` — GLUE and SuperGLUE
each as the concatenation of their tasks — and read each group's columns from its own
run. Rows without groups (multi-task training) are one run. ``paper.leave_one_out``
pre-trains once per group on the mixture without that group's tasks (P Table 12).

Every run has its own folder under the sweep folder, so an interrupted sweep resumes:
finished runs are kept, unfinished ones continue from their last checkpoint. The table
is printed and written as ``table.md`` and ``table.csv`` (our score, paper's score per
column), with the paper's marking: the best score of each column in bold together with
every score within two standard deviations of it (the baseline's spread over 10 runs,
P Table 1, §3.1.5), ★ on the baseline row.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from t5kernel import checkpoint as ckpt
from t5kernel import jsonout
from t5kernel.errors import ConfigError, RunDirError, T5KError

#: the paper's summary columns (P Table 1 onwards) and the baseline's standard deviation
#: over 10 runs (P Table 1), the scale of "within two standard deviations"
PAPER_STD = {"GLUE": 0.235, "CNNDM": 0.065, "SQuAD": 0.343, "SGLUE": 0.416, "EnDe": 0.112,
             "EnFr": 0.090, "EnRo": 0.108}
#: where scale presets live, relative to the baseline's folder
SCALES_DIR = "scales"
SCALES = ("paper", "small", "tiny")
#: metadata keys a row may hold under ``paper:``
ROW_META = {"row", "star", "scores", "multiply", "model_size", "repeats", "finetune_groups",
            "leave_one_out", "ensemble", "note", "scale_with_inputs", "targets_from_objective",
            "finetune_targets_length",
            # descriptive only: the paper's other columns and facts about the row
            "std", "runs", "params", "flops", "corpus_size", "tokens"}
#: the inputs length at which ``paper.scale_with_inputs`` values are the paper's
PAPER_INPUTS_LENGTH = 512


@dataclass
class Row:
    name: str
    path: Path
    label: str
    star: bool
    scores: dict[str, float]
    meta: dict[str, Any]


@dataclass
class Table:
    dir: Path
    title: str
    number: Any
    columns: list[str]
    rows: list[Row]
    baseline: Path
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _load_yaml(path: Path) -> DictConfig:
    try:
        loaded = OmegaConf.load(path)
    except Exception as exc:  # yaml / omegaconf parse errors: one line naming the file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: must hold a mapping at top level")
    return loaded


def load_table(table_dir: Path) -> Table:
    """The table in ``table_dir`` with its rows in the paper's order."""
    table_dir = Path(table_dir)
    spec_path = table_dir / "table.yaml"
    if not spec_path.is_file():
        raise ConfigError(f"{table_dir} is not a paper table folder (no table.yaml); tables "
                          "live in configs/paper/tNN_*/")
    spec = OmegaConf.to_container(_load_yaml(spec_path), resolve=False)
    for key in ("title", "columns", "rows"):
        if key not in spec:
            raise ConfigError(f"{spec_path}: missing '{key}'")
    baseline = (table_dir / str(spec.get("base", "../baseline.yaml"))).resolve()
    if not baseline.is_file():
        raise ConfigError(f"{spec_path}: its baseline {baseline} does not exist")
    rows = []
    for name in spec["rows"]:
        path = table_dir / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"{spec_path}: row {name!r} has no file {path.name}")
        meta = OmegaConf.to_container(_load_yaml(path), resolve=False).get("paper") or {}
        unknown = set(meta) - ROW_META
        if unknown:
            raise ConfigError(f"{path}: unknown paper.{sorted(unknown)[0]}; allowed: "
                              f"{', '.join(sorted(ROW_META))}")
        rows.append(Row(name=str(name), path=path, label=str(meta.get("row", name)),
                        star=bool(meta.get("star", False)),
                        scores={str(k): float(v) for k, v in (meta.get("scores") or {}).items()},
                        meta=meta))
    return Table(dir=table_dir, title=str(spec["title"]), number=spec.get("table"),
                 columns=[str(c) for c in spec["columns"]], rows=rows, baseline=baseline,
                 notes=str(spec.get("notes", "") or ""),
                 extra={k: v for k, v in spec.items()
                        if k not in ("title", "table", "columns", "rows", "notes", "base")})


# ------------------------------------------------------------------------ composing
def _scale_parts(table: Table, scale: str) -> tuple[Path, dict[str, Any]]:
    path = table.baseline.parent / SCALES_DIR / f"{scale}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in (table.baseline.parent / SCALES_DIR).glob("*.yaml"))
        raise ConfigError(f"--scale {scale!r}: no {path}; available: {', '.join(have) or '-'}")
    data = OmegaConf.to_container(_load_yaml(path), resolve=False)
    return path, dict(data.pop("sizes", None) or {})


def _without_meta(path: Path, out: Path, drop: tuple[str, ...]) -> Path:
    """A copy of the YAML ``path`` without the top-level keys ``drop`` (metadata the run
    config does not hold), written to ``out``."""
    data = OmegaConf.to_container(_load_yaml(path), resolve=False)
    for key in drop:
        data.pop(key, None)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_text(out, OmegaConf.to_yaml(OmegaConf.create(data)))
    return out


def _flatten(prefix: str, value: Any) -> list[str]:
    if isinstance(value, dict):
        return [o for k, v in value.items() for o in _flatten(f"{prefix}.{k}", v)]
    return [f"{prefix}={json.dumps(value)}"]  # JSON literals read back as the same values


def row_config(table: Table, row: Row, scale: str, overrides: list[str], registry: Any,
               parts_dir: Path) -> tuple[DictConfig, dict[str, Any]]:
    """The validated run config of ``row`` at ``scale`` and its ``paper`` metadata
    (the baseline's, updated by the row's)."""
    from t5kernel.config import compose, validate

    scale_path, sizes = _scale_parts(table, scale)
    files = [_without_meta(table.baseline, parts_dir / "baseline.yaml", ("paper",)),
             _without_meta(scale_path, parts_dir / "scale.yaml", ("sizes", "paper")),
             _without_meta(row.path, parts_dir / "row.yaml", ("paper",))]
    base_data = OmegaConf.to_container(_load_yaml(table.baseline), resolve=False)
    meta = {**(base_data.get("paper") or {}), **row.meta}
    # a row that changes the architecture (P Table 2) keeps the baseline's other model
    # options: composing does that (t5kernel.config._replace_plugin_sections)
    first = compose(files, list(overrides), registry)
    derived = _relative_changes(first, row, meta, sizes, scale)
    if meta.get("targets_from_objective"):
        derived.append(f"pretrain.targets_length={_objective_targets_length(first, row, registry)}")
    cfg = validate(compose(files, [*derived, *overrides], registry), registry)
    return cfg, meta


def _objective_targets_length(cfg: DictConfig, row: Row, registry: Any) -> int:
    """``paper.targets_from_objective``: the targets length the row's objective derives
    for the scale's inputs length (its class's ``targets_length_for``), as the paper's gin
    files derive it at 512 (``span.gin``'s ``random_spans_helper``)."""
    from t5kernel.config import _validate_section

    name = str(cfg.objective.name)
    derive = getattr(registry.get("objective", name).load(), "targets_length_for", None)
    if derive is None:
        raise ConfigError(f"{row.path}: paper.targets_from_objective, but objective {name!r} "
                          "does not derive a targets length (no targets_length_for)")
    _, options = _validate_section("objective", "objective", cfg.objective, registry)
    return int(derive(options, int(cfg.pretrain.inputs_length)))


def _relative_changes(cfg: DictConfig, row: Row, meta: dict[str, Any],
                      sizes: dict[str, Any], scale: str) -> list[str]:
    """Overrides for the row's scale-relative changes: a model size step of the scale,
    multiplied values, a token budget as a fraction of the pre-training tokens."""
    out: list[str] = []
    size = meta.get("model_size")
    if size is not None and str(size) not in sizes:
        raise ConfigError(f"{row.path}: paper.model_size={size!r} but scale {scale!r} has "
                          f"sizes {', '.join(map(str, sizes)) or '(none)'}")
    size = str(size) if size is not None else "1x"
    if size in sizes:  # the scale's model (its 1x unless the row asks for another step)
        out += _flatten("model", sizes[size])
    for key, value in (meta.get("scale_with_inputs") or {}).items():
        length = int(cfg.pretrain.inputs_length)
        out.append(f"{key}={-(-int(value) * length // PAPER_INPUTS_LENGTH)}")  # ceiling
    for key, factor in (meta.get("multiply") or {}).items():
        value = OmegaConf.select(cfg, str(key))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{row.path}: paper.multiply.{key}: {key} is not a number here")
        new = value * factor
        out.append(f"{key}={int(new) if isinstance(value, int) else float(new)}")
    repeats = meta.get("repeats")
    if repeats:
        steps = int(OmegaConf.select(cfg, "pretrain.steps"))
        for key, factor in (meta.get("multiply") or {}).items():
            if key == "pretrain.steps":
                steps = int(steps * factor)
        tokens = steps * int(cfg.pretrain.batch_size) * int(cfg.pretrain.inputs_length)
        # at least one full input, so tiny scales still have a whole chunk to repeat
        budget = max(int(cfg.pretrain.inputs_length), tokens // int(repeats))
        out.append(f"pretrain.max_tokens={budget}")
    return out


# -------------------------------------------------------------------------- running
def _groups(cfg: DictConfig, meta: dict[str, Any], row: Row) -> dict[str, list[str]]:
    groups = meta.get("finetune_groups") or {}
    known = set(cfg.tasks or {})
    out = {}
    for group, tasks in groups.items():
        tasks = [str(t) for t in tasks]
        missing = [t for t in tasks if t not in known]
        if missing:
            raise ConfigError(f"{row.path}: paper.finetune_groups.{group} names {missing[0]!r}, "
                              f"not a configured task; configured: {', '.join(sorted(known))}")
        out[str(group)] = tasks
    return out


def _group_cfg(cfg: DictConfig, meta: dict[str, Any], group: str,
               tasks: list[str]) -> DictConfig:
    """``cfg`` fine-tuning and scoring only ``group``'s tasks, at the benchmark's own
    targets length (``paper.finetune_targets_length``) when that is below the scale's."""
    out = OmegaConf.merge(cfg, {"finetune": {"tasks": tasks}, "eval": {"tasks": tasks}})
    lengths = meta.get("finetune_targets_length") or {}
    if group in lengths:
        out.finetune.targets_length = min(int(cfg.finetune.targets_length), int(lengths[group]))
    return out


def _finished(run_dir: Path) -> bool:
    return (run_dir / "results.json").is_file()


def _check_same_run(run_dir: Path, cfg: DictConfig) -> None:
    """RunDirError when ``run_dir`` holds a run of another config: a sweep rerun into the
    same ``--out`` with changed overrides must not reuse (finished) or continue
    (interrupted) what the old settings made."""
    from t5kernel.runloop import _comparable, _first_difference

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    there, here = _comparable(OmegaConf.load(saved)), _comparable(cfg)
    if there != here:
        state = "finished" if _finished(run_dir) else "started"
        raise RunDirError(
            f"{run_dir} {state} with other settings ({_first_difference(there, here)}); "
            f"delete that folder to run it again with these, or sweep into another --out")


def _execute(cfg: DictConfig, run_dir: Path, registry: Any, console: Any,
             doing: str | None = None) -> dict[str, Any]:
    """Run ``cfg`` into ``run_dir``: reuse a finished run, continue an interrupted one.
    ``doing`` replaces "running"/"continuing" in the line the console gets."""
    from t5kernel.runloop import execute

    _check_same_run(run_dir, cfg)
    if _finished(run_dir):
        return json.loads((run_dir / "results.json").read_text())
    resume = (run_dir / "config.yaml").is_file()
    cfg = OmegaConf.merge(cfg, {"run_dir": str(run_dir), "resume": resume})
    if console is not None:
        what = doing or ("continuing" if resume else "running")
        console.print(f"[bold]sweep[/bold] {what} {run_dir}")
    _, results = execute(cfg, registry, console)
    return results


def _finetune_from(pre_dir: Path, cfg: DictConfig, run_dir: Path, registry: Any,
                   console: Any) -> dict[str, Any]:
    """Fine-tune a copy of the finished pre-training run ``pre_dir``.

    The copy holds the pre-training checkpoint (weights, optimizer state, step counter,
    data positions) and vocabulary; with ``cfg`` as its config and ``resume=true`` the
    run loop skips the finished pre-training stage and fine-tunes, exactly as a single run
    that continued into fine-tuning on these tasks would."""
    _check_same_run(run_dir, cfg)
    if _finished(run_dir):
        return json.loads((run_dir / "results.json").read_text())
    doing = None
    if not (run_dir / "config.yaml").is_file():  # not started: copy the pre-training run
        tmp = run_dir.with_name(run_dir.name + ".copying")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(pre_dir, tmp)
        (tmp / "results.json").unlink(missing_ok=True)
        full = OmegaConf.merge(cfg, {"run_dir": str(run_dir), "resume": False})
        ckpt.atomic_write_text(tmp / "config.yaml", OmegaConf.to_yaml(full))
        tmp.rename(run_dir)
        doing = f"fine-tuning (from {pre_dir.name}'s last checkpoint)"
    return _execute(cfg, run_dir, registry, console, doing)


def run_row(cfg: DictConfig, meta: dict[str, Any], row: Row, row_dir: Path, registry: Any,
            console: Any) -> dict[str, Any]:
    """Run one row; returns {"columns": {column: score}, "runs": {name: run dir}}."""
    if meta.get("ensemble"):
        return _run_ensemble(cfg, meta, row, row_dir, registry, console)
    groups = _groups(cfg, meta, row)
    runs: dict[str, Path] = {}
    columns: dict[str, float] = {}
    undefined: dict[str, list[str]] = {}
    if not groups or int(cfg.finetune.steps) <= 0:
        results = _execute(cfg, row_dir / "run", registry, console)
        runs["run"] = row_dir / "run"
        columns.update(_columns(results))
        undefined.update(_undefined(results, "run"))
        return {"columns": columns, "runs": {k: str(v) for k, v in runs.items()},
                **({"undefined": undefined} if undefined else {})}
    pretrained = int(cfg.pretrain.steps) > 0
    every_task = sorted(cfg.tasks)
    shared_pre = None
    for group, tasks in groups.items():
        group_cfg = _group_cfg(cfg, meta, group, tasks)
        if pretrained:
            pre_cfg = OmegaConf.merge(cfg, {"finetune": {"steps": 0},
                                            "eval": {"after_training": False}})
            if meta.get("leave_one_out"):  # pre-train without this group's tasks (P T12)
                others = [t for t in every_task if t not in tasks]
                pre_cfg.pretrain.tasks = others
                group_cfg.pretrain.tasks = others
                pre_dir = row_dir / f"pretrain-without-{group}"
                _execute(pre_cfg, pre_dir, registry, console)
            else:
                pre_dir = row_dir / "pretrain"
                if shared_pre is None:
                    _execute(pre_cfg, pre_dir, registry, console)
                    shared_pre = pre_dir
            runs[pre_dir.name] = pre_dir
            results = _finetune_from(pre_dir, group_cfg, row_dir / group, registry, console)
        else:  # no pre-training: fine-tune from the initialisation
            results = _execute(group_cfg, row_dir / group, registry, console)
        runs[group] = row_dir / group
        got = _columns(results)
        # the group's own column (GLUE, CNNDM, ...), else the mean of its tasks' scores
        value = got.get(group, got.get("all_tasks"))
        if value is not None:
            columns[group] = value
        undefined.update(_undefined(results, group))
    return {"columns": columns, "runs": {k: str(v) for k, v in runs.items()},
            **({"undefined": undefined} if undefined else {})}


def _run_ensemble(cfg: DictConfig, meta: dict[str, Any], row: Row, row_dir: Path,
                  registry: Any, console: Any) -> dict[str, Any]:
    """P Table 13's ensembles: ``members`` models (seeds ``seed``, ``seed + 1``, ...) whose
    final checkpoints are decoded together per group (``t5k eval`` with several
    checkpoints; ``eval.ensemble_reduce``). ``mode: full`` pre-trains and fine-tunes each
    member; ``mode: finetune_only`` fine-tunes one pre-trained model ``members`` times.
    The members share one vocabulary: the first member's."""
    from t5kernel.runloop import evaluate_checkpoints

    spec = dict(meta["ensemble"])
    members, mode = int(spec.get("members", 4)), str(spec.get("mode", "full"))
    if members < 2 or mode not in ("full", "finetune_only"):
        raise ConfigError(f"{row.path}: paper.ensemble={spec}; allowed: members >= 2, mode "
                          "'full' or 'finetune_only'")
    groups = _groups(cfg, meta, row) or {"all": sorted(cfg.tasks)}
    single = {k: v for k, v in meta.items() if k != "ensemble"}
    member_runs: list[dict[str, str]] = []
    for i in range(members):
        member_cfg = OmegaConf.merge(cfg, {"seed": int(cfg.seed) + i})
        first = row_dir / "member0"
        if i and mode == "finetune_only" and int(cfg.pretrain.steps) > 0:
            # member 0's pre-trained model, fine-tuned again under another seed
            runs = {}
            for group, tasks in groups.items():
                runs[group] = str(row_dir / f"member{i}" / group)
                _finetune_from(first / "pretrain", _group_cfg(member_cfg, meta, group, tasks),
                               Path(runs[group]), registry, console)
            member_runs.append(runs)
            continue
        if i:  # one vocabulary for every member: the first member's
            vocab_run = Path(member_runs[0].get("pretrain") or next(iter(member_runs[0].values())))
            member_cfg.vocabulary.model_file = str(vocab_run / "vocab" / "spm.model")
        member_runs.append(run_row(member_cfg, single, row, row_dir / f"member{i}", registry,
                                   console)["runs"])
    columns: dict[str, float] = {}
    for group, tasks in groups.items():
        dirs = [Path(runs[group] if group in runs else runs["run"]) for runs in member_runs]
        checkpoints = [ckpt.latest_valid(d / "checkpoints") for d in dirs]
        out_dir = dirs[0] / "evals" / f"ensemble{members}"
        if (out_dir / "results.json").is_file():
            results = json.loads((out_dir / "results.json").read_text())
        else:
            eval_cfg = OmegaConf.merge(OmegaConf.load(dirs[0] / "config.yaml"),
                                       {"eval": {"tasks": tasks}})
            _, results = evaluate_checkpoints(eval_cfg, registry, dirs[0], checkpoints,
                                              f"ensemble{members}", console)
        got = _columns(results)
        value = got.get(group, got.get("all_tasks"))
        if value is not None:
            columns[group] = value
    return {"columns": columns,
            "runs": {f"member{i}:{k}": v for i, runs in enumerate(member_runs)
                     for k, v in runs.items()}}


def _undefined(results: dict[str, Any], group: str) -> dict[str, list[str]]:
    """``{group: ["task metric", ...]}`` for the run's NaN scores (a correlation of
    constant predictions, ...), which make the averages over them NaN."""
    found = [f"{task} {metric}" for task, metrics in sorted((results.get("eval") or {}).items())
             for metric, value in sorted(metrics.items())
             if value is None or (isinstance(value, float) and math.isnan(value))]
    return {group: found} if found else {}


def _columns(results: dict[str, Any]) -> dict[str, float]:
    """Every average a run's results.json holds: the paper's summary columns (GLUE,
    CNNDM, ...) its tasks give, and ``all_tasks``."""
    averages = results.get("averages") or {}
    # results.json writes an undefined (NaN) average as null (t5kernel.jsonout)
    return {str(k): math.nan if v is None else float(v) for k, v in averages.items()
            if v is None or isinstance(v, (int, float))}


def sweep(table_dir: Path, scale: str, out: Path | None, overrides: list[str], registry: Any,
          console: Any = None, only: list[str] | None = None) -> dict[str, Any]:
    """Run every row of the table (or ``only`` those) and write the table files."""
    table = load_table(table_dir)
    out = Path(out) if out else Path("runs") / "sweeps" / f"{table.dir.name}-{scale}"
    rows = table.rows
    paper_keys = [o for o in overrides if o.split("=", 1)[0].strip().startswith("paper.")]
    if paper_keys:  # the metadata that decides how a row runs is read from its file
        raise ConfigError(f"{paper_keys[0]!r}: a row's paper.* metadata comes from its YAML "
                          "file and cannot be overridden; copy the table folder and edit it")
    if only:
        only = [n[:-5] if n.endswith(".yaml") else n for n in only]  # file names too
        names = {r.name for r in rows}
        bad = [n for n in only if n not in names]
        if bad:
            raise ConfigError(f"--rows: {bad[0]!r} is not a row of {table.dir.name}; rows: "
                              f"{', '.join(r.name for r in rows)}")
        rows = [r for r in rows if r.name in only]
    # every row's config is checked before anything runs (the files composed are scratch:
    # a refused sweep leaves nothing under --out)
    with tempfile.TemporaryDirectory(prefix="t5k-sweep-") as parts:
        configs = {row.name: row_config(table, row, scale, overrides, registry,
                                        Path(parts) / row.name) for row in rows}
    # ... and every task split the rows will read (a task's data missing offline would
    # otherwise stop the sweep only when a group first fine-tunes, after pre-training)
    from t5kernel.runloop import check_task_data

    seen: set[str] = set()
    for row in rows:
        try:
            check_task_data(configs[row.name][0], registry, seen)
        except T5KError as exc:  # the same error, naming the row
            exc.args = (f"row {row.name}: {exc}", *exc.args[1:])
            raise
    record: dict[str, Any] = {"table": table.number, "title": table.title, "scale": scale,
                              "columns": table.columns, "overrides": list(overrides), "rows": {}}
    record["rows"].update(_earlier_rows(out, record, {r.name for r in rows}))
    for row in rows:
        cfg, meta = configs[row.name]
        done = run_row(cfg, meta, row, out / row.name, registry, console)
        record["rows"][row.name] = {"label": row.label, "star": row.star,
                                    "paper": row.scores, **done}
        ckpt.atomic_write_text(out / "sweep.json", jsonout.dumps(record, indent=1, sort_keys=True))
    shown = [r for r in table.rows if r.name in record["rows"]]  # the table's order
    markdown, csv_text = format_table(table, shown, record)
    ckpt.atomic_write_text(out / "table.md", markdown)
    ckpt.atomic_write_text(out / "table.csv", csv_text)
    record["dir"] = str(out)
    record["markdown"] = markdown
    return record


def _earlier_rows(out: Path, record: dict[str, Any], rerun: set[str]) -> dict[str, Any]:
    """Rows an earlier sweep into ``out`` finished with the same scale and overrides and
    this one does not run (``--rows``): the table keeps them."""
    try:
        earlier = json.loads((out / "sweep.json").read_text())
    except (OSError, ValueError):
        return {}
    same = all(earlier.get(k) == record[k] for k in ("table", "scale", "overrides"))
    rows = earlier.get("rows") if same else None
    kept = {name: row for name, row in (rows or {}).items() if name not in rerun}
    for row in kept.values():  # sweep.json writes NaN as null
        row["columns"] = {k: math.nan if v is None else v
                          for k, v in (row.get("columns") or {}).items()}
    return kept


# ------------------------------------------------------------------------- the table
def _marked(values: dict[str, float | None], column: str) -> set[str]:
    """Rows whose value is within two baseline standard deviations of the column's best
    (P §3.1.5: bold marks the best and everything statistically tied with it)."""
    present = {k: v for k, v in values.items() if v is not None}
    if not present:
        return set()
    best = max(present.values())
    margin = 2 * PAPER_STD.get(column, 0.0)
    return {k for k, v in present.items() if v >= best - margin}


def format_table(table: Table, rows: list[Row], record: dict[str, Any]) -> tuple[str, str]:
    """(Markdown, CSV) of ours beside the paper's, in the paper's layout."""
    cols = table.columns
    ours = {r.name: record["rows"][r.name]["columns"] for r in rows}
    bold_ours = {c: _marked({r.name: ours[r.name].get(c) for r in rows}, c) for c in cols}
    bold_paper = {c: _marked({r.name: r.scores.get(c) for r in rows}, c) for c in cols}

    def cell(value: float | None, bold: bool) -> str:
        if value is None:
            return "-"
        text = f"{value:.2f}"
        return f"**{text}**" if bold else text

    lines = [f"## {table.title} (scale: {record['scale']})", "",
             "| row | " + " | ".join(f"{c} ours | {c} paper" for c in cols) + " |",
             "|---|" + "---:|---:|" * len(cols)]
    for r in rows:
        label = ("★ " if r.star else "") + r.label
        cells = []
        for c in cols:
            cells.append(cell(ours[r.name].get(c), r.name in bold_ours[c]))
            cells.append(cell(r.scores.get(c), r.name in bold_paper[c]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Bold: the best score of the column and every score within two standard "
              "deviations of it (the baseline's spread over 10 runs, P Table 1). ★: the "
              "baseline."]
    undefined = [f"{r.label} {group}: {', '.join(items)}" for r in rows
                 for group, items in sorted(record["rows"][r.name].get("undefined", {}).items())]
    if undefined:
        lines += ["", "nan: a score the column averages is undefined, as the metric is for "
                  "constant predictions (a correlation, e.g. STS-B's, of a model that always "
                  "answers the same; typical of tiny runs): " + "; ".join(undefined) + "."]
    if table.notes:
        lines += ["", f"Notes: {table.notes.strip()}"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "label", "star", *[f"{c}_{who}" for c in cols
                                               for who in ("ours", "paper")]])
    for r in rows:
        values = []
        for c in cols:
            values += [ours[r.name].get(c, ""), r.scores.get(c, "")]
        writer.writerow([r.name, r.label, int(r.star), *values])
    return "\n".join(lines) + "\n", buffer.getvalue()
