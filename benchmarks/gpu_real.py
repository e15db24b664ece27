"""6. GPU: a random model of the real 0.6B CustomVoice architecture, timed four ways.

The checkpoint (``real_checkpoint.py``) has the published sizes and random weights whose talker
never ends a text, so every call produces exactly the frames asked for
(``max_new_tokens = frames + 1``; the CUDA graphs take ``frames``). Each run records the frames
it actually produced.

Time to first audio: qwen_tts 0.1.1 has no streaming output. ``non_streaming_mode`` only
chooses how the *text* enters the talker (all in the prompt, the default that the seed's host
and the plugin use, or one text token per generated frame, "simulated streaming input"); either
way ``generate_custom_voice`` returns after every frame is generated and the whole waveform is
decoded. So time to first audio equals the call's latency. As a floor for a streaming path with
the same kernels, each configuration also records the latency of a one-frame call.

``measure(quick)`` (CUDA only; called by ``benchmarks/gpu.py``):
(a) official: ``Qwen3TTSModel.from_pretrained(device_map="cuda:0", dtype=float16,
    attn_implementation="sdpa")`` and ``generate_custom_voice``, as the seed's host used it;
(b) policy: ``pm.hook.tts_load`` / ``tts_synthesize`` with ``Device=auto`` (bf16 on Ampere and
    newer, flash_attention_2 when flash_attn imports, else sdpa), WAV writing included;
(c) batch: the same resident model, eight narration segments through ``tts_synthesize_batch``
    with ``BatchSize=8`` (one generate call), WAV writing included; unseeded (a seeded sampled
    request always runs alone, by design). Against (b), one text per call with the same frames,
    it gives the batch speed-up (audio seconds per wall second, (c) over (b)).
Frames per segment: 48 quick (3.84 s of audio), 96 full (7.68 s); repeats after one warm-up:
2 quick, 5 full.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

from .real_checkpoint import folder_bytes, real_size_checkpoint
from .stats import Timing

__all__ = [
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "SEGMENTS",
    "SPEAKER",
    "measure",
    "rows",
    "run_benchmark",
    "sampling",
]

SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = 1920  # 12.5 frames per second of 24 kHz audio
QUICK = {"frames": 48, "repeats": 2}
FULL = {"frames": 96, "repeats": 5}
SPEAKER = "ryan"
LANGUAGE = "English"

SEGMENTS = [
    "The river bends twice before it reaches the old mill, where the water turns slow and dark.",
    "Every spring the villagers carry their boats down the stone stairs and wait for the flood.",
    "Nobody remembers who built the mill, but everyone knows the sound of its broken wheel.",
    "In the evening the light falls across the fields, and the farmers walk home in silence.",
    "The children race along the bank, counting the herons that stand in the shallow water.",
    "At the end of the summer the market fills with apples, honey, bread and smoked fish.",
    "Travellers stop at the bridge to ask the way, and the answer is always the same: follow it.",
    "When winter comes the river freezes, and the whole valley listens to the ice at night.",
]
"""Eight narration segments for the batch; the first is the single-call text."""
TEXT = SEGMENTS[0]

# --- timing helpers ---------------------------------------------------------------------------


def _sync(device: str) -> None:
    """Wait for queued GPU work (no-op on the CPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _memory_start(device: str) -> int | None:
    """Reset the peak counter; return the bytes allocated now (the resident weights)."""
    import torch

    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return int(torch.cuda.memory_allocated(device))


def _memory_peak(device: str) -> int | None:
    """Peak bytes allocated since ``_memory_start`` (None on the CPU)."""
    import torch

    return int(torch.cuda.max_memory_allocated(device)) if device.startswith("cuda") else None


Call = Callable[[int, int], list[float]]
"""``call(frames, seed)`` runs one synthesis and returns the frames produced per item."""


def _time(call: Call, frames: int, seed: int, device: str) -> tuple[float, list[float]]:
    """Seconds for one call (GPU work included) and the frames it produced."""
    _sync(device)
    started = time.perf_counter()
    produced = call(frames, seed)
    _sync(device)
    return time.perf_counter() - started, produced


def _run(call: Call, frames: int, repeats: int, device: str) -> dict[str, Any]:
    """One warm-up, ``repeats`` timed calls of ``frames`` frames, then ``repeats`` one-frame
    calls; peak memory over all of them."""
    weights = _memory_start(device)
    call(frames, 0)
    timed = [_time(call, frames, seed, device) for seed in range(1, repeats + 1)]
    one_frame = [_time(call, 1, seed, device)[0] for seed in range(1, repeats + 1)]
    return {
        "seconds": [seconds for seconds, _ in timed],
        "produced": [produced for _, produced in timed],
        "one_frame_s": one_frame,
        "weights_mem_bytes": weights,
        "peak_mem_bytes": _memory_peak(device),
    }


def _figures(run: dict[str, Any], frames: int, **facts: Any) -> dict[str, Any]:
    """The reported figures of one configuration from its raw run."""
    wall = Timing.of(run["seconds"])
    produced = run["produced"]
    items = len(produced[0])
    audio_s = sum(map(sum, produced)) / len(produced) * SAMPLES_PER_FRAME / SAMPLE_RATE
    return {
        **facts,
        "items_per_call": items,
        "frames": frames,
        "frames_produced": produced,
        "frames_ok": all(f == frames for call in produced for f in call),
        "audio_s": audio_s,
        "wall_s": wall.as_dict(),
        "audio_s_per_wall_s": {
            "median": audio_s / wall.median,
            "min": audio_s / wall.max,
            "max": audio_s / wall.min,
        },
        "time_to_first_audio_s": wall.as_dict(),
        "one_frame_call_s": Timing.of(run["one_frame_s"]).as_dict(),
        "weights_mem_bytes": run["weights_mem_bytes"],
        "peak_mem_bytes": run["peak_mem_bytes"],
    }


def _frames(samples: int) -> float:
    """Frames in ``samples`` samples (1920 per frame at 24 kHz); fractional if not whole."""
    whole, rest = divmod(samples, SAMPLES_PER_FRAME)
    return whole if rest == 0 else samples / SAMPLES_PER_FRAME


def _frames_of(wavs: list[Any]) -> list[float]:
    """Frames per waveform."""
    return [_frames(len(wav)) for wav in wavs]


def sampling(frames: int) -> dict[str, Any]:
    """The plugin's sampling kwargs for its default GenerationParams, for ``frames`` frames."""
    from hookspecs import GenerationParams
    from qwen3tts_plugin.backends.qwen_tts.calls import sampling_kwargs

    return sampling_kwargs(GenerationParams(max_new_tokens=frames + 1, allow_cut=True))


def _direct_call(model: Any, texts: list[str]) -> Call:
    """A raw ``generate_custom_voice`` call on ``texts`` (one text, or a batch as a list)."""
    import torch

    def call(frames: int, seed: int) -> list[float]:
        torch.manual_seed(seed)
        wavs, _rate = model.generate_custom_voice(
            text=texts if len(texts) > 1 else texts[0],
            speaker=SPEAKER,
            language=LANGUAGE,
            **sampling(frames),
        )
        return _frames_of(wavs)

    return call


# --- the three configurations -----------------------------------------------------------------


OFFICIAL = "(a) official qwen_tts"
POLICY = "(b) plugin policy"
BATCH = f"(c) plugin batch of {len(SEGMENTS)}"
GRAPHS = "(d) plugin cuda_graphs"


def _failed(label: str, exc: BaseException) -> dict[str, Any]:
    """The record of a configuration that failed (its traceback goes to stderr)."""
    traceback.print_exception(exc, file=sys.stderr)
    return {"label": label, "error": f"{type(exc).__name__}: {exc}"}


def _guard(label: str, measure_one: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one configuration; a failure is recorded so that the others still run."""
    try:
        return measure_one()
    except Exception as exc:  # noqa: BLE001 - any failure is reported in the results, not lost
        return _failed(label, exc)


def _official(path: pathlib.Path, device: str, frames: int, repeats: int, dtype: str) -> dict:
    """(a) qwen_tts loaded as the seed's host did (fp16 + sdpa), called directly."""
    import torch

    from qwen3tts_plugin.backends.device import free_device_memory
    from qwen3tts_plugin.backends.qwen_tts.runtime import import_qwen_tts

    model_cls = import_qwen_tts()
    _sync(device)
    started = time.perf_counter()
    model = model_cls.from_pretrained(
        str(path), device_map=device, dtype=getattr(torch, dtype), attn_implementation="sdpa"
    )
    _sync(device)
    load_s = time.perf_counter() - started
    try:
        run = _run(_direct_call(model, [TEXT]), frames, repeats, device)
    finally:
        del model
        free_device_memory()
    return _figures(
        run,
        frames,
        label=OFFICIAL,
        how="Qwen3TTSModel.from_pretrained + generate_custom_voice (non-streaming)",
        dtype=dtype,
        attn="sdpa",
        load_s=load_s,
    )


def _hook_call(pm: Any, config: Any, folder: pathlib.Path, extra_frame: int = 1) -> Call:
    """One ``pm.hook.tts_synthesize`` call (generation and the WAV write). ``extra_frame``:
    qwen_tts's loop returns max_new_tokens - 1 frames of a text that never ends, the CUDA
    graphs max_new_tokens."""
    from hookspecs import GenerationParams, SynthesisRequest, Voice

    def call(frames: int, seed: int) -> list[float]:
        request = SynthesisRequest(
            config=config,
            text=TEXT,
            out_path=folder / "hook.wav",
            voice=Voice(speaker=SPEAKER, language=LANGUAGE),
            generation=GenerationParams(
                max_new_tokens=frames + extra_frame, seed=seed, allow_cut=True
            ),
        )
        result = pm.hook.tts_synthesize(request=request)
        return [_frames(round(result.duration_s * SAMPLE_RATE))]

    return call


def _batch_call(pm: Any, config: Any, folder: pathlib.Path, batch_size: int) -> Call:
    """The eight segments through one ``pm.hook.tts_synthesize_batch`` call, ``batch_size``
    texts per generate call (unseeded, so they may share calls)."""
    from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, Voice

    config = EngineConfig(
        provider=config.provider, extra_params={**config.extra_params, "BatchSize": batch_size}
    )

    def call(frames: int, seed: int) -> list[float]:
        requests = [
            SynthesisRequest(
                config=config,
                text=text,
                out_path=folder / f"segment{index}.wav",
                voice=Voice(speaker=SPEAKER, language=LANGUAGE),
                generation=GenerationParams(max_new_tokens=frames + 1, allow_cut=True),
            )
            for index, text in enumerate(SEGMENTS)
        ]
        items = pm.hook.tts_synthesize_batch(requests=requests)
        failed = [item.error for item in items if item.error is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} segments failed: {failed[0]}")
        return [_frames(round(item.result.duration_s * SAMPLE_RATE)) for item in items]

    return call


def _policy_and_batch(path: pathlib.Path, device: str, frames: int, repeats: int) -> list[dict]:
    """(b) the plugin's hooks with Device=auto, one text per call, then (c) the batch hook with
    the eight segments in one generate call, on the same resident model."""
    from hookspecs import EngineConfig, plugin_manager
    from qwen3tts_plugin.hooks import get_engine

    pm = plugin_manager()
    config = EngineConfig(
        provider="qwen3_tts",
        extra_params={"ModelPath": str(path), "Device": "auto", "Backend": "qwen_tts"},
    )
    folder = pathlib.Path(tempfile.mkdtemp(prefix="bench-gpu-real-"))
    engine = get_engine()
    try:
        loaded = pm.hook.tts_load(config=config)
        facts = {"dtype": loaded.dtype, "attn": loaded.attn_implementation}
        hook = _hook_call(pm, config, folder)

        def policy_figures() -> dict[str, Any]:
            how = "pm.hook.tts_load + tts_synthesize, Device=auto (includes the WAV write)"
            run = _run(hook, frames, repeats, device)
            return _figures(
                run,
                frames,
                label=POLICY,
                how=how,
                device=loaded.device,
                load_s=loaded.load_s,
                **facts,
            )

        def batch_figures() -> dict[str, Any]:
            size = len(SEGMENTS)
            how = (
                f"pm.hook.tts_synthesize_batch({size} segments), BatchSize={size}: one generate "
                "call (includes the WAV writes)"
            )
            run = _run(_batch_call(pm, config, folder, size), frames, repeats, device)
            return _figures(run, frames, label=BATCH, how=how, batch_size=size, **facts)

        return [_guard(POLICY, policy_figures), _guard(BATCH, batch_figures)]
    finally:
        engine.release()
        shutil.rmtree(folder, ignore_errors=True)


def _graphs(path: pathlib.Path, device: str, frames: int, repeats: int) -> dict[str, Any]:
    """(d) the plugin's hooks with Backend=cuda_graphs, one text per call; its load time
    includes the graph capture. Skipped where the graphs cannot run."""
    from hookspecs import EngineConfig, plugin_manager
    from qwen3tts_plugin.devices import cuda_graphs_facts
    from qwen3tts_plugin.hooks import get_engine

    if not device.startswith("cuda"):
        return {"label": GRAPHS, "skipped": "CUDA graphs need a CUDA device"}
    if not cuda_graphs_facts()["available"]:
        return {"label": GRAPHS, "skipped": "faster-qwen3-tts 0.3.x not installed"}
    pm = plugin_manager()
    config = EngineConfig(
        provider="qwen3_tts",
        extra_params={"ModelPath": str(path), "Device": device, "Backend": "cuda_graphs"},
    )
    folder = pathlib.Path(tempfile.mkdtemp(prefix="bench-gpu-graphs-"))
    try:
        _sync(device)
        started = time.perf_counter()
        loaded = pm.hook.tts_load(config=config)
        _sync(device)
        load_s = time.perf_counter() - started
        run = _run(_hook_call(pm, config, folder, extra_frame=0), frames, repeats, device)
        return _figures(
            run,
            frames,
            label=GRAPHS,
            how="pm.hook.tts_synthesize, Backend=cuda_graphs (faster-qwen3-tts 0.3.2)",
            device=loaded.device,
            dtype=loaded.dtype,
            attn=loaded.attn_implementation,
            load_s=load_s,
            cold_start_includes="graph capture",
        )
    finally:
        get_engine().release()
        shutil.rmtree(folder, ignore_errors=True)


def run_benchmark(
    path: pathlib.Path,
    device: str = "cuda:0",
    frames: int = QUICK["frames"],
    repeats: int = QUICK["repeats"],
    official_dtype: str = "float16",
) -> dict[str, Any]:
    """Time (a), (b), (c) on ``path``; every figure, without the table rows."""
    official = _guard(OFFICIAL, lambda: _official(path, device, frames, repeats, official_dtype))
    try:
        policy, batch = _policy_and_batch(path, device, frames, repeats)
    except Exception as exc:  # noqa: BLE001 - a failed load is reported like a failed run
        policy, batch = _failed(POLICY, exc), _failed(BATCH, exc)
    graphs = _guard(GRAPHS, lambda: _graphs(path, device, frames, repeats))
    return {
        **_machine(device),
        "model": _describe(path),
        "device": device,
        "frames": frames,
        "repeats": repeats,
        "text": TEXT,
        "segments": list(SEGMENTS),
        "speaker": SPEAKER,
        "language": LANGUAGE,
        "configs": {"official": official, "policy": policy, "batch": batch, "graphs": graphs},
        "batch_speedup": _speedup(batch, policy),
        "graphs_speedup": _speedup(graphs, official),
        "eos_suppression": "the random checkpoint's codec_head row for codec EOS (2150) is zero, "
        "so EOS's logit is exactly 0, the median of the other candidates: top-k 50 sampling "
        "never draws it; max_new_tokens = frames + 1 gives exactly `frames` frames (qwen_tts "
        "0.1.1 hard-codes min_new_tokens/suppress_tokens and drops other generate kwargs)",
        "time_to_first_audio": "qwen_tts 0.1.1 has no streaming output (non_streaming_mode only "
        "changes how the text is fed): the first audio arrives with the last, so time to first "
        "audio = the call's latency; one_frame_call_s is a one-frame call, a floor for what a "
        "streaming path with the same kernels could reach",
    }


# --- the entry point ------------------------------------------------------------------------


def _speedup(batch: dict[str, Any], one_by_one: dict[str, Any]) -> float | None:
    """Audio per wall second of one configuration over another, e.g. (c) over (b): what
    sharing one generate call gains."""
    if any("error" in cfg or "skipped" in cfg for cfg in (batch, one_by_one)):
        return None
    return batch["audio_s_per_wall_s"]["median"] / one_by_one["audio_s_per_wall_s"]["median"]


def _gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


_SHORT_DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def _row(cfg: dict[str, Any]) -> str:
    """One table line: throughput, latency, one-frame latency, memory."""
    if "error" in cfg:
        return f"{cfg['label']:<24} FAILED: {cfg['error']}"
    if "skipped" in cfg:
        return f"{cfg['label']:<24} skipped: {cfg['skipped']}"
    speed = cfg["audio_s_per_wall_s"]
    spread = f"{speed['median']:.3f}x ({speed['min']:.3f}-{speed['max']:.3f})"
    return (
        f"{cfg['label']:<24} {_SHORT_DTYPES.get(cfg['dtype'], cfg['dtype']):<5}"
        f"{cfg['attn']:<17} {spread:<22} {cfg['wall_s']['median']:7.2f} s"
        f" {cfg['one_frame_call_s']['median']:6.3f} s {_gib(cfg['peak_mem_bytes']):>9}"
    )


def _produced(cfg: dict[str, Any]) -> str:
    """The distinct frame counts a configuration produced, e.g. ``8x48``."""
    if "error" in cfg:
        return "failed"
    if "skipped" in cfg:
        return "skipped"
    counts = sorted({f for call in cfg["frames_produced"] for f in call})
    items = cfg["items_per_call"]
    return ("" if items == 1 else f"{items}x") + "/".join(map(str, counts))


def rows(result: dict[str, Any]) -> list[str]:
    """Human-readable lines for the benchmark table."""
    frames, configs = result["frames"], result["configs"]
    ok = all(cfg.get("frames_ok") for cfg in configs.values() if "skipped" not in cfg)
    produced = ", ".join(f"{name} {_produced(cfg)}" for name, cfg in configs.items())
    model = result["model"]
    return [
        f"random-weight 0.6B CustomVoice (talker: {model['talker_layers']} layers x "
        f"{model['talker_hidden']}, {model['weights_gib']:.2f} GiB on disk) on {result['card']}, "
        f"torch {result['torch']}",
        f"{frames} frames ({frames / 12.5:.2f} s of audio) per segment; median (min-max) of "
        f"{result['repeats']} runs after 1 warm-up",
        f"{'config':<24} {'type':<5}{'attn':<17} {'audio s per wall s':<22}"
        f" {'TTFA':>9} {'1 frame':>8} {'peak mem':>9}",
        *(_row(cfg) for cfg in configs.values()),
        f"frames as asked: {'yes' if ok else 'NO'} ({produced}); EOS never sampled (zeroed row)",
        "TTFA = the whole call: qwen_tts 0.1.1 cannot stream audio out; 1 frame = one-frame call",
        "(c) counts all 8 segments' audio in one generate call; over (b), one text a call: "
        + (
            "failed"
            if result.get("batch_speedup") is None
            else f"batch speed-up {result['batch_speedup']:.2f}x"
        ),
        "(d) over (a), the seed's path: "
        + (
            "n/a"
            if result.get("graphs_speedup") is None
            else f"{result['graphs_speedup']:.2f}x (load includes the graph capture)"
        ),
    ]


def measure(quick: bool) -> dict[str, Any]:
    """Build (or reuse) the real-size checkpoint and time (a), (b), (c) on cuda:0."""
    plan = QUICK if quick else FULL
    started = time.perf_counter()
    path = real_size_checkpoint()
    checkpoint_s = time.perf_counter() - started
    result = run_benchmark(path, "cuda:0", plan["frames"], plan["repeats"])
    result["checkpoint_ready_s"] = checkpoint_s
    result["wall_s"] = time.perf_counter() - started
    result["rows"] = rows(result)
    return result


def _describe(path: pathlib.Path) -> dict[str, Any]:
    """The checkpoint's talker size and bytes on disk (a shrunken test build shows as such)."""
    config = path / "config.json"
    talker = (
        json.loads(config.read_text(encoding="utf-8"))["talker_config"] if config.is_file() else {}
    )
    return {
        "path": str(path),
        "talker_layers": talker.get("num_hidden_layers"),
        "talker_hidden": talker.get("hidden_size"),
        "weights_gib": folder_bytes(path) / 2**30,
    }


def _machine(device: str) -> dict[str, Any]:
    """Card, torch, CUDA and whether flash_attn imports."""
    import torch

    from qwen3tts_plugin.devices import flash_attn_available

    cuda = device.startswith("cuda")
    return {
        "card": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "flash_attn_available": flash_attn_available(),
    }


def check(path: pathlib.Path, device: str, dtype: str, frames: int) -> dict[str, Any]:
    """Load ``path`` with unmodified qwen_tts and generate ``frames`` frames once."""
    import numpy as np
    import torch

    from qwen3tts_plugin.backends.qwen_tts.runtime import import_qwen_tts

    started = time.perf_counter()
    model = import_qwen_tts().from_pretrained(
        str(path), device_map=device, dtype=getattr(torch, dtype)
    )
    load_s = time.perf_counter() - started
    torch.manual_seed(0)
    _sync(device)
    started = time.perf_counter()
    wavs, rate = model.generate_custom_voice(
        text=TEXT, speaker=SPEAKER, language=LANGUAGE, **sampling(frames)
    )
    _sync(device)
    seconds = time.perf_counter() - started
    wav = np.asarray(wavs[0])
    return {
        "path": str(path),
        "bytes": folder_bytes(path),
        "load_s": load_s,
        "generate_s": seconds,
        "frames_asked": frames,
        "frames_produced": _frames_of(wavs),
        "sample_rate": rate,
        "finite": bool(np.isfinite(wav).all()),
        "peak_abs": float(np.abs(wav).max()),
        "rms": float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.gpu_real [--shrink N] [--device D] [--dtype T] [--frames N]``:
    build (or reuse) the checkpoint, load it, generate once, print JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_real")
    parser.add_argument("--shrink", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="the dtype to load with")
    parser.add_argument("--frames", type=int, default=2)
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # banners and log lines; stdout is the JSON
        started = time.perf_counter()
        path = real_size_checkpoint(shrink=args.shrink)
        built_s = time.perf_counter() - started
        report = {"checkpoint_s": built_s, **check(path, args.device, args.dtype, args.frames)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
