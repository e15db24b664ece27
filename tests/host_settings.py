"""The example host's settings file, written for a test (shared by its test modules)."""

from __future__ import annotations

import json
from pathlib import Path


def write_settings(path: Path, **extra_params) -> Path:
    """A settings file with one enabled qwen3_tts config holding ``extra_params``."""
    config = {"provider": "qwen3_tts", "enabled": True, "extra_params": extra_params}
    path.write_text(json.dumps({"configs": {"qwen3_tts_default": config}}), encoding="utf-8")
    return path
