"""The grid's table: the book's columns plus macro F1, ROC-AUC, a 95 % interval of the test
accuracy, mean ± std over seeds and peak memory; as Markdown, CSV, JSON and a chart."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any

from ..fileio import write_json, write_text
from .grid import RunOutcome, wilson_interval

METRICS = {
    "train_accuracy": lambda m: m["train"]["accuracy"],
    "validation_accuracy": lambda m: m["validation"]["accuracy"],
    "test_accuracy": lambda m: m["test"]["accuracy"],
    "test_macro_f1": lambda m: m["test"]["macro_avg"]["f1"],
    "test_roc_auc": lambda m: m["test"]["roc_auc"],
}
COLUMNS = [
    "#", "name", "model", "weights", "token position", "trainable", "context",
    "train acc", "val acc", "test acc", "test acc 95 % CI", "test macro F1", "ROC-AUC",
    "time", "peak memory", "device",
]  # fmt: skip


def summarize(outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    """Per row (``experiments.json``): options, each metric's mean and std over finished seeds."""
    by_row: dict[int, list[RunOutcome]] = {}
    for outcome in outcomes:
        by_row.setdefault(outcome.row.number, []).append(outcome)
    summaries = []
    for group in by_row.values():
        row, good = group[0].row, [o for o in group if not o.error]
        summary = {"row": row.number, "name": row.name, **row.describe()}
        summary.update(options=row.options, note=row.note, runs=len(good))
        summary["failed"] = [f"seed {o.seed}: {o.error}" for o in group if o.error]
        for key, read in METRICS.items():
            numbers = []
            for outcome in good:
                with contextlib.suppress(KeyError, TypeError):  # float(None): not recorded
                    numbers.append(float(read(outcome.metrics)))
            summary[f"{key}_mean"] = statistics.fmean(numbers) if numbers else None
            spread = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
            summary[f"{key}_std"] = spread if numbers else None
        summary.update(test_accuracy_ci95=None, test_examples=None)
        if (mean := summary["test_accuracy_mean"]) is not None:
            n_test = summary["test_examples"] = int(good[0].metrics["test"]["num_examples"])
            summary["test_accuracy_ci95"] = list(wilson_interval(round(mean * n_test), n_test))
        seconds = [o.seconds for o in good if o.seconds is not None]
        peaks = [o.peak_rss_mb for o in good if o.peak_rss_mb is not None]
        summary["seconds_mean"] = statistics.fmean(seconds) if seconds else None
        summary["peak_rss_mb_max"] = max(peaks, default=None)
        summary["device"] = good[0].device if good else ""
        summaries.append(summary)
    return summaries


def _cells(s: dict[str, Any]) -> list[str]:
    def percent(key: str) -> str:
        if s[f"{key}_mean"] is None:
            return "–"
        spread = f" ± {s[f'{key}_std'] * 100:.2f}" if s["runs"] > 1 else ""
        return f"{s[f'{key}_mean'] * 100:.2f} %{spread}"

    def plain(value: float | None) -> str:
        return "–" if value is None or math.isnan(value) else f"{value:.4f}"

    low, high = s["test_accuracy_ci95"] or (None, None)
    return [
        str(s["row"]),
        s["name"] + (" (failed)" if s["failed"] and not s["runs"] else ""),
        *(s[key] for key in COLUMNS[2:7]),
        *(percent(key) for key in ("train_accuracy", "validation_accuracy", "test_accuracy")),
        "–" if low is None else f"{low * 100:.1f}–{high * 100:.1f} %",
        *(plain(s[f"{key}_mean"]) for key in ("test_macro_f1", "test_roc_auc")),
        "–" if s["seconds_mean"] is None else f"{s['seconds_mean'] / 60:.2f} min",
        "–" if s["peak_rss_mb_max"] is None else f"{s['peak_rss_mb_max']:,.0f} MiB",
        s["device"] or "–",
    ]


def write_outputs(summaries: list[dict[str, Any]], folder: Path, header: str) -> list[Path]:
    """``experiments.md``, ``.csv``, ``.json`` and, when a row has a test accuracy, ``.png``."""
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(s)) + " |" for s in summaries]
    notes = [f"- Row {s['row']}: {s['note']}" for s in summaries if s["note"]]
    notes += [f"- Row {s['row']} failed: {f}" for s in summaries for f in s["failed"]]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += [
        "",
        "The 95 % interval is Wilson's for the test accuracy over the test split's "
        "examples: rows whose intervals overlap are not shown to differ by this test split.",
    ]
    written = [folder / name for name in ("experiments.md", "experiments.csv", "experiments.json")]
    write_text(written[0], "\n".join(lines) + "\n")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([COLUMNS, *map(_cells, summaries)])
    write_text(written[1], buffer.getvalue())
    write_json(written[2], summaries)
    shown = [s for s in summaries if s["test_accuracy_ci95"] is not None]
    if not shown:
        return written
    from ..evaluation.plots import new_figure, save_figure

    figure, axis = new_figure((8, 0.4 * len(shown) + 1.5), layout="tight")
    for y, s in enumerate(shown):
        mean = s["test_accuracy_mean"] * 100
        low, high = (v * 100 for v in s["test_accuracy_ci95"])
        axis.errorbar(mean, y, xerr=[[mean - low], [high - mean]], fmt="o", capsize=3)
    axis.set_yticks(range(len(shown)), [f"{s['row']}. {s['name']}" for s in shown])
    axis.invert_yaxis()
    axis.set(xlabel="test accuracy (%), 95 % interval")
    axis.grid(axis="x", alpha=0.3)
    return [*written, save_figure(figure, folder / "experiments.png")]
