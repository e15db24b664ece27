"""``python -m benchmarks run [--quick] [--json OUT]``: every figure, one table, one JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUICK: dict[str, Any] = {
    "reg": 5,
    "overhead": 5,
    "tokens": 8,
    "cached": 200,
    "threads": 16,
    "calls": 4,
    "conc_tokens": 4,
    "cold": 1,
    "dub": 1,
    "dub_tokens": 8,
    "sweep_texts": 16,
    "sweep_sizes": (1, 8, 16),
    "long": 1,
    "long_tokens": 8,
    "stepper": 0,
    "streaming": 0,
}
FULL: dict[str, Any] = {
    "reg": 15,
    "overhead": 15,
    "tokens": 16,
    "cached": 2000,
    "threads": 16,
    "calls": 4,
    "conc_tokens": 8,
    "cold": 3,
    "dub": 3,
    "dub_tokens": 16,
    "sweep_texts": 32,
    "sweep_sizes": (1, 2, 4, 8, 16, 32),
    "long": 3,
    "long_tokens": 16,
    "stepper": 1,
    "streaming": 3,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run every benchmark and print a table")
    run.add_argument("--quick", action="store_true", help="fewer repeats (under 3 minutes)")
    run.add_argument("--json", type=Path, help="also write the results here")
    run.add_argument(
        "--real",
        action="store_true",
        help="also the stepper, streaming and the CPU precisions (fp32 vs bf16) on the"
        " real-size random 0.6B model on the CPU (builds a 2 GB checkpoint once; about 20"
        " minutes on 2 cores)",
    )
    args = parser.parse_args(argv)
    _quiet_logs()
    results = run_all(QUICK if args.quick else FULL, real=args.real)
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def run_all(p: dict[str, Any], real: bool = False) -> dict[str, Any]:
    from qwen3tts_plugin.testing import tiny_checkpoint

    from . import (
        batch_sizes,
        cold_start,
        cpu_precision,
        dubbing,
        gpu,
        long_text,
        per_call,
        registration,
        runaway,
        stepper,
        stepper_real,
        streaming,
    )

    started = time.perf_counter()
    model_dir = tiny_checkpoint("custom_voice")
    results: dict[str, Any] = {"machine": machine()}
    results["registration"] = registration.run(p["reg"])
    results["per_call_overhead"] = per_call.overhead(model_dir, p["overhead"], p["tokens"])
    results["cached_load"] = per_call.cached_load(model_dir, p["cached"])
    results["concurrency"] = per_call.concurrency(
        model_dir, p["threads"], p["calls"], p["conc_tokens"]
    )
    results["dub"] = dubbing.run(model_dir, p["dub"], p["dub_tokens"])
    results["batch_sizes"] = batch_sizes.run(
        model_dir, texts=p["sweep_texts"], sizes=p["sweep_sizes"]
    )
    results["long_text"] = long_text.run(model_dir, p["long"], p["long_tokens"])
    results["cold_start"] = cold_start.run(model_dir, p["cold"], p["tokens"])
    results["gpu"] = gpu.run(quick=p is QUICK)
    if p["stepper"]:
        results["stepper"] = stepper.run(model_dir, p["stepper"])
    if p["streaming"]:
        results["streaming"] = streaming.run(model_dir, p["streaming"], real=real)
    if p is not QUICK:
        results["runaway"] = {"tiny": runaway.tiny()}
    if real:
        results["stepper_real"] = {
            "speed": stepper_real.speed(2),
            "memory": stepper_real.memory(stepper_real.MEMORY_FRAMES),
        }
        results["cpu_precision"] = cpu_precision.run(2)
    results["wall_s"] = time.perf_counter() - started
    return results


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def render(r: dict[str, Any]) -> str:
    from . import batch_sizes, cpu_precision, long_text, runaway, stepper, stepper_real, streaming

    def ms(t: dict[str, float]) -> str:
        return f"{t['median'] * 1e3:8.2f} ms  (min {t['min'] * 1e3:.2f}, max {t['max'] * 1e3:.2f})"

    def sec(t: dict[str, float]) -> str:
        return f"{t['median']:8.2f} s   (min {t['min']:.2f}, max {t['max']:.2f})"

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"

    reg, ovh, cache = r["registration"], r["per_call_overhead"], r["cached_load"]
    conc, cold, dub = r["concurrency"], r["cold_start"]["phases"], r["dub"]
    m = r["machine"]
    lines = [
        f"machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, GPU {m['cuda']}",
        "",
        "1. registration (fresh interpreter)",
        f"   import pluggy, pydantic, structlog   {ms(reg['baseline'])}",
        f"   the same + hookspecs.plugin_manager() {ms(reg['plugin_manager'])}",
        f"   extra                                 {reg['extra_s'] * 1e3:8.2f} ms  target < 30 ms:"
        f" {ok(reg['met'])}; heavy modules imported: {reg['heavy_imported'] or 'none'}",
        f"2. per call ({ovh['max_new_tokens']} frames, tiny custom_voice, CPU)",
        f"   pm.hook.tts_synthesize               {ms(ovh['hook'])}",
        f"   qwen_tts + soundfile.write            {ms(ovh['direct'])}",
        f"   ratio                                 {ovh['ratio']:8.3f}     target <= 1.03:"
        f" {ok(ovh['met'])} ({ovh['overhead_ms']:+.2f} ms)",
        "3. cached tts_load",
        f"   pm.hook.tts_load (unchanged)          {ms(cache['timing'])}  target < 1 ms:"
        f" {ok(cache['met'])}; cached={cache['all_cached']}",
        f"4. concurrency ({conc['threads']} threads x {conc['calls_per_thread']} unseeded calls,"
        f" {conc['max_new_tokens']} frames)",
        f"   in a row {conc['sequential_s']:.2f} s, concurrent {conc['concurrent_s']:.2f} s:"
        f" {conc['throughput_ratio']:.2f}x the throughput (mean batch"
        f" {conc['mean_batch_size']:.1f}), errors {conc['errors']}, loads {conc['loads']};"
        f" target >= {conc['target_ratio']:.0f}x: {ok(conc['met'])}",
        "5. cold start (fresh process, first synthesis)",
    ]
    for phase in ("registration_s", "imports_and_probe_s", "load_s", "synth_s", "total_s"):
        t = cold[phase]
        lines.append(
            f"   {phase:<36} {t['median']:8.3f} s  (min {t['min']:.3f}, max {t['max']:.3f})"
        )
    lines += [
        f"6. dub of {dub['segments']} segments ({dub['max_new_tokens']} frames max, unseeded)",
        f"   batch size {dub['batch_size']} (engine auto)        {sec(dub['batched'])}",
        f"   --batch-size 1                       {sec(dub['one_by_one'])}",
        f"   ratio                                {dub['ratio']:8.2f}x    target >="
        f" {dub['target_ratio']:.0f}x: {ok(dub['met'])}",
        f"7. texts per generate call (tiny, greedy, {r['batch_sizes']['frames']} frames)",
        *("   " + row for row in batch_sizes.rows(r["batch_sizes"])),
        "8. a long narration (tiny, greedy, CPU)",
        *("   " + row for row in long_text.rows(r["long_text"])),
        "9. GPU",
    ]
    gpu = r["gpu"]
    if gpu.get("skipped"):
        lines.append(f"   skipped: {gpu['skipped']}")
    else:
        for row in gpu["rows"]:
            lines.append("   " + row)
    lines.append("10. our decode loop (Backend=stepper) beside qwen_tts's")
    if "stepper" in r:
        lines += ["   " + row for row in stepper.rows(r["stepper"])]
    else:
        lines.append("   skipped (--quick)")
    if "stepper_real" in r:
        lines += ["   " + row for row in stepper_real.rows(r["stepper_real"])]
    lines.append("11. streaming (tts_synthesize_stream) beside the same request not streamed")
    if "streaming" in r:
        lines += ["   " + row for row in streaming.rows(r["streaming"])]
    else:
        lines.append("   skipped (--quick)")
    lines.append("12. the CPU path: fp32, bf16 and int8 weights (Quantization=int8), the codec")
    if "cpu_precision" in r:
        lines += ["   " + row for row in cpu_precision.rows(r["cpu_precision"])]
    else:
        lines.append("   skipped (without --real)")
    lines.append("13. a line whose end never comes: the frame bound from its text (FrameBound)")
    if "runaway" in r:
        lines += ["   " + row for row in runaway.rows(r["runaway"])]
    else:
        lines.append("   skipped (--quick)")
    lines.append(f"\nwall time {r['wall_s']:.1f} s")
    return "\n".join(lines)


def _quiet_logs() -> None:
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
    )
    logging.getLogger("transformers").setLevel(logging.ERROR)


if __name__ == "__main__":
    sys.exit(main())
