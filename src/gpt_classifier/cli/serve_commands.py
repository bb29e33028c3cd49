"""``gpt-classifier serve``: the HTTP API of a saved run."""

import errno
import socket
from dataclasses import dataclass

import click

from ..data.batching import TOKENS_PER_PASS
from ..errors import GPTClassifierError
from ..faults import pause_point
from ..training.settings import opt
from .options import ServedRunOptions, command


def listen_socket(host: str, port: int) -> socket.socket:
    """Bound before the model loads (a busy port fails at once) and handed to uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only then (else ~40 ms of delayed ACK per response)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart needs no TIME_WAIT
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise GPTClassifierError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


@dataclass(kw_only=True)
class ServeOptions(ServedRunOptions):
    host: str = opt("Address to listen on.", "127.0.0.1")
    port: int = opt(
        "Port to listen on (0: any free port, printed at start).", 8000, min=0, max=65535
    )
    max_texts: int = opt("Most texts accepted in one request (more: 422).", 256, min=1)
    max_batch_tokens: int = opt(
        "Most tokens (padding included) in one forward pass; concurrent requests share it.",
        TOKENS_PER_PASS,
        min=1,
    )
    batch_wait_ms: float = opt(
        "How long a waiting text waits for others to join its batch (0: never waits).", 5.0, min=0
    )
    max_queue: int = opt(
        "Most texts admitted and not yet classified; beyond it requests get 429.", 1024, min=1
    )
    max_request_bytes: int = opt("Largest request body; beyond it 413.", 1024 * 1024, min=1)


@command(ServeOptions)
def serve(o: ServeOptions) -> None:
    """Serve a saved run over HTTP.

    A web page at / classifies typed or uploaded texts and shows why. POST /classify with
    {"texts": ["...", ...]} returns a label and class probabilities per text, POST
    /classify/file does it for an uploaded file, POST /explain scores each token of one text;
    GET /info describes the model, GET /health answers when it is ready, GET /metrics is for
    Prometheus, /docs documents it all. Concurrent requests are batched together. SIGTERM (or
    Ctrl-C) answers the requests already received, then exits 0.
    """
    try:
        from ..serving.app import ModelThread, check_limits, create_app
        from ..serving.server import run as run_server
    except ImportError as exc:
        raise GPTClassifierError(
            f"serving needs FastAPI, uvicorn, prometheus-client and swagger-ui-bundle-v2 "
            f"({exc.name} is missing): pip install 'gpt-classifier[serve]'"
        ) from None
    from ..inference.predict import TextClassifier

    check_limits(max_texts=o.max_texts, max_queue=o.max_queue)
    sock = listen_socket(o.host, o.port)
    try:
        model_thread = ModelThread()  # loads the model, then runs every forward pass
        model_thread.submit(pause_point, "serve-load")  # a slow load, for the tests
        classifier = model_thread.call(TextClassifier.from_run, o.run_dir, **o.load_args())
        keys = ("max_texts", "batch_size", "max_batch_tokens", "batch_wait_ms", "max_queue")
        limits = {key: getattr(o, key) for key in (*keys, "max_request_bytes")}
        app = create_app(classifier, **limits, run_dir=str(o.run_dir), model_thread=model_thread)
        shown = f"[{o.host}]" if ":" in o.host else o.host
        click.echo(
            f"serving {o.run_dir} ({', '.join(classifier.classes)}) on "
            f"http://{shown}:{sock.getsockname()[1]} (the page at /; POST /classify, "
            "/classify/file, /explain; GET /info, /health, /metrics; docs at /docs)",
            err=True,
        )
        started = run_server(app, sock)
    finally:
        sock.close()
    if not started:
        raise GPTClassifierError("the server did not start (see the messages above)")
    click.echo("stopped: every request received was answered", err=True)
