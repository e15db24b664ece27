"""``Quantization=int8``: the talker's and code predictor's layers with int8 weights on the CPU.

The layer is checked against float math (close, and each row independent of its batch, bit for
bit); the rest through the hooks on the tiny checkpoint with the real qwen_tts loading code:
what results and status report, seeds that give the same audio alone and in a batch, both
backends over one quantized model, streaming, and refusals before any model work.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, TtsError, Voice
from qwen3tts_plugin.backends.quantization import (
    QUANTIZED_LAYERS,
    Int8Linear,
    quantize_talker,
    quantized_layers,
)
from qwen3tts_plugin.backends.qwen_tts.backend import QwenTtsBackend
from qwen3tts_plugin.backends.qwen_tts.placement import verify_quantization
from qwen3tts_plugin.devices import DevicePlan, acceleration_status, cpu_bf16_native, cpu_int8

pytestmark = pytest.mark.skipif(
    not cpu_int8(acceleration_status()), reason="torch's int8 kernels do not run on this CPU"
)

TEXTS = [
    "Hi.",
    "The river bends twice before it reaches the old mill.",
    "Nobody remembers who built it, or why.",
    "Yes, of course.",
]


def config(path, quantization="int8", **extra) -> EngineConfig:
    params = {"ModelPath": str(path), "Device": "cpu", "Quantization": quantization, **extra}
    return EngineConfig(provider="qwen3_tts", extra_params=params)


def request(path, out, text=TEXTS[1], quantization="int8", extra=None, **generation):
    return SynthesisRequest(
        config=config(path, quantization, **(extra or {})),
        text=text,
        out_path=out,
        voice=Voice(speaker="vivian"),
        generation=GenerationParams(**{"do_sample": False, "max_new_tokens": 40, **generation}),
    )


def samples(path) -> np.ndarray:
    return sf.read(str(path), dtype="int16")[0]


# --- the layer --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_int8_layer_is_close_to_its_float_layer_and_each_row_ignores_its_batch(dtype):
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(256, 384, bias=True).to(dtype)
    inputs = torch.randn(9, 1, 256, generator=generator).to(dtype)
    inputs[3] *= 40  # one loud row: with a per-tensor scale it would coarsen every other row
    inputs[5] = 0  # a silent row: the bias, no NaN
    layer = Int8Linear.from_linear(linear)
    with torch.inference_mode():
        expected = linear(inputs).float()
        together = layer(inputs)
        alone = torch.cat([layer(inputs[i : i + 1]) for i in range(len(inputs))])
    assert together.dtype == dtype and together.shape == (9, 1, 384)
    error = (together.float() - expected).norm(dim=-1) / expected.norm(dim=-1)
    error = error[torch.arange(9) != 5]
    assert float(error.max()) < 0.03  # int8 rounding, not a wrong product
    assert torch.equal(together[5, 0], linear.bias.detach())
    assert torch.equal(together, alone)  # exact: the int32 sums do not depend on the batch
    assert layer.qweight.dtype == torch.int8 and layer.qweight.shape == (384, 256)


def test_quantizing_replaces_the_layers_linears_and_nothing_else(tiny):
    backend = QwenTtsBackend.load(tiny["custom_voice"], DevicePlan.named("cpu", "qwen_tts"))
    try:
        talker = backend.model.model.talker
        inside = {
            f"{path}.{name}"
            for path in QUANTIZED_LAYERS
            for name, module in talker.get_submodule(path).named_modules()
            if isinstance(module, torch.nn.Linear)
        }
        outside = {
            name
            for name, module in talker.named_modules()
            if isinstance(module, torch.nn.Linear) and name not in inside
        }
        assert inside and outside  # the heads that score codes and the text projection
        assert quantize_talker(talker) == len(inside) == quantized_layers(talker)
        kinds = dict(talker.named_modules())
        assert all(isinstance(kinds[name], Int8Linear) for name in inside)
        assert all(type(kinds[name]) is torch.nn.Linear for name in outside)
    finally:
        backend.release()


def test_a_load_whose_layers_are_not_as_the_plan_says_is_refused(tiny):
    """The guard behind every int8 report (results say what the plan says): a float model
    under an int8 plan, or an int8 one under a plain plan, fails the load's check."""
    plain, int8 = (
        DevicePlan.named("cpu", "qwen_tts", quantization=q, why="test") for q in ("none", "int8")
    )
    backend = QwenTtsBackend.load(tiny["custom_voice"], plain)
    try:
        verify_quantization(backend.model, plain)
        with pytest.raises(TtsError) as info:
            verify_quantization(backend.model, int8)
        assert info.value.code == "model_load_failed" and "still float" in info.value.detail
        quantize_talker(backend.model.model.talker)
        verify_quantization(backend.model, int8)
        with pytest.raises(TtsError) as info:
            verify_quantization(backend.model, plain)
        assert "Quantization=auto" in info.value.hint
    finally:
        backend.release()


