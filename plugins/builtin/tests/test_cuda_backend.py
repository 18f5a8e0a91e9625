"""The cuda backend on a real GPU (skipped without one; run by benchmarks/gpu_check.sh)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

from t5kernel.cli import main  # noqa: E402
from t5kernel.testing import logged_losses, pretrain_only_run  # noqa: E402

ARGS = ["pretrain.steps=6", "pretrain.log_every=1", "pretrain.checkpoint_every=3", "finetune.steps=0",
        "model.dropout_rate=0.0", "keep_checkpoints=4"]


def _run(tmp_path, name, *extra):
    return pretrain_only_run(tmp_path, name, *ARGS, *extra)


def test_fp32_cuda_matches_cpu(tmp_path):
    gpu = _run(tmp_path, "gpu", "--backend", "cuda", "backend.precision=fp32",
               "backend.tf32=false")
    cpu = _run(tmp_path, "cpu")
    assert logged_losses(gpu) == pytest.approx(logged_losses(cpu), rel=1e-3, abs=1e-3)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes(tmp_path, precision):
    run_dir = _run(tmp_path, precision, "--backend", "cuda", f"backend.precision={precision}")
    losses = logged_losses(run_dir)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "checkpoints" / "step_6")
    (copy / "results.json").unlink()
    assert main(["run", "--quiet", "--config", str(copy / "config.yaml"), f"run_dir={copy}",
                 "resume=true"]) == 0
    assert logged_losses(copy) == pytest.approx(losses, rel=1e-3, abs=1e-3)


def test_compiled_model_keeps_checkpoint_names(tmp_path):
    run_dir = _run(tmp_path, "compiled", "--backend", "cuda", "backend.compile=true")
    from safetensors.torch import load_file

    names = load_file(run_dir / "checkpoints" / "step_6" / "model.safetensors").keys()
    assert not any("_orig_mod" in n for n in names)
