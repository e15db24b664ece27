"""One request spoken as a stream: its audio handed over in chunks while the loop speaks it.

The request's pieces go through the scheduler like any other (a streamed preview is a row of
the running batch, admitted at the next free slot); under the stepper each piece's frames
come to its ``PieceStream`` as the loop makes them. The consumer's own thread turns them into
audio a window at a time, each decoded after up to 25 frames of left context
(``RowAudio.window``, as qwen_tts decodes a long row's later chunks): the stream's first
window is small so the first audio comes fast, later ones grow. A piece's last samples come
from its full decode (the outcome's waveform, which the loop makes for every row), so the
file is exactly the non-streamed file and the stream differs from it only inside the windows.
Other backends give no frames: a piece's audio then comes whole, with its outcome.

Pieces stream in order; frames of a later piece made meanwhile wait in its buffer. Each
piece gets the largest budget a non-streamed request's tries would give it
(``budgets.last_budget``: twice its text's bound or twice the asked, within the asked when the
bound is the smaller; its first budget with ``allow_cut``): audio already handed over cannot
be taken back for a retry, and with the same codes (same seed, or greedy) a piece that ends
within the first budget ends at the same frame, so the audio is the non-streamed request's (a
piece that runs past its text's bound differs: the non-streamed retry draws with a derived
seed). A piece still cut at that budget ends the stream with ``synthesis_runaway`` or
``synthesis_truncated``, as the non-streamed request fails.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from hookspecs import AudioChunk, GenerationParams, TtsError

from .audio import pcm16_bytes
from .budgets import first_budget, last_budget
from .log import get_logger
from .planning import PieceTask, SpeechPlan, piece_tasks, with_budget
from .scheduler import Scheduler, Submission
from .speaking import PieceOutcome, Take, cut_error, own_copy

log = get_logger(__name__)

FIRST_WINDOW = 4
"""Frames in the stream's first window (0.32 s of audio): what the first chunk waits for."""
LARGEST_WINDOW = 48
"""Frames in a window at most (3.84 s); each window is twice the one before, up to this."""


def streamed_params(plan: SpeechPlan) -> dict[int, GenerationParams]:
    """The values each streamed piece is spoken with: its last try's budget from the start
    (its first try's with ``allow_cut``)."""
    params = plan.params
    asked = params.max_new_tokens
    budget = first_budget if params.allow_cut else last_budget
    return {
        index: with_budget(params, budget(asked, bound)) for index, bound in enumerate(plan.bounds)
    }


class PieceStream:
    """One piece's frames as the loop makes them (a ``FrameSink``), and how much of its
    audio went out."""

    def __init__(self, wake: Callable[[], None], window: Callable[[], int]) -> None:
        self._wake = wake
        self._window = window
        self.frames: list[Any] = []
        """[16] codes per frame, appended on the loop's thread."""
        self.audio: Any = None
        self.sent_frames = 0

    def begin(self, audio: Any) -> None:
        self.audio = audio

    def frame(self, codes: Any) -> None:
        self.frames.append(codes)
        if len(self.frames) - self.sent_frames >= self._window():
            self._wake()

    def next_window(self) -> tuple[int, int] | None:
        """The frames of the next window, when enough are in."""
        start = self.sent_frames
        end = start + self._window()
        if self.audio is None or len(self.frames) < end:
            return None
        return start, end


