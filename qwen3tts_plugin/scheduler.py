"""Whose turn it is on the one resident model, and which waiting jobs share that turn.

One run at a time, on the scheduler's own thread; callers only queue jobs and wait for their
outcomes. A run is a leader job plus the waiting jobs that may share its generate call (the
same non-None ``batch_key``), up to the leader's ``limit``, taken in arrival order. So calls
that arrive while a generate runs join the next run instead of waiting one by one, and a lone
call on an idle engine starts at once.

The leader is the longest-waiting job, except that a job for the model already in memory goes
before jobs that would replace it, so a settings change does not make the engine reload back
and forth between two models while both kinds of jobs are queued. That preference is bounded:
after ``max_in_a_row`` such runs while another model is wanted, the longest-waiting job leads.

A run may grow while it executes: ``admit`` takes waiting jobs that could have joined it
(equal batch key) into it, and ``settle`` hands a job's outcome to its caller before the run
ends (a decode loop that gives an ended text's slot to the next one uses both). Since no
caller drives the run, it keeps taking jobs after its first caller has returned; it stops at
the first waiting job that cannot join, so that job is next. A caller that stops waiting
(KeyboardInterrupt) withdraws its jobs: queued ones are dropped, running ones are marked
(``withdrawn``) so the run can stop spending work on them. A turn that needs the engine to
itself (making a model resident, releasing it) is an ``alone`` action: it runs between runs,
never beside one. At interpreter exit every scheduler is closed (``close``): a process that
stops on Ctrl-C does not tear torch down under a run still executing.
"""

from __future__ import annotations

import atexit
import contextvars
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from .log import get_logger

log = get_logger(__name__)


ENGINE_THREAD = "qwen3tts-engine"
"""The name of a scheduler's thread (the one that runs the model), unless given another."""


class Schedulable(Protocol):
    """What the scheduler reads from a job."""

    @property
    def load_key(self) -> Hashable | None:
        """The model the job needs (None: any, or none)."""

    @property
    def batch_key(self) -> Hashable | None:
        """Jobs with equal keys may share a run; None runs alone."""

    @property
    def limit(self) -> int:
        """Most jobs in a run this job leads or joins."""


J = TypeVar("J", bound=Schedulable)
R = TypeVar("R")
T = TypeVar("T")


