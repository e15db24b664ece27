"""Qwen3-TTS engine for the ``autocut_tts`` hook contract.

Importing this package is cheap: torch, transformers and qwen_tts are imported on the first call
that needs them, never at start-up.
"""

__version__ = "0.1.0"

PROVIDER = "qwen3_tts"
"""The ``EngineConfig.provider`` this engine answers."""

DISPLAY_NAME = "Qwen3-TTS"
