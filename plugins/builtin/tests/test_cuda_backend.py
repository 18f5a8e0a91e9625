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
    trainer = torch.load(run_dir / "checkpoints" / "step_6" / "trainer.pt", weights_only=True)
    assert ("scale" in trainer["loss_scaler"]) if precision == "fp16" else (
        "loss_scaler" not in trainer)  # fp16's GradScaler state rides with the checkpoint
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


def _talking_model(name):
    """A random model that does not just echo EOS: test_beam's encoder-decoder, whose rows
    end at varied lengths, or a decoder-only one whose rows run on."""
    from test_beam import CONFIGS, batch_and_inputs, build, make_pair, prompts

    if name == "encdec":
        dims, vocab, seed, boost = CONFIGS[0].values
        model, _ = make_pair(dims, vocab, seed=seed, eos_boost=boost, embed_scale=0.05)
        return model, batch_and_inputs(vocab)[0]
    arch, model = build(name, seed=1)
    with torch.no_grad():
        model.shared.weight[1] /= 3.0  # build's EOS boost ends every row at once here
    return model, prompts(arch)


@pytest.mark.parametrize("name", ["encdec", "lm", "prefix_lm"])
def test_decoding_on_cuda_matches_cpu(name):
    """Greedy and beam decoding (cache writes, beam reorders of the cache, cross-attention
    K/V per example) give the CPU's ids in fp32 on the GPU, and run under bf16 autocast."""
    from t5kernel import decoding

    model, batch = _talking_model(name)
    cpu = {"greedy": model.generate(batch, 12),
           "beam": decoding.generate(model, batch, 12, num_beams=4)}
    assert max(len(set(row.tolist())) for row in cpu["greedy"]) >= 3, "degenerate outputs"
    if name == "encdec":  # finished rows (EOS, then padding) are decoded too
        assert any((row == 1).any() for row in cpu["greedy"]), "no row ended: a weak test"
    model.cuda()
    on_gpu = {k: v.cuda() for k, v in batch.items()}
    tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
    try:  # (the cuda backend tests above may have left TF32 on)
        gpu = {"greedy": model.generate(on_gpu, 12),
               "beam": decoding.generate(model, on_gpu, 12, num_beams=4)}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    for mode in cpu:
        assert gpu[mode].device.type == "cuda"
        assert torch.equal(gpu[mode].cpu(), cpu[mode]), mode
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = decoding.generate(model, on_gpu, 12, num_beams=4)
    assert low.shape[0] == cpu["beam"].shape[0]
