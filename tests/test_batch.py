"""Many texts per generate call: the batch hook, BatchSize, micro-batching, exact seeds.

Everything runs the real qwen_tts code on the tiny checkpoints through ``pm.hook``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
from engine_logs import capture_logs

from hookspecs import (
    BatchItem,
    EngineConfig,
    ErrorInfo,
    GenerationParams,
    SynthesisRequest,
    TtsError,
    Voice,
)
from qwen3tts_plugin.devices import AUTO_BATCH_SIZE, AUTO_BATCH_SIZE_CPU_STEPPER

GREEDY = GenerationParams(do_sample=False, max_new_tokens=8, allow_cut=True)
SAMPLED = GenerationParams(max_new_tokens=6, allow_cut=True)
TEXTS = [
    "Hi.",
    "The river bends twice before it reaches the old mill.",
    "Every spring the villagers carry their boats down the stairs.",
    "Nobody remembers who built it.",
    "In the evening the light falls across the fields and the farmers walk home.",
    "Go.",
]


def make_request(path, out, text="Hello world.", voice=None, generation=SAMPLED, **extra):
    return SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params={"ModelPath": str(path), **extra}),
        text=text,
        out_path=out,
        voice=voice or Voice(),
        generation=generation,
    )


request = make_request


def pcm(path):
    return sf.read(str(path), dtype="int16")[0].astype(np.int32)


def generate_calls(logs):
    return [e for e in logs if e["event"] == "tts.generate.done"]


# --- the hook --------------------------------------------------------------------------------


def test_a_batch_comes_back_in_request_order_from_shared_generate_calls(pm, tiny, tmp_path):
    requests = [
        request(tiny["custom_voice"], tmp_path / f"{i}.wav", text, Voice(speaker=speaker))
        for i, (text, speaker) in enumerate(zip(TEXTS, ["ryan", "vivian"] * 3, strict=True))
    ]
    with capture_logs() as logs:
        items = pm.hook.tts_synthesize_batch(requests=requests)
    assert [item.index for item in items] == list(range(len(TEXTS)))
    assert all(isinstance(item, BatchItem) and item.ok and item.error is None for item in items)
    assert [item.result.path for item in items] == [r.out_path for r in requests]
    assert [item.result.batch_size for item in items] == [len(TEXTS)] * len(TEXTS)
    assert [len(call["chars"]) for call in generate_calls(logs)] == [len(TEXTS)]
    for item in items:
        info = sf.info(str(item.result.path))
        assert (info.subtype, info.samplerate) == ("PCM_16", 24_000)
        assert info.frames / info.samplerate == pytest.approx(item.result.duration_s)
    assert list(tmp_path.glob(".*.tmp")) == []


def test_batch_size_bounds_each_call_and_the_longest_texts_go_together(pm, tiny, tmp_path):
    """qwen_tts's static batches: BatchSize texts per generate call."""
    requests = [
        request(tiny["custom_voice"], tmp_path / f"{i}.wav", text, BatchSize=2, Backend="qwen_tts")
        for i, text in enumerate(TEXTS)
    ]
    with capture_logs() as logs:
        items = pm.hook.tts_synthesize_batch(requests=requests)
    by_length = sorted((len(t) for t in TEXTS), reverse=True)
    calls = [call["chars"] for call in generate_calls(logs)]
    assert calls == [by_length[0:2], by_length[2:4], by_length[4:6]]
    assert all(item.result.batch_size == 2 for item in items)


def test_the_stepper_decodes_batch_size_texts_at_once_and_takes_more_per_call(pm, tiny, tmp_path):
    """The stepper (auto on the CPU): BatchSize slots, and a call takes
    ``STEPPER_ROWS_PER_SLOT`` texts per slot, an ended text's slot going to the next."""
    requests = [
        request(tiny["custom_voice"], tmp_path / f"{i}.wav", text, BatchSize=2)
        for i, text in enumerate(TEXTS * 2)
    ]
    with capture_logs() as logs:
        items = pm.hook.tts_synthesize_batch(requests=requests)
    calls = [call["chars"] for call in generate_calls(logs)]
    by_length = sorted((len(t) for t in TEXTS * 2), reverse=True)
    assert calls == [by_length[0:8], by_length[8:12]]  # 2 slots x 4 texts per slot
    assert [item.result.backend for item in items] == ["stepper"] * 12


