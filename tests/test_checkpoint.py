"""Atomic checkpoints with checksum manifests; corrupted ones are skipped, never trusted."""

import json

import pytest
import torch

from t5kernel import checkpoint as ckpt
from t5kernel.errors import CheckpointError


def _save(root, step, value=1.0):
    w = torch.full((3, 4), value)
    model = {"shared.weight": w, "alias.weight": w, "b": torch.arange(5.0)}
    trainer = {"optimizer": {"state": {0: {"step": 3, "v": torch.ones(2)}}, "param_groups": []},
               "rng": {"torch": torch.get_rng_state()}}
    return ckpt.save(root, step, model, trainer, {"step": step, "stage": "pretrain"})


def test_round_trip_and_manifest(tmp_path):
    path = _save(tmp_path, 10, 2.5)
    assert path.name == "step_10" and ckpt.verify(path)
    model, trainer, state = ckpt.load(path)
    assert torch.equal(model["shared.weight"], torch.full((3, 4), 2.5))
    assert torch.equal(model["alias.weight"], model["shared.weight"])  # tied weights survive
    assert trainer["optimizer"]["state"][0]["step"] == 3 and state["stage"] == "pretrain"
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "trainer.pt", "state.json"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    # every file gets the mode open() gives under the umask (safetensors alone wrote
    # 0600: colleagues could read a run's config but not its weights)
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
    assert modes["model.safetensors"] == modes["state.json"] == ckpt.default_mode()


def test_corrupted_checkpoint_falls_back_to_the_previous_one(tmp_path):
    _save(tmp_path, 1, 1.0)
    newest = _save(tmp_path, 2, 2.0)
    data = bytearray((newest / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (newest / "model.safetensors").write_bytes(bytes(data))
    assert not ckpt.verify(newest)
    with pytest.warns(UserWarning, match="corrupted"):
        assert ckpt.latest_valid(tmp_path).name == "step_1"
    with pytest.raises(CheckpointError, match="checksum"):
        ckpt.load(newest)


def test_truncated_checkpoint_without_manifest_is_ignored(tmp_path):
    _save(tmp_path, 1)
    partial = tmp_path / "step_5"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    with pytest.warns(UserWarning):
        assert ckpt.latest_valid(tmp_path).name == "step_1"


def test_failed_write_leaves_earlier_checkpoints_intact(tmp_path, monkeypatch):
    good = _save(tmp_path, 1)

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left.*intact"):
        _save(tmp_path, 2)
    assert ckpt.list_steps(tmp_path) == [1] and ckpt.verify(good)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_prune_keeps_the_newest_and_protected(tmp_path):
    for s in (1, 2, 3, 4):
        _save(tmp_path, s)
    ckpt.prune(tmp_path, keep_last=2, protect={1})
    assert ckpt.list_steps(tmp_path) == [1, 3, 4]


def test_trainer_state_loads_without_pickle(tmp_path, capsys):
    path = _save(tmp_path, 1)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, path / "trainer.pt")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["trainer.pt"] = ckpt.sha256_file(path / "trainer.pt")
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert ckpt.verify(path)
    with pytest.raises(CheckpointError, match="refused: trainer.pt holds pickled Python"):
        ckpt.load(path)  # weights_only refuses arbitrary objects
    assert "pwned" not in capsys.readouterr().out
