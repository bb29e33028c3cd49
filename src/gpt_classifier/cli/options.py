"""Click options generated from an options dataclass: a field's type, default and help, once."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from ..training.settings import PRESETS, InferencePrecisionOptions, TokenizerOptions, opt

_PATHS = {"file": {"dir_okay": False}, "dir": {"file_okay": False}, "any": {}}


def options_from(cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding one click option (or argument) per field of ``cls``."""
    hints = typing.get_type_hints(cls)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for f in reversed(dataclasses.fields(cls)):
            if f.metadata.get("cli", True):
                func = _parameter(f, hints[f.name])(func)
        return func

    return decorate


def command(cls: type, name: str | None = None, group: Any = click) -> Callable[..., Any]:
    """A click command that builds ``cls`` from its flags and calls the function with it."""

    def decorate(func: Callable[..., Any]) -> click.Command:
        @functools.wraps(func)
        def callback(**values: Any) -> Any:
            return func(cls(**values))

        return group.command(name)(options_from(cls)(callback))

    return decorate


def _parameter(f: dataclasses.Field, hint: Any) -> Callable[..., Any]:
    meta = f.metadata
    kind = _base_type(hint)
    if meta.get("argument"):
        nargs = -1 if typing.get_origin(hint) is tuple else 1
        metavar = meta.get("metavar")
        return click.argument(f.name, type=_click_type(meta, kind), nargs=nargs, metavar=metavar)
    default = meta.get("cli_default", f.default)
    if isinstance(default, tuple):  # e.g. fractions: typed as "0.7,0.1,0.2"
        default = ",".join(map(str, default))
    flags = meta.get("flag") or "--" + f.name.replace("_", "-")
    flags = (flags,) if isinstance(flags, str) else flags
    extra: dict[str, Any] = {}
    if kind is not bool:
        extra["type"] = _click_type(meta, kind)
    elif default is False and "/" not in flags[0]:
        extra["is_flag"] = True
    elif "/" not in flags[0]:  # on (or the preset's) unless turned off
        flags = (f"{flags[0]}/--no-{flags[0][2:]}",)
    if meta.get("envvar"):
        extra.update(envvar=meta["envvar"], show_envvar=True)
    help, shown = meta.get("help") or "", _shown_default(f, meta, default)
    if isinstance(shown, str):  # click would put it in parentheses
        help, shown = f"{help}  [default: {shown}]", False
    return click.option(
        *flags,
        f.name,
        default=default,
        help=help or None,
        show_default=shown,
        required=meta.get("required", False),
        **extra,
    )


def _base_type(hint: Any) -> type:
    """``int | None`` -> int; a union of str and others -> str."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else str
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0]
    return hint if hint in (bool, int, float) else str


def _click_type(meta: typing.Mapping[str, Any], kind: type) -> Any:
    if "type" in meta:
        return meta["type"]
    if "choices" in meta:
        return click.Choice(list(meta["choices"]))
    if "path" in meta:
        return click.Path(**_PATHS[meta["path"]], writable=meta.get("writable", False))
    bounds = {key: meta[key] for key in ("min", "max", "min_open") if key in meta}
    if kind is int:
        return click.IntRange(**bounds) if bounds else click.INT
    if kind is float:
        return click.FloatRange(**bounds) if bounds else click.FLOAT
    return click.STRING


def _shown_default(f: dataclasses.Field, meta: typing.Mapping[str, Any], default: Any) -> Any:
    """The preset's value where None means it (``batch; book: longest-train``), else the default."""
    if not meta.get("preset"):
        return default is not None and default != ""

    def shown(value: Any) -> str:
        if isinstance(value, bool):  # the flag that selects it: keep-duplicates, drop-duplicates
            on, _, off = meta.get("flag", "").partition("/")
            return (on if value else off).lstrip("-")
        return str(value)

    ours = shown(PRESETS["default"][f.name])
    others = [f"{name}: {shown(values[f.name])}" for name, values in PRESETS.items()]
    return "; ".join([ours, *(text for text in others[1:] if not text.endswith(f": {ours}"))])


@dataclass(kw_only=True)
class BaseWeightsOptions:
    weights: str | None = opt(
        None, "Where a run saved --save trainable finds its base weights, if moved.", path="any"
    )


@dataclass(kw_only=True)
class ServedRunOptions(BaseWeightsOptions, TokenizerOptions, InferencePrecisionOptions):
    """A saved run loaded for inference (classify, serve)."""

    run_dir: str = opt(argument=True, path="dir")
    batch_size: int = opt(64, "Most texts in one forward pass.", min=1)