def test_batch_size_one_turns_batching_off(pm, tiny, tmp_path):
    requests = [
        request(tiny["custom_voice"], tmp_path / f"{i}.wav", text, BatchSize="1")
        for i, text in enumerate(TEXTS[:3])
    ]
    with capture_logs() as logs:
        items = pm.hook.tts_synthesize_batch(requests=requests)
    assert [item.result.batch_size for item in items] == [1, 1, 1]
    assert len(generate_calls(logs)) == 3


def test_the_three_voice_modes_batch(pm, tiny, tmp_path, ref_wav):
    cases = {
        "custom_voice": (tiny["custom_voice"], Voice(instruct=None)),
        "voice_design": (tiny["voice_design"], Voice(mode="voice_design", instruct="Warm.")),
        "voice_clone": (
            tiny["base"],
            Voice(mode="voice_clone", ref_audio=ref_wav, ref_text="Hello.", x_vector_only=False),
        ),
    }
    for mode, (path, voice) in cases.items():
        requests = [
            request(path, tmp_path / f"{mode}-{i}.wav", text, voice)
            for i, text in enumerate(TEXTS[:3])
        ]
        items = pm.hook.tts_synthesize_batch(requests=requests)
        assert [item.result.batch_size for item in items] == [3, 3, 3], mode
        for item in items:
            assert np.abs(pcm(item.result.path)).max() > 30, f"{mode}: silent"


def test_an_empty_list_is_an_empty_list(pm):
    assert pm.hook.tts_synthesize_batch(requests=[]) == []


def test_a_list_naming_another_engine_is_not_answered(pm, tiny, tmp_path):
    ours = request(tiny["custom_voice"], tmp_path / "a.wav")
    theirs = SynthesisRequest(
        config=EngineConfig(provider="someone_else"), text="Hi", out_path=tmp_path / "b.wav"
    )
    assert pm.hook.tts_synthesize_batch(requests=[ours, theirs]) is None
    assert list(tmp_path.iterdir()) == []


def test_more_than_1024_requests_are_refused_before_any_work(pm, tiny, tmp_path):
    requests = [request(tiny["custom_voice"], tmp_path / f"{i}.wav") for i in range(1025)]
    with pytest.raises(TtsError) as info:
        pm.hook.tts_synthesize_batch(requests=requests)
    assert info.value.code == "invalid_settings" and "1024" in info.value.detail
    assert list(tmp_path.iterdir()) == []


# --- one bad request fails alone -------------------------------------------------------------


