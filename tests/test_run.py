"""End to end: `t5k run` scaled down, the run directory, bad input, resumption."""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from t5kernel import checkpoint as ckpt
from t5kernel.cli import main
from t5kernel.testing import TINY_OVERRIDES


def run(*args):
    return main(["run", "--quiet", *TINY_OVERRIDES, *args])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    assert run(f"run_dir={run_dir}") == 0
    return run_dir


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r.get("loss"), r.get("eval")) for r in rows]


def test_run_directory_layout(finished_run):
    d = finished_run
    assert (d / "config.yaml").is_file() and (d / "vocab" / "spm.model").is_file()
    results = json.loads((d / "results.json").read_text())
    assert set(results) >= {"stages", "eval", "averages", "baselines", "model"}
    assert set(results["stages"]) == {"pretrain", "finetune"}
    assert set(results["eval"]) == {"demo_acceptability", "demo_summarize", "demo_pig_latin"}
    assert set(results["eval"]["demo_acceptability"]) == {"accuracy", "matthews_corrcoef"}
    assert "bleu" in results["eval"]["demo_pig_latin"]
    assert {"rouge1", "rouge2", "rougeLsum"} <= set(results["eval"]["demo_summarize"])
    assert set(results["best_step"]) == set(results["eval"])
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["stage"] in ("pretrain", "finetune")]
    assert [r["step"] for r in train] == [2, 4, 6, 8]
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in train)
    steps = ckpt.list_steps(d / "checkpoints")
    assert steps and all(ckpt.verify(d / "checkpoints" / f"step_{s}") for s in steps)


def test_rerunning_the_same_config_into_the_same_dir_is_refused(finished_run, capsys):
    before = (finished_run / "results.json").read_bytes()
    assert run(f"run_dir={finished_run}") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "resume=true" in err
    assert (finished_run / "results.json").read_bytes() == before


def test_a_different_run_in_an_existing_dir_is_refused(finished_run, capsys):
    before = (finished_run / "config.yaml").read_bytes()
    assert run(f"run_dir={finished_run}", "seed=5") == 2
    err = capsys.readouterr().err
    assert "holds a different run" in err and "seed" in err
    assert (finished_run / "config.yaml").read_bytes() == before


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    """Pre-training only, a checkpoint every 2 steps (resumption inside pre-training)."""
    run_dir = tmp_path_factory.mktemp("runs") / "pretrain"
    assert run(f"run_dir={run_dir}", "pretrain.steps=6", "pretrain.checkpoint_every=2",
               "finetune.steps=0", "keep_checkpoints=5", "tasks={}") == 0
    return run_dir


@pytest.mark.parametrize("which, last, data_position", [
    ("pretrained_run", 2, True), ("finished_run", 6, True), ("pretrained_run", 4, False),
    ("finished_run", 6, False)], ids=["in-pretraining", "in-finetuning",
                                      "pretraining-checkpoint-without-data-position",
                                      "finetuning-checkpoint-without-data-position"])
def test_resume_reproduces_the_uninterrupted_run(request, tmp_path, which, last, data_position):
    finished_run = request.getfixturevalue(which)
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    for step in ckpt.list_steps(copy / "checkpoints"):
        if step > last:
            shutil.rmtree(copy / "checkpoints" / f"step_{step}")
    latest = copy / "checkpoints" / f"step_{last}"
    state = json.loads((latest / "state.json").read_text())
    stage = "pretrain" if which == "pretrained_run" else "finetune"
    if stage == "pretrain":  # the objective's own position: documents, generator, offset
        assert set(state["data"]["pretrain"]) == {"docs", "rng", "offset"}
    else:
        assert set(state["data"]["finetune"]) == {"block", "offset", "tasks"}
    if not data_position:  # as written before positions were saved: replay and skip
        del state["data"]
        (latest / "state.json").write_text(json.dumps(state))
        manifest = json.loads((latest / "manifest.json").read_text())
        manifest["files"]["state.json"] = ckpt.sha256_file(latest / "state.json")
        (latest / "manifest.json").write_text(json.dumps(manifest))
    (copy / "results.json").unlink()
    assert main(["run", "--quiet", "--config", str(copy / "config.yaml"), f"run_dir={copy}",
                 "resume=true"]) == 0
    assert _losses(copy) == _losses(finished_run)
    assert (json.loads((copy / "results.json").read_text())["eval"]
            == json.loads((finished_run / "results.json").read_text())["eval"])


