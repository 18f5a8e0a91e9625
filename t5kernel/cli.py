"""The ``t5k`` command line.

    t5k run [--arch NAME] [--objective NAME] [--backend NAME] [--config FILE.yaml] [key=value ...]
    t5k list-plugins [--kind KIND] [--json] [--available]
    t5k describe [--config FILE.yaml] [--arch NAME] [--json] [--vocab-size N] [key=value ...]
    t5k convert SRC DST [--arch NAME]
    t5k eval RUN_DIR [--checkpoint DIR ...] [--name NAME] [key=value ...]
    t5k predict RUN_DIR [--input TEXT ...] [--file FILE|-] [--output FILE] [--jsonl] [key=value ...]
    t5k clean IN [IN ...] OUT [--corpus NAME] [key=value ...]
    t5k report RUN_DIR [RUN_DIR ...] [--png FILE] [--json]
    t5k sweep TABLE_DIR [--scale paper|small|tiny] [--out DIR] [--rows A,B] [key=value ...]

Errors a user can fix (unknown plugin, bad key, bad value, unusable run directory, bad
data) print one line ``error: ...`` on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t5kernel import __version__
from t5kernel.api import KINDS
from t5kernel.errors import T5KError

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t5k", description="Run the T5 paper's experiments as plugins.")
    p.add_argument("--version", action="version", version=f"t5kernel {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="pre-train, fine-tune and evaluate (default: embedded demo)")
    run.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                     help="YAML config merged over the defaults (repeatable)")
    run.add_argument("--arch", help="architecture plugin (model.name)")
    run.add_argument("--objective", help="pre-training objective plugin (objective.name)")
    run.add_argument("--backend", help="backend plugin (backend.name)")
    run.add_argument("--corpus", help="pre-training corpus plugin (corpus.name)")
    run.add_argument("--finetune", help="fine-tuning strategy plugin (finetune.strategy.name)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the resolved config and exit without running")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("overrides", nargs="*", metavar="key=value",
                     help="OmegaConf dot-list overrides, e.g. pretrain.steps=200")

    lp = sub.add_parser("list-plugins", help="list installed (and catalogued) plugins")
    lp.add_argument("--kind", choices=KINDS, help="only this kind")
    lp.add_argument("--json", action="store_true", help="machine-readable JSON list")
    lp.add_argument("--available", action="store_true",
                    help="also show catalogued plugins that are not installed")

    ds = sub.add_parser("describe", help="layout, parameters and FLOPs of the configured model "
                        "(no training, no weights)")
    ds.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                    help="YAML config merged over the defaults (repeatable)")
    ds.add_argument("--arch", help="architecture plugin (model.name)")
    ds.add_argument("--json", action="store_true", help="print the description as JSON")
    ds.add_argument("--vocab-size", type=int, metavar="N",
                    help="vocabulary size incl. sentinels (default: planned by the vocabulary)")
    ds.add_argument("overrides", nargs="*", metavar="key=value",
                    help="OmegaConf dot-list overrides, e.g. model.size=base")

    ev = sub.add_parser("eval", help="re-evaluate a run's tasks from its checkpoint(s): beam "
                        "search, or an ensemble of several checkpoints")
    _decoding_arguments(ev)
    ev.add_argument("--name", help="results folder under RUN_DIR/evals (default: time + mode)")
    ev.add_argument("--quiet", action="store_true", help="no progress output")

    pr = sub.add_parser("predict", help="decode your own inputs with a run's model (one "
                        "prediction per line, in input order)")
    _decoding_arguments(pr)
    pr.add_argument("--input", action="append", default=[], metavar="TEXT",
                    help="an input text with its task prefix, e.g. 'cola sentence: ...' "
                    "(repeatable)")
    pr.add_argument("--file", metavar="FILE",
                    help="inputs, one per line; a .jsonl file: objects with an \"inputs\" "
                    "text; - = standard input (the default when no --input is given and "
                    "standard input is not a terminal)")
    pr.add_argument("--output", metavar="FILE",
                    help="write the predictions here (a new file) instead of standard output")
    pr.add_argument("--jsonl", action="store_true",
                    help="JSON lines {\"inputs\", \"prediction\"} (exact, newlines kept) "
                    "instead of one prediction per line")

    cv = sub.add_parser("convert", help="Hugging Face T5 folder -> t5k checkpoint, or a run's "
                        "checkpoint -> Hugging Face folder (direction from SRC)")
    cv.add_argument("src", help="a Hugging Face model folder (config.json) to import, or a run "
                    "directory / its checkpoints/step_N folder to export")
    cv.add_argument("dst", help="the folder to write (new or empty)")
    cv.add_argument("--arch", default="encdec",
                    help="architecture plugin an import becomes (default: encdec)")

    cl = sub.add_parser("clean", help="build a corpus from raw web pages (C4 rules) and write "
                        "it as JSON lines with a per-rule report")
    cl.add_argument("paths", nargs="+", metavar="PATH",
                    help="raw pages (WET or JSON lines with url and text: files, folders or "
                    "globs), then the output folder; key=value options of the corpus "
                    "(e.g. cleaning.badwords_path=en.txt) may follow")
    cl.add_argument("--corpus", default="c4",
                    help="corpus plugin whose rules apply (c4, c4_unfiltered, realnews_like, "
                    "webtext_like, wikipedia, wikipedia_tbc; default c4)")
    cl.add_argument("--quiet", action="store_true", help="no report table")

    rp = sub.add_parser("report", help="finished runs side by side in the paper's summary "
                        "layout (GLUE, CNNDM, SQuAD, SGLUE, EnDe, EnFr, EnRo) + training curves")
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    rp.add_argument("--png", default=None,
                    help="where to write the training curves (default: t5k-report.png; "
                    "none with --json unless --png is given)")
    rp.add_argument("--no-png", action="store_true", help="do not draw the curves")
    rp.add_argument("--json", action="store_true", help="print the summary rows as JSON")

    sw = sub.add_parser("sweep", help="run every row of a paper table (configs/paper/tNN_*) "
                        "and print it beside the paper's numbers")
    sw.add_argument("table", help="a table folder, e.g. configs/paper/t02_architectures")
    sw.add_argument("--scale", default="tiny",
                    help="scale preset beside the baseline: paper, small or tiny (default)")
    sw.add_argument("--out", help="sweep folder (default: runs/sweeps/<table>-<scale>); "
                    "running again resumes it")
    sw.add_argument("--rows", help="only these rows (comma-separated file names)")
    sw.add_argument("--quiet", action="store_true", help="no progress output from the runs")
    sw.add_argument("overrides", nargs="*", metavar="key=value",
                    help="config overrides applied to every row")
    return p


def _decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments ``t5k eval`` and ``t5k predict`` share: the run, its checkpoint(s),
    the backend and overrides of the run's config."""
    parser.add_argument("run_dir",
                        help="a run directory (its config.yaml and vocabulary are used)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DIR",
                        help="a checkpoints/step_N folder (repeatable: several = an "
                        "ensemble; default: the run's latest valid checkpoint)")
    parser.add_argument("--backend", help="backend plugin (backend.name), e.g. cpu for a "
                        "run trained on a GPU")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="overrides of the run's config, e.g. eval.num_beams=4")


