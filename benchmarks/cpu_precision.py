"""The CPU path in float32 and bfloat16, side by side, on the real-size random 0.6B model.

``python -m benchmarks.cpu_precision [--repeats 2] [--skip-quality] [--json OUT]``

1. **Through the batch hook**: 8 texts x 13 frames in one ``pm.hook.tts_synthesize_batch``
   call, ``Device=cpu``, ``Precision=fp32`` then ``bf16`` (the engine's default CPU backend;
   the codec float32 in both, as the results report). Target: bf16 >= 1.5x fp32 in audio
   seconds per wall second.
2. **Split**: 1, 4 and 8 texts x 13 frames through that backend's generate in both
   precisions (both models resident, taking turns), each split into the talker's layers, the
   code predictor's layers, the codec decode and the rest (``stepper_real.TimeSplit``).
3. **Codec**: the 8 rows' decode as issue 22 left it (qwen_tts's modules, each row padded to
   a multiple of 8 frames) against today's (``codec_layers``, each row at its own length), on
   the same codes. Target: >= 1.3x, samples equal to float32 rounding.
4. **Quality** (random weights, so no listening; what can be measured): the talker fed the
   same 200 frames in both precisions (teacher forcing: the inputs of one float32 greedy run),
   the share of steps where bf16's top-1 first-codebook code is float32's; and the codec's
   output SNR for the same codes: our layers against qwen_tts's modules, and the codec run in
   bfloat16 against float32 (why it stays float32).

bf16 parts are skipped, with the reason, on a CPU without native bfloat16 (AMX/AVX512-BF16).
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

from .gpu_real import LANGUAGE, SAMPLE_RATE, SAMPLES_PER_FRAME, SEGMENTS, SPEAKER
from .real_checkpoint import real_size_checkpoint
from .stats import interleaved, print_results
from .stepper_real import batch, split_for

PRECISIONS = {"float32": "fp32", "bfloat16": "bf16"}
"""The dtypes compared, and the Precision setting that asks for each."""
FRAMES = 13
ROWS = (1, 4, 8)
QUALITY_STEPS = 200
HOOK_TARGET = 1.5
CODEC_TARGET = 1.3


def bf16_skipped() -> str | None:
    """Why the bf16 parts cannot run here, or None."""
    from qwen3tts_plugin.devices import acceleration_status, cpu_bf16_native

    if cpu_bf16_native(acceleration_status()):
        return None
    return "this CPU does not compute bfloat16 natively (no AMX or AVX512-BF16)"


def dtypes() -> list[str]:
    return list(PRECISIONS) if bf16_skipped() is None else ["float32"]


def audio_seconds(rows: int, frames: int = FRAMES) -> float:
    return rows * frames * SAMPLES_PER_FRAME / SAMPLE_RATE


# --- 1. through the batch hook ----------------------------------------------------------------


def hook_batch(repeats: int, rows: int = 8) -> dict[str, Any]:
    """``rows`` texts x ``FRAMES`` frames through ``tts_synthesize_batch``, per precision."""
    from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, Voice, plugin_manager

    pm = plugin_manager()
    folder = Path(tempfile.mkdtemp(prefix="cpu-precision-"))
    results: dict[str, Any] = {"rows": rows, "frames": FRAMES}
    for dtype in dtypes():
        config = EngineConfig(
            provider="qwen3_tts",
            extra_params={
                "ModelPath": str(real_size_checkpoint()),
                "Device": "cpu",
                "Precision": PRECISIONS[dtype],
                "BatchSize": rows,
            },
        )

        def requests(frames: int, config=config) -> list[SynthesisRequest]:
            return [
                SynthesisRequest(
                    config=config,
                    text=SEGMENTS[index % len(SEGMENTS)],
                    out_path=folder / f"{index}.wav",
                    voice=Voice(speaker=SPEAKER, language=LANGUAGE),
                    generation=GenerationParams(max_new_tokens=frames + 1, allow_cut=True),
                )
                for index in range(rows)
            ]

        pm.hook.tts_load(config=config)
        pm.hook.tts_synthesize_batch(requests=requests(2))  # warm-up
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            items = pm.hook.tts_synthesize_batch(requests=requests(FRAMES))
            seconds.append(time.perf_counter() - started)
            failed = [item.error for item in items if item.error is not None]
            if failed:
                raise RuntimeError(f"{len(failed)} texts failed: {failed[0]}")
        result = items[0].result
        best = min(seconds)
        results[dtype] = {
            "total_s": round(best, 2),
            "audio_per_wall_s": round(audio_seconds(rows) / best, 3),
            "dtype": result.dtype,
            "codec_dtype": result.codec_dtype,
            "backend": result.backend,
        }
    if "bfloat16" in results:
        results["bf16_vs_fp32"] = round(
            results["float32"]["total_s"] / results["bfloat16"]["total_s"], 2
        )
    return results


# --- 2. the time split ------------------------------------------------------------------------


def loaded() -> dict[str, Any]:
    """The engine's default CPU backend, loaded in each precision."""
    from qwen3tts_plugin.backends import backend_class
    from qwen3tts_plugin.devices import DevicePlan, acceleration_status, decide
    from qwen3tts_plugin.settings import parse_settings

    default = decide(parse_settings({"Device": "cpu"}), acceleration_status()).backend
    backends = {}
    for dtype in dtypes():
        plan = DevicePlan.named("cpu", default, dtype=dtype, why="benchmark")
        backends[dtype] = backend_class(default).load(real_size_checkpoint(), plan)
    return backends


