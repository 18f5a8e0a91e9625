"""Examples-proportional mixing with an artificial data-set size limit (facts §6; P §3.5.2).

``r_m = min(e_m, K) / sum_n min(e_n, K)``.  A corpus of unknown (streaming) size, such as
C4, is treated as "at least K" and gets ``K``, as the paper does for the unsupervised task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from t5kernel.errors import ConfigError


class Proportional:
    """Mixer whose rates are proportional to each corpus size capped at ``config.limit``."""

    def __init__(self, config: Any, context: Any = None) -> None:
        if not isinstance(config.limit, int) or config.limit < 1:
            raise ConfigError(
                f"proportional mixer: limit must be a positive integer, got {config.limit!r}"
            )
        self.limit = config.limit

    def rates(self, sizes: Mapping[str, int | None]) -> dict[str, float]:
        if not sizes:
            raise ConfigError("proportional mixer: no corpora to mix (sizes is empty)")
        capped: dict[str, int] = {}
        for name, size in sizes.items():
            if size is None:
                capped[name] = self.limit
                continue
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ConfigError(
                    f"proportional mixer: size of {name!r} must be an integer >= 0 or None, "
                    f"got {size!r}"
                )
            capped[name] = min(size, self.limit)
        total = sum(capped.values())
        if total == 0:
            raise ConfigError(
                "proportional mixer: every corpus has 0 examples; at least one must be non-empty"
            )
        return {name: n / total for name, n in capped.items()}
