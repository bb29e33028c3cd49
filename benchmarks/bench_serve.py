"""The HTTP service under load: single-text requests from 1-128 concurrent clients against the
offline batched throughput, then an overload burst.

The server is ``gpt-classifier serve`` on 127.0.0.1 (its default flags) with a run: ``--run-dir``
(e.g. the default fine-tuned run), or else a GPT-2 124M classifier with random weights saved as
a run the way ``train``'s defaults would save it (pooling ``last-real``, per-batch padding,
texts cut to ``--max-length`` = 120 tokens, the longest training text of the default split).
Speed does not depend on the weights.

1. *Offline*: ``TextClassifier.classify`` on the same texts (the first ``--texts`` SMS texts), in
   this process before the server starts: texts/s.
2. *Load*: for each ``--clients`` level, that many clients, each on its own keep-alive
   connection, send one-text ``POST /classify`` requests back to back, drawing the texts in
   order, until ``--requests`` requests are answered or ``--level-seconds`` have passed.
   Reported: texts/s over the level, p50/p95/p99 latency as the client saw it, failed
   requests (any answer but 200, or a broken connection), and texts per forward pass (from
   ``/metrics``). The ratio at 32 clients against offline is the issue's goal (>= 80 %).
   Offline is measured again after the levels; the ratios use the mean of the two.
3. *Burst*: a second server with ``--max-queue`` = ``--burst-queue`` texts; ``--burst``
   connections are opened first, then each sends one request at once. Reported: 200s, 429s,
   anything else, and the 429s' latency (goal: p99 < 50 ms).

The client is a minimal HTTP/1.1 client on asyncio streams (request bytes built beforehand, a
response read by its Content-Length): on a 2-core machine the load generator shares the CPU
with the server, and a full HTTP library would spend more of it than the server's own
parsing. A request's latency runs from the moment its bytes are written.

Usage: ``python benchmarks/bench_serve.py [--run-dir RUN] [--clients 1,8,32,128]
[--requests 1000 --level-seconds 60] [--burst 2000 --burst-queue 64]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    add_data_arguments,
    format_machine,
    log,
    machine_info,
    read_sms_texts,
    require_shared_data,
    table,
)

DEFAULT_MAX_LENGTH = 120  # the longest training text of the default split (README, Data)
WARMUP_REQUESTS = 8


# --- the run and the server --------------------------------------------------------------------


def save_random_run(directory: Path, max_length: int) -> Path:
    """GPT-2 124M, random weights, saved as ``train``'s defaults save a run."""
    import torch

    from gpt_classifier.classifier import GPTClassifier
    from gpt_classifier.config import GPTConfig
    from gpt_classifier.inference import RunInfo, save_run
    from gpt_classifier.model import GPTModel

    torch.manual_seed(0)
    config = GPTConfig.from_name("gpt2")
    model = GPTClassifier(GPTModel(config), 2, pooling="last-real", head_seed=0)
    info = RunInfo(
        gpt_config=config,
        classes=("ham", "spam"),
        pooling="last-real",
        padding="batch",
        max_length=max_length,
        pad_length=None,
        init="random",
    )
    return save_run(model, info, directory / "run")


def start_server(run: Path, tokenizer_dir: Path, flags: list[str]) -> tuple[Any, str, int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "gpt_classifier.cli.main", "serve", str(run), "--port", "0"]
        + ["--tokenizer-dir", str(tokenizer_dir), *flags],
        stderr=subprocess.PIPE,
        text=True,
    )
    banner = server.stderr.readline()
    if "serving" not in banner:
        server.kill()
        raise SystemExit(f"the server did not start: {banner}{server.stderr.read()}")
    address = banner.split("http://")[1].split()[0]
    host, port = address.rsplit(":", 1)
    return server, host, int(port)


def stop_server(server: Any) -> None:
    server.terminate()
    try:
        server.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.kill()


def offline_throughput(run: Path, tokenizer_dir: Path, texts: list[str]) -> dict[str, float]:
    from gpt_classifier.inference import TextClassifier

    classifier = TextClassifier.from_run(run, tokenizer_dir=tokenizer_dir)
    classifier.classify(texts[:WARMUP_REQUESTS])
    started = time.perf_counter()
    classifier.classify(texts)
    seconds = time.perf_counter() - started
    precision = classifier.precision
    del classifier
    gc.collect()
    return {"texts_per_s": len(texts) / seconds, "seconds": seconds, "precision": precision}


