"""A long run in one process: does resident memory stay flat over thousands of requests?

``python -m benchmarks.soak [--requests 2000] [--real 0] [--png soak.png] [--json OUT]``

Requests of all three voice modes (the tiny custom_voice, voice_design and base checkpoints;
clones of ``RECORDINGS`` different recordings, x-vector and in-context) and mixed lengths, as
single ``tts_synthesize`` calls and ``tts_synthesize_batch`` lists of 8 in turn; short frame
budgets with ``allow_cut`` (the work is the engine's bookkeeping, not the audio). Resident
memory (``/proc/self/statm``) is sampled after every call. ``--real N`` adds N requests on the
real-size random 0.6B (custom_voice, single calls and lists). Target (issue 35): after the
first ``WARMUP`` requests, growth < 50 MB over 2,000 tiny requests and < 200 MB over 200
real-size ones. ``--png`` draws the curve (Pillow, which qwen-tts's gradio brings).
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

WARMUP = 50
RECORDINGS = 50
LIST = 8
TINY_TARGET_MB = 50
REAL_TARGET_MB = 200
TEXTS = [
    "Hi.",
    "The river bends twice before it reaches the old mill.",
    "今天的天气非常好，我们去河边走走吧。",
    "Nobody remembers who built it, or why; the stones are older than the town.",
    "Yes.",
    "Every spring the villagers carry their boats down the stone stairs to the water.",
]


def resident_mb() -> float:
    """This process's resident memory, in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def recordings(folder: Path, count: int = RECORDINGS) -> list[Path]:
    """``count`` different reference recordings (tones of different pitch and length)."""
    import numpy as np
    import soundfile as sf

    paths = []
    for index in range(count):
        seconds = 1.5 + (index % 5) * 0.5
        t = np.arange(int(16_000 * seconds)) / 16_000
        tone = 0.3 * np.sin(2 * np.pi * (150 + 7 * index) * t) * (1 + np.sin(2 * np.pi * 3 * t))
        path = folder / f"ref{index:02d}.wav"
        sf.write(path, tone.astype(np.float32) / 2, 16_000)
        paths.append(path)
    return paths


def tiny_request(index: int, folder: Path, refs: list[Path]):
    """Request ``index`` of the tiny run: its mode, text and length from the index."""
    from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, Voice
    from qwen3tts_plugin.testing import tiny_checkpoint

    mode = ("custom_voice", "voice_design", "voice_clone")[index % 3]
    variant = {"voice_clone": "base"}.get(mode, mode)
    if mode == "custom_voice":
        voice = Voice(speaker="vivian")
    elif mode == "voice_design":
        voice = Voice(mode="voice_design", instruct="A calm, low voice.")
    else:
        ref = refs[(index // 3) % len(refs)]
        icl = index % 2 == 0
        voice = Voice(
            mode="voice_clone",
            ref_audio=ref,
            ref_text="Hello there." if icl else None,
            x_vector_only=not icl,
        )
    extra = {"ModelPath": str(tiny_checkpoint(variant)), "Device": "cpu"}
    return SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params=extra),
        text=TEXTS[index % len(TEXTS)],
        out_path=folder / f"{index % 64}.wav",
        voice=voice,
        generation=GenerationParams(max_new_tokens=8 + index % 17, allow_cut=True, seed=index),
    )


def real_request(index: int, folder: Path):
    from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, Voice

    from .gpu_real import SEGMENTS, SPEAKER
    from .real_checkpoint import real_size_checkpoint

    extra = {"ModelPath": str(real_size_checkpoint()), "Device": "cpu", "Quantization": "int8"}
    return SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params=extra),
        text=SEGMENTS[index % len(SEGMENTS)],
        out_path=folder / f"real-{index % 16}.wav",
        voice=Voice(speaker=SPEAKER),
        generation=GenerationParams(max_new_tokens=4 + index % 9, allow_cut=True),
    )


