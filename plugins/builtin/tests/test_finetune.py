"""The `full` fine-tuning strategy trains every parameter, always."""

from __future__ import annotations

import torch

from t5k_builtin.finetune import Full
from t5kernel.api import BuildContext, FinetuneStrategy, NoConfig


def test_full_unfreezes_everything_and_never_changes():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    for p in model.parameters():
        p.requires_grad_(False)
    strategy = Full(NoConfig(), BuildContext())
    assert isinstance(strategy, FinetuneStrategy)
    strategy.setup(model, total_steps=10)
    assert all(p.requires_grad for p in model.parameters())
    assert not any(strategy.update(model, step) for step in range(10))
    assert all(p.requires_grad for p in model.parameters())
