"""The tiny checkpoint: its folder and configs, the cache, and synthesis through real qwen_tts."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qwen3tts_plugin import testing
from qwen3tts_plugin.backends.qwen_tts import checkpoints
from qwen3tts_plugin.backends.qwen_tts.checkpoints.tiny import tiny_recipe

SR = 24000
PUBLISHED_FILES = {
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "model.safetensors",
    "speech_tokenizer/config.json",
    "speech_tokenizer/configuration.json",
    "speech_tokenizer/preprocessor_config.json",
    "speech_tokenizer/model.safetensors",
}


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def ref_audio() -> tuple[np.ndarray, int]:
    """One second of a quiet tone with a little noise, as (waveform, sample rate)."""
    t = np.arange(SR) / SR
    noise = np.random.default_rng(0).normal(0.0, 0.01, SR)
    return (0.3 * np.sin(2 * np.pi * 220 * t) + noise).astype(np.float32), SR


def assert_audible(wavs: list[np.ndarray], sample_rate: int) -> np.ndarray:
    assert sample_rate == SR
    assert len(wavs) == 1
    wav = wavs[0]
    assert wav.dtype == np.float32 and wav.ndim == 1 and wav.size > 0
    assert np.isfinite(wav).all()
    assert float(np.abs(wav).max()) > 1e-3
    assert float(np.sqrt(np.mean(wav**2))) > 1e-4
    return wav


class WeightWarnings(logging.Handler):
    """Collects transformers' "weights not used / newly initialized" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "were not used" in message or "newly initialized" in message:
            self.messages.append(message)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each test on one intra-op thread, then restore the setting.

    The tiny model is launch-bound, so a second thread gains nothing, and on a busy two-core
    machine a thread spinning against other processes stalls a 0.7 s synthesis for 10 s.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, Path]:
    """One tiny checkpoint per variant (seed 0)."""
    root = tmp_path_factory.mktemp("tiny")
    return {v: testing.build_tiny_checkpoint(root / v, v, seed=0) for v in testing.VARIANTS}


@pytest.fixture(scope="session")
def loaded(built) -> dict[str, tuple[object, list[str]]]:
    """Each variant loaded by the real qwen_tts on CPU, with the weight warnings it logged."""
    import torch
    from qwen_tts import Qwen3TTSModel

    out = {}
    for variant, path in built.items():
        handler = WeightWarnings()
        logger = logging.getLogger("transformers")
        logger.addHandler(handler)
        try:
            model = Qwen3TTSModel.from_pretrained(str(path), device_map="cpu", dtype=torch.float32)
        finally:
            logger.removeHandler(handler)
        out[variant] = (model, handler.messages)
    return out


def model_of(loaded, variant: str):
    return loaded[variant][0]


def custom_voice(model, seed: int = 0, **kw) -> tuple[list[np.ndarray], int]:
    import torch

    torch.manual_seed(seed)
    args = {"text": "Hello world.", "speaker": "vivian", "language": "English"}
    return model.generate_custom_voice(**{**args, **kw}, max_new_tokens=40)


def voice_design(model, seed: int = 0, **kw) -> tuple[list[np.ndarray], int]:
    import torch

    torch.manual_seed(seed)
    args = {"text": "Hello world.", "instruct": "A calm low voice.", "language": "English"}
    return model.generate_voice_design(**{**args, **kw}, max_new_tokens=40)


def voice_clone(model, seed: int = 0, **kw) -> tuple[list[np.ndarray], int]:
    import torch

    torch.manual_seed(seed)
    args = {"text": "Hello world.", "language": "English", "ref_audio": ref_audio()}
    return model.generate_voice_clone(**{**args, **kw}, max_new_tokens=40)


# --- import cost -----------------------------------------------------------------------------


def test_import_pulls_in_no_heavy_modules():
    code = (
        "import sys, qwen3tts_plugin.testing\n"
        "heavy = {'torch', 'transformers', 'qwen_tts', 'tokenizers', 'numpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the folder ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", testing.VARIANTS)
