"""Third-party chatter kept off the host's terminal and sent to the plugin's debug log.

``import qwen_tts`` prints a flash-attn banner with ``print``, runs ``sox -h`` in a shell whose
"sox: not found" goes straight to file descriptor 2, and logs a SoX warning. None of it is the
host's business; all of it is kept, at debug level, as ``tts.third_party.output`` and
``tts.third_party.log`` events.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import IO, Any

from .log import get_logger

log = get_logger(__name__)

_capture_lock = threading.Lock()


@contextlib.contextmanager
def third_party_output(source: str, loggers: tuple[str, ...] = ()) -> Iterator[None]:
    """Capture what the block writes to stdout and stderr, and what ``loggers`` log, into the
    debug log.

    Captured: this thread's writes to ``sys.stdout``/``sys.stderr``, and everything written to
    file descriptors 1 and 2 (child processes, C code). Other threads' Python writes pass
    through to the host's streams as usual; only their raw fd writes made inside the block
    (rare, and the block is short and runs once) land in the debug log too.
    """
    records: list[logging.LogRecord] = []
    python_out = io.StringIO()
    with _capture_lock, tempfile.TemporaryFile() as raw:
        try:
            with (
                _diverted(loggers, records),
                _fd_capture(raw) as saved,
                _python_capture(python_out, saved),
            ):
                yield
        finally:  # logged once the streams are the host's again, even when the block failed
            raw.seek(0)
            _log_output(source, "python", python_out.getvalue())
            _log_output(source, "fd", raw.read().decode("utf-8", "replace"))
            for record in records:
                log.debug(
                    "tts.third_party.log",
                    source=source,
                    logger=record.name,
                    level=record.levelname,
                    text=record.getMessage().strip(),
                )


def _log_output(source: str, channel: str, text: str) -> None:
    text = text.strip()
    if text:
        log.debug("tts.third_party.output", source=source, channel=channel, text=text)


@contextlib.contextmanager
def _fd_capture(target: IO[bytes]) -> Iterator[dict[int, int]]:
    """File descriptors 1 and 2 pointed at ``target`` for the block (skipped where closed).

    Yields a copy of each original descriptor, by number, open until the block ends.
    """
    saved: dict[int, int] = {}
    _flush_standard_streams()
    try:
        for fd in (1, 2):
            try:
                saved[fd] = os.dup(fd)
            except OSError:  # a daemon with fd 1 or 2 closed: nothing to keep off it
                continue
            os.dup2(target.fileno(), fd)
        yield saved
    finally:
        _flush_standard_streams()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


@contextlib.contextmanager
def _python_capture(target: io.StringIO, saved: dict[int, int]) -> Iterator[None]:
    """``sys.stdout``/``sys.stderr`` writes of this thread into ``target``; other threads'
    writes go where they went before (to the original descriptors, while 1 and 2 point
    elsewhere)."""
    owner = threading.get_ident()
    originals = sys.stdout, sys.stderr
    with contextlib.ExitStack() as passthroughs:
        theirs = [
            _passthrough(stream, fd, saved, passthroughs)
            for stream, fd in zip(originals, (1, 2), strict=True)
        ]
        sys.stdout = _ThreadRouted(owner, target, theirs[0])  # type: ignore[assignment]
        sys.stderr = _ThreadRouted(owner, target, theirs[1])  # type: ignore[assignment]
        try:
            yield
        finally:
            sys.stdout, sys.stderr = originals


def _passthrough(stream: Any, fd: int, saved: dict[int, int], closing: contextlib.ExitStack) -> Any:
    """Where another thread's writes to ``stream`` should go while ``fd`` is captured."""
    try:
        on_fd = stream is not None and stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        on_fd = False
    if not on_fd or fd not in saved:
        return stream  # the host's own object (a pytest capture, a log file): unaffected
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return closing.enter_context(
        open(saved[fd], "w", encoding=encoding, errors="backslashreplace", closefd=False)
    )


class _ThreadRouted(io.TextIOBase):
    """A text stream that sends one thread's writes to ``mine`` and every other's to ``theirs``."""

    def __init__(self, owner: int, mine: io.StringIO, theirs: Any) -> None:
        super().__init__()
        self._owner = owner
        self._mine = mine
        self._theirs = theirs

    def _stream(self) -> Any:
        return self._mine if threading.get_ident() == self._owner else self._theirs

    def write(self, text: str) -> int:
        stream = self._stream()
        if stream is None:  # pythonw: no console streams at all
            return len(text)
        return stream.write(text)

    def flush(self) -> None:
        stream = self._stream()
        if stream is not None:
            stream.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


@contextlib.contextmanager
def _diverted(names: tuple[str, ...], records: list[logging.LogRecord]) -> Iterator[None]:
    """Records of the ``names`` loggers kept in ``records`` instead of being handled."""
    divert = _Keep(records)
    for name in names:
        logging.getLogger(name).addFilter(divert)
    try:
        yield
    finally:
        for name in names:
            logging.getLogger(name).removeFilter(divert)


class _Keep(logging.Filter):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self._records = records

    def filter(self, record: logging.LogRecord) -> bool:
        self._records.append(record)
        return False


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):  # closed or detached: nothing to flush
                stream.flush()
