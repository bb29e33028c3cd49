"""``classify`` and ``serve``: a saved run's labels for texts, a file or HTTP; ``export`` it."""

import errno
import json
import socket
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from ..data.batching import TOKENS_PER_PASS
from ..data.readers import TEXT_FORMATS
from ..distributed import context_from_env
from ..errors import GPTClassifierError
from ..faults import pause_point
from ..fileio import check_output_dir, writer_lock
from ..inference.file_stream import CHUNK_ROWS, check_resumable, run_classify_file
from ..inference.predict import Prediction, TextClassifier
from ..training.settings import TokenizerOptions, opt
from .options import ServedRunOptions, command


@dataclass(kw_only=True)
class ClassifyOptions(ServedRunOptions):
    texts: tuple[str, ...] = opt(default=(), argument=True)
    input_file: str | None = opt(
        "Classify every row of this CSV/TSV/JSONL/.txt file.", flag="--file", path="file"
    )
    fmt: str | None = opt(
        "Of --file (default: from the suffix; lines: a text a line).",
        flag="--format",
        choices=TEXT_FORMATS,
    )
    text_column: str | None = opt("Column holding the text in --file.")
    lenient: bool = opt(
        "Warn about a CSV quote that runs over many lines instead of stopping.", False
    )
    output: str | None = opt(
        "Write a CSV of the results here (with --file); never the input file.", path="file"
    )
    overwrite: bool = opt("Replace an existing --output file.", False)
    resume: bool = opt("Continue an interrupted --file ... --output run where it stopped.", False)
    chunk_rows: int = opt(
        "Rows of --file read, classified and written at a time.", CHUNK_ROWS, min=1
    )
    progress: bool = opt("A progress bar (rows/s) for --file, on a terminal.", True)
    as_json: bool = opt("Print JSON lines instead of TSV.", False, flag="--json")
    explain: bool = opt("Also print each token's push towards the label (occlusion).", False)


@command(ClassifyOptions)
def classify(o: ClassifyOptions) -> None:
    """Classify texts with a saved run.

    Prints label<TAB>probability<TAB>text for each TEXT (or each row of --file). A --file is
    read, classified and written in chunks (memory stays flat whatever its size); with --output
    the CSV appears only once complete, and --resume continues an interrupted run. Under
    torchrun every process classifies a share of the chunks and rank 0 writes them in order.
    """
    conflicts = {
        "pass texts as arguments or --file, not both": o.input_file and o.texts,
        "--output needs --file": o.output and not o.input_file,
        "--explain prints to the terminal; drop --output": o.output and o.explain,
        "--explain explains texts given as arguments, not the rows of --file": (
            o.input_file and o.explain
        ),
        "--resume needs --file and --output": o.resume and not o.output,
        "nothing to classify: pass one or more texts or --file FILE": not (o.input_file or o.texts),
    }
    if problem := next((message for message, found in conflicts.items() if found), None):
        raise GPTClassifierError(problem)
    if o.input_file:
        return _classify_file(o)
    classifier = TextClassifier.from_run(o.run_dir, **o.load_args())
    texts, started = list(o.texts), time.perf_counter()
    explanations: list = [None] * len(texts)
    if o.explain:
        from ..inference.explain import explain

        explanations = explain(classifier, texts, batch_size=o.batch_size)
        # The label shown is the one explained (the same forward pass as its scores).
        predictions = [Prediction(e.label, e.probability, e.probabilities) for e in explanations]
    else:
        predictions = classifier.classify(texts, batch_size=o.batch_size)
    elapsed = time.perf_counter() - started
    for text, prediction, why in zip(texts, predictions, explanations, strict=True):
        _print(o.as_json, text, prediction, why)
    _report(classifier.truncated, classifier.info.max_length, len(texts), elapsed)


