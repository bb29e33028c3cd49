"""Fine-tuning speed and memory on the SMS Spam Collection (issue #5).

Configurations, each run in its own process (``--config``) so its peak RSS is its own:

a     the book's chapter-6 recipe, literally: our ``GPTModel`` (124M "gpt2" config, random init:
      pretrained weights are unavailable, the compute is the same) with ``out_head`` replaced by
      ``Linear(768, 2)``, last block + final_norm + out_head trainable, float32, every text padded
      to the longest training text, the full 12-block forward at every step, logits of position
      -1, AdamW(lr 5e-5, wd 0.1, not fused), batch 8, ``evaluate_model`` every 50 steps on 5
      batches, ``calc_accuracy_loader`` on 5 batches after each epoch. The book's split
      (duplicates kept, balanced by undersampling).
b     Hugging Face ``GPT2ForSequenceClassification`` (random init, same size, dropout 0) with the
      same recipe: last block ``transformer.h[-1]``, ``transformer.ln_f`` and ``score`` trained,
      the same padded batches (no attention mask, as the book), AdamW with the same settings.
      Its pooling reads the last non-pad token of each row (a reads position -1).
c     this package's defaults: ``run_finetune(FinetuneOptions(..., init="random"))``, the whole
      run (data, model, frozen-prefix cache, 5 epochs, final train/validation/test evaluation,
      saving the run directory with its plots).
c_warm  c again with the disk cache c filled (issue #11: the second run of a grid).
c_fp32  c with ``precision="fp32"`` (what ``auto`` picks on CPUs without fast bf16).
c_fp32_warm  c_fp32 again with its disk cache filled.
c_hf  c from local weights in transformers' ``save_pretrained`` layout (``--weights DIR``: what a
      user with the 124M model does; randomly initialised by transformers, made once), the
      pretrained-format path next to c's random init.
c_medium_hf  c_hf for gpt2-medium (355M): its peak memory.
bf16  the frozen-prefix cache of c on 100 training texts in fp32 and in bf16 (autocast).
peak  this CPU's matmul rate on GPT-2's shapes (fp32, bf16, int8): each stage of c is then
      reported in GFLOP/s and as a share of it.

a and b are timed on ``--steps`` training steps after ``--warmup`` untimed ones, plus one
``evaluate_model`` pass (5 train + 5 validation batches), and scaled to epochs of
``len(train_loader)`` steps. c is measured whole.

Run with no ``--config`` (or ``--config all``) to run every configuration and print the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_OUT_DIR,
    add_data_arguments,
    emit_result,
    fmt_ratio,
    fmt_s,
    format_machine,
    hf_gpt2_config,
    hf_weights_dir,
    log,
    machine_info,
    peak_rss_mb,
    require_shared_data,
    run_child,
    table,
    timed,
)

SCRIPT = Path(__file__).resolve()
CONFIGS = ("a", "b", "c", "c_warm", "c_fp32", "c_fp32_warm", "bf16", "peak", "c_hf", "c_medium_hf")
HF_WEIGHTS = {"c_hf": "gpt2", "c_medium_hf": "gpt2-medium"}

# The book's chapter-6 recipe.
BATCH_SIZE = 8
LR = 5e-5
WEIGHT_DECAY = 0.1
EPOCHS = 5
EVAL_FREQ = 50
EVAL_ITER = 5
SEED = 123
CLASSES = ("ham", "spam")
NUM_CLASSES = len(CLASSES)


# --- shared by a and b ---------------------------------------------------------------------


def book_loaders(data_file: Path) -> tuple[Any, dict[str, Any]]:
    """The book's data: duplicates kept, balanced, 70/10/20, padded to the longest train text."""
    from gpt_classifier.data import encode_splits, prepare_dataset
    from gpt_classifier.tokenizer import get_tokenizer

    tokenizer = get_tokenizer()  # from $GPT_CLASSIFIER_TOKENIZER_DIR
    prepared = prepare_dataset(data_file=data_file, keep_duplicates=True, progress=False)
    encoded = encode_splits(prepared, tokenizer, padding="longest-train")
    loaders = {
        name: encoded.loader(name, BATCH_SIZE, seed=SEED)
        for name in ("train", "validation", "test")
    }
    return encoded, loaders


