"""Registers the ``xla`` backend. Light: never imports torch or torch_xla."""

from __future__ import annotations

from dataclasses import dataclass

from t5kernel.api import PluginSpec, hookimpl


@dataclass
class XlaBackendConfig:
    """torch-xla on the PJRT device named by ``$PJRT_DEVICE`` (CPU, TPU, CUDA)."""

    #: "fp32", or "bf16" (autocast to bfloat16, the paper's TPU activations)
    precision: str = "fp32"
    #: data parallelism over the replicas of an SPMD/PJRT launch: "ddp" (xm.optimizer_step
    #: all-reduces gradients across replicas) — one process per replica
    parallel: str = "ddp"


@hookimpl
def t5k_backends():
    yield PluginSpec("xla", "t5k_xla.backend:XlaBackend", XlaBackendConfig,
                     "torch-xla (TPU pods; PJRT_DEVICE=CPU for tests): static shapes, "
                     "xm.optimizer_step, graphs synced every step")
