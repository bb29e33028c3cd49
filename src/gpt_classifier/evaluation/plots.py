"""Training curves and the confusion matrix as PNG files, by matplotlib's object API, never
``pyplot``: no window, no figure kept, no change to the user's backend."""

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


def plot_values(
    epochs_seen: Sequence[float],
    examples_seen: Sequence[float],
    train_values: Sequence[float],
    val_values: Sequence[float],
    label: str,
    path: str | os.PathLike[str],
    *,
    percent: bool = False,
    measured_on: str | None = None,
) -> Path:
    """The book's figure: training and validation ``label`` against epochs and examples seen."""
    series = (epochs_seen, examples_seen, train_values, val_values)
    epochs, examples, train, val = (np.asarray(s, dtype=np.float64) for s in series)
    if len({len(epochs), len(examples), len(train), len(val)}) != 1:
        raise ValueError(
            "epochs_seen, examples_seen, train_values and val_values differ in length "
            f"({len(epochs)}, {len(examples)}, {len(train)}, {len(val)})"
        )
    if len(epochs) == 0:
        raise ValueError(f"nothing to plot: no {label} values")
    fig, ax1 = new_figure((6.4, 4.2))
    style = {"marker": "o" if len(epochs) <= 30 else None, "markersize": 4}  # dots on short curves
    ax1.plot(epochs, train, **style, label=f"Training {label}")
    ax1.plot(epochs, val, linestyle="-.", **style, label=f"Validation {label}")
    ax1.set(xlabel="Epochs", ylabel=label[:1].upper() + label[1:])
    if percent:
        ax1.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax1.grid(alpha=0.3)
    ax1.legend()
    # as the book: the curve again, invisibly, on a twin axis; its limits are then aligned
    ax2 = ax1.twiny()
    ax2.plot(examples, train, alpha=0)
    ax2.set_xlabel("Examples seen")
    ax2.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax2.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    # Each epoch lines up with its examples count (a line through the first and last points,
    # or the origin); without such a line, a labelled tick at each point.
    finite = np.isfinite(epochs) & np.isfinite(examples)
    if finite.any():
        xs, ys = epochs[finite], examples[finite]
        run, rise = (xs[-1] - xs[0], ys[-1] - ys[0]) if xs[-1] != xs[0] else (xs[0], ys[0])
        slope = rise / run if run else 0.0
        left, right = ax1.get_xlim()
        if slope > 0:
            ax2.set_xlim(ys[0] + (left - xs[0]) * slope, ys[0] + (right - xs[0]) * slope)
        else:
            ax2.set_xlim(left, right)
            positions, first = np.unique(xs, return_index=True)
            ax2.set_xticks(positions, labels=[f"{value:,.0f}" for value in ys[first]])
    measured = f"\n(each point: {measured_on})" if measured_on else ""
    ax1.set_title(f"Training and validation {label}{measured}")
    return save_figure(fig, path)


def plot_training_history(
    history: TrainingHistory | Mapping[str, Any], output_dir: Path, eval_iter: int | None = None
) -> list[Path]:
    """``loss.png`` and ``accuracy.png`` in ``output_dir``, each only if it has points."""
    log = history if isinstance(history, TrainingHistory) else TrainingHistory.from_dict(history)
    curves = {
        "loss": (log.epochs_seen, log.examples_seen, log.train_losses, log.val_losses),
        "accuracy": (log.acc_epochs_seen, log.acc_examples_seen, log.train_accs, log.val_accs),
    }
    sample = f"{eval_iter} batches of each split" if eval_iter else None
    return [
        plot_values(
            *xy, kind, output_dir / f"{kind}.png", percent=kind == "accuracy", measured_on=sample
        )
        for kind, xy in curves.items()
        if xy[2]
    ]


def plot_confusion_matrix(
    matrix: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "Confusion matrix",
) -> Path:
    """An annotated heatmap (rows: true class), cells unannotated beyond 30 classes."""
    counts, names = np.asarray(matrix, dtype=np.float64), [str(name) for name in class_names]
    n = len(names)
    if n == 0 or counts.shape != (n, n):
        raise ValueError(
            f"confusion matrix must be square with one row per class name: shape {counts.shape} "
            f"for {n} class names"
        )
    if not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise ValueError("confusion matrix entries must be finite and non-negative")
    side = float(np.clip(0.45 * n + 3.0, 4.5, 13.0))
    fig, ax = new_figure((side + 1.2, side))
    vmax = max(float(counts.max()), 1.0)
    image = ax.imshow(counts, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8)
    slanted = n > 6 or max(len(name) for name in names) > 8
    tilt = {"rotation": 45, "horizontalalignment": "right", "rotation_mode": "anchor"}
    ax.set_xticks(range(n), labels=names, **(tilt if slanted else {}))
    ax.set_yticks(range(n), labels=names)
    ax.set(xlabel="Predicted class", ylabel="True class", title=title)
    integral = bool(np.all(counts == np.round(counts)))
    fontsize = 11 if n <= 6 else max(6.0, 11 - 0.3 * (n - 6))
    if n <= 30:
        for (row, column), value in np.ndenumerate(counts):
            text = f"{int(value)}" if integral else f"{value:.2f}"
            color = "white" if value > vmax / 2 else "black"
            ax.text(column, row, text, ha="center", va="center", color=color, fontsize=fontsize)
    return save_figure(fig, path)


def new_figure(size: tuple[float, float], layout: str = "constrained") -> tuple[Figure, Any]:
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with atomic_path(path) as partial:
        fig.savefig(partial, dpi=120, format="png")
    return path
