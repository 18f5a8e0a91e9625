"""Data parallelism through ``torch.distributed`` (launched by ``torchrun``).

When the process was started by a launcher (``WORLD_SIZE`` > 1) a backend joins the
process group (gloo on CPU, NCCL on GPUs) and wraps the model, by the config's
``parallel`` choice, in

- ``"ddp"``: ``DistributedDataParallel`` — every rank holds the whole model and optimizer
  state, computes gradients on its rows of the global batch, and DDP averages them;
- ``"fsdp"``: PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``) — parameters,
  gradients and optimizer state are sharded over the ranks (dim 0 of every tensor, as
  ``DTensor``); each unit's parameters are all-gathered for its forward/backward and the
  gradients reduce-scattered. See :class:`FullyShardedModel`.

Nothing here re-implements communication.

:class:`DataParallelModel` keeps the wrapped model looking like the model: attributes,
``state_dict`` / ``load_state_dict`` and ``named_parameters`` are the inner module's (so
checkpoints have the same keys whatever the world size, and a run can resume with
another one), while ``forward`` goes through DDP. When a fine-tuning strategy adds
modules or changes which parameters train, ``rewrap`` builds a new DDP over the current
trainable set (DDP fixes its parameter list at construction).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn

from t5kernel.errors import ConfigError


class _Wrapped(nn.Module):
    """A wrapper that looks like the model it wraps (``self.module``): attributes and
    parameter listings are the inner module's, so parameter names never change."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.named_parameters(*args, **kwargs)

    def parameters(self, recurse: bool = True) -> Any:
        return self.module.parameters(recurse)


class DataParallelModel(_Wrapped):
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

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state, strict=strict, assign=assign)



class FullyShardedModel(_Wrapped):
    """The model sharded by FSDP2, looking like the unsharded model to the run loop.

    Units: every transformer block is its own FSDP unit (its parameters are gathered only
    while it runs) except blocks whose parameters are read outside their own forward — the
    first block of each stack owns the relative-position table that the stack reads before
    running any block — and except when a block object is used twice (the shared
    encoder-decoder calls each block as encoder and as decoder); those stay in the root
    unit, gathered for the whole forward. A model may choose its own units with a
    ``fsdp_units()`` method.

    Checkpoints stay world-size independent: ``state_dict()`` gathers the full
    (unsharded) tensors to rank 0's CPU (a collective: every rank calls it) and
    ``load_state_dict`` takes full tensors and keeps each rank's shard, so a run saved with
    FSDP on N ranks resumes with DDP, FSDP on M ranks, or one process. Evaluation runs on
    rank 0 over :meth:`evaluation_copy`, a plain module with the gathered weights.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        from torch.distributed.fsdp import fully_shard

        # an empty (meta-device) twin to rebuild an unsharded copy for evaluation
        object.__setattr__(self, "_template", copy.deepcopy(module).to("meta"))
        for unit in _fsdp_units(module):
            fully_shard(unit)
        fully_shard(module)
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Full tensors on rank 0's CPU ({} on other ranks); every rank must call it."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        return get_model_state_dict(
            self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def state_dict_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key's full shape, on every rank and without a collective (the sharded
        parameters are DTensors whose shape is the global one): what a strict load of
        ``init_checkpoint`` checks, as ``state_dict()`` is empty on ranks other than 0."""
        return {k: tuple(v.shape) for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load full (unsharded) tensors, present on every rank; each keeps its shard."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        return set_model_state_dict(
            self.module, dict(state), options=StateDictOptions(full_state_dict=True,
                                                               strict=strict))


    def evaluation_copy(self, rank: int) -> nn.Module | None:
        """An unsharded copy of the model with the current weights on rank 0 (``None`` on
        the others). A collective: every rank must call it."""
        state = self.state_dict()
        if rank != 0:
            return None
        device = _local_device(self.module)
        twin = copy.deepcopy(self._template).to_empty(device=device)
        twin.load_state_dict({k: v.to(device) for k, v in state.items()})
        # to_empty left every tensor uninitialised and the state dict restores only the
        # parameters and persistent buffers: copy the rest (e.g. the mask of the padded
        # vocabulary columns) from the live module, whose buffers FSDP does not shard
        live = dict(self.module.named_buffers())
        with torch.no_grad():
            for name, buffer in twin.named_buffers():
                buffer.copy_(live[name])
        twin.train(self.module.training)
        return twin


def _local_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        local = getattr(p, "to_local", None)
        return (local() if local is not None else p).device
    return torch.device("cpu")


