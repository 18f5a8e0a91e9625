"""Multi-process training through torchrun (gloo on CPU): the same parameters as one
process over the same global batch, and only rank 0 writes the run directory."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from t5kernel.cli import main
from t5kernel.testing import TINY_OVERRIDES

ARGS = [*TINY_OVERRIDES, "pretrain.steps=4", "pretrain.checkpoint_every=2", "finetune.steps=4",
        "finetune.checkpoint_every=2", "eval.max_examples=2", "model.dropout_rate=0.0"]


def _files(run_dir):
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


def test_two_gloo_processes_equal_one_process(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    # both in fresh processes with the same thread settings (no state of other tests)
    env = {**os.environ, "T5K_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    cli = ["-m", "t5kernel.cli", "run", "--quiet", *ARGS]
    out = subprocess.run([sys.executable, *cli, f"run_dir={single}"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         *cli, f"run_dir={multi}"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for step in (6, 8):  # the fine-tuning checkpoints (pre-training ends at 4)
        a = load_file(single / "checkpoints" / f"step_{step}" / "model.safetensors")
        b = load_file(multi / "checkpoints" / f"step_{step}" / "model.safetensors")
        assert a.keys() == b.keys()
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert worst < 1e-4, (step, worst)
    # rank 0 alone wrote: the same files, each log line once, the same logged losses
    assert _files(multi) == _files(single)

    def losses(d):
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in rows if "loss" in r]

    got, want = losses(multi), losses(single)
    assert [s for s, _ in got] == [s for s, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-4, abs=1e-4)
    # a 2-process run resumes in one process (checkpoints hold the whole model)
    shutil.rmtree(multi / "checkpoints" / "step_8")
    (multi / "results.json").unlink()
    out = subprocess.run([sys.executable, "-m", "t5kernel.cli", "run", "--quiet", "--config",
                          str(multi / "config.yaml"), f"run_dir={multi}", "resume=true"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [v for _, v in losses(multi)] == pytest.approx([v for _, v in want], rel=1e-4,
                                                           abs=1e-4)


def test_multi_process_runs_need_a_named_run_dir(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["run", "--quiet", *TINY_OVERRIDES]) == 2
    assert "needs run_dir" in capsys.readouterr().err