def time_training_steps(
    model: Any, loader: Any, optimizer: Any, loss_fn: Any, warmup: int, steps: int
) -> list[float]:
    """Seconds of each of ``steps`` book-style steps (next batch, zero_grad, loss, backward,
    step) after ``warmup`` untimed ones; the loader is restarted when it runs out."""
    model.train()
    batches = iter(loader)
    durations = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        optimizer.zero_grad()
        loss = loss_fn(batch[0], batch[1])
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        if index >= warmup:
            durations.append(elapsed)
        log(f"  step {index + 1}/{warmup + steps}: {elapsed:.2f} s, loss {loss.item():.3f}")
    return durations


def scale_to_epochs(
    durations: list[float], eval_s: float, loaders: dict[str, Any], eval_batch_s: float
) -> dict[str, Any]:
    """The book's schedule from the measured step and evaluation times.

    Training: ``len(train_loader)`` steps an epoch. In-training evaluation: ``evaluate_model``
    at global steps 0, 50, 100, ... (the book's ``global_step % eval_freq == 0``). After each
    epoch, ``calc_accuracy_loader`` on 5 train + 5 validation batches: the same forward work as
    one ``evaluate_model`` pass, so counted at the measured evaluation time. After training the
    book's listing computes accuracy on the full train, validation and test loaders: counted
    at the measured no-grad time per batch."""
    steps_per_epoch = len(loaders["train"])
    step_s = statistics.fmean(durations)
    total_steps = EPOCHS * steps_per_epoch
    evaluations = math.ceil(total_steps / EVAL_FREQ)  # global steps 0, 50, ... < total_steps
    train_epoch = steps_per_epoch * step_s
    five_epochs = EPOCHS * train_epoch + evaluations * eval_s + EPOCHS * eval_s
    final_batches = sum(len(loader) for loader in loaders.values())
    final_eval = final_batches * eval_batch_s
    return {
        "steps_per_epoch": steps_per_epoch,
        "step_s_mean": step_s,
        "step_s_median": statistics.median(durations),
        "step_s_min": min(durations),
        "step_s_max": max(durations),
        "evaluations_in_5_epochs": evaluations,
        "train_epoch_s": train_epoch,
        "epoch_incl_eval_s": five_epochs / EPOCHS,
        "five_epochs_incl_eval_s": five_epochs,
        "final_full_eval_batches": final_batches,
        "final_full_eval_s": final_eval,
    }


def _common_result(config: str, args: argparse.Namespace, encoded: Any) -> dict[str, Any]:
    return {
        "config": config,
        "steps_timed": args.steps,
        "warmup_steps": args.warmup,
        "train_examples": len(encoded.train),
        "pad_length": encoded.pad_lengths["train"],
        "machine": machine_info(),
    }


# --- a: the book ---------------------------------------------------------------------------


def run_book(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from gpt_classifier.training.losses import calc_loss_batch, evaluate_model
    from gpt_classifier.weights import build_model

    torch.manual_seed(SEED)
    setup: dict[str, float] = {}
    with timed(setup, "data"):
        encoded, loaders = book_loaders(args.data_file)
    with timed(setup, "model"):
        model = build_model("gpt2", init="random", seed=SEED)
        for param in model.parameters():
            param.requires_grad = False
        torch.manual_seed(SEED)
        model.out_head = torch.nn.Linear(in_features=model.cfg.emb_dim, out_features=NUM_CLASSES)
        for param in model.trf_blocks[-1].parameters():
            param.requires_grad = True
        for param in model.final_norm.parameters():
            param.requires_grad = True
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    device = torch.device("cpu")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"[a] book recipe: {len(loaders['train'])} steps/epoch, pad length "
        f"{encoded.pad_lengths['train']}, {trainable:,} trainable parameters"
    )

    def loss_fn(inputs: Any, targets: Any) -> Any:
        return calc_loss_batch(inputs, targets, model, device)  # model(x)[:, -1, :]

    durations = time_training_steps(
        model, loaders["train"], optimizer, loss_fn, args.warmup, args.steps
    )
    start = time.perf_counter()
    evaluate_model(model, loaders["train"], loaders["validation"], device, EVAL_ITER)
    eval_s = time.perf_counter() - start
    log(f"[a] evaluate_model on {EVAL_ITER}+{EVAL_ITER} batches: {eval_s:.2f} s")
    result = _common_result("a", args, encoded)
    result.update(
        trainable_parameters=trainable,
        setup_s=setup,
        eval_pass_s=eval_s,
        **scale_to_epochs(durations, eval_s, loaders, eval_s / (2 * EVAL_ITER)),
    )
    return result


