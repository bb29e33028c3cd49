"""Named crash points for the fault tests: ``GPT_CLASSIFIER_KILL_AT=NAME`` (or ``NAME:K``, the
K-th time) makes the process SIGKILL itself at ``crash_point(NAME)``, exactly at the moments that
matter (between two renames of a commit, right after a checkpoint). Unset, it costs one lookup.
``GPT_CLASSIFIER_PAUSE_AT=NAME`` holds the process at ``pause_point(NAME)`` instead, after saying
so on stderr: a slow step (a model loading) for a test to send a signal into."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter

KILL_AT_ENV = "GPT_CLASSIFIER_KILL_AT"
PAUSE_AT_ENV = "GPT_CLASSIFIER_PAUSE_AT"
_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    point, _, count = os.environ.get(KILL_AT_ENV, "").partition(":")
    if point == name:
        _reached[name] += 1
        if _reached[name] >= int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str) -> None:
    if os.environ.get(PAUSE_AT_ENV) == name:
        print(f"paused at {name}", file=sys.stderr, flush=True)
        time.sleep(3600)
