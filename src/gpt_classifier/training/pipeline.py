"""One fine-tuning run in named stages: resolve the recipe -> open the run directory -> prepare
data -> build the classifier -> make the loaders (frozen-prefix cache included) -> fit ->
evaluate -> write the run (one transaction); printing goes through ``log``."""

from __future__ import annotations

import dataclasses
import functools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from .. import distributed
from ..classifier import GPTClassifier, Pooling, apply_trainable, describe_trainable
from ..classifier.pooling import padding_reads
from ..data import encode_splits, prepare_dataset, write_splits
from ..data.encoding import EncodedSplits
from ..data.prepare import PreparedData, class_weights
from ..distributed import DistContext
from ..errors import GPTClassifierError
from ..evaluation import TrainingHistory, format_report, read_report_json, write_report_json
from ..evaluation.predictions import EVAL_BATCH_SIZE, evaluate_split
from ..fileio import cannot_write, check_output_dir, write_json, write_text, writer_lock
from ..precision import autocast
from ..progress import progress_bar
from ..runs import checkpoint
from ..runs.run_dir import RunInfo, base_weights_record, write_model_card, write_model_files
from ..runs.transaction import StagedRun, finish_interrupted_commit
from ..tokenizer import get_tokenizer
from ..weights import build_model, frozen_parameter_sample, lazy_weights_of, materialize_model
from . import prefix_cache
from .cache_store import CacheStore, dataset_key, prefix_digests
from .loop import LoopState, TrainingDiverged, TrainResult, train_classifier
from .memory import peak_rss_mb, release_free_memory
from .prefix_cache import HiddenStateCache, build_caches, kept_lengths
from .recipe import FinetuneOptions, ResolvedRecipe

__all__ = ["FinetuneOptions", "FinetuneResult", "run_finetune"]

SPLITS = ("train", "validation", "test")
Log = Callable[[str], None]
Report = dict[str, dict[str, Any]]  # metrics.json: each split's metrics


@dataclass
class FinetuneResult:
    run_dir: Path
    report: Report
    train: TrainResult
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    cached_prefix: bool = False
    precision: str = "fp32"
    main_process: bool = True  # False on the other ranks under torchrun (they write nothing)

    @property
    def interrupted(self) -> bool:
        return self.train.interrupted


