"""The contract between a video editor and its text-to-speech engines.

Hosts call ``plugin_manager()`` and then ``pm.hook.tts_capabilities()``, ``pm.hook.tts_load(...)``
and ``pm.hook.tts_synthesize(...)``. Engines implement those hooks with ``@hookimpl`` and register
under the ``autocut_tts`` entry-point group. Importing this package never imports torch.
"""

from .errors import TtsError
from .manager import plugin_manager
from .markers import PROJECT, hookimpl, hookspec
from .models import (
    AccelerationStatus,
    Capabilities,
    DType,
    EngineConfig,
    GenerationParams,
    GpuInfo,
    LoadResult,
    ModelInfo,
    SynthesisRequest,
    SynthesisResult,
    Voice,
    VoiceMode,
)
from .specs import tts_capabilities, tts_load, tts_synthesize

__all__ = [
    "PROJECT",
    "AccelerationStatus",
    "Capabilities",
    "DType",
    "EngineConfig",
    "GenerationParams",
    "GpuInfo",
    "LoadResult",
    "ModelInfo",
    "SynthesisRequest",
    "SynthesisResult",
    "TtsError",
    "Voice",
    "VoiceMode",
    "hookimpl",
    "hookspec",
    "plugin_manager",
    "tts_capabilities",
    "tts_load",
    "tts_synthesize",
]