def test_folder_holds_the_published_files_and_is_small(built, variant):
    files = files_of(built[variant])
    assert set(files) == PUBLISHED_FILES
    assert sum(len(b) for b in files.values()) < 3_000_000
    assert not list(built[variant].parent.glob(".*.tmp")), "a staging folder was left behind"


@pytest.mark.parametrize("variant", testing.VARIANTS)
def test_config_names_the_variant(built, variant):
    config = read_json(built[variant] / "config.json")
    assert config["model_type"] == "qwen3_tts"
    assert config["tokenizer_type"] == "qwen3_tts_tokenizer_12hz"
    assert config["tts_model_type"] == variant
    # qwen_tts drops `instruct` for custom_voice on "0b6"; voice design is published as 1.7B.
    assert config["tts_model_size"] == ("1b7" if variant == "voice_design" else "0b6")
    assert ("speaker_encoder_config" in config) == (variant == "base")
    talker = config["talker_config"]
    assert set(talker["spk_id"]) == (
        set(testing.TINY_SPEAKERS) if variant == "custom_voice" else set()
    )
    assert set(talker["spk_is_dialect"]) == set(talker["spk_id"])
    dialects = {k for k in talker["codec_language_id"] if "dialect" in k}
    assert dialects == ({"sichuan_dialect"} if variant == "custom_voice" else set())
    languages = ["auto", *(k for k in talker["codec_language_id"] if "dialect" not in k)]
    assert sorted(languages) == testing.TINY_LANGUAGES


def test_base_speaker_encoder_embeds_to_the_talker_size(built):
    config = read_json(built["base"] / "config.json")
    encoder = config["speaker_encoder_config"]
    assert encoder["enc_dim"] == config["talker_config"]["hidden_size"]
    assert encoder["mel_dim"] == 128
    assert encoder["sample_rate"] == SR


@pytest.mark.parametrize("variant", testing.VARIANTS)
def test_codec_ids_sit_in_the_suppressed_band(built, variant):
    talker = read_json(built[variant] / "config.json")["talker_config"]
    codebook = talker["code_predictor_config"]["vocab_size"]
    assert talker["vocab_size"] == codebook + 1024
    special = [v for k, v in talker.items() if k.startswith("codec_") and isinstance(v, int)]
    special += [*talker["codec_language_id"].values(), *talker["spk_id"].values()]
    assert len(special) == len(set(special))
    assert all(codebook <= i < talker["vocab_size"] for i in special)


def test_talker_rope_is_interleaved_mrope(built):
    talker = read_json(built["custom_voice"] / "config.json")["talker_config"]
    rope = talker["rope_scaling"]
    assert rope["interleaved"] is True
    assert sum(rope["mrope_section"]) == talker["head_dim"] // 2


def test_speech_tokenizer_is_12hz_at_24khz(built):
    model_config = read_json(built["custom_voice"] / "config.json")
    config = read_json(built["custom_voice"] / "speech_tokenizer" / "config.json")
    decoder, encoder = config["decoder_config"], config["encoder_config"]
    assert config["model_type"] == "qwen3_tts_tokenizer_12hz"
    assert config["input_sample_rate"] == config["output_sample_rate"] == SR
    assert math.prod(decoder["upsample_rates"] + decoder["upsampling_ratios"]) == 1920
    assert config["decode_upsample_rate"] == config["encode_downsample_rate"] == 1920
    assert math.prod(encoder["upsampling_ratios"]) * encoder["compress"] == 1920
    codebook = decoder["codebook_size"]
    assert codebook & (codebook - 1) == 0
    assert encoder["codebook_size"] == codebook
    assert model_config["talker_config"]["code_predictor_config"]["vocab_size"] == codebook
    assert decoder["codebook_dim"] // 2 == encoder["codebook_dim"]
    groups = model_config["talker_config"]["num_code_groups"]
    assert decoder["num_quantizers"] == config["encoder_valid_num_quantizers"] == groups
    assert encoder["num_quantizers"] >= groups


