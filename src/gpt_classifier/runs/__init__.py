"""A run on disk: its folder and format, the transaction that writes it, the checkpoint."""
