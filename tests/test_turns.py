"""Turn-taking on the one resident model: serialised, grouped by model, and fair."""

from __future__ import annotations

import threading
import time

from qwen3tts_plugin.turns import Turns


def test_one_call_at_a_time():
    turns = Turns(lambda: None)
    inside, peak = 0, 0
    lock = threading.Lock()

    def call():
        nonlocal inside, peak
        with turns.turn("a"):
            with lock:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.005)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 1


def _queue_then_release(turns, keys, resident):
    """Hold a turn, queue calls for ``keys`` in this order, release; return the serve order."""
    order: list[str] = []
    gate = threading.Event()

    def call(key):
        with turns.turn(key):
            order.append(key)
            resident[0] = key  # the call "loads" its model

    def holder():
        with turns.turn(resident[0]):
            gate.wait()

    first = threading.Thread(target=holder)
    first.start()
    time.sleep(0.02)
    threads = []
    for key in keys:
        thread = threading.Thread(target=call, args=(key,))
        thread.start()
        threads.append(thread)
        time.sleep(0.01)  # a definite arrival order
    gate.set()
    for thread in [first, *threads]:
        thread.join()
    return order


def test_calls_for_the_resident_model_go_before_a_switch():
    resident = ["a"]
    turns = Turns(lambda: resident[0])
    order = _queue_then_release(turns, ["b", "a", "b", "a", "a"], resident)
    assert order == ["a", "a", "a", "b", "b"]  # one switch instead of four


def test_the_preference_is_bounded_so_a_switch_is_never_starved():
    resident = ["a"]
    turns = Turns(lambda: resident[0], max_in_a_row=2)
    order = _queue_then_release(turns, ["b", "a", "a", "a", "a"], resident)
    assert order.index("b") == 2  # two "a" calls jumped the queue, then "b" had its turn