def split(backends: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Each batch size in each precision, the precisions taking turns; the best run each."""
    splits = {
        dtype: split_for(backend.model, backend if backend.name == "stepper" else None)
        for dtype, backend in backends.items()
    }
    for backend in backends.values():
        backend.generate(batch(2))  # warm-up
    results: dict[str, Any] = {}
    for rows in ROWS:
        work = batch(FRAMES, rows)
        runs: dict[str, list[dict[str, float]]] = {dtype: [] for dtype in backends}
        for _ in range(repeats):
            for dtype, backend in backends.items():
                timer = splits[dtype]
                timer.reset()
                started = time.perf_counter()
                waveforms = backend.generate(work)
                total = time.perf_counter() - started
                if [len(w) // SAMPLES_PER_FRAME for w in waveforms] != [FRAMES] * rows:
                    raise RuntimeError(f"{dtype}: not {FRAMES} frames a text")
                parts = {name: round(value, 2) for name, value in timer.totals.items()}
                parts["rest_s"] = round(total - sum(timer.totals.values()), 2)
                runs[dtype].append({"total_s": round(total, 2), **parts})
        results[str(rows)] = {
            dtype: {
                **(best := min(measured, key=lambda run: run["total_s"])),
                "real_time_factor": round(audio_seconds(rows) / best["total_s"], 3),
            }
            for dtype, measured in runs.items()
        }
    for timer in splits.values():
        timer.remove()
    return results


# --- 3. the codec -----------------------------------------------------------------------------


def snr_db(reference, other) -> float:
    """Signal-to-noise ratio of ``other`` against ``reference``, in dB."""
    import numpy as np

    noise = float(((reference - other) ** 2).sum())
    return float("inf") if noise == 0 else 10 * float(np.log10((reference**2).sum() / noise))


def codec(backend: Any, repeats: int, rows: int = 8) -> dict[str, Any]:
    """``rows`` rows of ``FRAMES`` frames decoded as before and as now, taking turns."""
    import numpy as np
    import torch

    from qwen3tts_plugin.backends.stepper.codec import CodecDecoder, pad_to_bucket

    tokenizer = backend.model.model.speech_tokenizer
    before, now = CodecDecoder(tokenizer, own_layers=False), CodecDecoder(tokenizer)
    generator = torch.Generator().manual_seed(0)
    codes = [torch.randint(0, 2048, (FRAMES, 16), generator=generator) for _ in range(rows)]
    timings = interleaved(
        {
            "before": lambda: [before.decode(pad_to_bucket(c)) for c in codes],
            "now": lambda: [now.decode(c) for c in codes],
        },
        repeats,
    )
    old = np.concatenate([before.decode(pad_to_bucket(c)) for c in codes])
    new = np.concatenate([now.decode(c) for c in codes])
    return {
        "rows": rows,
        "frames": FRAMES,
        "before_s": round(timings["before"].min, 3),
        "now_s": round(timings["now"].min, 3),
        "speedup": round(timings["before"].min / timings["now"].min, 2),
        "max_abs_diff": float(np.abs(old - new).max()),
        "snr_db": round(snr_db(old, new), 1),
        "own_layers": now.own_layers,
    }


# --- 4. quality -------------------------------------------------------------------------------


def teacher_inputs(backend: Any, steps: int):
    """The talker's inputs [1, prompt + steps, D] during one float32 greedy run."""
    import torch

    from hookspecs import GenerationParams
    from qwen3tts_plugin.backends import Batch
    from qwen3tts_plugin.voices import VoicePlan

    captured = []

    def record(module, args, kwargs) -> None:
        captured.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

    layer = backend.model.model.talker.model.layers[0]
    handle = layer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        params = GenerationParams(max_new_tokens=steps + 1, do_sample=False, allow_cut=True)
        voice = VoicePlan("custom_voice", "english", SPEAKER)
        backend.generate(Batch((SEGMENTS[0],), (voice,), params))
    finally:
        handle.remove()
    return torch.cat(captured, dim=1), captured[0].shape[1]


def talker_top1(model: Any, inputs, prompt: int):
    """The talker's top-1 first-codebook code after each teacher-forced position."""
    import torch

    talker = model.model.talker
    positions = torch.arange(inputs.shape[1]).view(1, 1, -1).expand(3, 1, -1)
    with torch.inference_mode():
        hidden = talker.model(
            inputs_embeds=inputs.to(talker.dtype), position_ids=positions, use_cache=False
        ).last_hidden_state
        logits = talker.codec_head(hidden[:, prompt - 1 :]).float()[0]
    return logits.argmax(-1), logits


def quality(backends: dict[str, Any], steps: int = QUALITY_STEPS) -> dict[str, Any]:
    """Teacher-forced top-1 agreement and the codec's SNRs (see the module's docstring)."""
    import torch
    from qwen_tts import Qwen3TTSTokenizer

    from qwen3tts_plugin.backends.stepper.codec import CodecDecoder

    results: dict[str, Any] = {"steps": steps}
    if "bfloat16" in backends:
        inputs, prompt = teacher_inputs(backends["float32"], steps)
        top32, logits32 = talker_top1(backends["float32"].model, inputs, prompt)
        top16, logits16 = talker_top1(backends["bfloat16"].model, inputs, prompt)
        top32, top16 = top32[:steps], top16[:steps]
        scale = float(logits32.std())
        results["talker"] = {
            "top1_agreement": round(float((top32 == top16).float().mean()), 3),
            "mean_abs_logit_diff_over_std": round(
                float((logits32 - logits16).abs().mean()) / scale, 3
            ),
        }
    tokenizer = backends["float32"].model.model.speech_tokenizer
    generator = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 2048, (64, 16), generator=generator)
    reference = CodecDecoder(tokenizer, own_layers=False).decode(codes)
    own = CodecDecoder(tokenizer).decode(codes)
    results["codec_own_layers_snr_db"] = round(snr_db(reference, own), 1)
    half = Qwen3TTSTokenizer.from_pretrained(
        str(real_size_checkpoint() / "speech_tokenizer"), device_map="cpu", dtype=torch.bfloat16
    )
    results["codec_in_bf16_snr_db"] = round(
        snr_db(reference, CodecDecoder(half, own_layers=False).decode(codes)), 1
    )
    return results


