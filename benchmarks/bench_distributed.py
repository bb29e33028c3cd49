"""Scaling out (issue #10): one process with 2 threads vs 2 processes (torchrun) with 1 thread.

Parts (``--part``, default all):

train     the default fine-tune (``gpt-classifier train``: 124M "gpt2" config, random init,
          SMS Spam Collection, 5 epochs, frozen-prefix cache), 1 process x 2 threads with
          ``--batch-size 8`` and ``torchrun --nproc-per-node 2`` x 1 thread with
          ``--batch-size 4`` (the same effective batch, 8; not the very same run: the loss
          estimates every ``--eval-freq`` batches draw from the shuffle's generator); wall time
          of each stage (rank 0's ``timings.json``) and of the whole command.
          ``--no-disk-cache``: each run computes its frozen-prefix states.
classify  ``gpt-classifier classify --file`` of a ``--classify-rows`` file (SMS texts repeated)
          with the run trained by 1 process, 1 x 2 threads and 2 x 1 thread: texts/s and peak
          RSS (of the largest process).
memory    the streaming claim: peak RSS of ``classify --file`` on ``--memory-rows`` small and
          large files of short texts, with a TINY random model (16-wide, 2 blocks: classifying
          1M texts with the 124M model takes hours on 2 cores). The model's size does not change
          how memory grows with the file; it is said in the output.

Every measured command is the CLI in a fresh process (``os.wait4`` gives its peak RSS, its
torchrun workers' included as the largest). Small check: ``--epochs 1 --limit-texts 400
--classify-rows 2000 --memory-rows 10000,100000``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_OUT_DIR,
    add_data_arguments,
    fmt_s,
    format_machine,
    log,
    machine_info,
    read_sms_texts,
    require_shared_data,
    table,
)

CLI = ["-m", "gpt_classifier.cli.main"]
STAGES = ("data", "model", "tokenize", "prefix_cache", "train", "evaluate", "save")
TINY_CONFIG = {
    "vocab_size": 50257,
    "context_length": 64,
    "emb_dim": 16,
    "n_heads": 2,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": True,
}


def command(processes: int, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The CLI with ``args``: 1 process x 2 threads, or torchrun with N processes x 1 thread."""
    env = dict(os.environ)
    if processes == 1:
        env["OMP_NUM_THREADS"] = "2"
        return [sys.executable, *CLI, *args], env
    env["OMP_NUM_THREADS"] = "1"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    launcher += ["--master-port", str(_free_port())]
    return [*launcher, *CLI, *args], env


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall time, exit status and peak RSS (MiB, the largest process of the tree)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read().decode("utf-8", errors="replace") if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        log(stderr[-3000:])
    return {
        "wall_s": round(wall, 2),
        "exit": process.returncode,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "stderr_tail": stderr.strip().splitlines()[-3:],
    }


# --- train ---------------------------------------------------------------------------------


