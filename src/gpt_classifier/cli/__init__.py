"""The ``gpt-classifier`` command line: one group, subcommands per task."""
