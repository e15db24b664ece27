"""Work spread over daemon threads, results taken as each ends.

Daemon threads, so a process interrupted (Ctrl-C during a dub) exits without waiting for work
in flight: a WAV half-written then is a temporary file the next run removes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

A = TypeVar("A")
T = TypeVar("T")


def completed(
    work: Callable[[A], T],
    calls: Sequence[A],
    in_flight: int,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[tuple[int, T]]:
    """``(position, work(calls[position]))`` as each call ends, ``in_flight`` running at once;
    no call starts once ``stop()`` says so. An exception in ``work`` is raised here, the calls
    still running left to end on their own."""
    results: queue.Queue = queue.Queue()

    def run(position: int) -> None:
        try:
            results.put((position, work(calls[position]), None))
        except BaseException as exc:  # noqa: BLE001  (raised in the caller's thread)
            results.put((position, None, exc))

    started = running = 0
    while True:
        while running < in_flight and started < len(calls) and not stop():
            threading.Thread(target=run, args=(started,), daemon=True).start()
            started += 1
            running += 1
        if not running:
            return
        position, value, exc = results.get()
        running -= 1
        if exc is not None:
            raise exc
        yield position, value
