"""A Parquet bomb against ``POST /classify/file``: how fast it is refused, what it costs the
server's memory and the other clients.

The bomb is ``--rows`` rows (2,000,000) of one ``--chars``-character text (1,000), dictionary-
encoded and zstd-compressed: a file of a few hundred KB that decodes to ``rows x chars`` bytes
of text (2 GB). ``gpt-classifier serve`` runs on 127.0.0.1 with its default flags and a tiny
random run (the model does not matter: the bomb must be refused before any text reaches it);
one client sends one-text ``POST /classify`` requests back to back while the bomb is posted.

Reported: the bomb's size, the refusal's status, time and message, the server's resident
memory (``VmRSS``) before and after and its peak (``VmHWM``) before and after, and the one-text
client's slowest answer during the upload and its median before it.

Usage: ``python benchmarks/bench_upload_bomb.py [--rows 2000000 --chars 1000]``. Run it with
``PYTHONPATH`` pointing at another checkout's ``src`` to measure that one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from bench_serve import start_server, stop_server
from common import DEFAULT_TOKENIZER_DIR, format_machine, log, machine_info

from gpt_classifier.errors import GPTClassifierError


def build_bomb(rows: int, chars: int) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    indices = pa.array([0] * rows, pa.int32())
    text = pa.DictionaryArray.from_arrays(indices, pa.array(["x" * chars]))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": text}), sink, use_dictionary=True, compression="zstd")
    return sink.getvalue().to_pybytes()


def save_tiny_run(directory: Path) -> Path:
    import torch

    from gpt_classifier.classifier import GPTClassifier
    from gpt_classifier.config import GPTConfig
    from gpt_classifier.inference import RunInfo, save_run
    from gpt_classifier.model import GPTModel

    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=50257, context_length=32, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0
    )
    model = GPTClassifier(GPTModel(config), 2, pooling="last-real", head_seed=0)
    info = RunInfo(
        gpt_config=config,
        classes=("ham", "spam"),
        pooling="last-real",
        padding="batch",
        max_length=32,
        pad_length=None,
    )
    return save_run(model, info, directory / "run")


def memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` (its peak) of process ``pid``, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) / 1024
    return values


def post(url: str, body: bytes, content_type: str, timeout: float = 600) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + content + tail, f"multipart/form-data; boundary={boundary}"


class OneTextClient(threading.Thread):
    """One-text ``/classify`` requests back to back; the latency of each, with when it ended."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.stop, self.answers = base, threading.Event(), []
        self.body = json.dumps({"texts": ["see you at 5?"]}).encode()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            status, _ = post(self.base + "/classify", self.body, "application/json", timeout=120)
            self.answers.append((started, time.perf_counter() - started, status))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--tokenizer-dir", type=Path, default=DEFAULT_TOKENIZER_DIR)
    args = parser.parse_args()
    print(format_machine(machine_info()))
    bomb = build_bomb(args.rows, args.chars)
    log(f"bomb: {len(bomb)} bytes, {args.rows} rows x {args.chars} chars")
    with tempfile.TemporaryDirectory() as folder:
        run = save_tiny_run(Path(folder))
        server, host, port = start_server(run, args.tokenizer_dir, ["--device", "cpu"])
        base = f"http://{host}:{port}"
        try:
            client = OneTextClient(base)
            client.start()
            time.sleep(3)  # the one-text client's latency before the bomb
            before = memory_mb(server.pid)
            body, content_type = multipart("bomb.parquet", bomb)
            sent = time.perf_counter()
            status, detail = post(base + "/classify/file", body, content_type)
            refused = time.perf_counter()
            after = memory_mb(server.pid)
            time.sleep(1)
            client.stop.set()
            client.join()
        finally:
            stop_server(server)
    calm = [seconds for started, seconds, _ in client.answers if started < sent]
    during = [seconds for started, seconds, _ in client.answers if sent <= started < refused]
    during += [s for started, s, _ in client.answers if started < sent < started + s]
    print(f"bomb: {len(bomb):,} bytes of Parquet, {args.rows:,} rows x {args.chars:,} chars")
    print(f"answer: {status} after {refused - sent:.2f} s: {detail}")
    print(
        f"server RSS: {before['VmRSS']:.0f} MB before, {after['VmRSS']:.0f} MB after "
        f"(+{after['VmRSS'] - before['VmRSS']:.0f} MB); peak {before['VmHWM']:.0f} MB before, "
        f"{after['VmHWM']:.0f} MB after (+{after['VmHWM'] - before['VmHWM']:.0f} MB)"
    )
    print(
        f"one-text client: median {1000 * statistics.median(calm):.0f} ms before the bomb; "
        f"slowest during it {1000 * max(during, default=0.0):.0f} ms ({len(during)} requests)"
    )
    if any(status != 200 for _, _, status in client.answers):
        raise GPTClassifierError("a one-text request failed during the bomb")


if __name__ == "__main__":
    main()
