"""The ``gpt-classifier`` command line: one group, subcommands per task."""

import sys

from ..errors import INTERRUPTED_EXIT


def main() -> None:
    """``gpt-classifier``: the commands' modules import torch, seconds during which a Ctrl-C
    must end the program as it does later, with one line and status 130."""
    try:
        from .main import cli
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED_EXIT)
    cli()