# --- b: Hugging Face -----------------------------------------------------------------------


def run_hf(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import GPT2ForSequenceClassification

    from gpt_classifier.config import resolve_config

    torch.manual_seed(SEED)
    setup: dict[str, float] = {}
    with timed(setup, "data"):
        encoded, loaders = book_loaders(args.data_file)
    with timed(setup, "model"):
        model = GPT2ForSequenceClassification(hf_gpt2_config(resolve_config("gpt2"), CLASSES))
        for param in model.parameters():
            param.requires_grad = False
        for module in (model.transformer.h[-1], model.transformer.ln_f, model.score):
            for param in module.parameters():
                param.requires_grad = True
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    attention = getattr(model.config, "_attn_implementation", "?")
    log(
        f"[b] Hugging Face GPT2ForSequenceClassification ({attention} attention): "
        f"{trainable:,} trainable parameters"
    )

    def loss_fn(inputs: Any, targets: Any) -> Any:
        # Same padded ids as a, no attention mask (causal: real tokens never see the padding);
        # the model pools the last non-pad token of each row and computes the cross-entropy.
        return model(input_ids=inputs, labels=targets).loss

    def evaluate() -> tuple[float, float]:  # the book's evaluate_model, for this model
        model.eval()
        losses = []
        with torch.no_grad():
            for loader in (loaders["train"], loaders["validation"]):
                total, count = 0.0, 0
                for index, batch in enumerate(loader):
                    if index >= EVAL_ITER:
                        break
                    total += loss_fn(batch[0], batch[1]).item()
                    count += 1
                losses.append(total / count)
        model.train()
        return losses[0], losses[1]

    durations = time_training_steps(
        model, loaders["train"], optimizer, loss_fn, args.warmup, args.steps
    )
    start = time.perf_counter()
    evaluate()
    eval_s = time.perf_counter() - start
    log(f"[b] evaluation on {EVAL_ITER}+{EVAL_ITER} batches: {eval_s:.2f} s")
    result = _common_result("b", args, encoded)
    result.update(
        trainable_parameters=trainable,
        attention=attention,
        setup_s=setup,
        eval_pass_s=eval_s,
        **scale_to_epochs(durations, eval_s, loaders, eval_s / (2 * EVAL_ITER)),
    )
    return result


# --- c: ours, defaults ---------------------------------------------------------------------


def run_ours(args: argparse.Namespace, config: str = "c") -> dict[str, Any]:
    import os
    import re
    import shutil

    from gpt_classifier.training.pipeline import FinetuneOptions, run_finetune

    # c starts from an empty disk cache of its own, c_warm reuses it; c_fp32 has another,
    # which c_fp32_warm reuses
    fp32 = config.startswith("c_fp32")
    cache_dir = DEFAULT_OUT_DIR / ("prefix-cache-fp32" if fp32 else "prefix-cache")
    weights = None
    if config in HF_WEIGHTS:
        cache_dir = DEFAULT_OUT_DIR / f"prefix-cache-{config}"
        weights = str(hf_weights_dir(HF_WEIGHTS[config]))
    if not config.endswith("_warm"):
        shutil.rmtree(cache_dir, ignore_errors=True)
    os.environ["GPT_CLASSIFIER_CACHE"] = str(cache_dir)
    run_dir = args.run_dir if config == "c" else None
    output_dir = run_dir or Path(tempfile.mkdtemp(prefix=f"bench-{config}-"))
    options = FinetuneOptions(
        data_file=str(args.data_file),
        model="gpt2",
        init="pretrained" if weights else "random",
        weights=weights,
        output_dir=str(output_dir),
        progress=False,
        plots=True,
        overwrite=True,
        precision="fp32" if fp32 else "auto",
    )
    settings = options.resolved().train
    prefix: dict[str, int] = {}

    def logged(message: str) -> None:
        found = re.search(r"blocks 0-(\d+) once over ([\d,]+) positions", message)
        if found:
            prefix["blocks"] = int(found.group(1)) + 1
            prefix["positions"] = int(found.group(2).replace(",", ""))
        log(f"[{config}] {message}")

    start = time.perf_counter()
    finished = run_finetune(options, log=logged)
    wall = time.perf_counter() - start
    stage_peaks = json.loads((finished.run_dir / "timings.json").read_text())["peak_rss_mb_after"]
    timings = dict(finished.timings)
    epochs = finished.train.epochs_completed or settings.epochs
    stages = ("prefix_cache", "train", "evaluate")
    report = finished.report
    return {
        "config": config,
        "prefix": prefix,
        "texts": sum(n or 0 for n in (p.get("num_examples") for p in report.values())),
        "peak_rss_mb_after": stage_peaks,
        "run_dir": str(output_dir),
        "wall_s": wall,
        "timings": timings,
        "epochs": epochs,
        "steps": finished.train.global_steps,
        "train_epoch_s": timings.get("train", float("nan")) / epochs,
        "epoch_incl_cache_eval_s": sum(timings.get(k, 0.0) for k in stages) / epochs,
        "test_accuracy": report.get("test", {}).get("accuracy"),
        "validation_accuracy": report.get("validation", {}).get("accuracy"),
        "train_accuracy": report.get("train", {}).get("accuracy"),
        "examples": {name: part.get("num_examples") for name, part in report.items()},
        "precision": finished.precision,
        "cached_prefix": finished.cached_prefix,
        "pipeline_peak_rss_mb": round(finished.peak_rss_mb, 1),
        "settings": settings.to_dict(),
        "machine": machine_info(),
    }


# --- bf16 vs fp32 for the frozen-prefix cache -------------------------------------------------


def run_bf16(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from gpt_classifier.classifier import GPTClassifier, apply_trainable
    from gpt_classifier.data import EncodedDataset, encode_splits, prepare_dataset
    from gpt_classifier.precision import (
        cpu_has_fast_bf16,
        resolve_device,
        resolve_precision,
    )
    from gpt_classifier.tokenizer import get_tokenizer
    from gpt_classifier.training.pipeline import FinetuneOptions
    from gpt_classifier.training.prefix_cache import build_caches, plan_prefix_cache
    from gpt_classifier.weights import build_model

    options = FinetuneOptions(
        data_file=str(args.data_file), model="gpt2", init="random", precision="bf16"
    )
    recipe = options.resolved()
    settings = recipe.train
    device = resolve_device(options.device)
    prepared = prepare_dataset(
        data_file=options.data_file,
        balance=recipe.balance,
        keep_duplicates=recipe.keep_duplicates,
        seed=settings.seed,
        progress=False,
    )
    gpt = build_model(options.model, None, options.init, seed=settings.seed)
    encoded = encode_splits(prepared, get_tokenizer(), recipe.padding, gpt.cfg.context_length)
    classifier = GPTClassifier(gpt, NUM_CLASSES, pooling=recipe.pooling, head_seed=SEED)
    apply_trainable(classifier, recipe.trainable)
    pad_length = encoded.pad_lengths["train"]
    plan = plan_prefix_cache(classifier, pad_length)
    start_block = plan.start_block if plan.enabled else len(gpt.trf_blocks) - 1
    train = encoded.train
    count = min(args.bf16_texts, len(train))
    sample = EncodedDataset(train.input_ids[:count], train.labels[:count])
    warm = EncodedDataset(train.input_ids[:4], train.labels[:4])
    tokens = sum(sample.lengths) if pad_length is None else pad_length * count
    results: dict[str, Any] = {}
    states = {}
    for precision in ("fp32", resolve_precision(options.precision, device)):
        pads = {"d": pad_length}
        build_caches(classifier, {"d": warm}, pads, start_block, device, precision)
        start = time.perf_counter()
        cache = build_caches(classifier, {"d": sample}, pads, start_block, device, precision)["d"]
        seconds = time.perf_counter() - start
        states[precision] = _cached_states(cache, count)
        results[precision] = {"seconds": seconds, "tokens_per_s": tokens / seconds}
        log(f"[bf16] prefix cache, {precision}: {count} texts ({tokens} tokens) in {seconds:.2f} s")
    diff = max(
        float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))
        for a, b in zip(states["fp32"], states.get("bf16", states["fp32"]), strict=True)
    )
    return {
        "config": "bf16",
        "texts": count,
        "tokens": tokens,
        "blocks": start_block,
        "padding": str(encoded.padding),
        "timings": results,
        "max_relative_state_difference": diff,
        "cpu_has_fast_bf16": cpu_has_fast_bf16(),
        "resolved_auto_precision": resolve_precision("auto", device),
        "mkldnn_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "machine": machine_info(),
    }


