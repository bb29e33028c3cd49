"""``gpt-classifier cache list|clear``: the frozen-prefix states kept on disk between runs."""

from __future__ import annotations

import click

from ..fileio import CACHE_ENV
from ..training.cache_store import CacheStore, describe

cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help=f"Cache folder (default: prefix-cache in ${CACHE_ENV} or ~/.cache/gpt-classifier).",
)


@click.group()
def cache() -> None:
    """Show or free the frozen-prefix cache that `train` keeps on disk."""


@cache.command("list")
@cache_dir_option
def list_entries(cache_dir: str | None) -> None:
    """One line per entry, least recently used first, then the total."""
    store = CacheStore(cache_dir)
    entries = store.entries()
    for entry in entries:
        click.echo(describe(entry))
    total = sum(entry.size for entry in entries)
    click.echo(f"{len(entries)} entries, {total / 2**20:.1f} MiB in {store.folder}")


@cache.command("clear")
@cache_dir_option
def clear(cache_dir: str | None) -> None:
    """Delete every entry."""
    store = CacheStore(cache_dir)
    removed = store.clear()
    click.echo(f"removed {removed} entries from {store.folder}")


COMMANDS = [cache]
