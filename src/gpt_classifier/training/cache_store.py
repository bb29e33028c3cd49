"""The frozen-prefix cache on disk, shared by runs: a digest of the frozen weights, config, depth,
precision and token ids names each entry; an entry carries its key and sha256 (a swapped or
altered one is recomputed); least recently used go over the cap; a failed write costs the reuse."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

import torch

from ..data.encoding import EncodedDataset
from ..errors import GPTClassifierError
from ..fileio import atomic_path, cache_dir
from ..weights import lazy_weights_of
from .prefix_cache import HiddenStateCache

DEFAULT_SIZE_CAP_BYTES = 8 << 30
SUFFIX = ".safetensors"
FORMAT = "gpt-classifier-prefix-cache-4"


def prefix_digests(model: torch.nn.Module, last_block: int, precision: str) -> list[str]:
    """For each i <= last_block, what the states entering ``trf_blocks[i]`` depend on, hashed."""
    gpt, lazy = model.gpt, lazy_weights_of(model)
    running = hashlib.sha256(json.dumps(gpt.cfg.to_dict(), sort_keys=True).encode())
    running.update(f"{precision}|{FORMAT}".encode())
    digests = []
    stages = [["tok_emb", "pos_emb"], *([f"trf_blocks.{i}"] for i in range(last_block))]
    for modules in stages:
        for module in modules:
            # a lazy model's frozen weights are read piece by piece, never all at once
            state = lazy.stream(module) if lazy else gpt.get_submodule(module).state_dict().items()
            # the pieces of one tensor follow each other under its name
            for name, pieces in itertools.groupby(state, key=lambda piece: piece[0]):
                running.update(name.encode())
                for _, tensor in pieces:
                    raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                    running.update(raw.numpy().data)  # the bytes themselves, not a copy
        finished = running.copy()
        finished.update(f"|blocks {len(digests)}".encode())
        digests.append(finished.hexdigest())
    return digests


def dataset_key(model_key: str, dataset: EncodedDataset, pad_length: int | None) -> str:
    digest = hashlib.sha256(f"{model_key}|{pad_length}|".encode())
    for ids in dataset.input_ids:
        digest.update(len(ids).to_bytes(4, "little"))
        digest.update(torch.as_tensor(ids, dtype=torch.int32).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    size: int
    last_used: float

    @property
    def key(self) -> str:
        return self.path.name.removesuffix(SUFFIX)

    def about(self) -> str:
        """What the entry holds, as train described it (model, blocks, data, split, texts)."""
        try:
            return _open_entry(self.path)[1].get("about", "?")
        except (OSError, KeyError, ValueError, TypeError):
            return "unreadable"


class CacheStore:
    """One cache folder (default: ``fileio.cache_dir("prefix-cache")``) with a size cap."""

    def __init__(self, folder: str | Path | None = None, size_cap: int = DEFAULT_SIZE_CAP_BYTES):
        self.folder = Path(folder).expanduser() if folder else cache_dir("prefix-cache")
        self.size_cap = size_cap

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{SUFFIX}"

    def entries(self) -> list[CacheEntry]:
        """Entries, least recently used first."""
        found = []
        for path in self.folder.glob(f"*{SUFFIX}"):  # none where the folder is missing
            with contextlib.suppress(FileNotFoundError):  # removed by another process meanwhile
                stat = path.stat()
                if S_ISREG(stat.st_mode):  # a folder or device named like an entry is not one
                    found.append(CacheEntry(path, stat.st_size, stat.st_mtime))
        return sorted(found, key=lambda entry: entry.last_used)

    def contains(self, key: str) -> bool:
        return self.path(key).is_file()

    def load(self, key: str, log: Callable[[str], None]) -> HiddenStateCache | None:
        """The entry's states, read in place; None (reported, deleted) if corrupt or misnamed."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            cache, metadata = _open_entry(path)
            if metadata.get("key") != key:
                raise ValueError(f"it holds the entry {str(metadata.get('key'))[:16]}")
            if metadata.get("sha256") != content_digest(cache):
                raise ValueError("its states do not match their sha256")
        except (OSError, KeyError, ValueError, TypeError, GPTClassifierError) as exc:
            log(
                f"warning: frozen-prefix cache: {path} is corrupt or not this entry ({exc}); "
                "recomputing it"
            )
            with contextlib.suppress(OSError):  # a read-only cache is read, never fixed
                path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # least-recently-used order is by modification time
        return cache

    def save(self, key: str, cache: HiddenStateCache, about: str = "") -> None:
        """Write the entry (``about``: what it holds, for ``cache list``), or a one-line error."""
        metadata = {"format": FORMAT, "key": key, "sha256": content_digest(cache), "about": about}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path(key)) as partial:
                write_entry(partial, cache, metadata)
            self.evict(keep=key)
        except OSError as exc:
            raise GPTClassifierError(f"cannot write to {self.folder}: {exc.strerror}") from None

    def evict(self, keep: str | None = None) -> list[CacheEntry]:
        """Delete least recently used entries (but ``keep``) until the folder fits its cap."""
        entries = self.entries()
        total, removed = sum(entry.size for entry in entries), []
        for entry in entries:
            if total > self.size_cap and entry.key != keep:
                entry.path.unlink(missing_ok=True)
                total -= entry.size
                removed.append(entry)
        return removed

    def clear(self) -> int:
        entries = self.entries()
        for entry in entries:
            entry.path.unlink(missing_ok=True)
        return len(entries)


