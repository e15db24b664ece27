"""Tiny, deterministic, randomly initialised Qwen3-TTS checkpoints for tests and demos.

Real weights cannot be downloaded in tests, so this module writes a model folder (~1 MB) with the
same files and config keys as a published ``Qwen/Qwen3-TTS-12Hz-*`` folder, sized down, that the
unmodified ``qwen_tts.Qwen3TTSModel.from_pretrained(path, device_map="cpu", dtype=torch.float32)``
loads and synthesises with. The audio is noise, but it is finite, audible, 24 kHz, and the same
for the same seed.

Importing this module is cheap: torch, tokenizers and qwen_tts are imported inside the functions
that build weights.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import pathlib
import shutil
import sys
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = [
    "BUILDER_VERSION",
    "CACHE_ENV",
    "SAMPLE_RATE",
    "TINY_DIALECT_SPEAKER",
    "TINY_LANGUAGES",
    "TINY_SPEAKERS",
    "VARIANTS",
    "build_tiny_checkpoint",
    "text_token_ids",
    "tiny_checkpoint",
]

BUILDER_VERSION = 2
"""Bump when the builder's output changes for the same inputs (it is part of the cache key)."""

VARIANTS = ("custom_voice", "voice_design", "base")
"""The ``tts_model_type`` values a tiny checkpoint can have."""

TINY_SPEAKERS = ["eric", "ryan", "serena", "vivian"]
"""Speakers of the custom_voice variant, as ``get_supported_speakers()`` lists them."""

TINY_LANGUAGES = ["auto", "chinese", "english", "german"]
"""Languages of every variant, as ``get_supported_languages()`` lists them."""

TINY_DIALECT_SPEAKER = "eric"
"""The custom_voice speaker who switches to ``sichuan_dialect`` for Chinese or Auto text."""

SAMPLE_RATE = 24000
"""Input and output sample rate of the speech tokenizer (Hz)."""

CACHE_ENV = "QWEN3TTS_TINY_CACHE"
"""Environment variable naming the folder ``tiny_checkpoint`` caches into."""

# Sizes. The talker's vocabulary is the codebook plus a band of 1024 ids for special codec tokens:
# generation suppresses that band except EOS, so sampled codes always stay inside the codebook.
_CODEBOOK = 64
_CODE_GROUPS = 16
_TALKER_VOCAB = _CODEBOOK + 1024
_HIDDEN = 32
_HEAD_DIM = 16
_MROPE_SECTION = [4, 2, 2]  # sums to _HEAD_DIM / 2, like [24, 20, 20] for head_dim 128
_TOKENIZER_VOCAB = 512
_VOCODER_GAIN = 64.0
_ATTENTION_GAIN = 3.0
_CODE_PREDICTOR_SHARPNESS = 4.0
_TRANSFORMERS_VERSION = "4.57.3"  # what the published configs carry


def _codec_id(real_id: int) -> int:
    """Map a real 0.6B codec id (codebook 2048) to the same offset above the tiny codebook."""
    return real_id - 2048 + _CODEBOOK


_LANGUAGE_IDS = {"chinese": 2055, "english": 2050, "german": 2053}
_DIALECT_IDS = {"sichuan_dialect": 2062}
_SPEAKER_IDS = {"serena": 3066, "vivian": 3065, "ryan": 3061, "eric": 2875}
_SPEAKER_DIALECTS = {"serena": False, "vivian": False, "ryan": False, "eric": "sichuan_dialect"}

# Special tokens of the Qwen2 text tokenizer, in the order (and so with the id offsets) of the
# published tokenizer_config.json; True marks the ones flagged special there.
_SPECIAL_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
    ("<|audio_start|>", True),
    ("<|audio_end|>", True),
    ("<tts_pad>", True),
    ("<tts_text_bos>", True),
    ("<tts_text_eod>", True),
    ("<tts_text_bos_single>", True),
    ("<|audio_pad|>", True),
]
_ADDITIONAL_SPECIAL_TOKENS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_bos_single>",
    "<|audio_pad|>",
]
_EXTRA_SPECIAL_TOKENS = {
    "image_token": "<|image_pad|>",
    "audio_token": "<|audio_pad|>",
    "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
    "audio_bos_token": "<|audio_start|>",
    "audio_eos_token": "<|audio_end|>",
}

