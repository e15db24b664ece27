"""7. Dubbing a script: example_host's dub of 32 segments, batched against one call each.

The dub runs in-process through the hooks, as ``python -m example_host dub`` does: segments go
through ``tts_synthesize_batch``, ``LoadResult.batch_size`` at a time (the engine's auto choice
for the device), against ``--batch-size 1`` (BatchSize=1: one generate call per segment).
Unseeded, so segments may share generate calls; each run writes into a fresh folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hookspecs import EngineConfig, GenerationParams, Voice, plugin_manager

from .stats import interleaved

SEGMENTS = 32
TARGET_RATIO = 3.0
PROSE = (
    "the river bends twice before it reaches the old mill where the water turns slow and dark "
    "and every spring the villagers carry their boats down the stone stairs"
)
WORDS = PROSE.split(" ")


def script(count: int = SEGMENTS) -> str:
    """``count`` narration lines of 3 to 20 words, as a dub script file holds them."""
    return "\n".join(
        " ".join(WORDS[(n * 7) % 10 : (n * 7) % 10 + 3 + (n * 5) % 18]).capitalize() + "."
        for n in range(count)
    )


def run(model_dir: Path, repeats: int, max_new_tokens: int) -> dict[str, Any]:
    """Median wall time of the dub at the engine's batch size and at batch size 1."""
    from example_host.dubbing import dub
    from example_host.scripts import parse_lines

    pm = plugin_manager()
    segments = parse_lines(script())
    generation = GenerationParams(max_new_tokens=max_new_tokens, allow_cut=True)
    root = Path(tempfile.mkdtemp(prefix="bench-dub-"))
    runs = {"count": 0}

    def config(batch_size: int | None) -> EngineConfig:
        extra = {"ModelPath": str(model_dir)}
        if batch_size is not None:
            extra["BatchSize"] = batch_size
        return EngineConfig(provider="qwen3_tts", extra_params=extra)

    auto = pm.hook.tts_load(config=config(None)).batch_size
    sizes: dict[str, set[int]] = {"batched": set(), "one_by_one": set()}

    def dub_with(name: str, batch_size: int | None) -> None:
        runs["count"] += 1
        out_dir = root / f"{name}-{runs['count']}"
        report = dub(
            pm,
            config(batch_size),
            segments,
            out_dir,
            generation,
            voice=Voice(),
            batch_size=batch_size or auto,
        )
        if report.ok != len(segments):
            raise RuntimeError(f"dub failed: {report.failures[:1]}")
        sizes[name].update(entry["batch_size"] for entry in _entries(out_dir))
        shutil.rmtree(out_dir)

    try:
        timings = interleaved(
            {
                "batched": lambda: dub_with("batched", None),
                "one_by_one": lambda: dub_with("one_by_one", 1),
            },
            n=repeats,
            warmup=1,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = timings["one_by_one"].median / timings["batched"].median
    return {
        "segments": len(segments),
        "max_new_tokens": max_new_tokens,
        "batch_size": auto,
        "batched": timings["batched"].as_dict(),
        "one_by_one": timings["one_by_one"].as_dict(),
        "batch_sizes_seen": {name: sorted(seen) for name, seen in sizes.items()},
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
    }


def _entries(out_dir: Path) -> list[dict[str, Any]]:
    import json

    from example_host.dubbing import MANIFEST

    return json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))["segments"]
