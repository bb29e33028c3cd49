"""Grids of fine-tuning runs (the book's bonus table, or your own) and their comparison table."""
