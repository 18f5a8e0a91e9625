"""The plugin's registration record and its config dataclass's range checks."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
from omegaconf import OmegaConf
from t5kernel.api import PluginSpec
from t5kernel.errors import ConfigError

from t5k_plugin_example import hooks
from t5k_plugin_example.config import Ul2Config


def test_hooks_yield_one_objective_with_a_lazy_target():
    specs = list(hooks.t5k_objectives())
    assert len(specs) == 1
    spec = specs[0]
    assert isinstance(spec, PluginSpec)
    assert (spec.name, spec.config) == ("ul2", Ul2Config)
    assert isinstance(spec.target, str)  # imported only when a run selects it
    module, _, attribute = spec.target.partition(":")
    assert getattr(importlib.import_module(module), attribute).name == "ul2"


def test_hooks_module_imports_no_numpy_or_torch():
    """The hooks module is imported by every ``t5k list-plugins``: it must stay light."""
    import subprocess
    import sys

    code = ("import sys, t5k_plugin_example.hooks; "
            "print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_defaults_are_the_papers_final_mixture():
    cfg = Ul2Config()
    denoisers = list(zip(cfg.mean_noise_span_lengths, cfg.noise_densities, cfg.span_modes,
                         strict=True))
    assert denoisers == [(3, 0.15, "[NLU]"), (8, 0.15, "[NLU]"), (3, 0.5, "[NLG]"),
                         (8, 0.5, "[NLG]"), (64, 0.15, "[NLG]"), (64, 0.5, "[NLG]")]
    assert cfg.prefix_lm_mode == "[S2S]"
    total = sum(cfg.span_weights) + cfg.prefix_lm_weight
    assert cfg.prefix_lm_weight / total == pytest.approx(0.2)
    assert len(set(cfg.span_weights)) == 1  # the span denoisers are sampled uniformly


def test_omegaconf_accepts_the_schema_and_list_overrides():
    """What the kernel does with a config section: structured merge, then to_object."""
    merged = OmegaConf.merge(OmegaConf.structured(Ul2Config),
                             {"span_weights": [0, 0, 1, 1, 0, 0], "prefix_lm_weight": 0})
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, Ul2Config) and cfg.span_weights == [0, 0, 1, 1, 0, 0]


@pytest.mark.parametrize("options, key", [
    ({"noise_densities": [0.15, 0.15, 0.5, 0.5, 0.15, 1.0]}, "noise_densities"),
    ({"noise_densities": [0.15, 0.15, 0.5, 0.5, 0.15, 0.0]}, "noise_densities"),
    ({"noise_densities": [0.15, 0.15, 0.5, 0.5, 0.15, float("nan")]}, "noise_densities"),
    ({"mean_noise_span_lengths": [3, 8, 3, 8, 64, 0.5]}, "mean_noise_span_lengths"),
    ({"mean_noise_span_lengths": [3, 8, 3, 8, 64, float("inf")]}, "mean_noise_span_lengths"),
    ({"span_weights": [1, 1, 1, 1, 1, -1]}, "span_weights"),
    ({"span_weights": [1, 1, 1, 1, 1, float("inf")]}, "span_weights"),
    ({"prefix_lm_weight": -0.5}, "prefix_lm_weight"),
    ({"prefix_lm_weight": True}, "prefix_lm_weight"),
    ({"span_weights": [0] * 6, "prefix_lm_weight": 0}, "prefix_lm_weight"),
    ({"span_modes": ["[NLU]"]}, "span_modes"),  # lists of different lengths
    ({"span_modes": ["[NLU]", "[NLU]", "[NLG]", "[NLG]", "[NLG]", 3]}, "span_modes"),
    ({"prefix_lm_mode": None}, "prefix_lm_mode"),
    ({"concat_documents": 0}, "concat_documents"),
    ({"max_document_tokens": 1.5}, "max_document_tokens"),
])
def test_out_of_range_values_are_refused_naming_the_field(options, key):
    with pytest.raises(ConfigError, match=rf"^{key}=.* is out of range; allowed: "):
        Ul2Config(**options)


def test_replace_reruns_the_checks():
    """The objective re-checks a config changed after construction this way."""
    cfg = Ul2Config()
    cfg.noise_densities = [0.15] * 5 + [2.0]
    with pytest.raises(ConfigError, match="noise_densities"):
        dataclasses.replace(cfg)


def test_fewer_denoisers_and_no_s_denoiser_are_allowed():
    cfg = Ul2Config(mean_noise_span_lengths=[3], noise_densities=[0.15], span_modes=[""],
                    span_weights=[1], prefix_lm_weight=0)
    assert cfg.span_modes == [""]
