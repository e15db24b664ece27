"""structlog's ``capture_logs`` for tests of engine work (shared by the test modules).

The engine's decode thread logs the end of a generate call (``tts.generate.done``) after it
has handed each caller its outcome, so a caller may return before that line. This
``capture_logs`` starts and ends with no engine thread running: a test sees the lines of its
own calls, all of them, and none of an earlier test's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from structlog.testing import capture_logs as structlog_capture_logs

from qwen3tts_plugin.scheduler import ENGINE_THREAD


def engine_idle(timeout: float = 60.0) -> None:
    """Wait until no engine thread runs (each ends once its queue is empty)."""
    deadline = time.monotonic() + timeout
    while any(thread.name == ENGINE_THREAD for thread in threading.enumerate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"an engine thread still runs after {timeout} s")
        time.sleep(0.002)


@contextlib.contextmanager
def capture_logs() -> Iterator[list[dict]]:
    engine_idle()
    with structlog_capture_logs() as logs:
        try:
            yield logs
        finally:
            engine_idle()
