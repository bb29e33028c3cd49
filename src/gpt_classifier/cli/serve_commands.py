"""``gpt-classifier serve``: the HTTP API of a saved run."""

from __future__ import annotations

import errno
import socket

import click

from ..data.batching import TOKENS_PER_PASS
from ..errors import GPTClassifierError
from .options import device_option, tokenizer_option


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound and listening on ``host:port``, or a one-line error saying why not.

    Bound before the model loads, so a busy port fails in a second with a clear message, and
    handed to uvicorn, so nothing can take the port in between."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
    # whose proto is IPPROTO_TCP, and with proto 0 every response waited ~40 ms for the
    # client's delayed ACK between its header and body writes.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # As uvicorn does: restarting right after a stop must not wait for TIME_WAIT to pass.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise GPTClassifierError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free port, printed at start).",
)
@click.option(
    "--max-texts",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Most texts accepted in one request (more: 422).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Most texts in one forward pass.",
)
@click.option(
    "--max-batch-tokens",
    type=click.IntRange(min=1),
    default=TOKENS_PER_PASS,
    show_default=True,
    help="Most tokens (padding included) in one forward pass; concurrent requests share it.",
)
@click.option(
    "--batch-wait-ms",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="How long a waiting text waits for others to join its batch (0: never waits).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Most texts admitted and not yet classified; beyond it requests get 429.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(min=1),
    default=1024 * 1024,
    show_default=True,
    help="Largest request body; beyond it 413.",
)
@tokenizer_option
@device_option
def serve(
    run_dir,
    host,
    port,
    max_texts,
    batch_size,
    max_batch_tokens,
    batch_wait_ms,
    max_queue,
    max_request_bytes,
    tokenizer_dir,
    device,
) -> None:
    """Serve a saved run over HTTP.

    A web page at / classifies typed or uploaded texts and shows why. POST /classify with
    {"texts": ["...", ...]} returns a label and class probabilities per text, POST
    /classify/file does it for an uploaded file, POST /explain scores each token of one text;
    GET /info describes the model, GET /health answers when it is ready, GET /metrics is for
    Prometheus, /docs documents it all. Concurrent requests are batched together. SIGTERM (or
    Ctrl-C) answers the requests already received, then exits 0.
    """
    try:
        from ..serving import create_app
        from ..serving.app import check_limits
        from ..serving.model_thread import ModelThread
        from ..serving.server import run as run_server
    except ImportError as exc:
        raise GPTClassifierError(
            f"serving needs FastAPI, uvicorn, prometheus-client and swagger-ui-bundle-v2 "
            f"({exc.name} is missing): pip install 'gpt-classifier[serve]'"
        ) from None
    from ..inference.predict import TextClassifier

    check_limits(max_texts=max_texts, max_queue=max_queue)
    sock = listen_socket(host, port)
    try:
        model_thread = ModelThread()  # loads the model, then runs every forward pass
        classifier = model_thread.call(
            TextClassifier.from_run, run_dir, device=device, tokenizer_dir=tokenizer_dir
        )
        app = create_app(
            classifier,
            max_texts=max_texts,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            batch_wait_ms=batch_wait_ms,
            max_queue=max_queue,
            max_request_bytes=max_request_bytes,
            run_dir=str(run_dir),
            model_thread=model_thread,
        )
        bound_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        click.echo(
            f"serving {run_dir} ({', '.join(classifier.classes)}) on http://{shown}:{bound_port} "
            "(the page at /; POST /classify, /classify/file, /explain; GET /info, /health, "
            "/metrics; docs at /docs)",
            err=True,
        )
        started = run_server(app, sock)
    finally:
        sock.close()
    if not started:
        raise GPTClassifierError("the server did not start (see the messages above)")
    click.echo("stopped: every request received was answered", err=True)


COMMANDS = [serve]
