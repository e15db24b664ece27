"""The server's connection limits: a deadline for the request head, idle timeouts, a cap on
connections, and logs that a flood cannot fill.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) but waits forever for a
request head that never completes, and accepts connections until the process runs out of file
descriptors. ``limited_protocol(limits)`` is uvicorn's h11 protocol with three additions:

- a connection over ``max_connections`` makes room by closing the connection that has waited
  longest (at least ``evict_after`` seconds) for a request head, a stalled or idle one; when
  every connection is busy (a request in flight) it gets a ``503 server_busy`` at once and is
  closed. So connections that send nothing cannot keep a real client out;
- a request head not complete ``head_timeout`` seconds after the connection opened (or after
  its first byte, for the next request on a kept-alive connection) closes the connection;
- a request body that stalls for ``body_timeout`` seconds closes the connection.

``RepeatLimit`` keeps repeated identical log records (uvicorn's "Invalid HTTP request
received.", asyncio's accept errors) to a few per minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Connection limits of ``serve`` (README, "Limits and protections")."""

    max_connections: int = 256
    """Open connections at once; one more closes a stalled one or is answered 503."""
    evict_after: float = 1.0
    """Seconds a connection must have waited for a request head before a new one may close it
    (a connection just accepted has had no chance to send yet)."""
    head_timeout: float = 10.0
    """Seconds a connection has to send a whole request head."""
    body_timeout: float = 30.0
    """Seconds a request body may go without sending a byte."""
    keep_alive_timeout: int = 5
    """Seconds an idle keep-alive connection stays open."""


def busy_response(retry_after: int = 1) -> bytes:
    """A whole HTTP response: 503 ``server_busy``, for a connection over the cap."""
    body = json.dumps(
        {
            "code": "server_busy",
            "detail": "the server has as many open connections as it accepts",
            "hint": f"Retry in {retry_after} s; close idle connections.",
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"retry-after: {retry_after}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def limited_protocol(limits: Limits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with ``limits`` applied (pass as ``uvicorn.Config(http=...)``)."""

    class LimitedH11Protocol(H11Protocol):
        deadline: asyncio.TimerHandle | None = None
        waiting_since: float | None = None
        """When this connection began waiting for a request head (None: a request is in)."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections and not self._make_room():
                transport.write(busy_response())
                transport.close()
                return
            self.waiting_since = self.loop.time()
            self._arm(limits.head_timeout, "request head")

        def _make_room(self) -> bool:
            """Close the connection that has waited longest for a request head, if one has
            waited ``evict_after`` seconds; False when none may be closed."""
            cutoff = self.loop.time() - limits.evict_after
            waiting = [
                other
                for other in self.connections
                if isinstance(other, LimitedH11Protocol)
                and other.waiting_since is not None
                and other.waiting_since <= cutoff
                and not other.transport.is_closing()
            ]
            if not waiting:
                return False
            oldest = min(waiting, key=lambda other: other.waiting_since or 0.0)
            log.debug("connection closed to make room: no request head for a while")
            oldest.waiting_since = None
            oldest.transport.close()
            return True

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def _watch(self) -> None:
            """Arm the deadline that fits where the client is in its request."""
            state = self.conn.their_state
            idle = state is h11.IDLE and self.conn.our_state is h11.IDLE
            if idle and self.waiting_since is None:
                self.waiting_since = self.loop.time()
            elif not idle:
                self.waiting_since = None
            if self.transport.is_closing():
                self._disarm()
            elif state is h11.SEND_BODY:
                self._disarm()
                self._arm(limits.body_timeout, "request body")
            elif state is h11.IDLE and self.conn.trailing_data[0]:
                if self.deadline is None:  # a head has begun: from its first byte, not re-armed
                    self._arm(limits.head_timeout, "request head")
            else:  # a whole request is in (the app answers), or idle: uvicorn's keep-alive
                self._disarm()

        def _arm(self, seconds: float, waiting_for: str) -> None:
            self.deadline = self.loop.call_later(seconds, self._expire, waiting_for, seconds)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _expire(self, waiting_for: str, seconds: float) -> None:
            self.deadline = None
            if not self.transport.is_closing():
                log.debug("connection closed: no whole %s within %s s", waiting_for, seconds)
                self.transport.close()

    return LimitedH11Protocol


class RepeatLimit(logging.Filter):
    """Let through at most ``burst`` records with the same message per ``window`` seconds; the
    next one let through says how many were dropped."""

    def __init__(self, burst: int = 3, window: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.seen: dict[tuple[str, str], tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        started, passed, dropped = self.seen.get(key, (now, 0, 0))
        if now - started > self.window:
            started, passed = now, 0
        if passed >= self.burst:
            self.seen[key] = (started, passed, dropped + 1)
            return False
        if dropped:
            record.msg = f"{record.msg} (and {dropped} more like it, not shown)"
        self.seen[key] = (started, passed + 1, 0)
        if len(self.seen) > 1024:  # distinct messages: keep the table small
            self.seen = {key: self.seen[key]}
        return True


class RedactToken(logging.Filter):
    """Replace the value of ``token=`` in a record's message and arguments (access logs carry
    each request's query string)."""

    PATTERN = re.compile(r"(?i)(token=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.PATTERN.sub(r"\1[redacted]", str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.PATTERN.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


FLOODABLE_LOGGERS = ("uvicorn.error", "asyncio")
"""Loggers a client can make write once per connection."""
ACCESS_LOGGER = "uvicorn.access"


def protect_logs(burst: int = 3, window: float = 60.0) -> None:
    """Install ``RepeatLimit`` on the loggers a flood of connections writes to, and
    ``RedactToken`` on the access log (idempotent)."""
    wanted = {name: RepeatLimit(burst, window) for name in FLOODABLE_LOGGERS}
    wanted[ACCESS_LOGGER] = RedactToken()
    for name, new in wanted.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, type(new))]:
            logger.removeFilter(old)
        logger.addFilter(new)


def uvicorn_config(app: Any, limits: Limits) -> Any:
    """The ``uvicorn.Config`` ``serve`` runs: our protocol and timeouts, the host's logging."""
    import uvicorn

    return uvicorn.Config(
        app,
        http=limited_protocol(limits),
        timeout_keep_alive=limits.keep_alive_timeout,
        log_config=None,
        server_header=False,
    )
