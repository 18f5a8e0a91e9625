"""PyTorch on NVIDIA GPUs: bf16 autocast, TF32, optional ``torch.compile``, DDP.

- precision: ``bf16`` autocast (the paper trained with bfloat16 activations on TPUs,
  facts §5.1) where the GPU supports it, else ``fp16`` with a ``GradScaler`` (loss
  scaling); ``fp32`` turns autocast off. Parameters and optimizer state stay float32.
- ``tf32``: TF32 tensor-core matmuls and convolutions for the float32 parts.
- ``compile``: ``nn.Module.compile`` in place (parameter names, hence checkpoints, stay
  the same).
- batches are copied to pinned host memory and moved with ``non_blocking`` so the copy
  overlaps the previous step's kernels.
- launched by ``torchrun`` (``WORLD_SIZE`` > 1): one GPU per process (``LOCAL_RANK``),
  NCCL, ``DistributedDataParallel`` (see :mod:`.distributed`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from t5k_builtin.backends.distributed import DataParallel
from t5kernel.errors import ConfigError, DataError


class CudaBackend(DataParallel):
    """Backend ``cuda`` (config: CudaBackendConfig)."""

    name = "cuda"

    def __init__(self, config: Any, context: Any = None) -> None:
        if not torch.cuda.is_available():
            raise ConfigError(
                "cuda backend: no CUDA GPU is visible (torch.cuda.is_available() is False; "
                f"torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
                "use --backend cpu, or install a CUDA build of torch on a GPU machine")
        if config.precision not in ("bf16", "fp16", "fp32"):
            raise ConfigError(f"cuda backend: precision={config.precision!r}; allowed: 'bf16', "
                              "'fp16', 'fp32'")
        self.config = config
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        self.device = torch.device("cuda", local)
        torch.cuda.set_device(self.device)
        precision = config.precision
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            precision = "fp16"  # pre-Ampere GPUs: fp16 with loss scaling instead
        self.precision = precision
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        torch.backends.cuda.matmul.allow_tf32 = bool(config.tf32)
        torch.backends.cudnn.allow_tf32 = bool(config.tf32)
        if precision == "fp16" and config.parallel == "fsdp":
            raise ConfigError("cuda backend: fp16 loss scaling is not built for parallel='fsdp' "
                              "(this GPU has no bf16); use precision=fp32 or parallel=ddp")
        self.init_distributed("nccl", config.parallel, config.timeout_minutes)

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)  # also seeds every CUDA device

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, np.ndarray):
                if value.dtype == np.bool_:
                    tensor = torch.from_numpy(value)
                elif np.issubdtype(value.dtype, np.integer):
                    tensor = torch.from_numpy(value.astype(np.int64, copy=False))
                elif np.issubdtype(value.dtype, np.floating):
                    tensor = torch.from_numpy(value.astype(np.float32, copy=False))
                else:
                    raise DataError(f"cuda backend: batch[{key!r}] has dtype {value.dtype}")
                out[key] = tensor.pin_memory().to(self.device, non_blocking=True)
            elif isinstance(value, torch.Tensor):
                out[key] = value.to(self.device, non_blocking=True)
            else:
                out[key] = value
        return out

    def autocast(self) -> Any:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    def step(self, loss: Any, optimizer: Any) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def loss_scaler_state(self) -> dict[str, Any] | None:
        """fp16's ``GradScaler`` state (scale, growth tracker) for checkpoints; None
        without loss scaling."""
        return None if self.scaler is None else self.scaler.state_dict()

    def set_loss_scaler_state(self, state: Mapping[str, Any]) -> None:
        if self.scaler is not None:  # a checkpoint of an fp16 run resumed in bf16: unused
            self.scaler.load_state_dict(dict(state))

    def rng_state(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state().clone(),
                "cuda": torch.cuda.get_rng_state(self.device).clone()}

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        if "torch" not in state:
            raise DataError(f"cuda backend: rng state has no 'torch' entry ({sorted(state)})")
        torch.set_rng_state(torch.as_tensor(state["torch"]).to(torch.uint8).cpu())
        if "cuda" in state:  # a checkpoint written by the cpu backend has none
            torch.cuda.set_rng_state(torch.as_tensor(state["cuda"]).to(torch.uint8).cpu(),
                                     self.device)

    def sync(self) -> None:
        torch.cuda.synchronize(self.device)