#: what an interrupted command leaves behind, per command
INTERRUPTED = {
    "run": "interrupted; the latest checkpoint can be resumed with resume=true",
    "sweep": "interrupted; running the same sweep command again resumes it",
    "eval": "interrupted; nothing was written under the run's evals/: run the same command "
            "again",
    "predict": "interrupted; no --output file was written",
    "clean": "interrupted; the output folder is unfinished (its files so far are complete, "
             "but there is no report.json): run again into another folder",
}


#: ``key=value`` with a dotted key (``cleaning.badwords_path=en.txt``)
_OPTION = re.compile(r"^[A-Za-z_][\w.\[\]-]*=")


def _is_option(arg: str) -> bool:
    """A ``key=value`` option rather than a path: a dotted key before the ``=``, and no
    such file or folder (``crawl=2019/`` partition folders hold ``=`` too)."""
    return bool(_OPTION.match(arg)) and not Path(arg).exists()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    # key=value overrides may come before or after options (argparse alone would stop
    # collecting positionals at the first option)
    args, extra = parser.parse_known_args(argv)
    with_overrides = args.command in ("run", "describe", "eval", "predict", "clean", "sweep")
    unknown = [e for e in extra if e.startswith("-") or not with_overrides]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "clean":  # key=value options of the corpus mixed with the paths
        args.overrides = [a for a in [*args.paths, *extra] if _is_option(a)]
        args.paths = [a for a in args.paths if not _is_option(a)]
    elif with_overrides:
        args.overrides = [*args.overrides, *extra]
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "list-plugins":
            return _cmd_list(args)
        if args.command == "describe":
            return _cmd_describe(args)
        if args.command == "convert":
            return _cmd_convert(args)
        if args.command == "eval":
            return _cmd_eval(args)
        if args.command == "predict":
            return _cmd_predict(args)
        if args.command == "clean":
            return _cmd_clean(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
    except T5KError as exc:  # the config stage raises nothing else (t5kernel.config)
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"error: {message or type(exc).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(INTERRUPTED.get(args.command, "interrupted"), file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``t5k list-plugins --json | head``)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
        return 141
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from rich.console import Console
    from rich.markdown import Markdown

    from t5kernel.registry import default_registry
    from t5kernel.sweep import sweep

    if args.quiet:
        os.environ["T5K_NO_PROGRESS"] = "1"
    console = Console()
    only = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
    record = sweep(Path(args.table), args.scale, Path(args.out) if args.out else None,
                   list(args.overrides), default_registry(),
                   None if args.quiet else console, only)
    if console.is_terminal:
        console.print(Markdown(record["markdown"]))
    else:  # piped or redirected: the Markdown text itself, not squeezed to 80 columns
        print(record["markdown"], end="" if record["markdown"].endswith("\n") else "\n")
    console.print(f"table: {Path(record['dir']) / 'table.md'} and table.csv")
    return 0


def _resolve_config(args: argparse.Namespace, registry: Any) -> Any:
    """The validated config of ``--config`` files, shorthand flags and overrides."""
    from t5kernel.config import SHORTHANDS, compose, validate

    overrides = list(args.overrides)
    for flag, key in SHORTHANDS.items():
        value = getattr(args, flag, None)
        if value:
            overrides.append(f"{key}={value}")
    return validate(compose(args.config, overrides, registry), registry)


def _cmd_run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf
    from rich.console import Console

    from t5kernel.registry import default_registry

    registry = default_registry()
    cfg = _resolve_config(args, registry)
    if args.dry_run:
        print(OmegaConf.to_yaml(cfg), end="")
        return 0
    from t5kernel.distributed import launch_rank
    from t5kernel.runloop import execute

    console = Console(stderr=False, quiet=launch_rank() != 0)  # rank 0 reports the run
    if args.quiet:
        import os

        os.environ["T5K_NO_PROGRESS"] = "1"
    run_dir, results = execute(cfg, registry, console)
    _print_results(console, results)
    console.print(f"results: {run_dir / 'results.json'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from rich.console import Console

    from t5kernel.errors import ConfigError, RunDirError
    from t5kernel.registry import default_registry
    from t5kernel.runloop import evaluate_checkpoints

    run_dir = Path(args.run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no config.yaml)")
    if args.name is not None and (not args.name.strip() or args.name in (".", "..")
                                  or "/" in args.name or os.sep in args.name):
        raise ConfigError(f"--name {args.name!r}: a folder name under {run_dir / 'evals'} "
                          "(no path separators)")
    registry = default_registry()
    cfg = _decoding_config(args, registry, _note)
    console = Console()
    if args.quiet:
        os.environ["T5K_NO_PROGRESS"] = "1"
    out_dir, results = evaluate_checkpoints(
        cfg, registry, run_dir, [Path(c) for c in args.checkpoint], args.name,
        None if args.quiet else console)
    unfinished = "" if (run_dir / "results.json").is_file() else " (the run is unfinished)"
    console.print("checkpoint: " + ", ".join(results["checkpoints"]) + unfinished)
    dec = results["decoding"]
    mode = "greedy" if dec["num_beams"] == 1 else (
        f"beam {dec['num_beams']}, alpha {dec['alpha']} ({dec['length_penalty']})")
    members = len(results["checkpoints"])
    _print_results(console, results, f"evaluation: {mode}"
                   + (f", ensemble of {members} ({dec['ensemble_reduce']})" if members > 1 else ""))
    console.print(f"results: {out_dir / 'results.json'}")
    return 0


def _note(line: str) -> None:
    """A line for the user on standard error."""
    print(line, file=sys.stderr)


def _decoding_config(args: argparse.Namespace, registry: Any, say: Any,
                     tasks: bool = False) -> Any:
    """The validated config of ``args.run_dir`` with ``--backend`` and the overrides, for
    ``t5k eval`` / ``t5k predict`` (:func:`t5kernel.config.run_config_to_decode`)."""
    from t5kernel.config import run_config_to_decode

    overrides = list(args.overrides) + ([f"backend.name={args.backend}"] if args.backend else [])
    return run_config_to_decode(Path(args.run_dir) / "config.yaml", overrides, registry, say,
                                tasks=tasks)


def _cmd_predict(args: argparse.Namespace) -> int:
    from t5kernel import checkpoint as ckpt
    from t5kernel.errors import RunDirError
    from t5kernel.predict import format_predictions, predict, read_inputs
    from t5kernel.registry import default_registry

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no config.yaml)")
    output = Path(args.output) if args.output else None
    if output is not None and output.exists():
        raise RunDirError(f"--output {output} already exists; choose another file "
                          "(nothing was overwritten)")
    source = args.file
    if source is None and not args.input and not sys.stdin.isatty():
        source = "-"
    inputs = read_inputs(args.input, source)
    registry = default_registry()
    note = _note  # standard output carries the predictions only
    cfg = _decoding_config(args, registry, note, tasks=True)
    import os

    os.environ["T5K_NO_PROGRESS"] = "1"
    result = predict(cfg, registry, run_dir, [Path(c) for c in args.checkpoint], inputs, note)
    note("checkpoint: " + ", ".join(result["checkpoints"]))
    text = format_predictions(inputs, result["predictions"], args.jsonl)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        ckpt.atomic_write_text(output, text)
        note(f"{len(inputs)} predictions -> {output}")
    return 0


def _print_results(console: Any, results: dict[str, Any],
                   title: str = "evaluation (best checkpoint per task)") -> None:
    from rich.table import Table

    for stage, info in results.get("stages", {}).items():
        first, last = info.get("first_loss"), info.get("last_loss")
        if first is not None and last is not None:
            console.print(f"{stage}: {info['steps']} steps, loss {first:.3f} -> {last:.3f}, "
                          f"{info['tokens']:,} tokens in {info['seconds']:.0f}s")
    if not results.get("eval"):  # nothing was evaluated (eval.after_training=false)
        return
    baselines = results.get("baselines", {})
    table = Table(title=title)
    columns = ("task", "metric", "model") + (("copy input", "majority") if baselines else ())
    for col in columns:
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for task, metrics in sorted(results.get("eval", {}).items()):
        base = baselines.get(task, {})
        for metric, value in metrics.items():
            row = [task, metric, f"{value:.2f}"]
            if baselines:  # the trivial baselines the model must beat (runs record them)
                row += [_fmt(base.get("copy_input", {}).get(metric)),
                        _fmt(base.get("majority_target", {}).get(metric))]
            table.add_row(*row)
    console.print(table)
    for name, value in results.get("averages", {}).items():
        if name.endswith("_tasks") and isinstance(value, int):  # how many tasks an average has
            console.print(f"tasks in the {name[:-len('_tasks')]} average: {value}")
        else:
            console.print(f"average ({name}): {value:.2f}")


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.2f}"


