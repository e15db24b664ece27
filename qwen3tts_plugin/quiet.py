"""Third-party chatter kept off the host's terminal and sent to the plugin's debug log.

``import qwen_tts`` prints a flash-attn banner with ``print``; its dependency ``sox`` runs
``sox -h`` in a shell at import, whose "sox: not found" goes straight to file descriptor 2, and
logs a warning. None of it is the host's business; all of it is kept, at debug level, as
``tts.third_party.output`` and ``tts.third_party.log`` events.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import IO, Any

from .log import get_logger

log = get_logger(__name__)

_import_lock = threading.RLock()


def quiet_import(
    name: str, loggers: tuple[str, ...] = (), shell_modules: tuple[str, ...] = ()
) -> ModuleType:
    """Import ``name`` with what it prints and what ``loggers`` log sent to the debug log.

    While it imports, this thread's writes to ``sys.stdout``/``sys.stderr`` are captured;
    other threads' writes go where they always go. ``shell_modules`` are dependencies known to
    start a child process at import that writes to file descriptor 1 or 2: they are imported
    first, on their own, with both descriptors captured for that short moment (any thread's
    raw writes to them in that window land in the debug log too).
    """
    records: list[logging.LogRecord] = []
    python_out = io.StringIO()
    with _import_lock:
        try:
            with _diverted(loggers, records):
                for module in shell_modules:
                    if module not in sys.modules and importlib.util.find_spec(module):
                        _import_with_fds_captured(module)
                with _python_capture(python_out):
                    return importlib.import_module(name)
        finally:  # logged once the streams are the host's again, even when the import failed
            _log_output(name, "python", python_out.getvalue())
            for record in records:
                log.debug(
                    "tts.third_party.log",
                    source=f"import {name}",
                    logger=record.name,
                    level=record.levelname,
                    text=record.getMessage().strip(),
                )


@contextlib.contextmanager
def quiet_output(source: str) -> Iterator[None]:
    """What this thread prints in the block (a library's progress lines) into the debug log,
    as ``tts.third_party.output``; other threads print as usual."""
    python_out = io.StringIO()
    try:
        with _python_capture(python_out):
            yield
    finally:
        text = python_out.getvalue().strip()
        if text:
            log.debug("tts.third_party.output", source=source, channel="python", text=text)


def _import_with_fds_captured(module: str) -> None:
    with tempfile.TemporaryFile() as raw:
        try:
            with _fd_capture(raw):
                importlib.import_module(module)
        finally:
            raw.seek(0)
            _log_output(module, "fd", raw.read().decode("utf-8", "replace"))


def _log_output(module: str, channel: str, text: str) -> None:
    text = text.strip()
    if text:
        log.debug("tts.third_party.output", source=f"import {module}", channel=channel, text=text)


@contextlib.contextmanager
def _fd_capture(target: IO[bytes]) -> Iterator[None]:
    """File descriptors 1 and 2 pointed at ``target`` for the block (skipped where closed)."""
    saved: dict[int, int] = {}
    _flush_standard_streams()
    try:
        for fd in (1, 2):
            try:
                saved[fd] = os.dup(fd)
            except OSError:  # a daemon with fd 1 or 2 closed: nothing to keep off it
                continue
            os.dup2(target.fileno(), fd)
        yield
    finally:
        _flush_standard_streams()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


@contextlib.contextmanager
def _python_capture(target: io.StringIO) -> Iterator[None]:
    """This thread's ``sys.stdout``/``sys.stderr`` writes into ``target`` for the block.

    A module imported meanwhile may keep the stream it found (a logging handler created at
    import does): after the block the stand-ins forward every write to the original streams,
    so such a reference behaves as if nothing had been swapped.
    """
    originals = sys.stdout, sys.stderr
    routed = [_ThreadRouted(target, stream) for stream in originals]
    sys.stdout, sys.stderr = routed  # type: ignore[assignment]
    try:
        yield
    finally:
        for stand_in in routed:
            stand_in.settle()
        if sys.stdout is routed[0]:
            sys.stdout = originals[0]
        if sys.stderr is routed[1]:
            sys.stderr = originals[1]


class _ThreadRouted(io.TextIOBase):
    """A text stream: the creating thread's writes go to ``mine`` until ``settle()``, every
    other write to ``theirs`` (the stream it stands in for)."""

    def __init__(self, mine: io.StringIO, theirs: Any) -> None:
        super().__init__()
        self._owner: int | None = threading.get_ident()
        self._mine = mine
        self._theirs = theirs

    def settle(self) -> None:
        """From now on, every write goes to the original stream."""
        self._owner = None

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
        stream = self._stream()
        return bool(stream is not None and stream is not self._mine and stream.isatty())

    def fileno(self) -> int:
        if self._theirs is None:
            raise io.UnsupportedOperation("no underlying stream")
        return self._theirs.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._theirs, "encoding", None) or "utf-8"


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