def part_train(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    results = {}
    for processes in (1, 2):
        run_dir = out / f"train-{processes}p"
        train = ["train", "--data-file", str(args.data_file), "--format", "sms"]
        train += ["--model", args.model, "--init", "random", "--output-dir", str(run_dir)]
        train += ["--overwrite", "--no-disk-cache", "--no-progress", "--no-plots"]
        train += ["--epochs", str(args.epochs), "--batch-size", str(8 // processes)]
        log(f"[train] {processes} process(es): gpt-classifier {' '.join(train)}")
        measured = measure(*command(processes, train))
        if measured["exit"] == 0:
            timings = json.loads((run_dir / "timings.json").read_text())
            run = json.loads((run_dir / "run.json").read_text())
            metrics = json.loads((run_dir / "metrics.json").read_text())
            measured |= {
                "stages": timings["seconds"],
                "effective_batch_size": run.get("effective_batch_size"),
                "test_accuracy": metrics.get("test", {}).get("accuracy"),
                "run_dir": str(run_dir),
            }
        results[f"{processes}p"] = measured
    return results


# --- classify --------------------------------------------------------------------------------


def write_texts(path: Path, texts: list[str], rows: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([i, texts[i % len(texts)]])
    return path


def classify_runs(run_dir: Path, source: Path, out: Path, tag: str) -> dict[str, Any]:
    results = {}
    for processes in (1, 2):
        target = out / f"{tag}-{processes}p.csv"
        classify = ["classify", str(run_dir), "--file", str(source), "--output", str(target)]
        classify += ["--overwrite", "--no-progress"]
        log(f"[{tag}] {processes} process(es): {source.name}")
        measured = measure(*command(processes, classify))
        rows = sum(1 for _ in source.open(encoding="utf-8")) - 1
        measured["rows"] = rows
        measured["texts_per_s"] = round(rows / measured["wall_s"], 1)
        results[f"{processes}p"] = measured
    return results


def part_classify(args: argparse.Namespace, out: Path, run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None or not (run_dir / "run.json").is_file():
        run_dir = make_run(out / "classify-run", args.model)
    source = write_texts(out / "classify.csv", read_sms_texts(args.data_file), args.classify_rows)
    return classify_runs(run_dir, source, out, "classify")


def make_run(folder: Path, model: str) -> Path:
    """A random-weights run of ``model`` (a name or a config file), without training."""
    import torch

    from gpt_classifier.classifier import GPTClassifier
    from gpt_classifier.inference import RunInfo, save_run
    from gpt_classifier.weights import build_model

    torch.manual_seed(0)
    gpt = build_model(model, None, "random", seed=0)
    classifier = GPTClassifier(gpt, 2, pooling="last-real", head_seed=0)
    info = RunInfo(
        gpt_config=gpt.cfg,
        classes=("ham", "spam"),
        pooling="last-real",
        padding="batch",
        max_length=gpt.cfg.context_length,
        pad_length=None,
    )
    return save_run(classifier, info, folder)


# --- memory ----------------------------------------------------------------------------------


def part_memory(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    config = out / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIG))
    run_dir = make_run(out / "tiny-run", str(config))
    texts = [t for t in read_sms_texts(args.data_file) if len(t) < 60]
    results = {}
    for rows in args.memory_rows:
        source = write_texts(out / f"memory-{rows}.csv", texts, rows)
        target = out / f"memory-{rows}-out.csv"
        classify = ["classify", str(run_dir), "--file", str(source), "--output", str(target)]
        classify += ["--overwrite", "--no-progress"]
        log(f"[memory] {rows:,} rows ({source.stat().st_size / 2**20:.1f} MiB), tiny model")
        measured = measure(*command(1, classify))
        measured["rows"] = rows
        measured["file_mb"] = round(source.stat().st_size / 2**20, 1)
        measured["texts_per_s"] = round(rows / measured["wall_s"], 1)
        results[str(rows)] = measured
    return results


# --- printing --------------------------------------------------------------------------------


def print_tables(results: dict[str, Any]) -> None:
    print(format_machine(results["machine"]))
    if "train" in results:
        train = results["train"]
        print("\n## Default fine-tune: 1 process x 2 threads vs 2 processes x 1 thread\n")
        rows = []
        for stage in (*STAGES, "total"):
            cells = [stage]
            for key in ("1p", "2p"):
                cells.append(fmt_s(train[key].get("stages", {}).get(stage)))
            rows.append(cells)
        rows.append(["command wall", fmt_s(train["1p"]["wall_s"]), fmt_s(train["2p"]["wall_s"])])
        rows.append(
            ["peak RSS (largest process)"]
            + [f"{train[k]['peak_rss_mb']:.0f} MiB" for k in ("1p", "2p")]
        )
        rows.append(
            ["effective batch"] + [str(train[k].get("effective_batch_size")) for k in ("1p", "2p")]
        )
        rows.append(["test accuracy"] + [str(train[k].get("test_accuracy")) for k in ("1p", "2p")])
        print(table(["stage", "1 x 2 threads", "2 x 1 thread"], rows))
    if "classify" in results:
        part = results["classify"]
        rows_n = part["1p"]["rows"]
        print(f"\n## classify --file, {rows_n:,} rows, the 124M run\n")
        rows = [
            [
                key,
                fmt_s(part[key]["wall_s"]),
                f"{part[key]['texts_per_s']:.0f}",
                f"{part[key]['peak_rss_mb']:.0f} MiB",
            ]
            for key in ("1p", "2p")
        ]
        print(table(["processes", "wall (incl. start)", "texts/s", "peak RSS"], rows))
    if "memory" in results:
        print("\n## Streaming: peak RSS of classify --file (TINY random model, 1 process)\n")
        rows = [
            [
                f"{m['rows']:,}",
                f"{m['file_mb']:.1f} MiB",
                fmt_s(m["wall_s"]),
                f"{m['texts_per_s']:.0f}",
                f"{m['peak_rss_mb']:.1f} MiB",
            ]
            for m in results["memory"].values()
        ]
        print(table(["rows", "file", "wall", "texts/s", "peak RSS"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--part", choices=("all", "train", "classify", "memory"), default="all")
    parser.add_argument("--model", default="gpt2", help="a model name or a config JSON file")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--limit-texts", type=int, default=None, help="train on the first N texts")
    parser.add_argument("--classify-rows", type=int, default=100_000)
    parser.add_argument(
        "--memory-rows",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[10_000, 1_000_000],
    )
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR / "distributed")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    args.data_file, args.tokenizer_dir = require_shared_data(args.data_file, args.tokenizer_dir)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="run-", dir=args.out_dir))
    if args.limit_texts:
        lines = args.data_file.read_text(encoding="utf-8").splitlines(keepends=True)
        limited = out / "SMSSpamCollection"
        limited.write_text("".join(lines[: args.limit_texts]), encoding="utf-8")
        args.data_file = limited
    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args)}
    if args.part in ("all", "train"):
        results["train"] = part_train(args, out)
    if args.part in ("all", "classify"):
        trained = results.get("train", {}).get("1p", {}).get("run_dir")
        results["classify"] = part_classify(args, out, Path(trained) if trained else None)
    if args.part in ("all", "memory"):
        results["memory"] = part_memory(args, out)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print_tables(results)


if __name__ == "__main__":
    main()
