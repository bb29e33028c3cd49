"""Grids of fine-tuning runs: the book's 19-row design-choice table (rasbt/LLMs-from-scratch,
ch06/02_bonus_additional-experiments, on its chapter-6 recipe) or your own. A row is a name and
the ``train`` options it changes over the grid's base options."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import GPTClassifierError
from ..training.recipe import FinetuneOptions
from ..training.settings import PRESETS


@dataclass(frozen=True)
class Row:
    number: int
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # why a row cannot differ from another in this implementation, etc.

    def describe(self) -> dict[str, str]:
        """The book's columns for this row (its options over its preset's values)."""
        o = row_values(self.options)
        batch = "no padding" if o["batch_size"] == 1 else "per batch"
        named = {"longest-train": "longest train ex.", "context": "context length", "batch": batch}
        context = named.get(str(o["padding"]), str(o["padding"]))
        if o["grad_accum_steps"] > 1:
            context += f", {o['grad_accum_steps']} accumulation steps"
        if o["causal_mask"] is False:
            context += "; no causal mask"
        return {
            "model": Path(str(o["model"])).name,
            "weights": str(o["init"]),
            "token position": str(o["pooling"]),
            "trainable": str(o["trainable"]),
            "context": context,
        }


def row_values(options: dict[str, Any]) -> dict[str, Any]:
    """What a row runs with: its options over its preset over train's defaults."""
    preset = PRESETS.get(str(options.get("preset") or "default"), PRESETS["default"])
    defaults = {f.name: f.default for f in fields(FinetuneOptions)}
    return {**defaults, **preset, **{k: v for k, v in options.items() if v is not None}}


_LORA, _UNPADDED = {"trainable": "lora", "lora_rank": 16}, {"padding": "batch", "batch_size": 1}
BOOK_ROWS = [
    Row(1, "book's recipe (chapter 6)", {}),
    Row(2, "first token", {"pooling": "first"}),
    Row(3, "last layer only", {"trainable": "head"}),
    Row(4, "last two blocks", {"trainable": "last-blocks:2"}),
    Row(5, "all layers", {"trainable": "all"}),
    Row(6, "gpt2-medium", {"model": "gpt2-medium"}),
    Row(7, "gpt2-large", {"model": "gpt2-large"}),
    Row(8, "gpt2-xl", {"model": "gpt2-xl"}),
    Row(9, "gpt2-xl, all layers", {"model": "gpt2-xl", "trainable": "all"}),
    Row(10, "random weights, all layers", {"init": "random", "trainable": "all"}),
    Row(11, "LoRA r16 a16", {**_LORA, "lora_alpha": 16.0}),
    Row(12, "gpt2-xl, LoRA r16 a8", {"model": "gpt2-xl", **_LORA, "lora_alpha": 8.0}),
    Row(13, "pad to the full context", {"padding": "context"}),
    Row(14, "no padding, batch 1", _UNPADDED),
    Row(15, "no padding, batch 1 x 8 accumulation", {**_UNPADDED, "grad_accum_steps": 8}),
    Row(16, "last non-padding token", {"pooling": "last-real"}),
    Row(17, "no causal mask", {"causal_mask": False}),
    Row(
        18,
        "ignore index for padding",
        {},
        note="same as row 1 here: the loss reads one pooled position per text, never a padding "
        "token's prediction, so an ignore index has nothing to ignore (the book finds the same)",
    ),
    Row(19, "average of the token states", {"pooling": "mean"}),
]


def parse_rows(spec: str | None, rows: list[Row]) -> list[Row]:
    """``"1-4,14-19"`` -> those rows, in grid order; ``None`` -> all."""
    if not spec:
        return rows
    wanted: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            wanted.update(range(int(low), int(high if dash else low) + 1))
        except ValueError:
            raise GPTClassifierError(f"--rows: {part!r} is not a row number or range") from None
    known = {row.number for row in rows}
    if unknown := sorted(wanted - known):
        raise GPTClassifierError(
            f"--rows: no row {', '.join(map(str, unknown))} in this grid (rows "
            f"{min(known)}-{max(known)})"
        )
    return [row for row in rows if row.number in wanted]


# What a row may not set: where its run goes and how the grid runs it are the grid's business.
_GRID_OWNED = {"output_dir", "overwrite", "resume", "progress"}


def load_grid(path: str | Path) -> tuple[dict[str, Any], list[Row]]:
    """A TOML or JSON grid: optional ``base`` options and ``rows`` (``name``, ``note``, options)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise GPTClassifierError(f"grid file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GPTClassifierError(f"{path}: not a valid grid file ({exc})") from None
    if not isinstance(values, dict) or not isinstance(values.get("rows"), list):
        raise GPTClassifierError(f"{path}: a grid needs a list of 'rows'")
    base = values.get("base", {})
    if not isinstance(base, dict):
        raise GPTClassifierError(f"{path}: 'base' must be a table of options")
    _check_options(base, f"{path}: base")
    rows = []
    for number, item in enumerate(values["rows"], start=1):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise GPTClassifierError(f"{path}: row {number} needs a 'name'")
        options = {k: v for k, v in item.items() if k not in ("name", "note")}
        _check_options(options, f"{path}: row {number} ({item['name']})")
        rows.append(Row(number, item["name"], options, str(item.get("note", ""))))
    if not rows:
        raise GPTClassifierError(f"{path}: the grid has no rows")
    return base, rows


def _check_options(options: dict[str, Any], where: str) -> None:
    if unknown := sorted(set(options) - {f.name for f in fields(FinetuneOptions)}):
        raise GPTClassifierError(f"{where}: unknown train options {unknown}")
    if owned := sorted(set(options) & _GRID_OWNED):
        raise GPTClassifierError(f"{where}: {owned} are set by the grid, not by a row")
