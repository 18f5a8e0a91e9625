"""Checkpoints written atomically, with a manifest of checksums, loaded without pickle.

A checkpoint is a folder ``checkpoints/step_N/`` holding

- ``model.safetensors``: the weights,
- ``trainer.pt``: optimizer state and torch RNG state (tensors and plain Python values
  only; loaded with ``torch.load(weights_only=True)``, which never executes code),
- ``state.json``: step, stage, data-iterator position and anything else JSON-able,
- ``manifest.json``: SHA-256 of each file above.

It is written to a temporary sibling folder, fsynced, then renamed into place, so a crash
leaves either the previous checkpoint set or the complete new one; a checkpoint whose
checksums do not match is skipped with a warning in favour of the previous valid one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from t5kernel.errors import CheckpointError

MANIFEST = "manifest.json"
_STEP_RE = re.compile(r"^step_(\d+)$")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def default_mode(directory: bool = False) -> int:
    """The permissions ``open``/``mkdir`` would give under the current umask (temporary
    files are created 0600/0700, which must not leak into the results)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[Any]:
    """A text file to write that appears at ``path`` only once complete: written to a
    temporary sibling (with the umask's normal mode), fsynced, then renamed; on error the
    temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, default_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """A folder to fill that appears at ``path`` only once complete: a temporary sibling
    (with the umask's normal mode, its parents created), every file in it fsynced, then
    renamed onto ``path``, which may be missing or an empty folder; on error the temporary
    folder is removed and ``path`` is untouched (a hard kill may leave the hidden sibling,
    never a half-written ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, default_mode(directory=True))
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                with open(Path(folder) / name, "rb") as f:
                    os.fsync(f.fileno())
            _fsync_dir(Path(folder))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_open(path) as f:
        f.write(text)


def save(root: Path, step: int, model_state: dict[str, Any], trainer_state: dict[str, Any],
         state: dict[str, Any]) -> Path:
    """Write ``root/step_<step>`` atomically and return its path."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".step_{step}.", suffix=".tmp"))
    try:
        os.chmod(tmp, default_mode(directory=True))
        tensors = {k: v.detach().contiguous().cpu() for k, v in model_state.items()}
        save_file(_dedupe_shared(tensors), str(tmp / "model.safetensors"))
        os.chmod(tmp / "model.safetensors", default_mode())  # safetensors writes 0600
        torch.save(trainer_state, tmp / "trainer.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
        files = ["model.safetensors", "trainer.pt", "state.json"]
        manifest = {"step": step, "files": {name: sha256_file(tmp / name) for name in files}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        for name in [*files, MANIFEST]:
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    except (OSError, SafetensorError) as exc:  # safetensors reports I/O errors its own way
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"could not write checkpoint step_{step} in {root}: {exc}; earlier checkpoints are intact"
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _dedupe_shared(tensors: dict[str, Any]) -> dict[str, Any]:
    """safetensors refuses tensors sharing memory (tied weights): store clones."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in tensors.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out


def verify(path: Path) -> bool:
    """True when every file listed in the manifest exists with its checksum."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        return all(
            (path / name).is_file() and sha256_file(path / name) == digest
            for name, digest in manifest["files"].items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def list_steps(root: Path) -> list[int]:
    root = Path(root)
    if not root.is_dir():
        return []
    steps = []
    for child in root.iterdir():
        m = _STEP_RE.match(child.name)
        if m and child.is_dir():
            steps.append(int(m.group(1)))
    return sorted(steps)


def remove_temporaries(root: Path) -> list[str]:
    """Delete the temporary folders of checkpoint writes that a killed process left behind
    (``.step_N.*.tmp``); return their names. Only call it when no write is in progress."""
    root = Path(root)
    removed = []
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and child.name.startswith(".step_") and child.name.endswith(".tmp"):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child.name)
    return sorted(removed)


def latest_valid(root: Path) -> Path | None:
    """The newest checkpoint that passes :func:`verify`; warns about skipped ones."""
    for step in reversed(list_steps(root)):
        path = Path(root) / f"step_{step}"
        if verify(path):
            return path
        warnings.warn(f"checkpoint {path} is incomplete or corrupted (checksum mismatch); "
                      "falling back to the previous one", stacklevel=2)
    return None


def load(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(model state, trainer state, state.json) of a verified checkpoint."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if not verify(path):
        raise CheckpointError(f"checkpoint {path} fails its checksum manifest")
    model_state = load_file(str(path / "model.safetensors"))
    try:
        trainer_state = torch.load(path / "trainer.pt", weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} refused: trainer.pt holds pickled Python objects, not only "
            f"tensors and plain values ({first[:200]}); t5kernel never unpickles code — "
            "delete this checkpoint to resume from an earlier one") from None
    state = json.loads((path / "state.json").read_text())
    return model_state, trainer_state, state


def load_model_weights(model: Any, path: Path) -> None:
    """Initialise ``model`` from ``path/model.safetensors``, strictly.

    The checksum manifest is checked when there is one. CheckpointError names the missing
    and unexpected parameter names and the shape mismatches, so a checkpoint of another
    architecture or vocabulary fails with a readable message instead of half-loading.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / "model.safetensors"
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a folder)")
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {path} has no model.safetensors")
    if (path / MANIFEST).is_file() and not verify(path):
        raise CheckpointError(f"checkpoint {path} fails its checksum manifest")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint {weights} is not readable: {exc}") from None
    shapes = getattr(model, "state_dict_shapes", None)  # a sharded model (api.Backend)
    own = shapes() if callable(shapes) else {k: tuple(v.shape)
                                             for k, v in model.state_dict().items()}
    problems = []
    mismatched = [f"{k} {tuple(state[k].shape)} (model {tuple(v)})"
                  for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v)]
    for label, names in (("missing keys", sorted(set(own) - set(state))),
                         ("unexpected keys", sorted(set(state) - set(own))),
                         ("shape mismatches", mismatched)):
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            problems.append(f"{label}: {', '.join(names[:3])}{more}")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def prune(root: Path, keep_last: int, protect: set[int] = frozenset()) -> None:
    """Delete all but the newest ``keep_last`` checkpoints and those in ``protect``."""
    steps = list_steps(root)
    keep = set(steps[-keep_last:]) | set(protect)
    for step in steps:
        if step not in keep:
            shutil.rmtree(Path(root) / f"step_{step}", ignore_errors=True)
