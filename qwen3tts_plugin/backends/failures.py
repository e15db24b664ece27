"""What a backend's failures become: typed errors with the hint that fits, and tracebacks that
keep no model alive.

Cheap to import (no torch): the torch checks happen inside the functions that need them.
"""

from __future__ import annotations

import re
import traceback

from hookspecs import TtsError

from ..hints import DEVICE_HINT, FP32_HINT, MEMORY_HINT, MPS_HINT, RUNTIME_HINT

RUNTIME_IMPORT_ERRORS = (ImportError, OSError, RuntimeError)
"""What importing torch, torchaudio or qwen_tts raises when they are missing or broken (a
torchaudio built for another torch fails to load its library with OSError or RuntimeError)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An error's first line, cut to ``limit`` characters (torch's can run to kilobytes)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def runtime_unavailable(what: str, exc: BaseException) -> TtsError:
    """``engine_unavailable``: the runtime ``what`` needs cannot be imported."""
    return TtsError(
        "engine_unavailable",
        f"{what} cannot be imported: {type(exc).__name__}: {first_line(exc)}",
        RUNTIME_HINT,
    )


def device_unusable_error(device: str, exc: BaseException) -> TtsError:
    """``model_to_device_failed`` carrying the original error and the troubleshooting hint
    for that kind of device (NVIDIA or Apple)."""
    return TtsError(
        "model_to_device_failed",
        f"{device}: {type(exc).__name__}: {first_line(exc)}",
        MPS_HINT if device == "mps" else DEVICE_HINT,
    )


def synthesis_error(exc: Exception) -> TtsError:
    """``synthesis_failed`` with the original error and the hint its message points to."""
    text = str(exc)
    lowered = text.lower()
    hint = None
    if _is_out_of_memory(exc) or "out of memory" in lowered:
        hint = MEMORY_HINT
    elif re.search(r"\b(inf|nan)\b", lowered):
        hint = FP32_HINT
    elif "same device" in lowered:
        hint = DEVICE_HINT
    return TtsError("synthesis_failed", f"{type(exc).__name__}: {text}", hint)


def _is_out_of_memory(exc: Exception) -> bool:
    import torch  # a backend raised: torch is imported already

    return isinstance(exc, torch.OutOfMemoryError)


def forget_locals(exc: BaseException) -> BaseException:
    """Clear the local variables of ``exc``'s finished frames, and of the errors it chains.

    A traceback keeps every frame's locals alive: a failed load's frames hold the half-built
    model, so a host (or ``last_error``) keeping the error would keep its memory too.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__
    return exc
