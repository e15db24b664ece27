"""Whose turn it is on the one resident model: serialised, and grouped by model.

Calls wait in arrival order, except that a call for the model already in memory goes before
calls that would replace it, so a settings change does not make the engine reload back and forth
between two models while both kinds of calls are queued. That preference is bounded: after
``max_in_a_row`` such calls while another model is wanted, the longest-waiting call goes next.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator


class Turns:
    """One call at a time; waiting calls for the resident model first (bounded)."""

    def __init__(self, resident_key: Callable[[], Hashable | None], max_in_a_row: int = 16):
        self._resident_key = resident_key
        self._max_in_a_row = max_in_a_row
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._busy = False
        self._in_a_row = 0

    @contextlib.contextmanager
    def turn(self, key: Hashable | None) -> Iterator[None]:
        """Hold the engine for one call that needs the model ``key`` (None: any)."""
        ticket = _Ticket(key)
        with self._cond:
            self._waiting.append(ticket)
            while self._busy or self._next() is not ticket:
                self._cond.wait()
            jumped = self._waiting[0] is not ticket  # went before a call that arrived earlier
            self._in_a_row = self._in_a_row + 1 if jumped else 0
            self._waiting.remove(ticket)
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _next(self) -> _Ticket | None:
        if not self._waiting:
            return None
        if self._in_a_row < self._max_in_a_row:
            resident = self._resident_key()
            for ticket in self._waiting:
                if resident is not None and ticket.key == resident:
                    return ticket
        return self._waiting[0]


class _Ticket:
    __slots__ = ("key",)

    def __init__(self, key: Hashable | None):
        self.key = key
