"""The contract between a video editor and its text-to-speech engines.

Hosts call ``plugin_manager()`` and then ``pm.hook.tts_capabilities(config=...)``,
``pm.hook.tts_status()``, ``pm.hook.tts_load(...)``, ``pm.hook.tts_synthesize(...)``,
``pm.hook.tts_synthesize_batch(...)`` and ``pm.hook.tts_synthesize_stream(...)``. Engines
implement those hooks with ``@hookimpl`` and register under the ``autocut_tts`` entry-point
group. Importing this package never imports torch.
"""

from typing import TYPE_CHECKING, Any

from .errors import ERROR_CODES, TtsError
from .manager import plugin_manager
from .markers import PROJECT, hookimpl, hookspec
from .roles import ROLES_KEY, SETTING_ROLES, settings_with_role
from .specs import (
    tts_capabilities,
    tts_check_settings,
    tts_load,
    tts_status,
    tts_synthesize,
    tts_synthesize_batch,
    tts_synthesize_stream,
)

_MODELS = (
    "AccelerationStatus",
    "AudioChunk",
    "BatchItem",
    "Capabilities",
    "DType",
    "EngineConfig",
    "EngineStatus",
    "ErrorInfo",
    "GenerationParams",
    "GpuInfo",
    "LoadResult",
    "ModelInfo",
    "Quantization",
    "SynthesisRequest",
    "SynthesisResult",
    "Voice",
    "VoiceMode",
)

if TYPE_CHECKING:
    from .models import (
        AccelerationStatus,
        AudioChunk,
        BatchItem,
        Capabilities,
        DType,
        EngineConfig,
        EngineStatus,
        ErrorInfo,
        GenerationParams,
        GpuInfo,
        LoadResult,
        ModelInfo,
        Quantization,
        SynthesisRequest,
        SynthesisResult,
        Voice,
        VoiceMode,
    )


def __getattr__(name: str) -> Any:
    """The data models load on first use: a host's start-up (plugin_manager) skips pydantic."""
    if name in _MODELS:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ERROR_CODES",
    "PROJECT",
    "ROLES_KEY",
    "SETTING_ROLES",
    "AccelerationStatus",
    "AudioChunk",
    "BatchItem",
    "Capabilities",
    "DType",
    "EngineConfig",
    "EngineStatus",
    "ErrorInfo",
    "GenerationParams",
    "GpuInfo",
    "LoadResult",
    "ModelInfo",
    "Quantization",
    "SynthesisRequest",
    "SynthesisResult",
    "TtsError",
    "Voice",
    "VoiceMode",
    "hookimpl",
    "hookspec",
    "plugin_manager",
    "settings_with_role",
    "tts_capabilities",
    "tts_check_settings",
    "tts_load",
    "tts_status",
    "tts_synthesize",
    "tts_synthesize_batch",
    "tts_synthesize_stream",
]
