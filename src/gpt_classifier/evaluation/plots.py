"""Figures written to explicit PNG paths: training curves and the confusion matrix.

Uses matplotlib's object API (``Figure`` drawn by ``FigureCanvasAgg``) and never imports
``pyplot``: nothing here opens a window, registers a figure with pyplot, or changes the backend a
user picked for their own session. Figures are not kept anywhere once saved.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter, StrMethodFormatter

from ..fileio import atomic_path
from .history import TrainingHistory

DPI = 120
_MARKERS_UP_TO = 30  # curves with at most this many points show a marker at each point


def plot_values(
    epochs_seen: Sequence[float],
    examples_seen: Sequence[float],
    train_values: Sequence[float],
    val_values: Sequence[float],
    label: str,
    path: str | os.PathLike[str],
    *,
    percent: bool = False,
) -> Path:
    """The book's training-curve figure: training and validation ``label`` against epochs, with a
    second x-axis on top giving the number of training examples seen. Saved as PNG to ``path``
    (parent folders created); returns ``path``.

    ``percent=True`` labels the y-axis in percent for values given as fractions of 1.
    """
    epochs = np.asarray(epochs_seen, dtype=np.float64)
    examples = np.asarray(examples_seen, dtype=np.float64)
    train = np.asarray(train_values, dtype=np.float64)
    val = np.asarray(val_values, dtype=np.float64)
    lengths = {len(epochs), len(examples), len(train), len(val)}
    if len(lengths) != 1:
        raise ValueError(
            "epochs_seen, examples_seen, train_values and val_values differ in length "
            f"({len(epochs)}, {len(examples)}, {len(train)}, {len(val)})"
        )
    if len(epochs) == 0:
        raise ValueError(f"nothing to plot: no {label} values")

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax1 = fig.add_subplot()
    marker = "o" if len(epochs) <= _MARKERS_UP_TO else None
    ax1.plot(epochs, train, marker=marker, markersize=4, label=f"Training {label}")
    ax1.plot(epochs, val, linestyle="-.", marker=marker, markersize=4, label=f"Validation {label}")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel(label[:1].upper() + label[1:])
    if percent:
        ax1.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax1.grid(alpha=0.3)
    ax1.legend()

    # A second x-axis on top for examples seen: the book plots the curve again, invisibly, on a
    # twin axis so that it autoscales; we then set its limits to match the epoch axis exactly.
    ax2 = ax1.twiny()
    ax2.plot(examples, train, alpha=0)
    ax2.set_xlabel("Examples seen")
    ax2.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax2.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    _align_examples_axis(ax1, ax2, epochs, examples)
    ax1.set_title(f"Training and validation {label}")
    return _save(fig, path)


def plot_training_history(
    history: TrainingHistory | Mapping[str, Any], output_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write ``loss.png`` (every loss evaluation) and ``accuracy.png`` (every epoch, y-axis in
    percent) into ``output_dir``; returns the paths written. A figure whose lists are empty is
    skipped (e.g. no accuracy yet), so the list may be shorter than two.

    ``history`` is a :class:`TrainingHistory` or its :meth:`~TrainingHistory.to_dict` form.
    """
    if not isinstance(history, TrainingHistory):
        history = TrainingHistory.from_dict(history)
    output_dir = Path(output_dir)
    paths = []
    if history.train_losses:
        paths.append(
            plot_values(
                history.epochs_seen,
                history.examples_seen,
                history.train_losses,
                history.val_losses,
                "loss",
                output_dir / "loss.png",
            )
        )
    if history.train_accs:
        paths.append(
            plot_values(
                history.acc_epochs_seen,
                history.acc_examples_seen,
                history.train_accs,
                history.val_accs,
                "accuracy",
                output_dir / "accuracy.png",
                percent=True,
            )
        )
    return paths


def plot_confusion_matrix(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "Confusion matrix",
) -> Path:
    """An annotated heatmap of ``matrix`` (rows: true class, columns: predicted class, as in
    ``classification_metrics(...)["confusion_matrix"]``) with the class names as tick labels.
    Saved as PNG to ``path`` (parent folders created); returns ``path``. Readable for 2 to 20
    classes; beyond 30 the cells are left unannotated.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    names = [str(name) for name in class_names]
    n = len(names)
    if n == 0 or counts.shape != (n, n):
        raise ValueError(
            f"confusion matrix must be square with one row per class name: shape {counts.shape} "
            f"for {n} class names"
        )
    if not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise ValueError("confusion matrix entries must be finite and non-negative")

    side = float(np.clip(0.45 * n + 3.0, 4.5, 13.0))
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    vmax = max(float(counts.max()), 1.0)
    image = ax.imshow(counts, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8)

    rotate = n > 6 or max(len(name) for name in names) > 8
    ax.set_xticks(range(n), labels=names)
    if rotate:
        ax.tick_params(axis="x", labelrotation=45)
        for tick_label in ax.get_xticklabels():
            tick_label.set_horizontalalignment("right")
            tick_label.set_rotation_mode("anchor")
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title)

    if n <= 30:
        integral = bool(np.all(counts == np.round(counts)))
        fontsize = 11 if n <= 6 else max(6.0, 11 - 0.3 * (n - 6))
        for i in range(n):
            for j in range(n):
                value = counts[i, j]
                text = f"{int(value)}" if integral else f"{value:.2f}"
                color = "white" if value > vmax / 2 else "black"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=fontsize)
    return _save(fig, path)


def _align_examples_axis(ax1: Any, ax2: Any, epochs: np.ndarray, examples: np.ndarray) -> None:
    """Set the top axis limits so that each epoch position lines up with its examples count,
    assuming examples grow linearly with epochs (through the first and last points, or through
    the origin when all points share one epoch). Where no such line exists (a single point at
    epoch 0), the top axis instead gets a tick at each point, labelled with its examples count."""
    finite = np.isfinite(epochs) & np.isfinite(examples)
    if not finite.any():
        return
    epochs, examples = epochs[finite], examples[finite]
    slope = 0.0
    if epochs[-1] != epochs[0]:
        slope = (examples[-1] - examples[0]) / (epochs[-1] - epochs[0])
    elif epochs[0] != 0:
        slope = examples[0] / epochs[0]
    left, right = ax1.get_xlim()
    if slope > 0:
        ax2.set_xlim(
            examples[0] + (left - epochs[0]) * slope, examples[0] + (right - epochs[0]) * slope
        )
    else:
        ax2.set_xlim(left, right)
        positions, first = np.unique(epochs, return_index=True)
        ax2.set_xticks(positions, labels=[f"{value:,.0f}" for value in examples[first]])


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with atomic_path(path) as partial:
        fig.savefig(partial, dpi=DPI, format="png")
    return path
