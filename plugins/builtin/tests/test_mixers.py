"""Examples-proportional mixing with limit K (facts §6)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from t5k_builtin.configs import ProportionalMixerConfig
from t5k_builtin.mixers import Proportional
from t5kernel.api import BuildContext, Mixer
from t5kernel.errors import ConfigError
from t5kernel.testing import unchecked

K = 1000
sizes_strategy = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=4),
    st.one_of(st.none(), st.integers(0, 5 * K)),
    min_size=1,
    max_size=8,
).filter(lambda d: any(v is None or v > 0 for v in d.values()))


def _mixer(limit=K):
    return Proportional(ProportionalMixerConfig(limit=limit), BuildContext())


def test_paper_example_glue_weights_and_c4():
    # glue_v002_proportional-like sizes with C4 (unknown size) at K = 2^19
    sizes = {"c4": None, "cola": 8_551, "qqp": 363_849, "mnli": 392_702}
    rates = Proportional(ProportionalMixerConfig(), BuildContext()).rates(sizes)
    total = 2**19 + 8_551 + 363_849 + 392_702
    assert rates["c4"] == pytest.approx(2**19 / total)
    assert rates["cola"] == pytest.approx(8_551 / total)
    assert isinstance(_mixer(), Mixer)


def test_cap_applies():
    rates = _mixer(100).rates({"big": 10_000, "small": 50})
    assert rates == {"big": pytest.approx(2 / 3), "small": pytest.approx(1 / 3)}


@given(sizes_strategy)
def test_rates_sum_to_one_and_are_nonnegative(sizes):
    rates = _mixer().rates(sizes)
    assert set(rates) == set(sizes)
    assert math.isclose(sum(rates.values()), 1.0, rel_tol=1e-12)
    assert all(r >= 0 for r in rates.values())


@given(sizes_strategy)
def test_capped_corpora_share_equal_rates_and_order_is_monotone(sizes):
    rates = _mixer().rates(sizes)
    capped = [rates[n] for n, s in sizes.items() if s is None or s >= K]
    assert all(math.isclose(r, capped[0]) for r in capped)
    effective = {n: K if s is None else min(s, K) for n, s in sizes.items()}
    for a in sizes:
        for b in sizes:
            if effective[a] <= effective[b]:
                assert rates[a] <= rates[b] + 1e-15


@given(sizes_strategy, st.integers(1, 4 * K))
def test_ratio_equals_capped_size_ratio(sizes, extra):
    sizes = dict(sizes)
    sizes["zz_extra"] = extra
    rates = _mixer().rates(sizes)
    for name, size in sizes.items():
        eff = K if size is None else min(size, K)
        assert math.isclose(rates[name] / rates["zz_extra"], eff / min(extra, K), rel_tol=1e-9)


def test_errors():
    with pytest.raises(ConfigError, match="empty"):
        _mixer().rates({})
    with pytest.raises(ConfigError, match="0 examples"):
        _mixer().rates({"a": 0, "b": 0})
    with pytest.raises(ConfigError, match="size of 'a'"):
        _mixer().rates({"a": -3})
    with pytest.raises(ConfigError, match="limit"):
        _mixer(0)


# ------------------------------------------------------------- temperature / equal


def test_temperature_matches_the_closed_form():
    from t5k_builtin.configs import TemperatureMixerConfig
    from t5k_builtin.mixers import Temperature

    sizes = {"c4": None, "cola": 8_551, "qqp": 363_849, "rte": 2_490}
    for t in (1.0, 2.0, 4.0, 8.0):
        mixer = Temperature(TemperatureMixerConfig(temperature=t, limit=2**21), BuildContext())
        capped = {"c4": 2**21, "cola": 8_551, "qqp": 363_849, "rte": 2_490}
        weights = {k: v ** (1 / t) for k, v in capped.items()}
        total = sum(weights.values())
        rates = mixer.rates(sizes)
        assert rates == pytest.approx({k: w / total for k, w in weights.items()})
    # T = 1 is examples-proportional; higher T moves rates toward equal
    prop = Proportional(ProportionalMixerConfig(limit=2**21), BuildContext()).rates(sizes)
    t1 = Temperature(TemperatureMixerConfig(temperature=1.0, limit=2**21), None).rates(sizes)
    t8 = Temperature(TemperatureMixerConfig(temperature=8.0), None).rates(sizes)
    assert t1 == pytest.approx(prop)
    assert t8["rte"] > prop["rte"] and t8["c4"] < prop["c4"]


def test_temperature_and_equal_validate_their_input():
    from t5k_builtin.configs import TemperatureMixerConfig
    from t5k_builtin.mixers import Equal, Temperature

    with pytest.raises(ConfigError, match="temperature must be >= 1"):
        Temperature(unchecked(TemperatureMixerConfig, temperature=0.5), None)
    with pytest.raises(ConfigError, match="no corpora"):
        Equal().rates({})
    assert Equal().rates({"a": 5, "b": None, "c": 0}) == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}


def test_a_fixed_unsupervised_weight_joins_the_tasks_capped_weights():
    """T5's final mixtures (P §3.7; operative config: rate_unsupervised.value = 710000,
    rate_num_examples.maximum = 1e6): C4 has a fixed weight beside the tasks' K-capped
    ones, never itself capped or temperature-scaled."""
    from types import SimpleNamespace

    from t5k_builtin.mixers import Equal, Proportional, Temperature
    from t5kernel.runloop import Runner

    sizes = {"wmt_enfr": 40_000_000, "glue_rte": 2_490, "c4": 2_620_000}
    prop = Proportional(SimpleNamespace(limit=1_000_000))
    rates = Runner._mixing_rates(prop, sizes, "c4")
    total = 1_000_000 + 2_490 + 2_620_000
    assert rates == pytest.approx({"wmt_enfr": 1_000_000 / total, "glue_rte": 2_490 / total,
                                   "c4": 2_620_000 / total})
    temp = Temperature(SimpleNamespace(limit=1_000_000, temperature=2.0))
    rates = Runner._mixing_rates(temp, sizes, "c4")
    total = 1000.0 + 2_490 ** 0.5 + 2_620_000
    assert rates["c4"] == pytest.approx(2_620_000 / total)
    # size 0 (the studies): the corpus is "at least K" inside the mixer, as before
    capped = {"wmt_enfr": 40_000_000, "glue_rte": 2_490, "c4": None}
    assert Runner._mixing_rates(prop, capped, "c4") == prop.rates(capped)
    # a mixer without weights (equal) keeps its own rule
    assert Runner._mixing_rates(Equal(), sizes, "c4") == Equal().rates(sizes)
