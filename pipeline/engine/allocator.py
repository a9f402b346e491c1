"""Keeping a long-running analysis process's memory from creeping up.

glibc reads its allocator settings from the environment when a process starts, which a scan
worker's environment can give it but the dashboard's or the command line's cannot. `mallopt`
sets the same values in a running process; later allocations follow them.
"""

from __future__ import annotations

import ctypes
import sys

from pipeline.config import MemorySettings

# Parameter numbers from glibc's <malloc.h>.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_allocator(memory: MemorySettings) -> bool:
    """Set glibc's arena count and a fixed mmap threshold in this process; False where the C
    library is not glibc (another allocator keeps its own behaviour, which is harmless)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; both must hold for the process to be as measured.
    return mallopt(M_ARENA_MAX, memory.arena_max) == 1 and mallopt(M_MMAP_THRESHOLD, memory.mmap_threshold_bytes) == 1
