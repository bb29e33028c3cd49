"""Crash points for the fault tests: ``GPT_CLASSIFIER_KILL_AT=NAME[:K]`` SIGKILLs the process at
the K-th ``crash_point(NAME)``; ``GPT_CLASSIFIER_PAUSE_AT=NAME`` holds it at ``pause_point(NAME)``
(said on stderr) for a test to send a signal into a slow step."""

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
