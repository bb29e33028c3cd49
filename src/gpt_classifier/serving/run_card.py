"""What ``/info`` says about the run beyond ``run.json``: its test metrics and when it was saved.

Read once at start-up. ``metrics.json`` is informative, not needed to serve: a run without it
(saved from Python) or with fields this version does not know shows them as unknown, never as
an error.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..runs.transaction import MARKER_FILE
from .schemas import TestMetricsOut


def read_run_card(
    run_dir: str | os.PathLike[str] | None,
) -> tuple[TestMetricsOut | None, str | None]:
    """The test metrics and the time the run was saved (ISO 8601, UTC, seconds)."""
    if run_dir is None:
        return None, None
    folder = Path(run_dir)
    try:  # the marker is the last file a run gets: its time is when it was saved
        seconds = (folder / MARKER_FILE).stat().st_mtime
        saved = datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")
    except OSError:
        saved = None
    try:
        test = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("test")
    except (OSError, ValueError, AttributeError):
        test = None
    if not isinstance(test, dict) or not _is_number(test.get("accuracy")):
        return None, saved
    macro: Any = test.get("macro_avg")
    f1 = macro.get("f1") if isinstance(macro, dict) else None
    examples = test.get("num_examples")
    metrics = TestMetricsOut(
        accuracy=float(test["accuracy"]),
        macro_f1=float(f1) if _is_number(f1) else None,
        examples=examples if type(examples) is int else None,
    )
    return metrics, saved


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and value == value  # not bool, not NaN
