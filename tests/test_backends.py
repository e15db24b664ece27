"""Backends: the codec kept in float32 whatever the talker's precision, and what the
cuda_graphs backend sends to its graphs and what to qwen_tts's own loop.

Half precision runs on the CPU in torch 2.11 (slowly, fine for the tiny checkpoint), so the
mixed-precision load is tested for real here. The CUDA graphs themselves cannot exist without
a GPU: their routing is tested with a stand-in for faster-qwen3-tts's object around a real
qwen_tts model (said where it is used).
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_logs import capture_logs

from hookspecs import GenerationParams, TtsError
from qwen3tts_plugin.backends import Batch
from qwen3tts_plugin.backends.qwen_tts.placement import components, load_model, verify_placement
from qwen3tts_plugin.devices import DevicePlan
from qwen3tts_plugin.voices import VoicePlan

VOICE = VoicePlan(mode="custom_voice", language="auto", speaker="vivian")


def batch(texts, params, exact=False):
    """One generate call's worth: every text in the one test voice."""
    return Batch(tuple(texts), (VOICE,) * len(texts), params, exact)


def cpu_plan(dtype="float32", backend="qwen_tts", backend_source="auto"):
    return DevicePlan.named("cpu", backend, dtype, "test", backend_source)


def dtypes(model):
    return {owner: {str(p.dtype) for p in m.parameters()} for owner, m in components(model).items()}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_half_precision_talker_gets_a_float32_codec_and_finite_audio(tiny, dtype):
    model = load_model(tiny["custom_voice"], cpu_plan(dtype))
    assert dtypes(model) == {
        "model": {f"torch.{dtype}"},
        "speech_tokenizer.model": {"torch.float32"},
    }
    wavs, _ = model.generate_custom_voice(
        text=["Hello there."], speaker=["vivian"], language=["auto"], max_new_tokens=12
    )
    assert wavs[0].size and np.isfinite(wavs[0]).all()


def test_verification_refuses_a_codec_left_in_half_precision(tiny):
    """qwen_tts alone loads the codec in the talker's dtype: exactly what must not pass."""
    import torch

    from qwen3tts_plugin.backends.qwen_tts.runtime import import_qwen_tts

    model = import_qwen_tts().from_pretrained(
        str(tiny["custom_voice"]), device_map="cpu", dtype=torch.bfloat16
    )
    with pytest.raises(TtsError) as info:
        verify_placement(model, cpu_plan("bfloat16"))
    assert info.value.code == "model_to_device_failed"
    assert "speech_tokenizer.model." in info.value.detail and "is bfloat16" in info.value.detail


def test_load_result_reports_backend_and_codec_dtype(pm, tiny):
    from hookspecs import EngineConfig

    config = EngineConfig(
        provider="qwen3_tts", extra_params={"ModelPath": str(tiny["custom_voice"]), "Device": "cpu"}
    )
    loaded = pm.hook.tts_load(config=config)
    assert (loaded.backend, loaded.codec_dtype) == ("stepper", "float32")  # auto on the CPU


# --- cuda_graphs routing (a stand-in for the CUDA graphs, which need a GPU) ------------------


class GraphsStandIn:
    """Stands in for faster_qwen3_tts.FasterQwen3TTS (CUDA only): the real qwen_tts model in
    ``model``, and a graph call that records its arguments and returns 3 frames of silence."""

    sample_rate = 24_000

    def __init__(self, model):
        self.model = model
        self.calls = []

    @property
    def speech_tokenizer(self):
        return self.model.model.speech_tokenizer

    def generate_custom_voice(self, **kwargs):
        self.calls.append(kwargs)
        return [np.zeros(3 * 1920, dtype=np.float32)], 24_000


@pytest.fixture
def graphs(tiny):
    from qwen3tts_plugin.backends.cuda_graphs import CudaGraphsBackend

    def make(backend_source):
        plan = cpu_plan(backend="cuda_graphs", backend_source=backend_source)
        stand_in = GraphsStandIn(load_model(tiny["custom_voice"], plan))
        return CudaGraphsBackend(stand_in, plan), stand_in

    return make


def test_one_text_with_the_graphs_sampling_values_runs_on_the_graphs(graphs):
    backend, stand_in = graphs("auto")
    params = GenerationParams(max_new_tokens=20, seed=3)
    [wav] = backend.generate(batch(["Hello there."], params))
    [call] = stand_in.calls
    assert (call["text"], call["speaker"], call["max_new_tokens"]) == ("Hello there.", "vivian", 20)
    assert (call["do_sample"], call["top_k"], call["temperature"]) == (True, 50, 0.9)
    assert wav.size == 3 * 1920
    assert backend.ran_out(np.zeros(20 * 1920), 20) and not backend.ran_out(wav, 20)


@pytest.mark.parametrize(
    ("texts", "params", "reason"),
    [
        (["Hello there."], GenerationParams(do_sample=False, max_new_tokens=8), "sampling values"),
        (["One.", "Two."], GenerationParams(max_new_tokens=8), "several texts"),
    ],
)
def test_under_auto_what_the_graphs_cannot_run_goes_to_qwen_tts_loop_with_a_reason(
    graphs, texts, params, reason
):
    backend, stand_in = graphs("auto")
    with capture_logs() as logs:
        wavs = backend.generate(batch(texts, params))
    assert not stand_in.calls and len(wavs) == len(texts)  # qwen_tts's loop, same weights
    assert all(np.isfinite(w).all() and w.size for w in wavs)
    [event] = [e for e in logs if e["event"] == "tts.backend.qwen_tts_loop"]
    assert reason in event["reason"] and event["texts"] == len(texts)


def test_a_call_the_static_cache_cannot_hold_is_not_sent_to_the_graphs(graphs):
    """The graphs would stop at the cache's end without a word: such calls never go there."""
    from qwen3tts_plugin.backends.cuda_graphs import MAX_SEQ_LEN, PROMPT_MARGIN

    backend, _ = graphs("auto")
    why = backend.why_not_graphs
    assert "static cache" in why(["Hi."], [VOICE], GenerationParams(max_new_tokens=4090))
    assert why(["Hi."], [VOICE], GenerationParams(max_new_tokens=2048)) is None
    long_piece = "字" * 2000  # PieceChars at its largest
    assert "static cache" in why([long_piece], [VOICE], GenerationParams(max_new_tokens=2048))
    assert backend.max_frames(exact=True) == MAX_SEQ_LEN - PROMPT_MARGIN
    assert backend.max_frames(exact=False) == 8192  # qwen_tts's loop takes the rest


def test_an_explicit_cuda_graphs_speaks_a_list_one_by_one_and_refuses_other_sampling(graphs):
    backend, stand_in = graphs("config")
    params = GenerationParams(max_new_tokens=8)
    wavs = backend.generate(batch(["One.", "Two."], params, exact=True))
    assert [call["text"] for call in stand_in.calls] == ["One.", "Two."] and len(wavs) == 2
    greedy = GenerationParams(do_sample=False, max_new_tokens=8)
    with pytest.raises(TtsError) as info:
        backend.generate(batch(["One."], greedy, exact=True))
    assert info.value.code == "invalid_settings" and "Backend=auto" in info.value.hint
