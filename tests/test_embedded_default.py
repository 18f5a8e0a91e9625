"""The embedded default (`t5k run` with no arguments) learns, within its time budget.

Slow (several minutes on two cores): run with `tox -e slow` or `pytest -m slow`.
"""

import json
import time

import pytest

from t5kernel.cli import main


@pytest.mark.slow
def test_embedded_default_learns_and_beats_trivial_baselines(tmp_path):
    start = time.perf_counter()
    assert main(["run", "--quiet", f"run_dir={tmp_path / 'default'}"]) == 0
    elapsed = time.perf_counter() - start
    results = json.loads((tmp_path / "default" / "results.json").read_text())
    pre = results["stages"]["pretrain"]
    assert pre["last_loss"] < 0.6 * pre["first_loss"]
    ev, base = results["eval"], results["baselines"]
    assert ev["demo_acceptability"]["accuracy"] > base["demo_acceptability"]["majority_target"]["accuracy"]
    for task, metric in (("demo_summarize", "rouge1"), ("demo_pig_latin", "bleu")):
        assert ev[task][metric] > base[task]["copy_input"][metric], task
    # 454-481 s measured on two cores (1,040 fine-tuning steps are ~440 s of it); the
    # bound leaves room for a slower CI machine and catches a run that got much slower
    assert elapsed < 720, f"the embedded default took {elapsed:.0f}s (budget: 12 minutes)"