# Qwen2's pre-tokenizer pattern (what its tokenizer.json splits words with).
_QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The corpus the tiny BPE is trained on. The chat-template words ("assistant", "user") are
# frequent so that each becomes one token: qwen_tts slices prompts by token position.
_CORPUS = [
    "assistant\nHello world. Hello there. Hello again, world!",
    "user\nA calm low voice. A bright, cheerful voice. A slow, deep voice.",
    "assistant\nThe quick brown fox jumps over the lazy dog.",
    "user\nSpeak clearly, please; read the text slowly and warmly.",
    "assistant\nThis is a tiny test model. It says nothing useful, but it says it quickly.",
    "assistant\nNumbers: 0 1 2 3 4 5 6 7 8 9, 10, 42, 100, 2024, 3.14, 1,000,000.",
    "user\nWhat time is it? It is 12:30. Call 555-0100 or write to test@example.com.",
    "assistant\nGood morning! How are you today? I am fine, thank you.",
    "assistant\nThe weather is nice: sunny, warm, and bright (about 25 degrees).",
    "user\nPlease turn the video into short clips with subtitles and music.",
    "assistant\nOne, two, three... four - five; six: seven? eight! nine & ten.",
    "assistant\nShe said, \"Yes.\" He said, 'No.' They both laughed [quietly] {again}.",
    "assistant\n你好，世界。今天天气很好。",
    "user\n请用温柔的声音朗读这段文字。",
    "assistant\n我们一起去公园散步吧！你觉得怎么样？",
    "assistant\n这是一个很小的测试模型，它的声音只是噪声。",
    "user\n一二三四五六七八九十，百千万。",
    "assistant\nGuten Tag! Wie geht es dir? Danke, sehr gut.",
    "assistant\nassistant assistant user user system system",
]


def _codec_config() -> dict[str, Any]:
    """The talker's codec-id keys, at the published ids' offsets above the tiny codebook."""
    return {
        "codec_bos_id": _codec_id(2149),
        "codec_eos_token_id": _codec_id(2150),
        "codec_think_id": _codec_id(2154),
        "codec_nothink_id": _codec_id(2155),
        "codec_pad_id": _codec_id(2148),
        "codec_think_bos_id": _codec_id(2156),
        "codec_think_eos_id": _codec_id(2157),
    }


def _voices(variant: str) -> dict[str, Any]:
    """Languages and speakers of `variant` (speakers and the dialect only for custom_voice)."""
    languages = {name: _codec_id(real) for name, real in _LANGUAGE_IDS.items()}
    if variant != "custom_voice":
        return {"codec_language_id": languages, "spk_id": {}, "spk_is_dialect": {}}
    languages.update({name: _codec_id(real) for name, real in _DIALECT_IDS.items()})
    return {
        "codec_language_id": languages,
        "spk_id": {name: _codec_id(real) for name, real in _SPEAKER_IDS.items()},
        "spk_is_dialect": dict(_SPEAKER_DIALECTS),
    }


