"""The one checkpoint builder: loadable Qwen3-TTS folders with seeded random weights.

Real weights cannot be downloaded in tests or CI, so tests and benchmarks build folders that
the unmodified ``qwen_tts.Qwen3TTSModel.from_pretrained`` loads: ``tiny`` writes ~1 MB folders
(every variant) whose noise is audible; ``published`` writes the real sizes from a folder of
published configs (speed and memory are the real model's, the audio is noise). A ``Recipe``
says what a folder holds; ``build`` writes one, ``cached`` reuses a folder built from the same
recipe. Both build into a temporary sibling folder and rename it into place, so a folder is
either whole or absent, even when several processes build at once.

Importing this package is cheap: torch, tokenizers and qwen_tts are imported by the functions
that make weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BUILDER_VERSION = 3
"""Bump when the builder's output changes for the same recipe (it is part of the cache key)."""


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a checkpoint folder's content."""

    name: str
    """The folder's name in a cache, before the hash of the recipe."""
    files: tuple[tuple[str, bytes], ...]
    """Every file but the weights: relative path and bytes (configs, tokenizer)."""
    seed: int
    shaping: str
    """How the random weights are made useful: ``audible`` or ``published`` (weights.py)."""
    dtype: str = "float32"
    """The dtype floating weights are saved in (``from_pretrained`` casts them at load)."""
    never_ending_gain: float | None = None
    """Set: the talker never ends a text (weights.never_end)."""

    def config(self, relative: str) -> dict[str, Any]:
        """One of the recipe's JSON files, parsed."""
        return json.loads(dict(self.files)[relative])


def dump_json(data: Any) -> str:
    """Serialise like the published files: 2-space indent, UTF-8, trailing newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def cache_key(recipe: Recipe) -> str:
    """Hash of everything that decides the folder's content."""
    from . import weights

    digest = hashlib.sha256()
    facts = {
        "builder_version": BUILDER_VERSION,
        "name": recipe.name,
        "seed": recipe.seed,
        "shaping": recipe.shaping,
        "dtype": recipe.dtype,
        "never_ending_gain": recipe.never_ending_gain,
        "gains": [weights.VOCODER_GAIN, weights.ATTENTION_GAIN, weights.CODE_PREDICTOR_SHARPNESS],
    }
    digest.update(json.dumps(facts, sort_keys=True).encode("utf-8"))
    for relative, data in sorted(recipe.files):
        digest.update(relative.encode("utf-8") + b"\0" + data + b"\0")
    return digest.hexdigest()[:16]


def write_folder(folder: pathlib.Path, recipe: Recipe) -> None:
    """Write a complete checkpoint into the empty folder ``folder``."""
    from .weights import write_weights

    for relative, data in recipe.files:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    write_weights(
        folder,
        recipe.config("config.json"),
        recipe.config("speech_tokenizer/config.json"),
        recipe.seed,
        recipe.shaping,
        recipe.dtype,
        recipe.never_ending_gain,
    )


def build(dest: str | os.PathLike, recipe: Recipe) -> pathlib.Path:
    """Write ``recipe``'s folder at ``dest`` (an existing folder there is replaced whole)."""
    return _written(pathlib.Path(dest), recipe, replace_folder)


def cached(recipe: Recipe, root: str | os.PathLike) -> pathlib.Path:
    """``recipe``'s folder in ``root``, built once: its name carries the recipe's hash, so a
    changed recipe gets a new folder. When another process publishes the same folder first,
    theirs is kept."""
    target = pathlib.Path(root) / f"{recipe.name}-{cache_key(recipe)}"
    if (target / "config.json").is_file():
        return target
    return _written(target, recipe, publish_once)


def _written(
    target: pathlib.Path,
    recipe: Recipe,
    publish: Callable[[pathlib.Path, pathlib.Path], None],
) -> pathlib.Path:
    """The folder written into a temporary sibling of ``target``, then ``publish(staging,
    target)``; nothing is left behind when either fails."""
    staging = temp_sibling(target)
    try:
        write_folder(staging, recipe)
        publish(staging, target)
    finally:
        remove_if_left(staging)
    return target


def temp_sibling(dest: pathlib.Path) -> pathlib.Path:
    """A new empty folder beside ``dest``, so that renaming it onto ``dest`` stays on one disk."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.tmp"
    folder.mkdir()
    return folder


def remove_if_left(folder: pathlib.Path) -> None:
    """Delete a staging folder that was not renamed into place (after an error)."""
    if folder.exists():
        shutil.rmtree(folder)


def replace_folder(new: pathlib.Path, dest: pathlib.Path) -> None:
    """Rename ``new`` onto ``dest``, first moving an existing ``dest`` aside and deleting it."""
    if not dest.exists():
        os.replace(new, dest)
        return
    old = temp_sibling(dest)
    os.replace(dest, old / dest.name)
    os.replace(new, dest)
    shutil.rmtree(old)


def publish_once(new: pathlib.Path, target: pathlib.Path) -> None:
    """Rename ``new`` to ``target`` unless another process got there first (then keep theirs)."""
    try:
        os.rename(new, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
