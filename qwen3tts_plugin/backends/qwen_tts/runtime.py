"""qwen_tts imported once, quietly: its banners and warnings go to the plugin's debug log."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from ...log import get_logger
from ...quiet import quiet_import
from ..failures import RUNTIME_IMPORT_ERRORS, runtime_unavailable

if TYPE_CHECKING:
    from qwen_tts import Qwen3TTSModel

log = get_logger(__name__)

IMPORT_CHATTER_LOGGERS = ("sox",)
"""Loggers that warn during ``import qwen_tts`` about what the engine never uses (SoX)."""

IMPORT_SHELL_MODULES = ("sox",)
"""qwen_tts dependencies that run a shell at import (``sox -h``), writing to fd 2 directly."""


def import_qwen_tts() -> type[Qwen3TTSModel]:
    """Import qwen_tts, its banners and warnings sent to the debug log (quiet.py);
    ``engine_unavailable`` when it is missing or broken."""
    first = sys.modules.get("qwen_tts") is None
    started = time.perf_counter()
    try:
        if first:
            quiet_import("qwen_tts", IMPORT_CHATTER_LOGGERS, IMPORT_SHELL_MODULES)
        from qwen_tts import Qwen3TTSModel
    except RUNTIME_IMPORT_ERRORS as exc:
        raise runtime_unavailable("qwen_tts", exc) from exc
    if first:
        log.info(
            "tts.import.done", module="qwen_tts", seconds=round(time.perf_counter() - started, 3)
        )
    return Qwen3TTSModel
