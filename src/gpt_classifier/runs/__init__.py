"""A run on disk: the run folder and its format, the transaction that writes it whole, and the
training checkpoint. Training writes runs; inference, serving and the CLI read them."""