@functools.lru_cache(maxsize=1)
def trained_tokenizer() -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
    """Train the tiny byte-level BPE once per process; return (vocab items by id, merges)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=_TOKENIZER_VOCAB,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab = tuple(sorted(model["vocab"].items(), key=lambda item: item[1]))
    merges = tuple(m if isinstance(m, str) else " ".join(m) for m in model["merges"])
    return vocab, merges


def special_token_ids() -> dict[str, int]:
    """Ids of the special text tokens: appended after the BPE vocabulary, as in Qwen2."""
    vocab, _ = trained_tokenizer()
    first = len(vocab)
    return {content: first + offset for offset, (content, _special) in enumerate(_SPECIAL_TOKENS)}


def text_vocab_size() -> int:
    """The text embedding rows: the whole vocabulary rounded up to a multiple of 128."""
    total = len(trained_tokenizer()[0]) + len(_SPECIAL_TOKENS)
    return -(-total // 128) * 128


def tokenizer_config() -> dict[str, Any]:
    """tokenizer_config.json, shaped like the published one."""
    ids = special_token_ids()
    added = {
        str(ids[content]): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for content, special in _SPECIAL_TOKENS
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": list(_ADDITIONAL_SPECIAL_TOKENS),
        "extra_special_tokens": dict(_EXTRA_SPECIAL_TOKENS),
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
        **_EXTRA_SPECIAL_TOKENS,
    }


def _code_predictor_config() -> dict[str, Any]:
    """The code predictor's config: a full config dump like the published one, sized down."""
    return {
        "_name_or_path": "",
        "add_cross_attention": False,
        "architectures": None,
        "attention_bias": False,
        "attention_dropout": 0,
        "bad_words_ids": None,
        "begin_suppress_tokens": None,
        "bos_token_id": None,
        "chunk_size_feed_forward": 0,
        "cross_attention_hidden_size": None,
        "decoder_start_token_id": None,
        "diversity_penalty": 0.0,
        "do_sample": False,
        "early_stopping": False,
        "encoder_no_repeat_ngram_size": 0,
        "eos_token_id": None,
        "exponential_decay_length_penalty": None,
        "finetuning_task": None,
        "forced_bos_token_id": None,
        "forced_eos_token_id": None,
        "head_dim": _HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": _HIDDEN,
        "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
        "initializer_range": 0.02,
        "intermediate_size": 2 * _HIDDEN,
        "is_decoder": False,
        "is_encoder_decoder": False,
        "label2id": {"LABEL_0": 0, "LABEL_1": 1},
        "layer_types": ["full_attention"],
        "length_penalty": 1.0,
        "max_length": 20,
        "max_position_embeddings": 65536,
        "max_window_layers": 28,
        "min_length": 0,
        "model_type": "qwen3_tts_talker_code_predictor",
        "no_repeat_ngram_size": 0,
        "num_attention_heads": 2,
        "num_beam_groups": 1,
        "num_beams": 1,
        "num_code_groups": _CODE_GROUPS,
        "num_hidden_layers": 1,
        "num_key_value_heads": 1,
        "num_return_sequences": 1,
        "output_attentions": False,
        "output_hidden_states": False,
        "output_scores": False,
        "pad_token_id": None,
        "prefix": None,
        "problem_type": None,
        "pruned_heads": {},
        "remove_invalid_values": False,
        "repetition_penalty": 1.0,
        "return_dict": True,
        "return_dict_in_generate": False,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sep_token_id": None,
        "sliding_window": None,
        "suppress_tokens": None,
        "task_specific_params": None,
        "temperature": 1.0,
        "tf_legacy_loss": False,
        "tie_encoder_decoder": False,
        "tie_word_embeddings": False,
        "tokenizer_class": None,
        "top_k": 50,
        "top_p": 1.0,
        "dtype": None,
        "torchscript": False,
        "typical_p": 1.0,
        "use_bfloat16": False,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": _CODEBOOK,
    }


def _talker_config(variant: str) -> dict[str, Any]:
    """talker_config, with the key order of the published config.json."""
    codec = _codec_config()
    voices = _voices(variant)
    return {
        "attention_bias": False,
        "attention_dropout": 0,
        "code_predictor_config": _code_predictor_config(),
        "codec_bos_id": codec["codec_bos_id"],
        "codec_eos_token_id": codec["codec_eos_token_id"],
        "codec_think_id": codec["codec_think_id"],
        "codec_language_id": voices["codec_language_id"],
        "codec_nothink_id": codec["codec_nothink_id"],
        "codec_pad_id": codec["codec_pad_id"],
        "codec_think_bos_id": codec["codec_think_bos_id"],
        "codec_think_eos_id": codec["codec_think_eos_id"],
        "spk_id": voices["spk_id"],
        "spk_is_dialect": voices["spk_is_dialect"],
        "head_dim": _HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": _HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": 2 * _HIDDEN,
        "max_position_embeddings": 32768,
        "model_type": "qwen3_tts_talker",
        "num_attention_heads": 2,
        "num_code_groups": _CODE_GROUPS,
        "num_hidden_layers": 2,
        "num_key_value_heads": 1,
        "position_id_per_seconds": 13,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {
            "interleaved": True,
            "mrope_section": list(_MROPE_SECTION),
            "rope_type": "default",
            "type": "default",
        },
        "rope_theta": 1000000,
        "sliding_window": None,
        "text_hidden_size": _HIDDEN,
        "text_vocab_size": text_vocab_size(),
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": _TALKER_VOCAB,
    }


