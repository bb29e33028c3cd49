"""Grids of fine-tuning runs: the book's 19-row design-choice table (rasbt/LLMs-from-scratch,
ch06/02_bonus_additional-experiments) or your own. A row is a name and the ``train`` options it
changes over the grid's base options; each row and seed is one ``train`` in its own run directory,
read back after (``--resume`` reports finished rows without running them). And a TF-IDF baseline."""

from __future__ import annotations

import json
import math
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..classifier import TrainableKind, parse_trainable
from ..data import read_splits
from ..errors import GPTClassifierError
from ..evaluation import classification_metrics
from ..fileio import check_output_dir
from ..runs.checkpoint import OPTIONS_FILE
from ..runs.run_dir import wilson_interval as share_interval
from ..runs.transaction import MARKER_FILE, StagedRun
from ..training.memory import reset_peak_rss
from ..training.pipeline import run_finetune
from ..training.recipe import FinetuneOptions
from ..training.settings import PRESETS


@dataclass(frozen=True)
class Row:
    number: int
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # why a row cannot differ from another in this implementation, etc.

    def describe(self) -> dict[str, str]:
        """The book's columns for this row (its options over its preset's values)."""
        o = row_values(self.options)
        batch = "no padding" if o["batch_size"] == 1 else "per batch"
        named = {"longest-train": "longest train ex.", "context": "context length", "batch": batch}
        context = named.get(str(o["padding"]), str(o["padding"]))
        if o["grad_accum_steps"] > 1:
            context += f", {o['grad_accum_steps']} accumulation steps"
        if o["causal_mask"] is False:
            context += "; no causal mask"
        return {
            "model": Path(str(o["model"])).name,
            "weights": str(o["init"]),
            "token position": str(o["pooling"]),
            "trainable": str(o["trainable"]),
            "context": context,
        }


def row_values(options: dict[str, Any]) -> dict[str, Any]:
    """What a row runs with: its options over its preset over train's defaults."""
    preset = PRESETS.get(str(options.get("preset") or "default"), PRESETS["default"])
    defaults = {f.name: f.default for f in fields(FinetuneOptions)}
    return {**defaults, **preset, **{k: v for k, v in options.items() if v is not None}}


_LORA, _UNPADDED = {"trainable": "lora", "lora_rank": 16}, {"padding": "batch", "batch_size": 1}
BOOK_ROWS = [
    Row(1, "book's recipe (chapter 6)", {}),
    Row(2, "first token", {"pooling": "first"}),
    Row(3, "last layer only", {"trainable": "head"}),
    Row(4, "last two blocks", {"trainable": "last-blocks:2"}),
    Row(5, "all layers", {"trainable": "all"}),
    Row(6, "gpt2-medium", {"model": "gpt2-medium"}),
    Row(7, "gpt2-large", {"model": "gpt2-large"}),
    Row(8, "gpt2-xl", {"model": "gpt2-xl"}),
    Row(9, "gpt2-xl, all layers", {"model": "gpt2-xl", "trainable": "all"}),
    Row(10, "random weights, all layers", {"init": "random", "trainable": "all"}),
    Row(11, "LoRA r16 a16", {**_LORA, "lora_alpha": 16.0}),
    Row(12, "gpt2-xl, LoRA r16 a8", {"model": "gpt2-xl", **_LORA, "lora_alpha": 8.0}),
    Row(13, "pad to the full context", {"padding": "context"}),
    Row(14, "no padding, batch 1", _UNPADDED),
    Row(15, "no padding, batch 1 x 8 accumulation", {**_UNPADDED, "grad_accum_steps": 8}),
    Row(16, "last non-padding token", {"pooling": "last-real"}),
    Row(17, "no causal mask", {"causal_mask": False}),
    Row(
        18,
        "ignore index for padding",
        {},
        note="same as row 1 here: the loss reads one pooled position per text, never a padding "
        "token's prediction, so an ignore index has nothing to ignore (the book finds the same)",
    ),
    Row(19, "average of the token states", {"pooling": "mean"}),
]


def parse_rows(spec: str | None, rows: list[Row]) -> list[Row]:
    """``"1-4,14-19"`` -> those rows, in grid order; ``None`` -> all."""
    if not spec:
        return rows
    wanted: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            wanted.update(range(int(low), int(high if dash else low) + 1))
        except ValueError:
            raise GPTClassifierError(f"--rows: {part!r} is not a row number or range") from None
    known = {row.number for row in rows}
    if unknown := sorted(wanted - known):
        raise GPTClassifierError(
            f"--rows: no row {', '.join(map(str, unknown))} in this grid (rows "
            f"{min(known)}-{max(known)})"
        )
    return [row for row in rows if row.number in wanted]


