"""``t5k eval``: re-decoding a finished run with beams and checkpoint ensembles."""

from __future__ import annotations

import json
import shutil

import pytest

from t5kernel import cli
from t5kernel.testing import TINY_OVERRIDES


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    assert cli.main(["run", "--quiet", *TINY_OVERRIDES, f"run_dir={run_dir}"]) == 0
    return run_dir


def predictions(folder):
    return {p.stem: [json.loads(line)["prediction"] for line in p.read_text().splitlines()]
            for p in sorted(folder.glob("*.jsonl"))}


def test_greedy_eval_reproduces_the_runs_own_predictions(tiny_run, capsys):
    final = max(int(p.name.split("_")[1]) for p in (tiny_run / "checkpoints").glob("step_*"))
    ckpt = tiny_run / "checkpoints" / f"step_{final}"
    assert cli.main(["eval", str(tiny_run), "--checkpoint", str(ckpt), "--name", "g"]) == 0
    out = tiny_run / "evals" / "g"
    res = json.loads((out / "results.json").read_text())
    assert res["decoding"]["num_beams"] == 1 and res["checkpoints"] == [str(ckpt)]
    assert predictions(out / "predictions") == predictions(tiny_run / "predictions" / f"step_{final}")
    assert "evaluation: greedy" in capsys.readouterr().out


@pytest.mark.slow
def test_compiled_decoding_reproduces_the_runs_own_predictions(tiny_run):
    """``backend.compile_decoding=true``: evaluation decodes through compiled fixed-shape
    steps (rows padded to a power of two) and predicts exactly what the eager run did."""
    from torch._dynamo.utils import counters

    final = max(int(p.name.split("_")[1]) for p in (tiny_run / "checkpoints").glob("step_*"))
    ckpt = tiny_run / "checkpoints" / f"step_{final}"
    counters.clear()
    assert cli.main(["eval", str(tiny_run), "--checkpoint", str(ckpt), "--name", "compiled",
                     "backend.compile_decoding=true"]) == 0
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    got = predictions(tiny_run / "evals" / "compiled" / "predictions")
    assert got == predictions(tiny_run / "predictions" / f"step_{final}")


def test_beam_and_ensemble(tiny_run):
    steps = sorted(tiny_run.joinpath("checkpoints").glob("step_*"))
    assert len(steps) >= 2
    rc = cli.main(["eval", str(tiny_run), "--name", "b", "eval.num_beams=3", "eval.alpha=0.6",
                   "eval.max_examples=4"])
    assert rc == 0
    beam = json.loads((tiny_run / "evals" / "b" / "results.json").read_text())
    assert beam["decoding"]["num_beams"] == 3
    assert set(beam["eval"]) == {"demo_acceptability", "demo_summarize", "demo_pig_latin"}
    # an ensemble of one checkpoint with itself decodes exactly like the checkpoint alone
    one = str(steps[-1])
    assert cli.main(["eval", str(tiny_run), "--name", "self2", "--checkpoint", one,
                     "--checkpoint", one, "eval.num_beams=3", "eval.max_examples=4"]) == 0
    assert predictions(tiny_run / "evals" / "self2" / "predictions") == predictions(
        tiny_run / "evals" / "b" / "predictions")
    # two different checkpoints: a real ensemble, both reductions run
    for reduce in ("mean_logit", "mean_prob"):
        assert cli.main(["eval", str(tiny_run), "--name", f"ens-{reduce}", "--checkpoint",
                         str(steps[0]), "--checkpoint", one,
                         f"eval.ensemble_reduce={reduce}", "eval.max_examples=4"]) == 0
        res = json.loads((tiny_run / "evals" / f"ens-{reduce}" / "results.json").read_text())
        assert len(res["checkpoints"]) == 2 and res["decoding"]["ensemble_reduce"] == reduce


