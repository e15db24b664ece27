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
callers' jobs included, and every caller returns once its own jobs are done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, Protocol, TypeVar


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


class Scheduler(Generic[J]):
    """Runs jobs one run at a time; compatible waiting jobs share a run (bounded)."""

    def __init__(self, resident_key: Callable[[], Hashable | None], max_in_a_row: int = 16):
        self._resident_key = resident_key
        self._max_in_a_row = max_in_a_row
        self._cond = threading.Condition()
        self._waiting: list[_Ticket[J]] = []
        self._busy = False
        self._in_a_row = 0

    @property
    def busy(self) -> bool:
        """Whether a run holds the turn now."""
        return self._busy

    @property
    def pending(self) -> int:
        """Jobs queued and not yet taken into a run."""
        return len(self._waiting)

    def run(self, jobs: Sequence[J], execute: Callable[[list[J]], None]) -> None:
        """Queue ``jobs`` (in this order) and return when each has been executed.

        ``execute(run)`` is called with a list of jobs that share one turn: this caller's, and
        others' that joined them. It records each job's outcome on the job itself; an exception
        it raises is re-raised in every caller whose job was in that run. A caller interrupted
        while it waits (KeyboardInterrupt) withdraws its jobs and leaves the others queued.
        """
        tickets = [_Ticket(job, execute) for job in jobs]
        with self._cond:
            self._waiting.extend(tickets)
            self._dispatch()
            try:
                while not all(ticket.done for ticket in tickets):
                    lead = next((t for t in tickets if t.run is not None), None)
                    if lead is None:
                        self._cond.wait()
                    else:
                        self._execute(lead, tickets)
            except BaseException:
                self._withdraw(tickets)
                raise
        failure = next((t.failure for t in tickets if t.failure is not None), None)
        if failure is not None:
            raise failure

    def _execute(self, lead: _Ticket[J], mine: list[_Ticket[J]]) -> None:
        """Execute ``lead``'s run outside the lock (the caller holds it), then pass the turn."""
        run, lead.run = lead.run or [], None
        failure: Exception | None = None
        interrupted = True
        self._cond.release()
        try:
            lead.execute([ticket.job for ticket in run])
            interrupted = False
        except Exception as exc:  # noqa: BLE001 - a bug in execute: every caller in the run sees it
            failure = exc
            interrupted = False
        finally:
            self._cond.acquire()
            if interrupted:  # others' jobs go back to the front of the queue
                self._waiting[:0] = [ticket for ticket in run if ticket not in mine]
            else:
                for ticket in run:
                    ticket.done, ticket.failure = True, failure
            self._busy = False
            self._dispatch()
            self._cond.notify_all()

    def _withdraw(self, mine: list[_Ticket[J]]) -> None:
        """Take an interrupted caller's jobs out; a run it was to lead goes back in the queue."""
        self._waiting = [ticket for ticket in self._waiting if ticket not in mine]
        for ticket in mine:
            if ticket.run is not None:
                self._waiting[:0] = [other for other in ticket.run if other not in mine]
                ticket.run = None
                self._busy = False
            ticket.done = True
        self._dispatch()

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

    def _leader(self) -> _Ticket[J]:
        if self._in_a_row < self._max_in_a_row:
            resident = self._resident_key()
            if resident is not None:
                for ticket in self._waiting:
                    if ticket.job.load_key == resident:
                        return ticket
        return self._waiting[0]


class _Ticket(Generic[J]):
    """A queued job, and what became of it."""

    __slots__ = ("done", "execute", "failure", "job", "run")

    def __init__(self, job: J, execute: Callable[[list[J]], None]):
        self.job = job
        self.execute = execute
        self.run: list[_Ticket[J]] | None = None  # set on the leader when its run may start
        self.done = False
        self.failure: BaseException | None = None
