"""Logging for the host application: structlog and stdlib logging, both to stderr.

Libraries (the engine included) only call ``structlog.get_logger``; the application decides how
logs look. Default level WARNING, ``-v`` INFO, ``--debug`` DEBUG. ``--log-json`` renders JSON
lines, otherwise structlog's console renderer. stdout is left to results.

Each error is shown once. An event that carries an error ``code`` is an engine's record of a
failure it hands to its caller as a ``TtsError`` (raised, or in a batch item); a command that
reports its errors itself (every CLI command but ``serve``) prints that error, so at the
default level such events are held back (``caller_reports_errors``); ``-v`` shows them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_handler: logging.Handler | None = None
"""The stdlib handler this module installed on the root logger, replaced on reconfiguration."""
_root_level: int | None = None
"""The root logger's level before ``configure`` changed it."""
_hold_back_reported = False
"""Whether events that carry an error ``code`` are dropped (see the module docstring)."""


def configure(
    json_lines: bool = False, level: int = logging.WARNING, caller_reports_errors: bool = False
) -> None:
    """Send structlog events and stdlib records to stderr, rendered alike.

    ``caller_reports_errors``: the application prints the errors it gets, so at a level above
    INFO the events that carry an error ``code`` are not shown as well.
    """
    global _handler, _root_level
    hold_back_reported(caller_reports_errors and level > logging.INFO)
    shared = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    tail = [structlog.processors.format_exc_info] if json_lines else []
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            drop_reported,
            *shared,
            *tail,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared, *tail],
        )
    )
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    else:
        _root_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    _handler = handler


def hold_back_reported(enabled: bool) -> None:
    """Drop (True) or show (False) the events that carry an error ``code`` from now on; e.g.
    shown again before serving, where no command reports the errors of requests."""
    global _hold_back_reported
    _hold_back_reported = enabled


def drop_reported(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: an event that carries an error ``code`` is dropped while held back."""
    if _hold_back_reported and event_dict.get("code"):
        raise structlog.DropEvent
    return event_dict


def reset() -> None:
    """Undo ``configure``: structlog defaults, and the stdlib handler removed."""
    global _handler, _root_level
    structlog.reset_defaults()
    hold_back_reported(False)
    if _handler is not None:
        root = logging.getLogger()
        root.removeHandler(_handler)
        if _root_level is not None:
            root.setLevel(_root_level)
        _handler = _root_level = None
