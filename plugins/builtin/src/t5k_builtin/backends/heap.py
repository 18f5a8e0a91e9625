"""Keep freed memory in the process heap (glibc ``malloc``), so big tensors reuse pages.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and unmaps it on free. A training step allocates and frees the same large
tensors -- a t5-small step's ``[4096, 2048]`` feed-forward activations, its 117 MB of
logits -- so every step maps new pages, and the kernel zero-fills each one on first
touch. That is why PyTorch's CPU tuning guides recommend jemalloc or tcmalloc. In-process,
``mallopt`` gets the same effect from glibc itself: no mmapped chunks (``M_MMAP_MAX = 0``)
and no returning of the heap's free top to the system (``M_TRIM_THRESHOLD``), so a
freed tensor's pages are handed, already mapped, to the next allocation of the step.

Measured on a 2-core AVX2 machine, t5-small at 8 x 512/114: training steps 7-8% faster
(``t5k run`` pre-training on the embedded data; the same step with T5's 32k vocabulary
in ``benchmarks/vs_hf.py``). The cost is memory: the process keeps its peak until it
exits, and the heap fragments, so peak RSS was 3% (32k vocabulary, AdamW) to 14%
(1k vocabulary, Adafactor) higher. Steps whose tensors all stay under 32 MiB, such as the
embedded default's, do not change. Other C libraries (macOS, musl) have no such switch;
:func:`keep_freed_memory` then does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import platform

#: ``mallopt`` parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: glibc's default values for them, which :func:`release_freed_memory` sets again
DEFAULT_TRIM_THRESHOLD = 128 * 1024
DEFAULT_MMAP_MAX = 65536
#: ``mallopt`` takes a C int: the heap's free top is returned only above 2 GiB
KEEP_TRIM_THRESHOLD = 2**31 - 1


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The running process's glibc (``mallopt`` typed), or None under another C library.

    Cached: ``platform.libc_ver`` reads the interpreter's binary to tell."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Serve all allocations from the heap and keep freed memory there; True if applied."""
    return _set(mmap_max=0, trim_threshold=KEEP_TRIM_THRESHOLD)


def release_freed_memory() -> bool:
    """glibc's default values again (large chunks mmapped, the heap's top trimmed), and
    what the heap kept is returned to the system (``malloc_trim``). Not quite a fresh
    process: any ``mallopt`` call also freezes glibc's otherwise self-adjusting mmap
    threshold at its current value."""
    if not _set(mmap_max=DEFAULT_MMAP_MAX, trim_threshold=DEFAULT_TRIM_THRESHOLD):
        return False
    glibc().malloc_trim(0)
    return True


def _set(mmap_max: int, trim_threshold: int) -> bool:
    libc = glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success, 0 on error
    return bool(libc.mallopt(M_MMAP_MAX, mmap_max)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))
