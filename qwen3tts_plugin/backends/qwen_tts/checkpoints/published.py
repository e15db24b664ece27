"""Real-size checkpoints: a published model's configs with seeded random weights.

From a folder of published configuration files (``config.json``, ``generation_config.json``,
``speech_tokenizer/config.json``, ...), a folder with the real sizes whose speed and memory are
the real model's; the audio is noise. Only the text vocabulary differs: its files are not
published with the configs, so the folder carries the small BPE (tokenizer.py) and the
config's special text-token ids point into it (``text_vocab_size`` keeps its real size, and so
does the text embedding). The talker never ends a text, so every call produces exactly the
frames it is given (``max_new_tokens = frames + 1``: qwen_tts 0.1.1 hard-codes
``min_new_tokens`` and ``suppress_tokens``, and its first step yields codes one step later).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from . import Recipe, dump_json
from .tokenizer import (
    special_token_ids,
    text_token_ids,
    text_vocab_size,
    tokenizer_config,
    tokenizer_files,
)

VERBATIM = (
    "generation_config.json",
    "preprocessor_config.json",
    "speech_tokenizer/configuration.json",
    "speech_tokenizer/preprocessor_config.json",
)
"""The published files a folder carries unchanged (bytes copied, never re-serialised)."""

SAVE_DTYPES = ("bfloat16", "float16", "float32")

# Keys divided by ``shrink`` (a test-only option) in each config section.
_TALKER_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "text_hidden_size",
)
_PREDICTOR_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)
_DECODER_KEYS = (
    "latent_dim",
    "codebook_dim",
    "decoder_dim",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vector_quantization_hidden_dimension",
)
_ENCODER_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "num_filters",
    "codebook_dim",
    "vector_quantization_hidden_dimension",
    "upsample_groups",
)


def published_recipe(
    config_dir: pathlib.Path, dtype: str = "bfloat16", seed: int = 0, shrink: int = 1
) -> Recipe:
    """The recipe of a random checkpoint with the sizes in ``config_dir`` (a published model's
    configs). Weights are saved in ``dtype``; ``shrink`` > 1 divides every layer count, width
    and head count (tests only)."""
    if dtype not in SAVE_DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {SAVE_DTYPES}")
    if shrink < 1:
        raise ValueError(f"shrink must be >= 1, got {shrink}")
    files = {relative: (config_dir / relative).read_bytes() for relative in VERBATIM}
    generated = {
        "config.json": model_config(config_dir, shrink),
        "tokenizer_config.json": tokenizer_config(),
        "speech_tokenizer/config.json": speech_tokenizer_config(config_dir, shrink),
    }
    files.update({path: dump_json(data).encode("utf-8") for path, data in generated.items()})
    files.update(tokenizer_files())
    return Recipe(
        name=f"{config_dir.name}-{dtype}-seed{seed}-shrink{shrink}",
        files=tuple(files.items()),
        seed=seed,
        shaping="published",
        dtype=dtype,
        never_ending_gain=1.0,
    )


def model_config(config_dir: pathlib.Path, shrink: int = 1) -> dict[str, Any]:
    """config.json: the published one with the local tokenizer's special ids (and, for a test,
    every size divided by ``shrink``; codec ids, speakers and head_dim never change)."""
    config = _published(config_dir, "config.json")
    config.update(text_token_ids())
    talker = config["talker_config"]
    if shrink > 1:
        _divide(talker, _TALKER_KEYS, shrink)
        predictor = talker["code_predictor_config"]
        _divide(predictor, _PREDICTOR_KEYS, shrink)
        predictor["layer_types"] = ["full_attention"] * predictor["num_hidden_layers"]
        text_rows = -(-talker["text_vocab_size"] // shrink // 128) * 128
        talker["text_vocab_size"] = max(text_rows, text_vocab_size())
    highest = max(special_token_ids().values())
    if highest >= talker["text_vocab_size"]:
        raise ValueError(f"token id {highest} outside text_vocab_size {talker['text_vocab_size']}")
    return config


def speech_tokenizer_config(config_dir: pathlib.Path, shrink: int = 1) -> dict[str, Any]:
    """speech_tokenizer/config.json: the published one (sizes divided by ``shrink`` for tests)."""
    config = _published(config_dir, "speech_tokenizer/config.json")
    if shrink > 1:
        _divide(config["decoder_config"], _DECODER_KEYS, shrink)
        _divide(config["encoder_config"], _ENCODER_KEYS, shrink)
    return config


def _published(config_dir: pathlib.Path, relative: str) -> dict[str, Any]:
    return json.loads((config_dir / relative).read_text(encoding="utf-8"))


def _divide(section: dict[str, Any], keys: tuple[str, ...], shrink: int) -> None:
    """Divide each of ``keys`` in ``section`` by ``shrink`` (at least 1)."""
    for key in keys:
        section[key] = max(1, section[key] // shrink)
