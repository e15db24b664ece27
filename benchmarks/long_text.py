"""8. A long narration: one call that the engine splits into pieces, against the same pieces
sent by hand as single calls; and refusing a text over MaxChars.

Chinese and English mixed, about 3,000 characters, in paragraphs. Both arms speak exactly the
same pieces (``qwen3tts_plugin.text.split_pieces`` at the default PieceChars) with the same
fixed frame budget, greedy, ``allow_cut`` (a fixed workload, not a narration judged by ear).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, TtsError, plugin_manager

from .stats import interleaved

CHARS = 3_000
TARGET_PIECES = 10
TARGET_RATIO = 2.0
REFUSE_CHARS = 210_000
TARGET_REFUSE_S = 0.050

CHINESE = "今天我们来讲一个关于河流的故事。它从山里流出来，经过村庄和城市，最后流进大海！"
ENGLISH = (
    "The river bends twice before the old mill. Nobody remembers who built it; the stones "
    "are older than the town."
)


def narration(chars: int = CHARS) -> str:
    """Mixed Chinese and English paragraphs, at least ``chars`` characters."""
    paragraphs: list[str] = []
    while len("\n\n".join(paragraphs)) < chars:
        paragraphs.append(f"{CHINESE}{ENGLISH} {CHINESE}")
    return "\n\n".join(paragraphs)


def run(model_dir: Path, repeats: int, max_new_tokens: int) -> dict[str, Any]:
    """Median wall time of one call against the same pieces one call each; pieces per second;
    time and memory to refuse 210,000 characters."""
    from qwen3tts_plugin.settings import DEFAULT_PIECE_CHARS
    from qwen3tts_plugin.text import split_pieces

    pm = plugin_manager()
    text = narration()
    pieces = [piece.text for piece in split_pieces(text, DEFAULT_PIECE_CHARS)]
    config = EngineConfig(
        provider="qwen3_tts", extra_params={"ModelPath": str(model_dir), "Device": "cpu"}
    )
    generation = GenerationParams(do_sample=False, max_new_tokens=max_new_tokens, allow_cut=True)
    root = Path(tempfile.mkdtemp(prefix="bench-long-"))
    seen: dict[str, Any] = {}

    def speak(piece_text: str, name: str) -> Any:
        request = SynthesisRequest(
            config=config, text=piece_text, out_path=root / name, generation=generation
        )
        return pm.hook.tts_synthesize(request=request)

    def one_call() -> None:
        seen["result"] = speak(text, "whole.wav")

    def by_hand() -> None:
        for n, piece in enumerate(pieces):
            speak(piece, f"piece-{n}.wav")

    try:
        pm.hook.tts_load(config=config)
        timings = interleaved({"one_call": one_call, "by_hand": by_hand}, n=repeats, warmup=1)
        refused_s, refused_kib = _refuse(pm, config, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = seen["result"]
    ratio = timings["by_hand"].median / timings["one_call"].median
    return {
        "chars": len(text),
        "pieces": result.pieces,
        "cut_pieces": result.cut_pieces,
        "max_new_tokens": max_new_tokens,
        "largest_call": result.batch_size,
        "one_call": timings["one_call"].as_dict(),
        "by_hand": timings["by_hand"].as_dict(),
        "ratio": ratio,
        "pieces_per_s": result.pieces / timings["one_call"].median,
        "target_pieces": TARGET_PIECES,
        "target_ratio": TARGET_RATIO,
        "refuse_chars": REFUSE_CHARS,
        "refuse_s": refused_s,
        "refuse_peak_kib": refused_kib,
        "target_refuse_s": TARGET_REFUSE_S,
        "met": result.pieces >= TARGET_PIECES
        and ratio >= TARGET_RATIO
        and refused_s < TARGET_REFUSE_S,
    }


def _refuse(pm: Any, config: EngineConfig, root: Path) -> tuple[float, float]:
    """Seconds and peak traced memory (KiB, beyond the text itself) to refuse a huge text."""
    huge = "字" * REFUSE_CHARS
    request = SynthesisRequest(config=config, text=huge, out_path=root / "huge.wav")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        pm.hook.tts_synthesize(request=request)
    except TtsError as err:
        if err.code != "text_too_long":
            raise
    else:
        raise RuntimeError("a 210,000-character text was accepted")
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 1024


def rows(r: dict[str, Any]) -> list[str]:
    """The table lines of this benchmark."""

    def sec(t: dict[str, float]) -> str:
        return f"{t['median']:8.2f} s   (min {t['min']:.2f}, max {t['max']:.2f})"

    met = "met" if r["met"] else "NOT met"
    return [
        f"{r['chars']} characters, {r['pieces']} pieces ({r['cut_pieces']} cut at the fixed "
        f"budget of {r['max_new_tokens']} frames), up to {r['largest_call']} per generate call",
        f"one call (engine splits)              {sec(r['one_call'])}",
        f"the same pieces, one call each        {sec(r['by_hand'])}",
        f"ratio                                 {r['ratio']:8.2f}x    "
        f"{r['pieces_per_s']:.1f} pieces/s",
        f"refuse {r['refuse_chars']:,} characters        {r['refuse_s'] * 1e3:8.2f} ms  "
        f"(peak {r['refuse_peak_kib']:.0f} KiB traced)",
        f"targets: >= {r['target_pieces']} pieces, >= {r['target_ratio']:.0f}x, refuse < "
        f"{r['target_refuse_s'] * 1e3:.0f} ms: {met}",
    ]