# --- the whole run ----------------------------------------------------------------------------


def run(repeats: int = 2, with_quality: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {"bf16_skipped": bf16_skipped()}
    results["hook"] = hook_batch(repeats)
    from qwen3tts_plugin.hooks import get_engine

    get_engine().release()  # the engine's model out of memory before the split's two
    backends = loaded()
    results["split"] = split(backends, repeats)
    results["codec"] = codec(backends["float32"], repeats)
    if with_quality:
        results["quality"] = quality(backends)
    return results


def rows(results: dict[str, Any]) -> list[str]:
    """The figures as table rows (``python -m benchmarks run --real``)."""
    hook, codec_figures = results["hook"], results["codec"]
    lines = [f"real-size 0.6B on the CPU, {hook['rows']} texts x {hook['frames']} frames:"]
    if results["bf16_skipped"]:
        lines.append(f"  bf16 skipped: {results['bf16_skipped']}")
    for dtype in PRECISIONS:
        if dtype in hook:
            run_ = hook[dtype]
            lines.append(
                f"  batch hook {PRECISIONS[dtype]}: {run_['total_s']:.2f} s,"
                f" {run_['audio_per_wall_s']} s of audio per second (model {run_['dtype']},"
                f" codec {run_['codec_dtype']}, {run_['backend']})"
            )
    if "bf16_vs_fp32" in hook:
        met = "met" if hook["bf16_vs_fp32"] >= HOOK_TARGET else "NOT met"
        lines.append(f"  bf16 vs fp32 {hook['bf16_vs_fp32']}x (target >= {HOOK_TARGET}x: {met})")
    for size, by_dtype in results["split"].items():
        for dtype, run_ in by_dtype.items():
            lines.append(
                f"  {size} x {FRAMES} {PRECISIONS[dtype]}: {run_['total_s']:6.2f} s = talker"
                f" {run_['talker_s']:.2f} + predictor {run_['predictor_s']:.2f} + codec"
                f" {run_['codec_s']:.2f} + rest {run_['rest_s']:.2f}"
                f" ({run_['real_time_factor']}x real time)"
            )
    met = "met" if codec_figures["speedup"] >= CODEC_TARGET else "NOT met"
    lines.append(
        f"  codec, {codec_figures['rows']} rows x {codec_figures['frames']} frames:"
        f" {codec_figures['before_s']:.2f} s before, {codec_figures['now_s']:.2f} s now,"
        f" {codec_figures['speedup']}x (target >= {CODEC_TARGET}x: {met}); max |diff|"
        f" {codec_figures['max_abs_diff']:.1e}, SNR {codec_figures['snr_db']} dB"
    )
    quality_figures = results.get("quality")
    if quality_figures:
        talker = quality_figures.get("talker")
        if talker:
            lines.append(
                f"  talker top-1 agreement bf16 vs fp32 over {quality_figures['steps']} teacher-"
                f"forced steps: {talker['top1_agreement']:.1%} (mean |logit diff|"
                f" {talker['mean_abs_logit_diff_over_std']} std)"
            )
        lines.append(
            f"  codec SNR: our layers {quality_figures['codec_own_layers_snr_db']} dB;"
            f" codec in bf16 {quality_figures['codec_in_bf16_snr_db']} dB (so it stays fp32)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_precision")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = run(args.repeats, with_quality=not args.skip_quality)
    print_results(results, args.json)
    print("\n".join(rows(results)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
