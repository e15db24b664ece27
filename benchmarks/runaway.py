"""A line whose end never comes: how soon it reaches its typed verdict, with the frame bound
from its text (``FrameBound=auto``, today) and without it (``FrameBound=off``, as before).

``python -m benchmarks.runaway [--real] [--json OUT]``

1. **Tiny**: a six-word line on ``tiny_checkpoint_without_eos`` (a talker that never ends a
   text), greedy, default budget (2,048 frames), through ``tts_synthesize``: the wall time to
   the error and the frames spent (first try plus retry), each way. Target (issue 35): the
   verdict >= 20x sooner.
2. **Real size** (``--real``): the real-size random 0.6B on the CPU, fp32. Running 6,144
   frames the old way would take about an hour here, so the cost is reported from the
   measured seconds per frame (13 frames at batch 1, the model resident) times the frames
   each way spends.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIX_WORDS = "The river bends twice near here."
TARGET = 20.0
ASKED = 2048


def frames_spent(frame_bound: str, text: str = SIX_WORDS, asked: int = ASKED) -> int:
    """Frames a line that never ends is given over its tries before its verdict."""
    from hookspecs.models import MAX_NEW_TOKENS
    from qwen3tts_plugin.budgets import first_budget, runaway_retry_budget, text_bound

    bound = text_bound(text) if frame_bound == "auto" else None
    first = first_budget(asked, bound)
    if bound is not None and first < asked:
        second = runaway_retry_budget(asked, first, MAX_NEW_TOKENS) or first
    else:
        second = min(2 * asked, MAX_NEW_TOKENS)
    return first + second


def verdict(model_dir: Path, frame_bound: str) -> dict[str, Any]:
    from hookspecs import (
        EngineConfig,
        GenerationParams,
        SynthesisRequest,
        TtsError,
        Voice,
        plugin_manager,
    )

    pm = plugin_manager()
    config = EngineConfig(
        provider="qwen3_tts",
        extra_params={"ModelPath": str(model_dir), "Device": "cpu", "FrameBound": frame_bound},
    )
    pm.hook.tts_load(config=config)
    request = SynthesisRequest(
        config=config,
        text=SIX_WORDS,
        out_path=Path(tempfile.mkdtemp(prefix="runaway-")) / "x.wav",
        voice=Voice(speaker="vivian"),
        generation=GenerationParams(do_sample=False),
    )
    started = time.perf_counter()
    try:
        pm.hook.tts_synthesize(request=request)
        code = None
    except TtsError as err:
        code = err.code
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "code": code,
        "frames": frames_spent(frame_bound),
    }


def tiny() -> dict[str, Any]:
    from qwen3tts_plugin.testing import tiny_checkpoint_without_eos

    model_dir = tiny_checkpoint_without_eos()
    verdict(model_dir, "auto")  # warm-up: imports, first load
    now, before = verdict(model_dir, "auto"), verdict(model_dir, "off")
    return {"now": now, "before": before, "sooner": round(before["seconds"] / now["seconds"], 1)}


def real() -> dict[str, Any]:
    """Seconds a frame at batch 1 on the real-size model (fp32), times each way's frames."""
    from hookspecs import GenerationParams
    from qwen3tts_plugin.backends import Batch
    from qwen3tts_plugin.backends.stepper.backend import StepperBackend
    from qwen3tts_plugin.devices import DevicePlan
    from qwen3tts_plugin.voices import VoicePlan

    from .real_checkpoint import real_size_checkpoint

    backend = StepperBackend.load(real_size_checkpoint(), DevicePlan.named("cpu", "stepper"))
    voice = VoicePlan("custom_voice", "english", "ryan")
    frames = 13
    batch = Batch(
        (SIX_WORDS,), (voice,), GenerationParams(max_new_tokens=frames + 1, allow_cut=True)
    )
    backend.generate(batch)  # warm-up
    started = time.perf_counter()
    backend.generate(batch)
    per_frame = (time.perf_counter() - started) / frames
    backend.release()
    now, before = frames_spent("auto"), frames_spent("off")
    return {
        "seconds_per_frame": round(per_frame, 3),
        "now": {"frames": now, "seconds": round(now * per_frame, 1)},
        "before": {"frames": before, "seconds": round(before * per_frame, 1)},
    }


def rows(results: dict[str, Any]) -> list[str]:
    t = results["tiny"]
    met = "met" if t["sooner"] >= TARGET else "NOT met"
    lines = [
        f"a six-word line that never ends ({SIX_WORDS!r}), tiny checkpoint: verdict"
        f" {t['now']['code']} after {t['now']['seconds']} s ({t['now']['frames']} frames) against"
        f" {t['before']['code']} after {t['before']['seconds']} s ({t['before']['frames']}"
        f" frames): {t['sooner']}x sooner (target >= {TARGET}x: {met})"
    ]
    if "real" in results:
        r = results["real"]
        lines.append(
            f"real-size 0.6B, CPU fp32, {r['seconds_per_frame']} s a frame: {r['now']['frames']}"
            f" frames ~ {r['now']['seconds']} s now, {r['before']['frames']} frames ~"
            f" {r['before']['seconds']} s before"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    from .stats import print_results

    parser = argparse.ArgumentParser(prog="python -m benchmarks.runaway")
    parser.add_argument("--real", action="store_true", help="also the real-size model's cost")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"tiny": tiny()}
    if args.real:
        results["real"] = real()
    print_results(results, args.json)
    print("\n".join(rows(results)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