class Scheduler(Generic[J, R]):
    """Runs jobs one run at a time on its own thread; compatible waiting jobs share a run."""

    def __init__(
        self,
        execute: Callable[[list[J]], list[R]],
        resident_key: Callable[[], Hashable | None],
        max_in_a_row: int = 16,
        thread_name: str = ENGINE_THREAD,
    ):
        """``execute(run)`` runs a list of jobs that share one turn and returns one outcome per
        job, in order; ``resident_key()`` names the model in memory (None: none). Runs
        execute on a daemon thread named ``thread_name``, started when jobs arrive on an idle
        scheduler and ended when none is left, each in the context (``contextvars``) of its
        first job's caller."""
        self._execute_run = execute
        self._resident_key = resident_key
        self._max_in_a_row = max_in_a_row
        self._thread_name = thread_name
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._worker: threading.Thread | None = None
        self._in_a_row = 0
        self._running: list[_Ticket] | None = None
        """The tickets of the run executing now (it grows when ``admit`` takes jobs)."""
        self._by_job: dict[int, _Ticket] = {}
        """The same tickets by ``id(job)``."""
        self._closed = False
        _OPEN.add(self)

    @property
    def busy(self) -> bool:
        """Whether a run holds the turn now."""
        return self._running is not None

    @property
    def pending(self) -> int:
        """Jobs queued and not yet taken into a run."""
        return len(self._waiting)

    def run(self, jobs: Sequence[J]) -> list[R]:
        """Queue ``jobs`` (in this order); return their outcomes, in order, once each has one.

        An exception ``execute`` raises is re-raised in the caller of the run's first job, and
        as a ``RuntimeError`` from it in the run's other callers. A caller interrupted while
        waiting (KeyboardInterrupt) withdraws its jobs (see ``withdrawn``); the others' jobs
        go on. ``RuntimeError`` once the scheduler is closed.
        """
        return self._queue(list(jobs))

    def admit(self, lead: J, limit: int) -> list[J]:
        """Up to ``limit`` waiting jobs that may share ``lead``'s run (its batch key), taken
        into that run, in arrival order, up to the first waiting job that may not; called
        from the run's ``execute``, which then owes them outcomes too (after the ones it was
        given, in the order admitted)."""
        key = lead.batch_key
        with self._cond:
            run = self._running
            if key is None or limit <= 0 or run is None or run[0].job is not lead:
                return []
            taken = []
            for ticket in self._waiting:
                if len(taken) == limit or ticket.job.batch_key != key:
                    break  # FIFO: a job that cannot join leads the next run
                taken.append(ticket)
            del self._waiting[: len(taken)]
            run.extend(taken)
            self._by_job.update((id(ticket.job), ticket) for ticket in taken)
            return [ticket.job for ticket in taken]

    def settle(self, job: J, outcome: R) -> None:
        """Give ``job`` (of the run executing now) its outcome at once: its caller returns as
        soon as all its jobs are settled, without waiting for the rest of the run."""
        with self._cond:
            ticket = self._ticket_running(job)
            if ticket is not None and not ticket.done:
                ticket.done, ticket.outcome = True, outcome
                ticket.owner.notify(ticket)
                self._cond.notify_all()

    def withdrawn(self, job: J) -> bool:
        """Whether ``job`` (of the run executing now) was withdrawn by its caller, or the
        scheduler closed: nobody waits for its outcome any more."""
        ticket = self._by_job.get(id(job))  # no lock: read every step for every row
        return ticket is not None and ticket.job is job and (ticket.withdrawn or self._closed)

    def close(self, timeout: float = 10.0) -> bool:
        """Take no more jobs, fail the queued ones (``RuntimeError``), mark the running ones
        withdrawn, and wait up to ``timeout`` seconds for the run executing now to end.
        Whether it ended (a run that does not look at ``withdrawn`` goes on to its end)."""
        with self._cond:
            self._closed = True
            self._fail_waiting(RuntimeError("the engine's scheduler was closed"))
            self._cond.notify_all()
            worker = self._worker
        if worker is None or worker is threading.current_thread():
            return True
        worker.join(timeout)
        return not worker.is_alive()

    def alone(self, load_key: Hashable | None, action: Callable[[], T]) -> T:
        """``action()`` in a turn of its own, between runs; its value, or what it raised.

        ``load_key`` is the model the action makes resident (None: none), so that it is
        ordered like the jobs that need that model.
        """
        [value] = self._queue([_Alone(load_key, action)])
        return value

    def submit(
        self, jobs: Sequence[J], notify: Callable[[int], None] | None = None
    ) -> Submission[R]:
        """Queue ``jobs`` (in this order) without waiting: the handle waits for their
        outcomes, or withdraws them (a stream whose consumer stopped). ``notify(i)`` is
        called (on the scheduler's thread, under its lock: keep it short) when job ``i`` has
        its outcome."""
        return self._submit(list(jobs), notify)

    def _queue(self, jobs: list[Any]) -> list[Any]:
        return self._submit(jobs).outcomes()

    def _submit(self, jobs: list[Any], notify: Callable[[int], None] | None = None) -> Submission:
        context = contextvars.copy_context()
        tickets = [_Ticket(job, None, context) for job in jobs]
        submission = Submission(self, tickets, notify)
        for ticket in tickets:
            ticket.owner = submission
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine's scheduler was closed")
            self._waiting.extend(tickets)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name=self._thread_name, daemon=True
                )
                self._worker.start()
        return submission

    def _work(self) -> None:
        """The scheduler's thread: runs until no job waits. Should it ever fail outside a run
        (a bug), the queued jobs get that failure instead of waiting forever."""
        with self._cond:
            try:
                while self._waiting and not self._closed:
                    self._execute(self._next_run())
            except BaseException as exc:  # handed to every queued caller, and logged
                log.exception("tts.scheduler.failed", waiting=len(self._waiting))
                self._fail_waiting(exc)
            finally:
                self._worker = None
                self._cond.notify_all()

    def _fail_waiting(self, failure: BaseException) -> None:
        """Every queued job fails with ``failure`` (caller holds the lock)."""
        for ticket in self._waiting:
            ticket.done, ticket.failure, ticket.first = True, failure, True
            ticket.owner.notify(ticket)
        self._waiting = []

    def _execute(self, run: list[_Ticket]) -> None:
        """Execute ``run`` outside the lock (the worker holds it), then hand out outcomes."""
        failure: BaseException | None = None
        outcomes: list[Any] = []
        self._running = run
        self._by_job = {id(ticket.job): ticket for ticket in run}
        self._cond.release()
        try:
            outcomes = run[0].context.run(self._outcomes, [ticket.job for ticket in run])
        except BaseException as exc:  # noqa: BLE001 - handed to the callers (see run)
            failure = exc
        finally:
            self._cond.acquire()
            self._running = None
            self._by_job = {}
        if failure is not None:
            outcomes = [None] * len(run)
        for ticket, outcome in zip(run, outcomes, strict=True):
            if ticket.done:  # settled during the run, or withdrawn
                continue
            ticket.done, ticket.failure, ticket.outcome = True, failure, outcome
            ticket.first = ticket.owner is run[0].owner
            ticket.owner.notify(ticket)
        self._cond.notify_all()

    def _outcomes(self, jobs: list[Any]) -> list[Any]:
        """One outcome per job (admitted ones included): an ``alone`` action's value, or what
        ``execute`` returns."""
        if isinstance(jobs[0], _Alone):
            return [jobs[0].action()]
        outcomes = self._execute_run(jobs)
        expected = len(self._running or jobs)
        if len(outcomes) != expected:
            raise RuntimeError(f"execute returned {len(outcomes)} outcomes for {expected} jobs")
        return outcomes

    def _withdraw(self, mine: list[_Ticket], me: object) -> None:
        """An interrupted caller's jobs: queued ones dropped, running ones marked."""
        self._waiting = [ticket for ticket in self._waiting if ticket.owner is not me]
        for ticket in mine:
            ticket.withdrawn = not ticket.done
            ticket.done = True
        self._cond.notify_all()

    def _ticket_running(self, job: Any) -> _Ticket | None:
        """``job``'s ticket in the run executing now."""
        ticket = self._by_job.get(id(job))
        return ticket if ticket is not None and ticket.job is job else None

    def _next_run(self) -> list[_Ticket]:
        """Take the next run out of the queue (caller holds the lock; the queue is not empty)."""
        lead = self._leader()
        self._in_a_row = self._in_a_row + 1 if lead is not self._waiting[0] else 0
        run = [lead]
        key = lead.job.batch_key
        if key is not None:
            limit = lead.job.limit
            for ticket in self._waiting:
                if len(run) >= limit:
                    break
                if ticket is not lead and ticket.job.batch_key == key:
                    run.append(ticket)
        taken = {id(ticket) for ticket in run}
        self._waiting = [ticket for ticket in self._waiting if id(ticket) not in taken]
        return run

    def _leader(self) -> _Ticket:
        if self._in_a_row < self._max_in_a_row:
            resident = self._resident_key()
            if resident is not None:
                for ticket in self._waiting:
                    if ticket.job.load_key == resident:
                        return ticket
        return self._waiting[0]


