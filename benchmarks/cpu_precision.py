"""The CPU path in float32, bfloat16 and with int8 weights, side by side, on the real-size
random 0.6B model.

``python -m benchmarks.cpu_precision [--repeats 2] [--skip-quality] [--skip-dub] [--json OUT]``

The variants: ``fp32`` (``Precision=fp32``, the CPU's default), ``bf16`` (``Precision=bf16``)
and ``int8`` (``Quantization=int8``: the talker's and code predictor's layers with int8
weights, the rest float32); the codec float32 in all. They take turns in every repeat.

1. **Through the hooks** (``Device=cpu``, the engine's default CPU backend): one preview (1
   text x 13 frames, ``tts_synthesize``); 8 texts x 13 frames in one ``tts_synthesize_batch``
   call; a dub's mix (24 texts of 8-24 frames in one batch-hook call) at BatchSize 8 (auto)
   and 16. Targets (issue 34): the preview int8 >= 2.5x fp32 and >= 1.6x bf16; the dub int8
   >= 2x fp32 and no slower than bf16.
2. **Split**: 1, 4 and 8 texts x 13 frames through that backend's generate in each variant
   (all resident), each split into the talker's layers, the code predictor's layers, the
   codec decode and the rest (``stepper_real.TimeSplit``).
3. **Codec**: the 8 rows' decode as issue 22 left it (qwen_tts's modules, each row padded to
   a multiple of 8 frames) against today's (``codec_layers``, each row at its own length), on
   the same codes. Target: >= 1.3x, samples equal to float32 rounding.
4. **Quality** (random weights, so no listening; what can be measured), on the real-size
   model and on the published configuration shrunk 4x: the talker and the code predictor fed
   the inputs of one float32 greedy run (teacher forcing), the share of steps where each
   variant's top-1 code is float32's (the talker's first codebook; the predictor's 15); the
   same run left free (greedy from the same prompt): the share of frames whose 16 codes are
   float32's and the SNR of the audio; the codec's output SNR for the same codes: our layers
   against qwen_tts's modules, the codec of the int8 model (untouched: identical), and the
   codec run in bfloat16 against float32 (why it stays float32), and two unrelated code
   sequences against each other (the random codec's floor: its output hardly depends on its
   codes, so a free run's SNR says little). Target: int8's top-1 >= 90 %.

Variants this CPU cannot run (bf16 without AMX/AVX512-BF16, int8 without int8 kernels) are
skipped, with the reason.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .gpu_real import LANGUAGE, SAMPLE_RATE, SAMPLES_PER_FRAME, SEGMENTS, SPEAKER
from .real_checkpoint import real_size_checkpoint
from .stats import interleaved, print_results
from .stepper_real import batch, split_for


@dataclass(frozen=True)
class Variant:
    """One way of running the model on the CPU: its settings and what they load."""

    settings: dict[str, str]
    dtype: str
    quantization: str = "none"


VARIANTS = {
    "fp32": Variant({"Precision": "fp32"}, "float32"),
    "bf16": Variant({"Precision": "bf16"}, "bfloat16"),
    "int8": Variant({"Precision": "fp32", "Quantization": "int8"}, "float32", "int8"),
}
"""The variants compared, by name; fp32 is the reference every other is measured against."""
FRAMES = 13
ROWS = (1, 4, 8)
DUB_TEXTS = 24
DUB_FRAMES = (8, 24)
DUB_BATCH_SIZES = (8, 16)
QUALITY_STEPS = 200
QUALITY_SHRINK = 4
HOOK_TARGET = 1.5
"""bf16 over fp32 for 8 x 13 through the batch hook (issue 23)."""
PREVIEW_TARGETS = {"fp32": 2.5, "bf16": 1.6}
"""int8's speed-up over each variant for one preview (issue 34)."""
DUB_TARGETS = {"fp32": 2.0, "bf16": 1.0}
"""int8's speed-up over each variant for the dub's mix (issue 34)."""
TOP1_TARGET = 0.9
CODEC_TARGET = 1.3


def skipped() -> dict[str, str]:
    """The variants this CPU cannot run, and why."""
    from qwen3tts_plugin.devices import acceleration_status, cpu_bf16_native, cpu_int8

    status = acceleration_status()
    reasons = {}
    if not cpu_bf16_native(status):
        reasons["bf16"] = "this CPU does not compute bfloat16 natively (no AMX or AVX512-BF16)"
    if not cpu_int8(status):
        reasons["int8"] = "torch's int8 kernels do not run on this CPU"
    return reasons


