"""The ``gpt-classifier`` command line: one group, subcommands per task."""

import sys

from ..errors import INTERRUPTED_EXIT


def main() -> None:
    """``gpt-classifier``; a Ctrl-C while torch imports also ends with one line and status 130."""
    try:
        from .main import cli
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED_EXIT)
    cli()
