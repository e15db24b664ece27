"""End to end through ``pm.hook``: the three voice modes, every error code, cache, concurrency.

Everything runs the real qwen_tts code on the tiny checkpoints; nothing is mocked.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from engine_logs import capture_logs

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, TtsError, Voice

FAST = GenerationParams(max_new_tokens=6, seed=1, allow_cut=True)


def config_for(path, **extra):
    return EngineConfig(provider="qwen3_tts", extra_params={"ModelPath": str(path), **extra})


def request_for(path, out, text="Hello world.", voice=None, generation=FAST, **extra):
    return SynthesisRequest(
        config=config_for(path, **extra),
        text=text,
        out_path=out,
        voice=voice or Voice(),
        generation=generation,
    )


def assert_wav(path: Path, result):
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
    assert info.samplerate == result.sample_rate == 24_000
    assert info.frames / info.samplerate == pytest.approx(result.duration_s)
    audio, _ = sf.read(str(path))
    assert np.abs(audio).max() > 1e-3, "silent output"
    assert result.duration_s > 0 and result.rtf == pytest.approx(result.synth_s / result.duration_s)
    assert (result.device, result.dtype, result.attn_implementation) == (
        "cpu",
        "float32",
        "sdpa",
    )
    assert list(path.parent.glob(".*.tmp")) == []


# --- the three voice modes ------------------------------------------------------------------


def test_custom_voice(pm, tiny, tmp_path):
    out = tmp_path / "nested" / "custom.wav"
    result = pm.hook.tts_synthesize(
        request=request_for(tiny["custom_voice"], out, voice=Voice(speaker="VIVIAN"))
    )
    assert result.path == out and result.provider == "qwen3_tts"
    assert_wav(out, result)


def test_voice_design(pm, tiny, tmp_path):
    out = tmp_path / "design.wav"
    voice = Voice(mode="voice_design", instruct="A calm, low voice.", language="english")
    assert_wav(
        out, pm.hook.tts_synthesize(request=request_for(tiny["voice_design"], out, voice=voice))
    )


def test_voice_clone_x_vector_only_and_icl(pm, tiny, tmp_path, ref_wav):
    for x_vector_only, ref_text in ((True, None), (False, "Hello there.")):
        out = tmp_path / f"clone-{x_vector_only}.wav"
        voice = Voice(
            mode="voice_clone", ref_audio=ref_wav, ref_text=ref_text, x_vector_only=x_vector_only
        )
        assert_wav(out, pm.hook.tts_synthesize(request=request_for(tiny["base"], out, voice=voice)))


def test_half_second_reference_is_enough(pm, tiny, tmp_path):
    ref = tmp_path / "half.wav"
    t = np.arange(12_000) / 24_000
    sf.write(ref, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 24_000)
    out = tmp_path / "clone-half.wav"
    voice = Voice(mode="voice_clone", ref_audio=ref, ref_text="Hi.", x_vector_only=False)
    assert_wav(out, pm.hook.tts_synthesize(request=request_for(tiny["base"], out, voice=voice)))


def test_formats_soundfile_cannot_read_are_decoded_by_audioread(tmp_path):
    """The fallback for MP3, M4A, ...: audioread's decoder (here its WAV backend), averaged
    to mono, scaled like soundfile's floats."""
    from qwen3tts_plugin.audio import read_with_audioread

    t = np.arange(16_000) / 16_000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 220 * t), -0.25 * np.sin(2 * np.pi * 330 * t)], 1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 16_000, subtype="PCM_16")
    audio, rate = read_with_audioread(path)
    expected = sf.read(path, dtype="float32")[0].mean(axis=1)
    assert rate == 16_000 and audio.dtype == np.float32
    assert np.allclose(audio, expected, atol=1 / 32768)


