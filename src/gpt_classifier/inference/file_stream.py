"""``classify --file``: any file, chunk by chunk in flat memory, resumable (docs/design.md)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.readers import TextFilePlan, TextRow, iter_text_rows, read_unlabelled, scan_text_file
from ..errors import GPTClassifierError
from ..faults import crash_point
from ..fileio import fsync_directory, refuse_special, write_json, writing
from ..progress import progress_bar
from .predict import Prediction, TextClassifier

CHUNK_ROWS = 4096
PROGRESS_FORMAT = 2  # 2: per-class probability columns
_FLAG = "--output (the rows written so far are kept for --resume)"


@dataclass
class FileResult:
    rows: int  # in the file
    classified: int  # by this run (a resumed run skips the rows done before)
    truncated: int  # texts cut to the trained length
    seconds: float
    max_length: int = 0  # the trained length texts are cut to
    main_process: bool = True  # False on the other ranks under torchrun (rank 0 reports)


def partial_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.partial")


def progress_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.progress.json")


def check_resumable(output: Path, *, resume: bool, overwrite: bool) -> None:
    """Before any work: an interrupted run's leftovers are resumed or replaced, never mixed."""
    if resume and not progress_path(output).is_file():
        raise GPTClassifierError(f"--resume: no interrupted classify of {output} to continue")
    leftovers = partial_path(output).exists() or progress_path(output).exists()
    if leftovers and not resume and not overwrite:
        raise GPTClassifierError(
            f"an interrupted classify of {output} can be continued: add --resume (or pass "
            "--overwrite to start again)"
        )


