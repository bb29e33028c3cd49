"""``python -m gpt_classifier``: the same command line as ``gpt-classifier``."""

from .cli.main import main

main()