@dataclass
class Run:
    """What every stage reads: options, recipe, rank, log, the stages' output and clock."""

    options: FinetuneOptions
    recipe: ResolvedRecipe
    dist: DistContext
    log: Log
    prepared: PreparedData = field(init=False)
    encoded: EncodedSplits = field(init=False)
    classifier: GPTClassifier = field(init=False)
    trained_model: torch.nn.Module = field(init=False)  # the classifier, or its suffix on states
    loaders: dict[str, Any] = field(default_factory=dict)
    weights: list[float] | None = None  # the training loss's class weights (--balance weighted)
    cached: bool = False  # the frozen prefix ran once; training reads its states
    suffix_precision: str = "fp32"  # what the trained part runs in (autocast), see make_loaders
    effective_batch: int = 1  # per optimizer step: --batch-size x processes x --grad-accum
    started: float = field(default_factory=time.perf_counter)
    seconds: dict[str, float] = field(default_factory=dict)
    peak_after: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Wall time and peak memory after the stage ``name`` (``timings.json``)."""
        begun = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - begun, 3)
        self.peak_after[name] = round(peak_rss_mb(), 1)

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)


def run_finetune(options: FinetuneOptions, log: Log | None = None) -> FinetuneResult:
    """One run; under ``torchrun`` every rank calls it, and only rank 0 logs and writes."""
    recipe = options.resolved()
    dist = distributed.init_distributed(recipe.device, options.dist_timeout)
    log = log or functools.partial(print, file=sys.stderr, flush=True)  # the stderr of now
    if not dist.is_main:
        log, options = (lambda message: None), dataclasses.replace(options, progress=False)
    finished = False
    try:
        with _on_main(dist, lambda: _lock(options)) or nullcontext():
            result = _run_finetune(Run(options, recipe, dist, log))
        finished = True
        return result
    except torch.distributed.DistError as exc:
        raise distributed.peer_failure(dist, exc) from None
    finally:
        distributed.shutdown(dist, finished=finished)


def _lock(options: FinetuneOptions) -> ExitStack:
    """One writer per run directory, until the command ends (rank 0 holds it)."""
    if not options.resume:  # a bad place fails with its own message, before anything is made
        check_output_dir(options.output_path, overwrite=options.overwrite)
    return writer_lock(options.output_path, "--output-dir")


def _on_main(dist: DistContext, work: Callable[[], Any]) -> Any:
    """``work()`` on rank 0, its errors on every rank; None on the other ranks."""
    kept: list[Any] = []
    dist.run_on_main(lambda: kept.append(work()))
    return kept[0] if kept else None


@contextmanager
def deferred_interrupts() -> Iterator[SimpleNamespace]:
    """Within the block, SIGINT is recorded in ``requested``, not raised (main thread only)."""
    request = SimpleNamespace(requested=False)
    with ExitStack() as restore:
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, lambda *_: setattr(request, "requested", True))
            restore.callback(signal.signal, signal.SIGINT, previous)
        yield request


def _run_finetune(run: Run) -> FinetuneResult:
    options, dist, log = run.options, run.dist, run.log
    if options.resume and dist.run_on_main(lambda: finish_interrupted_commit(options.output_path)):
        log(f"{options.output_path}: the run was complete; finished its interrupted commit")
        done = options.output_path
        history = TrainingHistory.from_dict(json.loads((done / "history.json").read_text()))
        report = read_report_json(done / "metrics.json")
        return FinetuneResult(done, report, TrainResult(history), {"total": 0.0, "train": 0.0})
    staged: StagedRun | None = _on_main(dist, lambda: open_run_directory(options))
    run.started = time.perf_counter()  # the run's clock starts once its folder is set up
    try:
        stages = {"data": prepare_data, "model": build_classifier, "tokenize": encode}
        stages["prefix_cache"] = make_loaders
        for name, stage in stages.items():
            with run.stage(name):
                stage(run)
        with run.stage("train"), _saving(staged, options.output_path):
            result = fit(run, staged)
        with deferred_interrupts() as interrupt:  # a Ctrl-C now would lose the trained model
            with run.stage("evaluate"):
                report = evaluate_splits(run)
            release_free_memory()
            run_dir = options.output_path
            if staged is not None:  # rank 0 writes the run
                with _saving(staged, run_dir):
                    with run.stage("save"):
                        write_run(run, staged, report, result)
                    timings = {
                        "seconds": {**run.seconds, "total": run.total()},
                        "peak_rss_mb": round(peak_rss_mb(), 1),
                        "peak_rss_mb_after": run.peak_after,
                        "device": str(run.recipe.device),
                        "threads": torch.get_num_threads(),
                        "processes": dist.world_size,  # rank 0's clock; the others run the same
                    }
                    write_json(staged.folder / "timings.json", timings)
                    run_dir = staged.commit()
        result.interrupted |= interrupt.requested
    except TrainingDiverged as exc:
        message = f"{exc}; nothing was saved"
        if staged is not None and checkpoint.has_checkpoint(staged.checkpoint_dir):
            message += f"; the last good checkpoint is kept in {staged.checkpoint_dir}"
        raise GPTClassifierError(message) from None
    except BaseException:
        if staged is not None:  # leave no trace but the last checkpoint (for --resume)
            staged.discard(keep_checkpoint=checkpoint.has_checkpoint(staged.checkpoint_dir))
        raise
    run.seconds["total"] = run.total()
    about = (run.cached, run.recipe.precision, dist.is_main)
    return FinetuneResult(run_dir, report, result, run.seconds, peak_rss_mb(), *about)


@contextmanager
def _saving(staged: StagedRun | None, target: Path) -> Iterator[None]:
    """An OSError writing the run or its checkpoint (full disk, permissions): one line to act on."""
    try:
        yield
    except OSError as exc:
        flag = "--output-dir"
        if staged is not None and checkpoint.has_checkpoint(staged.checkpoint_dir):
            flag += f" (the last checkpoint is kept: gpt-classifier train --resume {target})"
        raise cannot_write(target, exc, flag) from None


def open_run_directory(options: FinetuneOptions) -> StagedRun:
    """Check the output directory before any work; set up its staging folder."""
    staged = StagedRun(target := options.output_path)
    if options.resume:
        if not (staged.checkpoint_dir / checkpoint.OPTIONS_FILE).is_file():
            raise GPTClassifierError(f"no interrupted run to resume at {target}")
        return staged.start(keep_checkpoint=True)
    check_output_dir(target, overwrite=options.overwrite)
    if staged.checkpoint_dir.is_dir() and not options.overwrite:
        raise GPTClassifierError(
            f"an interrupted run of {target} can be resumed: gpt-classifier train --resume "
            f"{target} (or pass --overwrite to start again)"
        )
    staged.start()
    try:
        staged.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.save_options(staged.checkpoint_dir, options.to_dict())
    except OSError as exc:
        staged.discard()
        raise cannot_write(target, exc, "--output-dir") from None
    return staged


def prepare_data(run: Run) -> None:
    """The splits and, with ``--balance weighted``, each class's weight in the training loss, from
    the training split (the same on a resume: the checkpoint's fingerprint holds the split)."""
    options = run.options
    run.prepared = prepared = prepare_dataset(**options.dataset_args(), progress=options.progress)
    for line in prepared.summary.removals():
        run.log(line)
    sizes = ", ".join(f"{name} {len(prepared.split(name))}" for name in SPLITS)
    classes = prepared.label_map.classes
    run.log(f"data: {prepared.summary.source}: {sizes}; classes: {', '.join(classes)}")
    for name in [name for name in SPLITS[1:] if not prepared.split(name)]:
        without = "no test metrics" if name == "test" else "its losses show as nan, no best epoch"
        empty = f"note: the {name} split is empty at these --fractions and class sizes"
        run.log(f"{empty}: training goes on without it ({without})")
    n_train, batch = len(prepared.train), run.recipe.train.batch_size
    if n_train < batch:  # the training loader drops its last incomplete batch, as the book's
        raise GPTClassifierError(
            f"no training step possible: the training split has {n_train} example(s), fewer "
            f"than the batch size {batch}; lower --batch-size or give more data"
        )
    if run.recipe.balance == "weighted":
        run.weights = weights = class_weights(prepared.summary.splits["train"], classes)
        shown = ", ".join(f"{label} {w:.3g}" for label, w in zip(classes, weights, strict=True))
        run.log(f"class weights in the training loss: {shown} (--balance weighted)")


def _lean_applies(run: Run, cfg: Any) -> bool:
    """Whether only the trained suffix need be resident (prefix run block by block, run saved
    module by module); under torchrun each rank runs a share of the batched prefix instead."""
    lean = run.options.prefix_cache and run.recipe.trainable.kind.value in ("head", "last-blocks")
    return lean and run.recipe.device.type == "cpu" and not run.dist.enabled and not cfg.drop_rate


def build_classifier(run: Run) -> None:
    options, recipe, seed = run.options, run.recipe, run.recipe.train.seed
    # a skeleton on meta: every weight source read module by module where it is needed
    gpt = build_model(options.model, options.weights, options.init, seed=seed, lazy=True)
    if not _lean_applies(run, gpt.cfg):
        materialize_model(gpt)
    if not options.causal_mask:
        gpt.disable_causal_mask()
    num_classes = run.prepared.label_map.num_classes
    classifier = GPTClassifier(gpt, num_classes, pooling=recipe.pooling, head_seed=seed)
    if lazy_weights_of(gpt) is not None:  # saving and hashing see the classifier as lazy
        classifier.lazy_weights = gpt.lazy_weights
    lora = {"lora_rank": options.lora_rank, "lora_alpha": options.lora_alpha, "lora_seed": seed}
    apply_trainable(classifier, recipe.trainable, **lora)
    run.log(describe_trainable(classifier))
    run.classifier = classifier


def encode(run: Run) -> None:
    tokenizer = get_tokenizer(run.options.tokenizer_dir)
    context, reading = run.classifier.gpt.cfg.context_length, run.recipe.long_text
    encoded = encode_splits(run.prepared, tokenizer, run.recipe.padding, context, reading)
    cut = {name: encoded.split(name).truncated for name in SPLITS}
    counts = ", ".join(f"{name} {count}" for name, count in cut.items())
    if any(cut.values()) and reading.mode == "chunks":
        run.log(f"texts over --max-chunks {reading.max_chunks} windows, partly read: {counts}")
    elif any(cut.values()):
        limit = encoded.train.max_length
        how = "; --long-text chunks reads all of them" if reading.mode == "truncate" else ""
        run.log(f"texts longer than {limit} tokens, partly read ({reading.mode}): {counts}{how}")
    run.encoded = encoded


def make_loaders(run: Run) -> None:
    """The book's loaders for training, length-bucketed ones for the report and, where exact and
    small enough, the frozen blocks run once per example (prefix cache). Under torchrun the
    loaders hold this rank's share and the prefix runs in shards, one per rank, then shared."""
    encoded, settings, dist, classifier = run.encoded, run.recipe.train, run.dist, run.classifier
    device, precision, lazy = run.recipe.device, run.recipe.precision, lazy_weights_of(classifier)
    if lazy is None:  # a lazy model is only ever built for the CPU
        classifier.to(device)
    whole_train = encoded.loader("train", settings.batch_size, seed=settings.seed)
    loaders = run.loaders
    loaders["train"] = distributed.shard_loader(whole_train, dist, even=True)
    loaders["validation"] = encoded.loader("validation", settings.batch_size, seed=settings.seed)
    if dist.enabled:
        loaders["train_eval"] = whole_train  # the same generator: one shuffle, drawn as by one
    # 'last' pooling over per-batch padding reads position -1: evaluate texts of equal length
    # together, so it is each text's own last token, as `classify` does
    pad = encoded.pad_lengths["train"]
    unpadded = padding_reads(classifier.pooling, classifier.cfg.causal, pad).pooled
    in_order = dict(shuffle=False, drop_last=False, bucket_by_length=True, equal_lengths=unpadded)
    for name in SPLITS:
        report_loader = encoded.loader(name, EVAL_BATCH_SIZE, seed=settings.seed, **in_order)
        loaders[f"eval_{name}"] = distributed.shard_loader(report_loader, dist, even=False)
    run.trained_model, run.suffix_precision = classifier, precision
    never_padded = unpadded and settings.batch_size == 1
    plan = prefix_cache.plan_prefix_cache(classifier, pad, never_padded=never_padded)
    # the splits whose states are kept: in float32 the report is read off them (`evaluate`'s
    # numbers up to float32 rounding); in bf16 it cannot be, and they train only
    kept = SPLITS if precision == "fp32" else SPLITS[:2]
    splits = {name: (encoded.split(name), encoded.pad_lengths[name]) for name in kept}
    needed = sum(sum(kept_lengths(*data)) for data in splits.values()) * classifier.cfg.emb_dim * 4
    why = "" if run.options.prefix_cache else "off (--no-prefix-cache)"
    if not why and not plan.enabled:
        why = f"not used, {plan.reason}"
    elif not why and needed > prefix_cache.DEFAULT_CACHE_BUDGET_BYTES:  # float32 states
        why = f"not used, it would take {needed / 2**30:.1f} GiB"
    if why:
        run.log(f"frozen-prefix cache: {why}")
        if lazy is not None:  # the plain path: a lazy model gets all its weights
            materialize_model(classifier).to(device)
        return
    start = plan.start_block
    caches = _prefix_states(run, splits, start)
    for name in lazy.names[start + 2 :] if lazy else []:  # what trains, on states
        lazy.materialize(name)
    # the report reads the states only where they are float32; else token ids, as `evaluate`
    for key, loader in loaders.items():
        split = "train" if key == "train_eval" else key.removeprefix("eval_")
        if precision == "fp32" or not key.startswith("eval_"):
            loaders[key] = prefix_cache.CachedLoader(loader, caches[split])
    run.trained_model, run.cached = prefix_cache.SuffixClassifier(classifier, start), True
    # A suffix of one block read at the pooled position sees 8 rows a step: too few for bf16 to
    # pay, and float32 trains it exactly (the prefix keeps the precision asked for). A suffix
    # that runs every position (two blocks or more, mean pooling) pays in bf16 as the prefix.
    one_position = start >= classifier.n_layers - 1 and classifier.pooling != Pooling.MEAN
    if one_position and precision == "bf16" and device.type == "cpu":
        run.suffix_precision = "fp32"
    release_free_memory()


def _prefix_states(run: Run, splits: dict[str, Any], start: int) -> dict[str, HiddenStateCache]:
    """Each split's states entering block ``start`` from the disk cache, else computed from the
    deepest shallower prefix it holds (and kept there). Under torchrun rank 0 reads and writes
    the disk cache; each rank runs a share of the rest from the ids, then all are summed."""
    options, dist, log, precision = run.options, run.dist, run.log, run.recipe.precision
    store = CacheStore(options.cache_dir) if options.disk_cache else None
    digests = prefix_digests(run.classifier, start, precision) if store else []
    release_free_memory()  # a lazy model's weights were read for the digests, then freed
    caches: dict[str, HiddenStateCache] = {}

    def key(blocks: int, name: str) -> str:  # the disk cache's name for a split's states
        return dataset_key(digests[blocks], *splits[name])

    def read() -> list[str]:  # on rank 0: the other ranks learn the names
        found = {name: store.load(key(start, name), log) for name in splits} if store else {}
        caches.update({name: cache for name, cache in found.items() if cache is not None})
        return list(caches)

    if reused := dist.run_on_main(read):
        log(f"frozen-prefix cache: {', '.join(reused)} reused from {store.folder}")
    todo = [name for name in splits if name not in reused]
    # the deepest shallower prefix of each split on disk (rank 0's only: not under torchrun)
    shallower = range(start - 1, 0, -1) if store is not None and not dist.enabled else []
    found = {name: next((n for n in shallower if store.contains(key(n, name))), 0) for name in todo}
    if sources := {name: blocks for name, blocks in found.items() if blocks}:
        depths = "/".join(map(str, sorted(set(sources.values()))))
        reuse = f"start from the states after {depths} block(s), cached by an earlier run"
        log(f"frozen-prefix cache: {', '.join(sources)} {reuse}")
    if todo:
        positions = sum(sum(kept_lengths(*splits[name])) for name in todo)
        real_tokens = sum(sum(splits[name][0].lengths) for name in todo)
        padded = "" if positions == real_tokens else f" ({real_tokens:,} tokens and padding)"
        first = min(found.values())
        shards = f", in {dist.world_size} shards" if dist.enabled else ""
        log(
            f"frozen-prefix cache: running blocks {first}-{start - 1} once over {positions:,} "
            f"positions{padded} ({precision}{shards}); training runs block {start} onwards"
        )
        work = positions * (start - first) // dist.world_size
        bar = progress_bar(work, "frozen prefix", enabled=options.progress, unit="tok", leave=False)
        loaded = {name: store.load(key(found[name], name), log) for name in sources}
        with bar:
            caches |= build_caches(
                run.classifier,
                {name: splits[name][0] for name in todo},
                {name: splits[name][1] for name in todo},
                start,
                run.recipe.device,
                precision,
                progress=bar,
                starting_states={name: (found[name], got) for name, got in loaded.items() if got},
                share=(dist.rank, dist.world_size),
            )
    for name in splits if dist.enabled else []:
        # each rank holds its share of the rows (the reused ones: rank 0 all), the others zeros
        if name not in caches:
            lengths = kept_lengths(*splits[name])
            caches[name] = HiddenStateCache.zeros(lengths, run.classifier.cfg.emb_dim)
        states = caches[name].all()
        dist.sum_in_place(states)
        if name in todo or not dist.is_main:  # rank 0's reused entry is read in place
            caches[name].write(0, states)
    data = Path(options.data_file).name if options.data_file else "sms-spam"
    about = f"{Path(str(options.weights or options.model)).name}, blocks 0-{start - 1}, {data}"
    for name in todo if store is not None and dist.is_main else []:
        try:
            texts = len(splits[name][0])
            store.save(key(start, name), caches[name], f"{about} {name} ({texts:,} texts)")
        except GPTClassifierError as exc:  # a full or read-only disk costs the reuse only
            log(f"warning: frozen-prefix cache: not kept on disk ({exc})")
    return caches


def fit(run: Run, staged: StagedRun | None) -> TrainResult:
    """Train, checkpointing into the staging folder (resumed from it if asked); under torchrun
    rank 0 reads and writes the checkpoints and shares what it read."""
    settings, dist, model, options = run.recipe.train, run.dist, run.classifier, run.options
    device, decay = run.recipe.device, settings.weight_decay
    # AdamW fused where torch has it: the same update in one pass (~4x faster on 2 CPU cores)
    params = [p for p in model.parameters() if p.requires_grad]
    fused = device.type in ("cpu", "cuda") and all(p.dtype == torch.float32 for p in params)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=decay, fused=fused or None)
    torch.manual_seed(settings.seed)
    # what a checkpoint depends on besides its options: the training data, the base weights
    train = run.encoded.split("train")
    base = frozen_parameter_sample(model)  # drawn, not read, for a lazy model
    fingerprint = checkpoint.data_fingerprint(train.input_ids, train.labels, base, options.model)
    folder = staged.checkpoint_dir if staged is not None else None
    resume = folder is not None and options.resume and checkpoint.has_checkpoint(folder)
    load = functools.partial(checkpoint.load_checkpoint, folder, model, optimizer, fingerprint)
    state = dist.run_on_main(load if resume else lambda: None)
    if state is not None:
        if dist.enabled:  # rank 0 holds the checkpoint's weights and moments
            dist.broadcast_parameters([p for p in model.parameters() if p.requires_grad])
            optimizer.load_state_dict(dist.broadcast_object(optimizer.state_dict()))
        run.log(f"resuming from the checkpoint after step {state.global_step + 1}")

    def save(loop_state: LoopState) -> None:
        if folder is not None:
            checkpoint.save_checkpoint(folder, model, optimizer, loop_state, fingerprint)

    batches = len(run.loaders["train"])
    accum = min(settings.grad_accum_steps, batches)  # an epoch's batches at most
    effective = run.effective_batch = settings.batch_size * dist.world_size * accum
    scaled = f" x {dist.world_size} processes x {accum} accumulated = effective batch {effective}"
    per_step = f"batch {settings.batch_size}{scaled if dist.enabled or accum > 1 else ''}"
    steps = f" = {-(-batches // accum)} optimizer step(s)" if accum > 1 else ""
    where = f"{run.suffix_precision} on {device}"
    run.log(f"training: {settings.epochs} epochs of {batches} steps{steps} ({per_step}), {where}")
    result = train_classifier(
        distributed.wrap_trainable(run.trained_model, dist, device),
        run.loaders["train"],
        run.loaders["validation"],
        optimizer,
        device,
        settings,
        autocast=lambda: autocast(device, run.suffix_precision),
        progress=options.progress,
        log=run.log,
        state=state or LoopState(),
        on_checkpoint=save,
        checkpoint_every=options.checkpoint_every,
        dist=dist,
        train_eval_loader=run.loaders.get("train_eval"),
        class_weights=None if run.weights is None else torch.tensor(run.weights),
    )
    # the optimizer's moments go with this frame; the gradients are not needed for the report
    model.zero_grad(set_to_none=True)
    return result


