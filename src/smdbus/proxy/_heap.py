"""The process heap under many growing write buffers: give freed buffers back to the system.

Why: each subscriber behind has a write buffer (a ``bytearray`` in the
transport) that grows by one pass of frames at a time and is freed when it
drains or the subscriber is dropped. glibc serves blocks from 128 KiB up
with ``mmap`` at first, but raises that threshold to the size of every such
block freed (up to 32 MiB), after which the buffers grow inside the heap,
which fragments and is not returned. Measured with 300 subscribers that never
read and ``max_outbound`` 32 MiB (bench/proxy_memory.py): a peak RSS of
~100 MiB and ~67 MiB kept after every buffer was freed; with the threshold
fixed at 64 KiB, 64 MiB and 33 MiB (24 MiB: 89 and 65 MiB; fixed, 51-57 and 27-34).

Rule: :func:`fix_mmap_threshold` sets ``M_MMAP_THRESHOLD`` once per process
(a fixed value also stops glibc's adjusting it), unless the environment
already says (``MALLOC_MMAP_THRESHOLD_``), and does nothing where there is
no glibc ``mallopt`` (musl's does nothing either). The proxy calls it when
a first write buffer starts to grow: before that no large block was freed, so
it is not too late (called only when a subscriber first fell behind, it was:
the same run peaked at 86 MiB), and a proxy whose writes all go straight
into its clients' sockets never loads ctypes (~0.7 MiB of RSS).
"""

from __future__ import annotations

import os

MMAP_THRESHOLD = 68 * 1024
"""Blocks of this size and more are mmapped, and unmapped when freed.

Just above one read's buffer (64 KiB and a header, see
:data:`smdbus.proxy._connection.RECV_SIZE`), which would otherwise cost an
mmap and a munmap per read; write buffers past it are what grows."""
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_done = False


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc mmap blocks of ``threshold`` bytes and more; True if it was set now."""
    global _done
    if _done or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    _done = True
    try:
        import ctypes  # only here: a process that never runs a proxy does not pay for it

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - no C library with mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
