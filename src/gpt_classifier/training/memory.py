"""Peak resident memory, and handing freed memory back to the OS between stages."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / (1024 * 1024) if sys.platform == "darwin" else usage / 1024


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def release_free_memory() -> None:
    """Return memory freed by a finished stage to the OS.

    glibc keeps freed heap pages (here: the activations of the frozen-prefix forward passes)
    resident for reuse, but the next stage allocates differently shaped tensors, so without this
    they stay counted in the resident set and raise the run's peak by tens of MB.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