def _speaker_encoder_config() -> dict[str, Any]:
    """The base variant's ECAPA-TDNN speaker encoder: embeds to the talker's hidden size."""
    return {
        "enc_dim": _HIDDEN,
        "sample_rate": SAMPLE_RATE,
        "mel_dim": 128,
        "enc_channels": [16, 16, 16, 16, 48],
        "enc_kernel_sizes": [5, 3, 3, 3, 1],
        "enc_dilations": [1, 2, 3, 4, 1],
        "enc_attention_channels": 8,
        "enc_res2net_scale": 8,
        "enc_se_channels": 8,
    }


def text_token_ids() -> dict[str, int]:
    """config.json's special text-token ids, as the tiny tokenizer numbers them."""
    ids = special_token_ids()
    vocab = dict(trained_tokenizer()[0])
    return {
        "assistant_token_id": vocab["assistant"],
        "im_end_token_id": ids["<|im_end|>"],
        "im_start_token_id": ids["<|im_start|>"],
        "tts_bos_token_id": ids["<tts_text_bos>"],
        "tts_eos_token_id": ids["<tts_text_eod>"],
        "tts_pad_token_id": ids["<tts_pad>"],
    }


def _model_config(variant: str) -> dict[str, Any]:
    """config.json for `variant` (voice_design mirrors the 1.7B VoiceDesign model)."""
    config: dict[str, Any] = {
        "architectures": ["Qwen3TTSForConditionalGeneration"],
        **text_token_ids(),
        "model_type": "qwen3_tts",
        "tokenizer_type": "qwen3_tts_tokenizer_12hz",
        "tts_model_size": "1b7" if variant == "voice_design" else "0b6",
        "tts_model_type": variant,
    }
    if variant == "base":
        config["speaker_encoder_config"] = _speaker_encoder_config()
    config["talker_config"] = _talker_config(variant)
    config["transformers_version"] = _TRANSFORMERS_VERSION
    return config


def _generation_config() -> dict[str, Any]:
    """generation_config.json: the published sampling defaults, but at most 63 frames (~5 s)."""
    return {
        "do_sample": True,
        "repetition_penalty": 1.05,
        "temperature": 0.9,
        "top_p": 1.0,
        "top_k": 50,
        "subtalker_dosample": True,
        "subtalker_temperature": 0.9,
        "subtalker_top_p": 1.0,
        "subtalker_top_k": 50,
        "max_new_tokens": 64,
    }


def _processor_config() -> dict[str, Any]:
    """preprocessor_config.json of the model folder (the text processor)."""
    return {
        "padding_side": "left",
        "padding_value": 0.0,
        "processor_class": "Qwen3TTSProcessor",
        "return_attention_mask": True,
    }


def _speech_decoder_config() -> dict[str, Any]:
    """The vocoder: 16 code groups, upsampling 8*5*4*3*2*2 = 1920 samples per 12.5 Hz frame."""
    return {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "latent_dim": 16,
        "codebook_dim": 16,
        "codebook_size": _CODEBOOK,
        "decoder_dim": 32,
        "hidden_act": "silu",
        "hidden_size": 16,
        "intermediate_size": 32,
        "layer_scale_initial_scale": 0.01,
        "max_position_embeddings": 8000,
        "head_dim": 8,
        "num_attention_heads": 2,
        "num_hidden_layers": 1,
        "num_key_value_heads": 2,
        "num_quantizers": _CODE_GROUPS,
        "num_semantic_quantizers": 1,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000,
        "semantic_codebook_size": 2 * _CODEBOOK,
        "sliding_window": 72,
        "upsample_rates": [8, 5, 4, 3],
        "upsampling_ratios": [2, 2],
        "vector_quantization_hidden_dimension": 16,
    }


