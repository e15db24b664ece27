"""Turns on the one resident model: one run at a time, compatible jobs batched, fair.

Threads are ordered without sleeps: a test holds the engine with a gated run and waits until
the scheduler reports the expected number of queued jobs before it opens the gate.
"""

from __future__ import annotations

import _thread
import contextvars
import threading
import time
from dataclasses import dataclass

import pytest

from qwen3tts_plugin.scheduler import Scheduler


@dataclass(eq=False)
class Job:
    name: str
    load_key: str | None = "a"
    batch_key: str | None = "k"
    limit: int = 8


class Recorder:
    """An ``execute`` that records each run (names, thread) and can hold one open."""

    def __init__(self, resident: list[str | None] | None = None):
        self.runs: list[list[str]] = []
        self.threads: list[str] = []
        self.gate = threading.Event()
        self.resident = resident if resident is not None else [None]
        self.lock = threading.Lock()

    def __call__(self, run: list[Job]) -> list[str]:
        if any(job.name == "holder" for job in run):
            self.gate.wait(10)
        with self.lock:
            self.runs.append([job.name for job in run])
            self.threads.append(threading.current_thread().name)
        if run[0].load_key is not None:
            self.resident[0] = run[0].load_key  # the run "loads" its model
        return [f"{job.name} in a run of {len(run)}" for job in run]


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.001)


def queue_behind_a_holder(scheduler, record, groups):
    """Hold the scheduler, queue ``groups`` (a list of job lists, one caller each, in this
    order), release; return after every caller has finished."""
    holder = threading.Thread(
        target=scheduler.run, args=([Job("holder", batch_key=None)],), name="holder"
    )
    holder.start()
    wait_for(lambda: scheduler.busy)
    callers = []
    queued = 0
    for number, jobs in enumerate(groups):
        thread = threading.Thread(target=scheduler.run, args=(jobs,), name=f"caller{number}")
        thread.start()
        queued += len(jobs)
        wait_for(lambda n=queued: scheduler.pending == n)  # a definite arrival order
        callers.append(thread)
    record.gate.set()
    for thread in [holder, *callers]:
        thread.join(10)
    return [run for run in record.runs if run != ["holder"]]


def test_a_lone_job_on_an_idle_scheduler_runs_at_once_on_the_schedulers_thread():
    """Callers only wait: the run executes on the scheduler's own thread, which ends when
    nothing is left (no thread outlives the work)."""
    record = Recorder()
    scheduler = Scheduler(record, lambda: None, thread_name="engine-under-test")
    assert scheduler.run([Job("solo")]) == ["solo in a run of 1"]
    assert record.runs == [["solo"]]
    assert record.threads == ["engine-under-test"]
    assert (scheduler.busy, scheduler.pending) == (False, 0)
    wait_for(lambda: "engine-under-test" not in [t.name for t in threading.enumerate()])


def test_a_run_executes_in_its_first_callers_context():
    """What the caller bound in its context (a request id for the logs) is there in the run."""
    request = contextvars.ContextVar("request", default=None)
    scheduler = Scheduler(lambda run: [request.get()] * len(run), lambda: None)
    request.set("preview-7")
    assert scheduler.run([Job("a")]) == ["preview-7"]


def test_one_run_at_a_time():
    """Seven callers queue while a run is held open: none starts beside it, and once it ends
    they run one after another (an overlap would be counted)."""
    gate = threading.Event()
    inside, peak = 0, 0
    lock = threading.Lock()

    def execute(run):
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        if run[0].name == "holder":
            gate.wait(10)
        with lock:
            inside -= 1
        return [None] * len(run)

    scheduler = Scheduler(execute, lambda: None)
    holder = threading.Thread(target=scheduler.run, args=([Job("holder", batch_key=None)],))
    holder.start()
    wait_for(lambda: scheduler.busy)
    threads = [
        threading.Thread(target=scheduler.run, args=([Job(str(i), batch_key=None)],))
        for i in range(7)
    ]
    for t in threads:
        t.start()
    wait_for(lambda: scheduler.pending == 7)  # all seven wait; none runs beside the holder
    assert peak == 1
    gate.set()
    for t in [holder, *threads]:
        t.join(10)
    assert peak == 1 and (scheduler.busy, scheduler.pending) == (False, 0)


