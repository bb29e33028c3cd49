"""What ``/info`` (and the page's model panel) says about the run beyond ``run.json``: its test
metrics and when it was saved.

Read once at start-up. ``metrics.json`` is informative, not needed to serve: a run without
it (saved from Python) or with fields this version does not know shows as unknown, never as
an error. The loaded run was verified against its digests, so its files are the run's own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..runs.transaction import MARKER_FILE

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class TestMetrics:
    accuracy: float
    macro_f1: float | None
    examples: int | None


@dataclass(frozen=True)
class RunCard:
    test: TestMetrics | None
    trained_at: str | None  # ISO 8601, UTC, seconds


def read_run_card(run_dir: str | os.PathLike[str] | None) -> RunCard:
    if run_dir is None:
        return RunCard(None, None)
    folder = Path(run_dir)
    return RunCard(_test_metrics(folder / METRICS_FILE), _saved_at(folder / MARKER_FILE))


def _test_metrics(path: Path) -> TestMetrics | None:
    try:
        test = json.loads(path.read_text(encoding="utf-8")).get("test")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(test, dict) or not _is_number(test.get("accuracy")):
        return None
    macro: Any = test.get("macro_avg")
    f1 = macro.get("f1") if isinstance(macro, dict) else None
    examples = test.get("num_examples")
    return TestMetrics(
        accuracy=float(test["accuracy"]),
        macro_f1=float(f1) if _is_number(f1) else None,
        examples=examples if type(examples) is int else None,
    )


def _saved_at(marker: Path) -> str | None:
    # The marker is the last file a run gets: its time is when training finished and saved.
    try:
        seconds = marker.stat().st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and value == value  # not bool, not NaN