def _fsdp_units(model: nn.Module) -> list[nn.Module]:
    """The submodules that become their own FSDP unit (class docstring)."""
    custom = getattr(model, "fsdp_units", None)
    if callable(custom):
        return list(custom())
    from t5k_builtin.model.layers import Block, RelativePositionBias

    encoder = getattr(model, "encoder", None)
    if encoder is not None and encoder is getattr(model, "decoder", None):
        return []  # one stack run twice per forward (encdec_shared): a single root unit
    blocks = [m for m in model.modules(remove_duplicate=False) if isinstance(m, Block)]
    if len({id(b) for b in blocks}) != len(blocks):
        return []  # a block listed twice: keep everything in the root unit
    return [b for b in blocks
            if not any(isinstance(m, RelativePositionBias) for m in b.modules())]


def to_full_tensors(state: Any) -> Any:
    """``state`` with every ``DTensor`` replaced by its full tensor on the CPU (nested
    dicts/lists/tuples). A collective over the sharded tensors: every rank must call it,
    and it visits tensors in the same order on every rank."""
    from torch.distributed.tensor import DTensor

    if isinstance(state, DTensor):
        return state.full_tensor().cpu()
    if isinstance(state, dict):
        return {k: to_full_tensors(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(to_full_tensors(v) for v in state)
    return state


class DataParallel:
    """Mixin for backends: device placement (and compile), rank, world size, process group,
    DDP/FSDP wrapping, collectives. Backends using it have ``device`` and ``config``."""

    rank = 0
    world_size = 1

    def init_distributed(self, engine: str, parallel: str,
                         timeout_minutes: float | None = None) -> None:
        """Join the launcher's process group when ``WORLD_SIZE`` > 1 (``engine``: gloo/nccl),
        its collectives timing out after ``timeout_minutes`` (None: torch's default)."""
        self.world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.rank = int(os.environ.get("RANK", "0") or 0)
        self.parallel = parallel
        if parallel not in ("ddp", "fsdp"):
            raise ConfigError(f"{self.name} backend: parallel={parallel!r}; allowed: 'ddp', "
                              "'fsdp'")
        if self.world_size <= 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            import datetime

            timeout = (None if timeout_minutes is None
                       else datetime.timedelta(minutes=float(timeout_minutes)))
            dist.init_process_group(backend=engine, timeout=timeout)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def prepare(self, model: nn.Module) -> nn.Module:
        """``model`` on this backend's device, compiled in place when ``config.compile``
        (``nn.Module.compile``: parameter names, hence checkpoints, stay the same), then
        wrapped for the process group (DDP gets the device index on GPUs)."""
        model = model.to(self.device)
        if self.config.compile:
            model.compile()
        index = self.device.index
        return self.wrap(model, device_ids=None if index is None else [index])

    def wrap(self, model: nn.Module, device_ids: list[int] | None = None) -> nn.Module:
        if not self.distributed:
            return model
        if self.parallel == "fsdp":
            return FullyShardedModel(model)
        return DataParallelModel(model, device_ids)

    def trainable_changed(self, model: nn.Module) -> None:
        """A strategy added modules or (un)froze parameters: rebuild DDP over them.

        FSDP shards the parameters it was given; a module added afterwards (adapters)
        would train unsharded and unsynchronised, so that is refused."""
        if isinstance(model, DataParallelModel):
            model.rewrap()
        elif isinstance(model, FullyShardedModel):
            from torch.distributed.tensor import DTensor

            added = [n for n, p in model.named_parameters() if not isinstance(p, DTensor)]
            if added:
                raise ConfigError(
                    f"{self.name} backend: parallel='fsdp' cannot train parameters added after "
                    f"sharding ({added[0]}, ...: the fine-tuning strategy's new modules); "
                    "use backend.parallel=ddp")

    def to_host(self, state: Any) -> Any:
        """Checkpointable trainer state: sharded (FSDP) tensors gathered in full. A
        collective under FSDP: every rank calls it before rank 0 writes."""
        if self.distributed and self.parallel == "fsdp":
            return to_full_tensors(state)
        return state

    def evaluation_model(self, model: nn.Module) -> nn.Module | None:
        """The module rank 0 evaluates: the model itself, or under FSDP an unsharded copy
        (a collective: every rank calls it; ``None`` on ranks other than 0)."""
        if isinstance(model, FullyShardedModel):
            return model.evaluation_copy(self.rank)
        return model if self.rank == 0 else None

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()
