"""Runs survive being killed, corrupted checkpoints, pickled payloads, full disks and
non-finite losses (issue 9): a real ``t5k run`` in a subprocess is SIGKILLed mid-stage and
resumed to the same losses, bit for bit."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from t5kernel import checkpoint as ckpt
from t5kernel.cli import main
from t5kernel.testing import TINY_OVERRIDES

#: pre-training only (the demo tasks are dropped by no_tasks.yaml), a checkpoint every
#: step, a logging window (3) that checkpoints cut in two
PRETRAIN = [o for o in TINY_OVERRIDES if not o.startswith("tasks.")] + [
    "pretrain.steps=40", "pretrain.checkpoint_every=2", "pretrain.log_every=3",
    "finetune.steps=0", "keep_checkpoints=2", "model.dropout_rate=0.1"]


def _config(folder: Path) -> Path:
    path = folder / "no_tasks.yaml"
    path.write_text("tasks: {}\n")
    return path


def _cmd(config: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "t5kernel.cli", "run", "--quiet", "--config", str(config),
            *PRETRAIN, f"run_dir={run_dir}", *extra]


def _env() -> dict[str, str]:
    env = {**os.environ, "T5K_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def _metrics(run_dir: Path) -> list[str]:
    """The loss lines of metrics.jsonl as written (text: bit-identical means equal)."""
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.dumps({k: r[k] for k in ("step", "loss", "lr")})
            for r in map(json.loads, rows) if "loss" in r]


def _kill_mid_stage(config: Path, run_dir: Path, latest: float) -> bool:
    """Start a run and SIGKILL it at an arbitrary moment up to ``latest`` seconds after
    its step-6 checkpoint; False when the run finished first (on a fast machine the rest
    of its stage takes well under a second)."""
    proc = subprocess.Popen(_cmd(config, run_dir), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (run_dir / "checkpoints" / "step_6").exists():  # mid pre-training
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, latest))  # an arbitrary moment
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return not (run_dir / "results.json").exists()  # written as the run ends


def test_sigkill_mid_stage_then_resume_gives_the_same_losses(tmp_path):
    config = _config(tmp_path)
    whole = tmp_path / "whole"
    out = subprocess.run(_cmd(config, whole), env=_env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    for attempt in range(5):
        killed = tmp_path / f"killed{attempt}"
        if _kill_mid_stage(config, killed, latest=0.3 / 2**attempt):
            break
    else:
        pytest.fail("five runs finished before they could be killed mid-stage")
    steps = ckpt.list_steps(killed / "checkpoints")
    assert steps and steps[-1] < 40
    out = subprocess.run(_cmd(config, killed, "resume=true"), env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _metrics(killed) == _metrics(whole)
    assert not [p for p in (killed / "checkpoints").iterdir() if p.name.startswith(".")]
    a = ckpt.load(whole / "checkpoints" / "step_40")[0]
    b = ckpt.load(killed / "checkpoints" / "step_40")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _short_run(tmp_path: Path, name: str, *extra: str) -> tuple[int, Path]:
    config = _config(tmp_path)
    run_dir = tmp_path / name
    short = [*PRETRAIN, "pretrain.steps=6", "pretrain.checkpoint_every=2",
             "pretrain.log_every=1", "keep_checkpoints=5"]
    code = main(["run", "--quiet", "--config", str(config), *short, f"run_dir={run_dir}",
                 *extra])
    return code, run_dir


def test_resume_skips_a_corrupted_latest_checkpoint(tmp_path, capsys):
    code, run_dir = _short_run(tmp_path, "r")
    assert code == 0
    want = _metrics(run_dir)
    latest = run_dir / "checkpoints" / "step_6"
    data = bytearray((latest / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte of the weights
    (latest / "model.safetensors").write_bytes(bytes(data))
    (run_dir / "results.json").unlink()
    with pytest.warns(UserWarning, match="step_6 is incomplete or corrupted"):
        assert main(["run", "--quiet", "--config", str(run_dir / "config.yaml"),
                     f"run_dir={run_dir}", "resume=true"]) == 0
    assert "continuing from step_4" in capsys.readouterr().out
    assert _metrics(run_dir) == want
    assert ckpt.verify(latest)  # rewritten by the resumed run


def test_a_checkpoint_with_a_pickled_payload_is_refused(tmp_path, capsys):
    code, run_dir = _short_run(tmp_path, "r")
    assert code == 0
    latest = run_dir / "checkpoints" / "step_6"

    class Payload:
        def __reduce__(self):
            return (print, ("payload ran",))

    trainer = torch.load(latest / "trainer.pt", weights_only=True)
    trainer["extra"] = Payload()
    torch.save(trainer, latest / "trainer.pt")
    manifest = json.loads((latest / "manifest.json").read_text())
    manifest["files"]["trainer.pt"] = ckpt.sha256_file(latest / "trainer.pt")
    (latest / "manifest.json").write_text(json.dumps(manifest))  # a "valid" forgery
    (run_dir / "results.json").unlink()
    capsys.readouterr()
    assert main(["run", "--quiet", "--config", str(run_dir / "config.yaml"),
                 f"run_dir={run_dir}", "resume=true"]) == 2
    captured = capsys.readouterr()
    assert "payload ran" not in captured.out + captured.err
    assert "refused: trainer.pt holds pickled Python objects" in captured.err
    assert captured.err.count("\n") == 1


def test_a_full_disk_while_checkpointing_stops_and_keeps_the_previous(tmp_path, capsys,
                                                                     monkeypatch):
    real_save, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 2:  # the second checkpoint's trainer state
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    code, run_dir = _short_run(tmp_path, "r")
    assert code != 0
    err = capsys.readouterr().err
    assert "No space left on device" in err and "earlier checkpoints are intact" in err
    assert ckpt.list_steps(run_dir / "checkpoints") == [2]
    assert ckpt.verify(run_dir / "checkpoints" / "step_2")
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(torch, "save", real_save)  # space again: the run resumes
    assert main(["run", "--quiet", "--config", str(run_dir / "config.yaml"),
                 f"run_dir={run_dir}", "resume=true"]) == 0
    assert ckpt.list_steps(run_dir / "checkpoints")[-1] == 6


def _nan_at(monkeypatch, calls) -> None:
    """Make the encdec model's loss NaN at the training forwards numbered in ``calls``."""
    from t5k_builtin.model.encdec import EncDecModel

    real, seen = EncDecModel.forward, []

    def forward(self, batch, *a, **k):
        out = real(self, batch, *a, **k)
        if self.training:
            seen.append(1)
            if calls(len(seen)):
                out.loss_sum = out.loss_sum * float("nan")
        return out

    monkeypatch.setattr(EncDecModel, "forward", forward)


