"""The engine: one resident model per process, and synthesis on it, many texts per call.

Data flows one way: settings → device plan → model folder → voice → output path, every request
checked on its own before any model work; then the scheduler (scheduler.py) gives each run of
compatible requests its turn, the backend (backends/) speaks them in one generate call, and
each waveform is checked and written. No call ever runs on a model another call has released or
replaced, and two models never sit in memory together. The engine knows nothing of qwen_tts.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hookspecs import (
    AccelerationStatus,
    BatchItem,
    Capabilities,
    EngineConfig,
    EngineStatus,
    ErrorInfo,
    GenerationParams,
    LoadResult,
    SynthesisRequest,
    SynthesisResult,
    TtsError,
)
from hookspecs.models import MAX_NEW_TOKENS

from . import DISPLAY_NAME, PROVIDER, __version__
from .backends import Backend, LoadKey, backend_class
from .devices import DevicePlan, acceleration_status, batch_size_for, decide
from .log import get_logger
from .registry import (
    MODELS,
    ModelFacts,
    ResolvedModel,
    check_model_dir,
    local_model_info,
    model_info,
    read_model_facts,
    unknown_key_error,
)
from .scheduler import Scheduler
from .settings import EngineSettings, model_settings, parse_settings, settings_schema
from .text import Piece, clean_text, split_pieces
from .voices import VoicePlan, resolve_voice, with_reference

log = get_logger(__name__)

SAMPLE_RATE = 24_000
VOICE_MODES = ["custom_voice", "voice_design", "voice_clone"]
MAX_BATCH_REQUESTS = 1024
"""Most requests one ``tts_synthesize_batch`` call takes."""
FRAMES_PER_SECOND = 12.5
"""Qwen3-TTS 12Hz codec frames per second of audio."""

T = TypeVar("T")


@dataclass(frozen=True)
class Prepared:
    """A call's settings, decision and model, all checked before anything loads."""

    settings: EngineSettings
    plan: DevicePlan
    model: ResolvedModel
    facts: ModelFacts
    text: str | None = None
    """The request's text, checked and cleaned (text.py); None for a load."""

    @property
    def key(self) -> LoadKey:
        """What makes two loads the same: folder, device, dtype, attention, backend."""
        return LoadKey(
            path=str(self.model.path),
            device=self.plan.device,
            dtype=self.plan.dtype,
            attn_implementation=self.plan.attn_implementation,
            backend=self.plan.backend,
        )

    @property
    def batch_size(self) -> int:
        """Most texts one generate call takes with these settings."""
        return batch_size_for(self.settings.BatchSize, self.plan)


@dataclass
class Resident:
    """The backend in memory, the key it was loaded with, and the model as configured."""

    key: LoadKey
    backend: Backend
    model: str


@dataclass(eq=False)
class Synthesis:
    """One checked request: its pieces, the jobs that speak them, and what became of it."""

    request: SynthesisRequest
    prepared: Prepared
    voice: VoicePlan
    pieces: list[Piece]
    jobs: list[Job] = field(default_factory=list)
    earlier_runs: list[Run] = field(default_factory=list)
    """The generate calls of pieces that were cut and are being spoken again (their time
    counts in ``synth_s``)."""
    result: SynthesisResult | None = None
    error: TtsError | None = None

    @property
    def done(self) -> bool:
        """Every piece has run (or failed)."""
        return all(job.run is not None or job.error is not None for job in self.jobs)


@dataclass
class Run:
    """One generate call: how long it took and how many texts shared it."""

    seconds: float
    texts: int


@dataclass(eq=False)
class Job:
    """One piece of text waiting for its turn, and what became of it."""

    owner: Synthesis
    index: int
    text: str
    params: GenerationParams
    load_key: LoadKey
    batch_key: Hashable | None
    limit: int
    queued: int = field(default_factory=lambda: next(_QUEUED))
    waveform: Any = field(default=None, repr=False)
    run: Run | None = None
    load_s: float | None = None
    rate: int = 0
    plan: DevicePlan | None = None
    cut: bool = False
    max_frames: int = MAX_NEW_TOKENS
    error: TtsError | None = None

    @property
    def voice(self) -> VoicePlan:
        return self.owner.voice

    @property
    def prepared(self) -> Prepared:
        return self.owner.prepared


