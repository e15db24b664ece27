"""The engine's logger. The engine never configures logging, adds no handler, never prints.

Where events go is the host's choice, made when each event is logged:

- a host that configured structlog (``structlog.configure``) gets every event through its own
  pipeline, as an event dict carrying ``provider``;
- otherwise events go to the standard library, to the logger named after the module
  (``qwen3tts_plugin.engine``, ...), as ``"tts.load.done device=cpu seconds=0.12"`` with
  the event dict in ``record.tts`` and the engine's own file and line. A host that
  configured ``logging`` sees them at the levels it chose; one that configured nothing sees
  warnings and errors on stderr only (Python's last-resort handler), and nothing on stdout.

structlog itself, unconfigured, would print every event, DEBUG included, on stdout: a library
must not do that to its host.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

from . import PROVIDER


class PluginLogger:
    """A structlog-style logger (``log.info("tts.x.y", key=value)``) that obeys the host."""

    __slots__ = ("_name", "_stdlib")

    def __init__(self, name: str) -> None:
        self._name = name
        self._stdlib = logging.getLogger(name)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the exception being handled (its traceback) attached."""
        self._log(logging.ERROR, event, {**fields, "exc_info": True})

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            method = logging.getLevelName(level).lower()
            getattr(structlog.get_logger(self._name, provider=PROVIDER), method)(event, **fields)
            return
        if not self._stdlib.isEnabledFor(level):
            return
        exc_info = fields.pop("exc_info", None)
        event_dict = {"event": event, "provider": PROVIDER, **fields}
        message = " ".join([event, *(f"{k}={_value(v)}" for k, v in fields.items())])
        # stacklevel 3: the record names the engine's line that logged, not this module.
        self._stdlib.log(level, message, exc_info=exc_info, extra={"tts": event_dict}, stacklevel=3)


def get_logger(name: str) -> PluginLogger:
    """The logger for module ``name``; every event carries ``provider``."""
    return PluginLogger(name)


def _value(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() for c in text) else text