def test_a_nan_loss_stops_the_stage_and_keeps_the_good_checkpoints(tmp_path, capsys,
                                                                  monkeypatch):
    _nan_at(monkeypatch, lambda n: n >= 5)
    code, run_dir = _short_run(tmp_path, "r")
    assert code != 0
    err = capsys.readouterr().err
    assert "pretrain step 5: loss is nan; stopping" in err and err.count("\n") == 1
    assert ckpt.list_steps(run_dir / "checkpoints") == [2, 4]
    assert all(ckpt.verify(run_dir / "checkpoints" / f"step_{s}") for s in (2, 4))
    weights = ckpt.load(run_dir / "checkpoints" / "step_4")[0]
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not (run_dir / "results.json").exists()


def test_a_run_that_trained_keeps_its_directory_when_it_stops(tmp_path, capsys, monkeypatch):
    """Stopped by a NaN loss before its first checkpoint, the run keeps what it wrote:
    the losses logged up to the divergence (and its vocabulary). Only a run refused before
    training anything leaves no directory (test_run)."""
    _nan_at(monkeypatch, lambda n: n >= 5)
    code, run_dir = _short_run(tmp_path, "r", "pretrain.checkpoint_every=0")
    assert code != 0
    assert "pretrain step 5: loss is nan; stopping" in capsys.readouterr().err
    assert [json.loads(x)["step"] for x in _metrics(run_dir)] == [1, 2, 3, 4]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "vocab").is_dir()
    assert not (run_dir / "checkpoints").exists()


