"""The engine's structlog logger. The engine never configures logging; hosts do."""

from __future__ import annotations

from typing import Any

import structlog

from . import PROVIDER


def get_logger(name: str) -> Any:
    """A lazy logger for module ``name`` whose every event carries ``provider``.

    Lazy on purpose: it reads the host's structlog configuration on each call, so a host that
    configures logging after importing the plugin is still obeyed.
    """
    return structlog.get_logger(name, provider=PROVIDER)
