"""The grid's table: the book's columns plus macro F1, ROC-AUC, a 95 % interval of the test
accuracy, mean ± std over seeds and peak memory; as Markdown, CSV, JSON and a chart."""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fileio import write_json, write_text
from .grid import Row
from .runner import RunOutcome, wilson_interval


@dataclass
class RowSummary:
    row: Row
    runs: int
    failed: list[str]
    values: dict[str, tuple[float, float] | None]  # metric -> (mean, std over seeds)
    test_interval: tuple[float, float] | None
    test_examples: int | None
    seconds: float | None
    peak_rss_mb: float | None
    device: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row.number,
            "name": self.row.name,
            **self.row.describe(),
            "options": self.row.options,
            "note": self.row.note,
            "runs": self.runs,
            "failed": self.failed,
            **{
                f"{key}_{part}": (None if value is None else value[i])
                for key, value in self.values.items()
                for i, part in enumerate(("mean", "std"))
            },
            "test_accuracy_ci95": None if self.test_interval is None else list(self.test_interval),
            "test_examples": self.test_examples,
            "seconds_mean": self.seconds,
            "peak_rss_mb_max": self.peak_rss_mb,
            "device": self.device,
        }


METRICS = {
    "train_accuracy": lambda m: m["train"]["accuracy"],
    "validation_accuracy": lambda m: m["validation"]["accuracy"],
    "test_accuracy": lambda m: m["test"]["accuracy"],
    "test_macro_f1": lambda m: m["test"]["macro_avg"]["f1"],
    "test_roc_auc": lambda m: m["test"]["roc_auc"],
}


def summarize(outcomes: list[RunOutcome]) -> list[RowSummary]:
    by_row: dict[int, list[RunOutcome]] = {}
    for outcome in outcomes:
        by_row.setdefault(outcome.row.number, []).append(outcome)
    return [_summarize_row(group) for group in by_row.values()]


def _summarize_row(group: list[RunOutcome]) -> RowSummary:
    good = [o for o in group if o.ok]
    values = {
        key: _mean_std([v for o in good if (v := _read(read, o.metrics)) is not None])
        for key, read in METRICS.items()
    }
    n_test, interval = None, None
    if good and values["test_accuracy"] is not None:
        n_test = int(good[0].metrics["test"]["num_examples"])
        correct = round(values["test_accuracy"][0] * n_test)
        interval = wilson_interval(correct, n_test)
    seconds = [o.seconds for o in good if o.seconds is not None]
    peaks = [o.peak_rss_mb for o in good if o.peak_rss_mb is not None]
    return RowSummary(
        row=group[0].row,
        runs=len(good),
        failed=[f"seed {o.seed}: {o.error}" for o in group if not o.ok],
        values=values,
        test_interval=interval,
        test_examples=n_test,
        seconds=statistics.fmean(seconds) if seconds else None,
        peak_rss_mb=max(peaks) if peaks else None,
        device=good[0].device if good else "",
    )


def _read(read: Any, metrics: Any) -> float | None:
    try:
        value = read(metrics)
    except (KeyError, TypeError):
        return None
    return None if value is None else float(value)


def _mean_std(numbers: list[float]) -> tuple[float, float] | None:
    if not numbers:
        return None
    std = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
    return statistics.fmean(numbers), std


def _percent(value: tuple[float, float] | None, seeds: int) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean * 100:.2f} %" + (f" ± {std * 100:.2f}" if seeds > 1 else "")


def _plain(value: tuple[float, float] | None) -> str:
    return "–" if value is None or math.isnan(value[0]) else f"{value[0]:.4f}"


COLUMNS = [
    "#", "name", "model", "weights", "token position", "trainable", "context",
    "train acc", "val acc", "test acc", "test acc 95 % CI", "test macro F1", "ROC-AUC",
    "time", "peak memory", "device",
]  # fmt: skip


def table_rows(summaries: list[RowSummary]) -> list[list[str]]:
    rows = []
    for s in summaries:
        described = s.row.describe()
        low, high = s.test_interval or (None, None)
        accuracies = ("train_accuracy", "validation_accuracy", "test_accuracy")
        rows.append(
            [
                str(s.row.number),
                s.row.name + (" (failed)" if s.failed and not s.runs else ""),
                *(described[key] for key in COLUMNS[2:7]),
                *(_percent(s.values[key], s.runs) for key in accuracies),
                "–" if low is None else f"{low * 100:.1f}–{high * 100:.1f} %",
                _plain(s.values["test_macro_f1"]),
                _plain(s.values["test_roc_auc"]),
                "–" if s.seconds is None else f"{s.seconds / 60:.2f} min",
                "–" if s.peak_rss_mb is None else f"{s.peak_rss_mb:,.0f} MiB",
                s.device or "–",
            ]
        )
    return rows


def markdown(summaries: list[RowSummary], header: str) -> str:
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(summaries)]
    notes = [f"- Row {s.row.number}: {s.row.note}" for s in summaries if s.row.note]
    notes += [f"- Row {s.row.number} failed: {f}" for s in summaries for f in s.failed]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += [
        "",
        "The 95 % interval is Wilson's for the test accuracy over the test split's "
        "examples: rows whose intervals overlap are not shown to differ by this test split.",
    ]
    return "\n".join(lines) + "\n"


def write_outputs(summaries: list[RowSummary], folder: Path, header: str) -> list[Path]:
    written = [folder / name for name in ("experiments.md", "experiments.csv", "experiments.json")]
    write_text(written[0], markdown(summaries, header))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(table_rows(summaries))
    write_text(written[1], buffer.getvalue())
    write_json(written[2], [s.to_dict() for s in summaries])
    if any(s.test_interval for s in summaries):
        written.append(_plot(summaries, folder / "experiments.png"))
    return written


def _plot(summaries: list[RowSummary], path: Path) -> Path:
    from ..evaluation.plots import new_figure, save_figure

    shown = [s for s in summaries if s.test_interval is not None]
    figure, axis = new_figure((8, 0.4 * len(shown) + 1.5), layout="tight")
    for y, s in enumerate(shown):
        mean = s.values["test_accuracy"][0] * 100  # type: ignore[index]
        low, high = (v * 100 for v in s.test_interval)  # type: ignore[union-attr]
        axis.errorbar(mean, y, xerr=[[mean - low], [high - mean]], fmt="o", capsize=3)
    axis.set_yticks(range(len(shown)), [f"{s.row.number}. {s.row.name}" for s in shown])
    axis.invert_yaxis()
    axis.set(xlabel="test accuracy (%), 95 % interval")
    axis.grid(axis="x", alpha=0.3)
    return save_figure(figure, path)
