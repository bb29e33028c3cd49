"""Grids of fine-tuning runs (the book's bonus table, or your own) and their comparison table."""

from .grid import BOOK_ROWS, Row, book_grid, load_grid, parse_rows
from .runner import RunOutcome, run_grid, wilson_interval
from .table import summarize, write_outputs

__all__ = [
    "BOOK_ROWS",
    "Row",
    "RunOutcome",
    "book_grid",
    "load_grid",
    "parse_rows",
    "run_grid",
    "summarize",
    "wilson_interval",
    "write_outputs",
]
