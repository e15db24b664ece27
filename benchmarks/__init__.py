"""Benchmarks: what the plugin costs on top of qwen_tts. Run ``python -m benchmarks run``."""
