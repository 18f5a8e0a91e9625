"""``t5k predict``: decoding the user's own inputs with a run's model."""

from __future__ import annotations

import io
import json

import pytest

from t5kernel import cli
from t5kernel.errors import DataError
from t5kernel.predict import format_predictions, read_inputs
from t5kernel.testing import TINY_OVERRIDES


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    assert cli.main(["run", "--quiet", *TINY_OVERRIDES, f"run_dir={run_dir}"]) == 0
    return run_dir


def _final(run_dir):
    return max((p for p in (run_dir / "checkpoints").glob("step_*")),
               key=lambda p: int(p.name.split("_")[1]))


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_decodes_inputs_exactly_as_evaluation_does(tiny_run, tmp_path, capsys):
    """The run's own validation inputs, given as a .jsonl file, as lines on standard input
    and as --input texts, decode to the predictions the run wrote when it evaluated."""
    final = _final(tiny_run)
    written = _records(tiny_run / "predictions" / final.name / "demo_summarize.jsonl")
    inputs = [r["inputs"] for r in written]
    expected = [r["prediction"] for r in written]
    given = tmp_path / "in.jsonl"
    given.write_text("".join(json.dumps({"inputs": i, "targets": "x"}) + "\n" for i in inputs))
    out = tmp_path / "out.jsonl"
    assert cli.main(["predict", str(tiny_run), "--file", str(given), "--jsonl",
                     "--output", str(out)]) == 0
    assert [r["prediction"] for r in _records(out)] == expected
    assert [r["inputs"] for r in _records(out)] == inputs
    assert f"checkpoint: {final}" in capsys.readouterr().err
    # lines on standard input (a blank line is an input too: the outputs stay aligned)
    import sys

    lines = inputs[:3] + [""] + inputs[3:5]
    stdin = io.StringIO("\n".join(lines) + "\n")
    sys_stdin, sys.stdin = sys.stdin, stdin
    try:
        assert cli.main(["predict", str(tiny_run), "--file", "-"]) == 0
    finally:
        sys.stdin = sys_stdin
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 6 and shown[:3] + shown[4:] == expected[:5]
    assert cli.main(["predict", str(tiny_run), "--input", inputs[0], "--input", inputs[1],
                     "--checkpoint", str(final)]) == 0
    assert capsys.readouterr().out.splitlines() == expected[:2]


def test_predict_with_beams_and_an_ensemble_matches_eval(tiny_run, capsys):
    steps = sorted((tiny_run / "checkpoints").glob("step_*"), key=lambda p: int(p.name[5:]))
    options = ["eval.num_beams=3", "eval.max_examples=4"]
    members = ["--checkpoint", str(steps[0]), "--checkpoint", str(steps[-1])]
    assert cli.main(["eval", str(tiny_run), "--name", "ens", *members, *options]) == 0
    written = _records(tiny_run / "evals" / "ens" / "predictions" / "demo_pig_latin.jsonl")
    capsys.readouterr()
    texts = [arg for r in written for arg in ("--input", r["inputs"])]
    assert cli.main(["predict", str(tiny_run), *texts, *members, *options]) == 0
    assert capsys.readouterr().out.splitlines() == [r["prediction"] for r in written]


def test_long_inputs_are_cut_as_evaluation_cuts_them_and_said_so(tiny_run, capsys):
    long = "ab " * 200
    assert cli.main(["predict", str(tiny_run), "--input", long, "--input", "short"]) == 0
    captured = capsys.readouterr()
    assert "1 of 2 inputs are longer than finetune.inputs_length - 1 = 47 tokens" in captured.err
    assert len(captured.out.splitlines()) == 2


def test_predict_errors(tiny_run, tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path), "--input", "x"]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert cli.main(["predict", str(tiny_run), "--input", "x", "--checkpoint",
                     str(tiny_run / "checkpoints" / "step_99")]) == 2
    assert "step_99 does not exist" in capsys.readouterr().err
    assert cli.main(["predict", str(tiny_run), "--file", str(tmp_path / "nope.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert cli.main(["predict", str(tiny_run), "--file", str(empty)]) == 2
    assert "no inputs" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"inputs": "a"}\n{"text": "b"}\n')
    assert cli.main(["predict", str(tiny_run), "--file", str(bad)]) == 2
    assert 'line 2: no "inputs" text' in capsys.readouterr().err
    assert cli.main(["predict", str(tiny_run), "--input", "x", "eval.num_beams=0"]) == 2
    assert "eval.num_beams" in capsys.readouterr().err
    out = tmp_path / "exists.txt"
    out.write_text("keep me")
    assert cli.main(["predict", str(tiny_run), "--input", "x", "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep me"


def test_read_inputs_and_format_predictions(tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("one\n\nthree\n")
    assert read_inputs(["zero"], str(text)) == ["zero", "one", "", "three"]
    assert read_inputs([], "-", io.StringIO("a\nb")) == ["a", "b"]
    bad = tmp_path / "x.jsonl"
    bad.write_text("{oops\n")
    with pytest.raises(DataError, match="line 1 is not JSON"):
        read_inputs([], str(bad))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_inputs([], str(latin))
    assert format_predictions(["i"], ["two\nlines"], jsonl=False) == "two lines\n"
    assert json.loads(format_predictions(["i"], ["two\nlines"], jsonl=True)) == {
        "inputs": "i", "prediction": "two\nlines"}


def test_a_run_made_with_plugins_not_installed_here_still_decodes_and_exports(
        tiny_run, tmp_path, capsys):
    """A colleague's run trained with a third-party objective (and a task plugin) that are
    not installed here: eval, predict and convert need neither, so they replace or leave
    them out, saying so, instead of refusing the run."""
    import shutil

    import yaml

    run = tmp_path / "theirs"
    shutil.copytree(tiny_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["objective"] = {"name": "their_objective", "weird_option": 3}
    cfg["tasks"]["their_task"] = {"path": "/nowhere"}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert cli.main(["predict", str(run), "--input", "pig latin: hello"]) == 0
    err = capsys.readouterr().err
    assert "objective plugin 'their_objective' is not installed here" in err
    assert "task 'their_task' is not installed here" in err
    assert cli.main(["convert", str(run), str(tmp_path / "hf")]) == 0
    assert "their_objective" in capsys.readouterr().out
    # evaluation scores the tasks, so a task plugin it lacks is still an error
    assert cli.main(["eval", str(run), "--name", "x"]) == 2
    assert "their_task" in capsys.readouterr().err
    del cfg["tasks"]["their_task"]
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert cli.main(["eval", str(run), "--name", "x", "eval.max_examples=2"]) == 0
    assert "their_objective" in capsys.readouterr().err