def test_eval_errors(tiny_run, tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert cli.main(["eval", str(tiny_run), "--checkpoint", str(tmp_path)]) == 2
    assert "no model.safetensors" in capsys.readouterr().err
    assert cli.main(["eval", str(tiny_run), "eval.num_beams=0"]) == 2
    assert "eval.num_beams" in capsys.readouterr().err
    assert cli.main(["eval", str(tiny_run), "eval.length_penalty=gnmt"]) == 2
    assert "'mtf' or 'hf'" in capsys.readouterr().err
    assert cli.main(["eval", str(tiny_run), "--name", "g2", "eval.max_examples=2"]) == 0
    assert cli.main(["eval", str(tiny_run), "--name", "g2"]) == 2
    assert "already exists" in capsys.readouterr().err
    # a checkpoint from a run with another vocabulary of the same size is refused: by the
    # digest its state.json records, wherever the checkpoint lies, ...
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    step = sorted((other / "checkpoints").glob("step_*"))[-1]
    state = json.loads((step / "state.json").read_text())
    assert len(state["vocabulary_sha256"]) == 64
    state["vocabulary_sha256"] = "0" * 64
    (step / "state.json").write_text(json.dumps(state))
    loose = tmp_path / "loose" / step.name
    shutil.copytree(step, loose)
    for path in (step, loose):
        assert cli.main(["eval", str(tiny_run), "--checkpoint", str(path)]) == 2
        assert "different vocabulary" in capsys.readouterr().err
    # ... and, for checkpoints from before digests were recorded, by its run's vocab file
    del state["vocabulary_sha256"]
    (step / "state.json").write_text(json.dumps(state))
    (other / "vocab" / "spm.model").write_bytes(b"not the same vocabulary")
    assert cli.main(["eval", str(tiny_run), "--checkpoint", str(step)]) == 2
    assert "different vocabulary" in capsys.readouterr().err
    vocab = tiny_run / "vocab" / "spm.model"  # the run's own vocabulary is required
    vocab.rename(vocab.with_suffix(".moved"))
    try:
        assert cli.main(["eval", str(tiny_run), "--name", "g3"]) == 2
        assert "no training texts" in capsys.readouterr().err
    finally:
        vocab.with_suffix(".moved").rename(vocab)


def test_an_evaluation_that_fails_leaves_nothing_behind(tiny_run, capsys, monkeypatch):
    """Written into a hidden sibling renamed into place at the end: a failure (or Ctrl-C)
    mid-evaluation leaves no half-written evals/NAME that would block the name."""
    from t5kernel.runloop import Runner

    def broken(self, task, predictions, examples):
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "_score", broken)
    assert cli.main(["eval", str(tiny_run), "--name", "cut", "eval.max_examples=2"]) == 130
    assert "nothing was written" in capsys.readouterr().err
    assert not (tiny_run / "evals" / "cut").exists()
    assert not [p for p in (tiny_run / "evals").iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    assert cli.main(["eval", str(tiny_run), "--name", "cut", "eval.max_examples=2"]) == 0
    assert (tiny_run / "evals" / "cut" / "results.json").is_file()
    assert (tiny_run / "evals" / "cut" / "predictions").is_dir()


def test_a_run_without_tasks_is_refused(tmp_path, capsys):
    from t5kernel.testing import pretrain_only_run

    run = pretrain_only_run(tmp_path, "po")
    assert cli.main(["eval", str(run), "--name", "e"]) == 2
    assert "has no tasks to evaluate" in capsys.readouterr().err
    assert not (run / "evals" / "e").exists()


def _strict_json(text):
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_undefined_scores_are_null_in_the_json_users_read(tiny_run, tmp_path, capsys,
                                                          monkeypatch):
    """Standard JSON has no NaN: an undefined score (a correlation of constant
    predictions) is null in results.json, evals/*/results.json and report --json."""
    from t5kernel import jsonout
    from t5kernel.runloop import Runner

    assert jsonout.finite({"a": [1.0, float("nan")], "b": float("inf"), "c": "nan"}) == {
        "a": [1.0, None], "b": None, "c": "nan"}
    monkeypatch.setattr(Runner, "_score",
                        lambda self, task, predictions, examples: {"metric": float("nan")})
    assert cli.main(["eval", str(tiny_run), "--name", "nan", "eval.max_examples=2"]) == 0
    results = _strict_json((tiny_run / "evals" / "nan" / "results.json").read_text())
    assert results["eval"] and all(m == {"metric": None} for m in results["eval"].values())
    run = tmp_path / "nanrun"
    assert cli.main(["run", "--quiet", *TINY_OVERRIDES, f"run_dir={run}"]) == 0
    results = _strict_json((run / "results.json").read_text())
    assert all(m == {"metric": None} for m in results["eval"].values())
    assert results["averages"]["all_tasks"] is None
    capsys.readouterr()
    assert cli.main(["report", str(run), "--no-png", "--json"]) == 0
    _strict_json(capsys.readouterr().out)


def test_eval_options(tiny_run, capsys):
    for bad in ("../escape", "a/b", "", ".."):
        assert cli.main(["eval", str(tiny_run), "--name", bad]) == 2
        assert "--name" in capsys.readouterr().err
    assert not (tiny_run / "escape").exists()
    # --backend is the shorthand the cuda backend's advice names; --quiet hides only progress
    assert cli.main(["eval", str(tiny_run), "--backend", "cpu", "--quiet", "--name", "q",
                     "eval.max_examples=2"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint: " in out and "step_" in out and "results: " in out
    assert "average (all_tasks)" in out


def test_a_run_with_relative_data_paths_evaluates_from_another_directory(
        tmp_path, monkeypatch, capsys):
    """A run started in the data's folder with ``train_file: train.tsv`` saves absolute
    paths, so ``t5k eval`` from elsewhere reads the same validation file; and it needs no
    training file (deleted here) to evaluate."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    words = ["the cat sat", "a dog ran home", "birds sing loudly", "she reads books"]
    rows = [f"src\t{n % 2}\t\t{words[n % 4]} {n}." for n in range(24)]
    (data / "train.tsv").write_text("\n".join(rows) + "\n")
    (data / "dev.tsv").write_text("\n".join(rows[:8]) + "\n")
    (data / "tasks.yaml").write_text(
        "tasks:\n  glue_cola: {train_file: train.tsv, validation_file: dev.tsv}\n")
    run_dir = tmp_path / "run"
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("tasks.")]
    monkeypatch.chdir(data)
    assert cli.main(["run", "--quiet", "--config", "tasks.yaml", *tiny,
                     f"run_dir={run_dir}", "eval.max_examples=0"]) == 0
    scored = json.loads((run_dir / "results.json").read_text())["eval"]["glue_cola"]
    (data / "train.tsv").unlink()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert cli.main(["eval", str(run_dir), "--name", "moved"]) == 0, capsys.readouterr().err
    again = json.loads((run_dir / "evals" / "moved" / "results.json").read_text())
    assert set(again["eval"]) == {"glue_cola"}
    assert again["eval"]["glue_cola"].keys() == scored.keys()
