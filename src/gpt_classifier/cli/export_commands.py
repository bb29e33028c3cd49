"""``gpt-classifier export``: a saved run for transformers or ONNX Runtime."""

from __future__ import annotations

from dataclasses import dataclass

import click

from ..training.settings import TokenizerOptions, opt
from .options import command


@dataclass(kw_only=True)
class ExportOptions(TokenizerOptions):
    run_dir: str = opt(argument=True, path="dir", metavar="RUN")
    fmt: str = opt(
        None,
        "hf: a transformers GPT2ForSequenceClassification folder; onnx: model.onnx.",
        flag="--format",
        choices=("hf", "onnx"),
        required=True,
    )
    output_dir: str = opt(None, "The folder to write.", path="dir", required=True)
    overwrite: bool = opt(False, "Replace a non-empty --output-dir.")


@command(ExportOptions)
def export(o: ExportOptions) -> None:
    """Export a run for use elsewhere, with a model card (README.md).

    hf: load it with transformers.pipeline("text-classification", model=DIR); onnx: inputs
    input_ids and attention_mask (right padding), output logits. Prints the folder's path.
    """
    from ..export import export_run

    kwargs = {"overwrite": o.overwrite, "tokenizer_dir": o.tokenizer_dir}
    click.echo(str(export_run(o.run_dir, o.fmt, o.output_dir, **kwargs)))