def variants() -> list[str]:
    """The variants this CPU runs, fp32 first."""
    missing = skipped()
    return [name for name in VARIANTS if name not in missing]


def audio_seconds(rows: int, frames: int = FRAMES) -> float:
    return rows * frames * SAMPLES_PER_FRAME / SAMPLE_RATE


def dub_frames(index: int) -> int:
    """Frames of the dub's text ``index``: spread over DUB_FRAMES, mixed in order."""
    low, high = DUB_FRAMES
    return low + (index * 7) % (high - low + 1)


# --- 1. through the hooks ---------------------------------------------------------------------


def config_for(name: str, batch_size: int | str = "auto"):
    from hookspecs import EngineConfig

    extra = {
        "ModelPath": str(real_size_checkpoint()),
        "Device": "cpu",
        "BatchSize": batch_size,
        **VARIANTS[name].settings,
    }
    return EngineConfig(provider="qwen3_tts", extra_params=extra)


def requests_for(config, folder: Path, frames: list[int]):
    """One request per entry of ``frames``, each cut at that many frames (the random model
    never ends a text)."""
    from hookspecs import GenerationParams, SynthesisRequest, Voice

    return [
        SynthesisRequest(
            config=config,
            text=SEGMENTS[index % len(SEGMENTS)],
            out_path=folder / f"{index}.wav",
            voice=Voice(speaker=SPEAKER, language=LANGUAGE),
            generation=GenerationParams(max_new_tokens=count + 1, allow_cut=True),
        )
        for index, count in enumerate(frames)
    ]


HOOK_WORKLOADS = {
    "preview": ("auto", [FRAMES]),
    "batch": (8, [FRAMES] * 8),
    **{
        f"dub@{size}": (size, [dub_frames(i) for i in range(DUB_TEXTS)]) for size in DUB_BATCH_SIZES
    },
}
"""Through the hooks: name -> (BatchSize, each text's frames). One text goes through
``tts_synthesize``, more through one ``tts_synthesize_batch`` call."""


def hook_runs(repeats: int, workloads: list[str]) -> dict[str, Any]:
    """Each workload in each variant; in every round each variant is loaded once (BatchSize
    does not reload) and runs every workload, the variants taking turns. The best run of
    each; the first round warms up (two frames a text)."""
    from hookspecs import plugin_manager

    pm = plugin_manager()
    folder = Path(tempfile.mkdtemp(prefix="cpu-precision-"))
    runs = {w: {name: [] for name in variants()} for w in workloads}
    reported: dict[str, dict[str, dict[str, Any]]] = {w: {} for w in workloads}
    for repeat in range(repeats + 1):
        for name in variants():
            pm.hook.tts_load(config=config_for(name))
            for workload in workloads:
                batch_size, frames = HOOK_WORKLOADS[workload]
                config = config_for(name, batch_size)
                requests = requests_for(config, folder, frames if repeat else [2] * len(frames))
                started = time.perf_counter()
                if len(requests) == 1:
                    results_ = [pm.hook.tts_synthesize(request=requests[0])]
                else:
                    items = pm.hook.tts_synthesize_batch(requests=requests)
                    failed = [item.error for item in items if item.error is not None]
                    if failed:
                        raise RuntimeError(f"{name}: {len(failed)} texts failed: {failed[0]}")
                    results_ = [item.result for item in items]
                if repeat:
                    runs[workload][name].append(time.perf_counter() - started)
                    first = results_[0]
                    reported[workload][name] = {
                        "dtype": first.dtype,
                        "quantization": first.quantization,
                        "codec_dtype": first.codec_dtype,
                        "backend": first.backend,
                        "batch_size": max(r.batch_size for r in results_),
                    }
    results: dict[str, Any] = {}
    for workload in workloads:
        frames = HOOK_WORKLOADS[workload][1]
        audio_s = sum(frames) * SAMPLES_PER_FRAME / SAMPLE_RATE
        entry: dict[str, Any] = {"texts": len(frames), "frames": sum(frames), "audio_s": audio_s}
        for name, seconds in runs[workload].items():
            best = min(seconds)
            entry[name] = {
                "total_s": round(best, 2),
                "audio_per_wall_s": round(audio_s / best, 3),
                **reported[workload][name],
            }
        if "int8" in entry:
            for other in ("fp32", "bf16"):
                if other in entry:
                    entry[f"int8_vs_{other}"] = round(
                        entry[other]["total_s"] / entry["int8"]["total_s"], 2
                    )
        if "bf16" in entry:
            entry["bf16_vs_fp32"] = round(entry["fp32"]["total_s"] / entry["bf16"]["total_s"], 2)
        results[workload] = entry
    return results


