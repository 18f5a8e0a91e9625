"""Multi-process training through torchrun (gloo on CPU): the same parameters as one
process over the same global batch, and only rank 0 writes the run directory."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from t5kernel.cli import main
from t5kernel.testing import TINY_OVERRIDES

ARGS = [*TINY_OVERRIDES, "pretrain.steps=4", "pretrain.checkpoint_every=2", "finetune.steps=4",
        "finetune.checkpoint_every=2", "eval.max_examples=2", "model.dropout_rate=0.0",
        "model.num_layers=2"]  # 2 layers: FSDP shards block 1 as its own unit


def _files(run_dir):
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


def _env():
    # every run in a fresh process with the same thread settings (no state of other tests)
    env = {**os.environ, "T5K_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def _t5k(run_dir, *extra, procs=1, args=ARGS):
    """``t5k run`` in a subprocess, through torchrun when ``procs`` > 1."""
    launcher = [sys.executable]
    if procs > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    cmd = [*launcher, "-m", "t5kernel.cli", "run", "--quiet", *args, *extra, f"run_dir={run_dir}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _losses(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _same_losses(got, want):
    assert [s for s, _ in got] == [s for s, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-4, abs=1e-4)


def _same_weights(a_dir, b_dir, steps=(6, 8)):  # the fine-tuning checkpoints
    for step in steps:
        a = load_file(a_dir / "checkpoints" / f"step_{step}" / "model.safetensors")
        b = load_file(b_dir / "checkpoints" / f"step_{step}" / "model.safetensors")
        assert a.keys() == b.keys()
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert worst < 1e-4, (step, worst)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The one-process run every multi-process run must equal."""
    run_dir = tmp_path_factory.mktemp("dist") / "single"
    _t5k(run_dir)
    return run_dir


def test_two_gloo_processes_equal_one_process(single, tmp_path):
    multi = tmp_path / "multi"
    _t5k(multi, procs=2)
    _same_weights(single, multi)
    # rank 0 alone wrote: the same files, each log line once, the same logged losses
    assert _files(multi) == _files(single)
    _same_losses(_losses(multi), _losses(single))
    # a 2-process run resumes in one process (checkpoints hold the whole model)
    shutil.rmtree(multi / "checkpoints" / "step_8")
    (multi / "results.json").unlink()
    _t5k(multi, "resume=true", args=["--config", str(multi / "config.yaml")])
    _same_losses(_losses(multi), _losses(single))


def test_fsdp_two_processes_equal_one_process(single, tmp_path):
    """FSDP2 shards parameters, gradients and Adafactor's state over 2 gloo ranks; the
    weights, losses and evaluation equal the one-process run's, rank 0 alone writes,
    and its checkpoints (gathered in full) equal the unsharded format."""
    multi = tmp_path / "fsdp"
    out = _t5k(multi, "backend.parallel=fsdp", procs=2)
    assert out.stdout.count("results:") == 1  # rank 0 alone reports
    _same_weights(single, multi)
    assert _files(multi) == _files(single)
    _same_losses(_losses(multi), _losses(single))
    got = json.loads((multi / "results.json").read_text())["eval"]
    want = json.loads((single / "results.json").read_text())["eval"]
    assert got.keys() == want.keys()
    for task in want:
        assert got[task] == pytest.approx(want[task], abs=1e-6), task
    # rank 0 decoded a gathered copy of the model: its predictions are exactly what one
    # process decodes with the final checkpoint's weights (scores of a tiny model are 0
    # either way, so they could not show a wrong copy)
    assert main(["eval", str(multi), "--quiet", "--name", "one",
                 "--checkpoint", str(multi / "checkpoints" / "step_8")]) == 0
    for path in sorted((multi / "evals" / "one" / "predictions").glob("*.jsonl")):
        assert path.read_text() == (multi / "predictions" / "step_8" / path.name).read_text()
    # the one-process checkpoint resumes sharded over 2 ranks (another world size)
    copy = tmp_path / "resumed"
    shutil.copytree(single, copy)
    shutil.rmtree(copy / "checkpoints" / "step_8")
    (copy / "results.json").unlink()
    _t5k(copy, "resume=true", "backend.parallel=fsdp", procs=2,
         args=["--config", str(copy / "config.yaml")])
    _same_losses(_losses(copy), _losses(single))
    _same_weights(single, copy, steps=(8,))


def test_multi_process_runs_need_a_named_run_dir(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["run", "--quiet", *TINY_OVERRIDES]) == 2
    assert "needs run_dir" in capsys.readouterr().err


