"""Placement: load straight onto the device, verify every component, never fall back."""

from __future__ import annotations

import gc

import pytest
import torch
from engine_logs import capture_logs

from hookspecs import EngineConfig, TtsError
from qwen3tts_plugin.backends.device import check_device
from qwen3tts_plugin.backends.qwen_tts.placement import load_model, verify_placement
from qwen3tts_plugin.devices import acceleration_status, cpu_bf16_native, decide
from qwen3tts_plugin.settings import parse_settings


def cpu_plan(**extra):
    return decide(parse_settings({"Device": "cpu", **extra}), acceleration_status())


@pytest.fixture
def fresh_model(tiny):
    """A private model the test may damage."""
    return load_model(tiny["custom_voice"], cpu_plan())


def test_cpu_load_places_every_component_in_float32(fresh_model):
    model = fresh_model
    assert model.device == torch.device("cpu")
    assert model.model.speech_tokenizer.device == torch.device("cpu")
    for module in (model.model, model.model.speech_tokenizer.model):
        for tensor in [*module.parameters(), *module.buffers()]:
            assert tensor.device.type == "cpu"
        assert {p.dtype for p in module.parameters()} == {torch.float32}


@pytest.mark.skipif(
    not cpu_bf16_native(acceleration_status()), reason="this CPU has no native bfloat16"
)
def test_bf16_on_a_cpu_that_has_it_loads_the_model_bf16_and_the_codec_float32(tiny):
    plan = cpu_plan(Precision="bf16")
    model = load_model(tiny["custom_voice"], plan)
    assert plan.dtype == "bfloat16"
    assert {p.dtype for p in model.model.parameters()} == {torch.bfloat16}
    codec = model.model.speech_tokenizer.model
    assert {p.dtype for p in codec.parameters()} == {torch.float32}


def test_verification_names_a_component_left_on_another_device(fresh_model):
    # Builds the seed's bug deliberately: one submodule ends up elsewhere (here the meta
    # device, the only other device a CPU-only machine has).
    fresh_model.model.talker.codec_head.to("meta")
    with pytest.raises(TtsError) as info:
        verify_placement(fresh_model, cpu_plan())
    assert info.value.code == "model_to_device_failed"
    assert "model.talker.codec_head.weight on meta" in info.value.detail
    assert "same device" in info.value.hint


def test_verification_names_the_speech_tokenizer_left_behind(fresh_model):
    fresh_model.model.speech_tokenizer.device = torch.device("meta")
    with pytest.raises(TtsError, match=r"speech_tokenizer\.device is meta"):
        verify_placement(fresh_model, cpu_plan())


def test_verification_names_a_parameter_in_the_wrong_dtype(fresh_model):
    fresh_model.model.speech_tokenizer.model.to(torch.float64)
    with pytest.raises(TtsError) as info:
        verify_placement(fresh_model, cpu_plan())
    assert "speech_tokenizer.model." in info.value.detail and "float64" in info.value.detail


def test_float32_buffers_are_allowed_in_a_half_precision_load(tiny):
    # A bf16 load (built by hand: the policy gives it only on a CPU with native bf16) keeps
    # rotary inv_freq buffers in float32; verification accepts them and checks parameters.
    plan = cpu_plan()
    bf16_plan = type(plan)(**{**plan.__dict__, "dtype": "bfloat16"})
    model = load_model(tiny["custom_voice"], bf16_plan)
    assert {p.dtype for p in model.model.parameters()} == {torch.bfloat16}


def test_cuda_without_a_gpu_fails_inside_torch():
    with pytest.raises(TtsError) as info:
        check_device("cuda:0")
    assert info.value.code == "model_to_device_failed"
    assert info.value.detail.startswith("cuda:0: ")
    assert "nvidia-smi" in info.value.hint and "never falls back" in info.value.hint


def _live_models() -> int:
    from qwen_tts.core.models import Qwen3TTSForConditionalGeneration

    gc.collect()
    return sum(type(o) is Qwen3TTSForConditionalGeneration for o in gc.get_objects())


@pytest.mark.parametrize("device", ["cuda:0", "cuda", "cuda:3", "mps"])
def test_configured_gpu_on_a_cpu_machine_never_falls_back(pm, engine, tiny, device):
    config = EngineConfig(
        provider="qwen3_tts",
        extra_params={"Device": device, "ModelPath": str(tiny["custom_voice"])},
    )
    before = _live_models()
    resident = engine.status().model_copy(update={"last_error": None})
    with capture_logs() as logs, pytest.raises(TtsError) as info:
        pm.hook.tts_load(config=config)
    assert info.value.code == "model_to_device_failed"
    assert str(info.value).startswith("model_to_device_failed: ")
    assert info.value.hint and "Device=cpu" in info.value.hint
    after = engine.status()
    assert after.model_copy(update={"last_error": None}) == resident  # in memory: untouched
    assert after.last_error.code == "model_to_device_failed"
    assert _live_models() <= before  # nothing was loaded on the CPU instead
    events = [e["event"] for e in logs]
    assert "tts.load.failed" in events and "tts.load.done" not in events
    failed = next(e for e in logs if e["event"] == "tts.load.failed")
    assert failed["code"] == "model_to_device_failed" and failed["provider"] == "qwen3_tts"


def test_a_failed_load_frees_the_half_built_model_even_while_its_error_is_kept(
    pm, engine, tiny, tmp_path
):
    # The main weights load, then the speech tokenizer's weights (whole, but one tensor of the
    # wrong shape) fail: the half-built model sits in the failing frames. Neither the raised
    # error (a host may keep it) nor engine.last_error may keep it alive: on a GPU that memory
    # is the user's VRAM.
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny["custom_voice"], broken)
    weights = broken / "speech_tokenizer" / "model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(k for k in tensors if k.startswith("decoder") and k.endswith("weight"))[-1]
    tensors[name] = tensors[name][: max(1, tensors[name].shape[0] // 2)].clone()
    save_file(tensors, str(weights), metadata={"format": "pt"})
    engine.release()
    before = _live_models()
    with pytest.raises(TtsError) as info:
        pm.hook.tts_load(
            config=EngineConfig(provider="qwen3_tts", extra_params={"ModelPath": str(broken)})
        )
    kept = info.value  # held on purpose, as a host showing the error later would
    assert kept.code == "model_load_failed"
    assert engine.status().last_error.code == "model_load_failed"
    assert _live_models() == before


def test_a_rejected_placement_frees_the_model(tiny, monkeypatch):
    # Builds a stray component deliberately between loading and the real verification, so the
    # load is refused; the refused model must not stay alive through the error.
    from qwen3tts_plugin.backends.qwen_tts import placement as loading

    real_verify = loading.verify_placement

    def strand_a_component_then_verify(model, plan):
        model.model.talker.codec_head.to("meta")
        real_verify(model, plan)

    monkeypatch.setattr(loading, "verify_placement", strand_a_component_then_verify)
    before = _live_models()
    with pytest.raises(TtsError) as info:
        load_model(tiny["custom_voice"], cpu_plan())
    assert info.value.code == "model_to_device_failed"
    assert "codec_head" in info.value.detail
    assert _live_models() == before
