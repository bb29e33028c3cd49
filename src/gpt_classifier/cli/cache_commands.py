"""``gpt-classifier cache list|clear``: the frozen-prefix states kept on disk between runs."""

from __future__ import annotations

import click

from ..training.cache_store import CACHE_DIR_ENV, CacheStore, default_cache_dir, describe

cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    envvar=CACHE_DIR_ENV,
    default=None,
    help=f"Cache folder (env {CACHE_DIR_ENV}; default ~/.cache/gpt-classifier/prefix-cache).",
)


@click.group()
def cache() -> None:
    """Show or free the frozen-prefix cache that `train` keeps on disk."""


@cache.command("list")
@cache_dir_option
def list_entries(cache_dir: str | None) -> None:
    """One line per entry, least recently used first, then the total."""
    store = CacheStore(cache_dir or default_cache_dir())
    entries = store.entries()
    for entry in entries:
        click.echo(describe(entry))
    total = sum(entry.size for entry in entries)
    click.echo(f"{len(entries)} entries, {total / 2**20:.1f} MiB in {store.folder}")


@cache.command("clear")
@cache_dir_option
def clear(cache_dir: str | None) -> None:
    """Delete every entry."""
    store = CacheStore(cache_dir or default_cache_dir())
    removed = store.clear()
    click.echo(f"removed {removed} entries from {store.folder}")


COMMANDS = [cache]