def test_two_processes_read_a_web_corpus_as_one_process_does(tmp_path):
    """A ``c4`` corpus of local shards under torchrun: every rank reads the whole stream
    and trains on its share of each global batch, so the vocabulary and the losses equal
    one process's (the corpus once sharded itself by RANK underneath: rank 0 trained the
    vocabulary on half the documents, and each rank dropped half of what it read)."""
    import hashlib
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnoprstuvwy") for _ in range(rng.randint(2, 9)))
             for _ in range(400)]
    shards = tmp_path / "c4"
    shards.mkdir()
    for n in range(3):
        docs = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) + "."
                for _ in range(60)]
        (shards / f"shard{n}.jsonl").write_text(
            "".join(json.dumps({"text": d}) + "\n" for d in docs))
    config = tmp_path / "no_tasks.yaml"
    config.write_text("tasks: {}\n")
    args = [*ARGS, "--config", str(config), "corpus.name=c4", f"corpus.data_files=[{shards}]",
            "finetune.steps=0", "pretrain.steps=8", "pretrain.checkpoint_every=4"]
    one, two = tmp_path / "one", tmp_path / "two"
    _t5k(one, args=args)
    _t5k(two, procs=2, args=args)

    def digest(run):
        return hashlib.sha256((run / "vocab" / "spm.model").read_bytes()).hexdigest()

    assert digest(two) == digest(one)
    _same_losses(_losses(two), _losses(one))
    assert len(_losses(one)) == 4


def test_fsdp_processes_start_from_an_init_checkpoint(single, tmp_path):
    """``init_checkpoint`` under FSDP on 2 ranks: the strict key check reads full shapes
    on every rank (``state_dict()`` is rank 0's alone there), and the fine-tuning that
    follows equals one process's."""
    start = ["pretrain.steps=0", f"init_checkpoint={single / 'checkpoints' / 'step_6'}"]
    one, two = tmp_path / "one", tmp_path / "two"
    _t5k(one, *start)
    _t5k(two, *start, "backend.parallel=fsdp", procs=2)
    _same_losses(_losses(two), _losses(one))


def test_process_count_constraints_stop_a_run_before_it_trains(tmp_path, monkeypatch, capsys):
    """A fine-tuning batch the processes cannot share, or FSDP with a strategy that adds
    modules, is refused before the vocabulary or pre-training (it was found only when
    fine-tuning started); the run leaves no directory."""
    from t5kernel import runloop

    monkeypatch.setattr(runloop, "world_size_of", lambda backend: 2)
    run_dir = tmp_path / "r"
    assert main(["run", "--quiet", *ARGS, "finetune.batch_size=3", f"run_dir={run_dir}"]) == 2
    assert "finetune.batch_size=3 must be a multiple of the 2 processes" in capsys.readouterr().err
    assert not run_dir.exists()
    monkeypatch.setenv("WORLD_SIZE", "2")
    from t5kernel.config import compose, validate
    from t5kernel.errors import ConfigError
    from t5kernel.registry import default_registry

    registry = default_registry()
    with pytest.raises(ConfigError, match="parallel=fsdp cannot fine-tune with .*adapters"):
        validate(compose([], ["backend.parallel=fsdp",
                                    "finetune.strategy.name=adapters"], registry), registry)
    validate(compose([], ["backend.parallel=ddp", "finetune.strategy.name=adapters"],
                     registry), registry)
    validate(compose([], ["backend.parallel=fsdp", "finetune.strategy.name=adapters",
                                "finetune.steps=0"], registry), registry)


def test_rank_0_stopped_by_the_launcher_leaves_no_untrained_run_dir(tmp_path, monkeypatch,
                                                                     capsys):
    """torchrun sends SIGTERM to the other processes when one fails: rank 0 then stops
    with an error and removes the run directory it made before anything trained, so the
    corrected command is not refused as "already holds this run"."""
    import signal

    from t5kernel import runloop

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(runloop.Runner, "run",
                        lambda self: os.kill(os.getpid(), signal.SIGTERM) or time.sleep(5))
    run_dir = tmp_path / "r"
    before = signal.getsignal(signal.SIGTERM)
    assert main(["run", "--quiet", *ARGS, f"run_dir={run_dir}"]) == 2
    assert "stopped by the launcher (SIGTERM)" in capsys.readouterr().err
    assert not run_dir.exists()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_torchrun_restart_resumes_the_run(single, tmp_path, monkeypatch, capsys):
    """torchrun --max-restarts reruns the first command (no resume=true): with
    TORCHELASTIC_RESTART_COUNT > 0 and this run in run_dir, it continues from the last
    checkpoint instead of being refused as "already holds this run"."""
    copy = tmp_path / "restarted"
    shutil.copytree(single, copy)
    shutil.rmtree(copy / "checkpoints" / "step_8")
    (copy / "results.json").unlink()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    monkeypatch.setenv("T5K_NO_PROGRESS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["run", "--quiet", *ARGS, f"run_dir={copy}"]) == 0
    assert "restart 1 (torchrun): resuming" in capsys.readouterr().out
    _same_losses(_losses(copy), _losses(single))
    _same_weights(single, copy, steps=(8,))
    # another run's directory is still refused
    assert main(["run", "--quiet", *ARGS, "seed=3", f"run_dir={copy}"]) == 2
    assert "different run" in capsys.readouterr().err
