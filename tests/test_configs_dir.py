"""Every shipped config under configs/ composes and validates against installed plugins."""

from pathlib import Path

import pytest

from t5kernel.config import compose, validate
from t5kernel.registry import Registry

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_validates(path):
    cfg = validate(compose([path]), Registry.discover(strict=True))
    assert cfg.model.name and cfg.objective.name


def test_baseline_full_size_is_the_papers_baseline():
    cfg = validate(compose([CONFIGS[0].parent / "baseline_full_size.yaml"]),
                   Registry.discover(strict=True))
    m = cfg.model
    assert (m.num_layers, m.d_model, m.d_ff, m.d_kv, m.num_heads) == (12, 768, 3072, 64, 12)
    assert (cfg.pretrain.steps, cfg.pretrain.batch_size) == (2**19, 128)
    assert cfg.finetune.steps == 2**18 and cfg.finetune.schedule.value == 1e-3
    assert cfg.loss.z_loss == 1e-4 and cfg.loss.denominator == "constant"
