"""The paper's fine-tuning strategies (P §3.5.1, Table 10; facts §7.1-7.2).

- ``full``: every parameter trains (the baseline).
- ``adapters``: a dense-ReLU-dense adapter with inner dimension d after the feed-forward
  sublayer of every block, with a residual connection and its own RMSNorm; only the
  adapters (and, as the paper says, the layer norms) train.
- ``gradual_unfreeze``: fine-tuning is cut into equal episodes; in episode n the top
  n + 1 blocks of the encoder and of the decoder train (in parallel), plus the shared
  embedding throughout.

A strategy freezes by ``requires_grad``: the run loop gives the optimizer only trainable
parameters, so frozen ones get no gradient, no update and no optimizer state.
"""

from __future__ import annotations

import math
from typing import Any

from t5kernel.errors import ConfigError


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


class Adapters:
    """Adapter layers (P §3.5.1): needs a model with ``add_adapters(inner_dim, init)``."""

    def __init__(self, config: Any, context: Any = None) -> None:
        if int(config.inner_dim) < 1:
            raise ConfigError(f"finetune adapters: inner_dim must be >= 1, got {config.inner_dim}")
        if config.init not in ("mtf", "near_identity", "zero"):
            raise ConfigError(f"finetune adapters: init={config.init!r}; allowed: 'mtf', "
                              "'near_identity', 'zero'")
        self.config = config
        self.context = context

    def setup(self, model: Any, total_steps: int) -> None:
        if not hasattr(model, "add_adapters"):
            raise ConfigError(f"finetune adapters: {type(model).__name__} cannot add adapter "
                              "layers (no add_adapters method)")
        names = getattr(model, "adapter_parameter_names", None)
        if names is None:  # once per model, even if setup is called again
            import torch

            seed = int(getattr(self.context, "seed", 0) or 0)
            generator = torch.Generator().manual_seed(seed + 7919)
            names = model.add_adapters(int(self.config.inner_dim), self.config.init, generator)
            model.adapter_parameter_names = tuple(names)
        trainable = set(names)
        for name, parameter in model.named_parameters():
            norm = self.config.train_layer_norms and "layer_norm" in name
            parameter.requires_grad_(name in trainable or norm)

    def update(self, model: Any, step: int) -> bool:
        return False


class GradualUnfreeze:
    """Top blocks first, encoder and decoder in parallel, on equal episodes (P §3.5.1).

    With ``episodes`` = E and a stack of L blocks, episode n (steps
    ``[n T/E, (n+1) T/E)`` of T fine-tuning steps) trains that stack's top
    ``ceil((n + 1) L / E)`` blocks; E = 0 means one episode per block of the deepest
    stack (the paper: 12). Parameters outside every block (the shared embedding) train
    throughout when ``train_embedding``. Blocks come from ``model.blocks()``: a stack's
    final norm belongs to its top block, the relative-position table to block 0.
    """

    def __init__(self, config: Any, context: Any = None) -> None:
        if int(config.episodes) < 0:
            raise ConfigError(f"finetune gradual_unfreeze: episodes must be >= 0, got "
                              f"{config.episodes}")
        self.config = config
        self.total_steps = 1
        self.episodes = 1
        self.current: int | None = None

    def setup(self, model: Any, total_steps: int) -> None:
        if not hasattr(model, "blocks"):
            raise ConfigError(f"finetune gradual_unfreeze: {type(model).__name__} does not "
                              "describe its blocks (no blocks method)")
        self.stacks: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        for info in model.blocks():
            self.stacks.setdefault(info.stack, []).append((info.index, info.parameters))
        for blocks in self.stacks.values():
            blocks.sort()
        deepest = max(len(b) for b in self.stacks.values())
        self.episodes = int(self.config.episodes) or deepest
        self.total_steps = max(int(total_steps), 1)
        self.in_blocks = {n for b in self.stacks.values() for _, names in b for n in names}
        self.current = None
        self.update(model, 0)

    def episode(self, step: int) -> int:
        """The episode of fine-tuning step ``step`` (0-based)."""
        return min(int(step) * self.episodes // self.total_steps, self.episodes - 1)

    def unfrozen(self, episode: int) -> dict[str, list[int]]:
        """Block indices that train in ``episode``, per stack."""
        out = {}
        for stack, blocks in self.stacks.items():
            count = min(len(blocks), math.ceil((episode + 1) * len(blocks) / self.episodes))
            out[stack] = [index for index, _ in blocks[len(blocks) - count:]]
        return out

    def update(self, model: Any, step: int) -> bool:
        episode = self.episode(step)
        if episode == self.current:
            return False
        self.current = episode
        trainable: set[str] = set()
        for stack, indices in self.unfrozen(episode).items():
            for index, names in self.stacks[stack]:
                if index in indices:
                    trainable.update(names)
        changed = False
        for name, parameter in model.named_parameters():
            train = name in trainable or (name not in self.in_blocks and self.config.train_embedding)
            if parameter.requires_grad != train:
                parameter.requires_grad_(train)
                changed = True
        return changed