def test_each_caller_gets_its_own_jobs_outcomes_in_order_whoever_ran_them():
    record = Recorder()
    scheduler = Scheduler(record, lambda: None)
    results = {}

    def call(name, jobs):
        results[name] = scheduler.run(jobs)

    holder = threading.Thread(target=call, args=("holder", [Job("holder", batch_key=None)]))
    holder.start()
    wait_for(lambda: scheduler.busy)
    first = threading.Thread(target=call, args=("first", [Job("f1"), Job("f2")]))
    first.start()
    wait_for(lambda: scheduler.pending == 2)
    second = threading.Thread(target=call, args=("second", [Job("s1")]))
    second.start()
    wait_for(lambda: scheduler.pending == 3)
    record.gate.set()
    for thread in (holder, first, second):
        thread.join(10)
    assert results["first"] == ["f1 in a run of 3", "f2 in a run of 3"]
    assert results["second"] == ["s1 in a run of 3"]  # run by the first caller's thread


def test_an_action_alone_runs_between_runs_and_returns_or_raises():
    record = Recorder()
    scheduler = Scheduler(record, lambda: None)
    order = []
    holder = threading.Thread(target=scheduler.run, args=([Job("holder", batch_key=None)],))
    holder.start()
    wait_for(lambda: scheduler.busy)
    alone = threading.Thread(
        target=lambda: order.append(scheduler.alone("a", lambda: record.runs.copy()))
    )
    alone.start()
    wait_for(lambda: scheduler.pending == 1)  # it waits: a run holds the engine
    record.gate.set()
    for thread in (holder, alone):
        thread.join(10)
    assert order == [[["holder"]]]  # it ran after the held run had finished

    def fails():
        raise ValueError("cannot load")

    with pytest.raises(ValueError, match="cannot load"):
        scheduler.alone(None, fails)
    assert scheduler.run([Job("after")]) == ["after in a run of 1"]


def test_jobs_that_arrive_while_a_run_is_busy_share_the_next_run():
    record = Recorder()
    scheduler = Scheduler(record, lambda: None)
    runs = queue_behind_a_holder(scheduler, record, [[Job(f"j{i}")] for i in range(5)])
    assert runs == [["j0", "j1", "j2", "j3", "j4"]]


def test_a_run_takes_at_most_limit_jobs_in_arrival_order():
    record = Recorder()
    scheduler = Scheduler(record, lambda: None)
    runs = queue_behind_a_holder(scheduler, record, [[Job(f"j{i}", limit=2)] for i in range(5)])
    assert runs == [["j0", "j1"], ["j2", "j3"], ["j4"]]


def test_only_equal_batch_keys_share_and_none_runs_alone():
    record = Recorder()
    scheduler = Scheduler(record, lambda: None)
    jobs = [
        Job("x1", batch_key="x"),
        Job("y1", batch_key="y"),
        Job("seeded", batch_key=None),
        Job("x2", batch_key="x"),
        Job("y2", batch_key="y"),
    ]
    runs = queue_behind_a_holder(scheduler, record, [[job] for job in jobs])
    assert runs == [["x1", "x2"], ["y1", "y2"], ["seeded"]]


def test_one_callers_many_jobs_are_batched_and_it_returns_when_all_are_done():
    record = Recorder()
    scheduler = Scheduler(record, lambda: None)
    scheduler.run([Job(f"m{i}", limit=3) for i in range(7)])
    assert record.runs == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6"]]


def test_calls_for_the_resident_model_go_before_a_switch():
    resident = ["a"]
    record = Recorder(resident)
    scheduler = Scheduler(record, lambda: resident[0])
    keys = ["b", "a", "b", "a", "a"]
    groups = [[Job(f"{key}{i}", load_key=key, batch_key=None)] for i, key in enumerate(keys)]
    runs = queue_behind_a_holder(scheduler, record, groups)
    assert [run[0][0] for run in runs] == ["a", "a", "a", "b", "b"]  # one switch, not four


def test_the_preference_is_bounded_so_a_switch_is_never_starved():
    resident = ["a"]
    record = Recorder(resident)
    scheduler = Scheduler(record, lambda: resident[0], max_in_a_row=2)
    keys = ["b", "a", "a", "a", "a"]
    groups = [[Job(f"{key}{i}", load_key=key, batch_key=None)] for i, key in enumerate(keys)]
    runs = queue_behind_a_holder(scheduler, record, groups)
    assert [run[0][0] for run in runs].index("b") == 2  # two "a" runs jumped, then "b"


