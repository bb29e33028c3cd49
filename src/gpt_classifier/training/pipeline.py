"""One fine-tuning run in named stages: resolve the recipe -> open the run directory -> prepare
data -> build the classifier -> make the loaders (frozen-prefix cache included) -> fit ->
evaluate -> write the run (one transaction, ``runs/transaction.py``). Printing goes through
``log``."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import distributed
from ..classifier import GPTClassifier, Pooling, apply_trainable, describe_trainable
from ..classifier.pooling import padding_reads
from ..data import encode_splits, prepare_dataset, write_splits
from ..data.encoding import EncodedSplits
from ..data.prepare import PreparedData
from ..data.splits import class_weights
from ..distributed import DistContext
from ..errors import GPTClassifierError
from ..evaluation import format_report, write_report_json
from ..evaluation.predictions import EVAL_BATCH_SIZE, evaluate_split
from ..fileio import cannot_write, check_output_dir, write_json, write_text, writer_lock
from ..precision import autocast, resolve_device, resolve_precision
from ..progress import progress_bar
from ..runs import checkpoint
from ..runs.model_card import write_model_card
from ..runs.run_dir import RunInfo, write_model_files
from ..runs.trainable_run import base_weights_record
from ..runs.transaction import StagedRun, finish_interrupted_commit
from ..tokenizer import get_tokenizer
from ..weights import build_lazy_model, frozen_parameter_sample, lazy_weights_of, materialize_model
from .cache_store import CacheStore, dataset_key, prefix_digests
from .interrupts import deferred_interrupts
from .loop import LoopState, TrainingDiverged, TrainResult, train_classifier
from .memory import peak_rss_mb, release_free_memory
from .prefix_cache import (
    DEFAULT_CACHE_BUDGET_BYTES,
    CachedLoader,
    SuffixClassifier,
    build_caches,
    cached_positions,
    empty_cache,
    plan_prefix_cache,
)
from .recipe import FinetuneOptions, ResolvedRecipe
from .settings import TrainSettings

__all__ = ["FinetuneOptions", "FinetuneResult", "make_optimizer", "run_finetune"]

SPLITS = ("train", "validation", "test")
TRAINED = ("train", "validation")  # the splits training reads


def cached_splits(precision: str) -> tuple[str, ...]:
    """The splits whose frozen-prefix states are kept: in float32 the report is read off them
    (``evaluate``'s numbers up to float32 rounding); in bf16 it cannot be, and they train only."""
    return SPLITS if precision == "fp32" else TRAINED


Log = Callable[[str], None]


@dataclass
class FinetuneResult:
    run_dir: Path
    report: dict[str, dict[str, Any]]
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
class TrainingSetup:
    classifier: GPTClassifier
    trained_model: torch.nn.Module  # the classifier, or its trainable suffix over cached states
    loaders: dict[str, Any]
    device: torch.device
    precision: str
    cached: bool
    dist: DistContext = field(default_factory=DistContext)
    suffix_precision: str = "fp32"  # what the trained part runs in (autocast), see make_loaders
    train_batches: int = 1  # per epoch and process, kept for run.json once the loaders are gone


class StageClock:
    """Wall time and peak memory after each stage (``timings.json``)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.peak_after: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        begun = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - begun, 3)
        self.peak_after[name] = round(peak_rss_mb(), 1)

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # sys.stderr as it is now (CliRunner swaps it)


def run_finetune(options: FinetuneOptions, log: Log = _stderr) -> FinetuneResult:
    """One run; under ``torchrun`` every rank calls it, and only rank 0 logs and writes."""
    recipe = options.resolved()
    dist = distributed.init_distributed(recipe.device, options.dist_timeout)
    if not dist.is_main:
        log, options = (lambda message: None), dataclasses.replace(options, progress=False)
    finished = False
    try:
        with _on_main(dist, lambda: _lock(options)) or nullcontext():
            result = _run_finetune(options, recipe, dist, log)
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


def _run_finetune(
    options: FinetuneOptions, recipe: ResolvedRecipe, dist: DistContext, log: Log
) -> FinetuneResult:
    finished = options.resume and dist.run_on_main(
        lambda: finish_interrupted_commit(options.output_path)
    )
    if finished:
        log(f"{options.output_path}: the run was complete; finished its interrupted commit")
        return _finished_run(options.output_path)
    staged: StagedRun | None = _on_main(dist, lambda: open_run_directory(options))
    # the stages below see the device and precision resolved once, not "auto" again
    options = dataclasses.replace(options, device=str(recipe.device), precision=recipe.precision)
    clock = StageClock()
    try:
        with clock.stage("data"):
            prepared = prepare_data(options, recipe, log)
            weights = loss_weights(recipe, prepared, log)
        with clock.stage("model"):
            classifier = build_classifier(options, recipe, prepared, log)
        with clock.stage("tokenize"):
            encoded = encode(prepared, recipe, classifier, options.tokenizer_dir, log)
        with clock.stage("prefix_cache"):
            setup = make_loaders(classifier, encoded, recipe.train, options, log, dist)
        with clock.stage("train"), _saving(staged, options.output_path):
            result = fit(setup, recipe.train, options, staged, encoded, log, weights)
        with deferred_interrupts() as interrupt:  # a Ctrl-C now would lose the trained model
            with clock.stage("evaluate"):
                report = evaluate_splits(setup, encoded, prepared.label_map.classes)
            release_free_memory()
            run_dir = options.output_path
            if staged is not None:  # rank 0 writes the run
                with _saving(staged, run_dir):
                    with clock.stage("save"):
                        info = run_info(options, recipe, setup, encoded, prepared, result, weights)
                        write_run(staged, setup.classifier, info, report, result, prepared, options)
                    write_json(staged.folder / "timings.json", _timings(clock, setup.device, dist))
                    run_dir = staged.commit()
        if interrupt.requested:
            result.interrupted = True
    except TrainingDiverged as exc:
        message = f"{exc}; nothing was saved"
        if staged is not None and checkpoint.has_checkpoint(staged.checkpoint_dir):
            message += f"; the last good checkpoint is kept in {staged.checkpoint_dir}"
        raise GPTClassifierError(message) from None
    except BaseException:
        if staged is not None:  # leave no trace but the last checkpoint (for --resume)
            staged.discard(keep_checkpoint=checkpoint.has_checkpoint(staged.checkpoint_dir))
        raise
    clock.seconds["total"] = clock.total()
    return FinetuneResult(
        run_dir=run_dir,
        report=report,
        train=result,
        timings=clock.seconds,
        peak_rss_mb=peak_rss_mb(),
        cached_prefix=setup.cached,
        precision=setup.precision,
        main_process=dist.is_main,
    )


@contextmanager
def _saving(staged: StagedRun | None, target: Path) -> Iterator[None]:
    """An OSError writing the run or its checkpoint (full disk, permissions) as one line that
    says what to do."""
    try:
        yield
    except OSError as exc:
        flag = "--output-dir"
        if staged is not None and checkpoint.has_checkpoint(staged.checkpoint_dir):
            flag += f" (the last checkpoint is kept: gpt-classifier train --resume {target})"
        raise cannot_write(target, exc, flag) from None


def _finished_run(run_dir: Path) -> FinetuneResult:
    from ..evaluation.history import TrainingHistory
    from ..evaluation.report import read_report_json

    history = TrainingHistory.from_dict(json.loads((run_dir / "history.json").read_text()))
    return FinetuneResult(
        run_dir=run_dir,
        report=read_report_json(run_dir / "metrics.json"),
        train=TrainResult(history=history),
        timings={"total": 0.0, "train": 0.0},
    )


def open_run_directory(options: FinetuneOptions) -> StagedRun:
    """Check the output directory before any work; set up its staging folder."""
    target = options.output_path
    staged = StagedRun(target)
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


def prepare_data(options: FinetuneOptions, recipe: ResolvedRecipe, log: Log) -> PreparedData:
    prepared = prepare_dataset(
        **options.source(),
        balance=recipe.balance,
        keep_duplicates=recipe.keep_duplicates,
        seed=recipe.train.seed,
        fractions=recipe.fractions,
        progress=options.progress,
    )
    summary = prepared.summary
    for line in summary.removals():
        log(line)
    sizes = ", ".join(f"{name} {len(prepared.split(name))}" for name in SPLITS)
    log(f"data: {summary.source}: {sizes}; classes: {', '.join(prepared.label_map.classes)}")
    for name in [name for name in SPLITS[1:] if not prepared.split(name)]:
        without = "no test metrics" if name == "test" else "its losses show as nan, no best epoch"
        log(
            f"note: the {name} split is empty at these --fractions and class sizes: training "
            f"goes on without it ({without})"
        )
    n_train, batch = len(prepared.train), recipe.train.batch_size
    if n_train < batch:  # the training loader drops its last incomplete batch, as the book's
        raise GPTClassifierError(
            f"no training step possible: the training split has {n_train} example(s), fewer "
            f"than the batch size {batch}; lower --batch-size or give more data"
        )
    return prepared


def loss_weights(recipe: ResolvedRecipe, prepared: PreparedData, log: Log) -> list[float] | None:
    """``--balance weighted``: each class's weight in the training loss, from the training
    split (the same on a resume: the checkpoint's fingerprint holds the split)."""
    if recipe.balance != "weighted":
        return None
    classes = prepared.label_map.classes
    weights = class_weights(prepared.summary.splits["train"], classes)
    shown = ", ".join(f"{label} {w:.3g}" for label, w in zip(classes, weights, strict=True))
    log(f"class weights in the training loss: {shown} (--balance weighted)")
    return weights


def _lean_applies(options: FinetuneOptions, recipe: ResolvedRecipe, cfg: Any) -> bool:
    """Whether only the trained suffix need be resident (prefix run block by block, run saved
    module by module); under torchrun each rank runs a share of the batched prefix instead."""
    return (
        options.prefix_cache
        and recipe.trainable.kind.value in ("head", "last-blocks")
        and recipe.device.type == "cpu"
        and not distributed.context_from_env().enabled
        and cfg.drop_rate == 0
    )


def build_classifier(
    options: FinetuneOptions, recipe: ResolvedRecipe, prepared: PreparedData, log: Log
) -> GPTClassifier:
    seed = recipe.train.seed
    # a skeleton on meta: every weight source read module by module where it is needed
    gpt = build_lazy_model(options.model, options.weights, options.init, seed=seed)
    if not _lean_applies(options, recipe, gpt.cfg):
        materialize_model(gpt)
    if not options.causal_mask:
        gpt.disable_causal_mask()
    classifier = GPTClassifier(
        gpt, prepared.label_map.num_classes, pooling=recipe.pooling, head_seed=seed
    )
    if lazy_weights_of(gpt) is not None:  # saving and hashing see the classifier as lazy
        classifier.lazy_weights = gpt.lazy_weights
    apply_trainable(
        classifier,
        recipe.trainable,
        lora_rank=options.lora_rank,
        lora_alpha=options.lora_alpha,
        lora_seed=seed,
    )
    log(describe_trainable(classifier))
    return classifier


def encode(
    prepared: PreparedData,
    recipe: ResolvedRecipe,
    classifier: GPTClassifier,
    tokenizer_dir: str | None,
    log: Log,
) -> EncodedSplits:
    tokenizer = get_tokenizer(tokenizer_dir)
    context, reading = classifier.gpt.cfg.context_length, recipe.long_text
    encoded = encode_splits(prepared, tokenizer, recipe.padding, context, reading)
    cut = {name: encoded.split(name).truncated for name in SPLITS}
    if not any(cut.values()):
        return encoded
    counts = ", ".join(f"{name} {count}" for name, count in cut.items())
    if reading.mode == "chunks":
        log(f"texts over --max-chunks {reading.max_chunks} windows, partly read: {counts}")
    else:
        limit = encoded.max_lengths["train"]
        how = "; --long-text chunks reads all of them" if reading.mode == "truncate" else ""
        log(f"texts longer than {limit} tokens, partly read ({reading.mode}): {counts}{how}")
    return encoded


def make_loaders(
    classifier: GPTClassifier,
    encoded: EncodedSplits,
    settings: TrainSettings,
    options: FinetuneOptions,
    log: Log,
    dist: DistContext | None = None,
) -> TrainingSetup:
    """The book's loaders for training, length-bucketed ones for the report and, where exact and
    small enough, the frozen blocks run once per example (prefix cache). Under torchrun the
    loaders hold this rank's share and the prefix runs in shards, one per rank, then shared."""
    dist = dist or DistContext()
    device = distributed.rank_device(dist, resolve_device(options.device))
    precision = resolve_precision(options.precision, device)
    if lazy_weights_of(classifier) is None:  # a lazy model is only ever built for the CPU
        classifier.to(device)
    whole_train = encoded.loader("train", settings.batch_size, seed=settings.seed)
    loaders: dict[str, Any] = {
        "train": distributed.shard_loader(whole_train, dist, even=True),
        "validation": encoded.loader("validation", settings.batch_size, seed=settings.seed),
    }
    if dist.enabled:
        loaders["train_eval"] = whole_train  # the same generator: one shuffle, drawn as by one
    # 'last' pooling over per-batch padding reads position -1: evaluate texts of equal length
    # together, so it is each text's own last token, as `classify` does
    pad = encoded.pad_lengths["train"]
    unpadded_eval = padding_reads(classifier.pooling, classifier.cfg.causal, pad).pooled
    for name in SPLITS:
        report_loader = encoded.loader(
            name,
            EVAL_BATCH_SIZE,
            shuffle=False,
            drop_last=False,
            seed=settings.seed,
            bucket_by_length=True,
            equal_lengths=unpadded_eval,
        )
        loaders[f"eval_{name}"] = distributed.shard_loader(report_loader, dist, even=False)
    setup = TrainingSetup(
        classifier, classifier, loaders, device, precision, False, dist, suffix_precision=precision
    )
    never_padded = unpadded_eval and settings.batch_size == 1
    plan = plan_prefix_cache(classifier, encoded.pad_lengths["train"], never_padded=never_padded)
    if not options.prefix_cache:
        log("frozen-prefix cache: off (--no-prefix-cache)")
        return _whole(setup)
    if not plan.enabled:
        log(f"frozen-prefix cache: not used, {plan.reason}")
        return _whole(setup)
    kept = cached_splits(precision)
    positions = sum(cached_positions(encoded.split(n), encoded.pad_lengths[n]) for n in kept)
    needed = positions * classifier.gpt.cfg.emb_dim * 4  # float32 states
    if needed > DEFAULT_CACHE_BUDGET_BYTES:
        log(f"frozen-prefix cache: not used, it would take {needed / 2**30:.1f} GiB")
        return _whole(setup)
    caches = _build_caches(setup, encoded, plan.start_block, options, log)
    lazy = lazy_weights_of(classifier)
    for name in lazy.names[plan.start_block + 2 :] if lazy else []:  # what trains, on states
        lazy.materialize(name)
    # the report reads the states only where they are float32; else token ids, as `evaluate`
    on_states = [key for key in loaders if precision == "fp32" or not key.startswith("eval_")]
    setup.loaders = {
        key: CachedLoader(ld, caches[_split_of(key)]) if key in on_states else ld
        for key, ld in loaders.items()
    }
    setup.trained_model = SuffixClassifier(classifier, plan.start_block)
    setup.cached = True
    # A suffix of one block read at the pooled position sees 8 rows a step: its matmuls are too
    # small for bf16 to pay, and float32 trains it exactly (the prefix, where the work is, keeps
    # the precision asked for). A suffix that runs every position (two blocks or more, mean
    # pooling) has matmuls of every token of the batch, where bf16 pays as in the prefix.
    one_position = (
        plan.start_block >= classifier.n_layers - 1 and classifier.pooling != Pooling.MEAN
    )
    small = one_position and precision == "bf16" and device.type == "cpu"
    setup.suffix_precision = "fp32" if small else precision
    release_free_memory()
    return setup


def _whole(setup: TrainingSetup) -> TrainingSetup:
    """The plain path: a lazy model gets all its weights (then moves to its device)."""
    if lazy_weights_of(setup.classifier) is not None:
        materialize_model(setup.classifier)
        setup.classifier.to(setup.device)
    return setup


def _build_caches(
    setup: TrainingSetup,
    encoded: EncodedSplits,
    start_block: int,
    options: FinetuneOptions,
    log: Log,
) -> dict[str, Any]:
    """Each split's states from the disk cache, else computed from the deepest shallower prefix
    it holds (and kept there). Under torchrun rank 0 reads and writes the disk cache and shares
    what it read; each rank runs a share of the rest's batches from the ids, then summed."""
    dist = setup.dist
    store = CacheStore(options.cache_dir) if options.disk_cache else None
    digests: list[str] = []
    caches: dict[str, Any] = {}
    if store is not None:
        digests = prefix_digests(setup.classifier, start_block, setup.precision)
        release_free_memory()  # a lazy model's weights were read for the digests, then freed
        caches = _reuse_cached(setup, store, digests[start_block], encoded, log)
    todo = [name for name in cached_splits(setup.precision) if name not in caches]
    if not todo:
        return caches
    # a shallower prefix's states are on rank 0's disk only: under torchrun all start from ids
    sources = (
        _shallower_states(store, digests, encoded, todo, log) if store and not dist.enabled else {}
    )
    positions = sum(cached_positions(encoded.split(n), encoded.pad_lengths[n]) for n in todo)
    real_tokens = sum(sum(encoded.split(name).lengths) for name in todo)
    padded = "" if positions == real_tokens else f" ({real_tokens:,} tokens and padding)"
    first = min(sources.get(name, (0, ""))[0] for name in todo)

    def start_from(name: str) -> tuple[int, Any] | None:  # (blocks, states), or None: the ids
        states = store.load(sources[name][1], log) if store and name in sources else None
        return None if states is None else (sources[name][0], states)

    def keep(name: str) -> None:
        if store is not None and dist.is_main:
            key = _split_key(digests[start_block], encoded, name)
            data = Path(options.data_file).name if options.data_file else "sms-spam"
            texts = len(encoded.split(name).lengths)
            model = Path(str(options.weights or options.model)).name
            about = f"{model}, blocks 0-{start_block - 1}, {data} {name}"
            _keep(store, key, caches[name], log, f"{about} ({texts:,} texts)")

    shards = f", in {dist.world_size} shards" if dist.enabled else ""
    log(
        f"frozen-prefix cache: running blocks {first}-{start_block - 1} once over "
        f"{positions:,} positions{padded} ({setup.precision}{shards}); training runs block "
        f"{start_block} onwards"
    )
    work = positions * (start_block - first) // dist.world_size
    with progress_bar(
        work, "frozen prefix", enabled=options.progress, unit="tok", leave=False
    ) as bar:
        _compute_states(setup, encoded, todo, start_block, bar, start_from, keep, caches)
    return caches


def _reuse_cached(
    setup: TrainingSetup, store: CacheStore, model_key: str, encoded: EncodedSplits, log: Log
) -> dict[str, Any]:
    """The splits whose states the disk cache holds, read on rank 0 and shared."""
    dist, caches = setup.dist, {}

    def load_found() -> list[str]:
        for name in cached_splits(setup.precision):
            found = store.load(_split_key(model_key, encoded, name), log)
            if found is not None:
                caches[name] = found
        return list(caches)

    for name in dist.run_on_main(load_found):
        if name not in caches:  # the other ranks: the layout, filled from rank 0
            emb_dim = setup.classifier.gpt.cfg.emb_dim
            caches[name] = empty_cache(encoded.split(name), encoded.pad_lengths[name], emb_dim)
        states = caches[name].all()  # under torchrun the states travel whole, in memory
        dist.broadcast_in_place(states)
        if not dist.is_main:
            caches[name].write(0, states)
    if caches:
        log(f"frozen-prefix cache: {', '.join(caches)} reused from {store.folder}")
    return caches


def _compute_states(
    setup: TrainingSetup,
    encoded: EncodedSplits,
    todo: list[str],
    start_block: int,
    bar: Any,
    start_from: Callable[[str], tuple[int, Any] | None],
    keep: Callable[[str], None],
    caches: dict[str, Any],
) -> None:
    """The states of the ``todo`` splits into ``caches``, each kept on disk once computed; under
    torchrun each rank runs a share of the slabs, then the shares are summed."""
    dist = setup.dist
    caches |= build_caches(
        setup.classifier,
        {name: encoded.split(name) for name in todo},
        {name: encoded.pad_lengths[name] for name in todo},
        start_block,
        setup.device,
        setup.precision,
        progress=bar,
        starting_states=start_from,
        share=(dist.rank, dist.world_size) if dist.enabled else None,
    )
    for name in todo:
        if dist.enabled:  # each rank computed a share of the rows, the others are zeros
            states = caches[name].all()
            dist.sum_in_place(states)
            caches[name].write(0, states)
        keep(name)


def _split_key(model_key: str, encoded: EncodedSplits, name: str) -> str:
    return dataset_key(model_key, encoded.split(name), encoded.pad_lengths[name])


def _shallower_states(
    store: CacheStore, digests: list[str], encoded: EncodedSplits, splits: list[str], log: Log
) -> dict[str, tuple[int, str]]:
    """For each split, the deepest prefix shorter than the one needed that the disk cache holds
    (``{split: (its number of blocks, its key)}``): only the blocks after it need to run."""
    found: dict[str, tuple[int, str]] = {}
    for name in splits:
        for blocks in range(len(digests) - 2, 0, -1):
            key = _split_key(digests[blocks], encoded, name)
            if store.contains(key):
                found[name] = (blocks, key)
                break
    if found:
        depths = sorted({blocks for blocks, _ in found.values()})
        log(
            f"frozen-prefix cache: {', '.join(found)} start from the states after "
            f"{'/'.join(map(str, depths))} block(s), cached by an earlier run"
        )
    return found


def _keep(store: CacheStore, key: str, cache: Any, log: Log, about: str) -> None:
    try:
        store.save(key, cache, about)
    except GPTClassifierError as exc:  # a full or read-only disk costs the reuse, not the run
        log(f"warning: frozen-prefix cache: not kept on disk ({exc})")


def _split_of(loader_key: str) -> str:
    return "train" if loader_key == "train_eval" else loader_key.removeprefix("eval_")


def fit(
    setup: TrainingSetup,
    settings: TrainSettings,
    options: FinetuneOptions,
    staged: StagedRun | None,
    encoded: EncodedSplits,
    log: Log,
    weights: list[float] | None = None,
) -> TrainResult:
    """Train, checkpointing into the staging folder (resumed from it if asked); under torchrun
    rank 0 reads and writes the checkpoints and shares what it read."""
    dist = setup.dist
    optimizer = make_optimizer(setup.classifier, settings, setup.device)
    torch.manual_seed(settings.seed)
    fingerprint = _fingerprint(options, encoded, setup.classifier)
    folder = staged.checkpoint_dir if staged is not None else None

    def load() -> LoopState | None:
        if folder is None or not (options.resume and checkpoint.has_checkpoint(folder)):
            return None
        return checkpoint.load_checkpoint(folder, setup.classifier, optimizer, fingerprint)

    resumed = dist.run_on_main(load)
    state = LoopState()
    if resumed is not None:
        state = resumed
        if dist.enabled:  # rank 0 holds the checkpoint's weights and moments
            trainable = [p for p in setup.classifier.parameters() if p.requires_grad]
            dist.broadcast_parameters(trainable)
            optimizer.load_state_dict(dist.broadcast_object(optimizer.state_dict()))
        log(f"resuming from the checkpoint after step {state.global_step + 1}")

    def save(loop_state: LoopState) -> None:
        if folder is not None:
            checkpoint.save_checkpoint(folder, setup.classifier, optimizer, loop_state, fingerprint)

    batches = setup.train_batches = len(setup.loaders["train"])
    accum = min(settings.grad_accum_steps, batches)
    per_step = f"batch {settings.batch_size}"
    if dist.enabled or accum > 1:
        per_step += (
            f" x {dist.world_size} processes x {accum} accumulated = "
            f"effective batch {effective_batch_size(settings, dist, batches)}"
        )
    steps = f" = {-(-batches // accum)} optimizer step(s)" if accum > 1 else ""
    log(
        f"training: {settings.epochs} epochs of {batches} steps{steps} "
        f"({per_step}), {setup.suffix_precision} on {setup.device}"
    )
    result = train_classifier(
        distributed.wrap_trainable(setup.trained_model, dist, setup.device),
        setup.loaders["train"],
        setup.loaders["validation"],
        optimizer,
        setup.device,
        settings,
        autocast=lambda: autocast(setup.device, setup.suffix_precision),
        progress=options.progress,
        log=log,
        state=state,
        on_checkpoint=save,
        checkpoint_every=options.checkpoint_every,
        dist=dist,
        train_eval_loader=setup.loaders.get("train_eval"),
        class_weights=None if weights is None else torch.tensor(weights),
    )
    # the optimizer's moments go with this frame; the gradients are not needed for the report
    for param in setup.classifier.parameters():
        param.grad = None
    return result


def effective_batch_size(settings: TrainSettings, dist: DistContext, batches: int) -> int:
    """Examples per optimizer step: batch x processes x accumulated batches (<= an epoch's)."""
    return settings.batch_size * dist.world_size * min(settings.grad_accum_steps, batches)


def _fingerprint(options: FinetuneOptions, encoded: EncodedSplits, model: GPTClassifier) -> str:
    """What a checkpoint depends on besides its options: the training data, the base weights."""
    base = frozen_parameter_sample(model)  # drawn, not read, for a lazy model
    train = encoded.split("train")
    return checkpoint.data_fingerprint(train.input_ids, train.labels, base, options.model)


def make_optimizer(
    model: torch.nn.Module, settings: TrainSettings, device: torch.device
) -> torch.optim.Optimizer:
    """The book's AdamW over the trainable parameters; fused where torch has it (the same update
    in one pass, ~4x faster on 2 CPU cores for 7M parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = device.type in ("cpu", "cuda") and all(p.dtype == torch.float32 for p in params)
    return torch.optim.AdamW(
        params, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused or None
    )


def evaluate_splits(
    setup: TrainingSetup, encoded: EncodedSplits, classes: tuple[str, ...] | list[str]
) -> dict[str, dict[str, Any]]:
    """The report (``metrics.json``) in float32, as ``evaluate`` runs the saved model: off the
    float32 states of the frozen layers where they are kept, else the whole model on token ids
    (a bf16 prefix: the frozen weights come back for it)."""
    model = setup.trained_model
    if setup.cached and setup.precision != "fp32":
        for key in [key for key in setup.loaders if not key.startswith("eval_")]:
            del setup.loaders[key]  # the hidden-state cache before the frozen weights come back
        model = materialize_model(setup.classifier).to(setup.device)
    report = {
        name: evaluate_split(
            model,
            setup.loaders[f"eval_{name}"],
            setup.device,
            "fp32",
            classes,
            ctx=setup.dist,  # under torchrun: this rank's share, every rank's gathered
        )
        for name in SPLITS
        if len(encoded.split(name))
    }
    setup.loaders.clear()  # the hidden-state cache: the rest needs only the report
    setup.trained_model = setup.classifier
    return report


def run_info(
    options: FinetuneOptions,
    recipe: ResolvedRecipe,
    setup: TrainingSetup,
    encoded: EncodedSplits,
    prepared: PreparedData,
    result: TrainResult,
    weights: list[float] | None = None,
) -> RunInfo:
    pad_length = encoded.pad_lengths["train"]
    lora = recipe.trainable.kind == "lora"
    return RunInfo(
        gpt_config=setup.classifier.gpt.cfg,
        classes=tuple(prepared.label_map.classes),
        pooling=recipe.pooling,
        padding=str(encoded.padding),
        max_length=encoded.max_lengths["train"] if pad_length is None else pad_length,
        pad_length=pad_length,
        base_model=str(options.weights or options.model),
        init=options.init,
        save=options.save,
        base_weights=base_weights_record(
            options.model, options.weights, options.init, recipe.train.seed
        )
        if options.save == "trainable"
        else None,
        long_text=recipe.long_text,
        extra={
            "trainable": str(recipe.trainable),
            "lora": {"rank": options.lora_rank, "alpha": options.lora_alpha} if lora else None,
            "training": recipe.train.to_dict(),
            # per optimizer step: --batch-size x processes (torchrun) x --grad-accum
            "processes": setup.dist.world_size,
            "effective_batch_size": effective_batch_size(
                recipe.train, setup.dist, setup.train_batches
            ),
            "preset": options.preset,
            "precision": setup.precision,
            "frozen_prefix_cache": setup.cached,
            "interrupted": result.interrupted,
            "best_epoch": result.best_epoch,
            "global_steps": result.global_steps,
            "data": prepared.summary.to_dict(),
            "balance": recipe.balance,
            "class_weights": weights,  # in the classes' order; None: the plain loss
        },
    )


def write_run(
    staged: StagedRun,
    classifier: GPTClassifier,
    info: RunInfo,
    report: dict[str, dict[str, Any]],
    result: TrainResult,
    prepared: PreparedData,
    options: FinetuneOptions,
) -> None:
    folder = staged.folder
    write_model_files(classifier, info, folder, options.tokenizer_dir)
    classifier.run_info = info
    classes = list(info.classes)
    write_report_json(report, folder / "metrics.json")
    write_text(folder / "report.txt", format_report(report, classes))
    write_json(folder / "history.json", result.history.to_dict())
    write_model_card(folder, info, report)
    write_splits(prepared, folder / "data")
    if options.plots:
        from ..evaluation.plots import plot_confusion_matrix, plot_training_history

        plot_training_history(result.history, folder, info.extra["training"]["eval_iter"])
        if "test" in report:
            plot_confusion_matrix(
                report["test"]["confusion_matrix"],
                classes,
                folder / "confusion_matrix.png",
                title="Confusion matrix (test)",
            )


def _timings(clock: StageClock, device: torch.device, dist: DistContext) -> dict[str, Any]:
    seconds = {**clock.seconds, "total": clock.total()}
    return {
        "seconds": seconds,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_mb_after": clock.peak_after,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "processes": dist.world_size,  # rank 0's clock; the others run the same stages
    }
