"""Which voice a request asks for, checked against the model's own config before any load."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookspecs import TtsError, Voice

from .log import get_logger
from .registry import MODE_FOR_KIND, ModelFacts
from .settings import EngineSettings

if TYPE_CHECKING:
    import numpy as np

log = get_logger(__name__)


@dataclass(frozen=True)
class VoicePlan:
    """Everything generation needs to know about the voice, settled and validated."""

    mode: str
    language: str
    speaker: str | None = None
    instruct: str | None = None
    ref_audio: Path | None = None
    ref_text: str | None = None
    x_vector_only: bool = True
    reference: tuple[np.ndarray, int] | None = field(default=None, compare=False, repr=False)
    """voice_clone: ``ref_audio`` decoded (mono float32, rate), read before any model work."""


def with_reference(voice: VoicePlan, cache: dict[Path, Any] | None = None) -> VoicePlan:
    """``voice`` with its reference recording decoded and checked (``ref_audio_invalid``);
    other modes unchanged. ``cache`` shares one decoding between requests of a batch."""
    if voice.mode != "voice_clone" or voice.ref_audio is None:
        return voice
    from .audio import read_reference

    if cache is None:
        cache = {}
    if voice.ref_audio not in cache:
        cache[voice.ref_audio] = read_reference(voice.ref_audio)
    return dataclasses.replace(voice, reference=cache[voice.ref_audio])


def resolve_voice(voice: Voice, settings: EngineSettings, facts: ModelFacts) -> VoicePlan:
    """Merge the request's voice with the settings and check it fits the model."""
    expected = MODE_FOR_KIND.get(facts.kind)
    if voice.mode != expected:
        raise TtsError(
            "unsupported_mode",
            f"voice mode {voice.mode!r} needs a {_kind_for(voice.mode)} model; this model is "
            f"{facts.kind} and supports {expected!r}",
            f"Use mode {expected!r}, or choose a model for {voice.mode!r} (ModelKey).",
        )
    language = _pick(voice.language or settings.Language, facts.languages, "language")
    instruct = _blank_to_none(voice.instruct) or settings.Instruct
    if voice.mode == "custom_voice":
        return VoicePlan(
            mode="custom_voice",
            language=language,
            speaker=_speaker(voice, settings, facts),
            instruct=_instruct_for_custom_voice(instruct, facts),
        )
    if voice.mode == "voice_design":
        if not instruct or not instruct.strip():
            raise TtsError(
                "instruct_required",
                "voice_design needs an instruct describing the voice",
                "Describe the voice, e.g. 'A warm, low female voice, speaking slowly'.",
            )
        return VoicePlan(mode="voice_design", language=language, instruct=instruct)
    return _clone_plan(voice, settings, language)


def _clone_plan(voice: Voice, settings: EngineSettings, language: str) -> VoicePlan:
    ref_audio = voice.ref_audio or settings.RefAudio
    if ref_audio is None:
        raise TtsError(
            "ref_audio_invalid",
            "voice_clone needs ref_audio (a recording of the voice to clone)",
            "Pass voice.ref_audio or set RefAudio.",
        )
    ref_audio = Path(ref_audio).expanduser()
    if not ref_audio.is_file():
        raise TtsError("ref_audio_invalid", f"reference audio not found: {ref_audio}")
    x_vector_only = voice.x_vector_only if voice.x_vector_only is not None else settings.XVectorOnly
    ref_text = _blank_to_none(voice.ref_text) or settings.RefText
    if not x_vector_only and not ref_text:
        raise TtsError(
            "ref_text_required",
            "voice_clone with x_vector_only=False (ICL mode) needs ref_text, the transcript "
            "of ref_audio",
            "Pass the transcript as ref_text, or set x_vector_only=True.",
        )
    return VoicePlan(
        mode="voice_clone",
        language=language,
        ref_audio=ref_audio,
        ref_text=None if x_vector_only else ref_text,
        x_vector_only=x_vector_only,
    )


def _speaker(voice: Voice, settings: EngineSettings, facts: ModelFacts) -> str:
    wanted = _blank_to_none(voice.speaker) or settings.Speaker
    if wanted is None:
        if not facts.speakers:
            raise TtsError("unsupported_speaker", "this model lists no built-in speakers")
        log.info("tts.voice.default_speaker", speaker=facts.speakers[0])
        return facts.speakers[0]
    return _pick(wanted, facts.speakers, "speaker")


def _instruct_for_custom_voice(instruct: str | None, facts: ModelFacts) -> str | None:
    if instruct and facts.size == "0.6B":
        log.info(
            "tts.voice.instruct_ignored",
            reason="0.6B CustomVoice models do not take an instruct; qwen_tts drops it",
        )
    return instruct


def _pick(wanted: str, supported: tuple[str, ...], what: str) -> str:
    """``wanted`` as the model spells it, matched case-insensitively, or ``unsupported_<what>``."""
    for name in supported:
        if name.lower() == wanted.strip().lower():
            return name
    raise TtsError(
        f"unsupported_{what}",
        f"{what} {wanted!r} is not supported by this model; supported: {', '.join(supported)}",
    )


def _kind_for(mode: str) -> str:
    return next(kind for kind, m in MODE_FOR_KIND.items() if m == mode)


def _blank_to_none(value: str | None) -> str | None:
    return value if value and value.strip() else None
