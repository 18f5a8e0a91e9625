"""Fine-tuning strategies end to end: the loss falls, the trainable count is reported,
resumption inside fine-tuning is exact, and `t5k eval` loads adapter checkpoints."""

import json
import shutil

import pytest

from t5kernel import checkpoint as ckpt
from t5kernel.cli import main
from t5kernel.testing import TINY_OVERRIDES

STRATEGIES = {
    "adapters": ["finetune.strategy.name=adapters", "finetune.strategy.inner_dim=16"],
    "gradual_unfreeze": ["finetune.strategy.name=gradual_unfreeze"],
}


@pytest.fixture(scope="module", params=sorted(STRATEGIES))
def finetuned(request, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ft") / request.param
    assert main(["run", "--quiet", *TINY_OVERRIDES, f"run_dir={run_dir}", "model.num_layers=2",
                 *STRATEGIES[request.param], "finetune.steps=24", "finetune.log_every=4",
                 "finetune.checkpoint_every=8", "keep_checkpoints=5", "eval.max_examples=4",
                 "eval.best_checkpoint_per_task=false"]) == 0
    return request.param, run_dir


def _losses(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r["loss"]) for r in rows if "loss" in r]


def test_loss_falls_and_trainable_parameters_are_reported(finetuned):
    strategy, run_dir = finetuned
    stage = json.loads((run_dir / "results.json").read_text())["stages"]["finetune"]
    finetune_losses = [loss for s, _, loss in _losses(run_dir) if s == "finetune"]
    assert finetune_losses[-1] < finetune_losses[0]
    counts = stage["trainable_parameters"]
    assert counts[0]["trainable"] < counts[0]["total"]
    if strategy == "gradual_unfreeze":  # two blocks per stack: a second episode at step 12
        assert [c["step"] for c in counts] == [0, 12]
        assert counts[1]["trainable"] == counts[1]["total"]  # the last episode trains all
    else:
        assert len(counts) == 1


def _stages(run_dir):
    """results.json's stages without the wall-clock figures."""
    stages = json.loads((run_dir / "results.json").read_text())["stages"]
    for info in stages.values():
        info.pop("seconds", None)
    return stages


@pytest.mark.parametrize("where", ["pretrain_end", "finetune"])
def test_resume_inside_finetuning_is_exact(finetuned, tmp_path, where):
    """Resumed from pre-training's last checkpoint or the first fine-tuning one, the run
    logs the same losses and reports the same stages (trainable sets, corpus passes)."""
    _, run_dir = finetuned
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    steps = ckpt.list_steps(copy / "checkpoints")
    # pre-training takes 4 steps; its last checkpoint, or the first fine-tuning one
    resume_from = 4 if where == "pretrain_end" else [s for s in steps if s > 4][0]
    assert resume_from in steps
    for step in steps:
        if step > resume_from:
            shutil.rmtree(copy / "checkpoints" / f"step_{step}")
    (copy / "results.json").unlink()
    assert main(["run", "--quiet", "--config", str(copy / "config.yaml"), f"run_dir={copy}",
                 "resume=true"]) == 0
    assert _losses(copy) == _losses(run_dir)
    assert _stages(copy) == _stages(run_dir)
    assert "corpus" in _stages(copy)["pretrain"]


def test_eval_loads_the_strategys_checkpoint(finetuned):
    _, run_dir = finetuned
    assert main(["eval", str(run_dir), "--quiet", "--name", "again"]) == 0
    again = json.loads((run_dir / "evals" / "again" / "results.json").read_text())["eval"]
    assert again == json.loads((run_dir / "results.json").read_text())["eval"]


def test_fine_tune_only_ensemble(tmp_path):
    """P Table 13 "4x ensembled, fine-tune only" in miniature: one pre-trained model,
    fine-tuned twice with different seeds, decoded as an ensemble."""
    pre = tmp_path / "pre"
    base = ["run", "--quiet", *TINY_OVERRIDES, "eval.max_examples=4"]
    assert main([*base, f"run_dir={pre}", "finetune.steps=0"]) == 0
    init = ckpt.latest_valid(pre / "checkpoints")
    members = []
    for seed in (1, 2):
        run_dir = tmp_path / f"ft{seed}"
        assert main([*base, f"run_dir={run_dir}", f"seed={seed}", "pretrain.steps=0",
                     f"init_checkpoint={init}", f"vocabulary.model_file={pre / 'vocab' / 'spm.model'}",
                     "finetune.strategy.name=adapters", "finetune.strategy.inner_dim=8"]) == 0
        members.append(ckpt.latest_valid(run_dir / "checkpoints"))
    args = ["eval", str(tmp_path / "ft1"), "--quiet", "--name", "ens"]
    for member in members:
        args += ["--checkpoint", str(member)]
    assert main(args) == 0
    results = json.loads((tmp_path / "ft1" / "evals" / "ens" / "results.json").read_text())
    assert len(results["checkpoints"]) == 2 and set(results["eval"]) == {
        "demo_acceptability", "demo_pig_latin", "demo_summarize"}
