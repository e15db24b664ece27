"""Tiny, deterministic, randomly initialised Qwen3-TTS checkpoints for tests and demos.

Real weights cannot be downloaded in tests, so this module gives model folders (~1 MB) with
the same files and config keys as a published ``Qwen/Qwen3-TTS-12Hz-*`` folder, sized down,
that the unmodified ``qwen_tts.Qwen3TTSModel.from_pretrained(path, device_map="cpu",
dtype=torch.float32)`` loads and synthesises with. The audio is noise, but it is finite,
audible, 24 kHz, and the same for the same seed. The builder itself lives with the rest of
what talks to qwen_tts (``backends/qwen_tts/checkpoints``); this is its face for tests, the
example host's smoke run and the benchmarks.

Importing this module is cheap: torch, tokenizers and qwen_tts are imported when weights are
built.
"""

from __future__ import annotations

import os
import pathlib

from .backends.qwen_tts import checkpoints
from .backends.qwen_tts.checkpoints.tiny import (
    SAMPLE_RATE,
    TINY_DIALECT_SPEAKER,
    TINY_LANGUAGES,
    TINY_SPEAKERS,
    VARIANTS,
    tiny_recipe,
)
from .backends.qwen_tts.checkpoints.tokenizer import text_token_ids

__all__ = [
    "CACHE_ENV",
    "SAMPLE_RATE",
    "TINY_DIALECT_SPEAKER",
    "TINY_LANGUAGES",
    "TINY_SPEAKERS",
    "VARIANTS",
    "build_tiny_checkpoint",
    "text_token_ids",
    "tiny_checkpoint",
    "tiny_checkpoint_without_eos",
]

CACHE_ENV = "QWEN3TTS_TINY_CACHE"
"""Environment variable naming the folder ``tiny_checkpoint`` caches into."""


def build_tiny_checkpoint(
    dest: str | os.PathLike, variant: str = "custom_voice", seed: int = 0
) -> pathlib.Path:
    """Write a tiny checkpoint folder for ``variant`` at ``dest`` (created; overwritten
    atomically: built into a temp sibling folder, then renamed) and return its path."""
    return checkpoints.build(dest, tiny_recipe(variant, seed))


def tiny_checkpoint(
    variant: str = "custom_voice", seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> pathlib.Path:
    """A cached tiny checkpoint folder, built once (safe when several processes build at once).

    The folder name holds a hash of the builder version, variant, seed and generated files, so
    a changed recipe gets a new folder.
    """
    return checkpoints.cached(tiny_recipe(variant, seed), cache_dir or default_cache_dir())


def tiny_checkpoint_without_eos(
    variant: str = "custom_voice", seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> pathlib.Path:
    """A cached tiny checkpoint whose talker never ends a text: every generation uses its
    whole ``max_new_tokens`` budget, greedy or sampled (truncation, tested for real). Its
    weights are the same seed's tiny checkpoint's but for the talker's codec head."""
    recipe = tiny_recipe(variant, seed, never_ending=True)
    return checkpoints.cached(recipe, cache_dir or default_cache_dir())


def default_cache_dir() -> pathlib.Path:
    """$QWEN3TTS_TINY_CACHE, else the user cache folder of qwen3tts_plugin plus ``tiny``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return pathlib.Path(configured)
    import platformdirs

    return pathlib.Path(platformdirs.user_cache_dir("qwen3tts_plugin")) / "tiny"