class Submission(Generic[R]):
    """Jobs one caller queued: wait for their outcomes, or withdraw them."""

    def __init__(
        self,
        scheduler: Scheduler,
        tickets: list[_Ticket],
        notify: Callable[[int], None] | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._tickets = tickets
        self._notify = notify

    def notify(self, ticket: _Ticket) -> None:
        """Tell the submitter that ``ticket`` has its outcome (the scheduler holds its lock)."""
        if self._notify is not None and not ticket.withdrawn:
            self._notify(self._tickets.index(ticket))

    def has_outcome(self, index: int) -> bool:
        """Whether job ``index`` has its outcome (``outcome``)."""
        return self._tickets[index].done

    def outcome(self, index: int) -> R:
        """Job ``index``'s outcome, once ``has_outcome``; raises as ``outcomes`` does."""
        ticket = self._tickets[index]
        if not ticket.done:
            raise RuntimeError(f"job {index} has no outcome yet")
        if ticket.failure is not None:
            if ticket.first:
                raise ticket.failure
            raise RuntimeError("a run this caller's job shared failed") from ticket.failure
        return ticket.outcome

    @property
    def done(self) -> bool:
        """Whether every job has its outcome (or was withdrawn)."""
        return all(ticket.done for ticket in self._tickets)

    def outcomes(self) -> list[R]:
        """The jobs' outcomes, in order, once each has one (see ``Scheduler.run``); a caller
        interrupted while waiting withdraws them."""
        cond = self._scheduler._cond
        with cond:
            try:
                while not self.done:
                    cond.wait()
            except BaseException:
                self._scheduler._withdraw(self._tickets, self)
                raise
        for ticket in self._tickets:
            if ticket.failure is not None and ticket.first:
                raise ticket.failure
        return [self.outcome(index) for index in range(len(self._tickets))]

    def withdraw(self) -> None:
        """Nobody waits for these jobs any more: queued ones are dropped, running ones marked
        (``Scheduler.withdrawn``); their outcomes, if any come, are discarded."""
        with self._scheduler._cond:
            self._scheduler._withdraw(self._tickets, self)


_OPEN: weakref.WeakSet[Scheduler] = weakref.WeakSet()
"""Every scheduler not yet garbage-collected, to close at interpreter exit."""


@atexit.register
def _close_at_exit() -> None:
    for scheduler in list(_OPEN):
        scheduler.close()


class _Alone:
    """An action that needs the engine to itself: never shares a run."""

    __slots__ = ("action", "load_key")
    batch_key = None
    limit = 1

    def __init__(self, load_key: Hashable | None, action: Callable[[], Any]):
        self.load_key = load_key
        self.action = action


class _Ticket:
    """A queued job (or ``alone`` action), and what became of it."""

    __slots__ = ("context", "done", "failure", "first", "job", "outcome", "owner", "withdrawn")

    def __init__(self, job: Any, owner: object, context: contextvars.Context):
        self.job = job
        self.owner = owner  # the Submission that queued it
        self.context = context  # its caller's, for a run it leads
        self.done = False
        self.failure: BaseException | None = None
        self.outcome: Any = None
        self.first = False  # its caller queued the first job of the run that failed
        self.withdrawn = False  # its caller stopped waiting before it had an outcome