def evaluate_splits(run: Run) -> Report:
    """The report (``metrics.json``) in float32, as ``evaluate`` runs the saved model: off the
    float32 states of the frozen layers where they are kept, else the whole model on token ids
    (a bf16 prefix: the frozen weights come back for it)."""
    model, device, loaders = run.trained_model, run.recipe.device, run.loaders
    if run.cached and run.recipe.precision != "fp32":
        for key in [key for key in loaders if not key.startswith("eval_")]:
            del loaders[key]  # the hidden-state cache before the frozen weights come back
        model = materialize_model(run.classifier).to(device)
    classes = run.prepared.label_map.classes
    report = {  # under torchrun: this rank's share, every rank's gathered
        name: evaluate_split(model, loaders[f"eval_{name}"], device, "fp32", classes, ctx=run.dist)
        for name in SPLITS
        if len(run.encoded.split(name))
    }
    loaders.clear()  # the hidden-state cache: the rest needs only the report
    run.trained_model = run.classifier
    return report


def write_run(run: Run, staged: StagedRun, report: Report, result: TrainResult) -> None:
    """The run's files into the staging folder, with its record (``run.json``)."""
    options, recipe, encoded, prepared = run.options, run.recipe, run.encoded, run.prepared
    pad_length = encoded.pad_lengths["train"]
    lora = {"rank": options.lora_rank, "alpha": options.lora_alpha}
    base = (options.model, options.weights, options.init, recipe.train.seed)
    info = RunInfo(
        gpt_config=run.classifier.gpt.cfg,
        classes=tuple(prepared.label_map.classes),
        pooling=recipe.pooling,
        padding=str(encoded.padding),
        max_length=encoded.train.max_length if pad_length is None else pad_length,
        pad_length=pad_length,
        base_model=str(options.weights or options.model),
        init=options.init,
        save=options.save,
        base_weights=base_weights_record(*base) if options.save == "trainable" else None,
        long_text=recipe.long_text,
        extra={
            "trainable": str(recipe.trainable),
            "lora": lora if recipe.trainable.kind == "lora" else None,
            "training": dataclasses.asdict(recipe.train),
            "processes": run.dist.world_size,
            "effective_batch_size": run.effective_batch,
            "preset": options.preset,
            "precision": recipe.precision,
            "frozen_prefix_cache": run.cached,
            **{key: getattr(result, key) for key in ("interrupted", "best_epoch", "global_steps")},
            "data": prepared.summary.to_dict(),
            "balance": recipe.balance,
            "class_weights": run.weights,  # in the classes' order; None: the plain loss
        },
    )
    folder, classes = staged.folder, list(info.classes)
    write_model_files(run.classifier, info, folder, options.tokenizer_dir)
    run.classifier.run_info = info
    write_report_json(report, folder / "metrics.json")
    write_text(folder / "report.txt", format_report(report, classes))
    write_json(folder / "history.json", result.history.to_dict())
    write_model_card(folder, info, report)
    write_splits(prepared, folder / "data")
    if options.plots:
        from ..evaluation.plots import plot_confusion_matrix, plot_training_history

        plot_training_history(result.history, folder, info.extra["training"]["eval_iter"])
        if "test" in report:
            matrix, path = report["test"]["confusion_matrix"], folder / "confusion_matrix.png"
            plot_confusion_matrix(matrix, classes, path, title="Confusion matrix (test)")