# --- a minimal HTTP/1.1 client -------------------------------------------------------------------


class Connection:
    """One keep-alive connection; ``post`` writes prepared bytes and reads one response."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, request: bytes) -> tuple[int, bytes, float]:
        """``(status, body, seconds from the write to the whole answer)``."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        started = time.perf_counter()
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in lines[1:] if line)
        )
        body = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        seconds = time.perf_counter() - started
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, body, seconds


def classify_request(host: str, text: str) -> bytes:
    body = json.dumps({"texts": [text]}).encode()
    head = (
        f"POST /classify HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)  # answered with 200
    statuses: Counter = field(default_factory=Counter)
    broken: int = 0  # connections that failed mid-request
    refusal_latencies: list[float] = field(default_factory=list)  # 429s
    wall: float = 0.0


async def _post_once(connection: Connection, request: bytes, outcome: Outcome) -> None:
    try:
        status, _, seconds = await connection.post(request)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        connection.close()
        outcome.broken += 1
        return
    outcome.statuses[status] += 1
    if status == 200:
        outcome.latencies.append(seconds)
    elif status == 429:
        outcome.refusal_latencies.append(seconds)


async def load_level(
    host: str, port: int, requests: list[bytes], clients: int, limit: int, seconds: float
) -> Outcome:
    outcome = Outcome()
    connections = [await Connection(host, port).open() for _ in range(clients)]
    counter = itertools.count()
    deadline = time.perf_counter() + seconds

    async def client(connection: Connection) -> None:
        while (number := next(counter)) < limit and time.perf_counter() < deadline:
            await _post_once(connection, requests[number % len(requests)], outcome)

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    outcome.wall = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return outcome


async def burst(host: str, port: int, request: bytes, count: int) -> Outcome:
    outcome = Outcome()
    connections = await asyncio.gather(*(Connection(host, port).open() for _ in range(count)))
    started = time.perf_counter()
    await asyncio.gather(*(_post_once(c, request, outcome) for c in connections))
    outcome.wall = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return outcome


def batch_counts(host: str, port: int) -> tuple[float, float]:
    """(texts, forward passes) so far, from the server's /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = sample.value
    return values["gpt_classifier_batch_texts_sum"], values["gpt_classifier_batch_texts_count"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{1000 * seconds:.0f}"


# --- the benchmark ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=None, help="a saved run to serve")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    parser.add_argument("--texts", type=int, default=1000, help="SMS texts, in file order")
    parser.add_argument("--clients", default="1,8,32,128", help="concurrency levels")
    parser.add_argument("--requests", type=int, default=1000, help="per level, one text each")
    parser.add_argument("--level-seconds", type=float, default=60.0, help="per level, at most")
    parser.add_argument("--burst", type=int, default=2000, help="requests sent at once")
    parser.add_argument("--burst-queue", type=int, default=64, help="--max-queue for the burst")
    parser.add_argument(
        "--serve-args",
        default="",
        help="extra `serve` flags for the load levels, e.g. '--batch-wait-ms 10'",
    )
    add_data_arguments(parser)
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",") if n.strip()]  # "" skips the load levels
    data_file, tokenizer_dir = require_shared_data(args.data_file, args.tokenizer_dir)
    # Every connection is a file descriptor, in this process and in the server's.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 2 * args.burst + 256, 4096))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    texts = read_sms_texts(data_file, args.texts)
    machine = machine_info()  # before the load: its load average is the other users' share
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run_dir or save_random_run(Path(scratch), args.max_length)
        log(f"offline: TextClassifier.classify on {len(texts)} texts")
        offline_before = offline_throughput(run, tokenizer_dir, texts)
        log(f"offline: {offline_before['texts_per_s']:.1f} texts/s")

        rows, rates = [], []
        server, host, port = start_server(run, tokenizer_dir, shlex.split(args.serve_args))
        try:
            requests = [classify_request(host, text) for text in texts]
            asyncio.run(load_level(host, port, requests, 1, WARMUP_REQUESTS, 600))
            for clients in levels:
                log(f"load: {clients} clients")
                before = batch_counts(host, port)
                outcome = asyncio.run(
                    load_level(host, port, requests, clients, args.requests, args.level_seconds)
                )
                after = batch_counts(host, port)
                passes = after[1] - before[1]
                rate = len(outcome.latencies) / outcome.wall
                failed = sum(n for s, n in outcome.statuses.items() if s != 200) + outcome.broken
                rates.append(rate)
                rows.append(
                    [
                        str(clients),
                        str(len(outcome.latencies) + failed),
                        f"{rate:.1f}",
                        "",  # of offline: filled in once offline is measured again
                        ms(statistics.median(outcome.latencies) if outcome.latencies else 0),
                        ms(percentile(outcome.latencies, 0.95)),
                        ms(percentile(outcome.latencies, 0.99)),
                        str(failed),
                        f"{(after[0] - before[0]) / passes:.1f}" if passes else "-",
                    ]
                )
        finally:
            stop_server(server)
        # Once more after the load: on a shared machine the two differ, and the ratios use
        # their mean rather than whichever moment happened to be quieter.
        offline_after = offline_throughput(run, tokenizer_dir, texts)
        log(f"offline again: {offline_after['texts_per_s']:.1f} texts/s")
        offline_rate = (offline_before["texts_per_s"] + offline_after["texts_per_s"]) / 2
        for row, rate in zip(rows, rates, strict=True):
            row[3] = f"{100 * rate / offline_rate:.0f} %"
        ratio_at_32 = rates[levels.index(32)] / offline_rate if 32 in levels else None

        log(f"burst: {args.burst} requests at once, --max-queue {args.burst_queue}")
        server, host, port = start_server(
            run,
            tokenizer_dir,
            ["--max-queue", str(args.burst_queue), "--max-texts", str(min(256, args.burst_queue))],
        )
        try:
            request = classify_request(host, texts[0])
            asyncio.run(load_level(host, port, [request], 1, WARMUP_REQUESTS, 600))
            spike = asyncio.run(burst(host, port, request, args.burst))
        finally:
            stop_server(server)

    print(format_machine(machine))
    described = (
        f"run {args.run_dir}"
        if args.run_dir
        else f"GPT-2 124M (random weights), last-real pooling, texts cut to {args.max_length}"
    )
    extra = f", then {args.serve_args}" if args.serve_args else ""
    print(
        f"{described}; {len(texts)} SMS texts; server defaults (--batch-wait-ms 5, "
        f"--max-batch-tokens 1024, --batch-size 64{extra}); "
        f"precision {offline_before['precision']}; "
        f"each level: {args.requests} requests or {args.level_seconds:.0f} s"
    )
    print(
        f"offline TextClassifier.classify: {offline_rate:.1f} texts/s, the mean of "
        f"{offline_before['texts_per_s']:.1f} before the load and "
        f"{offline_after['texts_per_s']:.1f} after "
        f"({len(texts)} texts)"
    )
    print(
        table(
            [
                "clients",
                "requests",
                "texts/s",
                "of offline",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "failed",
                "texts/forward",
            ],
            rows,
        )
    )
    if ratio_at_32 is not None:
        verdict = "met" if ratio_at_32 >= 0.8 else "NOT met"
        print(f"32 clients: {100 * ratio_at_32:.0f} % of offline (goal >= 80 %: {verdict})")
    others = {s: n for s, n in spike.statuses.items() if s not in (200, 429)}
    print(
        f"burst: {args.burst} requests at once, --max-queue {args.burst_queue}: "
        f"{spike.statuses[200]} answered 200, {spike.statuses[429]} got 429 "
        f"(p50 {ms(percentile(spike.refusal_latencies, 0.5))} ms, "
        f"p99 {ms(percentile(spike.refusal_latencies, 0.99))} ms, "
        f"max {ms(max(spike.refusal_latencies, default=float('nan')))} ms), "
        f"other answers {dict(others) or 0}, broken connections {spike.broken}, "
        f"all answered in {spike.wall:.1f} s"
    )


if __name__ == "__main__":
    main()
