"""The xla backend trains for real on PJRT CPU (tox -e xla): same losses as the cpu
backend, checkpoints of host tensors, exact resumption."""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("torch_xla")
os.environ.setdefault("PJRT_DEVICE", "CPU")

from t5kernel import checkpoint as ckpt  # noqa: E402
from t5kernel.cli import main  # noqa: E402
from t5kernel.testing import logged_losses, pretrain_only_run  # noqa: E402

ARGS = ["pretrain.steps=4", "pretrain.log_every=1", "pretrain.checkpoint_every=2", "finetune.steps=0",
        "model.dropout_rate=0.0", "keep_checkpoints=4"]


def _run(tmp_path, name, *extra):
    return pretrain_only_run(tmp_path, name, *ARGS, *extra)


def test_xla_matches_cpu_and_resumes(tmp_path):
    xla = _run(tmp_path, "xla", "--backend", "xla")
    cpu = _run(tmp_path, "cpu")
    assert logged_losses(xla) == pytest.approx(logged_losses(cpu), rel=1e-4, abs=1e-4)
    state = ckpt.load(xla / "checkpoints" / "step_4")
    assert all(t.device.type == "cpu" for t in state[0].values())
    copy = tmp_path / "copy"
    shutil.copytree(xla, copy)
    shutil.rmtree(copy / "checkpoints" / "step_4")
    (copy / "results.json").unlink()
    assert main(["run", "--quiet", "--config", str(copy / "config.yaml"), f"run_dir={copy}",
                 "resume=true"]) == 0
    assert logged_losses(copy) == pytest.approx(logged_losses(xla), rel=1e-5, abs=1e-5)


def test_bad_xla_config_is_refused(tmp_path, capsys):
    assert main(["run", "--quiet", "--backend", "xla", "backend.precision=fp8",
                 f"run_dir={tmp_path / 'x'}"]) == 2
    assert "precision='fp8'" in capsys.readouterr().err


def test_a_cpu_checkpoint_resumes_on_xla(tmp_path):
    """backend is a volatile key: a run checkpointed on cpu continues on xla (its rng
    state has no 'xla' entry; every step reseeds anyway) with the cpu run's losses."""
    cpu = _run(tmp_path, "cpu")
    copy = tmp_path / "cpu_then_xla"
    shutil.copytree(cpu, copy)
    shutil.rmtree(copy / "checkpoints" / "step_4")
    (copy / "results.json").unlink()
    assert main(["run", "--quiet", "--config", str(copy / "config.yaml"), f"run_dir={copy}",
                 "resume=true", "--backend", "xla"]) == 0
    assert logged_losses(copy) == pytest.approx(logged_losses(cpu), rel=1e-4, abs=1e-4)


def _executions() -> int:
    import torch_xla.debug.metrics as met

    data = met.metric_data("ExecuteTime")
    return int(data[0]) if data else 0


def test_a_training_step_is_one_xla_graph_execution(tmp_path):
    """Reading the loss on the host between forward and backward ran the forward as a
    graph of its own (twice: the loss sum, then the token count) before the step's graph
    ran it again: 3 executions a step. The losses wait on the device until the run logs,
    so a step is one execution (4 more steps: 4 more executions)."""
    counts = {}
    for steps in (4, 8):
        before = _executions()
        _run(tmp_path, f"s{steps}", "--backend", "xla", f"pretrain.steps={steps}",
             "pretrain.log_every=4", "pretrain.checkpoint_every=0")
        counts[steps] = _executions() - before
    assert counts[8] - counts[4] == 4, counts
