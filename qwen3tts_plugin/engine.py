"""The engine: the hooks' one entry, a thin facade over planning, residency and speaking.

Data flows one way: a request is planned (planning.py: every check that needs no model), its
pieces are spoken through the scheduler (speaking.py, scheduler.py) on the one resident model
(residency.py, backends/), and each request's file is written. No call ever runs on a model
another call has released or replaced, and two models never sit in memory together. The
engine knows nothing of qwen_tts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hookspecs import (
    AudioChunk,
    BatchItem,
    Capabilities,
    EngineConfig,
    EngineStatus,
    ErrorInfo,
    LoadResult,
    SynthesisRequest,
    SynthesisResult,
    TtsError,
)

from . import DISPLAY_NAME, PROVIDER, __version__
from .backends import Backend
from .devices import acceleration_status
from .log import get_logger
from .planning import MAX_BATCH_REQUESTS, PieceTask, Planner, SpeechPlan, claim_out_path
from .registry import catalog
from .residency import Residency
from .scheduler import Scheduler
from .settings import model_settings, settings_schema
from .speaking import PieceOutcome, generate, preview, speak
from .streaming import stream

log = get_logger(__name__)

SAMPLE_RATE = 24_000
VOICE_MODES = ["custom_voice", "voice_design", "voice_clone"]


class Engine:
    """Loads, caches and runs one Qwen3-TTS model at a time. Thread-safe."""

    def __init__(self) -> None:
        self._planner = Planner(acceleration_status)
        self._residency = Residency()
        self._scheduler: Scheduler[PieceTask, PieceOutcome] = Scheduler(
            self._generate, self._residency.resident_key
        )

    def _generate(self, run: list[PieceTask]) -> list[PieceOutcome]:
        """The scheduler's execute: one run, which may take in waiting pieces as it goes."""
        return generate(self._residency, run, self._scheduler)

    @property
    def busy(self) -> bool:
        """Whether a generate call (or a load) runs now."""
        return self._scheduler.busy

    def capabilities(self, config: EngineConfig | None = None) -> Capabilities:
        """What this engine offers on this machine; loads nothing.

        Models are looked for where ``config`` (when it is this engine's) says they live, and
        the one it selects is marked ``configured``.
        """
        settings = model_settings(config.extra_params if config else {})
        try:
            selected = settings.model
        except TtsError:  # an unknown ModelKey selects nothing; tts_load reports it
            selected = None
        return Capabilities(
            provider=PROVIDER,
            display_name=DISPLAY_NAME,
            version=__version__,
            voice_modes=VOICE_MODES,
            sample_rate=SAMPLE_RATE,
            models=catalog(settings.models_dir, selected),
            acceleration=acceleration_status(),
            settings_schema=settings_schema(),
        )

    def status(self) -> EngineStatus:
        """What is resident and the last failed load; cheap (reads two attributes)."""
        resident, error = self._residency.resident, self._residency.last_error
        last_error = None if error is None else ErrorInfo.from_error(error)
        if resident is None:
            return EngineStatus(provider=PROVIDER, loaded=False, last_error=last_error)
        return EngineStatus(
            provider=PROVIDER,
            loaded=True,
            model=resident.model,
            model_path=Path(resident.key.path),
            device=resident.key.device,
            dtype=resident.key.dtype,
            codec_dtype=resident.backend.codec_dtype,
            quantization=resident.key.quantization,
            attn_implementation=resident.key.attn_implementation,
            backend=resident.key.backend,
            last_error=last_error,
        )

    def load(self, config: EngineConfig) -> LoadResult:
        """Make the configured model resident; cheap and ``cached=True`` when it already is."""
        started = time.perf_counter()
        try:
            plan = self._planner.load_plan(config.extra_params)
        except TtsError as err:
            log.warning("tts.load.failed", code=err.code, detail=err.detail)
            raise
        resident, load_s = self._residency.resident, None
        if resident is None or resident.key != plan.key:
            resident, load_s = self._scheduler.alone(plan.key, lambda: self._residency.ensure(plan))
        cached = load_s is None  # resident already, or loaded by another call while this waited
        backend = resident.backend
        return LoadResult(
            provider=PROVIDER,
            model=plan.model.model,
            model_path=plan.model.path,
            device=backend.plan.device,
            device_source=plan.device.source,
            dtype=backend.plan.dtype,
            attn_implementation=backend.plan.attn_implementation,
            load_s=time.perf_counter() - started if cached else load_s,
            cached=cached,
            voice_modes=list(plan.facts.voice_modes),
            batch_size=plan.batch_size,
            backend=resident.key.backend,
            codec_dtype=backend.codec_dtype,
            quantization=resident.key.quantization,
        )

    def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """Speak ``request.text`` into ``request.out_path``; see the hook's contract."""
        mode = request.voice.mode
        text = request.text
        log.info("tts.synthesize.start", chars=len(text), mode=mode, preview=preview(text))
        try:
            [outcome] = speak(self._scheduler, [self._planner.speech_plan(request)])
            if isinstance(outcome, TtsError):
                raise outcome
        except TtsError as err:
            log.warning("tts.synthesize.failed", code=err.code, detail=err.detail, mode=mode)
            raise
        _log_done(outcome)
        return outcome

    def synthesize_stream(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        """``request``'s audio in chunks as it is spoken; see the hook's contract. Every check
        that needs no model runs here, before the iterator exists."""
        mode = request.voice.mode
        log.info(
            "tts.stream.start", chars=len(request.text), mode=mode, preview=preview(request.text)
        )
        try:
            plan = self._planner.speech_plan(request)
        except TtsError as err:
            log.warning("tts.synthesize.failed", code=err.code, detail=err.detail, mode=mode)
            raise
        return stream(self._scheduler, plan)

    def synthesize_batch(self, requests: list[SynthesisRequest]) -> list[BatchItem]:
        """Speak every request, sharing generate calls; one ``BatchItem`` per request, in order.

        Each request is checked on its own and fails alone.
        """
        if len(requests) > MAX_BATCH_REQUESTS:
            raise TtsError(
                "invalid_settings",
                f"{len(requests)} requests in one batch; at most {MAX_BATCH_REQUESTS}",
                f"Send the requests in lists of at most {MAX_BATCH_REQUESTS}.",
            )
        started = time.perf_counter()
        log.info("tts.batch.start", requests=len(requests))
        planned: list[SpeechPlan | TtsError] = []
        references: dict[Path, Any] = {}
        out_paths: dict[str, int] = {}
        for index, request in enumerate(requests):
            try:
                plan = self._planner.speech_plan(request, references)
                claim_out_path(request, index, out_paths)
            except TtsError as err:
                log.warning("tts.synthesize.failed", code=err.code, detail=err.detail, index=index)
                planned.append(err)
            else:
                planned.append(plan)
        spoken = iter(speak(self._scheduler, [p for p in planned if isinstance(p, SpeechPlan)]))
        items = [
            _batch_item(index, next(spoken) if isinstance(p, SpeechPlan) else p, p)
            for index, p in enumerate(planned)
        ]
        log.info(
            "tts.batch.done",
            requests=len(requests),
            ok=sum(item.ok for item in items),
            failed=sum(not item.ok for item in items),
            seconds=round(time.perf_counter() - started, 3),
        )
        return items

    def release(self) -> None:
        """Drop the resident model, if any, and free its memory."""
        self._scheduler.alone(None, lambda: self._residency.release("released by request"))

    def resident_backend(self) -> Backend | None:
        """The loaded backend, for benchmarks and checks that compare against its model."""
        resident = self._residency.resident
        return None if resident is None else resident.backend


def _log_done(result: SynthesisResult) -> None:
    log.info(
        "tts.synthesize.done",
        audio_s=round(result.duration_s, 3),
        synth_s=round(result.synth_s, 3),
        rtf=round(result.rtf, 3),
        device=result.device,
        batch_size=result.batch_size,
        pieces=result.pieces,
        cut_pieces=result.cut_pieces,
        path=str(result.path),
    )


def _batch_item(
    index: int, outcome: SynthesisResult | TtsError, planned: SpeechPlan | TtsError
) -> BatchItem:
    if isinstance(outcome, TtsError):
        if isinstance(planned, SpeechPlan):  # refusals before planning were logged then
            log.warning(
                "tts.synthesize.failed", code=outcome.code, detail=outcome.detail, index=index
            )
        return BatchItem(index=index, error=ErrorInfo.from_error(outcome))
    _log_done(outcome)
    return BatchItem(index=index, result=outcome)
