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
weights) and ``DST/checkpoints/step_0``.

DST must be new or an empty folder. Either way the output is written into a temporary
sibling folder (``.DST.<random>.tmp``), fsynced, and renamed onto DST at the end, so DST
appears complete or not at all: a failed conversion removes the temporary folder (a hard
kill may leave it behind, never a half-written DST). A write failure (disk full, ...)
is a CheckpointError naming DST.
"""

from __future__ import annotations

import json
import os
import re
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
    from safetensors import SafetensorError

    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise DataError(f"{src} does not exist")
    direction, run_dir, step_dir = _detect(src)
    if dst.is_symlink() and dst.is_dir():
        dst = dst.resolve()  # an empty folder behind a link: fill that folder
    if dst.exists() and not dst.is_dir():
        raise DataError(f"{dst} is a file; choose a new folder")
    if dst.exists() and any(dst.iterdir()):
        raise DataError(f"{dst} already exists and is not empty; choose a new folder")
    _check_parents(dst)
    messages: list[str] = []
    tmp = dst
    try:
        with ckpt.atomic_folder(dst) as tmp:  # onto a missing or empty dst
            if direction == "import":
                _import(src, tmp, _absolute(dst), registry, arch, messages.append)
            else:
                _export(run_dir, step_dir, tmp, registry, messages.append)
    except (OSError, SafetensorError) as exc:
        reason = (str(exc) or type(exc).__name__).replace(str(tmp), str(dst))
        raise CheckpointError(
            f"could not write {dst}: {reason}; nothing was left there") from exc
    for message in messages:
        say(message.replace(str(tmp), str(dst)))
    return direction


def _absolute(path: Path) -> Path:
    """``path`` made absolute through its parent's real location (it may not exist yet)."""
    return path.parent.resolve() / path.name


def _check_parents(dst: Path) -> None:
    """DataError when a parent of ``dst`` is a file (no folder can be made there)."""
    for parent in (dst.parent, *dst.parent.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise DataError(f"cannot create {dst}: {parent} is a file, not a folder")
            return


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


def _import(src: Path, work: Path, final: Path, registry: Any, arch: str,
            say: Callable[[str], Any]) -> None:
    """Write the import into ``work``; the paths in its config.yaml name ``final`` (the
    absolute place ``work`` is renamed to)."""
    from omegaconf import OmegaConf
    from safetensors import SafetensorError

    from t5kernel.config import compose, validate

    target = registry.get("architecture", arch).load()
    from_hf = getattr(target, "from_hf", None)
    if from_hf is None:
        raise ConfigError(f"architecture {arch!r} cannot import Hugging Face checkpoints "
                          "(its plugin has no from_hf)")
    options, state = from_hf(src)
    hf_vocabulary = getattr(target, "hf_vocabulary", None)
    vocabulary = hf_vocabulary(src, work) if hf_vocabulary is not None else None
    cfg = compose()
    OmegaConf.update(cfg, "model", {"name": arch, **options}, merge=False)
    if vocabulary is not None:
        OmegaConf.update(cfg, "vocabulary", vocabulary, merge=False)
    cfg.init_checkpoint = str((work / "checkpoints" / "step_0").resolve())
    cfg = validate(cfg, registry)  # with the files where they are now, then
    # every path into ``work`` (the vocabulary's file, init_checkpoint) made one into ``final``
    cfg = OmegaConf.create(_repoint(OmegaConf.to_container(cfg), work.resolve(), final))
    try:
        ckpt.save(work / "checkpoints", 0, state, {},
                  {"step": 0, "stage": "import", "source": str(src.resolve())})
    except CheckpointError as exc:  # a write failure: reported by convert, naming DST
        if isinstance(exc.__cause__, (OSError, SafetensorError)):
            raise exc.__cause__ from None
        raise
    ckpt.atomic_write_text(work / "config.yaml", OmegaConf.to_yaml(cfg))
    # (convert prints these once ``work`` is in place, with DST for ``work``)
    say(f"imported {src} -> {work / 'checkpoints' / 'step_0'} ({arch}, {len(state)} tensors)")
    if vocabulary is None:
        say(f"warning: {src} has no tokenizer t5k can use; {work / 'config.yaml'} keeps the "
            "default vocabulary: set vocabulary.model_file to the model's SentencePiece file")
    say(f"train from it: t5k run --config {work / 'config.yaml'}")


def _repoint(value: Any, old: Path, new: Path) -> Any:
    """``value`` (plain containers) with each string path at or under ``old`` moved to ``new``."""
    if isinstance(value, dict):
        return {k: _repoint(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_repoint(v, old, new) for v in value]
    if isinstance(value, str) and (value == str(old) or value.startswith(str(old) + os.sep)):
        return str(new) + value[len(str(old)):]
    return value


def _export(run_dir: Path, step_dir: Path, dst: Path, registry: Any,
            say: Callable[[str], Any]) -> None:
    from t5kernel.config import plugin_config, run_config_to_decode

    cfg = run_config_to_decode(run_dir / "config.yaml", [], registry, say, tasks=True)
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
    try:
        ckpt.load_model_weights(model, step_dir)
    except CheckpointError:
        _refuse_added_layers(cfg, registry, ctx, model, step_dir)
        raise
    to_hf(model, vocab.vocab_size, dst, vocabulary=vocab)
    say(f"exported {step_dir} ({name}) -> {dst}")


def _refuse_added_layers(cfg: Any, registry: Any, ctx: BuildContext, model: Any,
                         step_dir: Path) -> None:
    """ConfigError when ``step_dir`` was written while fine-tuning with a strategy that adds
    layers to the model (adapters): those have no Hugging Face T5 equivalent."""
    from t5kernel.config import plugin_config

    try:
        stages = json.loads((step_dir / "state.json").read_text()).get("stage_steps", {})
    except (OSError, ValueError, AttributeError):
        return
    if "finetune" not in stages:
        return
    section = cfg.finetune.strategy
    try:
        record = registry.get("finetune", str(section.name))
        strategy = registry.build("finetune", record.name, plugin_config(section, record), ctx)
        before = set(model.state_dict())
        strategy.setup(model, int(cfg.finetune.steps))
        added = sorted(set(model.state_dict()) - before)
    except Exception:  # the plain load's error says enough then
        return
    if added:
        raise ConfigError(
            f"checkpoint {step_dir} was fine-tuned with finetune.strategy "
            f"{str(section.name)!r}, which adds layers to the model ({len(added)} tensors, "
            f"e.g. {added[0]}); such layers (adapters) have no Hugging Face T5 equivalent, "
            f"so it cannot be exported: export a checkpoint from before fine-tuning, or "
            f"fine-tune with finetune.strategy.name=full"
        )
