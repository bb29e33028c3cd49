"""Training and classifying under ``torchrun`` (a no-op without it): the process group, sharded
batches (batch ``i`` to rank ``i % N``, one shuffle), DDP around the trainable part, and the
collectives the pipeline needs."""

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from .errors import GPTClassifierError

DIST_TIMEOUT_ENV = "GPT_CLASSIFIER_DIST_TIMEOUT"
DEFAULT_DIST_TIMEOUT_S = 600.0  # a peer that never joins or stops answering: an error after this
_CHUNK_ELEMENTS = 16 << 20  # 64 MiB of float32 per collective: bounds gloo's own buffers
T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; ``owns_group``: this module set the group up."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def run_on_main(self, work: Callable[[], T]) -> T:
        """``work()`` on rank 0 only, its result or error on every rank (none left waiting)."""
        if not self.enabled:
            return work()
        outcome: list[Any] = [None, None]
        if self.is_main:
            try:
                outcome[0] = work()
            except GPTClassifierError as exc:
                outcome[1] = str(exc)
        result, error = self.broadcast_object(outcome)
        if error is not None:
            raise GPTClassifierError(error)
        return result

    def broadcast_object(self, value: T) -> T:
        box = [value]
        if self.enabled:
            dist.broadcast_object_list(box, src=0, device=self._device())
        return box[0]

    def gather_objects(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order (on every rank)."""
        out: list[Any] = [value] * self.world_size
        if self.enabled:
            dist.all_gather_object(out, value)
        return out

    def gather_floats(self, values: Sequence[float]) -> list[list[float]]:
        """Each rank's ``values`` in rank order, as tensors: this runs at every training step."""
        if not self.enabled:
            return [list(values)]
        local = torch.tensor(values, dtype=torch.float64, device=self._device())
        out = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(out, local)
        return [tensor.tolist() for tensor in out]

    def sum_in_place(self, tensor: torch.Tensor) -> None:
        """All-reduce (sum) a CPU tensor in place, in chunks (views) bounding gloo's own buffers."""
        for piece in tensor.view(-1).split(_CHUNK_ELEMENTS) if self.enabled else []:
            moved = piece.to(self._device())
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            if moved.data_ptr() != piece.data_ptr():
                piece.copy_(moved)

    def broadcast_parameters(self, params: Sequence[torch.Tensor]) -> None:
        for param in params if self.enabled else []:
            dist.broadcast(param.data, src=0)

    def _device(self) -> torch.device:
        """Where collective tensors live: NCCL reduces CUDA tensors (on the current GPU) only."""
        return torch.device("cuda" if self.backend == "nccl" else "cpu")


def _env_number(name: str, default: float, kind: type = int) -> Any:
    value = os.environ.get(name)
    try:
        return kind(value) if value else default
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise GPTClassifierError(f"{name}={value!r} is not {what}") from None


def context_from_env() -> DistContext:
    """Rank, world size and local rank as ``torchrun`` sets them (1 process without it)."""
    world = _env_number("WORLD_SIZE", 1)
    rank, local = _env_number("RANK", 0), _env_number("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise GPTClassifierError(f"RANK={rank} and WORLD_SIZE={world} do not make sense")
    return DistContext(rank=rank, world_size=world, local_rank=local)


def init_distributed(device: torch.device, timeout_s: float | None = None) -> DistContext:
    """Join the job ``torchrun`` started; a peer that does not answer within the timeout (else
    ``$GPT_CLASSIFIER_DIST_TIMEOUT``, else 10 minutes) is an error."""
    ctx = context_from_env()
    if not ctx.enabled:
        return ctx
    if (seconds := timeout_s) is None:
        seconds = _env_number(DIST_TIMEOUT_ENV, DEFAULT_DIST_TIMEOUT_S, float)
    if not seconds > 0:
        raise GPTClassifierError(f"the distributed timeout must be positive (got {seconds})")
    if dist.is_initialized():  # a caller (tests, a notebook) set it up already
        return replace(ctx, backend=dist.get_backend())
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    timeout = datetime.timedelta(seconds=seconds)
    try:
        dist.init_process_group(backend, timeout=timeout, rank=ctx.rank, world_size=ctx.world_size)
        dist.barrier()  # a first collective: the group is complete only once every rank answers
    except (dist.DistError, RuntimeError, ValueError) as exc:
        if dist.is_initialized():
            dist.destroy_process_group()
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise GPTClassifierError(
            f"rank {ctx.rank} of {ctx.world_size}: the other processes did not join within "
            f"{seconds:g} s at {where} ({_describe(exc)}); start every "
            f"rank (torchrun --nproc-per-node/--nnodes) or raise {DIST_TIMEOUT_ENV}"
        ) from None
    return replace(ctx, backend=backend, owns_group=True)


def shutdown(ctx: DistContext, *, finished: bool = False) -> None:
    """Leave the process group unless the caller set it up; ``finished``: first wait for the
    peers, as one still reading a last collective would abort."""
    if ctx.owns_group and dist.is_initialized():
        if finished:
            with contextlib.suppress(dist.DistError, RuntimeError):  # a peer gone: leave anyway
                dist.barrier()
        dist.destroy_process_group()


def rank_device(ctx: DistContext, device: torch.device) -> torch.device:
    """Each rank on its own GPU (``cuda:LOCAL_RANK``); CPU ranks share the CPU."""
    return torch.device("cuda", ctx.local_rank) if ctx.enabled and device.type == "cuda" else device


def peer_failure(ctx: DistContext, exc: BaseException) -> GPTClassifierError:
    """A collective that failed or timed out (a rank died or hangs) as a one-line error."""
    return GPTClassifierError(
        f"rank {ctx.rank} of {ctx.world_size}: a peer process failed or stopped answering "
        f"({_describe(exc)}); the job stops (resume it with --resume from the last checkpoint)"
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {next(iter(str(exc).strip().splitlines()), 'no message')}"


class RankBatches(Sampler[list[int]]):
    """Rank ``rank``'s share of ``batches``; ``even`` (DDP's equal steps) drops an uneven tail."""

    def __init__(self, batches: Any, rank: int, world: int, *, even: bool) -> None:
        self.batches, self.rank, self.world, self.even = batches, rank, world, even

    def __len__(self) -> int:
        total = len(self.batches)
        return total // self.world if self.even else len(range(self.rank, total, self.world))

    def __iter__(self) -> Iterator[list[int]]:
        kept = len(self) * self.world if self.even else len(self.batches)
        # every batch is drawn, as in one process, so that the shuffle's generator runs to the end
        for index, batch in enumerate(self.batches):
            if index < kept and index % self.world == self.rank:
                yield batch


def shard_loader(loader: DataLoader, ctx: DistContext, *, even: bool) -> DataLoader:
    """``loader`` with only this rank's batches, its shuffle drawn as in one process."""
    if not ctx.enabled:
        return loader
    return DataLoader(
        loader.dataset,
        batch_sampler=RankBatches(loader.batch_sampler, ctx.rank, ctx.world_size, even=even),
        collate_fn=loader.collate_fn,
        generator=loader.generator,
    )


def wrap_trainable(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """``model`` under DDP, averaging the gradients of its trainable parameters only."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    frozen = [name for name, param in model.named_parameters() if not param.requires_grad]
    frozen += [name for name, _ in model.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, frozen)
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)
