"""Repeated timings summarised as median, min and max."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Seconds over repeated runs (after warm-up)."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def print_results(results: dict[str, Any], json_path: Path | None) -> None:
    """A benchmark's results as JSON on stdout, and in ``json_path`` when given."""
    text = json.dumps(results, indent=2)
    print(text)
    if json_path:
        json_path.write_text(text + "\n")


def repeat(fn: Callable[[], Any], n: int, warmup: int = 1) -> Timing:
    """Time ``fn`` ``n`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return Timing.of(samples)


def interleaved(fns: dict[str, Callable[[], Any]], n: int, warmup: int = 1) -> dict[str, Timing]:
    """Time several functions in alternation, so machine noise falls on all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    return {name: Timing.of(values) for name, values in samples.items()}
