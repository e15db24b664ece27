"""The tiny checkpoints: every config of a published Qwen3-TTS folder, sized down to ~1 MB.

Same files and config keys as a published ``Qwen/Qwen3-TTS-12Hz-*`` folder, with the published
codec ids moved to the same offsets above a 64-entry codebook, so the unmodified qwen_tts loads
and synthesises with it (``../../../../shared/design.md`` lists the constraints met here).
"""

from __future__ import annotations

from typing import Any

from . import Recipe, dump_json
from .tokenizer import text_token_ids, text_vocab_size, tokenizer_config, tokenizer_files

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

# Sizes. The talker's vocabulary is the codebook plus a band of 1024 ids for special codec tokens:
# generation suppresses that band except EOS, so sampled codes always stay inside the codebook.
_CODEBOOK = 64
_CODE_GROUPS = 16
_TALKER_VOCAB = _CODEBOOK + 1024
_HIDDEN = 32
_HEAD_DIM = 16
_MROPE_SECTION = [4, 2, 2]  # sums to _HEAD_DIM / 2, like [24, 20, 20] for head_dim 128
_TRANSFORMERS_VERSION = "4.57.3"  # what the published configs carry


def _codec_id(real_id: int) -> int:
    """Map a real 0.6B codec id (codebook 2048) to the same offset above the tiny codebook."""
    return real_id - 2048 + _CODEBOOK


_LANGUAGE_IDS = {"chinese": 2055, "english": 2050, "german": 2053}
_DIALECT_IDS = {"sichuan_dialect": 2062}
_SPEAKER_IDS = {"serena": 3066, "vivian": 3065, "ryan": 3061, "eric": 2875}
_SPEAKER_DIALECTS = {"serena": False, "vivian": False, "ryan": False, "eric": "sichuan_dialect"}


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


NEVER_ENDING_GAIN = 100.0
"""How much louder a never-ending tiny talker's codebook logits are than its end-of-speech
logit (zeroed): sampling with any top-k never draws end-of-speech."""

CODEC_CONFIGURATION = (
    b'{"framework": "pytorch", "task": "feature-extraction", "allow_remote": true}'
)
"""speech_tokenizer/configuration.json, as published."""


def tiny_recipe(variant: str, seed: int = 0, never_ending: bool = False) -> Recipe:
    """The recipe of the tiny ``variant`` folder (``VARIANTS``), weights from ``seed``;
    ``never_ending``: its talker never ends a text (every generation uses its whole budget)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    files = {path: dump_json(data).encode("utf-8") for path, data in _json_files(variant).items()}
    files.update(tokenizer_files())
    files["speech_tokenizer/configuration.json"] = CODEC_CONFIGURATION
    return Recipe(
        name=f"{variant}-seed{seed}" + ("-never-ending" if never_ending else ""),
        files=tuple(files.items()),
        seed=seed,
        shaping="audible",
        never_ending_gain=NEVER_ENDING_GAIN if never_ending else None,
    )
