"""The paper's three mixing rules (facts §6; P §3.5.2, Table 11).

- ``proportional``: ``r_m = min(e_m, K) / sum_n min(e_n, K)``;
- ``temperature``: the K-limited counts raised to ``1/T``, renormalised (seqio's
  ``mixing_rate_num_examples(maximum=K, temperature=T)``);
- ``equal``: every corpus the same rate.

A corpus of unknown (streaming) size, such as C4, is treated as "at least K" and gets
``K``, as the paper does for the unsupervised task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from t5kernel.errors import ConfigError


class Proportional:
    """Mixer whose rates are proportional to each corpus size capped at ``config.limit``."""

    name = "proportional"

    def __init__(self, config: Any, context: Any = None) -> None:
        if not isinstance(config.limit, int) or config.limit < 1:
            raise ConfigError(
                f"{self.name} mixer: limit must be a positive integer, got {config.limit!r}"
            )
        self.limit = config.limit

    def rates(self, sizes: Mapping[str, int | None]) -> dict[str, float]:
        return _normalised(self.weights(sizes), self.name)

    def weights(self, sizes: Mapping[str, int | None]) -> dict[str, float]:
        """The unnormalised weights (T5's ``rate_num_examples``: ``min(e, K)``), which a
        fixed weight such as the unsupervised task's ``rate_unsupervised`` can join."""
        return {k: float(v) for k, v in self._capped(sizes).items()}

    def _capped(self, sizes: Mapping[str, int | None]) -> dict[str, int]:
        if not sizes:
            raise ConfigError(f"{self.name} mixer: no corpora to mix (sizes is empty)")
        capped: dict[str, int] = {}
        for name, size in sizes.items():
            if size is None:
                capped[name] = self.limit
                continue
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ConfigError(
                    f"{self.name} mixer: size of {name!r} must be an integer >= 0 or None, "
                    f"got {size!r}"
                )
            capped[name] = min(size, self.limit)
        return capped


def _normalised(weights: Mapping[str, float], mixer: str) -> dict[str, float]:
    total = float(sum(weights.values()))
    if total == 0:
        raise ConfigError(
            f"{mixer} mixer: every corpus has 0 examples; at least one must be non-empty"
        )
    return {name: w / total for name, w in weights.items()}


class Temperature(Proportional):
    """``min(e_m, K) ** (1 / T)``, renormalised (P §3.5.2: T = 2, 4, 8 with K = 2^21)."""

    name = "temperature"

    def __init__(self, config: Any, context: Any = None) -> None:
        super().__init__(config, context)
        if not float(config.temperature) >= 1.0:
            raise ConfigError(
                f"temperature mixer: temperature must be >= 1, got {config.temperature!r}"
            )
        self.temperature = float(config.temperature)

    def weights(self, sizes: Mapping[str, int | None]) -> dict[str, float]:
        """``min(e, K) ** (1 / T)`` (T5's ``rate_num_examples(temperature=T)``)."""
        return {k: v ** (1.0 / self.temperature) for k, v in self._capped(sizes).items()}


class Equal:
    """Every corpus sampled at the same rate (P Table 11 "Equal")."""

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.config = config

    def rates(self, sizes: Mapping[str, int | None]) -> dict[str, float]:
        if not sizes:
            raise ConfigError("equal mixer: no corpora to mix (sizes is empty)")
        return {name: 1.0 / len(sizes) for name in sizes}
