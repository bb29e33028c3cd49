"""Inference throughput: this package's ``TextClassifier`` vs a Hugging Face pipeline.

Both classify the same SMS texts (the first ``--num-texts`` of the shared file, in file order)
with the same weights: the classifier saved by ``bench_finetune.py`` config c (random init,
fine-tuned), converted to ``GPT2ForSequenceClassification`` names (Linear -> Conv1D transposed,
W_query/W_key/W_value concatenated into c_attn). HF's ``score`` has no bias while our head has
one, so the HF model gets the head's weight only; the predictions are compared after adding our
bias back to HF's log-probabilities (softmax is shift-invariant, so ``argmax(log p + b)`` equals
``argmax(W h + b)``). Both pool the last real token (our default ``last-real``; HF: the last
non-pad token).

Each side runs in its own process (its own peak RSS) and prints a JSON line; the parent prints
the table. Timings follow one untimed warm-up call on a few texts.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_OUT_DIR,
    add_data_arguments,
    emit_result,
    fmt_s,
    format_machine,
    hf_gpt2_config,
    log,
    machine_info,
    read_sms_texts,
    require_shared_data,
    run_child,
    table,
)

SCRIPT = Path(__file__).resolve()
WARMUP_TEXTS = 8


# --- ours ----------------------------------------------------------------------------------


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    import inspect

    import torch

    from gpt_classifier.inference.predict import TextClassifier

    texts = read_sms_texts(args.data_file, args.num_texts)
    classifier = TextClassifier.from_run(args.run_dir, device="cpu")
    default_batch = inspect.signature(classifier.classify).parameters["batch_size"].default
    classifier.classify(texts[:WARMUP_TEXTS])
    start = time.perf_counter()
    predictions = classifier.classify(texts)
    seconds = time.perf_counter() - start
    log(f"[ours] {len(texts)} texts in {seconds:.2f} s ({len(texts) / seconds:.1f} texts/s)")
    token_ids = classifier.encode_texts(texts)[0]
    classes = list(classifier.classes)
    head = classifier.model.gpt.out_head
    bias = head.bias.detach().tolist() if head.bias is not None else [0.0] * len(classes)
    info = classifier.info
    return {
        "side": "ours",
        "texts": len(texts),
        "seconds": seconds,
        "texts_per_s": len(texts) / seconds,
        "batch_size": default_batch,
        "precision": classifier.precision,
        "pooling": classifier.model.pooling,
        "padding": info.padding,
        "pad_length": info.pad_length,
        "classes": classes,
        "head_bias": bias,
        "predictions": [classes.index(p.label) for p in predictions],
        "probabilities": [[p.probabilities[c] for c in classes] for p in predictions],
        "tokens": sum(len(ids) for ids in token_ids),
        "distinct": len({tuple(ids) for ids in token_ids}),
        "torch_threads": torch.get_num_threads(),
    }


# --- Hugging Face --------------------------------------------------------------------------


def hf_tokenizer(tokenizer_dir: Path) -> Any:
    """``GPT2TokenizerFast`` from OpenAI's two files, offline. transformers 5 takes the paths as
    ``vocab``/``merges``; 4.x as ``vocab_file``/``merges_file``."""
    import transformers
    from transformers import GPT2TokenizerFast

    vocab, merges = str(tokenizer_dir / "encoder.json"), str(tokenizer_dir / "vocab.bpe")
    if int(transformers.__version__.split(".")[0]) >= 5:
        return GPT2TokenizerFast(vocab=vocab, merges=merges)
    return GPT2TokenizerFast(vocab_file=vocab, merges_file=merges)


def hf_model_from_run(run_dir: Path) -> tuple[Any, list[str]]:
    from transformers import GPT2ForSequenceClassification

    from gpt_classifier.runs.run_dir import load_run
    from gpt_classifier.weights import to_hf_state_dict

    run = load_run(run_dir, "cpu")
    cfg = run.model.cfg
    if not cfg.qkv_bias or not cfg.causal:
        raise SystemExit("the benchmark converts GPT-2-shaped runs only (qkv_bias, causal)")
    classes = list(run.info.classes)
    config = hf_gpt2_config(cfg, classes)
    model = GPT2ForSequenceClassification(config).eval()
    # the head's bias is left out: HF's score has none (added back to the log-probabilities)
    state = {**to_hf_state_dict(run.model.gpt), "score.weight": run.model.gpt.out_head.weight}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        raise SystemExit(f"weight conversion failed: missing {missing}, unexpected {unexpected}")
    return model, classes


def run_hf(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import pipeline

    from gpt_classifier.tokenizer import encode, get_tokenizer

    texts = read_sms_texts(args.data_file, args.num_texts)
    model, classes = hf_model_from_run(args.run_dir)
    tokenizer = hf_tokenizer(args.tokenizer_dir)
    reference = get_tokenizer(args.tokenizer_dir)
    token_mismatches = sum(
        tokenizer(text)["input_ids"] != encode(reference, text) for text in texts
    )
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    runs = []
    for batch_size in [None, *args.hf_batch_sizes]:
        kwargs: dict[str, Any] = {"top_k": None}
        if batch_size is not None:
            tokenizer.pad_token = tokenizer.eos_token  # batching pads; GPT-2 has no pad token
            kwargs["batch_size"] = batch_size
        pipe(texts[:WARMUP_TEXTS], **kwargs)
        start = time.perf_counter()
        outputs = pipe(texts, **kwargs)
        seconds = time.perf_counter() - start
        name = "default (batch_size 1)" if batch_size is None else f"batch_size {batch_size}"
        log(f"[hf] {name}: {len(texts)} texts in {seconds:.2f} s")
        log_probs = []
        for scores in outputs:
            by_label = {item["label"]: item["score"] for item in scores}
            log_probs.append(
                [float(torch.tensor(by_label[c]).clamp_min(1e-45).log()) for c in classes]
            )
        runs.append(
            {
                "name": name,
                "batch_size": batch_size or 1,
                "seconds": seconds,
                "texts_per_s": len(texts) / seconds,
                "log_probs": log_probs,
            }
        )
    return {
        "side": "hf",
        "texts": len(texts),
        "runs": runs,
        "classes": classes,
        "attention": getattr(model.config, "_attn_implementation", "?"),
        "token_mismatches": token_mismatches,
        "torch_threads": torch.get_num_threads(),
    }


RUNNERS = {"ours": run_ours, "hf": run_hf}


# --- parent --------------------------------------------------------------------------------


def agreement(ours: dict[str, Any], log_probs: list[list[float]]) -> tuple[float, float]:
    """Share of texts where HF (its log-probabilities plus our head's bias) picks our class, and
    the largest difference between the two models' class probabilities."""
    bias = ours["head_bias"]
    same, worst = 0, 0.0
    rows = zip(ours["predictions"], ours["probabilities"], log_probs, strict=True)
    for predicted, probabilities, row in rows:
        scores = [value + b for value, b in zip(row, bias, strict=True)]
        same += max(range(len(scores)), key=scores.__getitem__) == predicted
        top = max(scores)
        exps = [math.exp(score - top) for score in scores]
        hf_probabilities = [e / sum(exps) for e in exps]
        worst = max(
            worst, *(abs(a - b) for a, b in zip(hf_probabilities, probabilities, strict=True))
        )
    return same / len(log_probs), worst


def report(ours: dict[str, Any], hf: dict[str, Any], args: argparse.Namespace) -> str:
    out = ["", f"== Inference: {args.num_texts} SMS texts, CPU, same weights (run of config c) =="]
    for side, result in (("ours", ours), ("hf", hf)):
        if "error" in result:
            out.append(f"!! {side} failed: {result['error']}")
    if "error" in ours:
        return "\n".join(out)
    rows = [
        [
            f"ours TextClassifier.classify (batch_size {ours['batch_size']})",
            fmt_s(ours["seconds"], 2),
            f"{ours['texts_per_s']:.1f}",
            "1.0x",
            "-",
            "-",
            f"{ours['peak_rss_mb']:.0f} MiB",
        ]
    ]
    if "error" not in hf:
        for run in hf["runs"]:
            same, worst = agreement(ours, run["log_probs"])
            rows.append(
                [
                    f"HF pipeline, {run['name']}",
                    fmt_s(run["seconds"], 2),
                    f"{run['texts_per_s']:.1f}",
                    f"{ours['texts_per_s'] / run['texts_per_s']:.1f}x",
                    f"{same * 100:.1f} %",
                    f"{worst:.1e}",
                    f"{hf['peak_rss_mb']:.0f} MiB",
                ]
            )
    out.append(
        table(
            [
                "classifier",
                "time",
                "texts/s",
                "ours faster by",
                "same class",
                "max |p diff|",
                "peak RSS",
            ],
            rows,
        )
    )
    counts = [ours["predictions"].count(k) for k in range(len(ours["classes"]))]
    predicted = ", ".join(f"{n} {c}" for c, n in zip(ours["classes"], counts, strict=True))
    out.append(f"  ours predicts: {predicted} (random-init model: the check needs both classes)")
    runs = ours.get("runs_seconds", [ours["seconds"]])
    out.append(
        f"  ours: {ours['precision']}, pooling {ours['pooling']}, padding {ours['padding']} "
        f"(texts sorted by length, batches of similar length; repeated texts run once: "
        f"{ours['distinct']} distinct), {ours['tokens']:,} tokens; time = mean of the runs "
        f"before and after HF ({', '.join(f'{s:.2f} s' for s in runs)})."
    )
    if "error" not in hf:
        out.append(
            f"  HF: GPT2ForSequenceClassification ({hf['attention']} attention) with our weights "
            "converted (score = our head's weight; its bias, which HF's score lacks, is added "
            "back to the log-probabilities for the 'same class' check); texts in file order; "
            "batched runs pad with <|endoftext|> and pass an attention mask. "
            f"Tokenizer (GPT2TokenizerFast from encoder.json/vocab.bpe) differs from tiktoken "
            f"on {hf['token_mismatches']} of {hf['texts']} texts."
        )
        out.append("  (the HF peak RSS covers all its runs in one process)")
    return "\n".join(out)


def run_all(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if not (args.run_dir / "run.json").is_file():
        print(
            f"SKIPPED inference: no run directory at {args.run_dir}; run "
            "`python benchmarks/bench_finetune.py --config c` first (it saves one there) or "
            "pass --run-dir.",
            flush=True,
        )
        return 0
    if args.print_machine:
        print("== Machine ==")
        print(format_machine(machine_info()), flush=True)
    common = [
        "--run-dir",
        str(args.run_dir),
        "--num-texts",
        str(args.num_texts),
        "--hf-batch-sizes",
        ",".join(map(str, args.hf_batch_sizes)),
        "--data-file",
        str(args.data_file),
        "--tokenizer-dir",
        str(args.tokenizer_dir),
    ]
    # The CPU may be shared and its speed drifts over minutes: ours runs before and after the
    # Hugging Face runs, and the ratios use the mean of the two.
    log("--- inference benchmark: ours (before) ---")
    ours = run_child(SCRIPT, ["--side", "ours", *common])
    log("--- inference benchmark: Hugging Face pipeline ---")
    hf = run_child(SCRIPT, ["--side", "hf", *common])
    log("--- inference benchmark: ours (after) ---")
    after = run_child(SCRIPT, ["--side", "ours", *common])
    if "error" not in ours and "error" not in after:
        ours["runs_seconds"] = [ours["seconds"], after["seconds"]]
        ours["seconds"] = sum(ours["runs_seconds"]) / 2
        ours["texts_per_s"] = ours["texts"] / ours["seconds"]
        ours["peak_rss_mb"] = max(ours["peak_rss_mb"], after["peak_rss_mb"])
    print(report(ours, hf, args))
    print(f"\n(inference benchmark took {time.perf_counter() - started:.0f} s)", flush=True)
    return 1 if "error" in ours or "error" in hf else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=["all", *RUNNERS], default="all")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=DEFAULT_OUT_DIR / "run-c",
        help="a run saved by bench_finetune.py config c (default: benchmarks/.out/run-c)",
    )
    parser.add_argument("--num-texts", type=int, default=1000)
    parser.add_argument(
        "--hf-batch-sizes",
        default="8,32",
        help="batched pipeline runs besides the default one (comma list, empty for none)",
    )
    parser.add_argument("--print-machine", action="store_true", help="print the machine first")
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    args.hf_batch_sizes = [int(x) for x in args.hf_batch_sizes.split(",") if x.strip()]
    args.data_file, args.tokenizer_dir = require_shared_data(args.data_file, args.tokenizer_dir)
    args.run_dir = args.run_dir.expanduser().resolve()
    if args.side != "all":
        emit_result(RUNNERS[args.side](args))
        return 0
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
