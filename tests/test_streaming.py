"""``tts_synthesize_stream``: the audio of a request in chunks while it is spoken.

On the tiny checkpoint with seeded sampling at temperature 1.5, seed 6, the sentence below
runs 179 frames (14.3 s of audio) under the stepper: long enough for several windows.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, TtsError, Voice

LONG = "The river bends twice before it reaches the old mill, and nobody remembers who built it."
LONG_VALUES = {"do_sample": True, "seed": 6, "temperature": 1.5, "max_new_tokens": 300}
FIRST_WINDOW_SAMPLES = 4 * 1920  # streaming.FIRST_WINDOW frames of 1920 samples


def request(path, out, text=LONG, backend="stepper", settings=None, **generation):
    extra = {"ModelPath": str(path), "Device": "cpu", "Backend": backend, **(settings or {})}
    return SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params=extra),
        text=text,
        out_path=out,
        voice=Voice(speaker="vivian"),
        generation=GenerationParams(**{**LONG_VALUES, **generation}),
    )


def pcm(chunks) -> np.ndarray:
    return np.frombuffer(b"".join(chunk.samples for chunk in chunks), dtype="<i2")


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = ((reference.astype(float) - other.astype(float)) ** 2).sum()
    return float(10 * np.log10((reference.astype(float) ** 2).sum() / max(noise, 1e-12)))


def test_a_stream_is_the_files_audio_and_the_file_is_the_non_streamed_one(pm, tiny, tmp_path):
    whole = pm.hook.tts_synthesize(request=request(tiny["custom_voice"], tmp_path / "whole.wav"))
    chunks = list(
        pm.hook.tts_synthesize_stream(request=request(tiny["custom_voice"], tmp_path / "s.wav"))
    )
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert [chunk.final for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    assert len(chunks) > 4  # windows of 4, 8, 16, 32, 48 frames, then the rest
    assert len(chunks[0].samples) // 2 == FIRST_WINDOW_SAMPLES  # the first audio comes early
    result = chunks[-1].result
    assert result.path == tmp_path / "s.wav" and result.backend == "stepper"
    assert (tmp_path / "s.wav").read_bytes() == whole.path.read_bytes()
    expected = sf.read(str(whole.path), dtype="int16")[0]
    streamed = pcm(chunks)
    assert streamed.shape == expected.shape and result.duration_s == whole.duration_s
    assert snr_db(expected, streamed) >= 40  # measured: 67.8 dB, at most 16 LSB apart


def test_every_check_fails_before_an_iterator_exists_with_tts_synthesizes_codes(pm, tiny, tmp_path):
    cases = [
        request(tiny["custom_voice"], tmp_path / "a.wav", text="   "),
        request(tiny["custom_voice"], tmp_path / "b.wav", settings={"Device": "tpu"}),
        request(tiny["custom_voice"], tmp_path / "missing" / "\0.wav"),
        request(tmp_path / "no-model-here", tmp_path / "c.wav"),
    ]
    for case in cases:
        with pytest.raises(TtsError) as streamed:
            pm.hook.tts_synthesize_stream(request=case)  # not iterated: it raised already
        with pytest.raises(TtsError) as whole:
            pm.hook.tts_synthesize(request=case)
        assert streamed.value.code == whole.value.code
    assert not list(tmp_path.glob("*.wav"))


def test_a_piece_cut_after_the_first_chunks_ends_the_stream_typed_and_writes_nothing(
    pm, tiny, tmp_path
):
    """A 10-frame budget: the stream speaks it with the retry's 20 frames at once (audio that
    went out cannot be retried), then fails as the non-streamed request fails."""
    out = tmp_path / "cut.wav"
    out.write_bytes(b"earlier take")
    got = []
    with pytest.raises(TtsError) as failed:
        for chunk in pm.hook.tts_synthesize_stream(
            request=request(tiny["custom_voice"], out, max_new_tokens=10)
        ):
            got.append(chunk)
    assert failed.value.code == "synthesis_truncated"
    assert got and not any(chunk.final for chunk in got)
    assert out.read_bytes() == b"earlier take"
    with pytest.raises(TtsError, match="synthesis_truncated"):
        pm.hook.tts_synthesize(request=request(tiny["custom_voice"], out, max_new_tokens=10))


def test_closing_a_stream_stops_its_row_at_once_and_writes_nothing(pm, engine, tiny, tmp_path):
    """The consumer goes away after the first chunk (a closed preview): its row leaves the
    loop at the next step, so the engine is idle long before the other 175 frames would
    have taken."""
    started = time.perf_counter()
    pm.hook.tts_synthesize(request=request(tiny["custom_voice"], tmp_path / "full.wav"))
    full_s = time.perf_counter() - started
    out = tmp_path / "closed.wav"
    stream = pm.hook.tts_synthesize_stream(request=request(tiny["custom_voice"], out))
    first = next(stream)
    assert not first.final and engine.busy
    stream.close()
    closed = time.perf_counter()
    while engine.busy and time.perf_counter() - closed < full_s:
        time.sleep(0.005)
    assert time.perf_counter() - closed < full_s / 4
    assert not out.exists() and not list(tmp_path.glob(".closed*"))


def test_a_long_text_streams_piece_after_piece_in_order(pm, tiny, tmp_path):
    text = "Hi there. " + LONG + " Go on, then. Twelve."
    # FrameBound off: the tiny random model speaks its short pieces far longer than their text
    # could take (budgets: test_budgets.py)
    settings = {"PieceChars": 40, "FrameBound": "off"}
    whole = pm.hook.tts_synthesize(
        request=request(tiny["custom_voice"], tmp_path / "w.wav", text, settings=settings)
    )
    assert whole.pieces > 2
    chunks = list(
        pm.hook.tts_synthesize_stream(
            request=request(tiny["custom_voice"], tmp_path / "s.wav", text, settings=settings)
        )
    )
    assert chunks[-1].result.pieces == whole.pieces
    expected = sf.read(str(whole.path), dtype="int16")[0]
    streamed = pcm(chunks)
    assert streamed.shape == expected.shape  # every piece, with its pause, in order
    assert snr_db(expected, streamed) >= 40


def test_without_frame_by_frame_decoding_the_audio_comes_whole_in_the_final_chunk(
    pm, tiny, tmp_path
):
    """``Backend=qwen_tts`` gives no frames as it goes: one chunk, the file's samples."""
    chunks = list(
        pm.hook.tts_synthesize_stream(
            request=request(tiny["custom_voice"], tmp_path / "q.wav", backend="qwen_tts")
        )
    )
    assert len(chunks) == 1 and chunks[0].final
    expected = sf.read(str(chunks[0].result.path), dtype="int16")[0]
    np.testing.assert_array_equal(pcm(chunks), expected)


def test_a_stream_closed_from_another_thread_ends_the_readers_wait(pm, engine, tiny, tmp_path):
    """An HTTP server's disconnect handler closes the stream while a worker thread waits in
    next(): that wait ends (the iteration stops), the row leaves the loop, nothing is
    written."""
    import threading

    out = tmp_path / "closed.wav"
    stream = pm.hook.tts_synthesize_stream(request=request(tiny["custom_voice"], out))
    got = [next(stream)]
    ended = threading.Event()

    def read_on() -> None:
        got.extend(stream)  # blocks between windows until the close
        ended.set()

    reader = threading.Thread(target=read_on)
    reader.start()
    stream.close()
    assert ended.wait(5), "the reader's next() kept waiting after the close"
    reader.join(5)
    assert not any(chunk.final for chunk in got)
    closed = time.perf_counter()
    while engine.busy and time.perf_counter() - closed < 30:
        time.sleep(0.005)
    assert time.perf_counter() - closed < 1.0
    assert not out.exists()
