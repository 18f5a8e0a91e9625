"""Learning-rate schedules (facts §5.2): values of MTF's learning_rate_schedule_noam."""

from __future__ import annotations

import math

import pytest

from t5k_builtin.configs import ConstantScheduleConfig, RsqrtScheduleConfig
from t5k_builtin.optim.schedules import Constant, Rsqrt
from t5kernel.api import BuildContext, Schedule
from t5kernel.errors import ConfigError


def test_rsqrt_paper_values():
    lr = Rsqrt(RsqrtScheduleConfig(), BuildContext())
    assert isinstance(lr, Schedule)
    assert lr(0) == pytest.approx(0.01)  # the first update (0-based global step 0)
    assert lr(1) == pytest.approx(0.01)
    assert lr(9_999) == pytest.approx(0.01)
    assert lr(10_000) == pytest.approx(0.01)
    assert lr(40_000) == pytest.approx(0.005)
    assert lr(2**19) == pytest.approx(2**-9.5)
    assert lr(1_000_000) == pytest.approx(0.001)
    values = [lr(s) for s in range(10_000, 200_000, 997)]
    assert all(
        a > b for a, b in zip(values, values[1:], strict=False)
    )  # strictly decreasing after warmup


def test_rsqrt_linear_ramp_down_as_mtf_default():
    total = 100_000
    ctx = BuildContext(extras={"total_steps": total})
    lr = Rsqrt(RsqrtScheduleConfig(warmup_steps=10_000, linear_decay_fraction=0.1), ctx)
    assert lr(50_000) == pytest.approx(1 / math.sqrt(50_000))  # before the last 10%
    assert lr(90_000) == pytest.approx(1 / math.sqrt(90_000))  # factor exactly 1 here
    assert lr(95_000) == pytest.approx(0.5 / math.sqrt(95_000))
    assert lr(99_000) == pytest.approx(0.1 / math.sqrt(99_000))
    assert lr(total) == 0.0
    assert lr(total + 5) == 0.0  # floored, never negative


def test_rsqrt_config_errors():
    with pytest.raises(ConfigError, match="total_steps"):
        Rsqrt(RsqrtScheduleConfig(linear_decay_fraction=0.1), BuildContext())
    with pytest.raises(ConfigError, match="warmup_steps"):
        Rsqrt(RsqrtScheduleConfig(warmup_steps=0), BuildContext())
    with pytest.raises(ConfigError, match="linear_decay_fraction"):
        Rsqrt(RsqrtScheduleConfig(linear_decay_fraction=1.5), BuildContext())


def test_constant():
    lr = Constant(ConstantScheduleConfig(), BuildContext())
    assert isinstance(lr, Schedule)
    assert lr(0) == lr(262_143) == 1e-3
    assert Constant(ConstantScheduleConfig(value=0.5))(7) == 0.5
    with pytest.raises(ConfigError, match="value"):
        Constant(ConstantScheduleConfig(value=-1.0), BuildContext())
