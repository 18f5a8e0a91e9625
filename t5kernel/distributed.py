"""Where this process stands in a multi-process launch (``torchrun``, torch-xla).

The kernel does no distribution of its own: an engine (``torch.distributed`` DDP/FSDP
through ``torchrun``, torch-xla's runtime) is owned by the backend plugin. The kernel only
needs to know its rank before anything is built — so that rank 0 alone writes the run
directory — and reads it from the variables every launcher sets (``RANK``,
``WORLD_SIZE``). Backends may report their own values (``backend.rank``,
``backend.world_size``) once built; those win.
"""

from __future__ import annotations

import os
from typing import Any


def launch_rank() -> int:
    """This process's global rank as the launcher set it (0 when not launched)."""
    return int(os.environ.get("RANK", "0") or 0)


def launch_world_size() -> int:
    """How many processes the launcher started (1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank_of(backend: Any) -> int:
    return int(getattr(backend, "rank", launch_rank()))


def world_size_of(backend: Any) -> int:
    return int(getattr(backend, "world_size", launch_world_size()))