def test_a_failing_execute_reaches_every_caller_in_the_run_and_the_scheduler_goes_on():
    gate = threading.Event()
    runs = []

    def execute(run):
        if any(job.name == "holder" for job in run):
            gate.wait(10)
            return [None]
        runs.append([job.name for job in run])
        if len(run) > 1:
            raise ValueError("bug")
        return [None] * len(run)

    scheduler = Scheduler(execute, lambda: None)
    failures = {}

    def call(name):
        try:
            scheduler.run([Job(name)])
        except (ValueError, RuntimeError) as exc:
            failures[name] = exc

    holder = threading.Thread(target=scheduler.run, args=([Job("holder", batch_key=None)],))
    holder.start()
    wait_for(lambda: scheduler.busy)
    threads = [threading.Thread(target=call, args=(f"j{i}",)) for i in range(3)]
    for number, thread in enumerate(threads, start=1):
        thread.start()
        wait_for(lambda n=number: scheduler.pending == n)
    gate.set()
    for thread in [holder, *threads]:
        thread.join(10)
    assert runs == [["j0", "j1", "j2"]]
    # j0 led the run: it sees the error itself; the others get their own error, caused by it.
    assert type(failures["j0"]) is ValueError
    for name in ("j1", "j2"):
        assert type(failures[name]) is RuntimeError and failures[name].__cause__ is failures["j0"]
    scheduler.run([Job("after")])
    assert runs[-1] == ["after"] and (scheduler.busy, scheduler.pending) == (False, 0)


def test_an_interrupted_caller_withdraws_its_jobs_and_the_run_goes_on_for_the_others():
    """KeyboardInterrupt in a caller waiting for a shared run: its running job is marked
    withdrawn (the run can drop it), its queued job never runs, the other caller's job ends
    as usual. Ctrl-C reaches the main thread, so this caller is the test's own thread."""
    gate = threading.Event()
    seen = {}
    ran = []
    scheduler: Scheduler

    def execute(run):
        ran.extend(job.name for job in run)
        if any(job.name == "holder" for job in run):
            gate.wait(10)
            return [None]
        if run[0].name == "mine":
            _thread.interrupt_main()  # the main thread's caller is interrupted while waiting
            wait_for(lambda: scheduler.withdrawn(run[0]))
            seen["other withdrawn"] = scheduler.withdrawn(run[1])
        return [f"{job.name} done" for job in run]

    scheduler = Scheduler(execute, lambda: None)
    holder = threading.Thread(target=scheduler.run, args=([Job("holder", batch_key=None)],))
    holder.start()
    wait_for(lambda: scheduler.busy)
    results = {}
    other = threading.Thread(
        target=lambda: results.setdefault("other", scheduler.run([Job("theirs")]))
    )

    def release_once_queued():
        wait_for(lambda: scheduler.pending == 2)
        other.start()
        wait_for(lambda: scheduler.pending == 3)
        gate.set()

    threading.Thread(target=release_once_queued).start()
    with pytest.raises(KeyboardInterrupt):
        scheduler.run([Job("mine"), Job("mine later", batch_key=None)])
    other.join(10)
    holder.join(10)
    assert results["other"] == ["theirs done"]
    assert seen["other withdrawn"] is False
    assert "mine later" not in ran
    wait_for(lambda: not scheduler.busy)
    assert scheduler.pending == 0


