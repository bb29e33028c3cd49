"""The app under uvicorn on a socket bound beforehand. On SIGTERM or SIGINT uvicorn stops
accepting, waits for open requests, then the app's shutdown drains the batcher, which is told at
the signal to stop waiting for company (drained requests are answered at once). A connection
that has not sent a request's headers ``HEADER_TIMEOUT_SECONDS`` after it opened (or after its
last answer) is closed: uvicorn times only idle keep-alive, so a client trickling a header
held its connection for ever (the body's own deadline is in ``guards.py``)."""

from __future__ import annotations

import asyncio
import signal
import socket

import uvicorn
from fastapi import FastAPI

try:  # the protocol uvicorn's http="auto" picks: its C parser when installed
    import httptools  # noqa: F401
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Protocol
except ImportError:
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Protocol  # type: ignore[assignment]

from .batching import Batcher

GRACEFUL_SHUTDOWN_SECONDS = 30
HEADER_TIMEOUT_SECONDS = 10.0


class HeaderTimeoutProtocol(_Protocol):
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._headers_late)

    def _headers_late(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # no request under way
            self.transport.close()


class BatchingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, batcher: Batcher) -> None:
        super().__init__(config)
        self.batcher = batcher

    def handle_exit(self, sig: int, frame: object) -> None:
        self.batcher.hurry()  # takes no lock: safe in a signal handler
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


def server_config(app: FastAPI) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=HeaderTimeoutProtocol,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def run(app: FastAPI, sock: socket.socket) -> bool:
    """Serve ``app`` on the listening ``sock`` until a stop signal; True if it started."""
    server = BatchingServer(server_config(app), app.state.batcher)
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
