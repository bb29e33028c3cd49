"""The app under uvicorn on a socket bound beforehand. On SIGTERM or SIGINT uvicorn stops
accepting, waits for open requests, then the app's shutdown drains the batcher, which is told at
the signal to stop waiting for company (drained requests are answered at once)."""

from __future__ import annotations

import signal
import socket

import uvicorn
from fastapi import FastAPI

from .batching import Batcher

GRACEFUL_SHUTDOWN_SECONDS = 30


class BatchingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, batcher: Batcher) -> None:
        super().__init__(config)
        self.batcher = batcher

    def handle_exit(self, sig: int, frame: object) -> None:
        self.batcher.hurry()  # takes no lock: safe in a signal handler
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


def run(app: FastAPI, sock: socket.socket) -> bool:
    """Serve ``app`` on the listening ``sock`` until a stop signal; True if it started."""
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS
    )
    server = BatchingServer(config, app.state.batcher)
    # uvicorn re-raises the stop signal once it has shut down gracefully; with the default
    # actions that would kill the process (status 143) or raise KeyboardInterrupt after a
    # clean drain. No-op handlers for that last delivery let the caller return and exit 0.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return server.started