def content_digest(cache: HiddenStateCache) -> str:
    """sha256 of the entry's tensors' bytes in name order (lengths, then states), piece by piece."""
    digest = hashlib.sha256(torch.as_tensor(cache.lengths, dtype=torch.int64).numpy().tobytes())
    for _, states in cache.chunks():
        digest.update(states.numpy().data)
    return digest.hexdigest()


def write_entry(path: Path, cache: HiddenStateCache, metadata: dict[str, str]) -> None:
    """The states as a safetensors file (``lengths`` int64, ``storage`` float32), written a
    piece at a time: ``safetensors.torch.save_file`` would need them all in memory."""
    lengths = torch.as_tensor(cache.lengths, dtype=torch.int64).numpy().tobytes()  # as digested
    first, end = len(lengths), len(lengths) + cache.rows * cache.emb_dim * 4
    storage = {"dtype": "F32", "shape": [cache.rows, cache.emb_dim], "data_offsets": [first, end]}
    header = {
        "lengths": {"dtype": "I64", "shape": [len(cache.lengths)], "data_offsets": [0, first]},
        "storage": storage,
        "__metadata__": metadata,
    }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the data aligned to 8 bytes, as safetensors writes it
    with open(path, "wb") as out:
        out.write(len(text).to_bytes(8, "little") + text + lengths)
        for _, states in cache.chunks():
            out.write(states.numpy().data)


def _open_entry(path: Path) -> tuple[HiddenStateCache, dict[str, str]]:
    """The entry's states in place (the open file outlives an eviction) and its metadata."""
    file = open(path, "rb", buffering=0)  # noqa: SIM115 (the cache holds it open)
    size = int.from_bytes(file.read(8), "little")
    if not 0 < size <= 1 << 20:
        raise ValueError(f"a header of {size} bytes")
    header = json.loads(file.read(size))
    (first, _), (start, end) = (header[name]["data_offsets"] for name in ("lengths", "storage"))
    rows, emb_dim = header["storage"]["shape"]
    file.seek(8 + size + first)
    lengths = torch.frombuffer(bytearray(file.read(start - first)), dtype=torch.int64).tolist()
    if (
        (header["storage"]["dtype"], sum(lengths)) != ("F32", rows)
        or file.seek(0, 2) != (8 + size + end)
        or end - start != rows * emb_dim * 4
    ):
        raise ValueError("its tensors do not match its header")
    cache = HiddenStateCache(file, lengths, emb_dim, start=8 + size + start, where=str(path))
    return cache, header.get("__metadata__") or {}


def describe(entry: CacheEntry) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
    return f"{entry.key[:12]}  {entry.size / 2**20:9.1f} MiB  last used {when}  {entry.about()}"