def _cached_states(cache: Any, count: int) -> list[Any]:
    """Each example's cached states (the cache's layout has changed between versions)."""
    if hasattr(cache, "state"):
        return [cache.state(index).float() for index in range(count)]
    return [state.float() for state in cache.states]


def run_peak(args: argparse.Namespace) -> dict[str, Any]:
    from hardware_peak import matmul_peaks

    return {"config": "peak", "gflops": matmul_peaks(), "machine": machine_info()}


RUNNERS = {
    "a": run_book,
    "b": run_hf,
    "c": run_ours,
    "c_warm": lambda args: run_ours(args, "c_warm"),
    "c_fp32": lambda args: run_ours(args, "c_fp32"),
    "c_fp32_warm": lambda args: run_ours(args, "c_fp32_warm"),
    "bf16": run_bf16,
    "peak": run_peak,
    "c_hf": lambda args: run_ours(args, "c_hf"),
    "c_medium_hf": lambda args: run_ours(args, "c_medium_hf"),
}


# --- parent: run all, print the tables --------------------------------------------------------


def child_args(args: argparse.Namespace, config: str) -> list[str]:
    command = [
        "--config",
        config,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--bf16-texts",
        str(args.bf16_texts),
        "--data-file",
        str(args.data_file),
        "--tokenizer-dir",
        str(args.tokenizer_dir),
    ]
    if args.run_dir:
        command += ["--run-dir", str(args.run_dir)]
    return command


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    out = []
    a, b, c, c_warm, c_fp32, c_fp32_warm, bf, peak = (results.get(k, {}) for k in CONFIGS[:8])
    errors = {k: v["error"] for k, v in results.items() if "error" in v}
    for config, error in errors.items():
        out.append(f"!! config {config} failed: {error}")

    out.append("")
    out.append("== Fine-tuning: GPT-2 124M config (random init), SMS Spam Collection, CPU fp32 ==")
    out.append(
        f"a and b are SCALED from {args.steps} timed training steps (after {args.warmup} "
        f"warm-up steps) plus one {EVAL_ITER}+{EVAL_ITER}-batch evaluation pass, to epochs of "
        "len(train_loader) steps; c is measured whole."
    )
    rows = []
    for label, result in (("a book loop, full forward", a), ("b HF GPT2ForSequenceClassif.", b)):
        if "error" in result or not result:
            rows.append([label] + ["-"] * 7)
            continue
        rows.append(
            [
                label,
                f"{result['steps_per_epoch']} x {result['step_s_mean']:.2f} s "
                f"(median {result['step_s_median']:.2f})",
                fmt_s(result["eval_pass_s"]),
                fmt_s(result["train_epoch_s"]),
                fmt_s(result["epoch_incl_eval_s"]),
                fmt_s(result["five_epochs_incl_eval_s"]),
                fmt_s(_whole_run(result)) + " (est.)",
                f"{result['peak_rss_mb']:.0f} MiB",
            ]
        )
    if c and "error" not in c:
        rows.append(
            [
                "c ours, defaults",
                f"{c['steps'] // max(c['epochs'], 1)} steps, measured",
                "-",
                fmt_s(c["train_epoch_s"]),
                fmt_s(c["epoch_incl_cache_eval_s"]),
                fmt_s(c["epoch_incl_cache_eval_s"] * c["epochs"]),
                fmt_s(c["wall_s"]),
                f"{c['peak_rss_mb']:.0f} MiB",
            ]
        )
    out.append(
        table(
            [
                "configuration",
                "steps/epoch x s/step",
                "eval pass",
                "epoch (steps)",
                "epoch incl. eval",
                "5 epochs incl. eval",
                "whole run",
                "peak RSS",
            ],
            rows,
        )
    )
    out.append(
        "  epoch (steps): a/b: len(train_loader) x mean step time; c: its train stage / epochs "
        "(which includes its evaluations every 50 steps)."
    )
    out.append(
        "  epoch incl. eval: a/b: steps + the book's evaluate_model every 50 steps + the 5-batch "
        "accuracy after each epoch (same forward work as one eval pass); c: (prefix_cache + "
        "train + evaluate) / epochs, i.e. its frozen-prefix cache and its final full "
        "train/validation/test evaluation spread over the epochs."
    )
    out.append(
        "  whole run: a/b (estimate): measured setup (data + model) + 5 epochs incl. eval + the "
        "book's accuracy on the complete train/validation/test loaders after training (at the "
        "measured no-grad time per batch), no saving; c: run_finetune() wall time, saving the "
        "run directory and plots included."
    )
    for key, result in (("a", a), ("b", b)):
        if result and "error" not in result:
            setup = result["setup_s"]
            out.append(
                f"  {key}: {result['train_examples']} training texts padded to "
                f"{result['pad_length']} tokens; {result['trainable_parameters']:,} trainable "
                f"parameters; setup (data {setup['data']:.1f} s, model {setup['model']:.1f} s); "
                f"steps {result['step_s_min']:.2f}-{result['step_s_max']:.2f} s"
                + (f"; attention: {result['attention']}" if key == "b" else "")
            )

    if c and "error" not in c:
        out.append("")
        out.append("== c: per-stage timings (FinetuneResult.timings) ==")
        stage_rows = [[name, fmt_s(seconds, 2)] for name, seconds in c["timings"].items()]
        stage_rows.append(["wall time of run_finetune()", fmt_s(c["wall_s"], 2)])
        stage_rows.append(["process wall time (imports included)", fmt_s(c["process_wall_s"], 2)])
        out.append(table(["stage", "seconds"], stage_rows))
        out.append(
            f"  precision {c['precision']}, frozen-prefix cache "
            f"{'on' if c['cached_prefix'] else 'off'}; "
            f"examples {c['examples']}; accuracy train "
            f"{_pct(c['train_accuracy'])}, validation {_pct(c['validation_accuracy'])}, "
            f"test {_pct(c['test_accuracy'])} (random init: not the book's ~95 %); "
            f"run dir {c['run_dir']}"
        )

    if c and "error" not in c:
        out.append("")
        out.append("== Ratios (how many times longer than c) ==")
        ratio_rows = []
        for label, result in (("a / c (book loop)", a), ("b / c (HF)", b)):
            if not result or "error" in result:
                continue
            ratio_rows.append(
                [
                    label,
                    fmt_ratio(result["train_epoch_s"], c["train_epoch_s"]),
                    fmt_ratio(result["epoch_incl_eval_s"], c["epoch_incl_cache_eval_s"]),
                    fmt_ratio(result["five_epochs_incl_eval_s"], c["wall_s"]),
                    fmt_ratio(_whole_run(result), c["wall_s"]),
                ]
            )
        out.append(
            table(
                [
                    "ratio",
                    "per epoch (steps)",
                    "per epoch incl. eval",
                    "5 epochs incl. eval / c total",
                    "whole run / c total",
                ],
                ratio_rows,
            )
        )

    out.extend(_precision_memory_limit(c, c_warm, c_fp32, c_fp32_warm, peak))
    out.extend(_weight_sources(results))

    if bf and "error" not in bf:
        out.append("")
        out.append("== bf16 note ==")
        fp32 = bf["timings"]["fp32"]
        other = bf["timings"].get("bf16")
        line = (
            f"frozen-prefix cache of c (blocks 0-{bf['blocks'] - 1}, {bf['padding']} padding) on "
            f"{bf['texts']} training texts ({bf['tokens']} tokens): fp32 {fp32['seconds']:.2f} s "
            f"({fp32['tokens_per_s']:.0f} tok/s)"
        )
        if other:
            line += (
                f", bf16 autocast {other['seconds']:.2f} s ({other['tokens_per_s']:.0f} tok/s): "
                f"bf16 takes {other['seconds'] / fp32['seconds']:.1f}x the fp32 time; "
                "max relative difference of the cached states "
                f"{bf['max_relative_state_difference']:.1e}."
            )
        out.append(line)
        out.append(
            f"cpu_has_fast_bf16() = {bf['cpu_has_fast_bf16']} (oneDNN bf16 supported: "
            f"{bf['mkldnn_bf16_supported']}); precision='auto' resolves to "
            f"{bf['resolved_auto_precision']} here. Without AMX / AVX512-BF16 oneDNN emulates "
            "bfloat16, so fp32 is the right default on this CPU."
        )
    return "\n".join(out)


