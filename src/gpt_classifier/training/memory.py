"""Peak resident memory, and handing freed memory back to the OS between stages."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import resource
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident memory in MiB since the process started (or ``reset_peak_rss``)."""
    with contextlib.suppress(OSError, ValueError):  # Linux: VmHWM, which reset_peak_rss lowers
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return usage / (1024 * 1024) if sys.platform == "darwin" else usage / 1024


def reset_peak_rss() -> bool:
    """Start a new peak at the current resident size (Linux; False elsewhere): one per grid run."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
        return True
    return False


@functools.cache
def _malloc_trim():
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        if sys.platform.startswith("linux"):
            return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    return None


def release_free_memory() -> None:
    """Return memory freed by a finished stage to the OS: glibc keeps freed pages for reuse, but
    the next stage's tensors differ in shape, so they would raise the run's peak by tens of MB."""
    gc.collect()
    if (trim := _malloc_trim()) is not None:
        trim(0)
