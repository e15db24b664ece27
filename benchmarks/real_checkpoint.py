"""The real-size random 0.6B CustomVoice checkpoint, for the GPU benchmark and batch sweeps.

Built by the package's one checkpoint builder (``published_recipe``) from the published
configuration files carried in ``data/`` (byte-for-byte copies; see ``data/README.md``), with
seeded random weights: speed and memory are the real model's, the audio is noise, and the
talker never ends a text, so every call produces exactly the frames it is given
(``max_new_tokens = frames + 1``).

``python -m benchmarks.gpu_real`` builds (or reuses) it, loads it with unmodified qwen_tts,
generates once and prints JSON.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any

from qwen3tts_plugin.backends.qwen_tts import checkpoints
from qwen3tts_plugin.backends.qwen_tts.checkpoints import published

__all__ = [
    "CACHE_ENV",
    "DATA_DIR",
    "build_real_size_checkpoint",
    "folder_bytes",
    "model_config",
    "real_size_checkpoint",
    "speech_tokenizer_config",
]

DATA_DIR = pathlib.Path(__file__).resolve().parent / "data" / "Qwen3-TTS-12Hz-0.6B-CustomVoice"
"""The published configuration files (byte-for-byte copies; see ``data/README.md``)."""

CACHE_ENV = "QWEN3TTS_REAL_CACHE"
"""Environment variable naming the folder ``real_size_checkpoint`` caches into."""


def model_config(shrink: int = 1) -> dict[str, Any]:
    """The checkpoint's config.json (real sizes; every size divided by ``shrink`` for tests)."""
    return published.model_config(DATA_DIR, shrink)


def speech_tokenizer_config(shrink: int = 1) -> dict[str, Any]:
    """The checkpoint's speech_tokenizer/config.json (sizes divided by ``shrink`` for tests)."""
    return published.speech_tokenizer_config(DATA_DIR, shrink)


def build_real_size_checkpoint(
    dest: str | os.PathLike, dtype: str = "bfloat16", seed: int = 0, shrink: int = 1
) -> pathlib.Path:
    """Write the checkpoint at ``dest``: weights saved in ``dtype`` (``bfloat16``: a 2.15 GB
    folder; ``from_pretrained`` casts them to whatever dtype it loads with). ``shrink`` > 1
    divides every layer count, width and head count (tests only)."""
    return checkpoints.build(dest, published.published_recipe(DATA_DIR, dtype, seed, shrink))


def real_size_checkpoint(
    dtype: str = "bfloat16",
    seed: int = 0,
    shrink: int = 1,
    cache_dir: str | os.PathLike | None = None,
) -> pathlib.Path:
    """The checkpoint, built once into ``cache_dir`` ($QWEN3TTS_REAL_CACHE, else
    ``qwen3tts-real`` in the temp folder); safe when several processes build at once."""
    root = (
        cache_dir
        or os.environ.get(CACHE_ENV)
        or pathlib.Path(tempfile.gettempdir()) / "qwen3tts-real"
    )
    return checkpoints.cached(published.published_recipe(DATA_DIR, dtype, seed, shrink), root)


def folder_bytes(path: pathlib.Path) -> int:
    """Total size of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
