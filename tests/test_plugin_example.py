"""The example plugin distribution (examples/t5k-plugin-example) installs and runs.

It is built and installed with pip into a temporary folder, never into the current
environment, and every check runs in a subprocess with that folder on PYTHONPATH (entry
points are found on ``sys.path``, as for a site-packages install): ``t5k list-plugins``
must list its objective under its own distribution name, a tiny ``t5k run`` must train
with it, and the example's own tests must pass against the installed copy, so none of
it can rot unnoticed. Offline: ``--no-index --no-deps --no-build-isolation``.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from t5kernel.testing import TINY_OVERRIDES, logged_losses

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "t5k-plugin-example"
DIST, MODULE, OBJECTIVE = "t5k-plugin-example", "t5k_plugin_example", "ul2"


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120):
    out = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited with {out.returncode}\n"
                             f"--- stdout\n{out.stdout[-4000:]}\n--- stderr\n{out.stderr[-4000:]}")
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(folder the example is installed in, environment that puts it on sys.path)."""
    root = tmp_path_factory.mktemp("plugin_example")
    # build from a copy, so the build leaves nothing (build/, *.egg-info) in the tree
    source = root / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    site = root / "site"
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "--no-index", "--no-deps", "--no-build-isolation", "--target", str(site),
          str(source)], dict(os.environ), root, timeout=300)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return site, env, source


def test_the_current_environment_is_left_alone(installed):
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(DIST)
    site, env, _ = installed
    assert (site / MODULE / "hooks.py").is_file()
    assert any(site.glob(f"{MODULE}-*.dist-info/entry_points.txt"))


def test_list_plugins_shows_the_objective_under_its_own_distribution(installed, tmp_path):
    _, env, _ = installed
    out = _run([sys.executable, "-m", "t5kernel.cli", "list-plugins", "--json", "--kind",
                "objective"], env, tmp_path)
    records = {r["name"]: r for r in json.loads(out.stdout)}
    assert OBJECTIVE in records, sorted(records)
    record = records[OBJECTIVE]
    assert record["distribution"] == DIST
    assert record["status"] == "active" and record["error"] is None
    assert record["version"] == "0.1.0"
    assert records["span"]["distribution"] == "t5kernel-builtin"  # the builtins still there


def test_a_tiny_run_trains_with_the_plugins_objective(installed, tmp_path):
    _, env, _ = installed
    config = tmp_path / "no_tasks.yaml"
    config.write_text("tasks: {}\n")  # pre-training only
    run_dir = tmp_path / "run"
    tiny = [o for o in TINY_OVERRIDES if not o.startswith(("tasks.", "finetune."))]
    _run([sys.executable, "-m", "t5kernel.cli", "run", "--quiet", "--config", str(config),
          "--objective", OBJECTIVE, *tiny, "finetune.steps=0",
          # the X-denoisers' targets are about as long as their inputs (UL2 uses 512/512)
          "pretrain.targets_length=32", f"run_dir={run_dir}"], env, tmp_path, timeout=300)
    losses = logged_losses(run_dir)  # pre-training only: every logged loss is ul2's
    assert losses and all(math.isfinite(x) and x > 0 for x in losses), losses
    saved = (run_dir / "config.yaml").read_text()
    assert f"name: {OBJECTIVE}" in saved


def test_the_examples_own_tests_pass_against_the_installed_copy(installed):
    _, env, source = installed
    out = _run([sys.executable, "-c", f"import {MODULE}; print({MODULE}.__file__)"], env,
               source)
    assert str(installed[0]) in out.stdout  # not the source tree
    # its slow test trains through t5k run, which test_a_tiny_run_... above already does
    out = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m",
                "not slow", str(source / "tests")], env, source, timeout=300)
    assert " passed" in out.stdout and "failed" not in out.stdout
