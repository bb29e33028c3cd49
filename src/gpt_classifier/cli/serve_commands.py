"""``gpt-classifier serve``: the HTTP API of a saved run."""

from __future__ import annotations

import click

from ..errors import GPTClassifierError
from .options import device_option, tokenizer_option


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--max-texts",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Most texts accepted in one request.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@tokenizer_option
@device_option
def serve(run_dir, host, port, max_texts, batch_size, tokenizer_dir, device) -> None:
    """Serve a saved run over HTTP.

    POST /classify with {"texts": ["...", ...]} returns a label and class probabilities per text;
    GET /info describes the model, GET /health answers when it is ready, /docs documents it all.
    """
    try:
        import uvicorn

        from ..serving import create_app
    except ImportError as exc:
        raise GPTClassifierError(
            f"serving needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'gpt-classifier[serve]'"
        ) from None
    from ..inference.predict import TextClassifier

    classifier = TextClassifier.from_run(run_dir, device=device, tokenizer_dir=tokenizer_dir)
    app = create_app(classifier, max_texts=max_texts, batch_size=batch_size, run_dir=str(run_dir))
    click.echo(
        f"serving {run_dir} ({', '.join(classifier.classes)}) on http://{host}:{port} "
        "(POST /classify, GET /info, GET /health, docs at /docs)",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


COMMANDS = [serve]