# --- 2. the time split ------------------------------------------------------------------------


def loaded(path: Path | None = None) -> dict[str, Any]:
    """The engine's default CPU backend, loaded in each variant."""
    from qwen3tts_plugin.backends import backend_class
    from qwen3tts_plugin.devices import DevicePlan, acceleration_status, decide
    from qwen3tts_plugin.settings import parse_settings

    default = decide(parse_settings({"Device": "cpu"}), acceleration_status()).backend
    backends = {}
    for name in variants():
        variant = VARIANTS[name]
        plan = DevicePlan.named(
            "cpu", default, dtype=variant.dtype, why="benchmark", quantization=variant.quantization
        )
        backends[name] = backend_class(default).load(path or real_size_checkpoint(), plan)
    return backends


def split(backends: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Each batch size in each variant, the variants taking turns; the best run each."""
    splits = {
        name: split_for(backend.model, backend if backend.name == "stepper" else None)
        for name, backend in backends.items()
    }
    for backend in backends.values():
        backend.generate(batch(2))  # warm-up
    results: dict[str, Any] = {}
    for rows in ROWS:
        work = batch(FRAMES, rows)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in backends}
        for _ in range(repeats):
            for name, backend in backends.items():
                timer = splits[name]
                timer.reset()
                started = time.perf_counter()
                waveforms = backend.generate(work)
                total = time.perf_counter() - started
                if [len(w) // SAMPLES_PER_FRAME for w in waveforms] != [FRAMES] * rows:
                    raise RuntimeError(f"{name}: not {FRAMES} frames a text")
                parts = {key: round(value, 2) for key, value in timer.totals.items()}
                parts["rest_s"] = round(total - sum(timer.totals.values()), 2)
                runs[name].append({"total_s": round(total, 2), **parts})
        results[str(rows)] = {
            name: {
                **(best := min(measured, key=lambda run: run["total_s"])),
                "real_time_factor": round(audio_seconds(rows) / best["total_s"], 3),
            }
            for name, measured in runs.items()
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
    """The inputs of one float32 greedy run of ``steps`` frames: the talker's [1, prompt +
    steps, D], the prompt's length, and the code predictor's [steps, 16, D] (each frame's
    talker state and code embeddings, as its first layer saw them)."""
    import torch

    from hookspecs import GenerationParams
    from qwen3tts_plugin.backends import Batch
    from qwen3tts_plugin.voices import VoicePlan

    talker_seen, predictor_seen = [], []

    def recorder(seen):
        def record(module, args, kwargs) -> None:
            seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

        return record

    talker = backend.model.model.talker
    handles = [
        talker.model.layers[0].register_forward_pre_hook(recorder(talker_seen), with_kwargs=True),
        talker.code_predictor.model.layers[0].register_forward_pre_hook(
            recorder(predictor_seen), with_kwargs=True
        ),
    ]
    try:
        params = GenerationParams(max_new_tokens=steps + 1, do_sample=False, allow_cut=True)
        voice = VoicePlan("custom_voice", "english", SPEAKER)
        backend.generate(Batch((SEGMENTS[0],), (voice,), params))
    finally:
        for handle in handles:
            handle.remove()
    groups = talker.config.num_code_groups
    predictor = torch.cat(predictor_seen, dim=1)
    frames = predictor.shape[1] // groups
    predictor = predictor[0, : frames * groups].view(frames, groups, -1)
    return torch.cat(talker_seen, dim=1), talker_seen[0].shape[1], predictor[:steps]


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


def predictor_top1(model: Any, inputs):
    """The code predictor's top-1 code of each of the 15 codebooks it makes, for each
    teacher-forced frame of ``inputs`` [F, 16, D]: [F, 15]."""
    import torch

    predictor = model.model.talker.code_predictor
    with torch.inference_mode():
        hidden = predictor.model(
            inputs_embeds=inputs.to(model.model.talker.dtype), use_cache=False
        ).last_hidden_state
        codes = [
            head(hidden[:, index + 1]).float().argmax(-1)
            for index, head in enumerate(predictor.lm_head)
        ]
    return torch.stack(codes, dim=1)


def free_run(backend: Any, steps: int):
    """One text's greedy codes [steps, 16] and their audio, from the variant's own loop."""
    from hookspecs import GenerationParams
    from qwen3tts_plugin.backends import Batch
    from qwen3tts_plugin.voices import VoicePlan

    params = GenerationParams(max_new_tokens=steps + 1, do_sample=False, allow_cut=True)
    voice = VoicePlan("custom_voice", "english", SPEAKER)
    [codes] = backend.codes(Batch((SEGMENTS[0],), (voice,), params))
    return codes, backend.codec().decode(codes)


def quality(path: Path, steps: int = QUALITY_STEPS) -> dict[str, Any]:
    """Teacher-forced top-1 agreement, the free run's agreement and the codec's SNRs (see
    the module's docstring) of every variant against fp32, on the checkpoint at ``path``."""
    import torch
    from qwen_tts import Qwen3TTSTokenizer

    from qwen3tts_plugin.backends.stepper.codec import CodecDecoder

    backends = loaded(path)
    reference = backends["fp32"]
    results: dict[str, Any] = {"steps": steps, "model": path.name}
    inputs, prompt, predictor_inputs = teacher_inputs(reference, steps)
    top_talker, logits = talker_top1(reference.model, inputs, prompt)
    top_talker = top_talker[:steps]
    top_predictor = predictor_top1(reference.model, predictor_inputs)
    free_codes, free_audio = free_run(reference, steps)
    scale = float(logits.std())
    for name, backend in backends.items():
        if name == "fp32":
            continue
        talker, other_logits = talker_top1(backend.model, inputs, prompt)
        predictor = predictor_top1(backend.model, predictor_inputs)
        codes, audio = free_run(backend, steps)
        same_frames = (codes == free_codes).all(dim=1)
        diverged = int(same_frames.logical_not().nonzero()[0]) if not same_frames.all() else steps
        per_group = (predictor == top_predictor).float().mean(dim=0)
        results[name] = {
            "talker_top1": round(float((talker[:steps] == top_talker).float().mean()), 3),
            "predictor_top1": round(float(per_group.mean()), 3),
            "predictor_top1_worst_codebook": round(float(per_group.min()), 3),
            "mean_abs_logit_diff_over_std": round(
                float((logits - other_logits).abs().mean()) / scale, 3
            ),
            "free_run_same_frames": round(float(same_frames.float().mean()), 3),
            "free_run_first_other_frame": diverged,
            "free_run_snr_db": round(snr_db(free_audio, audio), 1),
            "codec_same_codes_max_abs_diff": float(
                abs(backend.codec().decode(free_codes) - free_audio).max()
            ),
        }
    tokenizer = reference.model.model.speech_tokenizer
    generator = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 2048, (64, 16), generator=generator)
    qwen_tts_decode = CodecDecoder(tokenizer, own_layers=False).decode(codes)
    own = CodecDecoder(tokenizer).decode(codes)
    results["codec_own_layers_snr_db"] = round(snr_db(qwen_tts_decode, own), 1)
    unrelated = torch.randint(0, 2048, (64, 16), generator=generator)
    results["codec_unrelated_codes_snr_db"] = round(
        snr_db(own, CodecDecoder(tokenizer).decode(unrelated)), 1
    )  # how little the random codec's output says about its codes: the free run's floor
    half = Qwen3TTSTokenizer.from_pretrained(
        str(path / "speech_tokenizer"), device_map="cpu", dtype=torch.bfloat16
    )
    results["codec_in_bf16_snr_db"] = round(
        snr_db(qwen_tts_decode, CodecDecoder(half, own_layers=False).decode(codes)), 1
    )
    for backend in backends.values():
        backend.release()
    return results


