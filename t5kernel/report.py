"""``t5k report RUN_DIR [RUN_DIR ...]``: runs side by side in the paper's summary layout.

The paper reports every experiment as one row of GLUE, CNNDM, SQuAD, SGLUE, EnDe, EnFr
and EnRo (P Table 1 onwards). A run's ``results.json`` carries those numbers under
``averages`` when its tasks declared their benchmarks (the averaging evaluator plugin
computes them: GLUE / SuperGLUE by the paper's rule, CNNDM = ROUGE-2-F, SQuAD = EM, the
WMT columns = BLEU); a column a run did not evaluate shows "-". Below the summary, every
task metric of every run; the training curves (loss against global step, one line per
run and stage) go to a PNG.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t5kernel.errors import ConfigError, RunDirError

#: the paper's summary columns, as ``results.json`` ``averages`` keys
PAPER_COLUMNS = ("GLUE", "CNNDM", "SQuAD", "SGLUE", "EnDe", "EnFr", "EnRo")


def load_run(run_dir: Path) -> dict[str, Any]:
    """A finished run's results and logged training curve."""
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise RunDirError(f"{run_dir} has no results.json (not a finished t5k run)")
    try:
        results = json.loads(results_path.read_text())
    except ValueError as exc:
        raise RunDirError(f"{results_path} is not valid JSON: {exc}") from None
    if not isinstance(results, dict) or not all(
            isinstance(results.get(k, {}), dict) for k in ("eval", "averages")):
        raise RunDirError(f"{results_path} is not a t5k results.json (an object with 'eval' "
                          "and 'averages' objects)")
    curve: list[dict[str, Any]] = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash; the rest is still useful
            if "loss" in row:
                curve.append(row)
    return {"name": run_dir.name, "dir": str(run_dir), "results": results, "curve": curve}


def summary_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per run: the paper's columns (None where absent) and the all-task mean."""
    rows = []
    for run in runs:
        averages = run["results"].get("averages", {})
        row = {"run": run["name"], **{c: averages.get(c) for c in PAPER_COLUMNS}}
        row["all tasks"] = averages.get("all_tasks")
        rows.append(row)
    return rows


#: image formats the curves can be written in (matplotlib's Agg backend)
IMAGE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def curves_path(path: Path) -> Path:
    """Where the curves go: ``path``, with ``.png`` added when it has no suffix;
    ConfigError for a folder or another format."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--png {path}: is a folder; give a file name such as "
                          f"{path / 't5k-report.png'}")
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    if path.suffix.lower().lstrip(".") not in IMAGE_FORMATS:
        raise ConfigError(f"--png {path}: unknown image format {path.suffix!r}; allowed: "
                          + ", ".join(f".{f}" for f in IMAGE_FORMATS))
    return path


def plot_curves(runs: Sequence[dict[str, Any]], path: Path) -> Path:
    """Training loss against global step for every run and stage, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in runs:
        stages = sorted({r["stage"] for r in run["curve"]})
        for stage in stages:
            points = [(r["step"], r["loss"]) for r in run["curve"] if r["stage"] == stage]
            if points:
                steps, losses = zip(*points, strict=True)
                ax.plot(steps, losses, label=f"{run['name']} ({stage})")
    ax.set_xlabel("global step")
    ax.set_ylabel("training loss (per target token)")
    ax.set_title("t5k report: training curves")
    if ax.lines:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise RunDirError(f"cannot write the curves to {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path


def report(run_dirs: Sequence[str | Path], png: Path | None, console: Any) -> dict[str, Any]:
    """Print the summary and per-task tables; write the curves; return the data shown."""
    from rich.table import Table

    png = curves_path(png) if png is not None else None  # refused before anything runs
    runs = [load_run(Path(d)) for d in run_dirs]
    names = [r["name"] for r in runs]
    if len(set(names)) < len(names):  # same folder name in different places: use paths
        for run in runs:
            run["name"] = run["dir"]
    rows = summary_rows(runs)
    table = Table(title="paper summary (P Table 1 layout)")
    for column in ("run", *PAPER_COLUMNS, "all tasks"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        table.add_row(*[row["run"], *(_fmt(row[c]) for c in (*PAPER_COLUMNS, "all tasks"))])
    console.print(table)

    metrics = sorted({(task, metric) for run in runs
                      for task, values in run["results"].get("eval", {}).items()
                      for metric in values})
    detail = Table(title="every task metric")
    detail.add_column("task")
    detail.add_column("metric")
    for run in runs:
        detail.add_column(run["name"], justify="right")
    for task, metric in metrics:
        detail.add_row(task, metric, *(_fmt(run["results"].get("eval", {}).get(task, {})
                                            .get(metric)) for run in runs))
    if metrics:
        console.print(detail)
    written = plot_curves(runs, png) if png is not None else None
    if written is not None:
        console.print(f"training curves: {written}", soft_wrap=True)
    return {"summary": rows, "png": str(written) if written else None,
            "runs": [{"name": run["name"], "dir": run["dir"],
                      "eval": run["results"].get("eval", {}),
                      "averages": run["results"].get("averages", {})} for run in runs]}


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"