def _cmd_list(args: argparse.Namespace) -> int:
    from t5kernel.catalogue import available_records
    from t5kernel.registry import default_registry

    registry = default_registry()
    records = [r.as_json() for r in registry.list(args.kind)]
    if args.available:  # installed: loaded or not (disabled, broken), of any kind
        installed = {r.distribution for r in registry.records}
        records += [r for r in available_records(args.kind) if r["distribution"] not in installed]
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    # a narrow terminal (or a pipe: 80 columns) shows distribution and version inside the
    # summary, which keeps a readable width; --json has every field
    wide = console.width >= 120
    columns = ("kind", "name", "distribution", "version", "status") if wide else (
        "kind", "name", "status")
    table = Table(title="t5kernel plugins")
    for col in columns:
        table.add_column(col, no_wrap=True)
    table.add_column("summary", overflow="fold")
    for r in records:  # plugins' text is shown as written, never read as rich markup
        summary = escape(r["summary"] or "")
        if not wide:
            summary = f"{summary} [dim]({escape(r['distribution'])} {escape(r['version'] or '')})[/dim]"
        if r.get("error"):
            summary = f"{summary} [red]{escape(r['error'])}[/red]".strip()
        if r["status"] == "available" and r.get("install"):
            summary = f"{summary} (install: {escape(r['install'])})"
        values = {"kind": r["kind"] or "-", "name": r["name"], "distribution": r["distribution"],
                  "version": r["version"] or "", "status": r["status"]}
        table.add_row(*(escape(str(values[c])) for c in columns), summary)
    console.print(table)
    return 0


