"""Figures: valid PNG files of the expected size, and no change to a user's matplotlib backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from gpt_classifier.evaluation import TrainingHistory
from gpt_classifier.evaluation.plots import (
    plot_confusion_matrix,
    plot_training_history,
    plot_values,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_shape(path: Path) -> tuple[int, int]:
    """(height, width) of a PNG file, after checking it is a real, non-trivial PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1024
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    return pixels.shape[0], pixels.shape[1]


def make_history(num_evals: int, num_epochs: int, train_size: int = 1046) -> TrainingHistory:
    history = TrainingHistory()
    batch_size, eval_freq = 8, 50
    for i in range(num_evals):
        examples = i * eval_freq * batch_size
        history.record_losses(
            examples / train_size, examples, 0.7 * np.exp(-i / 20), 0.75 * np.exp(-i / 25)
        )
    for epoch in range(1, num_epochs + 1):
        train_acc = 0.8 + 0.15 * (1 - np.exp(-epoch / 10))
        history.record_accuracies(epoch, epoch * train_size, train_acc, train_acc - 0.02)
    return history


def test_plot_values_writes_a_png(tmp_path):
    path = plot_values(
        [0.0, 0.5, 1.0],
        [0, 500, 1000],
        [0.9, 0.5, 0.3],
        [0.95, 0.6, 0.4],
        "loss",
        tmp_path / "l.png",
    )
    assert path == tmp_path / "l.png"
    assert png_shape(path) == (504, 768)  # 6.4 x 4.2 inches at 120 dpi


@pytest.mark.parametrize(("num_evals", "num_epochs"), [(1, 1), (500, 40)])
def test_plot_training_history_short_and_long(tmp_path, num_evals, num_epochs):
    history = make_history(num_evals, num_epochs)
    paths = plot_training_history(history, tmp_path / "plots")
    assert paths == [tmp_path / "plots" / "loss.png", tmp_path / "plots" / "accuracy.png"]
    for path in paths:
        assert png_shape(path) == (504, 768)


def test_plot_training_history_accepts_a_dict_and_skips_empty_curves(tmp_path):
    history = make_history(5, 0).to_dict()
    assert plot_training_history(history, tmp_path) == [tmp_path / "loss.png"]
    assert not (tmp_path / "accuracy.png").exists()


def test_plot_values_rejects_mismatched_or_empty_input(tmp_path):
    with pytest.raises(ValueError, match="differ in length"):
        plot_values([0, 1], [0, 10], [1.0], [1.0, 2.0], "loss", tmp_path / "x.png")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_values([], [], [], [], "loss", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("num_classes", [2, 5, 20])
def test_plot_confusion_matrix(tmp_path, num_classes):
    rng = np.random.default_rng(num_classes)
    matrix = rng.integers(0, 50, (num_classes, num_classes)) + 200 * np.eye(num_classes, dtype=int)
    names = [f"class {k}" for k in range(num_classes)]
    path = plot_confusion_matrix(matrix.tolist(), names, tmp_path / "cm.png", title="Test split")
    height, width = png_shape(path)
    assert height >= 500 and width >= height


def test_plot_confusion_matrix_gets_bigger_with_more_classes(tmp_path):
    small = png_shape(plot_confusion_matrix(np.eye(2), ["a", "b"], tmp_path / "2.png"))
    names = list("abcdefghij")
    large = png_shape(plot_confusion_matrix(np.eye(10), names, tmp_path / "10.png"))
    assert large[0] > small[0] and large[1] > small[1]


def test_plot_confusion_matrix_rejects_a_shape_that_does_not_fit(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "cm.png")
    with pytest.raises(ValueError, match="non-negative"):
        plot_confusion_matrix([[1, -2], [3, 4]], ["a", "b"], tmp_path / "cm.png")


@pytest.mark.parametrize("import_pyplot", [False, True])
def test_plotting_keeps_the_users_backend(tmp_path, import_pyplot):
    script = textwrap.dedent(
        f"""
        import sys
        import matplotlib
        matplotlib.use("svg")
        if {import_pyplot}:
            import matplotlib.pyplot as plt
        before = matplotlib.get_backend()

        from gpt_classifier.evaluation.plots import plot_confusion_matrix, plot_values

        plot_values([0, 1], [0, 10], [1.0, 0.5], [1.1, 0.6], "loss", r"{tmp_path}/loss.png")
        plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], r"{tmp_path}/cm.png")
        assert matplotlib.get_backend() == before == "svg", matplotlib.get_backend()
        if {import_pyplot}:
            assert plt.get_fignums() == [], plt.get_fignums()  # no figure left open in pyplot
        else:
            assert "matplotlib.pyplot" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG_SIGNATURE


def test_training_curves_say_what_each_point_was_measured_on(tmp_path, monkeypatch):
    from gpt_classifier.evaluation import plots

    titles = []
    real_save = plots.save_figure

    def save(fig, path):
        titles.append(fig.axes[0].get_title())
        return real_save(fig, path)

    monkeypatch.setattr(plots, "save_figure", save)
    plot_training_history(make_history(3, 2), tmp_path, eval_iter=5)
    assert titles == [
        "Training and validation loss\n(each point: 5 batches of each split)",
        "Training and validation accuracy\n(each point: 5 batches of each split)",
    ]