def _speech_encoder_config() -> dict[str, Any]:
    """The Mimi encoder: 24 kHz in, 1920 samples per frame, codebook dim half the decoder's."""
    return {
        "_frame_rate": 12.5,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "audio_channels": 1,
        "codebook_dim": 8,
        "codebook_size": _CODEBOOK,
        "compress": 2,
        "dilation_growth_rate": 2,
        "dtype": "float32",
        "head_dim": 8,
        "hidden_act": "gelu",
        "hidden_size": 16,
        "initializer_range": 0.02,
        "intermediate_size": 32,
        "kernel_size": 7,
        "last_kernel_size": 3,
        "layer_scale_initial_scale": 0.01,
        "max_position_embeddings": 8000,
        "norm_eps": 1e-05,
        "normalize": False,
        "num_attention_heads": 2,
        "num_filters": 2,
        "num_hidden_layers": 1,
        "num_key_value_heads": 2,
        "num_quantizers": 2 * _CODE_GROUPS,
        "num_residual_layers": 1,
        "num_semantic_quantizers": 1,
        "pad_mode": "constant",
        "residual_kernel_size": 3,
        "rope_theta": 10000.0,
        "sampling_rate": SAMPLE_RATE,
        "sliding_window": 250,
        "transformers_version": "4.57.0.dev0",
        "trim_right_ratio": 1.0,
        "upsample_groups": 16,
        "upsampling_ratios": [8, 6, 5, 4],
        "use_cache": False,
        "use_causal_conv": True,
        "use_conv_shortcut": False,
        "use_streaming": False,
        "vector_quantization_hidden_dimension": 8,
    }


def _speech_tokenizer_config() -> dict[str, Any]:
    """speech_tokenizer/config.json, with the key order of the published one."""
    return {
        "architectures": ["Qwen3TTSTokenizerV2Model"],
        "model_type": "qwen3_tts_tokenizer_12hz",
        "encoder_valid_num_quantizers": _CODE_GROUPS,
        "input_sample_rate": SAMPLE_RATE,
        "output_sample_rate": SAMPLE_RATE,
        "decode_upsample_rate": 1920,
        "encode_downsample_rate": 1920,
        "decoder_config": _speech_decoder_config(),
        "encoder_config": _speech_encoder_config(),
        "transformers_version": _TRANSFORMERS_VERSION,
    }


def _speech_feature_extractor_config() -> dict[str, Any]:
    """speech_tokenizer/preprocessor_config.json (the published one)."""
    return {
        "chunk_length_s": None,
        "feature_extractor_type": "EncodecFeatureExtractor",
        "feature_size": 1,
        "overlap": None,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": True,
        "sampling_rate": SAMPLE_RATE,
    }


def _json_files(variant: str) -> dict[str, dict[str, Any]]:
    """Every JSON file of the folder, by relative path."""
    return {
        "config.json": _model_config(variant),
        "generation_config.json": _generation_config(),
        "preprocessor_config.json": _processor_config(),
        "tokenizer_config.json": tokenizer_config(),
        "speech_tokenizer/config.json": _speech_tokenizer_config(),
        "speech_tokenizer/preprocessor_config.json": _speech_feature_extractor_config(),
    }


def _check_variant(variant: str) -> None:
    """Raise ValueError unless `variant` is one of VARIANTS."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


def dump_json(data: Any) -> str:
    """Serialise like the published files: 2-space indent, UTF-8, trailing newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