def test_loud_reference_is_normalised_and_stdout_stays_clean(pm, tiny, tmp_path, capfd):
    ref = tmp_path / "loud.wav"
    t = np.arange(24_000) / 24_000
    sf.write(ref, (3.0 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 24_000, subtype="FLOAT")
    out = tmp_path / "clone-loud.wav"
    voice = Voice(mode="voice_clone", ref_audio=ref)
    capfd.readouterr()
    assert_wav(out, pm.hook.tts_synthesize(request=request_for(tiny["base"], out, voice=voice)))
    # qwen_tts prints "[WARNING] Max value of input waveform signal is ..." for audio past 1.0
    assert "input waveform" not in capfd.readouterr().out


def test_voice_clone_takes_reference_from_settings(pm, tiny, tmp_path, ref_wav):
    out = tmp_path / "clone-settings.wav"
    request = request_for(tiny["base"], out, voice=Voice(mode="voice_clone"), RefAudio=str(ref_wav))
    assert_wav(out, pm.hook.tts_synthesize(request=request))


def test_default_speaker_is_the_models_first_and_logged(pm, tiny, tmp_path):
    from qwen3tts_plugin.registry import read_model_facts

    with capture_logs() as logs:
        pm.hook.tts_synthesize(request=request_for(tiny["custom_voice"], tmp_path / "a.wav"))
    [event] = [e for e in logs if e["event"] == "tts.voice.default_speaker"]
    assert event["speaker"] == read_model_facts(tiny["custom_voice"]).speakers[0]


def test_instruct_on_a_0_6b_model_is_reported_as_ignored(pm, tiny, tmp_path):
    with capture_logs() as logs:
        pm.hook.tts_synthesize(
            request=request_for(
                tiny["custom_voice"], tmp_path / "a.wav", voice=Voice(instruct="Whisper.")
            )
        )
    assert "tts.voice.instruct_ignored" in [e["event"] for e in logs]


def test_other_providers_are_not_answered(pm, tiny, tmp_path):
    request = SynthesisRequest(
        config=EngineConfig(provider="someone_else"), text="Hi", out_path=tmp_path / "x.wav"
    )
    assert pm.hook.tts_synthesize(request=request) is None
    assert pm.hook.tts_load(config=EngineConfig(provider="someone_else")) is None
    assert not (tmp_path / "x.wav").exists()


# --- reproducibility ------------------------------------------------------------------------


def test_seed_gives_identical_samples_and_bytes(pm, tiny, tmp_path):
    paths = [tmp_path / f"take{i}.wav" for i in range(3)]
    seeds = [7, 7, 8]
    for path, seed in zip(paths, seeds, strict=True):
        gen = GenerationParams(max_new_tokens=6, seed=seed, allow_cut=True)
        pm.hook.tts_synthesize(request=request_for(tiny["custom_voice"], path, generation=gen))
    first, second, other = (sf.read(str(p))[0] for p in paths)
    assert np.array_equal(first, second)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_seeded_call_leaves_the_process_rng_alone(pm, tiny, tmp_path):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pm.hook.tts_synthesize(request=request_for(tiny["custom_voice"], tmp_path / "a.wav"))
    assert torch.equal(torch.rand(3), expected)


# --- errors: each has a code, and no call leaves a file ---------------------------------------


@pytest.fixture(scope="module")
def broken(tiny, unloadable, broken_logits, tmp_path_factory):
    """Damaged copies of the tiny custom_voice checkpoint, built with the real file formats."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("broken")
    made = {"mismatched": unloadable}

    incomplete = root / "incomplete"
    shutil.copytree(tiny["custom_voice"], incomplete)
    (incomplete / "generation_config.json").unlink()
    (incomplete / "speech_tokenizer" / "preprocessor_config.json").unlink()
    made["incomplete"] = incomplete

    truncated = root / "truncated"
    shutil.copytree(tiny["custom_voice"], truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    made["truncated"] = truncated

    banana = root / "banana"
    shutil.copytree(tiny["custom_voice"], banana)
    config = json.loads((banana / "config.json").read_text())
    (banana / "config.json").write_text(json.dumps({**config, "tts_model_type": "banana"}))
    made["banana"] = banana

    # NaN in the vocoder: generation succeeds, the waveform is not finite (the fp16 symptom).
    nan_audio = root / "nan_audio"
    shutil.copytree(tiny["custom_voice"], nan_audio)
    st = nan_audio / "speech_tokenizer" / "model.safetensors"
    tensors = load_file(str(st))
    name = sorted(k for k in tensors if k.startswith("decoder") and k.endswith("weight"))[-1]
    tensors[name] = tensors[name] * float("nan")
    save_file(tensors, str(st), metadata={"format": "pt"})
    made["nan_audio"] = nan_audio

    made["nan_logits"] = broken_logits
    return made


@dataclass
class Case:
    """What an error case's request is made from: the checkpoints, the damaged copies, a
    reference recording and a fresh folder."""

    tiny: dict[str, Path]
    broken: dict[str, Path]
    ref_wav: Path
    folder: Path

    @property
    def out(self) -> Path:
        return self.folder / "out.wav"

    def file(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path

    def clone(self, ref_audio: Path | None = None, **voice) -> SynthesisRequest:
        return request_for(
            self.tiny["base"],
            self.out,
            voice=Voice(mode="voice_clone", ref_audio=ref_audio, **voice),
        )


def _short_wav(case: Case) -> Path:
    path = case.folder / "short.wav"
    sf.write(path, np.zeros(2_400, dtype=np.float32), 24_000)  # 0.1 s
    return path


ERROR_CASES: dict[str, Callable[[Case], SynthesisRequest]] = {
    "invalid_device": lambda c: request_for(c.tiny["custom_voice"], c.out, Device="gpu"),
    "invalid_settings": lambda c: request_for(c.tiny["custom_voice"], c.out, Precision="fp8"),
    "empty_text": lambda c: request_for(c.tiny["custom_voice"], c.out, text=" \n\t "),
    "unknown_model_key": lambda c: SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params={"ModelKey": "huge_9b"}),
        text="Hi",
        out_path=c.out,
    ),
    "model_not_found": lambda c: request_for(c.folder / "no_such_model", c.out),
    "model_invalid": lambda c: request_for(c.broken["incomplete"], c.out),
    "model_invalid (truncated weights)": lambda c: request_for(c.broken["truncated"], c.out),
    "model_invalid (unknown tts_model_type)": lambda c: request_for(c.broken["banana"], c.out),
    "model_load_failed": lambda c: request_for(c.broken["mismatched"], c.out),
    "unsupported_mode": lambda c: request_for(
        c.tiny["custom_voice"], c.out, voice=Voice(mode="voice_design", instruct="x")
    ),
    "unsupported_speaker": lambda c: request_for(
        c.tiny["custom_voice"], c.out, voice=Voice(speaker="nobody")
    ),
    "unsupported_speaker (setting)": lambda c: request_for(
        c.tiny["custom_voice"], c.out, Speaker="nobody"
    ),
    "unsupported_language": lambda c: request_for(
        c.tiny["custom_voice"], c.out, voice=Voice(language="Klingon")
    ),
    "instruct_required": lambda c: request_for(
        c.tiny["voice_design"], c.out, voice=Voice(mode="voice_design")
    ),
    "ref_audio_invalid (missing)": lambda c: c.clone(c.folder / "nope.wav"),
    "ref_audio_invalid (none)": lambda c: c.clone(),
    "ref_audio_invalid (unreadable)": lambda c: c.clone(
        c.file("garbage.wav", b"RIFF not really audio")
    ),
    "ref_audio_invalid (too short)": lambda c: c.clone(_short_wav(c)),
    "ref_text_required": lambda c: c.clone(c.ref_wav, x_vector_only=False),
    "invalid_audio": lambda c: request_for(c.broken["nan_audio"], c.out),
    "synthesis_failed": lambda c: request_for(c.broken["nan_logits"], c.out),
    "output_write_failed (parent is a file)": lambda c: request_for(
        c.tiny["custom_voice"], c.file("a_file", b"x") / "out.wav"
    ),
    "output_write_failed (path is a folder)": lambda c: request_for(
        c.tiny["custom_voice"], c.folder
    ),
    "output_write_failed (NUL in the path)": lambda c: request_for(
        c.tiny["custom_voice"], c.folder / "a\x00b.wav"
    ),
}
"""Every refusal a request can meet, by name; the code is the name's first word."""


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_every_error_has_its_code_and_leaves_no_file(pm, tiny, broken, tmp_path, ref_wav, case):
    request = ERROR_CASES[case](Case(tiny, broken, ref_wav, tmp_path))
    before = (
        sorted(p.name for p in request.out_path.parent.iterdir())
        if request.out_path.parent.is_dir()
        else None
    )
    with capture_logs() as logs, pytest.raises(TtsError) as info:
        pm.hook.tts_synthesize(request=request)
    code = case.split(" ")[0]
    assert info.value.code == code
    assert str(info.value).startswith(f"{code}: ")
    if request.out_path.parent.is_dir():
        assert sorted(p.name for p in request.out_path.parent.iterdir()) == before
    failed = [e for e in logs if e["event"] == "tts.synthesize.failed"]
    assert failed and failed[0]["code"] == code


def test_error_details_say_what_is_wrong(pm, tiny, broken, tmp_path, ref_wav):
    def error(case):
        with pytest.raises(TtsError) as info:
            pm.hook.tts_synthesize(request=ERROR_CASES[case](Case(tiny, broken, ref_wav, tmp_path)))
        return info.value

    assert "generation_config.json" in error("model_invalid").detail
    assert "speech_tokenizer/preprocessor_config.json" in error("model_invalid").detail
    assert "custom_0_6b" in error("unknown_model_key").detail
    assert "no_such_model" in error("model_not_found").detail
    assert "vivian" in error("unsupported_speaker").detail
    assert "english" in error("unsupported_language").detail
    assert "Precision" in error("invalid_settings").detail
    assert "Precision=fp32" in error("invalid_audio").hint
    assert "Precision=fp32" in error("synthesis_failed").hint
    assert "model.safetensors (truncated: " in error("model_invalid (truncated weights)").detail
    assert "'banana'" in error("model_invalid (unknown tts_model_type)").detail
    assert "size mismatch" in error("model_load_failed").detail
    assert "NUL" in error("output_write_failed (NUL in the path)").detail


def test_a_failed_call_leaves_an_existing_file_untouched(pm, broken, tmp_path):
    out = tmp_path / "keep.wav"
    out.write_bytes(b"previous take")
    with pytest.raises(TtsError, match="invalid_audio"):
        pm.hook.tts_synthesize(request=request_for(broken["nan_audio"], out))
    assert out.read_bytes() == b"previous take"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.wav"]


# --- load: cache, switching, failure state ----------------------------------------------------


def test_same_settings_load_once_then_cached(pm, engine, tiny):
    engine.release()
    config = config_for(tiny["custom_voice"])
    with capture_logs() as logs:
        first = pm.hook.tts_load(config=config)
        second = pm.hook.tts_load(config=config)
    assert (first.cached, second.cached) == (False, True)
    assert [e["event"] for e in logs].count("tts.load.start") == 1
    assert second.load_s < 0.05 and second.model_path == tiny["custom_voice"]
    assert (second.device, second.dtype, second.attn_implementation) == ("cpu", "float32", "sdpa")


def test_load_result_describes_this_call(pm, tiny):
    pm.hook.tts_load(config=config_for(tiny["custom_voice"], Device="cpu"))
    again = pm.hook.tts_load(config=config_for(tiny["custom_voice"], Device="auto"))
    assert again.cached and again.device_source == "detected" and again.device == "cpu"
    again = pm.hook.tts_load(config=config_for(tiny["custom_voice"], Device="CPU"))
    assert again.cached and again.device_source == "config"


def cpu_has_bf16() -> bool:
    from qwen3tts_plugin.devices import acceleration_status, cpu_bf16_native

    return cpu_bf16_native(acceleration_status())


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bfloat16 (AMX/AVX512-BF16)")
def test_bf16_on_a_cpu_that_has_it_speaks_with_a_float32_codec(pm, engine, tiny, tmp_path):
    config = config_for(tiny["custom_voice"], Device="cpu", Precision="bf16")
    loaded = pm.hook.tts_load(config=config)
    assert (loaded.dtype, loaded.codec_dtype) == ("bfloat16", "float32")
    [status] = pm.hook.tts_status()
    assert (status.dtype, status.codec_dtype) == ("bfloat16", "float32")
    out = tmp_path / "bf16.wav"
    result = pm.hook.tts_synthesize(
        request=request_for(tiny["custom_voice"], out, Device="cpu", Precision="bf16")
    )
    assert (result.dtype, result.codec_dtype, result.backend) == ("bfloat16", "float32", "stepper")
    audio, _ = sf.read(str(out))
    assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-3


def test_changed_settings_release_the_old_model_first(pm, engine, tiny):
    pm.hook.tts_load(config=config_for(tiny["custom_voice"]))
    with capture_logs() as logs:
        result = pm.hook.tts_load(config=config_for(tiny["custom_voice"], Attention="eager"))
    events = [e["event"] for e in logs]
    assert events.index("tts.model.released") < events.index("tts.load.start")
    assert not result.cached and result.attn_implementation == "eager"
    assert engine.status().attn_implementation == "eager"


def test_a_request_that_cannot_load_keeps_the_working_model(pm, engine, tiny, broken):
    """A GPU that is not there (cuda:999 on any machine) fails at the one-tensor probe, a
    truncated folder at the size check: both before the resident model is released."""
    cpu = config_for(tiny["custom_voice"], Device="cpu")
    pm.hook.tts_load(config=cpu)
    refused = {
        "model_to_device_failed": config_for(tiny["custom_voice"], Device="cuda:999"),
        "model_invalid": config_for(broken["truncated"], Device="cpu"),
    }
    for code, config in refused.items():
        with capture_logs() as logs, pytest.raises(TtsError, match=code):
            pm.hook.tts_load(config=config)
        assert "tts.model.released" not in [e["event"] for e in logs], code
        assert pm.hook.tts_load(config=cpu).cached, code
    [status] = pm.hook.tts_status()
    assert status.loaded and status.device == "cpu"
    assert status.model == str(tiny["custom_voice"])


def test_status_reports_the_resident_model_and_the_last_failed_load(pm, engine, tiny):
    engine.release()
    [status] = pm.hook.tts_status()
    assert (status.provider, status.loaded, status.model, status.device) == (
        "qwen3_tts",
        False,
        None,
        None,
    )
    pm.hook.tts_load(config=config_for(tiny["custom_voice"], Device="cpu"))
    with pytest.raises(TtsError):
        pm.hook.tts_load(config=config_for(tiny["custom_voice"], Device="cuda:999"))
    [status] = pm.hook.tts_status()
    assert status.loaded and status.model_path == tiny["custom_voice"]
    assert (status.dtype, status.attn_implementation, status.backend) == (
        "float32",
        "sdpa",
        "stepper",
    )
    assert status.last_error.code == "model_to_device_failed"
    assert "cuda:999" in status.last_error.detail and "nvidia-smi" in status.last_error.hint
    pm.hook.tts_load(config=config_for(tiny["base"], Device="cpu"))
    [status] = pm.hook.tts_status()
    assert status.last_error is None and status.model == str(tiny["base"])


@pytest.mark.parametrize("missing", ["qwen_tts", "torch"])
def test_a_missing_runtime_is_engine_unavailable_with_what_to_install(tiny, missing):
    """The package made unimportable in a fresh process (``sys.modules[name] = None``), as
    in an environment where it was never installed."""
    code = (
        "import json, sys, hookspecs\n"
        f"sys.modules[{missing!r}] = None\n"
        "from hookspecs import EngineConfig, TtsError\n"
        "pm = hookspecs.plugin_manager()\n"
        "config = EngineConfig(provider='qwen3_tts', extra_params={'ModelPath': sys.argv[1]})\n"
        "try:\n"
        "    pm.hook.tts_load(config=config)\n"
        "except TtsError as err:\n"
        "    [status] = pm.hook.tts_status()\n"
        "    print(json.dumps({**err.to_dict(), 'status': status.last_error.code}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tiny["custom_voice"])],
        capture_output=True,
        text=True,
        check=True,
    )
    error = json.loads(out.stdout)
    assert (error["code"], error["status"]) == ("engine_unavailable", "engine_unavailable")
    assert missing in error["detail"] and "ModuleNotFoundError" in error["detail"]
    assert "pip install" in error["hint"]


def test_status_of_an_engine_never_used_imports_nothing_heavy():
    code = (
        "import json, sys, hookspecs\n"
        "[status] = hookspecs.plugin_manager().hook.tts_status()\n"
        "print(json.dumps({'loaded': status.loaded, 'heavy': [m for m in "
        "('torch', 'transformers', 'qwen_tts', 'numpy') if m in sys.modules]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"loaded": False, "heavy": []}


def test_failed_load_leaves_nothing_resident_and_is_remembered(pm, engine, tiny, broken):
    """A load that starts releases the model in memory first (never two at once)."""
    pm.hook.tts_load(config=config_for(tiny["custom_voice"]))
    with pytest.raises(TtsError, match="model_load_failed"):
        pm.hook.tts_load(config=config_for(broken["mismatched"]))
    status = engine.status()
    assert not status.loaded and status.last_error.code == "model_load_failed"
    assert not pm.hook.tts_load(config=config_for(tiny["custom_voice"])).cached
    assert engine.status().last_error is None


# --- logs --------------------------------------------------------------------------------------


def test_synthesis_logs_start_and_done_without_the_full_text(pm, tiny, tmp_path):
    text = "The quick brown fox jumps over the lazy dog near the riverbank at dawn."
    with capture_logs() as logs:
        pm.hook.tts_synthesize(
            request=request_for(tiny["custom_voice"], tmp_path / "a.wav", text=text)
        )
    start = next(e for e in logs if e["event"] == "tts.synthesize.start")
    done = next(e for e in logs if e["event"] == "tts.synthesize.done")
    assert (start["chars"], start["mode"], start["provider"]) == (
        len(text),
        "custom_voice",
        "qwen3_tts",
    )
    assert set(done) >= {"audio_s", "synth_s", "rtf", "device", "provider"}
    assert all(text not in json.dumps(e, default=str) for e in logs)


# --- concurrency -----------------------------------------------------------------------------


def test_sixteen_threads_with_a_settings_change_midway(pm, engine, tiny, tmp_path):
    """16 threads x 4 calls; halfway through, the host flips Attention. Every call must
    succeed and be served by the model its own settings selected."""
    flip = threading.Event()
    done = []
    lock = threading.Lock()

    def call(worker):
        outcomes = []
        for i in range(4):
            attention = "eager" if flip.is_set() else "sdpa"
            request = request_for(
                tiny["custom_voice"],
                tmp_path / f"w{worker:02d}_{i}.wav",
                generation=GenerationParams(max_new_tokens=4, seed=worker, allow_cut=True),
                Attention=attention,
            )
            result = pm.hook.tts_synthesize(request=request)
            outcomes.append((attention, result.attn_implementation))
            with lock:
                done.append(1)
                if len(done) == 32:
                    flip.set()
        return outcomes

    with capture_logs() as logs, ThreadPoolExecutor(max_workers=16) as pool:
        results = [o for outcomes in pool.map(call, range(16)) for o in outcomes]
    assert len(results) == 64
    assert all(asked == served for asked, served in results)
    assert {asked for asked, _ in results} == {"sdpa", "eager"}
    assert len(list(tmp_path.glob("*.wav"))) == 64
    # Queued calls for the resident model go first, so the flip costs one switch, not a reload
    # per alternation (the first load may happen here too, if another test left another model).
    loads = [e for e in logs if e["event"] == "tts.load.start"]
    assert len(loads) <= 2, [e["attn_implementation"] for e in loads]


# --- capabilities ----------------------------------------------------------------------------


def test_capabilities_list_models_without_loading(pm, tiny, tmp_path, monkeypatch):
    models_dir = tmp_path / "models"
    shutil.copytree(tiny["custom_voice"], models_dir / "Qwen3-TTS-12Hz-0.6B-CustomVoice")
    (models_dir / "Qwen3-TTS-12Hz-0.6B-Base").mkdir(parents=True)
    monkeypatch.setenv("QWEN_TTS_MODELS_DIR", str(models_dir))
    [caps] = pm.hook.tts_capabilities(config=None)
    models = {m.key: m for m in caps.models}
    assert set(models) == {
        "custom_0_6b",
        "custom_1_7b",
        "base_0_6b",
        "base_1_7b",
        "voice_design_1_7b",
    }
    custom = models["custom_0_6b"]
    assert custom.present and custom.valid and custom.missing == []
    assert "vivian" in custom.speakers and "english" in custom.languages
    assert models["base_0_6b"].present and not models["base_0_6b"].valid
    assert "model.safetensors" in models["base_0_6b"].missing
    assert not models["custom_1_7b"].present
    assert caps.provider == "qwen3_tts" and caps.sample_rate == 24_000
    assert caps.voice_modes == ["custom_voice", "voice_design", "voice_clone"]
    assert caps.acceleration.preferred_device == "cpu"
    assert caps.settings_schema["properties"]["Device"]["pattern"]
    assert caps.settings_schema["properties"]["ModelKey"]["enum"][0] == "custom_0_6b"


def test_capabilities_look_where_the_config_says(pm, tiny, broken, tmp_path):
    """ModelsDir and ModelPath from the host's config; the selected model is marked; settings
    that do not validate never fail a settings page."""
    models_dir = tmp_path / "elsewhere"
    shutil.copytree(tiny["base"], models_dir / "Qwen3-TTS-12Hz-0.6B-Base")
    shutil.copytree(broken["truncated"], models_dir / "Qwen3-TTS-12Hz-0.6B-CustomVoice")
    params = {"ModelsDir": str(models_dir), "ModelKey": "base_0_6b", "Device": "gpu!"}
    [caps] = pm.hook.tts_capabilities(
        config=EngineConfig(provider="qwen3_tts", extra_params=params)
    )
    models = {m.key: m for m in caps.models}
    assert models["base_0_6b"].valid and models["base_0_6b"].configured
    assert models["base_0_6b"].local_path == models_dir / "Qwen3-TTS-12Hz-0.6B-Base"
    custom = models["custom_0_6b"]
    assert custom.present and not custom.valid and not custom.configured
    assert custom.missing[0].startswith("model.safetensors (truncated: ")

    local = {"ModelPath": str(tiny["voice_design"]), "ModelsDir": 3}
    [caps] = pm.hook.tts_capabilities(config=EngineConfig(provider="qwen3_tts", extra_params=local))
    [chosen] = [m for m in caps.models if m.configured]
    assert (chosen.key, chosen.kind, chosen.valid) == (
        str(tiny["voice_design"]),
        "voice_design",
        True,
    )
    assert chosen.repo_id == "" and len(caps.models) == 6

    other = EngineConfig(provider="another_engine", extra_params={"ModelsDir": str(models_dir)})
    [caps] = pm.hook.tts_capabilities(config=other)
    assert [m.key for m in caps.models if m.configured] == ["custom_0_6b"]  # the default
    assert all(m.local_path.parent != models_dir for m in caps.models)


def test_model_key_resolves_inside_models_dir(pm, tiny, tmp_path):
    models_dir = tmp_path / "models"
    shutil.copytree(tiny["custom_voice"], models_dir / "Qwen3-TTS-12Hz-0.6B-CustomVoice")
    config = EngineConfig(
        provider="qwen3_tts", extra_params={"ModelKey": "custom_0_6b", "ModelsDir": str(models_dir)}
    )
    result = pm.hook.tts_load(config=config)
    assert result.model == "custom_0_6b"
    assert result.model_path == models_dir / "Qwen3-TTS-12Hz-0.6B-CustomVoice"


# --- stdout stays the host's -------------------------------------------------------------------


HOST_SCRIPT = """
import logging, sys
import hookspecs
from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, TtsError, Voice

custom, base, garbage, out, verbosity = sys.argv[1:6]
if verbosity == "debug":
    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s %(message)s")
pm = hookspecs.plugin_manager()
for n, do_sample in enumerate((False, True)):
    request = SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params={"ModelPath": custom}),
        text="Hi.",
        out_path=f"{out}/{n}.wav",
        generation=GenerationParams(do_sample=do_sample, max_new_tokens=8, allow_cut=True),
    )
    pm.hook.tts_synthesize(request=request)
clone = SynthesisRequest(
    config=EngineConfig(provider="qwen3_tts", extra_params={"ModelPath": base}),
    text="Hi.",
    out_path=f"{out}/clone.wav",
    voice=Voice(mode="voice_clone", ref_audio=garbage),
)
try:
    pm.hook.tts_synthesize(request=clone)
except TtsError as err:
    print("ERROR", err.code)
print("RESULT ok")
"""

CHATTER = ("flash-attn", "sox", "SoX", "pad_token_id", "generation flags", "PySoundFile")
"""What qwen_tts, sox, transformers and librosa print when nobody stops them."""


def run_host(tiny, tmp_path, verbosity):
    script = tmp_path / "host.py"
    script.write_text(HOST_SCRIPT)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really audio")
    argv = [tiny["custom_voice"], tiny["base"], garbage, tmp_path, verbosity]
    return subprocess.run(
        [sys.executable, str(script), *map(str, argv)], capture_output=True, text=True, check=True
    )


@pytest.mark.slow
def test_a_host_that_configures_no_logging_sees_only_its_output_and_warnings(tiny, tmp_path):
    """stdout is the host's alone; stderr carries the plugin's warnings (Python's default for
    an unconfigured host) and none of the third-party chatter."""
    out = run_host(tiny, tmp_path, "quiet")
    assert out.stdout == "ERROR ref_audio_invalid\nRESULT ok\n"
    lines = out.stderr.splitlines()
    assert lines and all(
        line.startswith("tts.synthesize.failed code=ref_audio_invalid") for line in lines
    ), out.stderr
    assert not [word for word in CHATTER if word in out.stderr]


@pytest.mark.slow
def test_a_host_that_configures_logging_gets_events_and_the_chatter_at_debug(tiny, tmp_path):
    out = run_host(tiny, tmp_path, "debug")
    assert out.stdout == "ERROR ref_audio_invalid\nRESULT ok\n"
    ours = [line for line in out.stderr.splitlines() if " qwen3tts_plugin." in line]
    assert any(line.startswith("INFO qwen3tts_plugin.residency tts.load.done ") for line in ours)
    third_party = "\n".join(line for line in ours if "tts.third_party." in line)
    assert third_party.startswith("DEBUG ")
    for word in ("flash-attn", "sox: not found", "SoX could not be found"):
        assert word in third_party, word
    foreign = [line for line in out.stderr.splitlines() if line not in ours]
    assert not [word for word in CHATTER if word in "\n".join(foreign)]


def test_events_go_to_the_standard_library_when_structlog_is_not_configured(
    pm, engine, tiny, caplog
):
    import structlog

    assert not structlog.is_configured()
    engine.release()
    caplog.set_level(logging.INFO, logger="qwen3tts_plugin")
    pm.hook.tts_load(config=config_for(tiny["custom_voice"], Device="cpu"))
    [record] = [r for r in caplog.records if r.getMessage().startswith("tts.load.start ")]
    assert record.name == "qwen3tts_plugin.residency" and record.levelno == logging.INFO
    assert (record.funcName, Path(record.pathname).name) == ("ensure", "residency.py")
    assert record.tts["device"] == "cpu" and record.tts["provider"] == "qwen3_tts"
    assert "backend=stepper" in record.getMessage()  # auto on the CPU
    assert not [r for r in caplog.records if r.levelno < logging.INFO]


def test_a_refused_load_is_logged_with_its_code(pm, tiny):
    with capture_logs() as logs, pytest.raises(TtsError, match="invalid_device"):
        pm.hook.tts_load(config=config_for(tiny["custom_voice"], Device="gpu"))
    [event] = [e for e in logs if e["event"] == "tts.load.failed"]
    assert event["code"] == "invalid_device" and event["provider"] == "qwen3_tts"