def test_a_nan_read_at_the_next_log_names_its_own_step(tmp_path, capsys, monkeypatch):
    """loss.nonfinite=stop reads the losses only when it logs or checkpoints: a NaN at
    the first step of a 3-step window (step 4) is reported as that step, not as the
    window's last, the window is not logged, and the checkpoint before it is all that is
    written."""
    _nan_at(monkeypatch, lambda n: n >= 4)
    code, run_dir = _short_run(tmp_path, "r", "pretrain.log_every=3",
                               "pretrain.checkpoint_every=3")
    assert code != 0
    assert "pretrain step 4: loss is nan; stopping" in capsys.readouterr().err
    assert [json.loads(x)["step"] for x in _metrics(run_dir)] == [3]
    assert ckpt.list_steps(run_dir / "checkpoints") == [3]
    weights = ckpt.load(run_dir / "checkpoints" / "step_3")[0]
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_nan_steps_can_be_skipped_and_are_counted(tmp_path, capsys, monkeypatch):
    _nan_at(monkeypatch, lambda n: n in (3, 4))
    code, run_dir = _short_run(tmp_path, "skip", "loss.nonfinite=skip")
    assert code == 0, capsys.readouterr().err
    results = json.loads((run_dir / "results.json").read_text())
    assert results["stages"]["pretrain"]["skipped_steps"] == 2
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("skipped")] == [3, 4]  # as the log counts
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 5, 6]  # steps 3, 4: no loss
    # no update at a skipped step: step_4's weights are step_2's
    a = ckpt.load(run_dir / "checkpoints" / "step_2")[0]
    b = ckpt.load(run_dir / "checkpoints" / "step_4")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # more skips than allowed stop the stage
    monkeypatch.undo()
    _nan_at(monkeypatch, lambda n: n in (3, 4))
    code, _ = _short_run(tmp_path, "limit", "loss.nonfinite=skip", "loss.max_skipped_steps=1")
    assert code != 0
    assert "more than loss.max_skipped_steps=1 steps of pretrain skipped" in (
        capsys.readouterr().err)


def test_evaluating_checkpoints_leaves_the_training_draws_alone(tmp_path, monkeypatch):
    """With the paper's dropout 0.1, fine-tuning's losses are the same whether its
    checkpoints are evaluated or not, and a run resumed after an evaluation goes on as the
    uninterrupted one. Evaluation here draws from the global generator at every checkpoint
    (as a once-per-process cost, e.g. a first decode's kernel timing, would in a resumed
    run only); every training step draws from its own seed (runloop.step_seed)."""
    from t5kernel.runloop import Runner

    real = Runner.evaluate

    def evaluate(self, comps):
        torch.rand(3)
        return real(self, comps)

    monkeypatch.setattr(Runner, "evaluate", evaluate)
    args = ["run", "--quiet", *TINY_OVERRIDES, "model.dropout_rate=0.1", "pretrain.steps=3",
            "finetune.steps=6", "finetune.checkpoint_every=2", "finetune.log_every=1",
            "keep_checkpoints=10", "eval.max_examples=2", "eval.after_training=false"]

    def finetune_losses(run_dir: Path) -> list[str]:
        return [line for line in _metrics(run_dir) if json.loads(line)["step"] > 3]

    evaluated, plain = tmp_path / "evaluated", tmp_path / "plain"
    assert main([*args, f"run_dir={evaluated}"]) == 0
    assert main([*args, f"run_dir={plain}", "eval.best_checkpoint_per_task=false"]) == 0
    assert len(finetune_losses(evaluated)) == 6
    assert finetune_losses(evaluated) == finetune_losses(plain)
    for step in ckpt.list_steps(evaluated / "checkpoints"):
        if step > 5:  # resume from the first fine-tuning checkpoint (step 5, evaluated)
            import shutil

            shutil.rmtree(evaluated / "checkpoints" / f"step_{step}")
    before = finetune_losses(plain)
    (evaluated / "metrics.jsonl").write_text("")  # only the resumed part is compared
    assert main(["run", "--quiet", "--config", str(evaluated / "config.yaml"),
                 f"run_dir={evaluated}", "resume=true"]) == 0
    assert finetune_losses(evaluated) == [x for x in before if json.loads(x)["step"] > 5]


