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
from ..data.prepare import PreparedData, class_weights
from ..distributed import DistContext
from ..errors import GPTClassifierError
from ..evaluation import TrainingHistory, format_report, read_report_json, write_report_json
from ..evaluation.predictions import EVAL_BATCH_SIZE, evaluate_split
from ..fileio import cannot_write, check_output_dir, write_json, write_text, writer_lock
from ..precision import autocast, resolve_device, resolve_precision
from ..progress import progress_bar
from ..runs import checkpoint
from ..runs.run_dir import RunInfo, base_weights_record, write_model_card, write_model_files
from ..runs.transaction import StagedRun, finish_interrupted_commit
from ..tokenizer import get_tokenizer
from ..weights import build_model, frozen_parameter_sample, lazy_weights_of, materialize_model
from .cache_store import CacheStore, dataset_key, prefix_digests
from .interrupts import deferred_interrupts
from .loop import LoopState, TrainingDiverged, TrainResult, train_classifier
from .memory import peak_rss_mb, release_free_memory
from .prefix_cache import (
    DEFAULT_CACHE_BUDGET_BYTES,
    CachedLoader,
    HiddenStateCache,
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
Log = Callable[[str], None]
Report = dict[str, dict[str, Any]]  # metrics.json: each split's metrics


def cached_splits(precision: str) -> tuple[str, ...]:
    """The splits whose frozen-prefix states are kept: in float32 the report is read off them
    (``evaluate``'s numbers up to float32 rounding); in bf16 it cannot be, and they train only."""
    return SPLITS if precision == "fp32" else TRAINED


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
    """What every stage reads: the options, recipe, rank and log, then the data stages' output."""

    options: FinetuneOptions
    recipe: ResolvedRecipe
    dist: DistContext
    log: Log
    prepared: PreparedData = field(init=False)
    encoded: EncodedSplits = field(init=False)
    weights: list[float] | None = None  # the training loss's class weights (--balance weighted)


@dataclass
class TrainingSetup:
    classifier: GPTClassifier
    trained_model: torch.nn.Module  # the classifier, or its trainable suffix over cached states
    loaders: dict[str, Any]
    device: torch.device
    precision: str
    cached: bool = False
    suffix_precision: str = "fp32"  # what the trained part runs in (autocast), see make_loaders
    train_batches: int = 1  # per epoch and process, kept for run.json once the loaders are gone


@dataclass
class StageClock:
    """Wall time and peak memory after each stage (``timings.json``)."""

    started: float = field(default_factory=time.perf_counter)
    seconds: dict[str, float] = field(default_factory=dict)
    peak_after: dict[str, float] = field(default_factory=dict)

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


def _run_finetune(run: Run) -> FinetuneResult:
    options, dist, log = run.options, run.dist, run.log
    if options.resume and dist.run_on_main(lambda: finish_interrupted_commit(options.output_path)):
        log(f"{options.output_path}: the run was complete; finished its interrupted commit")
        return _finished_run(options.output_path)
    staged: StagedRun | None = _on_main(dist, lambda: open_run_directory(options))
    # the stages below see the device and precision resolved once, not "auto" again
    device, precision = str(run.recipe.device), run.recipe.precision
    run.options = dataclasses.replace(options, device=device, precision=precision)
    clock = StageClock()
    try:
        with clock.stage("data"):
            run.prepared = prepare_data(run)
            run.weights = loss_weights(run)
        with clock.stage("model"):
            classifier = build_classifier(run)
        with clock.stage("tokenize"):
            run.encoded = encode(run, classifier)
        with clock.stage("prefix_cache"):
            setup = make_loaders(run, classifier)
        with clock.stage("train"), _saving(staged, options.output_path):
            result = fit(run, setup, staged)
        with deferred_interrupts() as interrupt:  # a Ctrl-C now would lose the trained model
            with clock.stage("evaluate"):
                report = evaluate_splits(run, setup)
            release_free_memory()
            run_dir = options.output_path
            if staged is not None:  # rank 0 writes the run
                with _saving(staged, run_dir):
                    with clock.stage("save"):
                        write_run(run, staged, setup, report, result)
                    timings = {
                        "seconds": {**clock.seconds, "total": clock.total()},
                        "peak_rss_mb": round(peak_rss_mb(), 1),
                        "peak_rss_mb_after": clock.peak_after,
                        "device": str(setup.device),
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
    """An OSError writing the run or its checkpoint (full disk, permissions): one line to act on."""
    try:
        yield
    except OSError as exc:
        flag = "--output-dir"
        if staged is not None and checkpoint.has_checkpoint(staged.checkpoint_dir):
            flag += f" (the last checkpoint is kept: gpt-classifier train --resume {target})"
        raise cannot_write(target, exc, flag) from None


def _finished_run(run_dir: Path) -> FinetuneResult:
    history = TrainingHistory.from_dict(json.loads((run_dir / "history.json").read_text()))
    report = read_report_json(run_dir / "metrics.json")
    return FinetuneResult(run_dir, report, TrainResult(history), {"total": 0.0, "train": 0.0})


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


def prepare_data(run: Run) -> PreparedData:
    recipe, log = run.recipe, run.log
    prepared = prepare_dataset(
        **run.options.source(),
        balance=recipe.balance,
        keep_duplicates=recipe.keep_duplicates,
        seed=recipe.train.seed,
        fractions=recipe.fractions,
        progress=run.options.progress,
    )
    for line in prepared.summary.removals():
        log(line)
    sizes = ", ".join(f"{name} {len(prepared.split(name))}" for name in SPLITS)
    classes = ", ".join(prepared.label_map.classes)
    log(f"data: {prepared.summary.source}: {sizes}; classes: {classes}")
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


def loss_weights(run: Run) -> list[float] | None:
    """``--balance weighted``: each class's weight in the training loss, from the training
    split (the same on a resume: the checkpoint's fingerprint holds the split)."""
    if run.recipe.balance != "weighted":
        return None
    classes = run.prepared.label_map.classes
    weights = class_weights(run.prepared.summary.splits["train"], classes)
    shown = ", ".join(f"{label} {w:.3g}" for label, w in zip(classes, weights, strict=True))
    run.log(f"class weights in the training loss: {shown} (--balance weighted)")
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


def build_classifier(run: Run) -> GPTClassifier:
    options, recipe, seed = run.options, run.recipe, run.recipe.train.seed
    # a skeleton on meta: every weight source read module by module where it is needed
    gpt = build_model(options.model, options.weights, options.init, seed=seed, lazy=True)
    if not _lean_applies(options, recipe, gpt.cfg):
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
    return classifier


def encode(run: Run, classifier: GPTClassifier) -> EncodedSplits:
    tokenizer = get_tokenizer(run.options.tokenizer_dir)
    context, reading = classifier.gpt.cfg.context_length, run.recipe.long_text
    encoded = encode_splits(run.prepared, tokenizer, run.recipe.padding, context, reading)
    cut = {name: encoded.split(name).truncated for name in SPLITS}
    counts = ", ".join(f"{name} {count}" for name, count in cut.items())
    if any(cut.values()) and reading.mode == "chunks":
        run.log(f"texts over --max-chunks {reading.max_chunks} windows, partly read: {counts}")
    elif any(cut.values()):
        limit = encoded.train.max_length
        how = "; --long-text chunks reads all of them" if reading.mode == "truncate" else ""
        run.log(f"texts longer than {limit} tokens, partly read ({reading.mode}): {counts}{how}")
    return encoded


def make_loaders(run: Run, classifier: GPTClassifier) -> TrainingSetup:
    """The book's loaders for training, length-bucketed ones for the report and, where exact and
    small enough, the frozen blocks run once per example (prefix cache). Under torchrun the
    loaders hold this rank's share and the prefix runs in shards, one per rank, then shared."""
    encoded, settings, options, dist = run.encoded, run.recipe.train, run.options, run.dist
    device = distributed.rank_device(dist, resolve_device(options.device))
    precision = resolve_precision(options.precision, device)
    lazy = lazy_weights_of(classifier)
    if lazy is None:  # a lazy model is only ever built for the CPU
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
    in_order = {"shuffle": False, "drop_last": False, "bucket_by_length": True}
    for name in SPLITS:
        report_loader = encoded.loader(
            name, EVAL_BATCH_SIZE, seed=settings.seed, equal_lengths=unpadded_eval, **in_order
        )
        loaders[f"eval_{name}"] = distributed.shard_loader(report_loader, dist, even=False)
    setup = TrainingSetup(classifier, classifier, loaders, device, precision, False, precision)
    plan = plan_prefix_cache(
        classifier, pad, never_padded=unpadded_eval and settings.batch_size == 1
    )
    start = plan.start_block
    splits = [(encoded.split(n), encoded.pad_lengths[n]) for n in cached_splits(precision)]
    needed = sum(cached_positions(*split) for split in splits) * classifier.gpt.cfg.emb_dim * 4
    why = ""  # why the plain path runs
    if not options.prefix_cache:
        why = "off (--no-prefix-cache)"
    elif not plan.enabled:
        why = f"not used, {plan.reason}"
    elif needed > DEFAULT_CACHE_BUDGET_BYTES:  # float32 states
        why = f"not used, it would take {needed / 2**30:.1f} GiB"
    if why:
        run.log(f"frozen-prefix cache: {why}")
        if lazy is not None:  # the plain path: a lazy model gets all its weights
            materialize_model(classifier)
            classifier.to(device)
        return setup
    caches = _prefix_states(run, setup, start)
    for name in lazy.names[start + 2 :] if lazy else []:  # what trains, on states
        lazy.materialize(name)
    # the report reads the states only where they are float32; else token ids, as `evaluate`
    for key, loader in loaders.items():
        split = "train" if key == "train_eval" else key.removeprefix("eval_")
        if precision == "fp32" or not key.startswith("eval_"):
            loaders[key] = CachedLoader(loader, caches[split])
    setup.trained_model, setup.cached = SuffixClassifier(classifier, start), True
    # A suffix of one block read at the pooled position sees 8 rows a step: its matmuls are too
    # small for bf16 to pay, and float32 trains it exactly (the prefix, where the work is, keeps
    # the precision asked for). A suffix that runs every position (two blocks or more, mean
    # pooling) has matmuls of every token of the batch, where bf16 pays as in the prefix.
    one_position = start >= classifier.n_layers - 1 and classifier.pooling != Pooling.MEAN
    if one_position and precision == "bf16" and device.type == "cpu":
        setup.suffix_precision = "fp32"
    release_free_memory()
    return setup


def _prefix_states(run: Run, setup: TrainingSetup, start: int) -> dict[str, HiddenStateCache]:
    """Each split's states entering block ``start`` from the disk cache, else computed from the
    deepest shallower prefix it holds (and kept there). Under torchrun rank 0 reads and writes
    the disk cache; each rank runs a share of the rest from the ids, then all are summed."""
    options, dist, log, encoded = run.options, run.dist, run.log, run.encoded
    splits = {n: (encoded.split(n), encoded.pad_lengths[n]) for n in cached_splits(setup.precision)}
    store = CacheStore(options.cache_dir) if options.disk_cache else None
    digests = prefix_digests(setup.classifier, start, setup.precision) if store else []
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
        log(
            f"frozen-prefix cache: {', '.join(sources)} start from the states after {depths} "
            "block(s), cached by an earlier run"
        )

    def start_from(name: str) -> tuple[int, HiddenStateCache] | None:  # None: from the ids
        states = store.load(key(sources[name], name), log) if name in sources else None
        return None if states is None else (sources[name], states)

    if todo:
        positions = sum(cached_positions(*splits[name]) for name in todo)
        real_tokens = sum(sum(splits[name][0].lengths) for name in todo)
        padded = "" if positions == real_tokens else f" ({real_tokens:,} tokens and padding)"
        first = min(found[name] for name in todo)
        shards = f", in {dist.world_size} shards" if dist.enabled else ""
        log(
            f"frozen-prefix cache: running blocks {first}-{start - 1} once over {positions:,} "
            f"positions{padded} ({setup.precision}{shards}); training runs block {start} onwards"
        )
        work = positions * (start - first) // dist.world_size
        with progress_bar(
            work, "frozen prefix", enabled=options.progress, unit="tok", leave=False
        ) as bar:
            caches |= build_caches(
                setup.classifier,
                {name: splits[name][0] for name in todo},
                {name: splits[name][1] for name in todo},
                start,
                setup.device,
                setup.precision,
                progress=bar,
                starting_states=start_from,
                share=(dist.rank, dist.world_size) if dist.enabled else None,
            )
    for name in splits if dist.enabled else []:
        # each rank holds its share of the rows (the reused ones: rank 0 all), the others zeros
        if name not in caches:
            caches[name] = empty_cache(*splits[name], setup.classifier.cfg.emb_dim)
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


def fit(run: Run, setup: TrainingSetup, staged: StagedRun | None) -> TrainResult:
    """Train, checkpointing into the staging folder (resumed from it if asked); under torchrun
    rank 0 reads and writes the checkpoints and shares what it read."""
    settings, dist, model, options = run.recipe.train, run.dist, setup.classifier, run.options
    optimizer = make_optimizer(model, settings, setup.device)
    torch.manual_seed(settings.seed)
    # what a checkpoint depends on besides its options: the training data, the base weights
    train = run.encoded.split("train")
    base = frozen_parameter_sample(model)  # drawn, not read, for a lazy model
    fingerprint = checkpoint.data_fingerprint(train.input_ids, train.labels, base, options.model)
    folder = staged.checkpoint_dir if staged is not None else None

    def load() -> LoopState | None:
        if folder is None or not (options.resume and checkpoint.has_checkpoint(folder)):
            return None
        return checkpoint.load_checkpoint(folder, model, optimizer, fingerprint)

    state = dist.run_on_main(load)
    if state is not None:
        if dist.enabled:  # rank 0 holds the checkpoint's weights and moments
            dist.broadcast_parameters([p for p in model.parameters() if p.requires_grad])
            optimizer.load_state_dict(dist.broadcast_object(optimizer.state_dict()))
        run.log(f"resuming from the checkpoint after step {state.global_step + 1}")

    def save(loop_state: LoopState) -> None:
        if folder is not None:
            checkpoint.save_checkpoint(folder, model, optimizer, loop_state, fingerprint)

    batches = setup.train_batches = len(setup.loaders["train"])
    accum = min(settings.grad_accum_steps, batches)
    effective = effective_batch_size(settings, dist, batches)
    scaled = f" x {dist.world_size} processes x {accum} accumulated = effective batch {effective}"
    per_step = f"batch {settings.batch_size}{scaled if dist.enabled or accum > 1 else ''}"
    steps = f" = {-(-batches // accum)} optimizer step(s)" if accum > 1 else ""
    run.log(
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
        log=run.log,
        state=state or LoopState(),
        on_checkpoint=save,
        checkpoint_every=options.checkpoint_every,
        dist=dist,
        train_eval_loader=setup.loaders.get("train_eval"),
        class_weights=None if run.weights is None else torch.tensor(run.weights),
    )
    # the optimizer's moments go with this frame; the gradients are not needed for the report
    for param in model.parameters():
        param.grad = None
    return result


def effective_batch_size(settings: TrainSettings, dist: DistContext, batches: int) -> int:
    """Examples per optimizer step: batch x processes x accumulated batches (<= an epoch's)."""
    return settings.batch_size * dist.world_size * min(settings.grad_accum_steps, batches)


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


def evaluate_splits(run: Run, setup: TrainingSetup) -> Report:
    """The report (``metrics.json``) in float32, as ``evaluate`` runs the saved model: off the
    float32 states of the frozen layers where they are kept, else the whole model on token ids
    (a bf16 prefix: the frozen weights come back for it)."""
    model = setup.trained_model
    if setup.cached and setup.precision != "fp32":
        for key in [key for key in setup.loaders if not key.startswith("eval_")]:
            del setup.loaders[key]  # the hidden-state cache before the frozen weights come back
        model = materialize_model(setup.classifier).to(setup.device)
    classes = run.prepared.label_map.classes
    report = {  # under torchrun: this rank's share, every rank's gathered
        name: evaluate_split(
            model, setup.loaders[f"eval_{name}"], setup.device, "fp32", classes, ctx=run.dist
        )
        for name in SPLITS
        if len(run.encoded.split(name))
    }
    setup.loaders.clear()  # the hidden-state cache: the rest needs only the report
    setup.trained_model = setup.classifier
    return report


def write_run(
    run: Run, staged: StagedRun, setup: TrainingSetup, report: Report, result: TrainResult
) -> None:
    """The run's files into the staging folder, with its record (``run.json``)."""
    options, recipe, encoded, prepared = run.options, run.recipe, run.encoded, run.prepared
    pad_length = encoded.pad_lengths["train"]
    lora = {"rank": options.lora_rank, "alpha": options.lora_alpha}
    base = (options.model, options.weights, options.init, recipe.train.seed)
    effective = effective_batch_size(recipe.train, run.dist, setup.train_batches)
    info = RunInfo(
        gpt_config=setup.classifier.gpt.cfg,
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
            "training": recipe.train.to_dict(),
            # per optimizer step: --batch-size x processes (torchrun) x --grad-accum
            "processes": run.dist.world_size,
            "effective_batch_size": effective,
            "preset": options.preset,
            "precision": setup.precision,
            "frozen_prefix_cache": setup.cached,
            **{key: getattr(result, key) for key in ("interrupted", "best_epoch", "global_steps")},
            "data": prepared.summary.to_dict(),
            "balance": recipe.balance,
            "class_weights": run.weights,  # in the classes' order; None: the plain loss
        },
    )
    folder, classes = staged.folder, list(info.classes)
    write_model_files(setup.classifier, info, folder, options.tokenizer_dir)
    setup.classifier.run_info = info
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