def test_text_token_ids_match_the_tokenizer(built, loaded):
    config = read_json(built["custom_voice"] / "config.json")
    tokenizer = model_of(loaded, "custom_voice").processor.tokenizer
    ids = {
        "im_start_token_id": "<|im_start|>",
        "im_end_token_id": "<|im_end|>",
        "tts_bos_token_id": "<tts_text_bos>",
        "tts_eos_token_id": "<tts_text_eod>",
        "tts_pad_token_id": "<tts_pad>",
        "assistant_token_id": "assistant",
    }
    for key, token in ids.items():
        assert tokenizer.convert_tokens_to_ids(token) == config[key], key
    assert len(tokenizer) <= config["talker_config"]["text_vocab_size"]


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("<|im_start|>assistant\n", 3),
        ("<|im_end|>\n<|im_start|>assistant\n", 5),
        ("<|im_end|>\n", 2),
    ],
)
def test_prompt_pieces_have_the_lengths_generation_slices_by(loaded, text, count):
    processor = model_of(loaded, "custom_voice").processor
    assert processor(text=text, return_tensors="pt")["input_ids"].shape[-1] == count


# --- determinism and the cache ---------------------------------------------------------------


def test_same_seed_builds_byte_identical_folders(built, tmp_path):
    again = files_of(testing.build_tiny_checkpoint(tmp_path / "again", "custom_voice", seed=0))
    assert again == files_of(built["custom_voice"])


def test_another_seed_changes_only_the_weights(built, tmp_path):
    other = files_of(testing.build_tiny_checkpoint(tmp_path / "other", "custom_voice", seed=1))
    first = files_of(built["custom_voice"])
    changed = {name for name in first if first[name] != other[name]}
    assert changed == {"model.safetensors", "speech_tokenizer/model.safetensors"}


def test_building_over_a_folder_replaces_it(tmp_path):
    dest = tmp_path / "ckpt"
    dest.mkdir()
    (dest / "stale.txt").write_text("old", encoding="utf-8")
    assert testing.build_tiny_checkpoint(dest, "voice_design") == dest
    assert set(files_of(dest)) == PUBLISHED_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_unknown_variant_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown variant"):
        testing.build_tiny_checkpoint(tmp_path / "x", "karaoke")
    with pytest.raises(ValueError, match="unknown variant"):
        testing.tiny_checkpoint("karaoke", cache_dir=tmp_path)


def test_tiny_checkpoint_builds_once_then_hits_the_cache(tmp_path, monkeypatch, built):
    first = testing.tiny_checkpoint("custom_voice", seed=0, cache_dir=tmp_path)
    assert first.parent == tmp_path and first.name.startswith("custom_voice-seed0-")
    assert files_of(first) == files_of(built["custom_voice"])

    def no_rebuild(*args):
        raise AssertionError("rebuilt a cached checkpoint")

    monkeypatch.setattr(checkpoints, "write_folder", no_rebuild)
    started = time.perf_counter()
    assert testing.tiny_checkpoint("custom_voice", seed=0, cache_dir=tmp_path) == first
    assert time.perf_counter() - started < 0.5


def test_cache_key_changes_with_variant_seed_ending_and_builder_version(monkeypatch):
    recipes = [
        tiny_recipe(v, seed, never_ending)
        for v in testing.VARIANTS
        for seed in (0, 1)
        for never_ending in (False, True)
    ]
    assert len({checkpoints.cache_key(recipe) for recipe in recipes}) == len(recipes)
    before = checkpoints.cache_key(tiny_recipe("base", 0))
    monkeypatch.setattr(checkpoints, "BUILDER_VERSION", checkpoints.BUILDER_VERSION + 1)
    assert checkpoints.cache_key(tiny_recipe("base", 0)) != before


def test_tiny_checkpoint_uses_the_env_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(testing.CACHE_ENV, str(tmp_path / "cache"))
    path = testing.tiny_checkpoint("voice_design", seed=0)
    assert path.parent == tmp_path / "cache"
    assert (path / "config.json").is_file()


