"""Serving under load: dynamic batching vs one text per forward pass, over real HTTP.

A GPT-2 124M classifier with random weights (the speed does not depend on the weights) is saved
as a run, then served by ``gpt-classifier serve`` on 127.0.0.1 once per configuration. Each time
``--clients`` threads (one keep-alive HTTP connection each) send ``--requests`` requests of one
SMS text each, back to back; the run reports texts/s over the whole load and the p50/p99 latency
of a request as the client saw it, plus the mean texts per forward pass from ``/metrics``.

Configurations (server flags):

- ``batching``: the defaults (``--batch-wait-ms 5``, ``--max-batch-tokens 1024``);
- ``window 0``: no waiting (``--batch-wait-ms 0``); requests that queued up during a forward
  pass still share the next one;
- ``one at a time``: ``--batch-wait-ms 0 --max-batch-tokens 1``: every forward pass runs one text,
  as the server did before batching (one request at a time behind a lock).

Usage: ``python benchmarks/bench_serving.py [--clients 16 --requests 320 --max-length 64]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_DATA_FILE,
    DEFAULT_TOKENIZER_DIR,
    format_machine,
    log,
    machine_info,
    read_sms_texts,
    require_shared_data,
    table,
)

CONFIGS = {
    "batching (wait 5 ms)": ["--batch-wait-ms", "5"],
    "window 0": ["--batch-wait-ms", "0"],
    "one at a time": ["--batch-wait-ms", "0", "--max-batch-tokens", "1"],
}
WARMUP_REQUESTS = 4


def save_random_run(directory: Path, max_length: int) -> Path:
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
    )
    return save_run(model, info, directory / "run")


def start_server(run: Path, tokenizer_dir: Path, flags: list[str]) -> tuple[Any, str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "gpt_classifier.cli.main", "serve", str(run), "--port", "0"]
        + ["--tokenizer-dir", str(tokenizer_dir), "--device", "cpu", *flags],
        stderr=subprocess.PIPE,
        text=True,
    )
    banner = server.stderr.readline()
    if "serving" not in banner:
        server.kill()
        raise SystemExit(f"the server did not start: {banner}{server.stderr.read()}")
    return server, "http://" + banner.split("http://")[1].split()[0]


def load(base: str, warmup: list[str], texts: list[str], clients: int) -> dict[str, Any]:
    import httpx

    per_client = [texts[i::clients] for i in range(clients)]

    def client(own: list[str]) -> list[float]:
        latencies = []
        with httpx.Client(base_url=base, timeout=120) as http:
            for text in own:
                started = time.perf_counter()
                response = http.post("/classify", json={"texts": [text]})
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
        return latencies

    with ThreadPoolExecutor(1) as pool:  # warm-up: first-call allocations, lazy imports
        pool.submit(client, warmup).result()
    before = batch_counts(base)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [x for own in pool.map(client, per_client) for x in own]
    wall = time.perf_counter() - started
    after = batch_counts(base)
    latencies.sort()
    passes = after[1] - before[1]
    return {
        "texts_per_s": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, round(0.99 * len(latencies)))],
        "texts_per_pass": (after[0] - before[0]) / passes if passes else float("nan"),
        "requests": len(latencies),
        "wall_s": wall,
    }


def batch_counts(base: str) -> tuple[float, float]:
    """(texts, forward passes) so far, from the server's /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(httpx.get(base + "/metrics").text):
        for sample in family.samples:
            values[sample.name] = sample.value
    return values["gpt_classifier_batch_texts_sum"], values["gpt_classifier_batch_texts_count"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=320, help="in all, one text each")
    parser.add_argument("--max-length", type=int, default=64, help="tokens a text is cut to")
    parser.add_argument("--data-file", type=Path, default=DEFAULT_DATA_FILE)
    parser.add_argument("--tokenizer-dir", type=Path, default=DEFAULT_TOKENIZER_DIR)
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    args = parser.parse_args()
    data_file, tokenizer_dir = require_shared_data(args.data_file, args.tokenizer_dir)
    texts = read_sms_texts(data_file, args.requests + WARMUP_REQUESTS)
    warmup, texts = texts[:WARMUP_REQUESTS], texts[WARMUP_REQUESTS:]
    names = list(CONFIGS) if args.config == "all" else [args.config]
    machine = machine_info()  # before the load: its load average is the other users' share
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        run = save_random_run(Path(scratch), args.max_length)
        for name in names:
            log(f"{name}: {args.clients} clients, {len(texts)} requests")
            server, base = start_server(run, tokenizer_dir, CONFIGS[name])
            try:
                result = load(base, warmup, texts, args.clients)
            finally:
                server.terminate()
                server.wait(timeout=60)
            rows.append(
                [
                    name,
                    f"{result['texts_per_s']:.1f}",
                    f"{result['p50_ms']:.0f}",
                    f"{result['p99_ms']:.0f}",
                    f"{result['texts_per_pass']:.1f}",
                ]
            )
    print(format_machine(machine))
    print(
        f"GPT-2 124M (random weights), texts cut to {args.max_length} tokens, "
        f"{args.clients} clients x {len(texts) // args.clients} requests of 1 SMS text"
    )
    print(table(["server", "texts/s", "p50 ms", "p99 ms", "texts/forward"], rows))


if __name__ == "__main__":
    main()