def _cmd_clean(args: argparse.Namespace) -> int:
    """:func:`t5kernel.clean.clean` and a table of what each rule removed."""
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from t5kernel.clean import clean
    from t5kernel.errors import ConfigError
    from t5kernel.registry import default_registry

    if len(args.paths) < 2:
        raise ConfigError("t5k clean needs at least one input and an output folder: "
                          "t5k clean IN [IN ...] OUT")
    console = Console(quiet=args.quiet)
    *inputs, out = args.paths
    summary = clean(inputs, Path(out), default_registry(), args.corpus, args.overrides,
                    console)
    table = Table(title=f"t5k clean ({summary['corpus']})")
    table.add_column("count")
    table.add_column("value", justify="right")
    for key, value in summary["report"].items():
        table.add_row(key, f"{value:,}")
    console.print(table)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    """:func:`t5kernel.report.report`."""
    from pathlib import Path

    from rich.console import Console

    from t5kernel.report import report

    console = Console(quiet=args.json)
    png = None if args.no_png else (Path(args.png) if args.png else (
        None if args.json else Path("t5k-report.png")))  # --json: no file unless asked
    shown = report(args.run_dirs, png, console)
    if args.json:
        from t5kernel import jsonout

        print(jsonout.dumps(shown, indent=1))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    """:func:`t5kernel.convert.convert` (the architecture plugin does the format work)."""
    from pathlib import Path

    from t5kernel.convert import convert
    from t5kernel.registry import default_registry

    convert(Path(args.src), Path(args.dst), default_registry(), args.arch)
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    """The architecture plugin's ``describe(vocab_size)`` for the config ``run`` would use.

    Only the architecture plugin is built: no vocabulary training, no weights.
    """
    from t5kernel.api import BuildContext
    from t5kernel.config import plugin_config
    from t5kernel.errors import ConfigError
    from t5kernel.registry import default_registry

    registry = default_registry()
    cfg = _resolve_config(args, registry)
    vocab_size = args.vocab_size
    if vocab_size is None:
        vocab_size = _planned_vocab_size(cfg.vocabulary, registry)
    if vocab_size is None:
        raise ConfigError(f"vocabulary {cfg.vocabulary.name!r} cannot say its size before it "
                          "is built; give --vocab-size N")
    if vocab_size < 2:
        raise ConfigError(f"--vocab-size must be >= 2 (pad and eos), got {vocab_size}")
    name = str(cfg.model.name)
    record = registry.get("architecture", name)
    arch = registry.build("architecture", name, plugin_config(cfg.model, record),
                          BuildContext(registry=registry, seed=int(cfg.seed)))
    info = arch.describe(int(vocab_size))
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        _print_description(info)
    return 0


