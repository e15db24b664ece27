"""The contract a host depends on: models, the error type, hook specs, entry points."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pluggy
import pytest
from pydantic import ValidationError

import hookspecs
from hookspecs import (
    BatchItem,
    EngineConfig,
    ErrorInfo,
    GenerationParams,
    LoadResult,
    SynthesisRequest,
    SynthesisResult,
    TtsError,
    Voice,
)


def test_error_string_form_is_code_colon_detail():
    err = TtsError("model_to_device_failed", "cuda:0: no driver", "install a driver")
    assert str(err) == "model_to_device_failed: cuda:0: no driver"
    assert str(err).startswith("model_to_device_failed: ")
    assert (err.code, err.detail, err.hint) == (
        "model_to_device_failed",
        "cuda:0: no driver",
        "install a driver",
    )
    assert err.to_dict() == {
        "code": "model_to_device_failed",
        "detail": "cuda:0: no driver",
        "hint": "install a driver",
    }


def test_error_survives_pickling_for_process_pools():
    import pickle

    err = pickle.loads(pickle.dumps(TtsError("empty_text", "nothing to say")))
    assert (err.code, err.detail, err.hint, str(err)) == (
        "empty_text",
        "nothing to say",
        None,
        "empty_text: nothing to say",
    )


@pytest.mark.parametrize("code", ["", "Bad Code", "with-dash", "UPPER"])
def test_error_codes_are_snake_case(code):
    with pytest.raises(ValueError):
        TtsError(code, "detail")


def test_engine_config_keeps_the_hosts_extra_fields():
    config = EngineConfig(
        provider="qwen3_tts",
        enabled=True,
        description="narrator",
        extra_params={"Device": "cuda:0"},
    )
    assert config.extra_params == {"Device": "cuda:0"}
    assert config.model_extra == {"enabled": True, "description": "narrator"}


def test_engine_config_needs_a_provider():
    with pytest.raises(ValidationError, match="provider"):
        EngineConfig(extra_params={})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", 0, "greater than 0"),
        ("top_k", -1, "greater than or equal to 0"),
        ("top_p", 0, "greater than 0"),
        ("top_p", 1.5, "less than or equal to 1"),
        ("max_new_tokens", 1, "greater than or equal to 2"),
        ("temperature", float("inf"), "finite number"),
        ("top_p", float("nan"), "finite number"),
        ("max_new_tokens", 8193, "less than or equal to 8192"),
        ("seed", -1, "greater than or equal to 0"),
        ("repetition_penalty", 0, "greater than 0"),
        ("bogus", 1, "Extra inputs are not permitted"),
    ],
)
def test_generation_params_reject_bad_values(field, value, message):
    with pytest.raises(ValidationError, match=message) as info:
        GenerationParams(**{field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_generation_params_defaults():
    params = GenerationParams()
    assert params.model_dump() == {
        "do_sample": True,
        "temperature": 0.9,
        "top_k": 50,
        "top_p": 1.0,
        "repetition_penalty": None,
        "max_new_tokens": 2048,
        "seed": None,
        "allow_cut": False,
    }


def test_voice_rejects_unknown_modes_and_defaults_to_custom_voice():
    assert Voice().mode == "custom_voice"
    assert Voice().x_vector_only is None
    with pytest.raises(ValidationError, match="custom_voice"):
        Voice(mode="karaoke")


def test_request_round_trips_through_json(tmp_path):
    request = SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params={"Speaker": "vivian"}),
        text="Hello.",
        out_path=tmp_path / "a.wav",
        voice=Voice(mode="voice_clone", ref_audio=tmp_path / "ref.wav", x_vector_only=True),
        generation=GenerationParams(seed=7),
    )
    again = SynthesisRequest.model_validate_json(request.model_dump_json())
    assert again == request
    assert isinstance(again.out_path, Path)


def test_results_only_accept_real_dtypes(tmp_path):
    common = dict(provider="qwen3_tts", device="cpu", attn_implementation="sdpa")
    with pytest.raises(ValidationError, match="float32"):
        SynthesisResult(
            path=tmp_path / "a.wav",
            duration_s=1,
            sample_rate=24000,
            dtype="fp32",
            load_s=0,
            synth_s=1,
            rtf=1,
            **common,
        )
    with pytest.raises(ValidationError, match="device_source"):
        LoadResult(
            model="custom_0_6b",
            model_path=tmp_path,
            device_source="guessed",
            dtype="float32",
            load_s=0,
            cached=False,
            **common,
        )


def test_every_model_field_is_documented():
    for name in hookspecs.__all__:
        obj = getattr(hookspecs, name)
        if inspect.isclass(obj) and issubclass(obj, hookspecs.models.BaseModel):
            undocumented = [f for f, info in obj.model_fields.items() if not info.description]
            assert not undocumented, f"{name}: {undocumented}"


FIRSTRESULT = {
    "tts_capabilities": False,
    "tts_check_settings": True,
    "tts_status": False,
    "tts_load": True,
    "tts_synthesize": True,
    "tts_synthesize_batch": True,
    "tts_synthesize_stream": True,
}


def test_every_hook_is_documented_and_firstresult_as_specified():
    """Every spec in hookspecs.specs, so a new hook cannot slip in undocumented."""
    pm = hookspecs.plugin_manager(load_entrypoints=False)
    specs = {
        name: getattr(pm.hook, name)
        for name, fn in vars(hookspecs.specs).items()
        if name.startswith("tts_") and callable(fn)
    }
    assert set(specs) == set(FIRSTRESULT)
    for name, caller in specs.items():
        assert len(inspect.getdoc(getattr(hookspecs, name)) or "") > 100, name
        assert caller.spec.opts["firstresult"] is FIRSTRESULT[name], name
        assert name in hookspecs.__all__, name


def a_result(tmp_path) -> SynthesisResult:
    """A valid result with only the fields every engine must fill."""
    return SynthesisResult(
        provider="qwen3_tts",
        path=tmp_path / "a.wav",
        duration_s=1,
        sample_rate=24000,
        device="cpu",
        dtype="float32",
        attn_implementation="sdpa",
        load_s=0,
        synth_s=1,
        rtf=1,
    )


def test_a_batch_item_holds_exactly_one_outcome(tmp_path):
    result = a_result(tmp_path)
    assert result.batch_size == 1  # engines that predate batching still build valid results
    error = ErrorInfo.from_error(TtsError("empty_text", "nothing to say", "Say something."))
    assert BatchItem(index=0, result=result).ok
    failed = BatchItem(index=1, error=error)
    assert not failed.ok and str(failed.error.to_error()) == "empty_text: nothing to say"
    assert failed.error.to_error().hint == "Say something."
    for bad in ({"index": 0}, {"index": 0, "result": result, "error": error}):
        with pytest.raises(ValidationError, match="exactly one"):
            BatchItem(**bad)
    with pytest.raises(ValidationError):
        BatchItem(index=-1, error=error)
    again = BatchItem.model_validate_json(failed.model_dump_json())
    assert again == failed


def test_specs_can_be_added_from_the_top_level_package():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    assert set(FIRSTRESULT) <= set(vars(pm.hook))


def test_an_in_test_engine_is_called_and_others_return_none(tmp_path):
    class EchoEngine:
        @hookspecs.hookimpl
        def tts_load(self, config):
            return None if config.provider != "echo" else "echo-loaded"

    pm = hookspecs.plugin_manager(load_entrypoints=False)
    pm.register(EchoEngine(), name="echo")
    try:
        assert pm.hook.tts_load(config=EngineConfig(provider="echo")) == "echo-loaded"
        assert pm.hook.tts_load(config=EngineConfig(provider="other")) is None
    finally:
        pm.unregister(name="echo")


def test_installed_distribution_registers_qwen3_tts():
    found = {ep.name: ep.value for ep in entry_points(group=hookspecs.PROJECT)}
    assert found.get("qwen3_tts") == "qwen3tts_plugin.hooks"
    pm = hookspecs.plugin_manager()
    assert "qwen3_tts" in dict(pm.list_name_plugin())


def test_plugin_env_switch_limits_loading(monkeypatch):
    monkeypatch.setenv(hookspecs.manager.PLUGINS_ENV, "")
    assert hookspecs.plugin_manager().list_name_plugin() == []
    monkeypatch.setenv(hookspecs.manager.PLUGINS_ENV, "qwen3_tts")
    assert [n for n, _ in hookspecs.plugin_manager().list_name_plugin()] == ["qwen3_tts"]


def test_loading_entry_points_imports_no_heavy_library():
    code = (
        "import json, sys, hookspecs\n"
        "pm = hookspecs.plugin_manager()\n"
        "print(json.dumps({'plugins': [n for n, _ in pm.list_name_plugin()],"
        " 'heavy': [m for m in ('torch', 'transformers', 'qwen_tts', 'numpy', 'soundfile')"
        " if m in sys.modules]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report == {"plugins": ["qwen3_tts"], "heavy": []}


def test_a_misspelt_hook_is_named_not_ignored_silently():
    class Misspelt:
        @hookspecs.hookimpl
        def tts_synthesise(self, request):  # the contract says tts_synthesize
            return None

    pm = hookspecs.plugin_manager(load_entrypoints=False)
    pm.register(Misspelt(), name="misspelt")
    with pytest.warns(UserWarning, match="misspelt implements 'tts_synthesise'"):
        found = hookspecs.manager.unknown_hooks(pm)
    assert found == ["misspelt implements 'tts_synthesise', which the contract lacks"]
    assert hookspecs.manager.unknown_hooks(hookspecs.plugin_manager()) == []


def test_a_host_finds_an_engines_settings_by_role_not_by_name():
    schema = {
        "properties": {
            "Where": {"type": "string", hookspecs.ROLES_KEY: ["device"]},
            "Lots": {"type": "integer", hookspecs.ROLES_KEY: ["batch_size", "speed_only"]},
            "Hurry": {"type": "boolean", hookspecs.ROLES_KEY: ["speed_only"]},
            "Colour": {"type": "string"},
        }
    }
    assert hookspecs.settings_with_role(schema, "batch_size") == ["Lots"]
    assert hookspecs.settings_with_role(schema, "speed_only") == ["Lots", "Hurry"]
    assert hookspecs.settings_with_role(schema, "model") == []
    assert hookspecs.settings_with_role({}, "device") == []
    with pytest.raises(ValueError, match="unknown setting role 'colour'"):
        hookspecs.settings_with_role(schema, "colour")


def test_acceleration_status_carries_engine_facts_under_extras_only():
    from hookspecs import AccelerationStatus

    status = AccelerationStatus(
        supported=False,
        preferred_device="cpu",
        backend="cpu",
        extras={"fast_kernels": {"available": False, "package": "x", "version": None}},
    )
    assert AccelerationStatus.model_validate_json(status.model_dump_json()) == status
    assert "cuda_graphs_available" not in AccelerationStatus.model_fields  # no engine's library


def test_only_the_final_audio_chunk_carries_the_result_and_samples_are_whole(tmp_path):
    result = a_result(tmp_path)
    chunk = hookspecs.AudioChunk(index=0, samples=b"\x00\x00" * 2400, sample_rate=24000)
    assert chunk.duration_s == pytest.approx(0.1)
    hookspecs.AudioChunk(index=3, samples=b"", sample_rate=24000, final=True, result=result)
    for bad in (
        {"final": True},
        {"result": result},
        {"samples": b"\x00"},
    ):
        with pytest.raises(ValueError):
            hookspecs.AudioChunk(**{"index": 1, "samples": b"", "sample_rate": 24000, **bad})
