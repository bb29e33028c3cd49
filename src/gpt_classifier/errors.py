"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""


class GPTClassifierError(Exception):
    """A problem with the user's input (file, flag, weights, data) that they can fix: one line,
    printed as ``error: <message>`` with exit status 2. Anything else is a bug (a traceback)."""


INTERRUPTED_EXIT = 130  # the shell's status for a process ended by SIGINT (Ctrl-C)
