"""``t5k sweep``: every shipped paper table loads and validates at every scale; a tiny
sweep over two rows of a demo table runs the paper's procedure (pre-train once, fine-tune
each group from a copy) and writes the table; an interrupted sweep resumes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from t5kernel import sweep as sw
from t5kernel.cli import main
from t5kernel.errors import ConfigError
from t5kernel.registry import default_registry
from t5kernel.testing import TINY_OVERRIDES

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
TABLES = sorted(p.parent for p in PAPER.glob("t*/table.yaml"))


def test_the_paper_tables_are_all_there():
    topics = {p.name.split("_", 1)[1] for p in TABLES}
    assert len(TABLES) >= 11, [p.name for p in TABLES]
    for needed in ("baseline", "architectures", "objectives", "corruption_rates",
                   "span_lengths", "corpora", "corpus_size", "finetuning", "mixing",
                   "multitask_finetune", "scaling"):
        assert any(needed in t for t in topics), needed


@pytest.mark.parametrize("table_dir", TABLES, ids=[p.name for p in TABLES])
@pytest.mark.parametrize("scale", [pytest.param(s, marks=() if s == "tiny" else pytest.mark.slow)
                                   for s in sw.SCALES])  # ~0.3 s a row: the others in tox -e slow
def test_every_row_resolves_to_installed_plugins(table_dir, scale, tmp_path):
    registry = default_registry()
    table = sw.load_table(table_dir)
    assert table.rows and set(table.columns) <= set(sw.PAPER_STD)
    assert sum(r.star for r in table.rows) <= 1
    for row in table.rows:
        if row.meta.get("ensemble"):
            continue  # validated as a config below, run outside the sweep
        cfg, meta = sw.row_config(table, row, scale, [], registry, tmp_path / row.name)
        for section, kind in (("model", "architecture"), ("objective", "objective"),
                              ("corpus", "corpus"), ("mixer", "mixer")):
            assert registry.get(kind, cfg[section].name)
        groups = sw._groups(cfg, meta, row)
        assert all(tasks for tasks in groups.values())
        assert set(row.scores) <= set(table.columns), row.name


def test_scale_relative_changes(tmp_path):
    registry = default_registry()
    table = sw.load_table(next(p for p in TABLES if "scaling" in p.name))
    by_meta = {r.name: r for r in table.rows}
    base = next(r for r in table.rows if r.star)
    cfg0, _ = sw.row_config(table, base, "tiny", [], registry, tmp_path / "a")
    for row in by_meta.values():
        multiply = row.meta.get("multiply") or {}
        if "pretrain.steps" in multiply:
            cfg, _ = sw.row_config(table, row, "tiny", [], registry, tmp_path / row.name)
            assert cfg.pretrain.steps == cfg0.pretrain.steps * multiply["pretrain.steps"]
    corpus = sw.load_table(next(p for p in TABLES if "corpus_size" in p.name))
    for row in corpus.rows:
        if row.meta.get("repeats"):
            cfg, _ = sw.row_config(corpus, row, "tiny", [], registry, tmp_path / row.name)
            total = cfg.pretrain.steps * cfg.pretrain.batch_size * cfg.pretrain.inputs_length
            assert cfg.pretrain.max_tokens == max(cfg.pretrain.inputs_length,
                                                  total // row.meta["repeats"])


# ------------------------------------------------------------------- a tiny real sweep
def _demo_tables(root: Path, groups: dict | None = None) -> Path:
    """A paper-style folder over the demo tasks: baseline, tiny scale, a table with two
    rows and two ensemble rows."""
    tiny = dict(o.split("=", 1) for o in TINY_OVERRIDES)
    scale: dict = {}
    for key, value in tiny.items():
        node = scale
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    scale["sizes"] = {"1x": {"d_model": 32}, "2x": {"d_model": 48}}
    (root / "scales").mkdir(parents=True)
    (root / "scales" / "tiny.yaml").write_text(yaml.safe_dump(scale))
    (root / "baseline.yaml").write_text(yaml.safe_dump({
        "name": "demo-baseline",
        "paper": {"finetune_groups": groups or {"ACC": ["demo_acceptability"],
                                                "SUM": ["demo_summarize"]}}}))
    table = root / "t99_demo"
    table.mkdir()
    (table / "table.yaml").write_text(yaml.safe_dump({
        "title": "Demo: objectives", "table": 99, "columns": ["ACC", "SUM"],
        "rows": ["baseline", "span", "ensemble_full", "ensemble_finetune_only"]}))
    (table / "baseline.yaml").write_text(yaml.safe_dump({
        "paper": {"row": "Baseline", "star": True, "scores": {"ACC": 50.0, "SUM": 20.0}}}))
    (table / "span.yaml").write_text(yaml.safe_dump({
        "paper": {"row": "Random spans", "scores": {"ACC": 55.0, "SUM": 19.0},
                  "model_size": "2x"},
        "objective": {"name": "span"}}))
    for mode in ("full", "finetune_only"):
        (table / f"ensemble_{mode}.yaml").write_text(yaml.safe_dump({
            "paper": {"row": f"2x ensembled ({mode})", "ensemble": {"members": 2, "mode": mode}}}))
    return table


def test_a_tiny_sweep_runs_the_paper_procedure_and_resumes(tmp_path, capsys):
    table = _demo_tables(tmp_path / "paper")
    out = tmp_path / "sweep"
    args = ["sweep", str(table), "--scale", "tiny", "--out", str(out), "--quiet",
            "--rows", "baseline,span.yaml"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Demo: objectives" in printed and "Random spans" in printed
    for row in ("baseline", "span"):
        pre = out / row / "pretrain"
        assert (pre / "results.json").is_file()
        steps = json.loads((pre / "results.json").read_text())["stages"]
        assert "finetune" not in steps and not (pre / "predictions").exists()
        for group, task in (("ACC", "demo_acceptability"), ("SUM", "demo_summarize")):
            results = json.loads((out / row / group / "results.json").read_text())
            assert set(results["eval"]) == {task}  # each group fine-tuned and scored alone
            # fine-tuning continued the pre-training run: its losses are those logged first
            pre_losses = [json.loads(x) for x in (pre / "metrics.jsonl").read_text().splitlines()]
            ft_rows = [json.loads(x) for x in
                       (out / row / group / "metrics.jsonl").read_text().splitlines()]
            assert ft_rows[:len(pre_losses)] == pre_losses
            assert any(r.get("stage") == "finetune" for r in ft_rows)
    span_cfg = yaml.safe_load((out / "span" / "ACC" / "config.yaml").read_text())
    assert span_cfg["objective"]["name"] == "span" and span_cfg["model"]["d_model"] == 48
    record = json.loads((out / "sweep.json").read_text())
    assert set(record["rows"]["span"]["columns"]) == {"ACC", "SUM"}
    markdown = (out / "table.md").read_text()
    assert "| ★ Baseline |" in markdown and "**55.00**" in markdown  # the paper's best
    assert markdown.strip() in printed  # piped: the Markdown itself, not a squeezed render
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [r["row"] for r in rows] == ["baseline", "span"]
    assert float(rows[1]["ACC_paper"]) == 55.0 and rows[1]["ACC_ours"] != ""
    # a second invocation reuses every finished run and rewrites the same table
    stamp = (out / "span" / "SUM" / "results.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "span" / "SUM" / "results.json").stat().st_mtime_ns == stamp
    assert (out / "table.md").read_text() == markdown
    # a sweep of some rows (--rows) keeps the other rows of the table
    assert main([*args, "--rows", "span.yaml"]) == 0
    capsys.readouterr()
    assert (out / "table.md").read_text() == markdown
    assert set(json.loads((out / "sweep.json").read_text())["rows"]) == {"baseline", "span"}
    # other settings into the same --out: the finished runs are not passed off as theirs
    assert main([*args, "seed=1"]) == 2
    err = capsys.readouterr().err
    assert "baseline/pretrain finished with other settings (seed: 0 there, 1 here)" in err
    assert "delete that folder" in err and "another --out" in err
    assert (out / "table.md").read_text() == markdown
    # an interrupted group run with other settings is refused the same way
    for group in ("ACC", "SUM"):
        (out / "span" / group / "results.json").unlink()
    assert main([*args, "--rows", "span.yaml", "finetune.steps=7"]) == 2
    assert ("span/ACC started with other settings (finetune.steps: 4 there, 7 here)"
            in capsys.readouterr().err)
    assert (out / "span" / "ACC" / "config.yaml").is_file()


def test_sweep_errors_name_the_problem(tmp_path, capsys):
    table = _demo_tables(tmp_path / "paper")
    assert main(["sweep", str(table), "--scale", "huge", "--out", str(tmp_path / "o")]) == 2
    assert "--scale 'huge'" in capsys.readouterr().err
    assert main(["sweep", str(table), "--rows", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "'nope' is not a row of t99_demo" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no table.yaml" in capsys.readouterr().err
    assert main(["sweep", str(table), "--out", str(tmp_path / "o"),
                 "paper.finetune_groups.GLUE=[demo_acceptability]"]) == 2
    assert "paper.* metadata comes from its YAML file" in capsys.readouterr().err
    assert main(["sweep", str(table), "--out", str(tmp_path / "o"), "pretrain.steps=-1"]) == 2
    assert "pretrain.steps" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # a refused sweep leaves nothing behind
    with pytest.raises(ConfigError, match="model_size='8x'"):
        (table / "span.yaml").write_text(yaml.safe_dump({"paper": {"model_size": "8x"}}))
        t = sw.load_table(table)
        sw.row_config(t, t.rows[1], "tiny", [], default_registry(), tmp_path / "p")


def test_a_sweep_checks_every_rows_task_data_before_training(tmp_path, capsys, monkeypatch):
    """A group's task whose training file is missing stops the sweep before the first
    pre-training (which reads no task), naming the row and the file; each task split is
    opened once however many rows read it."""
    from t5kernel import runloop

    table = _demo_tables(tmp_path / "paper", groups={"ACC": ["demo_acceptability"],
                                                     "COLA": ["glue_cola"]})
    dev = tmp_path / "dev.tsv"
    dev.write_text("".join(f"src\t{n % 2}\t\tsentence {n}.\n" for n in range(8)))
    out = tmp_path / "sweep"
    cola = [f"tasks.glue_cola.validation_file={dev}",
            f"tasks.glue_cola.train_file={tmp_path / 'missing.tsv'}"]
    assert main(["sweep", str(table), "--out", str(out), "--quiet",
                 "--rows", "baseline,span", *cola]) == 2
    err = capsys.readouterr().err
    assert "row baseline: glue_cola: train_file" in err and "missing.tsv" in err
    assert not out.exists()
    # the check over several rows opens each (task, split, options) once
    opened = []
    real = runloop.Runner._check_task_data

    def counting(self, tasks, resume_state=None, seen=None):
        for name, task in tasks.items():
            examples = task.examples
            task.examples = lambda split, _e=examples, _n=name: (
                opened.append((_n, split)) or _e(split))
        return real(self, tasks, resume_state, seen)

    monkeypatch.setattr(runloop.Runner, "_check_task_data", counting)
    (tmp_path / "missing.tsv").write_text(dev.read_text())
    seen: set = set()
    t = sw.load_table(table)
    for row in t.rows[:2]:
        cfg, _meta = sw.row_config(t, row, "tiny", cola, default_registry(), tmp_path / row.name)
        runloop.check_task_data(cfg, default_registry(), seen)
    assert ("glue_cola", "train") in opened and ("demo_acceptability", "validation") in opened
    assert len(opened) == len(set(opened))


@pytest.mark.parametrize("mode", ["finetune_only", pytest.param("full", marks=pytest.mark.slow)])
def test_ensemble_rows_decode_their_members_together(tmp_path, mode):
    table = _demo_tables(tmp_path / "paper", groups={"ACC": ["demo_acceptability"]})
    out = tmp_path / "sweep"
    assert main(["sweep", str(table), "--scale", "tiny", "--out", str(out), "--quiet",
                 "--rows", f"ensemble_{mode}"]) == 0
    row = out / f"ensemble_{mode}"
    members = [row / "member0" / "ACC", row / "member1" / "ACC"]
    seeds = [yaml.safe_load((m / "config.yaml").read_text())["seed"] for m in members]
    assert seeds == [0, 1]
    losses = [[json.loads(x).get("loss") for x in (m / "metrics.jsonl").read_text().splitlines()]
              for m in members]
    pre = [json.loads(x) for x in (row / "member0" / "pretrain" / "metrics.jsonl")
           .read_text().splitlines()]
    if mode == "finetune_only":  # one pre-training, fine-tuned twice
        assert not (row / "member1" / "pretrain").exists()
        assert losses[0][:len(pre)] == losses[1][:len(pre)]
    else:  # each member pre-trained on its own, with the first member's vocabulary
        assert (row / "member1" / "pretrain" / "results.json").is_file()
        vocab = yaml.safe_load((row / "member1" / "pretrain" / "config.yaml").read_text())
        assert vocab["vocabulary"]["model_file"] == str(
            row / "member0" / "pretrain" / "vocab" / "spm.model")
    assert losses[0] != losses[1]
    results = json.loads((members[0] / "evals" / "ensemble2" / "results.json").read_text())
    assert len(results["checkpoints"]) == 2 and set(results["eval"]) == {"demo_acceptability"}
    record = json.loads((out / "sweep.json").read_text())
    assert "ACC" in record["rows"][f"ensemble_{mode}"]["columns"]


@pytest.mark.parametrize(("inputs_length", "expected"), [
    (64, [16, 14, 14, 13]), (192, [48, 44, 41, 37]), (256, [62, 58, 54, 49]),
    (512, [126, 114, 105, 99]), (1024, [250, 229, 210, 196])])
def test_span_rows_derive_their_targets_length_at_any_scale(tmp_path, inputs_length, expected):
    """P Table 7's rows take span.gin's random_spans_helper targets length at the scale's
    inputs length: the paper's 126 / 114 / 105 / 99 at 512, and what full chunks need at
    other lengths (a length scaled linearly from 512 is too short at 192, 256 and 1024)."""
    import shutil

    root = tmp_path / "paper"
    shutil.copytree(PAPER, root, ignore=shutil.ignore_patterns("t0[0-68-9]*", "t1*"))
    scale = yaml.safe_load((root / "scales" / "tiny.yaml").read_text())
    scale["pretrain"]["inputs_length"] = inputs_length
    (root / "scales" / "custom.yaml").write_text(yaml.safe_dump(scale))
    table = sw.load_table(root / "t07_span_lengths")
    registry = default_registry()
    got = [sw.row_config(table, table.rows[i], "custom", [], registry, tmp_path / str(i))[0]
           for i in range(1, 5)]
    assert [r.name for r in table.rows[1:]] == ["span_2", "span_3", "span_5", "span_10"]
    assert [int(c.pretrain.targets_length) for c in got] == expected
    # a user's override still wins
    cfg, _ = sw.row_config(table, table.rows[2], "custom", [f"pretrain.targets_length={999}"],
                           registry, tmp_path / "o")
    assert cfg.pretrain.targets_length == 999


def test_targets_from_an_objective_that_derives_none_is_refused(tmp_path, monkeypatch):
    from t5k_builtin.objectives.span import Span

    monkeypatch.delattr(Span, "targets_length_for")
    table = sw.load_table(PAPER / "t07_span_lengths")
    with pytest.raises(ConfigError, match="objective 'span' does not derive a targets length"):
        sw.row_config(table, table.rows[2], "tiny", [], default_registry(), tmp_path)


def test_nan_scores_are_explained_under_the_table():
    """A tiny run's constant predictions make STS-B's correlations (hence GLUE) NaN: the
    table says which scores are undefined instead of printing a bare nan."""
    table = sw.load_table(PAPER / "t07_span_lengths")
    nan = float("nan")
    results = {"eval": {"glue_stsb": {"pearson_corrcoef": nan, "spearman_corrcoef": nan},
                        "glue_cola": {"matthews_corrcoef": 0.0}}}
    assert sw._undefined(results, "GLUE") == {
        "GLUE": ["glue_stsb pearson_corrcoef", "glue_stsb spearman_corrcoef"]}
    assert sw._undefined({"eval": {"glue_cola": {"matthews_corrcoef": 0.0}}}, "GLUE") == {}
    rows = table.rows[:2]
    record = {"scale": "tiny", "rows": {
        rows[0].name: {"columns": {"GLUE": nan, "SQuAD": 1.0},
                       "undefined": sw._undefined(results, "GLUE")},
        rows[1].name: {"columns": {"GLUE": 50.0}}}}
    markdown, _ = sw.format_table(table, rows, record)
    assert (f"{rows[0].label} GLUE: glue_stsb pearson_corrcoef, glue_stsb spearman_corrcoef."
            in markdown)
    assert "constant predictions" in markdown
    clean, _ = sw.format_table(table, rows[1:], record)
    assert "nan:" not in clean
