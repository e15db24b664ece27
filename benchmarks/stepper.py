"""Our decode loop (``Backend=stepper``) beside qwen_tts's, on the tiny checkpoint, in one run.

``python -m benchmarks.stepper [--repeats 3] [--json OUT]``

1. **Mixed lengths**: 32 segments, unseeded sampling, 64-frame budget (their lengths differ),
   through ``tts_synthesize_batch`` at BatchSize 8. qwen_tts runs static batches of 8 (a
   batch lasts as long as its longest row); the stepper decodes 8 at once and gives an ended
   row's slot to the next segment. Target: stepper ≥ 2× qwen_tts.
2. **Concurrent callers**: 16 threads × 4 such calls vs the 64 calls in a row, per backend.
   Target: stepper ≥ 3.5×.
3. **Seeded dub**: the 32 segments, each with its own seed. qwen_tts runs a seeded segment
   alone (one generator for the batch); the stepper batches them (a generator per row).
   Target: stepper ≥ 3× qwen_tts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, plugin_manager

from .gpu_real import SEGMENTS
from .stats import print_results, repeat

BACKENDS = ("qwen_tts", "stepper")
SEGMENT_COUNT = 32
FRAMES = 64
BATCH_SIZE = 8


def requests_for(
    model_dir: Path, folder: Path, backend: str, seeded: bool, count: int = SEGMENT_COUNT
) -> list[SynthesisRequest]:
    extra = {"ModelPath": str(model_dir), "Device": "cpu", "BatchSize": BATCH_SIZE}
    config = EngineConfig(provider="qwen3_tts", extra_params={**extra, "Backend": backend})
    return [
        SynthesisRequest(
            config=config,
            text=SEGMENTS[i % len(SEGMENTS)],
            out_path=folder / f"{backend}-{i}.wav",
            generation=GenerationParams(
                do_sample=True,
                max_new_tokens=FRAMES,
                allow_cut=True,
                seed=1000 + i if seeded else None,
            ),
        )
        for i in range(count)
    ]


def run(model_dir: Path, repeats: int = 3) -> dict[str, Any]:
    pm = plugin_manager()
    folder = Path(tempfile.mkdtemp(prefix="bench-stepper-"))

    def batch(backend: str, seeded: bool) -> None:
        items = pm.hook.tts_synthesize_batch(
            requests=requests_for(model_dir, folder, backend, seeded)
        )
        failed = [item.error for item in items if item.error is not None]
        if failed:
            raise RuntimeError(f"{backend}: {failed[0]}")

    def one_by_one(backend: str) -> None:
        for request in requests_for(model_dir, folder, backend, False, 64):
            pm.hook.tts_synthesize(request=request)

    def concurrent(backend: str) -> None:
        calls = requests_for(model_dir, folder, backend, False, 64)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda request: pm.hook.tts_synthesize(request=request), calls))

    results: dict[str, Any] = {}
    for backend in BACKENDS:
        results[backend] = {
            "mixed_lengths_batch_s": repeat(lambda b=backend: batch(b, False), repeats).median,
            "seeded_batch_s": repeat(lambda b=backend: batch(b, True), repeats).median,
            "calls_in_a_row_s": repeat(lambda b=backend: one_by_one(b), 1).median,
            "concurrent_calls_s": repeat(lambda b=backend: concurrent(b), repeats).median,
        }
    ours, theirs = results["stepper"], results["qwen_tts"]
    results["targets"] = {
        "mixed_lengths_speedup": round(
            theirs["mixed_lengths_batch_s"] / ours["mixed_lengths_batch_s"], 2
        ),
        "concurrent_speedup_stepper": round(
            ours["calls_in_a_row_s"] / ours["concurrent_calls_s"], 2
        ),
        "concurrent_speedup_qwen_tts": round(
            theirs["calls_in_a_row_s"] / theirs["concurrent_calls_s"], 2
        ),
        "seeded_speedup": round(theirs["seeded_batch_s"] / ours["seeded_batch_s"], 2),
    }
    return results


def rows(results: dict[str, Any]) -> list[str]:
    """The figures as table rows (``python -m benchmarks run``)."""
    ours, theirs, targets = results["stepper"], results["qwen_tts"], results["targets"]
    return [
        f"32 mixed-length segments, batch hook: qwen_tts {theirs['mixed_lengths_batch_s']:.2f} s,"
        f" stepper {ours['mixed_lengths_batch_s']:.2f} s = {targets['mixed_lengths_speedup']}x"
        " (target >= 2x)",
        f"the same 32 seeded: qwen_tts {theirs['seeded_batch_s']:.2f} s, stepper"
        f" {ours['seeded_batch_s']:.2f} s = {targets['seeded_speedup']}x (target >= 3x)",
        f"16 threads x 4 calls vs 64 in a row: stepper {targets['concurrent_speedup_stepper']}x,"
        f" qwen_tts {targets['concurrent_speedup_qwen_tts']}x (target >= 3.5x)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stepper")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from qwen3tts_plugin.testing import tiny_checkpoint

    results = run(tiny_checkpoint("custom_voice"), args.repeats)
    print_results(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