# --- through the hooks ------------------------------------------------------------------------


@pytest.mark.skipif(
    not cpu_bf16_native(acceleration_status()),
    reason="this CPU does not compute bfloat16 natively (Precision=bf16 refused)",
)
def test_int8_beside_bf16_loads_and_speaks_in_bf16(pm, tiny, tmp_path):
    result = pm.hook.tts_synthesize(
        request=request(tiny["custom_voice"], tmp_path / "b.wav", extra={"Precision": "bf16"})
    )
    assert (result.dtype, result.quantization, result.codec_dtype) == (
        "bfloat16",
        "int8",
        "float32",
    )
    assert result.duration_s > 0


def test_load_results_and_status_say_int8_and_a_change_reloads(pm, tiny, tmp_path):
    loaded = pm.hook.tts_load(config=config(tiny["custom_voice"]))
    assert (loaded.quantization, loaded.dtype, loaded.codec_dtype) == ("int8", "float32", "float32")
    assert pm.hook.tts_load(config=config(tiny["custom_voice"])).cached
    [status] = pm.hook.tts_status()
    assert status.loaded and status.quantization == "int8"
    values = {"do_sample": True, "seed": 6, "temperature": 1.5, "max_new_tokens": 120}
    result = pm.hook.tts_synthesize(
        request=request(tiny["custom_voice"], tmp_path / "q.wav", **values)
    )
    assert (result.quantization, result.backend) == ("int8", "stepper")
    plain = pm.hook.tts_synthesize(
        request=request(tiny["custom_voice"], tmp_path / "f.wav", quantization="auto", **values)
    )
    assert plain.quantization == "none" and plain.load_s > 0  # reloaded in float
    assert pm.hook.tts_status()[0].quantization == "none"
    # the int8 layers do change what is spoken: the same seed samples other codes somewhere
    # (greedy codes of the tiny model come out the same)
    assert not np.array_equal(samples(result.path), samples(plain.path))


def test_a_seeded_int8_request_sounds_the_same_alone_and_in_a_batch(pm, tiny, tmp_path):
    requests = []
    for i, text in enumerate(TEXTS):
        values = {"do_sample": True, "seed": 40 + i, "max_new_tokens": 10 + 6 * i}
        out = tmp_path / f"together-{i}.wav"
        requests.append(request(tiny["custom_voice"], out, text, allow_cut=True, **values))
    together = pm.hook.tts_synthesize_batch(requests=requests)
    assert [item.result.batch_size for item in together] == [4] * 4
    assert {item.result.quantization for item in together} == {"int8"}
    for i, item in enumerate(together):
        alone = pm.hook.tts_synthesize(
            request=requests[i].model_copy(update={"out_path": tmp_path / f"alone-{i}.wav"})
        )
        assert alone.batch_size == 1
        assert alone.path.read_bytes() == item.result.path.read_bytes()


def test_both_backends_speak_the_same_greedy_codes_with_int8_weights(pm, tiny, tmp_path):
    spoken = {}
    for backend in ("qwen_tts", "stepper"):
        result = pm.hook.tts_synthesize(
            request=request(
                tiny["custom_voice"], tmp_path / f"{backend}.wav", extra={"Backend": backend}
            )
        )
        assert (result.backend, result.quantization) == (backend, "int8")
        spoken[backend] = samples(result.path)
    ours, theirs = spoken["stepper"], spoken["qwen_tts"]
    assert ours.shape == theirs.shape  # the same codes: one LSB of codec rounding at most
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_an_int8_stream_is_the_int8_file(pm, tiny, tmp_path):
    values = {"do_sample": True, "seed": 6, "temperature": 1.5, "max_new_tokens": 120}
    whole = pm.hook.tts_synthesize(
        request=request(tiny["custom_voice"], tmp_path / "w.wav", **values)
    )
    chunks = list(
        pm.hook.tts_synthesize_stream(
            request=request(tiny["custom_voice"], tmp_path / "s.wav", **values)
        )
    )
    assert len(chunks) > 1 and chunks[-1].result.quantization == "int8"
    assert (tmp_path / "s.wav").read_bytes() == whole.path.read_bytes()


@pytest.mark.parametrize(
    ("device", "words"), [("cuda:0", "runs only on the CPU"), ("mps", "runs only on the CPU")]
)
def test_int8_off_the_cpu_is_refused_before_any_model_work_keeping_the_model(
    pm, tiny, tmp_path, device, words
):
    pm.hook.tts_load(config=config(tiny["custom_voice"]))
    with pytest.raises(TtsError) as info:
        pm.hook.tts_synthesize(
            request=request(tiny["custom_voice"], tmp_path / "x.wav", extra={"Device": device})
        )
    assert info.value.code == "invalid_settings" and words in info.value.detail
    assert not (tmp_path / "x.wav").exists()
    [status] = pm.hook.tts_status()
    assert status.loaded and status.quantization == "int8"  # the working model stays
