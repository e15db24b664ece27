"""The editor's acceleration detector (its ``modules/qwen3_tts_acceleration``), answered by the
engine's ``tts_capabilities``: the same functions and the same dict shape."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

from hookspecs import TtsError

from .service import EDITOR_PREFIXES, Qwen3TTSService

if TYPE_CHECKING:
    from hookspecs import AccelerationStatus


def get_qwen3_tts_acceleration_status() -> dict[str, Any]:
    """The editor's acceleration detector, answered by the engine (``tts_capabilities``)."""
    try:
        caps = _DETECTOR.capabilities()
    except TtsError as err:
        raise RuntimeError(f"{EDITOR_PREFIXES[err.code]}:{err.detail}") from err
    return acceleration_dict(caps.acceleration)


def get_qwen3_tts_preferred_device() -> str:
    """``cuda:0`` when the engine finds a usable GPU, else ``cpu``."""
    status = get_qwen3_tts_acceleration_status()
    return str(status["preferred_device"]) if status["supported"] else "cpu"


def acceleration_dict(status: AccelerationStatus) -> dict[str, Any]:
    """``AccelerationStatus`` in the shape of the editor's detector dict."""
    gpu = status.gpus[0] if status.gpus else None
    major, minor = status.min_compute_capability
    has_torch = status.torch_version is not None
    return {
        "supported": status.supported,
        "preferred_device": status.preferred_device,
        "backend": status.backend,
        "reasons": list(status.reasons),
        "os": {
            "system": status.os.get("system", platform.system()),
            "release": status.os.get("release", platform.release()),
            "version": platform.version(),
            "machine": status.os.get("machine", platform.machine()),
        },
        "torch": {"version": status.torch_version, "cuda_version": status.torch_cuda_version}
        if has_torch
        else {},
        "cuda": {"available": status.cuda_available, "device_count": status.device_count}
        if has_torch
        else {},
        "gpu": None
        if gpu is None
        else {
            "index": gpu.index,
            "name": gpu.name,
            "total_memory_bytes": gpu.total_memory_bytes,
            "compute_capability": {
                "major": gpu.compute_capability[0],
                "minor": gpu.compute_capability[1],
            },
        },
        "min_cuda_compute_capability": {"major": major, "minor": minor},
    }


_DETECTOR = Qwen3TTSService()
"""The service the module-level detector functions ask (plugin manager made on first use)."""
