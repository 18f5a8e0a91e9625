"""Data parallelism through ``torch.distributed`` (launched by ``torchrun``).

When the process was started by a launcher (``WORLD_SIZE`` > 1) a backend joins the
process group (gloo on CPU, NCCL on GPUs) and wraps the model in
``DistributedDataParallel``: every rank computes gradients on its rows of the global
batch and DDP averages them during backward. Nothing here re-implements communication.

:class:`DataParallelModel` keeps the wrapped model looking like the model: attributes,
``state_dict`` / ``load_state_dict`` and ``named_parameters`` are the inner module's (so
checkpoints have the same keys whatever the world size, and a run can resume with
another one), while ``forward`` goes through DDP. When a fine-tuning strategy adds
modules or changes which parameters train, ``rewrap`` builds a new DDP over the current
trainable set (DDP fixes its parameter list at construction).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from t5kernel.errors import ConfigError


class DataParallelModel(nn.Module):
    """The model, with ``forward`` through ``DistributedDataParallel``."""

    def __init__(self, module: nn.Module, device_ids: list[int] | None = None) -> None:
        super().__init__()
        self.module = module
        self._device_ids = device_ids
        self.rewrap()

    def rewrap(self) -> None:
        from torch.nn.parallel import DistributedDataParallel

        # kept out of the module tree so parameters are not listed twice
        object.__setattr__(self, "_ddp", DistributedDataParallel(
            self.module, device_ids=self._device_ids, find_unused_parameters=False))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training and torch.is_grad_enabled():
            return self._ddp(*args, **kwargs)
        return self.module(*args, **kwargs)  # evaluation needs no gradient sync

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state, strict=strict, assign=assign)

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.named_parameters(*args, **kwargs)

    def parameters(self, recurse: bool = True) -> Any:
        return self.module.parameters(recurse)


class DataParallel:
    """Mixin for backends: rank, world size, process group, DDP wrapping, collectives."""

    rank = 0
    world_size = 1

    def init_distributed(self, engine: str, parallel: str) -> None:
        """Join the launcher's process group when ``WORLD_SIZE`` > 1 (``engine``: gloo/nccl)."""
        self.world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.rank = int(os.environ.get("RANK", "0") or 0)
        self.parallel = parallel
        if parallel not in ("ddp",):
            raise ConfigError(f"{self.name} backend: parallel={parallel!r}; allowed: 'ddp' "
                              "(FSDP is not built yet)")
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend=engine)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: nn.Module, device_ids: list[int] | None = None) -> nn.Module:
        return DataParallelModel(model, device_ids) if self.distributed else model

    def trainable_changed(self, model: nn.Module) -> None:
        """A strategy added modules or (un)froze parameters: rebuild DDP over them."""
        if isinstance(model, DataParallelModel):
            model.rewrap()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()
