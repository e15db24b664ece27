"""2-4. In-process costs on the tiny checkpoint: per-call overhead, cached load, concurrency."""

from __future__ import annotations

import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hookspecs import (
    EngineConfig,
    GenerationParams,
    SynthesisRequest,
    TtsError,
    Voice,
    plugin_manager,
)

from .stats import interleaved, repeat

TEXT = "The quick brown fox jumps over the lazy dog."
TARGET_RATIO = 1.03
TARGET_CACHED_LOAD_S = 0.001
TARGET_CONCURRENCY_RATIO = 3.0


def _setup(model_dir: Path) -> tuple[Any, EngineConfig]:
    pm = plugin_manager()
    config = EngineConfig(provider="qwen3_tts", extra_params={"ModelPath": str(model_dir)})
    pm.hook.tts_load(config=config)
    return pm, config


def overhead(model_dir: Path, repeats: int, max_new_tokens: int) -> dict[str, Any]:
    """``pm.hook.tts_synthesize`` against qwen_tts's own call plus ``soundfile.write``."""
    import soundfile as sf
    import torch

    from qwen3tts_plugin.hooks import get_engine

    pm, config = _setup(model_dir)
    # The very model the hook uses: the same compute on both sides.
    model = get_engine().resident_backend().model
    speaker = model.get_supported_speakers()[0]
    folder = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    params = GenerationParams(max_new_tokens=max_new_tokens, seed=0, allow_cut=True)
    request = SynthesisRequest(
        config=config,
        text=TEXT,
        out_path=folder / "hook.wav",
        voice=Voice(speaker=speaker),
        generation=params,
    )

    def through_hook() -> None:
        pm.hook.tts_synthesize(request=request)

    def direct() -> None:
        torch.manual_seed(0)
        wavs, rate = model.generate_custom_voice(
            text=TEXT,
            speaker=speaker,
            language="Auto",
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=0.9,
            top_k=50,
            top_p=1.0,
            subtalker_dosample=True,
            subtalker_temperature=0.9,
            subtalker_top_k=50,
            subtalker_top_p=1.0,
        )
        sf.write(folder / "direct.wav", wavs[0], rate, subtype="PCM_16")

    try:
        timings = interleaved({"hook": through_hook, "direct": direct}, n=repeats, warmup=1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ratio = timings["hook"].median / timings["direct"].median
    return {
        "max_new_tokens": max_new_tokens,
        "hook": timings["hook"].as_dict(),
        "direct": timings["direct"].as_dict(),
        "ratio": ratio,
        "overhead_ms": (timings["hook"].median - timings["direct"].median) * 1e3,
        "target_ratio": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
    }


def cached_load(model_dir: Path, repeats: int) -> dict[str, Any]:
    """``pm.hook.tts_load`` with unchanged settings once the model is resident."""
    pm, config = _setup(model_dir)
    results = []
    timing = repeat(lambda: results.append(pm.hook.tts_load(config=config)), n=repeats, warmup=3)
    return {
        "timing": timing.as_dict(),
        "all_cached": all(r.cached for r in results),
        "target_s": TARGET_CACHED_LOAD_S,
        "met": timing.median < TARGET_CACHED_LOAD_S and all(r.cached for r in results),
    }


def concurrency(model_dir: Path, threads: int, calls: int, max_new_tokens: int) -> dict[str, Any]:
    """``threads`` x ``calls`` unseeded hook calls at once against the same calls in a row.

    Calls that arrive while a generate call runs share the next one (micro-batching), so the
    concurrent run should beat the row. It starts with nothing resident, so it also shows that
    loads are single-flight.
    """
    from qwen3tts_plugin.hooks import get_engine

    pm, config = _setup(model_dir)
    folder = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    sizes: list[int] = []

    def one(index: int) -> bool:
        """One call; True when this call had to load the model."""
        result = pm.hook.tts_synthesize(
            request=SynthesisRequest(
                config=config,
                text=TEXT,
                out_path=folder / f"{index:03d}.wav",
                generation=GenerationParams(max_new_tokens=max_new_tokens, allow_cut=True),
            )
        )
        sizes.append(result.batch_size)
        return result.load_s > 0

    def worker(first: int) -> tuple[int, int]:
        errors = loads = 0
        for i in range(calls):
            try:
                loads += one(first * calls + i)
            except TtsError:
                errors += 1
        return errors, loads

    total = threads * calls
    try:
        started = time.perf_counter()
        for i in range(total):
            one(i)
        sequential_s = time.perf_counter() - started
        sizes.clear()
        get_engine().release()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            outcomes = list(pool.map(worker, range(threads)))
        concurrent_s = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    errors = sum(e for e, _ in outcomes)
    loads = sum(n for _, n in outcomes)
    speedup = sequential_s / concurrent_s
    return {
        "threads": threads,
        "calls_per_thread": calls,
        "max_new_tokens": max_new_tokens,
        "sequential_s": sequential_s,
        "concurrent_s": concurrent_s,
        "throughput_ratio": speedup,
        "mean_batch_size": sum(sizes) / len(sizes) if sizes else 0.0,
        "errors": errors,
        "loads": loads,
        "target_ratio": TARGET_CONCURRENCY_RATIO,
        "met": errors == 0 and loads == 1 and speedup >= TARGET_CONCURRENCY_RATIO,
    }
