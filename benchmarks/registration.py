"""1. What loading the engine's entry point costs a host at start-up (fresh interpreters).

Both children import what a host using the contract already pays for (pluggy, pydantic,
structlog); the plugin child then builds the plugin manager and loads the entry points. The
difference of the medians is the plugin's cost on top.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .stats import Timing

BASELINE = "import pluggy, pydantic, structlog"
PLUGIN = BASELINE + "; import hookspecs; pm = hookspecs.plugin_manager()"
CHILD = """
import json, sys, time
started = time.perf_counter()
{code}
seconds = time.perf_counter() - started
heavy = [m for m in ("torch", "transformers", "qwen_tts", "numpy") if m in sys.modules]
print(json.dumps({{"seconds": seconds, "heavy": heavy}}))
"""
TARGET_EXTRA_S = 0.030


def _child(code: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(code=code)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def run(repeats: int) -> dict[str, Any]:
    _child(PLUGIN)  # warm the file cache
    base, plugin, heavy = [], [], set()
    for _ in range(repeats):
        base.append(_child(BASELINE)["seconds"])
        result = _child(PLUGIN)
        plugin.append(result["seconds"])
        heavy.update(result["heavy"])
    base_t, plugin_t = Timing.of(base), Timing.of(plugin)
    extra = plugin_t.median - base_t.median
    return {
        "baseline": base_t.as_dict(),
        "plugin_manager": plugin_t.as_dict(),
        "extra_s": extra,
        "heavy_imported": sorted(heavy),
        "target_extra_s": TARGET_EXTRA_S,
        "met": extra < TARGET_EXTRA_S and not heavy,
    }
