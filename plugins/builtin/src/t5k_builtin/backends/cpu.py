"""PyTorch on the CPU: the reference backend every test can run.

Float32 by default: exact, and on CPUs without native bfloat16 also the fastest.
``precision=bf16`` autocasts forwards to bfloat16 as the paper's TPUs did (facts §5.1),
refused on CPUs without native support (AVX512-BF16 / AMX), where it would be emulated
and slower. ``compile=true`` compiles the model (``nn.Module.compile``: parameter names,
hence checkpoints, stay the same).  The only random generator this
backend drives is torch's default CPU generator (dropout, initialisation); data
pipelines use their own explicit numpy generators, owned by the run loop.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from t5k_builtin.backends import heap
from t5k_builtin.backends.distributed import DataParallel
from t5kernel.errors import ConfigError, DataError


class CpuBackend(DataParallel):
    """Backend ``cpu`` (config: CpuBackendConfig).

    Construction applies the process-wide settings: ``threads`` -> ``torch.set_num_threads``
    and ``deterministic`` -> ``torch.use_deterministic_algorithms(True, warn_only=True)``,
    without ``torch.utils.deterministic.fill_uninitialized_memory``: that debugging aid
    fills every ``torch.empty`` with NaN (~750 fills per training step of the embedded
    default, 1-3% of its time), and no kernel here reads memory it did not write (a read of
    NaN-filled memory would have shown up as NaN losses or predictions).
    ``keep_freed_memory`` -> :func:`t5k_builtin.backends.heap.keep_freed_memory` (glibc
    stops mmapping and unmapping large tensors, which page-faulted every step afresh).
    ``compile_decoding`` -> the attribute of that name, which asks the run loop for
    compiled fixed-shape decoding in evaluation (``Runner.predict``).
    """

    name = "cpu"

    def __init__(self, config: Any, context: Any = None) -> None:
        self.config = config
        self.device = torch.device("cpu")
        if config.threads is not None:
            if config.threads < 1:
                raise ConfigError(f"cpu backend: threads must be >= 1, got {config.threads}")
            torch.set_num_threads(config.threads)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.utils.deterministic.fill_uninitialized_memory = False
        if config.precision == "bf16" and not bf16_supported():
            raise ConfigError(
                "cpu backend: precision='bf16' needs a CPU with native bfloat16 "
                "(AVX512-BF16 or AMX); this one has none, so use precision='fp32'")
        if config.keep_freed_memory:
            heap.keep_freed_memory()
        #: evaluation decodes through a compiled static-shape step (t5kernel.decoding)
        self.compile_decoding = bool(config.compile_decoding)
        self.init_distributed("gloo", config.parallel, config.timeout_minutes)  # torchrun: one process per rank

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """numpy arrays -> tensors: integers become int64, floats float32, bools stay bool.

        Tensors are moved to the CPU; other values (ints, strings) pass through unchanged.
        """
        out: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                out[key] = value.to(self.device)
            elif isinstance(value, np.ndarray):
                out[key] = _array_to_tensor(key, value)
            else:
                out[key] = value
        return out

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, loss: Any, optimizer: Any) -> None:
        """Backward, optimizer step, then clear gradients (set to None)."""
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def rng_state(self) -> dict[str, Any]:
        """``{"torch": uint8 tensor}``: safetensors- and ``weights_only``-loadable."""
        return {"torch": torch.get_rng_state().clone()}

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        if "torch" not in state:
            raise DataError(f"cpu backend: rng state has no 'torch' entry (keys: {sorted(state)})")
        value = state["torch"]
        tensor = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
        torch.set_rng_state(tensor.to(dtype=torch.uint8, device="cpu").contiguous())

    def sync(self) -> None:
        """Nothing is queued on a CPU."""


def bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively: on x86, AVX512-BF16 or AMX.

    oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) also accepts
    plain AVX512, where bfloat16 matmuls are emulated: measured 3x slower than float32
    there (39 vs 116 GFLOP/s, 2048^3 ``mm``, a 2-core AVX512 Xeon without BF16), so bf16
    autocast would only cost. Other architectures keep oneDNN's check.
    """
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _array_to_tensor(key: str, value: np.ndarray) -> torch.Tensor:
    if value.dtype == np.bool_:
        return torch.tensor(value, dtype=torch.bool)
    if np.issubdtype(value.dtype, np.integer):
        return torch.tensor(value, dtype=torch.long)
    if np.issubdtype(value.dtype, np.floating):
        return torch.tensor(value, dtype=torch.float32)
    raise DataError(
        f"cpu backend: batch[{key!r}] has dtype {value.dtype}; only integer, float and "
        "bool arrays can become tensors"
    )
