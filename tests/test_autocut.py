"""The drop-in for the editor's Qwen3 service, called exactly as the editor calls it.

Signatures, calls and result shapes come from superAIAutoCutVideo's backend
(``modules/qwen3_tts_service.py``, ``modules/tts_service.py``, ``routes/tts_routes.py``,
summarised in the project's shared editor-api notes). Real engine, tiny checkpoints laid out in
an editor-style models folder.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import BaseModel, Field

import hookspecs
from qwen3tts_plugin import autocut
from qwen3tts_plugin.autocut import Qwen3TTSService

EDITOR_SIGNATURES = {
    "synthesize_custom_voice_to_wav": (
        "text, out_path, model_key, language, speaker, instruct=None, device=None"
    ),
    "synthesize_voice_clone_to_wav": (
        "text, out_path, model_key, language, ref_audio, ref_text=None, "
        "x_vector_only_mode=True, device=None"
    ),
    "synthesize_voice_design_to_wav": (
        "text, out_path, model_key, language, instruct, device=None"
    ),
    "synthesize_by_voice_asset": "text, out_path, voice_asset, device=None",
    "synthesize_to_wav": (
        "text, out_path, model_key, language, speaker=None, instruct=None, ref_audio=None, "
        "ref_text=None, x_vector_only_mode=True, device=None"
    ),
    "list_supported_speakers": "model_key, device=None",
    "list_supported_languages": "model_key, device=None",
}
"""The editor's public methods, as ``name, name=default`` (all async)."""

RESULT_KEYS = {"success", "path", "duration", "sample_rate"}


class Qwen3TTSVoice(BaseModel):
    """The editor's voice asset (modules/qwen3_tts_voice_store.py), the fields it reads."""

    id: str
    name: str
    kind: str = Field(default="clone")
    model_key: str = Field(default="base_0_6b")
    language: str = Field(default="Auto")
    speaker: str | None = None
    ref_audio_path: str | None = None
    ref_text: str | None = None
    instruct: str | None = None
    x_vector_only_mode: bool = Field(default=True)


@pytest.fixture(scope="module")
def models_dir(tiny, tmp_path_factory):
    """The editor's layout: <uploads>/models/Qwen/<repo name>/."""
    root = tmp_path_factory.mktemp("uploads") / "models" / "Qwen"
    shutil.copytree(tiny["custom_voice"], root / "Qwen3-TTS-12Hz-0.6B-CustomVoice")
    shutil.copytree(tiny["base"], root / "Qwen3-TTS-12Hz-0.6B-Base")
    shutil.copytree(tiny["voice_design"], root / "Qwen3-TTS-12Hz-1.7B-VoiceDesign")
    truncated = root / "Qwen3-TTS-12Hz-1.7B-Base"
    shutil.copytree(tiny["base"], truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    return root


@pytest.fixture
def service(models_dir):
    """The one-line swap: the editor's singleton, pointed at its own models folder."""
    return Qwen3TTSService(models_dir=models_dir, extra_params={"Device": "cpu"})


@pytest.fixture(scope="module")
def ref_audio(tmp_path_factory):
    """A 16 kHz mono WAV, as the editor converts every reference with ffmpeg."""
    path = tmp_path_factory.mktemp("voices") / "ref_16k_mono.wav"
    t = np.arange(16_000 * 2) / 16_000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16_000)
    return path


def run(coroutine):
    return asyncio.run(coroutine)


def assert_wav_result(result, out):
    assert set(result) == RESULT_KEYS and result["success"] is True
    assert result["path"] == str(out) and Path(result["path"]).is_file()
    assert result["sample_rate"] == 24_000
    info = sf.info(result["path"])
    assert result["duration"] == pytest.approx(info.frames / info.samplerate)
    assert result["duration"] > 0


def test_methods_keep_the_editors_names_parameters_and_asyncness():
    for name, expected in EDITOR_SIGNATURES.items():
        method = getattr(Qwen3TTSService, name)
        assert inspect.iscoroutinefunction(method), name
        params = list(inspect.signature(method).parameters.values())[1:]
        shown = ", ".join(
            p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in params
        )
        assert shown == expected, name
    assert not inspect.iscoroutinefunction(Qwen3TTSService.get_runtime_status)