@pytest.mark.parametrize("args, needle", [
    (["--arch", "transformerxl"], "unknown architecture 'transformerxl'"),
    (["model.d_modle=4"], "model.d_modle: unknown option of architecture 'encdec'"),
    (["pretrain.batch_size=many"], "pretrain.batch_size"),
    (["--objective", "lm"], "architecture encdec: an example has no inputs"),
    (["--corpus", "text_files", "corpus.paths=[/nonexistent/corpus.txt]"], "/nonexistent/corpus.txt"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, needle):
    assert run(f"run_dir={tmp_path / 'r'}", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err


def test_empty_corpus_file_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert run(f"run_dir={tmp_path / 'r'}", "--corpus", "text_files",
               f"corpus.paths=[{empty}]") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "empty" in err.lower()


THIRD_PARTY = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "t5k-throwaway"
        version = "0.3.0"
        [project.entry-points.t5kernel]
        throwaway = "t5k_throwaway.hooks"
        [tool.setuptools]
        packages = ["t5k_throwaway"]
    """,
    "t5k_throwaway/__init__.py": "",
    "t5k_throwaway/hooks.py": """
        from dataclasses import dataclass
        from t5kernel.api import PluginSpec, hookimpl

        @dataclass
        class EqualConfig:
            note: str = "equal rates"

        @hookimpl
        def t5k_mixers():
            yield PluginSpec("equal_throwaway", "t5k_throwaway.mixer:Equal", EqualConfig,
                             "every task at the same rate")
    """,
    "t5k_throwaway/mixer.py": """
        class Equal:
            def __init__(self, config, context):
                self.config = config
            def rates(self, sizes):
                return {k: 1.0 / len(sizes) for k in sizes}
    """,
}


def test_third_party_distribution_is_listed_and_usable(tmp_path):
    src, target = tmp_path / "src", tmp_path / "site"
    for rel, text in THIRD_PARTY.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(textwrap.dedent(text))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(src)],
                   check=True)
    env = {**__import__("os").environ, "PYTHONPATH": str(target), "T5K_STRICT_PLUGINS": "1"}
    listed = subprocess.run([sys.executable, "-m", "t5kernel.cli", "list-plugins", "--json"],
                            capture_output=True, text=True, env=env, check=True)
    rows = [r for r in json.loads(listed.stdout) if r["distribution"] == "t5k-throwaway"]
    assert rows == [{**rows[0], "kind": "mixer", "name": "equal_throwaway", "version": "0.3.0",
                     "status": "active"}]
    out = subprocess.run([sys.executable, "-m", "t5kernel.cli", "run", "--quiet",
                          *TINY_OVERRIDES, "mixer.name=equal_throwaway",
                          f"run_dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["mixing_rates"]["finetune"].values()) == {1 / 3}


@pytest.mark.parametrize("reset, updates", [("false", 8), ("true", 4)])
def test_finetuning_continues_or_resets_the_optimizer(tmp_path, reset, updates):
    run_dir = tmp_path / "r"
    assert run(f"run_dir={run_dir}", f"finetune.reset_optimizer={reset}") == 0
    last = ckpt.latest_valid(run_dir / "checkpoints")
    _, trainer, _ = ckpt.load(last)
    steps = {int(s["step"]) for s in trainer["optimizer"]["state"].values()}
    assert steps == {updates}  # Mesh TF carries pre-training state into fine-tuning


def test_token_budget_repeats_the_corpus_and_says_how_often(tmp_path, capsys):
    run_dir = tmp_path / "budget"
    assert main(["run", *TINY_OVERRIDES, f"run_dir={run_dir}", "pretrain.max_tokens=500",
                 "finetune.steps=0", "eval.max_examples=2"]) == 0
    corpus = json.loads((run_dir / "results.json").read_text())["stages"]["pretrain"]["corpus"]
    assert corpus["max_tokens"] == 500 and corpus["tokens_per_pass"] == 500
    assert corpus["passes"] > 2  # 128 chunks per objective block are far more than 500 tokens
    assert "500-token budget" in capsys.readouterr().out


def _importable(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("backend, needle, unavailable", [
    ("cuda", "no CUDA GPU is visible", lambda: not __import__("torch").cuda.is_available()),
    ("xla", "t5kernel-xla", lambda: not _importable("t5k_xla")),
])
def test_missing_accelerators_are_clear_errors(tmp_path, capsys, backend, needle, unavailable):
    if not unavailable():
        pytest.skip(f"{backend} is available here")
    assert run(f"run_dir={tmp_path / 'r'}", "--backend", backend) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err


def test_a_run_refused_at_build_time_leaves_no_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "r"
    bad = ["--corpus", "text_files", f"corpus.paths=[{tmp_path / 'missing.txt'}]"]
    assert run(f"run_dir={run_dir}", *bad) == 2
    assert not run_dir.exists()  # so the corrected command can use the same run_dir
    assert run(f"run_dir={run_dir}", "pretrain.steps=2", "finetune.steps=0",
               "eval.max_examples=1") == 0


def test_a_run_without_pre_training_trains_the_corpus_vocabulary(tmp_path):
    """P Table 1's "no pre-training" row (and Table 12's supervised-only one) share the
    baseline's C4 vocabulary: the vocabulary trains on the configured corpus whether the
    run pre-trains on it or not (it was trained on the tasks' texts)."""
    from t5kernel.testing import TINY_OVERRIDES

    runs = {}
    for name, extra in (("pre", []), ("none", ["pretrain.steps=0"]),
                        ("supervised", ["pretrain.unsupervised=false", "pretrain.tasks=[all]"])):
        runs[name] = tmp_path / name
        assert main(["run", "--quiet", *TINY_OVERRIDES, *extra, "finetune.steps=1",
                     f"run_dir={runs[name]}"]) == 0
    spm = {name: (run / "vocab" / "spm.model").read_bytes() for name, run in runs.items()}
    assert spm["none"] == spm["pre"] == spm["supervised"]


@pytest.mark.parametrize("empty", ["train", "validation"])
def test_a_task_without_data_stops_the_run_before_training(tmp_path, capsys, empty):
    """Every task split the run will read is opened before anything trains: an empty
    training or evaluation file stops the run now, not once pre-training is over (or,
    in a sweep, at every row's fine-tuning), and leaves no run directory."""
    rows = "".join(f"src\t{i % 2}\t\tSentence number {i} is here .\n" for i in range(6))
    files = {split: tmp_path / f"{split}.tsv" for split in ("train", "validation")}
    for split, path in files.items():
        path.write_text("" if split == empty else rows)
    config = tmp_path / "cola.yaml"
    config.write_text(f"tasks:\n  glue_cola:\n    train_file: {files['train']}\n"
                      f"    validation_file: {files['validation']}\n")
    run_dir = tmp_path / "r"
    assert main(["run", "--quiet", "--config", str(config), *TINY_OVERRIDES[:7],
                 "pretrain.steps=2", "finetune.steps=2", f"run_dir={run_dir}"]) == 2
    err = capsys.readouterr().err
    assert f"task 'glue_cola': split {empty!r} has no examples (checked before training)" in err
    assert not run_dir.exists()
