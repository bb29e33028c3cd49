"""Entry point: ``gpt-classifier <command>``. Maps commands to library functions, nothing more."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import __version__
from ..errors import INTERRUPTED_EXIT, GPTClassifierError


class _Group(click.Group):
    """Turns a user-facing error into ``error: <one line>`` on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GPTClassifierError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(INTERRUPTED_EXIT)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpt-classifier")
def cli() -> None:
    """Fine-tune GPT-2 (written from scratch in PyTorch) into a text classifier."""


def _register() -> None:
    from . import classify_commands as classify
    from . import data_commands as data
    from . import experiments_commands as experiments
    from . import model_commands as model
    from . import serve_commands as serve
    from . import train_commands as train

    for module in (model, data, train, classify, serve, experiments):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
