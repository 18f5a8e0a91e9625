"""The paper's default fine-tuning strategy: update every parameter (P §3.1.3, §3.5.1)."""

from __future__ import annotations

from typing import Any


class Full:
    """Trains all parameters for the whole of fine-tuning; the set never changes."""

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.config = config
        self.context = context

    def setup(self, model: Any, total_steps: int) -> None:
        for parameter in model.parameters():
            parameter.requires_grad_(True)

    def update(self, model: Any, step: int) -> bool:
        return False
