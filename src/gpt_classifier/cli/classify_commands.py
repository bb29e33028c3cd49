"""``gpt-classifier classify``: labels for new texts from a saved run."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import click

from ..data.readers import TEXT_FORMATS
from ..errors import GPTClassifierError
from ..fileio import atomic_path
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
    as_json,
    explain,
    batch_size,
    tokenizer_dir,
    device,
) -> None:
    """Classify texts with a saved run.

    Prints label<TAB>probability<TAB>text for each TEXT (or each row of --file).
    """
    from ..inference.predict import Prediction, TextClassifier
    from ..inference.texts import read_texts

    if input_file and texts:
        raise GPTClassifierError("pass texts as arguments or --file, not both")
    if output and not input_file:
        raise GPTClassifierError("--output needs --file")
    if output and explain:
        raise GPTClassifierError("--explain prints to the terminal; drop --output")
    if output:
        _check_output(Path(output), Path(input_file), overwrite)
    if input_file:
        rows, texts = read_texts(input_file, text_column, fmt, lenient=lenient)
    elif not texts:
        raise GPTClassifierError("nothing to classify: pass one or more texts or --file FILE")
    else:
        rows = [{"text": text} for text in texts]

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
    if classifier.truncated:
        click.echo(
            f"note: {classifier.truncated} text(s) longer than {classifier.info.max_length} "
            "tokens were truncated, as in training",
            err=True,
        )
    if output:
        _write_csv(output, rows, predictions)
        click.echo(f"wrote {len(predictions)} predictions to {output}", err=True)
    else:
        for text, prediction, why in zip(texts, predictions, explanations, strict=True):
            if as_json:
                line = {
                    "label": prediction.label,
                    "probability": prediction.probability,
                    "probabilities": prediction.probabilities,
                    "text": text,
                }
                if why is not None:
                    line["explanation"] = explanation_json(why)
                click.echo(json.dumps(line, ensure_ascii=False))
            else:
                flat = " ".join(text.split())
                click.echo(f"{prediction.label}\t{prediction.probability:.4f}\t{flat}")
                if why is not None:
                    click.echo(f"  why: {explanation_line(why)}")
    if len(texts) > 1:
        click.echo(
            f"{len(texts)} texts in {elapsed:.2f} s ({len(texts) / elapsed:.0f} texts/s)", err=True
        )


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


def _write_csv(path, rows, predictions) -> None:
    # Every column of any row (JSON lines may differ in their keys), in order of appearance.
    columns = list(dict.fromkeys(c for row in rows for c in row)) or ["text"]
    extra = ["predicted_label", "probability"]
    try:
        with (
            atomic_path(path) as partial,
            partial.open("w", newline="", encoding="utf-8") as handle,
        ):
            writer = csv.writer(handle)
            writer.writerow(columns + extra)
            for row, prediction in zip(rows, predictions, strict=True):
                writer.writerow(
                    [row.get(c, "") for c in columns]
                    + [prediction.label, f"{prediction.probability:.6f}"]
                )
    except OSError as exc:
        raise GPTClassifierError(f"cannot write {path} ({exc.strerror or exc})") from None


COMMANDS = [classify]
