"""A classical baseline on the same splits: TF-IDF features and logistic regression
(scikit-learn, the ``experiments`` extra), as the book's IMDb bonus compares against."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..data import read_splits
from ..errors import GPTClassifierError
from ..evaluation import classification_metrics
from .grid import Row
from .runner import RunOutcome

TFIDF_ROW = Row(
    0,
    "TF-IDF + logistic regression",
    {"model": "–", "init": "–", "pooling": "–", "trainable": "–", "padding": "–"},
    note="scikit-learn, word 1-2-grams, trained and tested on the same splits as the rows",
)


def tfidf_baseline(splits_dir: Path, seed: int = 123) -> RunOutcome:
    """Fit on ``splits_dir``'s train split (a run's ``data/``), score all three splits."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ModuleNotFoundError:
        raise GPTClassifierError(
            "--baseline tfidf needs scikit-learn: pip install 'gpt-classifier[experiments]'"
        ) from None
    started = time.perf_counter()
    prepared = read_splits(splits_dir)
    labels = prepared.label_map
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    model = LogisticRegression(max_iter=2000, random_state=seed, C=10.0)
    train_x = vectorizer.fit_transform([r.text for r in prepared.train])
    model.fit(train_x, [labels.id_of(r.label) for r in prepared.train])
    outcome = RunOutcome(TFIDF_ROW, seed, splits_dir, device="cpu")
    for name in ("train", "validation", "test"):
        if records := prepared.split(name):
            probabilities = model.predict_proba(vectorizer.transform([r.text for r in records]))
            full = np.zeros((len(records), labels.num_classes))
            full[:, model.classes_] = probabilities  # a class missing from training stays at 0
            truth = [labels.id_of(r.label) for r in records]
            predicted, classes = full.argmax(axis=1), list(labels.classes)
            outcome.metrics[name] = classification_metrics(truth, predicted, classes, full)
    outcome.seconds = time.perf_counter() - started
    return outcome
