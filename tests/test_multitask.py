"""The multi-task strategies of P Tables 11-12 as configs, and `t5k report`."""

import json
import shutil
from pathlib import Path

import pytest

from t5kernel import checkpoint as ckpt
from t5kernel.cli import main
from t5kernel.testing import TINY_OVERRIDES

TASKS = ("demo_acceptability", "demo_pig_latin", "demo_summarize")


def run(tmp_path, name, *args):
    run_dir = tmp_path / name
    assert main(["run", "--quiet", *TINY_OVERRIDES, f"run_dir={run_dir}", "eval.max_examples=4",
                 *args]) == 0
    return run_dir, json.loads((run_dir / "results.json").read_text())


def test_multi_task_training_mixes_the_objective_with_every_task(tmp_path):
    run_dir, results = run(tmp_path, "mt", "pretrain.tasks=[all]", "finetune.steps=0",
                           "mixer.name=temperature", "mixer.temperature=2.0",
                           "pretrain.checkpoint_every=2", "keep_checkpoints=4")
    rates = results["mixing_rates"]["pretrain"]
    assert set(rates) == {"embedded", *TASKS} and sum(rates.values()) == pytest.approx(1.0)
    # the unsupervised stream has unknown size: the mixer's limit K = 2^21, then ^(1/2)
    sizes = {"demo_acceptability": 40, "demo_pig_latin": 40, "demo_summarize": 40,
             "embedded": 2**21}
    total = sum(v ** 0.5 for v in sizes.values())
    assert rates == pytest.approx({k: v ** 0.5 / total for k, v in sizes.items()})
    assert set(results["eval"]) == set(TASKS)  # both (all) tasks reported
    # no fine-tuning: the multi-task run's own checkpoints are evaluated, the best per
    # task reported (P Table 11), and no extra evaluation after training
    evals = [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text()
                                    .splitlines()) if r["stage"] == "eval"]
    assert evals == list(range(2, results["stages"]["pretrain"]["steps"] + 1, 2))
    assert set(results["best_step"]) == set(TASKS)
    assert set(results["best_step"].values()) <= set(evals)
    # resuming inside a mixture continues every member stream exactly
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    for step in ckpt.list_steps(copy / "checkpoints"):
        if step > 2:
            shutil.rmtree(copy / "checkpoints" / f"step_{step}")
    (copy / "results.json").unlink()
    state = json.loads((copy / "checkpoints" / "step_2" / "state.json").read_text())
    assert set(state["data"]["pretrain"]["tasks"]) == {"embedded", *TASKS}
    assert main(["run", "--quiet", "--config", str(copy / "config.yaml"), f"run_dir={copy}",
                 "resume=true"]) == 0

    def losses(d):
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in rows if "loss" in r]

    assert losses(copy) == losses(run_dir)


def test_unsupervised_pretraining_alone_is_evaluated_once_after_training(tmp_path):
    """Its checkpoints hold a model never trained on the tasks: only the final one is
    decoded (eval.after_training), not every checkpoint."""
    run_dir, results = run(tmp_path, "pre", "finetune.steps=0", "pretrain.checkpoint_every=2")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["stage"] == "eval"] == [
        results["stages"]["pretrain"]["steps"]]
    assert set(results["eval"]) == set(TASKS) and "best_step" not in results


def test_leave_one_out_and_supervised_pretraining(tmp_path):
    _, loo = run(tmp_path, "loo", "pretrain.tasks=[demo_acceptability,demo_summarize]",
                 "finetune.tasks=[demo_pig_latin]")
    assert set(loo["mixing_rates"]["pretrain"]) == {"embedded", "demo_acceptability",
                                                    "demo_summarize"}
    assert set(loo["mixing_rates"]["finetune"]) == {"demo_pig_latin"}
    assert set(loo["eval"]) == set(TASKS)
    _, sup = run(tmp_path, "sup", "pretrain.unsupervised=false", "pretrain.tasks=[all]",
                 "mixer.name=equal")
    assert sup["mixing_rates"]["pretrain"] == {t: pytest.approx(1 / 3) for t in TASKS}
    assert "corpus" not in sup["stages"]["pretrain"]  # the objective never ran