def test_tiny_checkpoint_keeps_the_folder_another_process_published(tmp_path, monkeypatch):
    real_write = checkpoints.write_folder
    published = []

    def racing_write(folder, recipe):
        real_write(folder, recipe)
        if not published:  # another process finishes first, while we are still building
            monkeypatch.setattr(checkpoints, "write_folder", real_write)
            published.append(testing.tiny_checkpoint("base", 3, cache_dir=tmp_path))
            (published[0] / "marker").write_text("theirs", encoding="utf-8")

    monkeypatch.setattr(checkpoints, "write_folder", racing_write)
    path = testing.tiny_checkpoint("base", seed=3, cache_dir=tmp_path)
    assert path == published[0]
    assert (path / "marker").read_text(encoding="utf-8") == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "staging folder left behind"


# --- loading and synthesis through the real qwen_tts ------------------------------------------


@pytest.mark.parametrize("variant", testing.VARIANTS)
def test_loads_without_missing_or_unexpected_weights(loaded, variant):
    model, warnings = loaded[variant]
    assert warnings == []
    assert model.model.tts_model_type == variant
    assert model.model.speech_tokenizer.get_output_sample_rate() == SR
    assert all(
        p.dtype.is_floating_point and p.device.type == "cpu" for p in model.model.parameters()
    )


def test_custom_voice_offers_the_tiny_speakers_and_languages(loaded):
    model = model_of(loaded, "custom_voice")
    assert model.get_supported_speakers() == testing.TINY_SPEAKERS
    assert model.get_supported_languages() == testing.TINY_LANGUAGES


def test_custom_voice_synthesises(loaded):
    wav = assert_audible(*custom_voice(model_of(loaded, "custom_voice")))
    assert wav.size % 1920 == 0 and wav.size >= 2 * 1920


def test_custom_voice_dialect_speaker_with_auto_language(loaded):
    model = model_of(loaded, "custom_voice")
    assert_audible(*custom_voice(model, speaker=testing.TINY_DIALECT_SPEAKER, language="Auto"))


def test_voice_design_synthesises_with_instruct(loaded):
    assert_audible(*voice_design(model_of(loaded, "voice_design")))


def test_voice_clone_synthesises_in_icl_mode(loaded):
    assert_audible(*voice_clone(model_of(loaded, "base"), ref_text="Hello there."))


def test_voice_clone_synthesises_from_the_x_vector_only(loaded):
    assert_audible(*voice_clone(model_of(loaded, "base"), x_vector_only_mode=True))


@pytest.mark.parametrize(
    ("variant", "generate", "kwargs"),
    [
        ("custom_voice", custom_voice, {}),
        ("voice_design", voice_design, {}),
        ("base", voice_clone, {"ref_text": "Hello there."}),
    ],
    ids=testing.VARIANTS,
)
def test_generation_is_deterministic_under_a_seed(loaded, variant, generate, kwargs):
    model = model_of(loaded, variant)
    first = generate(model, seed=7, **kwargs)[0][0]
    second = generate(model, seed=7, **kwargs)[0][0]
    assert np.array_equal(first, second)


def test_the_prompt_changes_the_audio(loaded):
    model = model_of(loaded, "custom_voice")
    vivian = custom_voice(model, seed=0)[0][0]
    ryan = custom_voice(model, seed=0, speaker="ryan")[0][0]
    n = min(vivian.size, ryan.size)
    assert not np.array_equal(vivian[:n], ryan[:n])


def test_the_instruct_changes_the_voice_design_audio(loaded):
    model = model_of(loaded, "voice_design")
    calm = voice_design(model, seed=0)[0][0]
    bright = voice_design(model, seed=0, instruct="A bright, cheerful voice.")[0][0]
    n = min(calm.size, bright.size)
    assert not np.array_equal(calm[:n], bright[:n])


def test_building_leaves_the_callers_rng_alone(tmp_path):
    import torch

    torch.manual_seed(123)
    state = torch.get_rng_state()
    testing.build_tiny_checkpoint(tmp_path / "ckpt", "base", seed=5)
    assert torch.equal(torch.get_rng_state(), state)
