"""Entry point: ``gpt-classifier <command>``. Maps commands to library functions, nothing more."""

import sys

import click

from .. import __version__
from ..errors import INTERRUPTED_EXIT, GPTClassifierError
from .classify_commands import classify, export, serve
from .model_commands import data_group, download, generate, zero_shot
from .train_commands import cache, evaluate, experiments, train


class _Group(click.Group):
    """Turns a user-facing error into ``error: <one line>`` on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> object:
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


_BEFORE_TRAINING = (download, generate, zero_shot, data_group)
for _command in (*_BEFORE_TRAINING, train, evaluate, cache, experiments, classify, export, serve):
    cli.add_command(_command)

if __name__ == "__main__":
    cli()
