"""Whose turn it is on the one resident model, and which waiting jobs share that turn.

One run at a time. A run is a leader job plus the waiting jobs that may share its generate
call (the same non-None ``batch_key``), up to the leader's ``limit``, taken in arrival order.
So calls that arrive while a generate runs join the next run instead of waiting one by one,
and a lone call on an idle engine starts at once, in its own thread.

The leader is the longest-waiting job, except that a job for the model already in memory goes
before jobs that would replace it, so a settings change does not make the engine reload back
and forth between two models while both kinds of jobs are queued. That preference is bounded:
after ``max_in_a_row`` such runs while another model is wanted, the longest-waiting job leads.

There is no worker thread: the caller that owns a run's leader executes the whole run, other
callers' jobs included, and every caller returns once its own jobs are done, with their
outcomes. A run may grow while it executes: ``admit`` takes waiting jobs that could have
joined it (equal batch key) into it, and ``settle`` hands a job's outcome to its caller before
the run ends (a decode loop that gives an ended text's slot to the next one uses both). A
turn that needs the engine to itself (making a model resident, releasing it) is an ``alone``
action: it runs between runs, never beside one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, Protocol, TypeVar


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
    """Runs jobs one run at a time; compatible waiting jobs share a run (bounded)."""

    def __init__(
        self,
        execute: Callable[[list[J]], list[R]],
        resident_key: Callable[[], Hashable | None],
        max_in_a_row: int = 16,
    ):
        """``execute(run)`` runs a list of jobs that share one turn and returns one outcome per
        job, in order (it may be called again for the same jobs: see ``run``);
        ``resident_key()`` names the model in memory (None: none)."""
        self._execute_run = execute
        self._resident_key = resident_key
        self._max_in_a_row = max_in_a_row
        self._cond = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._busy = False
        self._in_a_row = 0
        self._running: list[_Ticket] | None = None
        """The tickets of the run executing now (it grows when ``admit`` takes jobs)."""

    @property
    def busy(self) -> bool:
        """Whether a run holds the turn now."""
        return self._busy

    @property
    def pending(self) -> int:
        """Jobs queued and not yet taken into a run."""
        return len(self._waiting)

    def run(self, jobs: Sequence[J]) -> list[R]:
        """Queue ``jobs`` (in this order); return their outcomes, in order, once each has been
        executed.

        Runs this caller leads execute in this thread, others' jobs that joined them included.
        An exception ``execute`` raises is re-raised here when this thread ran it, and as a
        ``RuntimeError`` from it in the other callers of that run. A caller interrupted
        (KeyboardInterrupt) withdraws its jobs; others' jobs of a run it was executing go back
        to the front of the queue and are executed again, so ``execute`` must be safe to repeat.
        """
        return self._queue(list(jobs))

    def admit(self, lead: J, limit: int) -> list[J]:
        """Up to ``limit`` waiting jobs that may share ``lead``'s run (its batch key), taken
        into that run, in arrival order; called from the run's ``execute``, which then owes
        them outcomes too (after the ones it was given, in the order admitted)."""
        key = lead.batch_key
        with self._cond:
            run = self._running
            if key is None or limit <= 0 or run is None or run[0].job is not lead:
                return []
            if all(ticket.done for ticket in run if ticket.owner is run[0].owner):
                return []  # the leader's caller waits for this run: let it end
            taken = [ticket for ticket in self._waiting if ticket.job.batch_key == key][:limit]
            ids = {id(ticket) for ticket in taken}
            self._waiting = [ticket for ticket in self._waiting if id(ticket) not in ids]
            run.extend(taken)
            return [ticket.job for ticket in taken]

    def settle(self, job: J, outcome: R) -> None:
        """Give ``job`` (of the run executing now) its outcome at once: its caller returns as
        soon as all its jobs are settled, without waiting for the rest of the run."""
        with self._cond:
            for ticket in self._running or []:
                if ticket.job is job and not ticket.done:
                    ticket.done, ticket.outcome = True, outcome
                    ticket.ran_here = False  # nothing to raise: an outcome, not a failure
                    self._cond.notify_all()
                    return

    def alone(self, load_key: Hashable | None, action: Callable[[], T]) -> T:
        """``action()`` in a turn of its own, between runs; its value, or what it raised.

        ``load_key`` is the model the action makes resident (None: none), so that it is
        ordered like the jobs that need that model.
        """
        [value] = self._queue([_Alone(load_key, action)])
        return value

    def _queue(self, jobs: list[Any]) -> list[Any]:
        me = object()  # this call: owns its tickets
        tickets = [_Ticket(job, me) for job in jobs]
        with self._cond:
            try:
                self._waiting.extend(tickets)
                self._dispatch()
                while not all(ticket.done for ticket in tickets):
                    lead = next((t for t in tickets if t.run is not None), None)
                    if lead is None:
                        self._cond.wait()
                    else:
                        self._execute(lead)
            except BaseException:
                self._withdraw(tickets, me)
                raise
        for ticket in tickets:
            if ticket.failure is not None and ticket.ran_here:
                raise ticket.failure
        for ticket in tickets:
            if ticket.failure is not None:
                raise RuntimeError("a run this caller's job shared failed") from ticket.failure
        return [ticket.outcome for ticket in tickets]

    def _execute(self, lead: _Ticket) -> None:
        """Execute ``lead``'s run outside the lock (the caller holds it), then pass the turn."""
        run = lead.run or []
        failure: Exception | None = None
        outcomes: list[Any] = [None] * len(run)
        interrupted = True
        try:
            lead.run = None
            self._running = run
            self._cond.release()
            try:
                outcomes = self._outcomes([ticket.job for ticket in run])
                interrupted = False
            except Exception as exc:  # noqa: BLE001 - handed to the callers (see run)
                failure = exc
                interrupted = False
            finally:
                self._cond.acquire()
                self._running = None
        finally:
            if interrupted:  # others' unsettled jobs go back to the front of the queue
                self._waiting[:0] = [
                    ticket for ticket in run if ticket.owner is not lead.owner and not ticket.done
                ]
            else:
                if failure is not None:
                    outcomes = [None] * len(run)
                for ticket, outcome in zip(run, outcomes, strict=True):
                    if ticket.done:  # settled during the run
                        continue
                    ticket.done, ticket.failure, ticket.outcome = True, failure, outcome
                    ticket.ran_here = ticket.owner is lead.owner
            self._busy = False
            self._dispatch()
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
        """Take an interrupted caller's jobs out; a run it was to lead goes back in the queue."""
        self._waiting = [ticket for ticket in self._waiting if ticket.owner is not me]
        for ticket in mine:
            if ticket.run is not None:
                self._waiting[:0] = [other for other in ticket.run if other.owner is not me]
                ticket.run = None
                self._busy = False
            ticket.done = True
        self._dispatch()
        self._cond.notify_all()

    def _dispatch(self) -> None:
        """Pick the next run and wake its owner (caller holds the lock)."""
        if self._busy or not self._waiting:
            return
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
        lead.run = run
        self._busy = True
        self._cond.notify_all()

    def _leader(self) -> _Ticket:
        if self._in_a_row < self._max_in_a_row:
            resident = self._resident_key()
            if resident is not None:
                for ticket in self._waiting:
                    if ticket.job.load_key == resident:
                        return ticket
        return self._waiting[0]


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

    __slots__ = ("done", "failure", "job", "outcome", "owner", "ran_here", "run")

    def __init__(self, job: Any, owner: object):
        self.job = job
        self.owner = owner  # the run() call that queued it
        self.run: list[_Ticket] | None = None  # set on the leader when its run may start
        self.done = False
        self.failure: Exception | None = None
        self.outcome: Any = None
        self.ran_here = False  # executed by its own caller's thread