def _planned_vocab_size(section: Any, registry: Any) -> int | None:
    """The vocabulary's size without building it, when its plugin target has the optional
    ``planned_size(config)`` (see :class:`t5kernel.api.Vocabulary`); else None."""
    from t5kernel.config import plugin_config

    record = registry.get("vocabulary", str(section.name))
    planned = getattr(record.load(), "planned_size", None)
    return None if planned is None else planned(plugin_config(section, record))


def _print_description(info: dict[str, Any]) -> None:
    """A table in three parts: layout, parameter counts, forward FLOPs (then notes)."""
    from rich.console import Console
    from rich.table import Table

    groups: dict[str, list[tuple[str, Any]]] = {"layout": [], "parameters": [],
                                                "forward FLOPs": [], "notes": []}
    for key, value in info.items():
        if key.endswith("_note"):
            groups["notes"].append((key, value))
        elif key.startswith("forward_"):
            groups["forward FLOPs"].append((key, value))
        elif "parameters" in key and isinstance(value, int):
            groups["parameters"].append((key, value))
        else:
            groups["layout"].append((key, value))
    table = Table(title=f"t5k describe: {info.get('architecture', '?')}", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("", justify="right")
    for group, rows in groups.items():
        if not rows:
            continue
        table.add_section()
        table.add_row(f"[bold]{group}[/bold]", "", "")
        for key, value in rows:
            label = key.removeprefix("forward_matmul_flops_").replace("_", " ")
            if isinstance(value, int) and not isinstance(value, bool):
                human = _human(value) if group in ("parameters", "forward FLOPs") else ""
                table.add_row(f"  {label}", f"{value:,}", human)
            else:
                table.add_row(f"  {label}", "-" if value is None else str(value), "")
    Console().print(table)


def _human(n: int) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return ""


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
