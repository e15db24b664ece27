"""Streaming (``tts_synthesize_stream``) beside the same request not streamed, in one run.

``python -m benchmarks.streaming [--repeats 3] [--real] [--json OUT]``

1. **Tiny checkpoint, about 200 frames** (seeded sampling at temperature 1.5, seed 6: 179
   frames, 14.3 s of audio): the time to the first chunk and to the last, against
   ``tts_synthesize`` of the same request. Targets: the first chunk within 15 % of the whole
   request's time; the whole stream within 1.1× of it. How far the stream's samples are from
   the file's (16-bit): the largest difference and the SNR.
2. **During a dub** (tiny): the time to the first chunk of the same request while a dub of 32
   segments runs through the batch hook (the preview takes the dub's next free slot).
3. **``--real``**: the real-size random 0.6B CustomVoice model on the CPU (float32); it never
   ends a text, so the request is cut on purpose at ``REAL_FRAMES`` (``allow_cut``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, Voice, plugin_manager

from .gpu_real import SEGMENTS
from .stats import Timing, print_results

TEXT = "The river bends twice before it reaches the old mill, and nobody remembers who built it."
TINY_VALUES = {"do_sample": True, "seed": 6, "temperature": 1.5, "max_new_tokens": 300}
REAL_FRAMES = 48
DUB_SEGMENTS = 32


def request(
    model_dir: Path, out: Path, text: str = TEXT, device: str = "cpu", **values: Any
) -> SynthesisRequest:
    extra = {"ModelPath": str(model_dir), "Device": device, "Backend": "stepper"}
    return SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params=extra),
        text=text,
        out_path=out,
        voice=Voice(speaker="vivian"),
        generation=GenerationParams(**values),
    )


def streamed(pm, req: SynthesisRequest) -> tuple[float, float, bytes, int]:
    """Seconds to the first chunk and to the last, the samples, the chunks."""
    started = time.perf_counter()
    first = None
    parts = []
    for chunk in pm.hook.tts_synthesize_stream(request=req):
        if first is None:
            first = time.perf_counter() - started
        parts.append(chunk.samples)
    return first or 0.0, time.perf_counter() - started, b"".join(parts), len(parts)


def side_by_side(pm, make, repeats: int) -> dict[str, Any]:
    """``make(name)`` builds the request (its out path named ``name``); the whole request and
    the stream, alternately, ``repeats`` times each after one of each untimed."""
    import soundfile as sf

    pm.hook.tts_synthesize(request=make("warm"))
    streamed(pm, make("warm-stream"))
    whole_s, first_s, total_s = [], [], []
    for number in range(repeats):
        started = time.perf_counter()
        result = pm.hook.tts_synthesize(request=make(f"whole-{number}"))
        whole_s.append(time.perf_counter() - started)
        first, total, samples, chunks = streamed(pm, make(f"stream-{number}"))
        first_s.append(first)
        total_s.append(total)
    expected = sf.read(str(result.path), dtype="int16")[0].astype(float)
    got = np.frombuffer(samples, dtype="<i2").astype(float)
    noise = ((expected - got) ** 2).sum()
    whole, first, total = (Timing.of(x).median for x in (whole_s, first_s, total_s))
    return {
        "audio_s": round(result.duration_s, 2),
        "chunks": chunks,
        "whole_s": round(whole, 3),
        "first_chunk_s": round(first, 3),
        "stream_total_s": round(total, 3),
        "first_share_of_whole": round(first / whole, 3),
        "stream_vs_whole": round(total / whole, 3),
        "max_abs_diff_lsb": int(np.abs(expected - got).max()) if got.size else None,
        "snr_db": round(float(10 * np.log10((expected**2).sum() / max(noise, 1e-12))), 1),
    }


def during_dub(pm, model_dir: Path, folder: Path) -> dict[str, Any]:
    """The first chunk's time while a dub of ``DUB_SEGMENTS`` runs (tiny checkpoint)."""
    dub = [
        request(
            model_dir,
            folder / f"dub-{i}.wav",
            SEGMENTS[i % len(SEGMENTS)],
            do_sample=True,
            max_new_tokens=64,
            allow_cut=True,
        )
        for i in range(DUB_SEGMENTS)
    ]
    ended = {}

    def run_dub() -> None:
        pm.hook.tts_synthesize_batch(requests=dub)
        ended["dub"] = time.perf_counter()

    thread = threading.Thread(target=run_dub)
    started = time.perf_counter()
    thread.start()
    time.sleep(0.5)  # the dub's run is decoding
    first, total, _, _ = streamed(pm, request(model_dir, folder / "during.wav", **TINY_VALUES))
    thread.join()
    return {
        "first_chunk_s": round(first, 3),
        "stream_total_s": round(total, 3),
        "dub_s": round(ended["dub"] - started, 3),
    }


def run(model_dir: Path, repeats: int = 3, real: bool = False) -> dict[str, Any]:
    pm = plugin_manager()
    folder = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    results: dict[str, Any] = {
        "tiny": side_by_side(
            pm, lambda name: request(model_dir, folder / f"{name}.wav", **TINY_VALUES), repeats
        ),
        "during_dub": during_dub(pm, model_dir, folder),
    }
    if real:
        from .real_checkpoint import real_size_checkpoint

        real_dir = real_size_checkpoint()
        values = {"do_sample": False, "max_new_tokens": REAL_FRAMES + 1, "allow_cut": True}
        results["real"] = side_by_side(
            pm, lambda name: request(real_dir, folder / f"real-{name}.wav", **values), 1
        )
    return results


def rows(results: dict[str, Any]) -> list[str]:
    """The figures as table rows (``python -m benchmarks run``)."""
    lines = []
    for name, label in (("tiny", "tiny, 179 frames"), ("real", "real-size 0.6B, 48 frames")):
        if name not in results:
            continue
        r = results[name]
        lines.append(
            f"{label}: first chunk {r['first_chunk_s']:.3f} s of the whole request's"
            f" {r['whole_s']:.3f} s ({100 * r['first_share_of_whole']:.1f} %, target <= 15 %);"
            f" stream {r['stream_total_s']:.3f} s ({r['stream_vs_whole']}x, target <= 1.1x);"
            f" {r['chunks']} chunks, SNR {r['snr_db']} dB, max diff {r['max_abs_diff_lsb']} LSB"
        )
    dub = results["during_dub"]
    lines.append(
        f"during a dub of {DUB_SEGMENTS}: first chunk {dub['first_chunk_s']:.3f} s, stream"
        f" {dub['stream_total_s']:.3f} s, the dub {dub['dub_s']:.3f} s"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streaming")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from qwen3tts_plugin.testing import tiny_checkpoint

    results = run(tiny_checkpoint("custom_voice"), args.repeats, args.real)
    print_results(results, args.json)
    print("\n".join(rows(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
