"""Logging for the host application: structlog and stdlib logging, both to stderr.

Libraries (the engine included) only call ``structlog.get_logger``; the application decides how
logs look. Default level WARNING, ``-v`` INFO, ``--debug`` DEBUG. ``--log-json`` renders JSON
lines, otherwise structlog's console renderer. stdout is left to results.
"""

from __future__ import annotations

import logging
import sys

import structlog

_handler: logging.Handler | None = None
"""The stdlib handler this module installed on the root logger, replaced on reconfiguration."""
_root_level: int | None = None
"""The root logger's level before ``configure`` changed it."""


def configure(json_lines: bool = False, level: int = logging.WARNING) -> None:
    """Send structlog events and stdlib records to stderr, rendered alike."""
    global _handler, _root_level
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
        processors=[structlog.contextvars.merge_contextvars, *shared, *tail, renderer],
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


def reset() -> None:
    """Undo ``configure``: structlog defaults, and the stdlib handler removed."""
    global _handler, _root_level
    structlog.reset_defaults()
    if _handler is not None:
        root = logging.getLogger()
        root.removeHandler(_handler)
        if _root_level is not None:
            root.setLevel(_root_level)
        _handler = _root_level = None