def test_the_editors_calls_run_unchanged(service, tmp_path, ref_audio):
    """The calls of modules/tts_service.py and routes/qwen3_tts_routes.py, word for word."""
    out = tmp_path / "custom.wav"
    result = run(
        service.synthesize_custom_voice_to_wav(
            text="Hello there.",
            out_path=out,
            model_key="custom_0_6b",
            language="Auto",
            speaker="Vivian",
            instruct=None,
            device="cpu",
        )
    )
    assert_wav_result(result, out)

    out = tmp_path / "clone.wav"
    result = run(
        service.synthesize_voice_clone_to_wav(
            text="Hello there.",
            out_path=out,
            model_key="base_0_6b",
            language="Auto",
            ref_audio=str(ref_audio),
            ref_text=None,
            x_vector_only_mode=True,
            device=None,
        )
    )
    assert_wav_result(result, out)

    out = tmp_path / "design.wav"
    result = run(
        service.synthesize_voice_design_to_wav(
            text="Hello there.",
            out_path=out,
            model_key="voice_design_1_7b",
            language="English",
            instruct="A calm, low voice.",
            device="cpu",
        )
    )
    assert_wav_result(result, out)

    assert run(service.list_supported_speakers(model_key="", device=None)) == run(
        service.list_supported_speakers(model_key="custom_0_6b")
    )  # blank: the editor's default model
    speakers = run(service.list_supported_speakers(model_key="custom_0_6b", device="cpu"))
    languages = run(service.list_supported_languages(model_key="custom_0_6b", device="cpu"))
    assert "vivian" in speakers and languages[0] == "auto" and "english" in languages


@pytest.mark.parametrize("as_model", [False, True], ids=["dict", "pydantic"])
def test_voice_assets_map_as_the_editor_maps_them(service, tmp_path, ref_audio, as_model):
    assets = {
        "custom_role": {"kind": "custom_role", "model_key": "custom_0_6b", "speaker": "ryan"},
        "clone": {"kind": "clone", "ref_audio_path": str(ref_audio)},
        "design_clone": {
            "kind": "design_clone",
            "ref_audio_path": str(ref_audio),
            "ref_text": "The designed voice says this.",
        },
    }
    for kind, fields in assets.items():
        asset = Qwen3TTSVoice(id=kind, name=kind, **fields) if as_model else fields
        out = tmp_path / f"{kind}.wav"
        result = run(
            service.synthesize_by_voice_asset(
                text="A line of narration.", out_path=out, voice_asset=asset, device="cpu"
            )
        )
        assert_wav_result(result, out)
    with pytest.raises(ValueError, match="invalid_voice_asset"):
        run(service.synthesize_by_voice_asset("Hi.", tmp_path / "x.wav", voice_asset=42))


def test_runtime_status_has_the_editors_shape(service, engine, tmp_path):
    engine.release()
    assert service.get_runtime_status() == {
        "loaded": False,
        "model_key": None,
        "model_path": None,
        "device": "cpu",
        "precision": "fp32",
        "last_device_error": None,
    }
    run(
        service.synthesize_custom_voice_to_wav(
            "Hi.", tmp_path / "a.wav", "custom_0_6b", "Auto", "vivian"
        )
    )
    status = service.get_runtime_status()
    assert status["loaded"] and status["model_key"] == "custom_0_6b"
    assert status["model_path"].endswith("Qwen3-TTS-12Hz-0.6B-CustomVoice")
    assert (status["device"], status["precision"], status["last_device_error"]) == (
        "cpu",
        "fp32",
        None,
    )


def test_a_gpu_that_fails_keeps_the_cpu_model_and_sets_last_device_error(service, tmp_path):
    """cuda:999 exists on no machine: the GPU-failure path, real, wherever the tests run."""
    run(
        service.synthesize_custom_voice_to_wav(
            "Hi.", tmp_path / "a.wav", "custom_0_6b", "Auto", "vivian"
        )
    )
    out = tmp_path / "gpu.wav"
    with pytest.raises(RuntimeError) as info:
        run(
            service.synthesize_custom_voice_to_wav(
                "Hi.", out, "custom_0_6b", "Auto", "vivian", device="cuda:999"
            )
        )
    assert str(info.value).startswith("model_to_device_failed:cuda:999: ")
    assert isinstance(info.value.__cause__, hookspecs.TtsError)
    assert not out.exists()
    status = service.get_runtime_status()
    assert status["loaded"] and status["device"] == "cpu"  # still resident, no reload
    assert status["last_device_error"].startswith("model_to_device_failed:cuda:999: ")