# --- the whole run ----------------------------------------------------------------------------


def run(repeats: int = 2, with_quality: bool = True, with_dub: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {"skipped": skipped(), "variants": variants()}
    workloads = [w for w in HOOK_WORKLOADS if with_dub or not w.startswith("dub")]
    results["hook"] = hook_runs(repeats, workloads)
    from qwen3tts_plugin.hooks import get_engine

    get_engine().release()  # the engine's model out of memory before the split's
    backends = loaded()
    results["split"] = split(backends, repeats)
    results["codec"] = codec(backends["fp32"], repeats)
    for backend in backends.values():
        backend.release()
    if with_quality:
        results["quality"] = {
            "real_size": quality(real_size_checkpoint()),
            f"shrunk_{QUALITY_SHRINK}x": quality(real_size_checkpoint(shrink=QUALITY_SHRINK)),
        }
    return results


def _met(value: float, target: float) -> str:
    return f"target >= {target}x: {'met' if value >= target else 'NOT met'}"


def rows(results: dict[str, Any]) -> list[str]:
    """The figures as table rows (``python -m benchmarks run --real``)."""
    lines = ["real-size 0.6B on the CPU (fp32, bf16, int8 = Quantization=int8; codec fp32):"]
    for name, reason in results["skipped"].items():
        lines.append(f"  {name} skipped: {reason}")
    for workload, entry in results["hook"].items():
        lines.append(f"  {workload}: {entry['texts']} texts, {entry['frames']} frames")
        for name in results["variants"]:
            run_ = entry[name]
            lines.append(
                f"    {name}: {run_['total_s']:.2f} s, {run_['audio_per_wall_s']} s of audio per"
                f" second (model {run_['dtype']}, {run_['quantization']}, codec"
                f" {run_['codec_dtype']}, {run_['backend']}, rows {run_['batch_size']})"
            )
        targets = PREVIEW_TARGETS if workload == "preview" else DUB_TARGETS
        for other in ("fp32", "bf16"):
            key = f"int8_vs_{other}"
            if key in entry:
                note = f" ({_met(entry[key], targets[other])})" if workload != "batch" else ""
                lines.append(f"    int8 vs {other}: {entry[key]}x{note}")
        if "bf16_vs_fp32" in entry and workload == "batch":
            lines.append(
                f"    bf16 vs fp32: {entry['bf16_vs_fp32']}x"
                f" ({_met(entry['bf16_vs_fp32'], HOOK_TARGET)})"
            )
    for size, by_variant in results["split"].items():
        for name, run_ in by_variant.items():
            lines.append(
                f"  {size} x {FRAMES} {name}: {run_['total_s']:6.2f} s = talker"
                f" {run_['talker_s']:.2f} + predictor {run_['predictor_s']:.2f} + codec"
                f" {run_['codec_s']:.2f} + rest {run_['rest_s']:.2f}"
                f" ({run_['real_time_factor']}x real time)"
            )
    codec_figures = results["codec"]
    lines.append(
        f"  codec, {codec_figures['rows']} rows x {codec_figures['frames']} frames:"
        f" {codec_figures['before_s']:.2f} s before, {codec_figures['now_s']:.2f} s now,"
        f" {codec_figures['speedup']}x ({_met(codec_figures['speedup'], CODEC_TARGET)}); max"
        f" |diff| {codec_figures['max_abs_diff']:.1e}, SNR {codec_figures['snr_db']} dB"
    )
    for model, figures in (results.get("quality") or {}).items():
        lines.append(f"  quality, {model} ({figures['model']}), {figures['steps']} steps vs fp32:")
        for name in results["variants"]:
            if name not in figures:
                continue
            q = figures[name]
            lines.append(
                f"    {name}: top-1 talker {q['talker_top1']:.1%}, predictor"
                f" {q['predictor_top1']:.1%} (worst codebook"
                f" {q['predictor_top1_worst_codebook']:.1%}; target >= {TOP1_TARGET:.0%}); mean"
                f" |logit diff| {q['mean_abs_logit_diff_over_std']}"
                f" std; free run: {q['free_run_same_frames']:.1%} frames the same (first other"
                f" frame {q['free_run_first_other_frame']}), SNR {q['free_run_snr_db']} dB; same"
                f" codes through its codec: max |diff| {q['codec_same_codes_max_abs_diff']:.1e}"
            )
        lines.append(
            f"    codec SNR: our layers {figures['codec_own_layers_snr_db']} dB; codec in bf16"
            f" {figures['codec_in_bf16_snr_db']} dB (so it stays fp32); two unrelated code"
            f" sequences {figures['codec_unrelated_codes_snr_db']} dB (the random codec's"
            f" floor: a free run's SNR above it says nothing)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_precision")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-dub", action="store_true", help="no dub-mix workloads (minutes)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = run(args.repeats, with_quality=not args.skip_quality, with_dub=not args.skip_dub)
    print_results(results, args.json)
    print("\n".join(rows(results)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
