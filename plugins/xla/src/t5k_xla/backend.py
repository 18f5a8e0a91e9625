"""The ``xla`` backend: PyTorch through torch-xla's lazy tensors on a PJRT device.

Operations are recorded into a graph that XLA compiles and runs when the step is synced
(``torch_xla.sync()``), so the run loop's training batches — always ``batch_size`` rows
of the configured lengths — compile once and reuse the graph. ``xm.optimizer_step``
applies the optimizer. Checkpoints get host copies of device tensors (``to_host``). The
device comes from ``$PJRT_DEVICE`` (``CPU`` in tests, ``TPU`` on a TPU VM; unset,
torch-xla picks). One device per run: several replicas are refused (not built yet).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from t5kernel.errors import ConfigError, DataError


def _import_xla():
    try:
        import torch_xla
        import torch_xla.core.xla_model as xm
    except ImportError as exc:
        raise ConfigError(
            "xla backend: torch-xla is not installed or does not load "
            f"({exc}); install it with its torch: pip install torch==2.9.0 torch-xla==2.9.0"
        ) from None
    return torch_xla, xm


class XlaBackend:
    """Backend ``xla`` (config: XlaBackendConfig).

    ``static_shapes = True`` asks the run loop for fixed-shape decoding
    (:mod:`t5kernel.decoding`, "static shapes"; ``Runner.predict``): XLA compiles one graph
    per distinct shape and per distinct constant, so the dynamic decoder, which trims each
    batch's encoder padding, grows its key/value cache by one row per step, indexes with
    the step number and drops finished rows, compiled new graphs for nearly every step of
    every batch. Static decoding pads eval batches to ``eval.batch_size`` rows and the
    encoder input to a power-of-two width, writes into preallocated caches at a device
    step index and ``sync``s once per step, so a run compiles a few graphs per width
    bucket, independent of ``max_decode_length``, and reuses them.
    """

    name = "xla"
    #: fixed-shape decoding in evaluation (see the class docstring)
    static_shapes = True

    def __init__(self, config: Any, context: Any = None) -> None:
        if config.precision not in ("fp32", "bf16"):
            raise ConfigError(f"xla backend: precision={config.precision!r}; allowed: 'fp32', "
                              "'bf16'")
        if config.parallel != "ddp":
            raise ConfigError(f"xla backend: parallel={config.parallel!r}; allowed: 'ddp'")
        # PJRT_DEVICE is torch-xla's to choose when unset (TPU where libtpu finds one,
        # else CPU with a warning); forcing CPU here ran TPU VMs on their host CPU
        self.torch_xla, self.xm = _import_xla()
        import torch

        self.torch = torch
        self.config = config
        self.device = self.torch_xla.device()
        runtime = self.torch_xla.runtime
        self.world_size = int(runtime.world_size())
        self.rank = int(runtime.global_ordinal())
        if self.world_size > 1:  # replicas are threads or hosts the run loop cannot tell apart
            raise ConfigError(
                f"xla backend: {self.world_size} replicas; runs over several XLA devices are "
                "not built yet (one device per run: the run directory, the vocabulary and "
                "the gradient all-reduce would need torch-xla's launcher); use one device, "
                "or --backend cuda with torchrun for several GPUs")

    def seed(self, seed: int) -> None:
        self.torch.manual_seed(seed)
        self.xm.set_rng_state(int(seed), device=self.device)

    def prepare(self, model: Any) -> Any:
        return model.to(self.device)

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        torch = self.torch
        out: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, np.ndarray):
                if value.dtype == np.bool_:
                    tensor = torch.tensor(value, dtype=torch.bool)
                elif np.issubdtype(value.dtype, np.integer):
                    tensor = torch.tensor(value, dtype=torch.long)
                elif np.issubdtype(value.dtype, np.floating):
                    tensor = torch.tensor(value, dtype=torch.float32)
                else:
                    raise DataError(f"xla backend: batch[{key!r}] has dtype {value.dtype}")
                out[key] = tensor.to(self.device)
            elif isinstance(value, torch.Tensor):
                out[key] = value.to(self.device)
            else:
                out[key] = value
        return out

    def autocast(self) -> Any:
        if self.config.precision == "bf16":
            return self.torch.autocast("xla", dtype=self.torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, loss: Any, optimizer: Any) -> None:
        """Backward, ``xm.optimizer_step`` (all-reduce over replicas), zero, sync the graph."""
        loss.backward()
        self.xm.optimizer_step(optimizer)
        optimizer.zero_grad(set_to_none=True)
        self.torch_xla.sync()

    def to_host(self, state: Any) -> Any:
        """A copy of ``state`` (nested dicts/lists of tensors) with tensors on the CPU."""
        return self.xm._maybe_convert_to_cpu(state)

    def rng_state(self) -> dict[str, Any]:
        seed = int(self.xm.get_rng_state(device=self.device))  # a uint64
        return {"torch": self.torch.get_rng_state().clone(),
                "xla": self.torch.tensor([seed & 0xFFFFFFFF, seed >> 32], dtype=self.torch.int64)}

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        if "torch" not in state:
            raise DataError(f"xla backend: rng state has no 'torch' entry ({sorted(state)})")
        self.torch.set_rng_state(self.torch.as_tensor(state["torch"]).to(self.torch.uint8))
        if "xla" in state:  # a checkpoint written by the cpu or cuda backend has none
            low, high = (int(v) for v in self.torch.as_tensor(state["xla"]).tolist())
            self.xm.set_rng_state(low | (high << 32), device=self.device)

    def all_reduce_sum(self, tensor: Any) -> Any:
        if self.world_size > 1:
            return self.xm.all_reduce(self.xm.REDUCE_SUM, tensor)
        return tensor

    def barrier(self) -> None:
        if self.world_size > 1:
            self.xm.rendezvous("t5k")

    def sync(self) -> None:
        self.torch_xla.sync()
        self.xm.wait_device_ops()