def classify_file(
    classifier: TextClassifier,
    input_file: str | os.PathLike[str],
    *,
    output: Path | None = None,
    sink: Callable[[Sequence[TextRow], Sequence[Prediction]], None] | None = None,
    fmt: str | None = None,
    text_column: str | None = None,
    lenient: bool = False,
    batch_size: int = 64,
    chunk_rows: int = CHUNK_ROWS,
    resume: bool = False,
    progress: bool = True,
    dist: Any = None,
) -> FileResult:
    """Classify every row of ``input_file`` into the CSV ``output`` (the input's columns, then
    ``predicted_label``, ``probability``, ``probability_<class>``...) or ``sink`` per chunk."""
    from ..distributed import DistContext

    dist = dist or DistContext()
    if chunk_rows < 1:
        raise GPTClassifierError(f"chunk size must be positive, got {chunk_rows}")
    started = time.perf_counter()
    plan = scan_text_file(input_file, fmt, text_column, lenient=lenient)
    if shown := progress and dist.is_main:
        column = f"texts from column {plan.text_column!r}"
        source = "one text a line" if plan.fmt == "txt" else column
        print(f"classify: {plan.path.name}, {plan.rows:,} rows, {source}", file=sys.stderr)
    if dist.enabled:  # a file of fewer than N chunks still keeps every rank busy
        chunk_rows = min(chunk_rows, -(-plan.rows // dist.world_size))
    opened: list[_PartialCsv] = []  # rank 0 writes; its errors reach every rank
    if output is not None:
        dist.run_on_main(lambda: opened.append(_PartialCsv(output, plan, classifier, resume)))
    writer = opened[0] if opened else None
    done = dist.broadcast_object(writer.done if writer is not None else 0)
    sink = writer or sink
    truncated = 0  # texts this rank cut to the trained length
    bar = progress_bar(plan.rows, "classify", enabled=shown, unit="rows", initial=done)
    with writer.handle if writer else contextlib.nullcontext(), bar:  # closed on errors
        rows = iter_text_rows(plan, skip=done)
        chunks = iter(lambda: list(itertools.islice(rows, chunk_rows)), [])
        for round_of_chunks in iter(lambda: list(itertools.islice(chunks, dist.world_size)), []):
            probabilities = None
            if dist.rank < len(round_of_chunks):
                texts = [row.text for row in round_of_chunks[dist.rank]]
                probabilities = classifier.predict_proba(texts, batch_size)
                truncated += classifier.truncated
            gathered = dist.gather_objects(probabilities)
            if dist.is_main:
                for chunk, probs in zip(round_of_chunks, gathered, strict=False):
                    if sink is not None:
                        sink(chunk, classifier.predictions(probs))
                    bar.update(len(chunk))
        if writer is not None:
            writer.commit()
    seconds, truncated = time.perf_counter() - started, sum(dist.gather_objects(truncated))
    return FileResult(
        plan.rows, plan.rows - done, truncated, seconds, classifier.info.max_length, dist.is_main
    )


class _PartialCsv:
    """The hidden partial output and its progress file."""

    def __init__(self, output: Path, plan: TextFilePlan, classifier: TextClassifier, resume: bool):
        self.output, self.identity = output, _identity(plan, classifier.run_dir)
        self.classes = classes = classifier.classes
        self.columns = list(plan.columns) or ["text"]
        refuse_special(output, directory=False)  # replaced on commit
        partial = partial_path(output)
        self.done, size = _read_progress(output, self.identity) if resume else (0, 0)
        with writing(partial, _FLAG):
            if resume and (not partial.is_file() or partial.stat().st_size < size):
                raise GPTClassifierError(
                    f"--resume: {partial} is missing or shorter than its progress file "
                    "says; start again with --overwrite"
                )
            if not resume:
                progress_path(output).unlink(missing_ok=True)
            self.handle = partial.open("r+" if resume else "w", newline="", encoding="utf-8")
            self.handle.truncate(size)  # rows written after the last recorded chunk go again
            self.handle.seek(size)
        if resume:
            return
        try:
            header = [*self.columns, "predicted_label", "probability"]
            csv.writer(self.handle).writerow(header + [f"probability_{name}" for name in classes])
            self._record()
        except GPTClassifierError:  # not even the header fits: nothing to resume
            self.handle.close()
            partial.unlink(missing_ok=True)
            raise

    def __call__(self, rows: Sequence[TextRow], predictions: Sequence[Prediction]) -> None:
        """Append a chunk's rows (cells raw, no ``'`` before a leading ``=``: docs/design.md)."""
        with writing(self.output, _FLAG):
            csv.writer(self.handle).writerows(
                [row.fields.get(column, "") for column in self.columns]
                + [prediction.label, f"{prediction.probability:.6f}"]
                + [f"{prediction.probabilities[name]:.6f}" for name in self.classes]
                for row, prediction in zip(rows, predictions, strict=True)
            )
        crash_point("classify-chunk-written")  # the rows are there, the progress not yet
        self.done += len(rows)
        self._record()
        crash_point("classify-chunk")

    def _record(self) -> None:
        """Flush the rows to disk, then say so in the progress file (atomically)."""
        with writing(self.output, _FLAG):
            self.handle.flush()
            os.fsync(self.handle.fileno())
            values = {"format": PROGRESS_FORMAT, **self.identity, "rows_done": self.done}
            write_json(progress_path(self.output), {**values, "bytes": self.handle.tell()})

    def commit(self) -> None:
        """Rename the complete partial file to the output's name, then forget the progress."""
        with writing(self.output, _FLAG):
            self.handle.close()
            os.replace(partial_path(self.output), self.output)
            progress_path(self.output).unlink(missing_ok=True)
            fsync_directory(self.output.parent)


def _identity(plan: TextFilePlan, run_dir: Path | None) -> dict[str, Any]:
    """What a partial output's rows depend on: the input file, how it is read, and the run."""
    stat = plan.path.stat()
    with plan.path.open("rb") as handle:
        head = hashlib.sha256(handle.read(1 << 20)).hexdigest()  # with size and mtime
    run: dict[str, Any] = {}
    if run_dir is not None:
        if (run_dir / "run.json").is_file():
            run["run_json_sha256"] = hashlib.sha256((run_dir / "run.json").read_bytes()).hexdigest()
        for weights in sorted(run_dir.glob("*.safetensors")):
            found = weights.stat()
            run[weights.name] = [found.st_size, found.st_mtime_ns]
    source = {"path": str(plan.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    read_as = {"format": plan.fmt, "text_column": plan.text_column, "rows": plan.rows}
    return {"input": {**source, "head_sha256": head, **read_as}, "run": run}


def _read_progress(output: Path, identity: dict[str, Any]) -> tuple[int, int]:
    path = progress_path(output)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        done, size = int(values["rows_done"]), int(values["bytes"])
        saved = {key: values[key] for key in ("input", "run")}
    except (OSError, ValueError, KeyError, TypeError):
        raise GPTClassifierError(
            f"--resume: {path} is unreadable; start again with --overwrite"
        ) from None
    if values.get("format") != PROGRESS_FORMAT:
        raise GPTClassifierError(f"--resume: {path} is not a progress file of this version")
    for part, what in (("input", "input file"), ("run", "run (model)")):
        before, now = saved[part], identity[part]
        if differs := sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k)):
            raise GPTClassifierError(
                f"--resume: the partial {output} was made from another {what} "
                f"({', '.join(differs)} differ); start again with --overwrite"
            )
    return done, size


def run_classify_file(
    run_dir: str, input_file: str, load: dict[str, Any], **options: Any
) -> FileResult:
    """``classify --file``: the run loaded on this process's device, then ``classify_file``."""
    from .. import distributed
    from ..precision import resolve_device

    dist = distributed.init_distributed(resolve_device(load["device"]))
    result = None
    try:
        own_device = distributed.rank_device(dist, resolve_device(load["device"]))
        classifier = TextClassifier.from_run(run_dir, **{**load, "device": own_device})
        result = classify_file(classifier, input_file, dist=dist, **options)
        return result
    except torch.distributed.DistError as exc:
        raise distributed.peer_failure(dist, exc) from None
    finally:
        distributed.shutdown(dist, finished=result is not None)


def read_texts(
    path: str | os.PathLike[str], text_column: str | None = None, fmt: str | None = None
) -> tuple[list[dict[str, str]], list[str]]:
    """``(rows, texts)``: every row's fields and its text, as ``classify --file`` reads them."""
    rows = read_unlabelled(path, fmt, text_column)
    return [row.fields for row in rows], [row.text for row in rows]