@dataclass(eq=False)
class Exclusive:
    """A turn that needs the engine to itself: making a model resident, or releasing it."""

    action: Callable[[], Any]
    load_key: LoadKey | None
    batch_key: None = None
    limit: int = 1
    value: Any = field(default=None, repr=False)
    error: TtsError | None = None


_QUEUED = itertools.count()
"""Orders jobs by when they were checked, to tell which queued before a load failed."""


class Engine:
    """Loads, caches and runs one Qwen3-TTS model at a time. Thread-safe."""

    def __init__(self) -> None:
        self._resident: Resident | None = None
        self._scheduler: Scheduler[Job | Exclusive] = Scheduler(
            self._execute, lambda: None if self._resident is None else self._resident.key
        )
        # The last failed load of each key, and the job counter when it failed: jobs queued
        # before it fail with it instead of trying the same load again (a 1,024-item batch
        # for a broken folder tries it once, not once per generate call).
        self._failed_loads: dict[LoadKey, tuple[int, TtsError]] = {}
        self._plans: dict[tuple[Any, ...], tuple[AccelerationStatus, DevicePlan]] = {}
        self.last_error: TtsError | None = None

    # --- the hooks -----------------------------------------------------------------------

    def capabilities(self, config: EngineConfig | None = None) -> Capabilities:
        """What this engine offers on this machine; loads nothing.

        Models are looked for where ``config`` (when it is this engine's) says they live, and
        the one it selects is marked ``configured``.
        """
        settings = model_settings(config.extra_params if config else {})
        models = [
            model_info(
                spec,
                settings.models_dir,
                configured=settings.ModelPath is None and spec.key == settings.ModelKey,
            )
            for spec in MODELS.values()
        ]
        if settings.ModelPath is not None:
            models.append(local_model_info(settings.ModelPath))
        return Capabilities(
            provider=PROVIDER,
            display_name=DISPLAY_NAME,
            version=__version__,
            voice_modes=VOICE_MODES,
            sample_rate=SAMPLE_RATE,
            models=models,
            acceleration=acceleration_status(),
            settings_schema=settings_schema(),
        )

    def status(self) -> EngineStatus:
        """What is resident and the last failed load; cheap (reads two attributes)."""
        resident, error = self._resident, self.last_error
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
            attn_implementation=resident.key.attn_implementation,
            backend=resident.key.backend,
            last_error=last_error,
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
            resident, load_s = self._alone(prepared.key, lambda: self._ensure(prepared))
        cached = load_s is None  # resident already, or loaded by another call while this waited
        return LoadResult(
            provider=PROVIDER,
            model=prepared.model.model,
            model_path=prepared.model.path,
            device=resident.backend.plan.device,
            device_source=prepared.plan.source,
            dtype=resident.backend.plan.dtype,
            attn_implementation=resident.backend.plan.attn_implementation,
            load_s=time.perf_counter() - started if cached else load_s,
            cached=cached,
            voice_modes=list(prepared.facts.voice_modes),
            batch_size=prepared.batch_size,
            backend=resident.key.backend,
            codec_dtype=resident.backend.codec_dtype,
        )

    def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """Speak ``request.text`` into ``request.out_path``; see the hook's contract.

        A long text is spoken in pieces (text.py) that share generate calls; calls that arrive
        while a generate call runs share the next one (scheduler.py).
        """
        mode = request.voice.mode
        log.info(
            "tts.synthesize.start",
            chars=len(request.text),
            mode=mode,
            preview=_preview(request.text),
        )
        try:
            synthesis = self.synthesis(request)
            self._speak([synthesis])
            if synthesis.error is not None:
                raise synthesis.error
        except TtsError as err:
            log.warning("tts.synthesize.failed", code=err.code, detail=err.detail, mode=mode)
            raise
        assert synthesis.result is not None  # a synthesis ends with a result or an error
        _log_done(synthesis.result)
        return synthesis.result

    def synthesize_batch(self, requests: list[SynthesisRequest]) -> list[BatchItem]:
        """Speak every request, sharing generate calls; one ``BatchItem`` per request, in order.

        Each request is checked on its own and fails alone. The pieces of the valid ones are
        queued longest first, so each generate call takes texts of similar length (little
        padding).
        """
        if len(requests) > MAX_BATCH_REQUESTS:
            raise TtsError(
                "invalid_settings",
                f"{len(requests)} requests in one batch; at most {MAX_BATCH_REQUESTS}",
                f"Send the requests in lists of at most {MAX_BATCH_REQUESTS}.",
            )
        started = time.perf_counter()
        log.info("tts.batch.start", requests=len(requests))
        outcomes: list[Synthesis | TtsError] = []
        references: dict[Any, Any] = {}
        out_paths: dict[str, int] = {}
        for index, request in enumerate(requests):
            try:
                synthesis = self.synthesis(request, references)
                _claim_out_path(request, index, out_paths)
            except TtsError as err:
                log.warning("tts.synthesize.failed", code=err.code, detail=err.detail, index=index)
                outcomes.append(err)
            else:
                outcomes.append(synthesis)
        self._speak([outcome for outcome in outcomes if isinstance(outcome, Synthesis)])
        items = [_batch_item(index, outcome) for index, outcome in enumerate(outcomes)]
        log.info(
            "tts.batch.done",
            requests=len(requests),
            ok=sum(item.ok for item in items),
            failed=sum(not item.ok for item in items),
            seconds=round(time.perf_counter() - started, 3),
        )
        return items

    def _speak(self, syntheses: list[Synthesis]) -> None:
        """Every piece of ``syntheses`` generated (pieces that ran out of budget once more,
        with twice the budget), then each file joined and written; outcomes on each.

        Pieces are handed to the scheduler a batch's worth at a time, longest first: a long
        narration's hundred pieces do not hold back a preview that arrives meanwhile, and each
        file is written (its waveforms freed) as soon as its last piece is in.
        """
        waiting = list(syntheses)
        retried = False
        jobs = sorted(
            (job for synthesis in syntheses for job in synthesis.jobs), key=lambda j: -len(j.text)
        )
        while jobs:
            size = max(job.limit for job in jobs[:MAX_BATCH_REQUESTS])
            self._scheduler.run(jobs[:size])
            jobs = jobs[size:]
            waiting = self._finish_done(waiting)
            if not jobs and not retried:
                retried = True
                retries = [retry for s in waiting for retry in self._retries(s)]
                if retries:
                    log.info("tts.pieces.retry", pieces=len(retries))
                jobs = sorted(retries, key=lambda j: -len(j.text))
        for synthesis in waiting:
            self._finish(synthesis)

    def _finish_done(self, waiting: list[Synthesis]) -> list[Synthesis]:
        """Finish the syntheses whose pieces are all in and need no retry; the rest wait."""
        still = []
        for synthesis in waiting:
            if synthesis.done and not self._wants_retry(synthesis):
                self._finish(synthesis)
            else:
                still.append(synthesis)
        return still

    # --- steps ---------------------------------------------------------------------------

    def prepare(self, extra_params: dict[str, Any], text: str | None = None) -> Prepared:
        """Settings, text, device decision and model folder, cheapest first; loads nothing."""
        settings = parse_settings(extra_params)
        cleaned = None if text is None else clean_text(text, settings.MaxChars)
        plan = self._plan(settings)
        model = resolve_model(settings)
        check_model_dir(model.path)
        return Prepared(settings, plan, model, read_model_facts(model.path), cleaned)

    def synthesis(
        self, request: SynthesisRequest, references: dict[Any, Any] | None = None
    ) -> Synthesis:
        """``request`` checked (settings, text, model folder, voice, output path), split into
        pieces and queueable.

        ``references`` shares decoded reference recordings between the requests of a batch.
        """
        from .audio import check_out_path

        prepared = self.prepare(request.config.extra_params, text=request.text)
        voice = resolve_voice(request.voice, prepared.settings, prepared.facts)
        check_out_path(request.out_path)
        voice = with_reference(voice, references)
        assert prepared.text is not None  # prepared with the request's text
        pieces = split_pieces(prepared.text, prepared.settings.PieceChars)
        if len(pieces) > 1:
            log.info("tts.pieces.split", chars=len(prepared.text), pieces=len(pieces))
        synthesis = Synthesis(request, prepared, voice, pieces)
        params = request.generation
        synthesis.jobs = [
            self._job(synthesis, index, piece.text, params) for index, piece in enumerate(pieces)
        ]
        return synthesis

    def _job(self, owner: Synthesis, index: int, text: str, params: GenerationParams) -> Job:
        """One piece's job. Seeded sampled pieces share calls only with their own request's
        pieces, in order: a seed gives the same audio alone, in a batch or among calls."""
        prepared = owner.prepared
        limit = prepared.batch_size
        sampling = params.model_copy(update={"seed": None, "allow_cut": False})
        source = prepared.plan.backend_source
        if limit == 1:
            batch_key: Hashable | None = None
        elif params.do_sample and params.seed is not None:
            batch_key = (prepared.key, owner.voice.mode, params, limit, id(owner))
        # an explicit Backend and auto may share a model, never a call (strictness differs)
        else:
            batch_key = (prepared.key, owner.voice.mode, sampling, limit, source)
        return Job(owner, index, text, params, prepared.key, batch_key, limit)

    def _retry_budget(self, synthesis: Synthesis) -> int | None:
        """The budget cut pieces are spoken again with (twice theirs, within what the backend
        honours), or None when they are not retried: cuts allowed, a piece failed, nothing
        cut, or the budget already at its ceiling."""
        params = synthesis.request.generation
        cut = [job for job in synthesis.jobs if job.cut]
        if params.allow_cut or not cut or any(job.error for job in synthesis.jobs):
            return None
        ceiling = min(MAX_NEW_TOKENS, *(job.max_frames for job in cut))
        budget = min(2 * params.max_new_tokens, ceiling)
        return budget if budget > max(job.params.max_new_tokens for job in cut) else None

    def _wants_retry(self, synthesis: Synthesis) -> bool:
        return self._retry_budget(synthesis) is not None

    def _retries(self, synthesis: Synthesis) -> list[Job]:
        """Jobs again, with the retry budget, for the pieces that used all of theirs; the cut
        waveforms are dropped, their calls' time kept."""
        budget = self._retry_budget(synthesis)
        if budget is None:
            return []
        more = synthesis.request.generation.model_copy(update={"max_new_tokens": budget})
        retries = []
        for position, job in enumerate(synthesis.jobs):
            if job.cut:
                if job.run is not None:
                    synthesis.earlier_runs.append(job.run)
                job.waveform = None
                retry = self._job(synthesis, job.index, job.text, more)
                synthesis.jobs[position] = retry
                retries.append(retry)
        return retries

    def _plan(self, settings: EngineSettings) -> DevicePlan:
        """The device decision for these settings, made (and logged) once per machine status."""
        status = acceleration_status()
        key = (settings.Device, settings.Precision, settings.Attention, settings.Backend)
        known = self._plans.get(key)
        if known is not None and known[0] is status:
            return known[1]
        plan = decide(settings, status)
        self._plans[key] = (status, plan)
        return plan

    def _alone(self, key: LoadKey | None, action: Callable[[], T]) -> T:
        """``action()`` in a turn of its own (no generate call runs meanwhile)."""
        turn = Exclusive(action, key)
        self._scheduler.run([turn])
        if turn.error is not None:
            raise turn.error
        return turn.value

    def _ensure(self, prepared: Prepared) -> tuple[Resident, float | None]:
        """The resident model for ``prepared``, loading it (and releasing another) if needed.

        Caller holds a turn. Everything that can fail cheaply (imports, the device probe) runs
        before the model in memory is released, so a request that cannot load leaves it
        resident; only a load that starts releases it (two models never sit in memory
        together). Returns the resident and the seconds spent loading it, or None when it was
        already resident.
        """
        if self._resident is not None and self._resident.key == prepared.key:
            return self._resident, None
        try:
            backend_type = backend_class(prepared.key.backend)
            backend_type.preflight(prepared.plan)  # first call: seconds of imports, not load time
            self._release("settings changed")
            log.info(
                "tts.load.start",
                model=prepared.model.model,
                path=str(prepared.model.path),
                device=prepared.plan.device,
                dtype=prepared.plan.dtype,
                attn_implementation=prepared.plan.attn_implementation,
                backend=prepared.key.backend,
            )
            started = time.perf_counter()
            backend = backend_type.load(prepared.model.path, prepared.plan)
        except Exception as exc:  # a TtsError, or a bug or broken install: typed, kept, raised
            err = exc if isinstance(exc, TtsError) else _unexpected_load_error(exc)
            # A copy without the traceback: the failed load's frames must not stay alive.
            self.last_error = TtsError(err.code, err.detail, err.hint)
            self._failed_loads[prepared.key] = (next(_QUEUED), self.last_error)
            log.error(
                "tts.load.failed",
                code=err.code,
                detail=err.detail,
                device=prepared.plan.device,
                kept_resident=self._resident is not None,
            )
            if err is exc:
                raise
            raise err from exc
        seconds = time.perf_counter() - started
        self._resident = Resident(prepared.key, backend, prepared.model.model)
        self.last_error = None
        self._failed_loads.pop(prepared.key, None)
        log.info("tts.load.done", seconds=round(seconds, 3), device=prepared.plan.device)
        return self._resident, seconds

    def _execute(self, run: list[Job] | list[Exclusive]) -> None:
        """One turn (scheduler.py): an exclusive action, or a run of jobs. Never raises for
        an engine failure: outcomes are recorded on the jobs."""
        if isinstance(run[0], Exclusive):
            turn = run[0]
            try:
                turn.value = turn.action()
            except TtsError as err:  # raised again by _alone, in this same thread
                turn.error = err
            return
        self._generate([job for job in run if isinstance(job, Job)])

    def _generate(self, run: list[Job]) -> None:
        """The run's model resident, then one generate call; each piece's waveform checked.

        A failed load or generate call fails every job of the run; a bad waveform fails only
        its own job. Jobs queued before a load of the same model failed get that failure
        without a second try. Files are written later, whole (``_finish``).
        """
        from .audio import check_waveform

        lead = run[0]
        for job in run:  # a run handed back by an interrupted caller is executed again
            job.waveform = job.run = job.error = None
        failed = self._failed_loads.get(lead.load_key)
        if failed is not None and all(job.queued < failed[0] for job in run):
            _fail(run, failed[1])
            return
        try:
            resident, load_s = self._ensure(lead.prepared)
            started = time.perf_counter()
            strict = lead.prepared.plan.backend_source == "config"
            waveforms = resident.backend.generate(
                [job.text for job in run], [job.voice for job in run], lead.params, strict
            )
        except TtsError as err:
            _fail(run, err)
            return
        except Exception as exc:  # a broken install or a bug: logged, then typed, per job
            log.exception("tts.run.crashed", texts=len(run))
            _fail(run, TtsError("synthesis_failed", f"{type(exc).__name__}: {exc}"))
            return
        shared = Run(seconds=time.perf_counter() - started, texts=len(run))
        backend = resident.backend
        log.info(
            "tts.generate.done",
            texts=len(run),
            chars=[len(job.text) for job in run],
            mode=lead.voice.mode,
            seconds=round(shared.seconds, 3),
            device=backend.plan.device,
        )
        for job, waveform in zip(run, waveforms, strict=True):
            job.run, job.load_s = shared, load_s
            job.rate, job.plan = backend.sample_rate, backend.plan
            job.max_frames = backend.max_frames(strict)
            try:
                job.waveform = check_waveform(waveform)
            except TtsError as err:
                job.error = _own_copy(err)  # not this frame's traceback: it holds every waveform
                continue
            job.cut = backend.ran_out(job.waveform, job.params.max_new_tokens)

    def _finish(self, synthesis: Synthesis) -> None:
        """The pieces joined with their pauses and written (atomically), or the reason not:
        a failed piece, or one that used its whole budget (``synthesis_truncated``)."""
        import numpy as np

        from .audio import write_wav_atomic

        jobs, pieces = synthesis.jobs, synthesis.pieces
        failed = next((job.error for job in jobs if job.error is not None), None)
        if failed is not None:
            synthesis.error = _own_copy(failed)
            return
        cut = [job for job in jobs if job.cut]
        params = synthesis.request.generation
        if cut and not params.allow_cut:
            synthesis.error = truncated_error(cut[0], len(pieces), params.max_new_tokens)
            _drop_waveforms(jobs)
            return
        started = time.perf_counter()
        rate, plan = jobs[0].rate, jobs[0].plan
        assert plan is not None  # every job of a synthesis without errors has run
        parts = []
        for job, piece in zip(jobs, pieces, strict=True):
            parts.append(job.waveform)
            if piece.pause_s:
                parts.append(np.zeros(round(piece.pause_s * rate), dtype=np.float32))
        wav = np.concatenate(parts)
        _drop_waveforms(jobs)
        try:
            write_wav_atomic(synthesis.request.out_path, wav, rate)
        except TtsError as err:
            synthesis.error = _own_copy(err)
            return
        runs = {
            id(run): run for run in [*synthesis.earlier_runs, *(job.run for job in jobs)] if run
        }
        synth_s = sum(run.seconds for run in runs.values()) + time.perf_counter() - started
        duration_s = wav.size / rate
        synthesis.result = SynthesisResult(
            provider=PROVIDER,
            path=synthesis.request.out_path,
            duration_s=duration_s,
            sample_rate=rate,
            device=plan.device,
            dtype=plan.dtype,
            attn_implementation=plan.attn_implementation,
            load_s=max((job.load_s or 0.0) for job in jobs),
            synth_s=synth_s,
            rtf=synth_s / duration_s,
            batch_size=max(run.texts for run in runs.values()),
            pieces=len(pieces),
            cut_pieces=len(cut),
            backend=plan.backend,
        )

    # --- state ---------------------------------------------------------------------------

    def release(self) -> None:
        """Drop the resident model, if any, and free its memory."""
        self._alone(None, lambda: self._release("released by request"))

    def _release(self, reason: str) -> None:
        resident = self._resident
        if resident is None:
            return
        self._resident = None
        resident.backend.release()
        log.info("tts.model.released", device=resident.key.device, reason=reason)

    def resident_backend(self) -> Backend | None:
        """The loaded backend, for benchmarks and checks that compare against its model."""
        resident = self._resident
        return None if resident is None else resident.backend


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


