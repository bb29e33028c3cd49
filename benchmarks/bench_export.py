"""ONNX Runtime (CPU) against this package's ``TextClassifier`` on the same run and texts.

A synthetic GPT-2 124M run (random weights, two classes, last-real pooling, texts cut to 256
tokens) is saved, exported with ``gpt-classifier export --format onnx``, and both classify the
first ``--num-texts`` SMS texts: ours in fp32 and at ``--precision auto``, ONNX Runtime in fp32
on the batches ours would run (same lengths together, padded on the right). Each timing follows
an untimed warm-up on a few texts and includes tokenizing. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    add_data_arguments,
    emit_result,
    format_machine,
    log,
    machine_info,
    read_sms_texts,
    require_shared_data,
    table,
)

WARMUP_TEXTS = 8
BATCH_SIZE = 64  # TextClassifier.classify's default


def synthetic_run(folder: Path) -> Path:
    from gpt_classifier.classifier import GPTClassifier
    from gpt_classifier.config import GPTConfig
    from gpt_classifier.inference import RunInfo, save_run
    from gpt_classifier.weights import build_model

    config = GPTConfig.from_name("gpt2")
    model = GPTClassifier(build_model(config, init="random"), 2)
    info = RunInfo(config, ("ham", "spam"), "last-real", "batch", 256, None, init="random")
    return save_run(model, info, folder / "run")


def time_ours(run: Path, texts: list[str], precision: str) -> tuple[float, Any]:
    from gpt_classifier.inference import TextClassifier

    classifier = TextClassifier.from_run(run, device="cpu", precision=precision)
    classifier.predict_proba(texts[:WARMUP_TEXTS])
    start = time.perf_counter()
    probabilities = classifier.predict_proba(texts, BATCH_SIZE)
    return time.perf_counter() - start, probabilities


def time_onnx(run: Path, model: Path, texts: list[str]) -> tuple[float, Any, int]:
    import numpy as np
    import onnxruntime
    import torch

    from gpt_classifier.inference import TextClassifier

    classifier = TextClassifier.from_run(run, device="cpu", precision="fp32")  # its tokenizer
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def classify(batch_texts: list[str]) -> np.ndarray:
        encoded = classifier.encode_texts(batch_texts)[0]
        out = np.empty((len(encoded), 2), np.float32)
        for rows in classifier.plan_batches([len(ids) for ids in encoded], BATCH_SIZE):
            width = max(len(encoded[i]) for i in rows)
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for row, i in enumerate(rows):
                ids[row, : len(encoded[i])] = encoded[i]
                mask[row, : len(encoded[i])] = 1
            logits = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
            out[rows] = torch.softmax(torch.from_numpy(logits), -1).numpy()
        return out

    classify(texts[:WARMUP_TEXTS])
    start = time.perf_counter()
    probabilities = classify(texts)
    threads = session.get_session_options().intra_op_num_threads
    return time.perf_counter() - start, probabilities, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--num-texts", type=int, default=500)
    args = parser.parse_args()
    data_file, tokenizer_dir = require_shared_data(args.data_file, args.tokenizer_dir)
    import torch

    from gpt_classifier.export import export_run

    texts = read_sms_texts(data_file, args.num_texts)
    with tempfile.TemporaryDirectory() as scratch:
        run = synthetic_run(Path(scratch))
        start = time.perf_counter()
        exported = export_run(run, "onnx", Path(scratch) / "onnx", tokenizer_dir=tokenizer_dir)
        export_seconds = time.perf_counter() - start
        log(f"exported in {export_seconds:.1f} s")
        fp32_s, fp32 = time_ours(run, texts, "fp32")
        auto_s, auto = time_ours(run, texts, "auto")
        onnx_s, onnx, threads = time_onnx(run, exported / "model.onnx", texts)
    diff = float(abs(torch.as_tensor(onnx) - fp32).max())
    rows = [
        ["ours fp32", f"{fp32_s:.2f}", f"{len(texts) / fp32_s:.1f}", "-"],
        ["ours auto", f"{auto_s:.2f}", f"{len(texts) / auto_s:.1f}", "-"],
        ["onnxruntime fp32", f"{onnx_s:.2f}", f"{len(texts) / onnx_s:.1f}", f"{diff:.1e}"],
    ]
    machine = machine_info()
    print(format_machine(machine))
    print(f"{len(texts)} SMS texts, GPT-2 124M (random weights), batches of {BATCH_SIZE}")
    print(table(["side", "seconds", "texts/s", "max |p - p_fp32|"], rows))
    emit_result(
        {
            "texts": len(texts),
            "export_seconds": export_seconds,
            "seconds": {"ours_fp32": fp32_s, "ours_auto": auto_s, "onnxruntime": onnx_s},
            "max_probability_diff": diff,
            "torch_threads": torch.get_num_threads(),
            "onnxruntime_intra_op_threads": threads,
            "machine": machine,
        }
    )


if __name__ == "__main__":
    main()