def _precision_memory_limit(
    c: dict[str, Any],
    c_warm: dict[str, Any],
    c_fp32: dict[str, Any],
    c_fp32_warm: dict[str, Any],
    peak: dict[str, Any],
) -> list[str]:
    """c in each precision, its memory stage by stage, the warm-cache rerun, and each stage's
    matmul rate against this CPU's peak."""
    from hardware_peak import block_flops_per_token, pooled_step_flops

    out: list[str] = []
    runs = [
        (k, r)
        for k, r in (("c", c), ("c_fp32", c_fp32), ("c_warm", c_warm), ("c_fp32_warm", c_fp32_warm))
        if r
    ]
    runs = [(k, r) for k, r in runs if "error" not in r]
    if not runs:
        return out
    out.append("")
    out.append("== c by precision, and again with a warm disk cache: seconds and peak RSS ==")
    stages = ("model", "prefix_cache", "train", "evaluate", "save")
    rows = []
    for key, run in runs:
        t = run["timings"]
        rows.append(
            [f"{key} ({run['precision']})"]
            + [f"{t.get(s, 0):.1f}" for s in stages]
            + [f"{run['wall_s']:.1f}", f"{run['test_accuracy'] * 100:.1f} %"]
        )
    out.append(table(["run", *stages, "wall s", "test acc"], rows))
    for warm, cold in ((c_warm, c), (c_fp32_warm, c_fp32)):
        if warm and "error" not in warm and cold and "error" not in cold:
            out.append(
                f"  {warm['config']} / {cold['config']} wall time: "
                f"{warm['wall_s'] / cold['wall_s'] * 100:.0f} % (issue #11 asks for <= 40 %)"
            )
    out.append("  peak RSS (MiB, VmHWM) after each stage:")
    mem_rows = [
        [key, *(f"{run['peak_rss_mb_after'].get(s, 0):.0f}" for s in ("data", *stages))]
        for key, run in runs
    ]
    out.append(table(["run", "data", *stages], mem_rows))

    if not peak or "error" in peak:
        return out
    out.append("")
    out.append("== The limit: this CPU's matmul rate (GFLOP/s, best of 7) ==")
    kinds = list(next(iter(peak["gflops"].values())))
    out.append(
        table(
            ["shape", *kinds],
            [
                [shape, *(f"{rates[k]:.0f}" for k in kinds)]
                for shape, rates in peak["gflops"].items()
            ],
        )
    )
    big = peak["gflops"]["1024x768 @ 768x3072"]
    small = peak["gflops"]["8x768 @ 768x3072"]
    rows = []
    for key, run in runs:
        prefix, precision = run.get("prefix"), run["precision"]
        if prefix and run["timings"].get("prefix_cache"):
            mean_length = prefix["positions"] / max(run["texts"], 1)
            flops = (
                prefix["positions"] * prefix["blocks"] * block_flops_per_token(768, mean_length / 2)
            )
            rate = flops / run["timings"]["prefix_cache"] / 1e9
            rows.append(
                [
                    f"{key}: frozen prefix ({precision})",
                    f"{rate:.0f}",
                    f"{rate / big[precision] * 100:.0f} %",
                ]
            )
        if run["timings"].get("train"):
            width = prefix["positions"] / max(run["texts"], 1) if prefix else 30.0
            rate = (
                run["steps"] * pooled_step_flops(8, 768, width, 12) / run["timings"]["train"] / 1e9
            )
            rows.append(
                [
                    f"{key}: training steps (fp32 suffix)",
                    f"{rate:.0f}",
                    f"{rate / small['fp32'] * 100:.0f} % of 8-row fp32",
                ]
            )
    out.append(table(["stage", "GFLOP/s", "of peak"], rows))
    out.append(
        "  FLOPs counted: prefix = positions x blocks x (24 D^2 + 4 D x mean context); training "
        "= steps x 3 x 8 texts x (24 D^2 + 4 H x width x D) at the pooled positions (the train "
        "stage's time includes its evaluations every 50 steps, so this is a lower bound). The "
        "training step is bound by memory traffic, not FLOPs: AdamW and the weight gradients "
        "touch all 7.1M trainable parameters every step (~200 MB), whatever the batch."
    )
    return out