def _unexpected_load_error(exc: Exception) -> TtsError:
    """``model_load_failed`` for what no check foresaw (a bug, a qwen_tts that changed)."""
    log.exception("tts.load.crashed")
    return TtsError(
        "model_load_failed",
        f"{type(exc).__name__}: {exc}",
        "This looks like a bug or an unsupported qwen_tts version; the log has the traceback.",
    )


def _own_copy(err: TtsError) -> TtsError:
    """A fresh error for one job: one failure shared by a run is raised in several threads."""
    copy = TtsError(err.code, err.detail, err.hint)
    copy.__cause__ = err.__cause__
    return copy


def truncated_error(job: Job, pieces: int, asked: int) -> TtsError:
    """``synthesis_truncated`` naming the piece and the budget it used up."""
    budget = job.params.max_new_tokens
    again = f" (it was given {asked} first, then twice that)" if budget != asked else ""
    where = f"piece {job.index + 1} of {pieces}" if pieces > 1 else "the text"
    return TtsError(
        "synthesis_truncated",
        f"{where} ({_preview(job.text)!r}) used its whole budget of {budget} frames "
        f"({budget / FRAMES_PER_SECOND:.1f} s of audio) without ending{again}; nothing was "
        "written",
        "Lower PieceChars so that pieces are shorter, raise max_new_tokens (at most "
        f"{MAX_NEW_TOKENS}), or set allow_cut to keep a cut piece on purpose.",
    )


def _drop_waveforms(jobs: list[Job]) -> None:
    for job in jobs:
        job.waveform = None


def _fail(run: list[Job], err: TtsError) -> None:
    for job in run:
        job.error = _own_copy(err)


def _claim_out_path(request: SynthesisRequest, index: int, claimed: dict[str, int]) -> None:
    """Refuse an output path an earlier request of the same batch writes."""
    path = os.path.abspath(request.out_path)
    first = claimed.setdefault(path, index)
    if first != index:
        raise TtsError(
            "output_write_failed",
            f"{request.out_path} is also the output of request {first} in this batch",
            "Give every request of a batch its own out_path.",
        )


def _batch_item(index: int, outcome: Synthesis | TtsError) -> BatchItem:
    if isinstance(outcome, TtsError):
        return BatchItem(index=index, error=ErrorInfo.from_error(outcome))
    if outcome.error is not None:
        error = outcome.error
        log.warning("tts.synthesize.failed", code=error.code, detail=error.detail, index=index)
        return BatchItem(index=index, error=ErrorInfo.from_error(error))
    assert outcome.result is not None  # a synthesis ends with a result or an error
    _log_done(outcome.result)
    return BatchItem(index=index, result=outcome.result)