def test_many_callers_all_finish_and_every_job_runs_exactly_once():
    threads = 16
    seen: list[str] = []
    lock = threading.Lock()

    def execute(run):
        with lock:
            seen.extend(job.name for job in run)
        return [None] * len(run)

    scheduler = Scheduler(execute, lambda: None)

    def call(worker):
        for i in range(20):
            key = "x" if (worker + i) % 3 else None
            scheduler.run([Job(f"{worker}-{i}", batch_key=key, limit=4)])

    pool = [threading.Thread(target=call, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(30)
    assert sorted(seen) == sorted(f"{w}-{i}" for w in range(threads) for i in range(20))


# --- a run that grows: admit and settle ------------------------------------------------------


def test_a_running_run_admits_waiting_jobs_and_settles_each_as_it_ends():
    """The stepper's way: a free slot takes a waiting job into the running run, and each
    job's caller gets its outcome as soon as it is in, not when the run ends."""
    started, arrived, proceed = threading.Event(), threading.Event(), threading.Event()
    scheduler: Scheduler

    def execute(run):
        started.set()
        arrived.wait(10)
        admitted = scheduler.admit(run[0], 8)
        jobs = [*run, *admitted]
        if admitted:
            scheduler.settle(admitted[0], "early")  # the late job's caller returns now
            proceed.wait(10)
        return [f"{job.name} of {len(jobs)}" for job in jobs]

    scheduler = Scheduler(execute, lambda: None)
    results = {}
    lead = threading.Thread(target=lambda: results.setdefault("lead", scheduler.run([Job("a")])))
    lead.start()
    started.wait(10)
    late = threading.Thread(target=lambda: results.setdefault("late", scheduler.run([Job("b")])))
    other = threading.Thread(
        target=lambda: results.setdefault("other", scheduler.run([Job("c", batch_key="x")]))
    )
    late.start()
    other.start()
    wait_for(lambda: scheduler.pending == 2)
    arrived.set()
    late.join(10)  # settled while the run still executes
    assert results["late"] == ["early"] and "lead" not in results
    proceed.set()
    lead.join(10)
    other.join(10)
    assert results["lead"] == ["a of 2"]  # "c" has another batch key: never admitted
    assert results["other"] == ["c of 1"]


def test_admitting_goes_on_after_the_first_callers_jobs_and_stops_at_one_that_cannot_join():
    """No caller drives the run, so once the first caller has its outcome the run still takes
    arrivals; a waiting job with another batch key ends admission (it leads the next run, so
    a stream of arrivals cannot starve it)."""
    started, arrived = threading.Event(), threading.Event()
    scheduler: Scheduler
    admitted = {}

    def execute(run):
        if run[0].name == "a":
            scheduler.settle(run[0], "a done")
            started.set()
            arrived.wait(10)
            admitted["names"] = [job.name for job in scheduler.admit(run[0], 8)]
            return ["a"] + [f"{name} admitted" for name in admitted["names"]]
        return [f"{job.name} next" for job in run]

    scheduler = Scheduler(execute, lambda: None)
    results = {}

    def call(name, **kw):
        results[name] = scheduler.run([Job(name, **kw)])

    lead = threading.Thread(target=call, args=("a",))
    lead.start()
    started.wait(10)
    lead.join(10)
    assert results["a"] == ["a done"]  # returned while its run still executes
    callers = []
    for number, (name, key) in enumerate([("b", "k"), ("c", "other"), ("d", "k")], 1):
        callers.append(threading.Thread(target=call, args=(name,), kwargs={"batch_key": key}))
        callers[-1].start()
        wait_for(lambda n=number: scheduler.pending == n)
    arrived.set()
    for thread in callers:
        thread.join(10)
    assert admitted["names"] == ["b"]
    assert results == {"a": ["a done"], "b": ["b admitted"], "c": ["c next"], "d": ["d next"]}


def test_a_failure_after_admission_reaches_the_admitted_callers():
    started, arrived = threading.Event(), threading.Event()
    scheduler: Scheduler

    def execute(run):
        if run[0].name == "a":
            started.set()
            arrived.wait(10)
            scheduler.admit(run[0], 8)
            raise ValueError("the model broke")
        return ["ok"] * len(run)

    scheduler = Scheduler(execute, lambda: None)
    errors = {}

    def call(name):
        try:
            scheduler.run([Job(name)])
        except Exception as exc:  # noqa: BLE001 - what each caller got
            errors[name] = exc

    lead = threading.Thread(target=call, args=("a",))
    lead.start()
    started.wait(10)
    late = threading.Thread(target=call, args=("b",))
    late.start()
    wait_for(lambda: scheduler.pending == 1)
    arrived.set()
    lead.join(10)
    late.join(10)
    assert isinstance(errors["a"], ValueError)
    assert isinstance(errors["b"], RuntimeError) and isinstance(errors["b"].__cause__, ValueError)


def test_closing_fails_the_queued_jobs_marks_the_running_ones_and_waits_for_the_run():
    """What interpreter exit does (every scheduler is closed then): the running run sees its
    jobs withdrawn and ends, queued callers get an error instead of hanging, nothing new is
    taken."""
    started = threading.Event()
    scheduler: Scheduler
    ran = []

    def execute(run):
        ran.extend(job.name for job in run)
        started.set()
        wait_for(lambda: scheduler.withdrawn(run[0]))
        return ["stopped"] * len(run)

    scheduler = Scheduler(execute, lambda: None)
    errors = {}

    def call(name):
        try:
            scheduler.run([Job(name, batch_key=None)])
        except RuntimeError as exc:
            errors[name] = str(exc)

    running = threading.Thread(target=call, args=("running",))
    running.start()
    started.wait(10)
    queued = threading.Thread(target=call, args=("queued",))
    queued.start()
    wait_for(lambda: scheduler.pending == 1)
    assert scheduler.close(timeout=10) is True
    for thread in (running, queued):
        thread.join(10)
    assert ran == ["running"]
    assert errors == {"queued": "the engine's scheduler was closed"}
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.run([Job("late")])


def test_a_failure_outside_any_run_reaches_the_queued_callers_instead_of_hanging():
    """A bug in choosing the next run (here the resident-model probe raises) fails the queued
    jobs with it; the next call starts a fresh thread."""
    broken = [True]

    def resident():
        if broken[0]:
            raise KeyError("probe broke")
        return None

    scheduler = Scheduler(lambda run: ["ok"] * len(run), resident)
    with pytest.raises(KeyError, match="probe broke"):
        scheduler.run([Job("a")])
    broken[0] = False
    assert scheduler.run([Job("b")]) == ["ok"]
