"""``train`` from Python: its options as keyword arguments, its messages naming them, not flags."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import sys
from typing import Any

from ..errors import GPTClassifierError
from .pipeline import FinetuneResult, run_finetune
from .recipe import FinetuneOptions

# What the command line offers (``resume`` is the CLI's ``--resume RUN_DIR``).
KEYWORDS = tuple(f.name for f in dataclasses.fields(FinetuneOptions) if f.metadata.get("cli", True))
_FLAG = re.compile(r"--[a-z][a-z0-9-]*(?: ([\w.:-]+))?")
_PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*(\.json)?|\d+(\.\d+)?")  # PATH, CONFIG.json, 4


@functools.cache
def _spellings() -> dict[str, tuple[dataclasses.Field, Any]]:
    """Each flag of ``train`` -> its field and, for an on/off flag, the value it sets."""
    spellings: dict[str, tuple[dataclasses.Field, Any]] = {}
    for f in [f for f in dataclasses.fields(FinetuneOptions) if f.name in KEYWORDS]:
        on, _, off = (f.metadata.get("flag") or "--" + f.name.replace("_", "-")).partition("/")
        switch = "bool" in str(f.type)
        spellings[on] = (f, True if switch else None)
        if switch and (off or f.default is not False):  # click's --x/--no-x, or the declared pair
            spellings[off or f"--no-{on[2:]}"] = (f, False)
    return spellings


def python_names(message: str) -> str:
    """``message`` with each flag of ``train`` as its keyword argument (``plots=False``)."""

    def spell(match: re.Match[str]) -> str:
        flag, word = match.group(0).partition(" ")[0], match.group(1)
        if flag not in _spellings():
            return match.group(0)
        f, value = _spellings()[flag]
        if value is None and word is not None:
            if _PLACEHOLDER.fullmatch(word):
                return f"{f.name}={word}"
            if word in f.metadata.get("choices", ()):
                return f"{f.name}={word!r}"
        return f"{f.name}={'' if value is None else value}" + (f" {word}" if word else "")

    return _FLAG.sub(spell, message)


def train_run(**options: Any) -> FinetuneResult:
    """One run of ``gpt-classifier train`` with ``options`` as its flags (log lines on stderr)."""
    if name := next((name for name in options if name not in KEYWORDS), None):
        close = difflib.get_close_matches(name, KEYWORDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(
            f"train() got an unexpected keyword argument {name!r}{hint}; "
            f"valid: {', '.join(KEYWORDS)}"
        )
    if options.get("output_dir") is None:
        raise TypeError("train() needs output_dir=, the run directory to create")
    values = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in options.items()}
    try:
        result = run_finetune(
            FinetuneOptions(**values),
            log=lambda line: print(python_names(line), file=sys.stderr, flush=True),
        )
    except GPTClassifierError as exc:  # and its kinds: the same type, worded for Python
        exc.args = tuple(python_names(a) if isinstance(a, str) else a for a in exc.args)
        raise
    if result.interrupted:  # Ctrl-C: what was learnt is saved, and the caller stops too
        raise KeyboardInterrupt(f"training interrupted; the run was saved to {result.run_dir}")
    return result