def test_each_bad_request_gets_its_own_error_and_the_others_are_written(pm, tiny, tmp_path):
    custom = tiny["custom_voice"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out = tmp_path / "out"
    cases = [
        ("ok", request(custom, out / "0.wav", TEXTS[1])),
        ("empty_text", request(custom, out / "1.wav", " \n ")),
        ("invalid_device", request(custom, out / "2.wav", Device="gpu")),
        ("invalid_settings", request(custom, out / "3.wav", BatchSize=65)),
        ("unsupported_speaker", request(custom, out / "4.wav", voice=Voice(speaker="nobody"))),
        ("model_not_found", request(tmp_path / "nowhere", out / "5.wav")),
        ("output_write_failed", request(custom, a_file / "6.wav")),
        ("output_write_failed", request(custom, tmp_path)),
        ("ok", request(custom, out / "8.wav", TEXTS[2])),
        ("output_write_failed", request(custom, out / "8.wav", TEXTS[3])),  # same path as 8
        ("ok", request(custom, out / "10.wav", TEXTS[4])),
    ]
    with capture_logs() as logs:
        items = pm.hook.tts_synthesize_batch(requests=[r for _, r in cases])
    assert [item.error.code if item.error else "ok" for item in items] == [c for c, _ in cases]
    assert all(item.result is None for item in items if item.error)
    assert "request 8" in items[9].error.detail
    assert isinstance(items[1].error, ErrorInfo) and str(items[1].error.to_error()).startswith(
        "empty_text: "
    )
    assert sorted(p.name for p in out.iterdir()) == ["0.wav", "10.wav", "8.wav"]
    assert [items[i].result.batch_size for i in (0, 8, 10)] == [3, 3, 3]
    failed = [e["code"] for e in logs if e["event"] == "tts.synthesize.failed"]
    assert sorted(failed) == sorted(c for c, _ in cases if c != "ok")


def test_a_failed_generate_call_fails_its_items_only_and_the_engine_goes_on(
    pm, tiny, broken_logits, tmp_path
):
    good, bad = tiny["custom_voice"], broken_logits
    requests = [
        request(bad, tmp_path / "bad0.wav", TEXTS[1]),
        request(good, tmp_path / "good0.wav", TEXTS[2]),
        request(bad, tmp_path / "bad1.wav", TEXTS[3]),
        request(good, tmp_path / "good1.wav", TEXTS[4]),
    ]
    items = pm.hook.tts_synthesize_batch(requests=requests)
    assert [item.error.code if item.error else "ok" for item in items] == [
        "synthesis_failed",
        "ok",
        "synthesis_failed",
        "ok",
    ]
    assert "Precision=fp32" in items[0].error.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good0.wav", "good1.wav"]
    again = pm.hook.tts_synthesize(request=request(good, tmp_path / "after.wav"))
    assert again.path.is_file()


# --- the same audio batched or alone ----------------------------------------------------------


def test_greedy_audio_is_the_same_batched_or_alone_to_one_lsb(pm, tiny, tmp_path):
    speakers = ["ryan", "vivian", "serena", "ryan", "eric", "vivian"]
    batched = pm.hook.tts_synthesize_batch(
        requests=[
            request(tiny["custom_voice"], tmp_path / f"b{i}.wav", text, Voice(speaker=s), GREEDY)
            for i, (text, s) in enumerate(zip(TEXTS, speakers, strict=True))
        ]
    )
    assert batched[0].result.batch_size == len(TEXTS)
    lengths = set()
    for i, (text, speaker) in enumerate(zip(TEXTS, speakers, strict=True)):
        alone = pm.hook.tts_synthesize(
            request=request(
                tiny["custom_voice"], tmp_path / f"a{i}.wav", text, Voice(speaker=speaker), GREEDY
            )
        )
        assert alone.batch_size == 1
        a, b = pcm(alone.path), pcm(batched[i].result.path)
        assert a.shape == b.shape, i
        assert np.abs(a - b).max() <= 1, i
        lengths.add(a.size)
    assert len(lengths) > 1  # texts of different lengths really shared one padded call


@pytest.mark.parametrize(("backend", "together"), [("qwen_tts", 1), ("stepper", 5)])
def test_a_seed_gives_the_same_samples_alone_in_a_batch_and_among_concurrent_calls(
    pm, tiny, tmp_path, backend, together
):
    """qwen_tts runs a seeded sampled request on its own (one generator per call); the stepper
    draws each row from its own generator, so a seeded request shares calls."""
    seeded = GenerationParams(max_new_tokens=8, seed=11, allow_cut=True)
    path = tiny["custom_voice"]

    def request(path, out, text="Hello world.", generation=SAMPLED):
        return make_request(path, out, text, generation=generation, Backend=backend)

    alone = pm.hook.tts_synthesize(request=request(path, tmp_path / "alone.wav", generation=seeded))
    mixed = [request(path, tmp_path / f"other{i}.wav", TEXTS[i]) for i in range(4)]
    mixed.insert(2, request(path, tmp_path / "in_batch.wav", generation=seeded))
    items = pm.hook.tts_synthesize_batch(requests=mixed)
    assert items[2].result.batch_size == together

    barrier = threading.Barrier(6)

    def concurrent(i):
        barrier.wait()
        if i == 3:  # the seeded request, as it ran alone
            return pm.hook.tts_synthesize(
                request=request(path, tmp_path / "conc3.wav", generation=seeded)
            )
        return pm.hook.tts_synthesize(request=request(path, tmp_path / f"conc{i}.wav", TEXTS[i]))

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(concurrent, range(6)))
    expected = (tmp_path / "alone.wav").read_bytes()
    assert (tmp_path / "in_batch.wav").read_bytes() == expected
    assert results[3].path.read_bytes() == expected
    assert alone.batch_size == 1
    if backend == "qwen_tts":
        assert results[3].batch_size == 1


