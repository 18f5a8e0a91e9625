"""Size presets: ``<section>.size`` expands a plugin's PRESETS during composition."""

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import pytest
from omegaconf import OmegaConf

from t5k_builtin.configs import EncDecConfig
from t5kernel.config import RunConfig, compose, validate
from t5kernel.errors import ConfigError
from t5kernel.registry import ACTIVE, PluginRecord, Registry

MODEL_DIR = Path(__file__).resolve().parent.parent / "configs" / "model"
DIMS = ("num_layers", "num_decoder_layers", "d_model", "d_ff", "d_kv", "num_heads")


@pytest.fixture(scope="module")
def registry():
    return Registry.discover(strict=True)


def _dims(cfg):
    return {k: cfg.model.get(k) for k in DIMS}


def test_paper_sizes_are_the_papers():
    """facts §1.9 and §3.6 ("2x", "4x"): L, d_model, d_ff, d_kv, heads."""
    expected = {
        "small": (6, 512, 2048, 64, 8), "base": (12, 768, 3072, 64, 12),
        "large": (24, 1024, 4096, 64, 16), "3B": (24, 1024, 16384, 128, 32),
        "11B": (24, 1024, 65536, 128, 128), "2x": (16, 1024, 4096, 64, 16),
        "4x": (32, 1024, 4096, 64, 16), "tiny": (2, 128, 512, 32, 4),
    }
    got = {name: tuple(p[k] for k in ("num_layers", "d_model", "d_ff", "d_kv", "num_heads"))
           for name, p in EncDecConfig.PRESETS.items()}
    assert got == expected
    assert all(p["num_decoder_layers"] is None for p in EncDecConfig.PRESETS.values())


def test_tiny_is_the_embedded_default():
    model = RunConfig().model
    assert {k: model[k] for k in DIMS if k in model} == {
        k: v for k, v in EncDecConfig.PRESETS["tiny"].items() if v is not None}


def test_model_config_files_equal_the_presets():
    files = {p.stem: p for p in MODEL_DIR.glob("*.yaml")}
    assert set(files) == set(EncDecConfig.PRESETS)
    for name, path in files.items():
        assert OmegaConf.to_container(OmegaConf.load(path)) == {
            "model": EncDecConfig.PRESETS[name]}, name


@pytest.mark.parametrize("name", sorted(EncDecConfig.PRESETS))
def test_size_override_equals_config_file(registry, name):
    by_size = validate(compose([], [f"model.size={name}"], registry), registry)
    by_file = validate(compose([MODEL_DIR / f"{name}.yaml"]), registry)
    assert by_size.model.size == name  # recorded in the saved config
    assert _dims(by_size) == _dims(by_file) == EncDecConfig.PRESETS[name]


def test_size_replaces_earlier_layers_and_yields_to_same_or_later(registry, tmp_path):
    cfg = compose([], ["model.size=base"], registry)
    assert cfg.model.num_layers == 12  # the embedded default's 2 layers are replaced
    for order in (["model.size=base", "model.num_layers=6"],
                  ["model.num_layers=6", "model.size=base"]):
        cfg = compose([], order, registry)
        assert (cfg.model.num_layers, cfg.model.d_model) == (6, 768)
    f = tmp_path / "m.yaml"
    f.write_text("model:\n  size: large\n  num_heads: 8\n  num_decoder_layers: 3\n")
    cfg = compose([f], ["model.d_ff=100"], registry)
    assert (cfg.model.num_layers, cfg.model.num_decoder_layers, cfg.model.num_heads,
            cfg.model.d_ff, cfg.model.d_model) == (24, 3, 8, 100, 1024)
    cfg = compose([f], ["model.size=small"], registry)  # a later size replaces the file's dims
    assert (cfg.model.num_layers, cfg.model.num_decoder_layers, cfg.model.num_heads) == (6, None, 8)


def test_size_with_a_new_plugin_in_the_same_layer(registry):
    cfg = validate(compose([], ["model.name=lm", "model.size=small"], registry), registry)
    assert (cfg.model.name, cfg.model.num_layers, cfg.model.d_model) == ("lm", 6, 512)
    cfg = validate(compose([], ["model.size=small", "model.name=prefix_lm"], registry), registry)
    assert (cfg.model.name, cfg.model.d_ff) == ("prefix_lm", 2048)


def test_saved_config_recomposes_identically(registry, tmp_path):
    cfg = validate(compose([], ["model.size=base", "model.num_layers=6"], registry), registry)
    saved = tmp_path / "config.yaml"
    saved.write_text(OmegaConf.to_yaml(cfg))
    again = validate(compose([saved], [], registry), registry)
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg)


def test_unknown_size_names_the_allowed_sizes(registry):
    with pytest.raises(ConfigError, match=r"model\.size='huge'.*allowed: tiny, small, base"):
        compose([], ["model.size=huge"], registry)


def test_size_of_a_plugin_without_presets_is_an_error(registry):
    with pytest.raises(ConfigError, match=r"optimizer\.size.*'adafactor' has no size presets"):
        compose([], ["optimizer.size=base"], registry)


def test_presets_are_generic_over_plugin_sections():
    """Any plugin section whose config declares PRESETS gets sizes; the registry decides."""

    @dataclasses.dataclass
    class FakeObjectiveConfig:
        PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"wide": {"width": 9, "depth": 2}}
        size: str | None = None
        width: int = 1
        depth: int = 1

    fake = Registry([PluginRecord("objective", "fake", "fake-dist", "0", ACTIVE,
                                  target=lambda c, ctx: None, config=FakeObjectiveConfig)])
    cfg = compose([], ["objective.name=fake", "objective.size=wide", "objective.depth=5"], fake)
    assert OmegaConf.to_container(cfg.objective) == {
        "name": "fake", "size": "wide", "width": 9, "depth": 5}
    with pytest.raises(ConfigError, match="allowed: wide"):
        compose([], ["objective.name=fake", "objective.size=narrow"], fake)


def test_size_without_presets_is_an_ordinary_option_when_the_plugin_has_it(registry):
    """vocabulary.size is sentencepiece's piece count, not a preset name."""
    cfg = validate(compose([], ["vocabulary.size=500", "model.size=small"], registry), registry)
    assert (cfg.vocabulary.size, cfg.model.num_layers) == (500, 6)
