"""Click options generated from an options dataclass: a field's type, default and help, once."""

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from typing import Any

import click

from ..training.settings import PRESETS, InferencePrecisionOptions, TokenizerOptions, opt


def options_from(cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding one click option (or argument) per field of ``cls``."""
    hints, fields = typing.get_type_hints(cls), reversed(dataclasses.fields(cls))
    params = [_parameter(f, hints[f.name]) for f in fields if f.metadata.get("cli", True)]
    return lambda func: functools.reduce(lambda inner, param: param(inner), params, func)


def command(cls: type, name: str | None = None, group: Any = click) -> Callable[..., Any]:
    """A click command that builds ``cls`` from its flags and calls the function with it."""
    return lambda func: group.command(name or func.__name__, help=func.__doc__)(
        options_from(cls)(lambda **values: func(cls(**values)))
    )


def _parameter(f: dataclasses.Field, hint: Any) -> Callable[..., Any]:
    meta = f.metadata
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # int | None -> int
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        hint = args[0] if len(args) == 1 else str  # str | tuple[...]: typed as "0.7,0.1,0.2"
    many = typing.get_origin(hint) is tuple
    kind, click_type = (typing.get_args(hint)[0] if many else hint), click.STRING
    if "choices" in meta:
        click_type = click.Choice(list(meta["choices"]))
    elif "path" in meta:
        path, writable = meta["path"], meta.get("writable", False)
        click_type = click.Path(dir_okay=path != "file", file_okay=path != "dir", writable=writable)
    elif kind in (int, float):
        bounds = {key: meta[key] for key in ("min", "max", "min_open") if key in meta}
        ranged = click.IntRange if kind is int else click.FloatRange
        click_type = ranged(**bounds) if bounds else click.types.convert_type(kind)
    if meta.get("argument"):
        return click.argument(
            f.name, type=click_type, nargs=-1 if many else 1, metavar=meta.get("metavar")
        )
    default = meta.get("cli_default", f.default)
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    flag = meta.get("flag") or "--" + f.name.replace("_", "-")
    flags = flag if isinstance(flag, tuple) else (flag,)
    extra = {"envvar": meta.get("envvar"), "show_envvar": "envvar" in meta}
    extra["required"] = meta.get("required", False)
    if kind is not bool:
        extra["type"] = click_type
    elif default is False and "/" not in flag:
        extra["is_flag"] = True
    elif "/" not in flag:  # on (or the preset's) unless turned off
        flags = (f"{flag}/--no-{flag[2:]}",)
    help, shown = meta["help"], _shown_default(f, default)
    if isinstance(shown, str):  # click would put it in parentheses
        help, shown = f"{help}  [default: {shown}]", False
    return click.option(*flags, f.name, default=default, help=help, show_default=shown, **extra)


def _shown_default(f: dataclasses.Field, default: Any) -> Any:
    """The preset's value where None means it (``batch; book: longest-train``), else the default."""
    if not f.metadata.get("preset"):
        return default is not None and default != ""
    on, _, off = f.metadata.get("flag", "").partition("/")  # a bool shows the flag selecting it
    values = {}
    for name, preset in PRESETS.items():
        value = preset[f.name]
        values[name] = (on if value else off).lstrip("-") if isinstance(value, bool) else str(value)
    ours = values.pop("default")
    return "; ".join([ours, *(f"{name}: {text}" for name, text in values.items() if text != ours)])


@dataclasses.dataclass(kw_only=True)
class BaseWeightsOptions:
    weights: str | None = opt(
        "Where a run saved --save trainable finds its base weights, if moved.", path="any"
    )


@dataclasses.dataclass(kw_only=True)
class ServedRunOptions(BaseWeightsOptions, TokenizerOptions, InferencePrecisionOptions):
    """A saved run loaded for inference (classify, serve)."""

    run_dir: str = opt(argument=True, path="dir")
    batch_size: int = opt("Most texts in one forward pass.", 64, min=1)

    def load_args(self) -> dict[str, Any]:
        """``TextClassifier.from_run``'s keyword arguments."""
        keys = ("device", "tokenizer_dir", "weights", "precision")
        return {key: getattr(self, key) for key in keys}
