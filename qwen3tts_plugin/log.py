"""The engine's logger. The engine never configures logging, adds no handler, never prints.

Where events go is the host's choice, made when each event is logged:

- a host that configured structlog (``structlog.configure``) gets every event through its own
  pipeline, as an event dict carrying ``provider``;
- otherwise events go to the standard library, to the logger named after the module
  (``qwen3tts_plugin.engine``, ...), rendered as ``"tts.load.done device=cpu seconds=0.12"``
  with the event dict in ``record.tts``. A host that configured ``logging`` sees them at the
  levels it chose; one that configured nothing sees warnings and errors on stderr only
  (Python's last-resort handler), and nothing on stdout.

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
        self._stdlib = structlog.wrap_logger(
            logging.getLogger(name),
            processors=[structlog.stdlib.filter_by_level, _to_stdlib_call],
            wrapper_class=structlog.stdlib.BoundLogger,
            provider=PROVIDER,
        )

    def _target(self) -> Any:
        if structlog.is_configured():
            return structlog.get_logger(self._name, provider=PROVIDER)
        return self._stdlib

    def debug(self, event: str, **fields: Any) -> None:
        self._target().debug(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._target().info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._target().warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._target().error(event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the exception being handled (its traceback) attached."""
        self._target().exception(event, **fields)


def get_logger(name: str) -> PluginLogger:
    """The logger for module ``name``; every event carries ``provider``."""
    return PluginLogger(name)


def _to_stdlib_call(
    _logger: Any, _method: str, event_dict: dict[str, Any]
) -> tuple[tuple[str], dict[str, Any]]:
    """The event as one stdlib call: a readable message, the event dict as ``record.tts``."""
    exc_info = event_dict.pop("exc_info", None)
    fields = {k: v for k, v in event_dict.items() if k not in ("event", "provider")}
    message = " ".join(
        [str(event_dict.get("event")), *(f"{k}={_value(v)}" for k, v in fields.items())]
    )
    return (message,), {"exc_info": exc_info, "extra": {"tts": event_dict}}


def _value(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() for c in text) else text