def _classify_file(o: ClassifyOptions) -> None:
    main_writer = o.output and context_from_env().is_main  # under torchrun rank 0 writes
    with writer_lock(o.output, "--output") if main_writer else ExitStack():
        output, source = (Path(o.output) if o.output else None), Path(o.input_file)
        if output:  # never write over the input (the run would destroy the texts it reads)
            check_resumable(output, resume=o.resume, overwrite=o.overwrite)
            # samefile: hard links, case-insensitive disks
            if output.resolve() == source.resolve() or (
                output.exists() and source.exists() and output.samefile(source)
            ):
                raise GPTClassifierError(f"--output {output} is the input file; write elsewhere")
            check_output_dir(output, overwrite=o.overwrite or o.resume, file=True)

        def sink(rows, predictions) -> None:
            for row, prediction in zip(rows, predictions, strict=True):
                _print(o.as_json, row.text, prediction)

        keys = ("fmt", "text_column", "lenient", "batch_size", "chunk_rows", "progress", "resume")
        options = {key: getattr(o, key) for key in keys}
        options.update(output=output, sink=None if output else sink)
        result = run_classify_file(o.run_dir, o.input_file, o.load_args(), **options)
        if not result.main_process:  # under torchrun rank 0 reports
            return
        if output:
            resumed = result.rows - result.classified
            more = f" ({resumed} done before the interruption)" if resumed else ""
            click.echo(f"wrote {result.rows} predictions to {output}{more}", err=True)
        _report(result.truncated, result.max_length, result.classified, result.seconds)


def _print(as_json: bool, text: str, prediction, why=None) -> None:
    if as_json:
        values = {**asdict(prediction), "text": text}
        if why is not None:
            keys = ("token", "score", "probability_without")
            tokens = [{key: getattr(t, key) for key in keys} for t in why.tokens]
            values["explanation"] = dict(method=why.method, truncated=why.truncated, tokens=tokens)
        return click.echo(json.dumps(values, ensure_ascii=False))
    label, text = (" ".join(str(field).split()) for field in (prediction.label, text))  # one line
    click.echo(f"{label}\t{prediction.probability:.4f}\t{text}")
    if why is not None:  # each token quoted (spaces and line breaks visible) with its score
        scores = [f"{json.dumps(t.token, ensure_ascii=False)} {t.score:+.2f}" for t in why.tokens]
        cut = "  (text cut: the rest is not read)" if why.truncated else ""
        click.echo(f"  why: {'  '.join(scores)}{cut}")


def _report(truncated: int, max_length: int, count: int, seconds: float) -> None:
    """On stderr: how many texts were truncated, and the speed (for more than one text)."""
    if truncated:
        note = f"{truncated} text(s) longer than {max_length} tokens were truncated, as in training"
        click.echo(f"note: {note}", err=True)
    if count > 1:
        click.echo(f"{count} texts in {seconds:.2f} s ({count / seconds:.0f} texts/s)", err=True)


@dataclass(kw_only=True)
class ExportOptions(TokenizerOptions):
    run_dir: str = opt(argument=True, path="dir", metavar="RUN")
    fmt: str = opt(
        "hf: a transformers GPT2ForSequenceClassification folder; onnx: model.onnx.",
        flag="--format",
        choices=("hf", "onnx"),
        required=True,
    )
    output_dir: str = opt("The folder to write.", path="dir", required=True)
    overwrite: bool = opt("Replace a non-empty --output-dir.", False)


@command(ExportOptions)
def export(o: ExportOptions) -> None:
    """Export a run for use elsewhere, with a model card (README.md).

    hf: load it with transformers.pipeline("text-classification", model=DIR); onnx: inputs
    input_ids and attention_mask (right padding), output logits. Prints the folder's path.
    """
    from ..export import export_run

    options = {"overwrite": o.overwrite, "tokenizer_dir": o.tokenizer_dir}
    click.echo(export_run(o.run_dir, o.fmt, o.output_dir, **options))


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
