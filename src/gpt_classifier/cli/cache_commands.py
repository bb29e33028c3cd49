"""``gpt-classifier cache list|clear``: the frozen-prefix states kept on disk between runs."""

from __future__ import annotations

import click

from ..training.cache_store import CacheStore, default_cache_dir, describe
from ..training.settings import CacheOptions
from .options import command


@click.group()
def cache() -> None:
    """Show or free the frozen-prefix cache that train keeps on disk."""


@command(CacheOptions, "list", group=cache)
def list_entries(o: CacheOptions) -> None:
    """One line per entry, least recently used first, then the total."""
    store = CacheStore(o.cache_dir or default_cache_dir())
    entries = store.entries()
    for entry in entries:
        click.echo(describe(entry))
    total = sum(entry.size for entry in entries)
    click.echo(f"{len(entries)} entries, {total / 2**20:.1f} MiB in {store.folder}")


@command(CacheOptions, "clear", group=cache)
def clear(o: CacheOptions) -> None:
    """Delete every entry."""
    store = CacheStore(o.cache_dir or default_cache_dir())
    click.echo(f"removed {store.clear()} entries from {store.folder}")


COMMANDS = [cache]
