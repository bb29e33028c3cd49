"""``gpt-classifier classify``: labels for new texts from a saved run (a file of any size is
streamed in chunks: ``inference/file_stream.py``)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from ..data.readers import TEXT_FORMATS
from ..errors import GPTClassifierError
from .options import device_option, tokenizer_option


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("texts", nargs=-1)
@click.option(
    "--file",
    "input_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Classify every row of this CSV/TSV/JSONL file (or a .txt file: one text a line, "
    "unless its first line is a header row).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(TEXT_FORMATS),
    default=None,
    help="Format of --file (default: from the suffix; lines = one text per line).",
)
@click.option("--text-column", default=None, help="Column holding the text in --file.")
@click.option(
    "--lenient",
    is_flag=True,
    default=False,
    help="Warn about a CSV quote that runs over many lines instead of stopping.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a CSV of the results here (with --file); never the input file.",
)
@click.option("--overwrite", is_flag=True, default=False, help="Replace an existing --output file.")
@click.option(
    "--resume",
    is_flag=True,
    default=False,
    help="Continue an interrupted --file ... --output run without classifying its finished "
    "rows again (the same input file and run only).",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Rows of --file read, classified and written at a time (memory stays flat).",
)
@click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="A progress bar (rows/s) for --file, on a terminal.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of TSV.")
@click.option(
    "--explain",
    is_flag=True,
    default=False,
    help="Also print why: each token's push towards the predicted label (occlusion: the "
    "log-odds lost when it is deleted).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@tokenizer_option
@device_option
def classify(
    run_dir,
    texts,
    input_file,
    fmt,
    text_column,
    lenient,
    output,
    overwrite,
    resume,
    chunk_rows,
    progress,
    as_json,
    explain,
    batch_size,
    tokenizer_dir,
    device,
) -> None:
    """Classify texts with a saved run.

    Prints label<TAB>probability<TAB>text for each TEXT (or each row of --file). A --file is
    read, classified and written in chunks (memory stays flat whatever its size); with --output
    the CSV appears only once complete, and --resume continues an interrupted run. Under
    torchrun every process classifies a share of the chunks and rank 0 writes them in order.
    """
    if input_file and texts:
        raise GPTClassifierError("pass texts as arguments or --file, not both")
    if output and not input_file:
        raise GPTClassifierError("--output needs --file")
    if output and explain:
        raise GPTClassifierError("--explain prints to the terminal; drop --output")
    if input_file and explain:
        raise GPTClassifierError(
            "--explain explains texts given as arguments, not the rows of --file"
        )
    if resume and not output:
        raise GPTClassifierError("--resume needs --file and --output")
    if input_file:
        _classify_file(
            run_dir,
            input_file,
            output=output,
            overwrite=overwrite,
            resume=resume,
            printer=_printer(as_json),
            fmt=fmt,
            text_column=text_column,
            lenient=lenient,
            batch_size=batch_size,
            chunk_rows=chunk_rows,
            progress=progress,
            tokenizer_dir=tokenizer_dir,
            device=device,
        )
        return
    if not texts:
        raise GPTClassifierError("nothing to classify: pass one or more texts or --file FILE")
    from ..inference.predict import Prediction, TextClassifier

    classifier = TextClassifier.from_run(run_dir, device=device, tokenizer_dir=tokenizer_dir)
    started = time.perf_counter()
    if explain:
        from ..inference.explain import explain_texts

        explanations = explain_texts(classifier, list(texts), batch_size=batch_size)
        # The label shown is the one explained (the same forward pass as its scores).
        predictions = [Prediction(e.label, e.probability, e.probabilities) for e in explanations]
    else:
        explanations = [None] * len(texts)
        predictions = classifier.classify(list(texts), batch_size=batch_size)
    elapsed = time.perf_counter() - started
    _note_truncated(classifier.truncated, classifier.info.max_length)
    print_prediction = _printer(as_json)
    for text, prediction, why in zip(texts, predictions, explanations, strict=True):
        print_prediction(text, prediction, why)
    if len(texts) > 1:
        _echo_speed(len(texts), elapsed)


def _classify_file(run_dir, input_file, *, output, overwrite, resume, printer, **options) -> None:
    from ..inference.file_stream import check_resumable, run_classify_file

    if output:
        output_path = Path(output)
        check_resumable(output_path, resume=resume, overwrite=overwrite)
        _check_output(output_path, Path(input_file), overwrite or resume)

    def sink(rows, predictions) -> None:
        for row, prediction in zip(rows, predictions, strict=True):
            printer(row.text, prediction)

    result = run_classify_file(
        run_dir,
        input_file,
        output=Path(output) if output else None,
        sink=None if output else sink,
        resume=resume,
        **options,
    )
    if not result.main_process:  # under torchrun rank 0 reports
        return
    _note_truncated(result.truncated, result.max_length)
    if output:
        resumed = result.rows - result.classified
        more = f" ({resumed} done before the interruption)" if resumed else ""
        click.echo(f"wrote {result.rows} predictions to {output}{more}", err=True)
    if result.classified > 1:
        _echo_speed(result.classified, result.seconds)


def _printer(as_json: bool, explain: bool = False):
    def print_prediction(text: str, prediction, why=None) -> None:
        if as_json:
            values = {
                "label": prediction.label,
                "probability": prediction.probability,
                "probabilities": prediction.probabilities,
                "text": text,
            }
            if why is not None:
                values["explanation"] = explanation_json(why)
            click.echo(json.dumps(values, ensure_ascii=False))
        else:
            flat = " ".join(text.split())
            click.echo(f"{prediction.label}\t{prediction.probability:.4f}\t{flat}")
            if why is not None:
                click.echo(f"  why: {explanation_line(why)}")

    return print_prediction


def _note_truncated(truncated: int, max_length: int) -> None:
    if truncated:
        click.echo(
            f"note: {truncated} text(s) longer than {max_length} tokens were truncated, "
            "as in training",
            err=True,
        )


def _echo_speed(count: int, seconds: float) -> None:
    click.echo(f"{count} texts in {seconds:.2f} s ({count / seconds:.0f} texts/s)", err=True)


def explanation_line(why) -> str:
    """Tokens in text order, each quoted (spaces and line breaks visible) with its score."""
    line = "  ".join(
        f"{json.dumps(t.token, ensure_ascii=False)} {t.score:+.2f}" for t in why.tokens
    )
    return line + ("  (text cut: the rest is not read)" if why.truncated else "")


def explanation_json(why) -> dict:
    return {
        "method": why.method,
        "truncated": why.truncated,
        "tokens": [
            {"token": t.token, "score": t.score, "probability_without": t.probability_without}
            for t in why.tokens
        ],
    }


def _check_output(output: Path, input_file: Path, overwrite: bool) -> None:
    """Before any work: never write over the input (a run would destroy the texts it reads),
    and replace another existing file only when asked."""
    if output.is_dir():
        raise GPTClassifierError(f"--output {output} is a directory")
    same = output.resolve() == input_file.resolve()
    if not same and output.exists() and input_file.exists():
        same = os.path.samefile(output, input_file)  # hard links, case-insensitive file systems
    if same:
        raise GPTClassifierError(f"--output {output} is the input file; write elsewhere")
    if output.exists() and not overwrite:
        raise GPTClassifierError(f"--output {output} exists; pass --overwrite to replace it")


COMMANDS = [classify]