def load_grid(path: str | Path) -> tuple[dict[str, Any], list[Row]]:
    """A TOML or JSON grid: optional ``base`` options and ``rows`` (``name``, ``note``, options)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise GPTClassifierError(f"grid file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GPTClassifierError(f"{path}: not a valid grid file ({exc})") from None
    if not isinstance(values, dict) or not isinstance(values.get("rows"), list):
        raise GPTClassifierError(f"{path}: a grid needs a list of 'rows'")
    base = values.get("base", {})
    if not isinstance(base, dict):
        raise GPTClassifierError(f"{path}: 'base' must be a table of options")
    _check_options(base, f"{path}: base")
    rows = []
    for number, item in enumerate(values["rows"], start=1):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise GPTClassifierError(f"{path}: row {number} needs a 'name'")
        options = {k: v for k, v in item.items() if k not in ("name", "note")}
        _check_options(options, f"{path}: row {number} ({item['name']})")
        rows.append(Row(number, item["name"], options, str(item.get("note", ""))))
    if not rows:
        raise GPTClassifierError(f"{path}: the grid has no rows")
    return base, rows


def _check_options(options: dict[str, Any], where: str) -> None:
    if unknown := sorted(set(options) - {f.name for f in fields(FinetuneOptions)}):
        raise GPTClassifierError(f"{where}: unknown train options {unknown}")
    # What a row may not set: where its run goes and how the grid runs it are the grid's business.
    if owned := sorted(set(options) & {"output_dir", "overwrite", "resume", "progress"}):
        raise GPTClassifierError(f"{where}: {owned} are set by the grid, not by a row")


@dataclass
class RunOutcome:  # one row and seed: its figures, or why it has none
    row: Row
    seed: int
    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    peak_rss_mb: float | None = None
    device: str = ""
    error: str = ""  # why it has no figures

    def _json(self, name: str) -> Any:
        return json.loads((self.run_dir / name).read_text(encoding="utf-8"))

    def _interrupted(self) -> bool:
        try:
            return bool(self._json("run.json")["interrupted"])
        except (OSError, ValueError, KeyError, TypeError):
            return True  # unreadable: run it again

    def _read_back(self) -> None:
        try:
            self.metrics = self._json("metrics.json")
            timings = self._json("timings.json")
        except (OSError, ValueError) as exc:
            self.error = f"unreadable results in {self.run_dir} ({exc})"
            return
        self.seconds = timings.get("seconds", {}).get("total")
        self.peak_rss_mb = timings.get("peak_rss_mb")
        self.device = str(timings.get("device", ""))


def run_grid(
    base: dict[str, Any],
    rows: list[Row],
    seeds: list[int],
    output_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None],
) -> list[RunOutcome]:
    if not resume:
        check_output_dir(output_dir, overwrite=overwrite)
    output_dir.mkdir(parents=True, exist_ok=True)
    order = execution_order(base, rows)
    if order != rows:
        log(
            f"running rows in the order {', '.join(str(row.number) for row in order)}: shallower "
            "frozen prefixes first, so deeper ones only run the blocks they add"
        )
    outcomes: dict[tuple[int, int], RunOutcome] = {}
    for row in order:
        for seed in seeds:
            suffix = f"-seed-{seed}" if len(seeds) > 1 else ""
            run_dir = output_dir / f"row-{row.number:02d}{suffix}"
            outcome = outcomes[row.number, seed] = RunOutcome(row, seed, run_dir)
            title = f"row {row.number} ({row.name}), seed {seed}"
            if resume and (run_dir / MARKER_FILE).is_file() and not outcome._interrupted():
                log(f"{title}: finished earlier, read from {run_dir}")
                outcome._read_back()
                continue
            # a row keeps only the trained tensors, unless the grid says --save full
            values = {"save": "trainable", **base, **row.options, "seed": seed}
            values.update(output_dir=str(run_dir), progress=progress, overwrite=True)
            if resume and (StagedRun(run_dir).checkpoint_dir / OPTIONS_FILE).is_file():
                values.update(resume=True, overwrite=False)
            log(f"{title}: training into {run_dir}")
            reset_peak_rss()  # each row's peak, not the grid's so far
            try:
                options = FinetuneOptions.from_dict(values)
                result = run_finetune(options, log=lambda m: log(f"  {m}"))
            except GPTClassifierError as exc:
                log(f"{title}: failed: {exc}")
                outcome.error = str(exc)
                continue
            if result.interrupted:  # Ctrl-C: the row was saved as it stood; stop the grid here
                raise KeyboardInterrupt
            outcome._read_back()
    return [outcomes[row.number, seed] for row in rows for seed in seeds]


def execution_order(base: dict[str, Any], rows: list[Row]) -> list[Row]:
    """Shallowest frozen prefix first, ties in grid order: a run starts from the cached states of
    a shallower prefix (the book's rows 4, 1, 3 freeze 10, 11, 12 blocks: each adds one)."""

    def depth(row: Row) -> float:
        try:
            spec = parse_trainable(str(row_values({**base, **row.options})["trainable"]))
        except GPTClassifierError:
            return math.inf  # the row reports its own error when it runs
        if spec.kind == TrainableKind.LAST_BLOCKS:
            return -float(spec.num_blocks or 1)
        return 0.0 if spec.kind == TrainableKind.HEAD else math.inf

    return sorted(rows, key=depth)


def wilson_interval(correct: int, total: int) -> tuple[float, float]:
    """95 % Wilson score interval of ``correct`` out of ``total`` (NaN for no trials)."""
    return share_interval(correct / total, total) if total > 0 else (math.nan, math.nan)


def tfidf_baseline(splits_dir: Path, seed: int = 123) -> RunOutcome:
    """TF-IDF + logistic regression (scikit-learn, as the book's IMDb bonus) on a run's splits."""
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
    row = Row(
        0,
        "TF-IDF + logistic regression",
        {"model": "–", "init": "–", "pooling": "–", "trainable": "–", "padding": "–"},
        note="scikit-learn, word 1-2-grams, trained and tested on the same splits as the rows",
    )
    outcome = RunOutcome(row, seed, splits_dir, device="cpu")
    for name in ("train", "validation", "test"):
        if records := prepared.split(name):
            probabilities = model.predict_proba(vectorizer.transform([r.text for r in records]))
            full = np.zeros((len(records), labels.num_classes))
            full[:, model.classes_] = probabilities  # a class missing from training stays at 0
            truth, predicted = [labels.id_of(r.label) for r in records], full.argmax(axis=1)
            outcome.metrics[name] = classification_metrics(truth, predicted, labels.classes, full)
    outcome.seconds = time.perf_counter() - started
    return outcome