def test_checkpoints_carry_the_loss_scaler_state(tmp_path, monkeypatch):
    """A backend with loss scaling (cuda in fp16) has its scaler state saved with every
    checkpoint and handed back on resume, so the resumed run scales as the uninterrupted
    one (the GPU itself is not needed for this contract: a CPU backend stands in)."""
    from t5k_builtin.backends.cpu import CpuBackend

    real_step = CpuBackend.step
    restored = []

    def step(self, loss, optimizer):
        self.scale = getattr(self, "scale", 1.0) * 2.0  # the state moves every step
        real_step(self, loss, optimizer)

    monkeypatch.setattr(CpuBackend, "step", step)
    monkeypatch.setattr(CpuBackend, "loss_scaler_state",
                        lambda self: {"scale": getattr(self, "scale", 1.0)}, raising=False)
    monkeypatch.setattr(CpuBackend, "set_loss_scaler_state",
                        lambda self, state: restored.append(dict(state)), raising=False)
    code, run_dir = _short_run(tmp_path, "r")
    assert code == 0
    saved = torch.load(run_dir / "checkpoints" / "step_4" / "trainer.pt", weights_only=True)
    assert saved["loss_scaler"] == {"scale": 2.0 ** 4}
    import shutil

    shutil.rmtree(run_dir / "checkpoints" / "step_6")
    (run_dir / "results.json").unlink()
    assert main(["run", "--quiet", "--config", str(run_dir / "config.yaml"),
                 f"run_dir={run_dir}", "resume=true"]) == 0
    assert restored == [{"scale": 2.0 ** 4}]


def test_every_step_and_process_draws_from_its_own_seed(tmp_path, monkeypatch):
    """Each training step reseeds the backend from (seed, rank, global step): the ranks
    of a multi-process run draw different dropout masks for their rows, and a resumed
    step draws what it drew before."""
    from t5k_builtin.backends.cpu import CpuBackend
    from t5kernel.runloop import step_seed

    seeds = []
    real = CpuBackend.seed
    monkeypatch.setattr(CpuBackend, "seed", lambda self, s: seeds.append(s) or real(self, s))
    code, _ = _short_run(tmp_path, "r", "seed=7")
    assert code == 0
    assert seeds[0] == 7  # model initialisation: the same on every rank
    assert seeds[-6:] == [step_seed(7, 0, step) for step in range(6)]
    assert len({step_seed(7, rank, step) for rank in range(8) for step in range(100)}) == 800


def test_a_stopped_run_resumes_from_its_token_caches_and_removes_them_at_the_end(
        tmp_path, capsys, monkeypatch):
    """Fine-tuning's tasks are tokenised into <run_dir>/cache/tasks once: a run stopped inside
    fine-tuning keeps them, its resumption reads them instead of tokenising again, and
    the finished run leaves no cache behind."""
    from t5kernel import data

    built = []
    real_build = data.build_task_cache

    def build(*args, **kwargs):
        built.append(real_build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(data, "build_task_cache", build)
    _nan_at(monkeypatch, lambda n: n >= 7)  # pre-training: 4 steps; fine-tuning's third
    run_dir = tmp_path / "r"
    args = ["run", "--quiet", *TINY_OVERRIDES, f"run_dir={run_dir}", "eval.max_examples=2"]
    assert main(args) != 0
    assert "finetune step 7: loss is nan" in capsys.readouterr().err
    caches = sorted(p.parent.name + "/" + p.name
                    for p in (run_dir / "cache" / "tasks").glob("*/*"))
    assert caches and all(c.startswith("48x32/") for c in caches)  # fine-tuning's lengths
    assert built and all(built)
    built.clear()
    monkeypatch.undo()  # finite losses again
    monkeypatch.setattr(data, "build_task_cache", build)
    assert main(["run", "--quiet", "--config", str(run_dir / "config.yaml"),
                 f"run_dir={run_dir}", "resume=true"]) == 0
    assert built and not any(built)  # every cache was complete: none rebuilt
    assert not (run_dir / "cache").exists()  # nothing else was cached: no empty cache/


def test_a_finite_loss_with_a_nan_update_writes_no_checkpoint(tmp_path, capsys):
    """A learning rate far too large: the loss of the step is finite, the update makes
    the weights NaN; the checkpoint that would hold them is not written (the loss check
    sees it only a step later)."""
    code, run_dir = _short_run(tmp_path, "huge", "pretrain.schedule.name=constant",
                               "pretrain.schedule.value=1e38", "pretrain.checkpoint_every=1")
    assert code != 0
    err = capsys.readouterr().err
    assert "is not finite after the update" in err, err
    for step in ckpt.list_steps(run_dir / "checkpoints"):
        weights = ckpt.load(run_dir / "checkpoints" / f"step_{step}")[0]
        assert all(torch.isfinite(v).all() for v in weights.values()), step
