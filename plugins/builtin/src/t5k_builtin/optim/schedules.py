"""Learning-rate schedules of the paper (facts §5.2).

``step`` is the 0-based global step: the number of optimizer updates already done when
the rate is computed, i.e. MTF's ``tf.train.get_or_create_global_step()`` as passed to
``learning_rate_schedule_noam`` (MTF:mesh_tensorflow/transformer/learning_rate_schedules.py).
So step 0 is the first update and gets 1/sqrt(10^4) = 0.01.
"""

from __future__ import annotations

import math
from typing import Any

from t5kernel.errors import ConfigError


class Rsqrt:
    """``lr(step) = 1/sqrt(max(step, warmup_steps))`` (MTF ``learning_rate_schedule_noam``).

    Pre-training uses it with ``linear_decay_fraction = 0`` (gin ``rsqrt_no_ramp_down``).
    With a fraction f > 0 the rate is also multiplied by
    ``min(1, (total - step) / (total * f))`` where ``total`` is
    ``context.extras["total_steps"]`` — MTF's default f = 0.1 ramp-down, which the paper's
    runs did *not* use.  The factor is floored at 0 for steps past ``total``.
    """

    def __init__(self, config: Any, context: Any = None) -> None:
        if config.warmup_steps < 1:
            raise ConfigError(
                f"rsqrt schedule: warmup_steps must be >= 1, got {config.warmup_steps}"
            )
        if not 0.0 <= config.linear_decay_fraction <= 1.0:
            raise ConfigError(
                "rsqrt schedule: linear_decay_fraction must be in [0, 1], got "
                f"{config.linear_decay_fraction}"
            )
        self.warmup_steps = config.warmup_steps
        self.linear_decay_fraction = config.linear_decay_fraction
        self.total_steps: int | None = None
        if self.linear_decay_fraction > 0:
            extras = getattr(context, "extras", None) or {}
            total = extras.get("total_steps")
            if not isinstance(total, int) or total < 1:
                raise ConfigError(
                    "rsqrt schedule: linear_decay_fraction > 0 needs a positive integer "
                    f"context.extras['total_steps'], got {total!r}"
                )
            self.total_steps = total

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"rsqrt schedule: step must be >= 0, got {step}")
        lr = 1.0 / math.sqrt(max(step, self.warmup_steps))
        if self.total_steps is not None:
            ramp = (self.total_steps - step) / (self.total_steps * self.linear_decay_fraction)
            lr *= min(1.0, max(0.0, ramp))
        return lr


class Constant:
    """A constant rate (fine-tuning: 0.001, gin ``constant_0_001.gin``)."""

    def __init__(self, config: Any, context: Any = None) -> None:
        if not (config.value >= 0 and math.isfinite(config.value)):
            raise ConfigError(
                f"constant schedule: value must be a finite number >= 0, got {config.value}"
            )
        self.value = float(config.value)

    def __call__(self, step: int) -> float:
        return self.value