def _weight_sources(results: dict[str, dict[str, Any]]) -> list[str]:
    """c from random init and from transformers-format weights: time and peak side by side."""
    runs = [(k, results.get(k)) for k in ("c", "c_hf", "c_medium_hf")]
    rows = [
        [
            key,
            "gpt2-medium" if key == "c_medium_hf" else "gpt2",
            "transformers folder" if key in HF_WEIGHTS else "random init",
            f"{run['wall_s']:.1f}",
            f"{run['timings'].get('prefix_cache', 0):.1f}",
            f"{run['timings'].get('train', 0):.1f}",
            f"{run['peak_rss_mb_after'].get('save', run['peak_rss_mb']):.0f}",
        ]
        for key, run in runs
        if run and "error" not in run
    ]
    if not rows:
        return []
    headers = ["run", "model", "weights", "wall s", "frozen prefix s", "train s", "peak MiB"]
    return ["", "== c by weight source (peak: timings.json) ==", table(headers, rows)]


def _whole_run(result: dict[str, Any]) -> float:
    return (
        sum(result["setup_s"].values())
        + result["five_epochs_incl_eval_s"]
        + result["final_full_eval_s"]
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def run_all(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    print("== Machine ==")
    print(format_machine(machine_info()), flush=True)
    if args.run_dir is None:
        args.run_dir = DEFAULT_OUT_DIR / "run-c"
    results = {}
    for config in args.configs:
        log(f"--- fine-tuning benchmark, config {config} ---")
        results[config] = run_child(SCRIPT, child_args(args, config))
        if "error" not in results[config]:
            log(
                f"--- config {config}: {results[config]['process_wall_s']:.1f} s, peak RSS "
                f"{results[config]['peak_rss_mb']:.0f} MiB ---"
            )
    print(report(results, args))
    print(f"\n(fine-tuning benchmark took {time.perf_counter() - started:.0f} s)", flush=True)
    return 1 if any("error" in r for r in results.values()) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        default="all",
        help="one of " + ", ".join(CONFIGS) + " (in this process, printing a JSON line), "
        "a comma list, or all",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps for a and b")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--bf16-texts", type=int, default=100, help="texts for the bf16 note")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="where c saves its run (default: benchmarks/.out/run-c; bench_inference.py reads it)",
    )
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    args.data_file, args.tokenizer_dir = require_shared_data(args.data_file, args.tokenizer_dir)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")

    if args.config in RUNNERS:
        result = RUNNERS[args.config](args)
        emit_result(result)
        log(f"[{args.config}] peak RSS {peak_rss_mb():.0f} MiB")
        return 0
    configs = list(CONFIGS) if args.config == "all" else args.config.split(",")
    unknown = [c for c in configs if c not in RUNNERS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; use {', '.join(CONFIGS)} or all")
    args.configs = configs
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
