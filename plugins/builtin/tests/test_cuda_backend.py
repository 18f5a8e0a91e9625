"""The cuda backend on a real GPU (skipped without one; run by benchmarks/gpu_check.sh)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

from t5kernel.cli import main  # noqa: E402
from t5kernel.testing import TINY_OVERRIDES  # noqa: E402

ARGS = [*(o for o in TINY_OVERRIDES if not o.startswith("tasks.")), "pretrain.steps=6",
        "pretrain.log_every=1", "pretrain.checkpoint_every=3", "finetune.steps=0",
        "model.dropout_rate=0.0", "keep_checkpoints=4"]


def _run(tmp_path, name, *extra):
    config = tmp_path / "no_tasks.yaml"
    config.write_text("tasks: {}\n")
    run_dir = tmp_path / name
    assert main(["run", "--quiet", "--config", str(config), *ARGS, f"run_dir={run_dir}",
                 *extra]) == 0
    return run_dir


def _losses(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_fp32_cuda_matches_cpu(tmp_path):
    gpu = _run(tmp_path, "gpu", "--backend", "cuda", "backend.precision=fp32",
               "backend.tf32=false")
    cpu = _run(tmp_path, "cpu")
    assert _losses(gpu) == pytest.approx(_losses(cpu), rel=1e-3, abs=1e-3)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes(tmp_path, precision):
    run_dir = _run(tmp_path, precision, "--backend", "cuda", f"backend.precision={precision}")
    losses = _losses(run_dir)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "checkpoints" / "step_6")
    (copy / "results.json").unlink()
    assert main(["run", "--quiet", "--config", str(copy / "config.yaml"), f"run_dir={copy}",
                 "resume=true"]) == 0
    assert _losses(copy) == pytest.approx(losses, rel=1e-3, abs=1e-3)


def test_compiled_model_keeps_checkpoint_names(tmp_path):
    run_dir = _run(tmp_path, "compiled", "--backend", "cuda", "backend.compile=true")
    from safetensors.torch import load_file

    names = load_file(run_dir / "checkpoints" / "step_6" / "model.safetensors").keys()
    assert not any("_orig_mod" in n for n in names)