def soak(count: int, make) -> dict[str, Any]:
    """``count`` requests from ``make(index)``: single calls and lists of ``LIST`` in turn;
    resident memory after each call."""
    from hookspecs import TtsError, plugin_manager

    pm = plugin_manager()
    samples: list[tuple[int, float]] = []
    failures = 0
    started = time.perf_counter()
    index = 0
    single = True
    while index < count:
        if single:
            try:
                pm.hook.tts_synthesize(request=make(index))
            except TtsError:
                failures += 1
            index += 1
        else:
            size = min(LIST, count - index)
            items = pm.hook.tts_synthesize_batch(requests=[make(index + i) for i in range(size)])
            failures += sum(item.error is not None for item in items)
            index += size
        single = not single
        samples.append((index, round(resident_mb(), 1)))
    after_warmup = next(mb for n, mb in samples if n >= min(WARMUP, count))
    return {
        "requests": count,
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 1),
        "first_mb": samples[0][1],
        "after_warmup_mb": after_warmup,
        "last_mb": samples[-1][1],
        "growth_after_warmup_mb": round(samples[-1][1] - after_warmup, 1),
        "samples": samples,
    }


def plot(runs: dict[str, dict[str, Any]], path: Path) -> bool:
    """Each run's resident memory against requests, one panel each, as a PNG; False without
    Pillow."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return False
    width, height, margin = 800, 260, 50
    image = Image.new("RGB", (width, height * len(runs)), "white")
    draw = ImageDraw.Draw(image)
    for panel, (name, run) in enumerate(runs.items()):
        top = panel * height
        points = run["samples"]
        low = min(mb for _, mb in points) - 5
        high = max(mb for _, mb in points) + 5
        last = max(n for n, _ in points)

        def xy(n: int, mb: float, top=top, low=low, high=high, last=last) -> tuple[float, float]:
            x = margin + (width - 2 * margin) * n / max(last, 1)
            y = top + height - margin - (height - 2 * margin) * (mb - low) / (high - low)
            return x, y

        draw.rectangle(
            [margin, top + margin, width - margin, top + height - margin], outline="gray"
        )
        draw.line([xy(n, mb) for n, mb in points], fill="navy", width=2)
        draw.text(
            (margin, top + 10),
            f"{name}: resident MB over {run['requests']} requests (growth after {WARMUP}: "
            f"{run['growth_after_warmup_mb']} MB)",
            fill="black",
        )
        draw.text((5, top + margin), f"{high:.0f}", fill="black")
        draw.text((5, top + height - margin - 10), f"{low:.0f}", fill="black")
        draw.text((width - margin - 20, top + height - margin + 5), str(last), fill="black")
    image.save(path)
    return True


def run(requests: int, real: int = 0, png: Path | None = None) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    refs = recordings(folder)
    runs = {"tiny": soak(requests, lambda i: tiny_request(i, folder, refs))}
    if real:
        runs["real_size"] = soak(real, lambda i: real_request(i, folder))
    results: dict[str, Any] = {"runs": runs}
    if png is not None:
        results["png"] = str(png) if plot(runs, png) else None
    return results


def rows(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, run_ in results["runs"].items():
        target = TINY_TARGET_MB if name == "tiny" else REAL_TARGET_MB
        met = "met" if run_["growth_after_warmup_mb"] < target else "NOT met"
        lines.append(
            f"{name}: {run_['requests']} requests in {run_['seconds']} s ({run_['failures']}"
            f" failed): resident {run_['first_mb']} MB after the first call,"
            f" {run_['after_warmup_mb']} MB after {WARMUP}, {run_['last_mb']} MB at the end:"
            f" +{run_['growth_after_warmup_mb']} MB (target < {target} MB: {met})"
        )
    if results.get("png"):
        lines.append(f"curve: {results['png']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    from .stats import print_results

    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--real", type=int, default=0, help="real-size requests after the tiny")
    parser.add_argument("--png", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = run(args.requests, args.real, args.png)
    shown = {
        **results,
        "runs": {
            name: {k: v for k, v in run_.items() if k != "samples"}
            for name, run_ in results["runs"].items()
        },
    }
    print_results(results if args.json else shown, args.json)
    print("\n".join(rows(results)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
