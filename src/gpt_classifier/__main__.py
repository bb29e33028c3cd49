"""``python -m gpt_classifier``: the same command line as ``gpt-classifier``."""

from .cli import main

main()