def test_model_errors_carry_the_prefixes_the_editors_routes_turn_into_503(
    service, models_dir, tmp_path
):
    def error(call):
        with pytest.raises(RuntimeError) as info:
            run(call)
        return str(info.value)

    assert (
        error(
            service.synthesize_custom_voice_to_wav(
                "Hi.", tmp_path / "a.wav", "huge_9b", "Auto", "x"
            )
        )
        == "unknown_model_key:huge_9b"
    )
    missing = models_dir / "Qwen3-TTS-12Hz-1.7B-CustomVoice"
    assert (
        error(
            service.synthesize_custom_voice_to_wav(
                "Hi.", tmp_path / "a.wav", "custom_1_7b", "Auto", "vivian"
            )
        )
        == f"model_invalid:custom_1_7b:dir_missing|path={missing}"
    )
    damaged = error(
        service.synthesize_voice_clone_to_wav(
            "Hi.", tmp_path / "a.wav", "base_1_7b", "Auto", ref_audio="/nowhere.wav"
        )
    )
    assert damaged.startswith("model_invalid:base_1_7b:model.safetensors (truncated: ")
    assert damaged.endswith(f"|path={models_dir / 'Qwen3-TTS-12Hz-1.7B-Base'}")
    assert "," not in damaged.partition("|path=")[0]  # the editor splits the list on commas
    assert error(service.list_supported_speakers("custom_1_7b")).startswith(
        "model_invalid:custom_1_7b:dir_missing|path="
    )
    assert error(service.list_supported_speakers("no_such_key")) == "unknown_model_key:no_such_key"
    wrong_speaker = error(
        service.synthesize_custom_voice_to_wav(
            "Hi.", tmp_path / "a.wav", "custom_0_6b", "Auto", "nobody"
        )
    )
    assert wrong_speaker.startswith("unsupported_speaker:speaker 'nobody'")


def test_a_missing_qwen_tts_is_qwen_tts_import_failed(models_dir):
    code = (
        "import asyncio, sys\n"
        "sys.modules['qwen_tts'] = None\n"
        "from qwen3tts_plugin.autocut import Qwen3TTSService\n"
        "service = Qwen3TTSService(models_dir=sys.argv[1], extra_params={'Device': 'cpu'})\n"
        "try:\n"
        "    asyncio.run(service.synthesize_custom_voice_to_wav("
        "'Hi.', sys.argv[2], 'custom_0_6b', 'Auto', 'vivian'))\n"
        "except RuntimeError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(models_dir), str(models_dir / "x.wav")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("qwen_tts_import_failed:qwen_tts cannot be imported: ")
    assert "pip install" in out.stdout


def test_acceleration_status_has_the_detectors_shape():
    status = autocut.get_qwen3_tts_acceleration_status()
    assert set(status) == {
        "supported",
        "preferred_device",
        "backend",
        "reasons",
        "os",
        "torch",
        "cuda",
        "gpu",
        "min_cuda_compute_capability",
    }
    assert set(status["os"]) == {"system", "release", "version", "machine"}
    assert set(status["torch"]) == {"version", "cuda_version"}
    assert set(status["cuda"]) == {"available", "device_count"}
    assert status["min_cuda_compute_capability"] == {"major": 6, "minor": 0}
    if status["supported"]:
        assert status["gpu"]["compute_capability"]["major"] >= 6
        assert autocut.get_qwen3_tts_preferred_device() == "cuda:0"
    else:
        assert status["gpu"] is None and status["reasons"]
        assert autocut.get_qwen3_tts_preferred_device() == "cpu"
    json.dumps(status)  # the route returns it as JSON


def test_a_frozen_app_without_entry_points_still_finds_the_engine(service, models_dir, tmp_path):
    """PyInstaller drops package metadata: no entry points. The service registers the engine's
    hooks on the plugin manager it is given."""
    pm = hookspecs.plugin_manager(load_entrypoints=False)
    assert pm.list_name_plugin() == []
    frozen = Qwen3TTSService(
        models_dir=models_dir, extra_params={"Device": "cpu"}, plugin_manager=pm
    )
    out = tmp_path / "frozen.wav"
    result = run(frozen.synthesize_custom_voice_to_wav("Hi.", out, "custom_0_6b", "Auto", "eric"))
    assert_wav_result(result, out)
    assert [name for name, _ in pm.list_name_plugin()] == ["qwen3_tts"]
