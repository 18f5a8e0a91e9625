"""``t5k convert SRC DST``: Hugging Face checkpoint folders <-> t5kernel checkpoints.

The kernel knows no Hugging Face format; it asks the architecture plugin, through the
registry, for three optional methods (see :class:`t5kernel.api.Architecture`):

- ``from_hf(folder) -> (model options, state dict)``, a classmethod of the plugin target;
- ``hf_vocabulary(folder, dst) -> vocabulary section | None``, a classmethod that copies
  the folder's tokenizer into ``dst``;
- ``to_hf(model, vocab_size, folder, vocabulary=None)``, on the built architecture.

The direction follows from SRC: a folder with ``config.json`` is imported (as
``--arch``, default ``encdec``); a run directory (``config.yaml``; its latest valid
checkpoint) or one of its ``checkpoints/step_N`` folders is exported. An import writes
``DST/config.yaml`` (the embedded default run with the model, the vocabulary and
``init_checkpoint`` set, so ``t5k run --config DST/config.yaml`` trains from the imported
weights) and ``DST/checkpoints/step_0``. DST must be new or empty; a failed conversion
removes what it wrote.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from t5kernel import checkpoint as ckpt
from t5kernel.api import BuildContext
from t5kernel.errors import CheckpointError, ConfigError, DataError, T5KError

_STEP_RE = re.compile(r"^step_\d+$")


def convert(src: Path, dst: Path, registry: Any, arch: str = "encdec",
            say: Callable[[str], Any] = print) -> str:
    """Convert ``src`` into ``dst``; returns ``"import"`` or ``"export"``."""
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise DataError(f"{src} does not exist")
    direction, run_dir, step_dir = _detect(src)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DataError(f"{dst} already exists and is not empty; choose a new folder")
    created = not dst.exists()
    dst.mkdir(parents=True, exist_ok=True)
    try:
        if direction == "import":
            _import(src, dst, registry, arch, say)
        else:
            _export(run_dir, step_dir, dst, registry, say)
    except BaseException:
        if created:
            shutil.rmtree(dst, ignore_errors=True)
        else:
            for child in dst.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return direction


def _detect(src: Path) -> tuple[str, Path | None, Path | None]:
    """("import", None, None) or ("export", run dir, checkpoint folder)."""
    if (src / "config.json").is_file():
        return "import", None, None
    if (src / "config.yaml").is_file():
        step = ckpt.latest_valid(src / "checkpoints")
        if step is None:
            raise CheckpointError(f"run directory {src} has no valid checkpoint to export")
        return "export", src, step
    run_dir = src.parent.parent
    if _STEP_RE.match(src.name) and src.parent.name == "checkpoints" and (
            run_dir / "config.yaml").is_file():
        return "export", run_dir, src
    raise DataError(
        f"{src} is neither a Hugging Face model folder (config.json), a t5k run directory "
        f"(config.yaml) nor a run's checkpoints/step_N folder"
    )


def _import(src: Path, dst: Path, registry: Any, arch: str, say: Callable[[str], Any]) -> None:
    from omegaconf import OmegaConf

    from t5kernel.config import compose, validate

    target = registry.get("architecture", arch).load()
    from_hf = getattr(target, "from_hf", None)
    if from_hf is None:
        raise ConfigError(f"architecture {arch!r} cannot import Hugging Face checkpoints "
                          "(its plugin has no from_hf)")
    options, state = from_hf(src)
    hf_vocabulary = getattr(target, "hf_vocabulary", None)
    vocabulary = hf_vocabulary(src, dst) if hf_vocabulary is not None else None
    step_dir = dst / "checkpoints" / "step_0"
    cfg = compose()
    OmegaConf.update(cfg, "model", {"name": arch, **options}, merge=False)
    if vocabulary is not None:
        OmegaConf.update(cfg, "vocabulary", vocabulary, merge=False)
    cfg.init_checkpoint = str(step_dir.resolve())
    cfg = validate(cfg, registry)
    ckpt.save(dst / "checkpoints", 0, state, {},
              {"step": 0, "stage": "import", "source": str(src.resolve())})
    ckpt.atomic_write_text(dst / "config.yaml", OmegaConf.to_yaml(cfg))
    say(f"imported {src} -> {step_dir} ({arch}, {len(state)} tensors)")
    if vocabulary is None:
        say(f"warning: {src} has no tokenizer t5k can use; {dst / 'config.yaml'} keeps the "
            "default vocabulary: set vocabulary.model_file to the model's SentencePiece file")
    say(f"train from it: t5k run --config {dst / 'config.yaml'}")


def _export(run_dir: Path, step_dir: Path, dst: Path, registry: Any,
            say: Callable[[str], Any]) -> None:
    from t5kernel.config import compose, plugin_config, validate

    cfg = validate(compose([run_dir / "config.yaml"]), registry)
    ctx = BuildContext(registry=registry, run_dir=run_dir, seed=int(cfg.seed))
    name = str(cfg.model.name)
    record = registry.get("architecture", name)
    arch = registry.build("architecture", name, plugin_config(cfg.model, record), ctx)
    to_hf = getattr(arch, "to_hf", None)
    if to_hf is None:
        raise ConfigError(f"architecture {name!r} has no Hugging Face equivalent to export "
                          "to (its plugin has no to_hf)")
    vocab_record = registry.get("vocabulary", str(cfg.vocabulary.name))
    try:
        vocab = registry.build("vocabulary", vocab_record.name,
                               plugin_config(cfg.vocabulary, vocab_record), ctx)
    except T5KError as exc:
        raise DataError(f"cannot rebuild the vocabulary of {run_dir}: {exc}") from None
    model = arch.build(vocab.vocab_size)
    ckpt.load_model_weights(model, step_dir)
    to_hf(model, vocab.vocab_size, dst, vocabulary=vocab)
    say(f"exported {step_dir} ({name}) -> {dst}")
