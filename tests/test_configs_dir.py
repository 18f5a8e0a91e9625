"""Every shipped config under configs/ composes and validates against installed plugins."""

from pathlib import Path

import pytest

from t5kernel.config import compose, validate
from t5kernel.registry import Registry

ROOT = Path(__file__).resolve().parent.parent / "configs"
#: run configs; configs/paper/ holds table rows composed by t5k sweep (tests/test_sweep.py)
#: and only its baseline is a whole run config
CONFIGS = sorted([p for p in ROOT.rglob("*.yaml") if "paper" not in p.relative_to(ROOT).parts]
                 + [ROOT / "paper" / "baseline.yaml"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_validates(path):
    cfg = validate(compose([path]), Registry.discover(strict=True))
    assert cfg.model.name and cfg.objective.name


def test_baseline_full_size_is_the_papers_baseline():
    cfg = validate(compose([ROOT / "baseline_full_size.yaml"]),
                   Registry.discover(strict=True))
    m = cfg.model
    assert (m.num_layers, m.d_model, m.d_ff, m.d_kv, m.num_heads) == (12, 768, 3072, 64, 12)
    assert (cfg.pretrain.steps, cfg.pretrain.batch_size) == (2**19, 128)
    assert cfg.finetune.steps == 2**18 and cfg.finetune.schedule.value == 1e-3
    assert cfg.loss.z_loss == 1e-4 and cfg.loss.denominator == "constant"
    # none of the embedded demo's deviations from the paper (README, "Measured
    # trade-offs"): dropout 0.1, the rsqrt warm-up of 10^4, the optimizer state kept
    assert m.dropout_rate == 0.1 and cfg.pretrain.schedule.warmup_steps == 10_000
    assert cfg.finetune.reset_optimizer is False


@pytest.mark.parametrize("overlay, expected", [
    ("steps_4x", {"pretrain.steps": 2**21, "finetune.steps": 2**20, "model.num_layers": 12}),
    ("batch_4x", {"pretrain.batch_size": 512, "pretrain.steps": 2**19}),
    ("size_2x_steps_2x", {"model.num_layers": 16, "model.d_model": 1024, "model.num_heads": 16,
                          "pretrain.steps": 2**20, "finetune.steps": 2**19}),
    ("size_4x", {"model.num_layers": 32, "model.d_model": 1024, "pretrain.steps": 2**19}),
    ("ensemble_member", {"eval.ensemble_reduce": "mean_logit", "model.num_layers": 12}),
])
def test_scaling_overlays_are_the_papers_table_13_rows(overlay, expected):
    from omegaconf import OmegaConf

    root = ROOT
    cfg = validate(compose([root / "baseline_full_size.yaml", root / "scaling" / f"{overlay}.yaml"]),
                   Registry.discover(strict=True))
    for key, value in expected.items():
        assert OmegaConf.select(cfg, key) == value, key
