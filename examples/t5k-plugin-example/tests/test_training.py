"""End to end through the kernel: a tiny ``t5k run`` pre-trains with ``ul2``.

Needs the plugin installed (its entry point is how the kernel finds it) and takes
about 20 s, hence ``slow``; t5kernel's own suite runs the same check in a subprocess.
"""

from __future__ import annotations

import math

import pytest
from t5kernel.testing import logged_losses, pretrain_only_run


@pytest.mark.slow
def test_a_tiny_run_trains_with_ul2(tmp_path):
    run_dir = pretrain_only_run(
        tmp_path, "ul2", "objective.name=ul2",
        # the X-denoisers' targets are about as long as their inputs (UL2 uses 512/512)
        "pretrain.targets_length=32",
        "finetune.steps=0",
    )
    losses = logged_losses(run_dir)
    assert losses and all(math.isfinite(x) for x in losses)
    assert "name: ul2" in (run_dir / "config.yaml").read_text()
