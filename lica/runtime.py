"""Process-wide settings of a training or benchmark process."""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Let glibc's allocator keep freed memory for reuse instead of returning each large
    block to the operating system (``M_MMAP_MAX=0``, ``M_TRIM_THRESHOLD=1 GiB``).

    A learner update allocates and frees the same tens-of-megabyte tensors every
    iteration; by default each one is a fresh ``mmap`` whose pages fault in on first
    touch, which costs more than the arithmetic on them (docs/performance.md).  Returns
    whether the setting took effect (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
