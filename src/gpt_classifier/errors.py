"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""


class GPTClassifierError(Exception):
    """A problem with the user's input, printed as ``error: <message>`` with exit status 2."""


INTERRUPTED_EXIT = 130  # the shell's status for a process ended by SIGINT (Ctrl-C)
