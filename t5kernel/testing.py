"""A small testing kit for plugin authors and for t5kernel's own tests.

``fake_distribution`` writes an *installed* distribution (a ``.dist-info`` folder with
``METADATA`` and ``entry_points.txt``, plus its hooks module) into a folder that the
caller puts on ``sys.path`` — the same thing pip leaves in site-packages, without a
build. ``tiny_overrides`` are config overrides that make ``t5k run`` finish in seconds.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from t5kernel.api import ENTRY_POINT_GROUP


def fake_distribution(root: Path, dist: str, module: str, hooks_source: str,
                      version: str = "1.0", entry_name: str | None = None,
                      extra_modules: dict[str, str] | None = None) -> Path:
    """Create ``root/<module>.py`` and ``root/<dist>-<version>.dist-info``; return root."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(hooks_source))
    for name, source in (extra_modules or {}).items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{entry_name or module} = {module}\n")
    return root


#: Overrides that shrink the embedded default to a seconds-long smoke run.
TINY_OVERRIDES: list[str] = [
    "vocabulary.size=300",
    "vocabulary.max_training_texts=1500",
    "model.num_layers=1",
    "model.d_model=32",
    "model.d_ff=64",
    "model.d_kv=8",
    "model.num_heads=2",
    "pretrain.steps=4",
    "pretrain.batch_size=4",
    "pretrain.inputs_length=32",
    "pretrain.targets_length=16",
    "pretrain.log_every=2",
    "finetune.steps=4",
    "finetune.batch_size=4",
    "finetune.inputs_length=48",
    "finetune.targets_length=32",
    "finetune.log_every=2",
    "finetune.checkpoint_every=2",
    "eval.max_examples=8",
    "eval.max_decode_length=8",
    "tasks.demo_acceptability.num_train=40",
    "tasks.demo_acceptability.num_validation=8",
    "tasks.demo_summarize.num_train=40",
    "tasks.demo_summarize.num_validation=8",
    "tasks.demo_pig_latin.num_train=40",
    "tasks.demo_pig_latin.num_validation=8",
]


def pretrain_only_run(folder: Path, name: str, *overrides: str) -> Path:
    """``t5k run`` of the tiny model with no downstream tasks (pre-training only) into
    ``folder/name``; returns the run directory (backend tests compare such runs)."""
    from t5kernel.cli import main

    folder = Path(folder)
    config = folder / "no_tasks.yaml"
    config.write_text("tasks: {}\n")  # a file's task set replaces the default one
    run_dir = folder / name
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("tasks.")] + ["finetune.steps=0"]
    code = main(["run", "--quiet", "--config", str(config), *tiny, f"run_dir={run_dir}",
                 *overrides])
    if code != 0:
        raise AssertionError(f"t5k run into {run_dir} exited with {code}")
    return run_dir


def logged_losses(run_dir: Path) -> list[float]:
    """The training losses logged in ``run_dir/metrics.jsonl``, in order."""
    import json

    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def unchecked(config_cls, **options):
    """A ``config_cls()`` with ``options`` set after construction, past its
    ``__post_init__`` range checks, so that a test exercises the plugin's own checks."""
    config = config_cls()
    for key, value in options.items():
        setattr(config, key, value)
    return config