# --- micro-batching ---------------------------------------------------------------------------


def test_concurrent_calls_share_generate_calls(pm, tiny, tmp_path):
    """16 callers at once: while the first generate call runs, the others queue and go
    together. (Thread timing decides how many join each call; every result stays correct.)"""
    pm.hook.tts_load(config=request(tiny["custom_voice"], tmp_path / "x.wav").config)
    barrier = threading.Barrier(16)

    def call(i):
        barrier.wait()
        return pm.hook.tts_synthesize(
            request=request(tiny["custom_voice"], tmp_path / f"{i:02d}.wav", TEXTS[i % 6])
        )

    with capture_logs() as logs, ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    calls = generate_calls(logs)
    assert sum(len(c["chars"]) for c in calls) == 16
    assert len(calls) < 16 and max(r.batch_size for r in results) > 1
    assert [r.path for r in results] == [tmp_path / f"{i:02d}.wav" for i in range(16)]
    assert all(r.path.is_file() for r in results)


def test_load_result_reports_the_batch_size(pm, tiny):
    config = request(tiny["custom_voice"], "x.wav").config
    assert pm.hook.tts_load(config=config).batch_size == AUTO_BATCH_SIZE_CPU_STEPPER
    config = request(tiny["custom_voice"], "x.wav", Backend="qwen_tts").config
    assert pm.hook.tts_load(config=config).batch_size == AUTO_BATCH_SIZE["cpu"]
    config = request(tiny["custom_voice"], "x.wav", BatchSize=" 12 ").config
    assert pm.hook.tts_load(config=config).batch_size == 12


@pytest.mark.parametrize("value", [0, 65, -1, "many", 2.5, True])
def test_a_bad_batch_size_is_invalid_settings(pm, tiny, tmp_path, value):
    with pytest.raises(TtsError) as info:
        pm.hook.tts_synthesize(
            request=request(tiny["custom_voice"], tmp_path / "a.wav", BatchSize=value)
        )
    assert info.value.code == "invalid_settings" and "BatchSize" in info.value.detail
    assert list(tmp_path.iterdir()) == []


def test_running_out_of_memory_in_a_shared_call_points_at_batch_size():
    """The message torch raises for a CUDA OOM (made here: no GPU) names the setting to lower."""
    import torch

    from qwen3tts_plugin.backends.failures import synthesis_error

    error = synthesis_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert error.code == "synthesis_failed" and "OutOfMemoryError" in error.detail
    assert "BatchSize" in error.hint
    assert "Precision=fp32" in synthesis_error(RuntimeError("probability tensor contains nan")).hint


def test_a_broken_model_is_tried_once_for_a_whole_batch_and_again_for_a_new_call(
    pm, unloadable, tmp_path
):
    """Jobs queued before a load failed get that failure; a later call tries again."""
    requests = [
        request(unloadable, tmp_path / "out" / f"{i}.wav", TEXTS[i % 6], BatchSize=2)
        for i in range(12)
    ]
    with capture_logs() as logs:
        items = pm.hook.tts_synthesize_batch(requests=requests)
    assert {item.error.code for item in items} == {"model_load_failed"}
    assert [e["event"] for e in logs].count("tts.load.start") == 1
    assert not (tmp_path / "out").exists()
    with capture_logs() as logs, pytest.raises(TtsError, match="model_load_failed"):
        pm.hook.tts_synthesize(request=requests[0])
    assert [e["event"] for e in logs].count("tts.load.start") == 1
