"""Speaking planned requests: their pieces through the scheduler in two rounds, then each
request's pieces joined and written.

Round one speaks every piece with its request's budget; round two speaks again, with twice
the budget, only the pieces that used all of theirs (a cut piece is never kept unless the
request allows it). Pieces go to the scheduler a batch's worth at a time, longest first, so a
long narration's hundred pieces do not hold back a preview that arrives meanwhile, and each
file is written (its waveforms freed) as soon as its last piece is in.

``generate`` is the scheduler's ``execute``: one run of pieces, one generate call, one
``PieceOutcome`` per piece. Outcomes are values; nothing a caller holds is changed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hookspecs import SynthesisResult, TtsError
from hookspecs.models import MAX_NEW_TOKENS

from . import PROVIDER
from .backends import Batch
from .backends.failures import forget_locals
from .budgets import FRAMES_PER_SECOND, derived_seed, runaway_retry_budget
from .log import get_logger
from .planning import (
    PieceTask,
    SpeechPlan,
    first_tries,
    piece_tasks,
    retry_budget,
    with_budget,
)

if TYPE_CHECKING:
    from .devices import DevicePlan
    from .residency import Residency
    from .scheduler import Scheduler

log = get_logger(__name__)


@dataclass(frozen=True)
class GenerateCall:
    """One generate call: where and how long it ran, how many texts shared it."""

    seconds: float
    texts: int
    load_s: float | None
    """Seconds spent making its model resident first (None: it already was)."""
    sample_rate: int
    plan: DevicePlan
    """Where it ran (the backend's own plan)."""
    codec_dtype: str
    """The dtype the backend's codec decoded in (float32 whatever ``plan.dtype``)."""
    max_frames: int
    """The largest budget the backend honours for calls like it."""


@dataclass(frozen=True)
class PieceOutcome:
    """What one piece's try gave: its waveform (and whether it used its whole budget), or
    the error that stopped it."""

    call: GenerateCall | None
    budget: int
    """The frame budget (``max_new_tokens``) the piece was given."""
    waveform: Any = field(default=None, repr=False)
    cut: bool = False
    error: TtsError | None = None


# --- one run: the scheduler's execute ----------------------------------------------------------


def generate(
    residency: Residency,
    run: list[PieceTask],
    scheduler: Scheduler[PieceTask, PieceOutcome] | None = None,
) -> list[PieceOutcome]:
    """The run's model resident, then one generate call; each piece's waveform checked.

    With ``scheduler`` (the one executing this run), a backend that frees a slot when a piece
    ends (the stepper) takes waiting pieces that could have joined the run into it, and each
    piece's outcome goes to its caller as soon as it is in; a piece whose caller stopped
    waiting leaves the run at once. A failed load or generate call
    fails every piece of the run; a bad waveform fails only its own piece. Pieces queued
    before a load of the same model failed get that failure without a second try. Never
    raises for an engine failure.
    """
    lead = run[0]
    failed = residency.failed_before(lead.load_key, max(task.queued for task in run))
    if failed is not None:
        return _failures(run, failed)
    plan = lead.speech.load
    tasks = list(run)  # grows as pieces are admitted
    settled: dict[int, PieceOutcome] = {}

    def batch_of(pieces: list[PieceTask]) -> Batch:
        # a backend that runs one budget for the call runs the largest; each piece is judged
        # by its own (``_checked``)
        budget = max(task.params.max_new_tokens for task in pieces)
        return Batch(
            texts=tuple(task.text for task in pieces),
            voices=tuple(task.voice for task in pieces),
            params=with_budget(lead.params, budget),
            exact=plan.device.exact_backend,
            each=tuple(task.params for task in pieces),
            slots=plan.batch_size,
            admit=admit if scheduler is not None else None,
            sinks=tuple(task.sink for task in pieces) if any(t.sink for t in pieces) else (),
            settle=settle if scheduler is not None else None,
            withdrawn=withdrawn if scheduler is not None else None,
        )

    # admit and settle run inside backend.generate, once backend, load_s and started are set
    def admit(free: int) -> Batch | None:
        assert scheduler is not None
        more = scheduler.admit(lead, free)
        tasks.extend(more)
        return batch_of(more) if more else None

    def settle(index: int, waveform: Any) -> None:
        assert scheduler is not None
        outcome = _checked(tasks[index], waveform, call_so_far(), backend)
        settled[index] = outcome
        scheduler.settle(tasks[index], outcome)

    def withdrawn(index: int) -> bool:
        assert scheduler is not None
        return scheduler.withdrawn(tasks[index])

    def call_so_far() -> GenerateCall:
        return GenerateCall(
            seconds=time.perf_counter() - started,
            texts=len(tasks),
            load_s=load_s,
            sample_rate=backend.sample_rate,
            plan=backend.plan,
            codec_dtype=backend.codec_dtype,
            max_frames=backend.max_frames(plan.device.exact_backend),
        )

    try:
        resident, load_s = residency.ensure(plan)
        backend = resident.backend
        started = time.perf_counter()
        waveforms = backend.generate(batch_of(tasks))
    except TtsError as err:
        return _failures(tasks, err)
    except Exception as exc:  # a broken install or a bug: logged, then typed, per piece
        log.exception("tts.generate.crashed", texts=len(tasks))
        return _failures(tasks, TtsError("synthesis_failed", f"{type(exc).__name__}: {exc}"))
    call = call_so_far()
    log.info(
        "tts.generate.done",
        texts=len(tasks),
        chars=[len(task.text) for task in tasks],
        mode=lead.voice.mode,
        seconds=round(call.seconds, 3),
        device=call.plan.device,
    )
    return [
        settled[index] if index in settled else _checked(task, waveform, call, backend)
        for index, (task, waveform) in enumerate(zip(tasks, waveforms, strict=True))
    ]


def _checked(task: PieceTask, waveform: Any, call: GenerateCall, backend: Any) -> PieceOutcome:
    """One piece's outcome from what the backend gave for it."""
    from .audio import check_waveform

    budget = task.params.max_new_tokens
    if isinstance(waveform, TtsError):  # the backend failed this piece alone
        return PieceOutcome(call, budget, error=own_copy(waveform))
    if waveform is None:  # dropped: its caller stopped waiting, or the engine closed
        dropped = TtsError("synthesis_failed", "the text was dropped before its end")
        return PieceOutcome(call, budget, error=dropped)
    try:
        checked = check_waveform(waveform)
    except TtsError as err:  # its own copy: this frame's traceback holds every waveform
        return PieceOutcome(call, budget, error=own_copy(err))
    cut = backend.ran_out(checked, budget)
    if cut:  # a call that ran to a larger budget (another piece's) went on past this one's
        checked = checked[: round((budget - 1) * backend.sample_rate / FRAMES_PER_SECOND)]
    return PieceOutcome(call, budget, checked, cut=cut)


def _failures(run: list[PieceTask], err: TtsError) -> list[PieceOutcome]:
    return [PieceOutcome(None, task.params.max_new_tokens, error=own_copy(err)) for task in run]


def own_copy(err: TtsError) -> TtsError:
    """A fresh error for one piece: one failure shared by a run is raised in several threads."""
    copy = TtsError(err.code, err.detail, err.hint)
    copy.__cause__ = err.__cause__
    return copy


# --- requests: rounds, then files ----------------------------------------------------------------


def speak(
    scheduler: Scheduler[PieceTask, PieceOutcome], plans: Sequence[SpeechPlan]
) -> list[SynthesisResult | TtsError]:
    """Every request of ``plans`` spoken and written, or the reason not; in order."""
    takes = {id(plan): Take(plan) for plan in plans}
    first: list[PieceTask] = []
    for plan in plans:
        tries = first_tries(plan)
        first += piece_tasks(plan, tries)
        log.info(
            "tts.pieces.budgets",
            asked=plan.params.max_new_tokens,
            budgets=[params.max_new_tokens for params in tries.values()],
        )
    again = _round(scheduler, first, takes, retry=True)
    if again:
        log.info("tts.pieces.retry", pieces=len(again))
    _round(scheduler, again, takes, retry=False)
    return [takes[id(plan)].finish() for plan in plans]


def _round(
    scheduler: Scheduler[PieceTask, PieceOutcome],
    tasks: list[PieceTask],
    takes: dict[int, Take],
    retry: bool,
) -> list[PieceTask]:
    """``tasks`` spoken a batch's worth at a time, longest first. Each request is finished
    as soon as its pieces are in, unless (when ``retry``) some are cut and get another try:
    those tries are returned, for the next round."""
    waiting = sorted(tasks, key=lambda task: -len(task.text))
    size = max((task.limit for task in waiting), default=1)
    later: list[PieceTask] = []
    for start in range(0, len(waiting), size):
        chunk = waiting[start : start + size]
        for task, outcome in zip(chunk, scheduler.run(chunk), strict=True):
            takes[id(task.speech)].outcomes[task.index] = outcome
        for take in {id(task.speech): takes[id(task.speech)] for task in chunk}.values():
            if take.open and take.complete:
                tries = take.retries() if retry else []
                if tries:
                    later += tries
                else:
                    take.finish()
    return later


class Take:
    """One request's pieces as they come back, and at the end its file or its error."""

    def __init__(self, plan: SpeechPlan) -> None:
        self.plan = plan
        self.outcomes: list[PieceOutcome | None] = [None] * len(plan.pieces)
        self.earlier_calls: list[GenerateCall] = []
        """Calls whose cut pieces were spoken again (their time counts in ``synth_s``)."""
        self.outcome: SynthesisResult | TtsError | None = None

    @property
    def open(self) -> bool:
        return self.outcome is None

    @property
    def complete(self) -> bool:
        """Every piece has an outcome (a retried piece has none until its retry is in)."""
        return all(outcome is not None for outcome in self.outcomes)

    def retries(self) -> list[PieceTask]:
        """Tasks for the cut pieces of a complete take; none when cuts are allowed, a piece
        failed, nothing was cut or a cut piece's budget can grow no more. A piece cut at its
        text's bound (a runaway, or a slow reading) gets twice the bound and, when sampled
        with a seed, a seed derived from it; one cut at the caller's ``max_new_tokens`` twice
        that, with the same seed; both within what the backend honours. The cut takes are
        dropped (their calls' time is kept)."""
        outcomes = [self._outcome(i) for i in range(len(self.outcomes))]
        cut = [i for i, outcome in enumerate(outcomes) if outcome.cut]
        params = self.plan.params
        if params.allow_cut or not cut or any(outcome.error for outcome in outcomes):
            return []
        asked = params.max_new_tokens
        each = {}
        for i in cut:
            tried, ceiling = outcomes[i].budget, self._call(i).max_frames
            seed = None
            if tried < asked:
                budget = runaway_retry_budget(asked, tried, ceiling)
                if params.do_sample and params.seed is not None:
                    seed = derived_seed(params.seed, i)
            else:
                budget = retry_budget(asked, tried, ceiling)
            if budget is None:
                return []  # that piece stays cut: the request fails whatever the others do
            each[i] = with_budget(params, budget, seed)
        for i in cut:
            self.earlier_calls.append(self._call(i))
            self.outcomes[i] = None
        return piece_tasks(self.plan, each)

    def finish(self) -> SynthesisResult | TtsError:
        """The pieces joined with their pauses and written (atomically), or the reason not:
        a failed piece, or one that used its whole budget (``synthesis_truncated``). Once;
        the waveforms are dropped as soon as the file is written (or cannot be)."""
        if self.outcome is None:
            self.outcome = self._result()
            self.outcomes = [
                None if o is None else dataclasses.replace(o, waveform=None) for o in self.outcomes
            ]
        return self.outcome

    def _result(self) -> SynthesisResult | TtsError:
        import numpy as np

        from .audio import write_wav_atomic

        outcomes = [self._outcome(i) for i in range(len(self.outcomes))]
        failed = next((o.error for o in outcomes if o.error is not None), None)
        if failed is not None:
            return own_copy(failed)
        params = self.plan.params
        cut = [i for i, outcome in enumerate(outcomes) if outcome.cut]
        if cut and not params.allow_cut:
            return cut_error(self.plan, cut[0], outcomes[cut[0]].budget)
        started = time.perf_counter()
        first = self._call(0)
        rate = first.sample_rate
        parts = []
        for outcome, piece in zip(outcomes, self.plan.pieces, strict=True):
            parts.append(outcome.waveform)
            if piece.pause_s:
                parts.append(np.zeros(round(piece.pause_s * rate), dtype=np.float32))
        wav = np.concatenate(parts)
        try:
            write_wav_atomic(self.plan.request.out_path, wav, rate)
        except TtsError as err:  # kept by the caller: its frames must not keep the audio
            forget_locals(err)
            return own_copy(err)
        calls = {id(c): c for c in [*self.earlier_calls, *(o.call for o in outcomes)] if c}
        synth_s = sum(c.seconds for c in calls.values()) + time.perf_counter() - started
        duration_s = wav.size / rate
        return SynthesisResult(
            provider=PROVIDER,
            path=self.plan.request.out_path,
            duration_s=duration_s,
            sample_rate=rate,
            device=first.plan.device,
            dtype=first.plan.dtype,
            codec_dtype=first.codec_dtype,
            quantization=first.plan.quantization,
            attn_implementation=first.plan.attn_implementation,
            load_s=max((c.load_s or 0.0) for c in calls.values()),
            synth_s=synth_s,
            rtf=synth_s / duration_s,
            batch_size=max(c.texts for c in calls.values()),
            pieces=len(self.plan.pieces),
            cut_pieces=len(cut),
            piece_budgets=[outcome.budget for outcome in outcomes],
            backend=first.plan.backend,
        )

    def _outcome(self, index: int) -> PieceOutcome:
        outcome = self.outcomes[index]
        if outcome is None:
            raise RuntimeError(f"piece {index} has not been spoken")
        return outcome

    def _call(self, index: int) -> GenerateCall:
        call = self._outcome(index).call
        if call is None:
            raise RuntimeError(f"piece {index} failed; it ran in no call")
        return call


def cut_error(plan: SpeechPlan, index: int, budget: int) -> TtsError:
    """The error for piece ``index`` cut at ``budget`` frames: ``synthesis_runaway`` when that
    was its text's bound (below the caller's ``max_new_tokens``), else
    ``synthesis_truncated``."""
    if budget < plan.params.max_new_tokens:
        return runaway_error(plan, index, budget)
    return truncated_error(plan, index, budget)


def _where(plan: SpeechPlan, index: int) -> str:
    pieces = len(plan.pieces)
    where = f"piece {index + 1} of {pieces}" if pieces > 1 else "the text"
    return f"{where} ({preview(plan.pieces[index].text)!r})"


def runaway_error(plan: SpeechPlan, index: int, budget: int) -> TtsError:
    """``synthesis_runaway`` naming the piece and the bound it ran past."""
    return TtsError(
        "synthesis_runaway",
        f"{_where(plan, index)} did not end within {budget} frames "
        f"({budget / FRAMES_PER_SECOND:.1f} s of audio), well past the longest its text could "
        "take (a row whose end never came); nothing was written",
        "The model did not end this line: try again (another seed), rephrase it, or split it; "
        "set allow_cut to keep the cut audio on purpose.",
    )


def truncated_error(plan: SpeechPlan, index: int, budget: int) -> TtsError:
    """``synthesis_truncated`` naming the piece and the budget it used up."""
    asked = plan.params.max_new_tokens
    again = f" (it was given {asked} first, then twice that)" if budget != asked else ""
    return TtsError(
        "synthesis_truncated",
        f"{_where(plan, index)} used its whole budget of {budget} "
        f"frames ({budget / FRAMES_PER_SECOND:.1f} s of audio) without ending{again}; nothing "
        "was written",
        "Lower PieceChars so that pieces are shorter, raise max_new_tokens (at most "
        f"{MAX_NEW_TOKENS}), or set allow_cut to keep a cut piece on purpose.",
    )


def preview(text: str, limit: int = 40) -> str:
    """The start of the text for logs and errors; the full text is never logged."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