@contextlib.contextmanager
def banner_to_stderr() -> Iterator[None]:
    """Send what qwen_tts prints on import (a flash-attn notice) to stderr, not stdout."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def reset_weights(model: Any) -> None:
    """Give conv/linear/embedding layers torch's default init and the codebooks random entries.

    transformers' N(0, 0.02) init leaves the vocoder nearly silent (~1e-8).
    """
    import torch
    from torch import nn

    resettable = (nn.Linear, nn.Conv1d, nn.ConvTranspose1d, nn.Embedding, nn.LayerNorm)
    for module in model.modules():
        if isinstance(module, resettable):
            module.reset_parameters()
        for name in ("embedding_sum", "embed_sum"):  # qwen_tts and Mimi codebooks
            codebook = getattr(module, name, None)
            if isinstance(codebook, torch.Tensor):
                with torch.no_grad():
                    codebook.normal_()


def _tts_state_dict(variant: str) -> dict[str, Any]:
    """Build the talker (and speaker encoder) with the current torch RNG; return its weights."""
    with banner_to_stderr():
        from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    config = Qwen3TTSConfig(**copy.deepcopy(_model_config(variant)))
    model = Qwen3TTSForConditionalGeneration(config)
    reset_weights(model)
    _make_talker_listen(model.talker)
    return model.state_dict()


def _make_talker_listen(talker: Any) -> None:
    """Make the prompt (text, speaker, instruct, reference) change the sampled codes.

    With default init the residual stream is dominated by the current frame's code embeddings, so
    the attention to the prompt barely moves the hidden state, and flat logits turn the same seed
    into the same codes whatever the input. Stronger attention values and sharper code-predictor
    heads fix that; the talker's own head (first codebook and EOS) stays as it is, which keeps
    typical outputs at about 1-3 seconds.
    """
    import torch

    with torch.no_grad():
        for layer in talker.model.layers:
            layer.self_attn.v_proj.weight *= _ATTENTION_GAIN
            layer.self_attn.o_proj.weight *= _ATTENTION_GAIN
        for head in talker.code_predictor.lm_head:
            head.weight *= _CODE_PREDICTOR_SHARPNESS


def _speech_tokenizer_state_dict() -> dict[str, Any]:
    """Build the 12 Hz speech tokenizer with the current torch RNG; return its weights."""
    with banner_to_stderr():
        from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model

    config = Qwen3TTSTokenizerV2Config(**copy.deepcopy(_speech_tokenizer_config()))
    model = Qwen3TTSTokenizerV2Model(config)
    reset_weights(model)
    _make_vocoder_audible(model.decoder)
    return model.state_dict()


def _make_vocoder_audible(decoder: Any) -> None:
    """Let the codes, not the biases, shape the waveform, at a speech-like level with no DC.

    With random biases the vocoder plays the same periodic pattern whatever the codes; without
    them it is quiet (RMS ~1e-3), so the output conv gets a fixed gain. Its taps are made to sum to
    zero per channel: every SnakeBeta adds sin^2 >= 0, which would otherwise leave a DC offset.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        for module in decoder.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)) and (
                module.bias is not None
            ):
                module.bias.zero_()
        output = decoder.decoder[-1].conv
        output.weight -= output.weight.mean(dim=-1, keepdim=True)
        output.weight *= _VOCODER_GAIN


def _save_weights(state_dict: dict[str, Any], path: pathlib.Path) -> None:
    """Write float32 weights as safetensors with fixed metadata (byte-identical per seed)."""
    import torch
    from safetensors.torch import save_file

    tensors = {
        key: value.detach().to("cpu", torch.float32).contiguous().clone()
        for key, value in state_dict.items()
    }
    save_file(tensors, str(path), metadata={"format": "pt"})


def _write_weights(folder: pathlib.Path, variant: str, seed: int) -> None:
    """Write both model.safetensors files from `seed` without touching the caller's RNG."""
    import torch

    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        torch.manual_seed(seed)
        _save_weights(_tts_state_dict(variant), folder / "model.safetensors")
        torch.manual_seed(seed + 1)
        _save_weights(
            _speech_tokenizer_state_dict(), folder / "speech_tokenizer" / "model.safetensors"
        )


