"""The engine: one resident model per process, loaded once, and synthesis on it.

Data flows one way: settings → device plan → model folder → voice → load → generate → file.
Calls take turns (turns.py) for loading and generation, so no call ever runs on a model another
call has released or replaced, and two models never sit in memory together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hookspecs import (
    AccelerationStatus,
    Capabilities,
    EngineConfig,
    LoadResult,
    SynthesisRequest,
    SynthesisResult,
    TtsError,
)

from . import DISPLAY_NAME, PROVIDER, __version__
from .devices import DevicePlan, acceleration_status, decide
from .log import get_logger
from .registry import (
    MODELS,
    ModelFacts,
    ResolvedModel,
    check_model_dir,
    model_info,
    read_model_facts,
    unknown_key_error,
)
from .settings import EngineSettings, parse_settings, settings_schema
from .turns import Turns
from .voices import VoicePlan, resolve_voice

if TYPE_CHECKING:
    from qwen_tts import Qwen3TTSModel

log = get_logger(__name__)

SAMPLE_RATE = 24_000
VOICE_MODES = ["custom_voice", "voice_design", "voice_clone"]


@dataclass(frozen=True)
class Prepared:
    """A call's settings, decision and model, all checked before anything loads."""

    settings: EngineSettings
    plan: DevicePlan
    model: ResolvedModel
    facts: ModelFacts

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes two loads the same: folder, device, dtype, attention."""
        return (
            str(self.model.path),
            self.plan.device,
            self.plan.dtype,
            self.plan.attn_implementation,
        )


@dataclass
class Resident:
    """The model in memory and the decision it was loaded with."""

    key: tuple[str, str, str, str]
    model: Qwen3TTSModel
    plan: DevicePlan


class Engine:
    """Loads, caches and runs one Qwen3-TTS model at a time. Thread-safe."""

    def __init__(self) -> None:
        self._resident: Resident | None = None
        self._turns = Turns(lambda: None if self._resident is None else self._resident.key)
        self._plans: dict[tuple[Any, ...], tuple[AccelerationStatus, DevicePlan]] = {}
        self.last_error: TtsError | None = None

    # --- the three hooks -----------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        """What this engine offers on this machine; loads nothing."""
        models_dir = EngineSettings().models_dir
        return Capabilities(
            provider=PROVIDER,
            display_name=DISPLAY_NAME,
            version=__version__,
            voice_modes=VOICE_MODES,
            sample_rate=SAMPLE_RATE,
            models=[model_info(spec, models_dir) for spec in MODELS.values()],
            acceleration=acceleration_status(),
            settings_schema=settings_schema(),
        )

    def load(self, config: EngineConfig) -> LoadResult:
        """Make the configured model resident; cheap and ``cached=True`` when it already is."""
        started = time.perf_counter()
        try:
            prepared = self.prepare(config.extra_params)
        except TtsError as err:
            log.warning("tts.load.failed", code=err.code, detail=err.detail)
            raise
        resident = self._resident
        load_s = None
        if resident is None or resident.key != prepared.key:
            with self._turns.turn(prepared.key):
                resident, load_s = self._ensure(prepared)
        cached = load_s is None  # resident already, or loaded by another call while this waited
        return LoadResult(
            provider=PROVIDER,
            model=prepared.model.model,
            model_path=prepared.model.path,
            device=resident.plan.device,
            device_source=prepared.plan.source,
            dtype=resident.plan.dtype,
            attn_implementation=resident.plan.attn_implementation,
            load_s=time.perf_counter() - started if cached else load_s,
            cached=cached,
            voice_modes=list(prepared.facts.voice_modes),
        )

    def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """Speak ``request.text`` into ``request.out_path``; see the hook's contract."""
        mode = request.voice.mode
        log.info(
            "tts.synthesize.start",
            chars=len(request.text),
            mode=mode,
            preview=_preview(request.text),
        )
        try:
            prepared = self.prepare(request.config.extra_params, text=request.text)
            voice = resolve_voice(request.voice, prepared.settings, prepared.facts)
            with self._turns.turn(prepared.key):
                resident, load_s = self._ensure(prepared)
                result = self._generate(resident, voice, request, load_s or 0.0)
        except TtsError as err:
            log.warning("tts.synthesize.failed", code=err.code, detail=err.detail, mode=mode)
            raise
        log.info(
            "tts.synthesize.done",
            audio_s=round(result.duration_s, 3),
            synth_s=round(result.synth_s, 3),
            rtf=round(result.rtf, 3),
            device=result.device,
            path=str(result.path),
        )
        return result

    # --- steps ---------------------------------------------------------------------------

    def prepare(self, extra_params: dict[str, Any], text: str | None = None) -> Prepared:
        """Settings, device decision, text and model folder, cheapest first; loads nothing."""
        settings = parse_settings(extra_params)
        plan = self._plan(settings)
        if text is not None and not text.strip():
            raise TtsError("empty_text", "the text to speak is empty")
        model = resolve_model(settings)
        check_model_dir(model.path)
        return Prepared(settings, plan, model, read_model_facts(model.path))

    def _plan(self, settings: EngineSettings) -> DevicePlan:
        """The device decision for these settings, made (and logged) once per machine status."""
        status = acceleration_status()
        key = (settings.Device, settings.Precision, settings.Attention)
        known = self._plans.get(key)
        if known is not None and known[0] is status:
            return known[1]
        plan = decide(settings, status)
        self._plans[key] = (status, plan)
        return plan

    def _ensure(self, prepared: Prepared) -> tuple[Resident, float | None]:
        """The resident model for ``prepared``, loading it (and releasing another) if needed.

        Caller holds a turn. Returns the resident and the seconds spent loading it, or None
        when it was already resident.
        """
        if self._resident is not None and self._resident.key == prepared.key:
            return self._resident, None
        self._release("settings changed")
        from .loading import import_qwen_tts, load_model

        import_qwen_tts()  # first call only: seconds of imports, not part of the load time
        log.info(
            "tts.load.start",
            model=prepared.model.model,
            path=str(prepared.model.path),
            device=prepared.plan.device,
            dtype=prepared.plan.dtype,
            attn_implementation=prepared.plan.attn_implementation,
        )
        started = time.perf_counter()
        try:
            model = load_model(prepared.model.path, prepared.plan)
        except TtsError as err:
            # A copy without the traceback: the failed load's frames must not stay alive.
            self.last_error = TtsError(err.code, err.detail, err.hint)
            log.error("tts.load.failed", code=err.code, detail=err.detail)
            raise
        seconds = time.perf_counter() - started
        self._resident = Resident(prepared.key, model, prepared.plan)
        self.last_error = None
        log.info("tts.load.done", seconds=round(seconds, 3), device=prepared.plan.device)
        return self._resident, seconds

    def _generate(
        self, resident: Resident, voice: VoicePlan, request: SynthesisRequest, load_s: float
    ) -> SynthesisResult:
        from .audio import check_waveform, write_wav_atomic
        from .generation import generate

        started = time.perf_counter()
        wav, rate = generate(resident.model, resident.plan, voice, request)
        wav = check_waveform(wav)
        write_wav_atomic(request.out_path, wav, rate)
        synth_s = time.perf_counter() - started
        duration_s = wav.size / rate
        return SynthesisResult(
            provider=PROVIDER,
            path=request.out_path,
            duration_s=duration_s,
            sample_rate=rate,
            device=resident.plan.device,
            dtype=resident.plan.dtype,
            attn_implementation=resident.plan.attn_implementation,
            load_s=load_s,
            synth_s=synth_s,
            rtf=synth_s / duration_s,
        )

    # --- state ---------------------------------------------------------------------------

    def release(self) -> None:
        """Drop the resident model, if any, and free its memory."""
        with self._turns.turn(None):
            self._release("released by request")

    def _release(self, reason: str) -> None:
        if self._resident is None:
            return
        plan = self._resident.plan
        self._resident = None
        from .loading import free_device_memory

        free_device_memory()
        log.info("tts.model.released", device=plan.device, reason=reason)

    def resident_model(self) -> Qwen3TTSModel | None:
        """The loaded qwen_tts model, for benchmarks and checks that compare against it."""
        resident = self._resident
        return None if resident is None else resident.model

    def state(self) -> dict[str, Any]:
        """What is resident and the last load error, for status displays."""
        resident = self._resident
        return {
            "resident": None
            if resident is None
            else {
                "path": resident.key[0],
                "device": resident.plan.device,
                "dtype": resident.plan.dtype,
                "attn_implementation": resident.plan.attn_implementation,
            },
            "last_error": None if self.last_error is None else self.last_error.to_dict(),
        }


def resolve_model(settings: EngineSettings) -> ResolvedModel:
    """The folder the settings select: ModelPath, else ModelsDir/<repo name> for ModelKey."""
    if settings.ModelPath is not None:
        path = settings.ModelPath.expanduser()
        return ResolvedModel(model=str(settings.ModelPath), path=path)
    spec = MODELS.get(settings.ModelKey)
    if spec is None:
        raise unknown_key_error(settings.ModelKey)
    return ResolvedModel(model=spec.key, path=settings.models_dir / spec.folder_name)


def _preview(text: str, limit: int = 40) -> str:
    """The start of the text for logs; the full text is never logged."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
