"""8. Texts per generate call: throughput of one list of segments at each BatchSize.

The same segments go through ``tts_synthesize_batch`` with ``BatchSize=N`` for each N; greedy
decoding, so every size does the same work (batched audio equals the single-call audio to
1 LSB). This is what ``BatchSize=auto`` was chosen from (README, Benchmarks). The backend is
named (``stepper`` unless told): under ``Backend=auto`` a CUDA machine would speak size 1
through the CUDA graphs and the other sizes through qwen_tts's loop, comparing two backends.

``python -m benchmarks run`` sweeps the tiny checkpoint. The real-size random 0.6B model
(``benchmarks/real_checkpoint.py``; 2.15 GB, built once into $QWEN3TTS_REAL_CACHE or /tmp) is
slow on a CPU, so it has its own entry point::

    python -m benchmarks.batch_sizes --real [--device cpu|cuda:0] [--backend stepper|qwen_tts]
        [--texts 16] [--frames 8] [--sizes 1,4,8,16]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, plugin_manager

from .gpu_real import SEGMENTS

SIZES = (1, 2, 4, 8, 16, 32)


def run(
    model_dir: Path,
    texts: int = 32,
    frames: int = 8,
    sizes: tuple[int, ...] = SIZES,
    device: str = "cpu",
    backend: str = "stepper",
) -> dict[str, Any]:
    """Seconds for ``texts`` segments at each batch size on ``backend``, the speed-up over
    the smallest size, and the audio spoken per wall second (real time: 1)."""
    pm = plugin_manager()
    segments = [SEGMENTS[i % len(SEGMENTS)] for i in range(texts)]
    folder = Path(tempfile.mkdtemp(prefix="bench-batch-sizes-"))
    generation = GenerationParams(do_sample=False, max_new_tokens=frames + 1, allow_cut=True)

    def config(size: int) -> EngineConfig:
        extra = {
            "ModelPath": str(model_dir),
            "Device": device,
            "Backend": backend,
            "BatchSize": size,
        }
        return EngineConfig(provider="qwen3_tts", extra_params=extra)

    def once(size: int) -> tuple[float, float]:
        """Seconds for the segments at ``size``, and the seconds of audio they made."""
        requests = [
            SynthesisRequest(
                config=config(size), text=text, out_path=folder / f"{i}.wav", generation=generation
            )
            for i, text in enumerate(segments)
        ]
        started = time.perf_counter()
        items = pm.hook.tts_synthesize_batch(requests=requests)
        seconds = time.perf_counter() - started
        failed = [item.error for item in items if item.error is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} segments failed: {failed[0]}")
        return seconds, sum(item.result.duration_s for item in items)

    try:
        loaded = pm.hook.tts_load(config=config(1))
        once(max(sizes))  # warm-up
        timed = {size: once(size) for size in sizes}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = {size: wall for size, (wall, _) in timed.items()}
    base = seconds[min(sizes)]
    return {
        "model": str(model_dir),
        "device": loaded.device,
        "dtype": loaded.dtype,
        "backend": loaded.backend,
        "texts": texts,
        "frames": frames,
        "seconds": seconds,
        "speedup": {size: base / s for size, s in seconds.items()},
        "realtime": {size: audio / wall for size, (wall, audio) in timed.items()},
    }


def rows(result: dict[str, Any]) -> list[str]:
    """One line per batch size."""
    return [
        f"{result['backend']} BatchSize {size:>2}: {seconds:7.2f} s for {result['texts']} texts"
        f"  ({result['speedup'][size]:.2f}x size {min(result['seconds'])};"
        f" {result['realtime'][size]:.2f}x real time)"
        for size, seconds in result["seconds"].items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_sizes")
    parser.add_argument("--real", action="store_true", help="the real-size random 0.6B model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="stepper", choices=("stepper", "qwen_tts"))
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="e.g. 1,4,8,16")
    args = parser.parse_args(argv)
    if args.real:
        from .real_checkpoint import real_size_checkpoint

        model_dir = real_size_checkpoint()
    else:
        from qwen3tts_plugin.testing import tiny_checkpoint

        model_dir = tiny_checkpoint("custom_voice")
    sizes = tuple(int(part) for part in args.sizes.split(","))
    result = run(model_dir, args.texts, args.frames, sizes, args.device, args.backend)
    print("\n".join(rows(result)), file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
