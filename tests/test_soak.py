"""The soak benchmark's small form (``benchmarks/soak.py``): requests of all three voice modes,
single calls and lists, clones of several recordings, in one process; every request answered,
memory sampled after every call, the curve drawn. The growth figures belong to the benchmark
(README, Benchmarks); here only a gross leak fails (two megabytes a request would: 80 MB over
the 40 requests after the first 50, where about 20 MB were measured)."""

from __future__ import annotations

from benchmarks import soak


def test_a_small_soak_answers_every_request_and_memory_levels_off(tmp_path):
    png = tmp_path / "soak.png"
    results = soak.run(90, png=png)
    run = results["runs"]["tiny"]
    assert run["requests"] == 90 and run["failures"] == 0
    assert [n for n, _ in run["samples"]][-1] == 90
    assert run["growth_after_warmup_mb"] < 60
    assert results["png"] == str(png) and png.stat().st_size > 1000
