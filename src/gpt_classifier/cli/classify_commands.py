"""``gpt-classifier classify``: labels for new texts from a saved run."""

from __future__ import annotations

import csv
import json
import time

import click

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
    help="Classify every row of this CSV/TSV/JSONL file (or a plain text file, one text a line).",
)
@click.option("--text-column", default=None, help="Column holding the text in --file.")
@click.option("--output", default=None, help="Write a CSV of the results here (with --file).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of TSV.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@tokenizer_option
@device_option
def classify(
    run_dir, texts, input_file, text_column, output, as_json, batch_size, tokenizer_dir, device
) -> None:
    """Classify texts with a saved run.

    Prints label<TAB>probability<TAB>text for each TEXT (or each row of --file).
    """
    from ..inference.predict import TextClassifier
    from ..inference.texts import read_texts

    if input_file and texts:
        raise GPTClassifierError("pass texts as arguments or --file, not both")
    if output and not input_file:
        raise GPTClassifierError("--output needs --file")
    if input_file:
        rows, texts = read_texts(input_file, text_column)
    elif not texts:
        raise GPTClassifierError("nothing to classify: pass one or more texts or --file FILE")
    else:
        rows = [{"text": text} for text in texts]

    classifier = TextClassifier.from_run(run_dir, device=device, tokenizer_dir=tokenizer_dir)
    started = time.perf_counter()
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
        for text, prediction in zip(texts, predictions, strict=True):
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "label": prediction.label,
                            "probability": prediction.probability,
                            "probabilities": prediction.probabilities,
                            "text": text,
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                flat = " ".join(text.split())
                click.echo(f"{prediction.label}\t{prediction.probability:.4f}\t{flat}")
    if len(texts) > 1:
        click.echo(
            f"{len(texts)} texts in {elapsed:.2f} s ({len(texts) / elapsed:.0f} texts/s)", err=True
        )


def _write_csv(path, rows, predictions) -> None:
    columns = list(rows[0].keys()) if rows else ["text"]
    extra = ["predicted_label", "probability"]
    try:
        with open(path, "w", newline="", encoding="utf-8") as handle:
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
