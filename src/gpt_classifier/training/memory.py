"""Peak resident memory, and handing freed memory back to the OS between stages."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident memory in MiB since the process started (or ``reset_peak_rss``)."""
    # Linux: VmHWM, the high-water mark that reset_peak_rss can lower
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/self/status", encoding="ascii") as status,
    ):
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return usage / (1024 * 1024) if sys.platform == "darwin" else usage / 1024


def reset_peak_rss() -> bool:
    """Start a new peak at the current resident size (Linux; False elsewhere): one per grid run."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
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