def _write_text_files(folder: pathlib.Path, variant: str) -> None:
    """Write the JSON files, the text tokenizer's vocab.json / merges.txt and configuration.json."""
    (folder / "speech_tokenizer").mkdir(parents=True, exist_ok=True)
    for relative, data in _json_files(variant).items():
        (folder / relative).write_text(dump_json(data), encoding="utf-8")
    vocab, merges = trained_tokenizer()
    (folder / "vocab.json").write_text(
        json.dumps(dict(vocab), ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    (folder / "speech_tokenizer" / "configuration.json").write_text(
        '{"framework": "pytorch", "task": "feature-extraction", "allow_remote": true}',
        encoding="utf-8",
    )


def write_tree(folder: pathlib.Path, variant: str, seed: int) -> None:
    """Write a complete checkpoint into the empty folder `folder`."""
    _write_text_files(folder, variant)
    _write_weights(folder, variant, seed)


def temp_sibling(dest: pathlib.Path) -> pathlib.Path:
    """A new empty folder beside `dest`, so that renaming it onto `dest` stays on one disk."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.tmp"
    folder.mkdir()
    return folder


def remove_if_left(folder: pathlib.Path) -> None:
    """Delete a staging folder that was not renamed into place (after an error)."""
    if folder.exists():
        shutil.rmtree(folder)


def build_tiny_checkpoint(
    dest: str | os.PathLike, variant: str = "custom_voice", seed: int = 0
) -> pathlib.Path:
    """Write a tiny checkpoint folder for `variant` at `dest` (created; overwritten atomically:
    build into a temp sibling folder then rename) and return its path."""
    _check_variant(variant)
    dest = pathlib.Path(dest)
    staging = temp_sibling(dest)
    try:
        write_tree(staging, variant, seed)
        replace_folder(staging, dest)
    finally:
        remove_if_left(staging)
    return dest


def replace_folder(new: pathlib.Path, dest: pathlib.Path) -> None:
    """Rename `new` onto `dest`, first moving an existing `dest` aside and deleting it after."""
    if not dest.exists():
        os.replace(new, dest)
        return
    old = temp_sibling(dest)
    os.replace(dest, old / dest.name)
    os.replace(new, dest)
    shutil.rmtree(old)


def cache_key(variant: str, seed: int) -> str:
    """Hash of everything that decides the folder's content."""
    recipe = {
        "builder_version": BUILDER_VERSION,
        "variant": variant,
        "seed": seed,
        "files": _json_files(variant),
        "tokenizer": trained_tokenizer(),
        "weight_gains": [_VOCODER_GAIN, _ATTENTION_GAIN, _CODE_PREDICTOR_SHARPNESS],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _default_cache_dir() -> pathlib.Path:
    """$QWEN3TTS_TINY_CACHE, else the user cache folder of qwen3tts_plugin plus ``tiny``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return pathlib.Path(configured)
    import platformdirs

    return pathlib.Path(platformdirs.user_cache_dir("qwen3tts_plugin")) / "tiny"


def tiny_checkpoint(
    variant: str = "custom_voice", seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> pathlib.Path:
    """Return a cached tiny checkpoint folder, building it once.

    The folder name holds a hash of the builder version, variant, seed and generated configs, so a
    changed recipe gets a new folder. Safe when several processes build at once: each builds into
    a temp folder and renames it into place; whoever comes second keeps the existing one.
    """
    _check_variant(variant)
    root = pathlib.Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    target = root / f"{variant}-seed{seed}-{cache_key(variant, seed)}"
    if (target / "config.json").is_file():
        return target
    staging = temp_sibling(target)
    try:
        write_tree(staging, variant, seed)
        publish_once(staging, target)
    finally:
        remove_if_left(staging)
    return target


def publish_once(new: pathlib.Path, target: pathlib.Path) -> None:
    """Rename `new` to `target` unless another process got there first (then keep theirs)."""
    try:
        os.rename(new, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise


NEVER_ENDING_GAIN = 100.0
"""How much louder the talker's codebook logits are made than its end-of-speech logit."""


def tiny_checkpoint_without_eos(
    variant: str = "custom_voice", seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> pathlib.Path:
    """A cached tiny checkpoint whose talker never ends a text: every generation uses its
    whole ``max_new_tokens`` budget, greedy or sampled (truncation, tested for real).

    The talker's end-of-speech row of ``codec_head`` is zeroed and the codebook rows (the only
    other tokens generation leaves unsuppressed) are scaled up, so end-of-speech is never the
    most likely token, nor inside top-k.
    """
    source = tiny_checkpoint(variant, seed, cache_dir)
    target = source.parent / f"{source.name}-without-eos"
    if (target / "config.json").is_file():
        return target
    staging = temp_sibling(target)
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        _silence_end_of_speech(staging)
        publish_once(staging, target)
    finally:
        remove_if_left(staging)
    return target


def _silence_end_of_speech(folder: pathlib.Path) -> None:
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    talker = config["talker_config"]
    eos, codebook = talker["codec_eos_token_id"], talker["vocab_size"] - 1024
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    head = tensors["talker.codec_head.weight"]
    head[:codebook] *= NEVER_ENDING_GAIN
    head[eos] = 0.0
    _save_weights(tensors, weights)