@pytest.mark.parametrize("args, needle", [
    (["pretrain.tasks=[nope]"], "pretrain.tasks: 'nope' is not a configured task"),
    (["finetune.tasks=[all]"], "finetune.tasks: 'all' is not a configured task"),
    (["eval.tasks=[nope]"], "eval.tasks: 'nope' is not a configured task"),
    (["pretrain.unsupervised=false"], "pretrain.unsupervised"),
])
def test_bad_strategy_configs_are_refused(tmp_path, capsys, args, needle):
    assert main(["run", "--quiet", *TINY_OVERRIDES, f"run_dir={tmp_path / 'x'}", *args]) == 2
    assert needle in capsys.readouterr().err


def test_report_lays_runs_side_by_side(tmp_path, capsys, monkeypatch):
    a, _ = run(tmp_path, "a", "finetune.steps=2")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    results = json.loads((b / "results.json").read_text())
    results["averages"].update({"GLUE": 83.28, "SGLUE": 71.36, "EnDe": 26.98})
    (b / "results.json").write_text(json.dumps(results))
    png = tmp_path / "curves.png"
    assert main(["report", str(a), str(b), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "GLUE" in out and "83.28" in out and "71.36" in out and "26.98" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(a), "--json"]) == 0  # a script's call writes no image
    shown = json.loads(capsys.readouterr().out)
    assert shown["summary"][0]["GLUE"] is None and shown["png"] is None
    assert not (tmp_path / "t5k-report.png").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert set(shown["runs"][0]) == {"name", "dir", "eval", "averages"}  # every task metric
    # the curves' path: a suffix is added when missing, a folder or unknown format refused
    assert main(["report", str(a), "--png", str(tmp_path / "plain")]) == 0
    assert f"training curves: {tmp_path / 'plain.png'}" in capsys.readouterr().out
    assert (tmp_path / "plain.png").is_file()
    for bad, says in ((tmp_path, "is a folder"), (tmp_path / "x.txt", "unknown image format"),
                      (tmp_path / "plain.png" / "x.png", "cannot write the curves")):
        assert main(["report", str(a), "--png", str(bad)]) == 2
        assert says in capsys.readouterr().err
    (b / "results.json").write_text("[1, 2]")
    assert main(["report", str(b), "--no-png"]) == 2
    assert "is not a t5k results.json" in capsys.readouterr().err


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "glue" / "CoLA").is_dir(), reason="../shared/data absent")
def test_glue_and_superglue_tasks_run_and_average(tmp_path, capsys):
    cola, cb = SHARED / "glue" / "CoLA" / "dev.tsv", SHARED / "superglue" / "CB" / "val.jsonl"
    config = tmp_path / "bench.yaml"
    config.write_text(f"""tasks:
  glue_cola: {{train_file: {cola}, validation_file: {cola}}}
  super_glue_cb: {{train_file: {cb}, validation_file: {cb}}}
""")
    run_dir = tmp_path / "bench"
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("tasks.")]
    assert main(["run", "--quiet", "--config", str(config), *overrides, f"run_dir={run_dir}",
                 "eval.max_examples=8", "finetune.inputs_length=128",
                 "finetune.targets_length=8"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["eval"]) == {"glue_cola", "super_glue_cb"}
    assert set(results["eval"]["super_glue_cb"]) == {"mean_3class_f1", "accuracy"}
    averages = results["averages"]
    assert averages["glue_average"] == pytest.approx(results["eval"]["glue_cola"]["matthews_corrcoef"])
    cb_scores = results["eval"]["super_glue_cb"]
    assert averages["SGLUE"] == pytest.approx(
        (cb_scores["mean_3class_f1"] + cb_scores["accuracy"]) / 2)
    assert main(["report", str(run_dir), "--no-png"]) == 0
    assert "SGLUE" in capsys.readouterr().out