class Streamer:
    """The chunks of one planned request; see the module's docstring."""

    def __init__(self, scheduler: Scheduler[PieceTask, PieceOutcome], plan: SpeechPlan) -> None:
        self.scheduler = scheduler
        self.plan = plan
        self.events: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.windows = 0
        self.index = 0
        self.started = time.perf_counter()
        self.submission: Submission | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """Stop from any thread: the pieces are withdrawn and a waiting ``chunks`` ends."""
        self.cancelled = True
        if self.submission is not None:
            self.submission.withdraw()
        self.events.put(-1)

    def window_frames(self) -> int:
        return min(FIRST_WINDOW * 2**self.windows, LARGEST_WINDOW)

    def chunks(self) -> Iterator[AudioChunk]:
        """Queue the pieces, then yield their audio in order; the last chunk carries the
        written file's result. Closing the iterator withdraws what is still being spoken."""
        plan = self.plan
        self.started = time.perf_counter()
        pieces = [PieceStream(lambda: self.events.put(-1), self.window_frames) for _ in plan.pieces]
        tasks = piece_tasks(plan, streamed_params(plan), sinks=pieces)
        try:
            submission = self.scheduler.submit(tasks, notify=self.events.put)
        except RuntimeError as exc:  # closed: the interpreter is exiting
            raise stopped_error(exc) from exc
        self.submission = submission
        finished = False
        try:
            outcomes: list[PieceOutcome] = []
            last: np.ndarray | None = None
            for number, piece in enumerate(pieces):
                yield from self.windows_of(piece, lambda n=number: submission.has_outcome(n))
                if self.cancelled:  # withdrawn: its jobs count as done, with no outcome
                    raise Cancelled
                try:
                    given = submission.outcome(number)
                except RuntimeError as exc:  # the run itself broke, or the engine closed
                    raise stopped_error(exc) from exc
                outcome = self.checked(number, given)
                outcomes.append(outcome)
                last = self.rest_of(piece, number, outcome)
                if number < len(pieces) - 1:
                    yield self.chunk(last, outcome.call.sample_rate)
            if self.cancelled:  # closed meanwhile: write nothing
                raise Cancelled
            take = Take(plan)
            take.outcomes = list(outcomes)
            result = take.finish()
            if isinstance(result, TtsError):
                raise result
            finished = True
            log.info(
                "tts.stream.done",
                chunks=self.index + 1,
                seconds=round(time.perf_counter() - self.started, 3),
                audio_s=round(result.duration_s, 3),
            )
            yield AudioChunk(
                index=self.index,
                samples=pcm16_bytes(last),
                sample_rate=result.sample_rate,
                final=True,
                result=result,
            )
        except Cancelled:
            return
        finally:
            if not submission.done:
                submission.withdraw()
            if not finished:
                log.info("tts.stream.stopped", chunks=self.index)

    def windows_of(self, piece: PieceStream, ended: Callable[[], bool]) -> Iterator[AudioChunk]:
        """The piece's windows, each as soon as its frames are in, until ``ended()``."""
        while not ended():
            if self.cancelled:
                raise Cancelled
            window = piece.next_window()
            if window is None:
                self.events.get()  # a window is ready, an outcome is in, or a cancel
                continue
            samples = piece.audio.window(piece.frames, *window)
            piece.sent_frames = window[1]
            self.windows += 1
            if self.index == 0:
                log.info(
                    "tts.stream.first_chunk",
                    seconds=round(time.perf_counter() - self.started, 3),
                    frames=window[1] - window[0],
                )
            yield self.chunk(samples, piece.audio.sample_rate)

    def rest_of(self, piece: PieceStream, number: int, outcome: PieceOutcome) -> np.ndarray:
        """What of the piece's audio has not gone out (from its full decode), and its pause.

        Counted from the end: an in-context clone's waveform may start one sample early
        (qwen_tts cuts the reference's share by a rounded ratio), which the stream then lacks
        rather than repeating a sample at the seam."""
        rate = outcome.call.sample_rate
        waveform = outcome.waveform
        rest = waveform
        if piece.sent_frames:
            unsent = (len(piece.frames) - piece.sent_frames) * piece.audio.samples_per_frame
            rest = waveform[len(waveform) - unsent :] if unsent else waveform[:0]
        pause = self.plan.pieces[number].pause_s
        if pause:
            rest = np.concatenate([rest, np.zeros(round(pause * rate), np.float32)])
        return rest

    def chunk(self, samples: np.ndarray, sample_rate: int) -> AudioChunk:
        chunk = AudioChunk(index=self.index, samples=pcm16_bytes(samples), sample_rate=sample_rate)
        self.index += 1
        return chunk

    def checked(self, number: int, outcome: PieceOutcome) -> PieceOutcome:
        """The piece's outcome, or its failure raised (the stream ends; nothing is written)."""
        if outcome.error is not None:
            raise own_copy(outcome.error)
        if outcome.cut and not self.plan.params.allow_cut:
            raise cut_error(self.plan, number, outcome.budget)
        return outcome


def stopped_error(exc: RuntimeError) -> TtsError:
    """A stream's engine stopped under it (its run failed as a whole, or it was closed)."""
    return TtsError(
        "synthesis_failed",
        f"the engine stopped before this stream's end: {exc}",
        "Nothing was written. Try again; if it repeats, the engine's log says why.",
    )


class Cancelled(Exception):
    """The stream was closed from another thread (``ChunkStream.close``)."""


class ChunkStream:
    """What ``tts_synthesize_stream`` returns: the chunks in order (lazily: nothing is queued
    before the first is asked for). ``close()`` may come from any thread, an HTTP server's
    disconnect handler included: it stops the work at once, and a ``next()`` waiting in
    another thread ends the iteration (``StopIteration``)."""

    def __init__(self, streamer: Streamer) -> None:
        self._streamer = streamer
        self._chunks = streamer.chunks()
        self._reading = threading.Lock()

    def __iter__(self) -> ChunkStream:
        return self

    def __next__(self) -> AudioChunk:
        with self._reading:
            return next(self._chunks)

    def close(self) -> None:
        self._streamer.cancel()
        if self._reading.acquire(blocking=False):  # nobody reads: close the generator here
            try:
                self._chunks.close()
            finally:
                self._reading.release()


def stream(scheduler: Scheduler[PieceTask, PieceOutcome], plan: SpeechPlan) -> ChunkStream:
    """``plan``'s audio as chunks; see ``ChunkStream``."""
    return ChunkStream(Streamer(scheduler, plan))
