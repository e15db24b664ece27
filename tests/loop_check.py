"""The stepper's fixed-shape steps against its eager loop, code for code: the GPU check runs it
on the card (captured CUDA graphs), the CPU tests run the same function here (the fixed shapes
run eagerly), so its code never meets the card untried."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

TEXTS = tuple(f"Line {i}: " + "the river bends " * (i + 1) for i in range(8))
BUDGETS = tuple(12 + 4 * i for i in range(8))
"""Each text's frame budget: on a checkpoint that never ends a text, rows end one after the
other, the slots refill and the padded row counts change as they do."""
SLOTS = 4


def first_difference(actual: list, expected: list) -> dict[str, int] | None:
    """The first text and frame where two runs' codes differ (None: the same codes)."""
    for text, (a, b) in enumerate(zip(actual, expected, strict=True)):
        if a.shape != b.shape:
            return {"text": text, "frame": min(a.shape[0], b.shape[0])}
        rows = (a != b).any(dim=1).nonzero()
        if len(rows):
            return {"text": text, "frame": int(rows[0])}
    return None


def graphs_against_eager(path: Path, device: str, dtype: str) -> dict[str, Any]:
    """Speak ``TEXTS`` (greedy, ``BUDGETS``, ``SLOTS`` at once) on one loaded model three
    ways: the fixed-shape steps as the device runs them (captured as CUDA graphs on CUDA),
    the same fixed shapes run eagerly (the same kernels and shapes, so the graphs must give
    exactly their codes), and the eager loop (exact shapes: other kernels may round
    otherwise). Asserts that no text failed and every text got its frames (``path`` must
    never end a text); returns the second run's time of each and where the codes first
    differ."""
    import torch

    from hookspecs import GenerationParams
    from qwen3tts_plugin.backends import Batch
    from qwen3tts_plugin.backends.stepper.backend import StepperBackend
    from qwen3tts_plugin.devices import DevicePlan
    from qwen3tts_plugin.voices import VoicePlan

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    plan = DevicePlan.named(device, "stepper", dtype=dtype, why="graphs against eager")
    static = StepperBackend.load(path, plan)
    static.static_steps = True
    fixed = StepperBackend(static.model, plan)
    fixed.static_steps, fixed.capture_graphs = True, False
    eager = StepperBackend(static.model, plan)
    eager.static_steps = False
    each = tuple(GenerationParams(do_sample=False, max_new_tokens=n) for n in BUDGETS)
    voice = VoicePlan("custom_voice", "auto", "vivian")
    batch = Batch(TEXTS, (voice,) * len(TEXTS), each[0], each=each, slots=SLOTS)
    try:
        seconds, codes = {}, {}
        for name, backend in (("graphs", static), ("fixed", fixed), ("eager", eager)):
            backend.codes(batch)  # the first run captures (graphs) or warms up (eager)
            sync()
            started = time.perf_counter()
            codes[name] = backend.codes(batch)
            sync()
            seconds[name] = time.perf_counter() - started
        assert eager.stepper(SLOTS).static is None
        for name, made in codes.items():
            failed = [c for c in made if not isinstance(c, torch.Tensor)]
            assert not failed, f"{name}: {failed[0]}"
            assert [c.shape[0] for c in made] == [n - 1 for n in BUDGETS], name
        return {
            "device": device,
            "dtype": dtype,
            **{f"{name}_s": round(value, 3) for name, value in seconds.items()},
            "frames": sum(BUDGETS) - len(BUDGETS),
            "shapes": static.stepper(SLOTS).static.shapes(),
            "captures": getattr(static.stepper(SLOTS).static.capture, "captured", 0),
            "graphs_vs_fixed": first_difference(codes["graphs"], codes["fixed"]),
            "graphs_vs_eager": first_difference(codes["graphs"], codes["eager"]),
        }
    finally:
        eager.release()
        fixed.release()
        static.release()
