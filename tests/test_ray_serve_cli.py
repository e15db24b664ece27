"""``python -m qwen3tts_plugin serve-ray``: a service whose replicas cannot load their model
does not start, says why with the engine's error, and leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install '.[ray]')")

pytestmark = pytest.mark.slow


def test_a_service_that_cannot_load_its_model_stops_with_the_engines_error(tmp_path):
    missing = tmp_path / "no-model"
    command = [sys.executable, "-m", "qwen3tts_plugin", "serve-ray", "--replicas", "2"]
    command += ["--gpus-per-replica", "0", "--set", f"ModelPath={missing}", "--port", "0"]
    before = {p.pid for p in psutil.process_iter()}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"}
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: model_not_found: " in done.stderr and str(missing) in done.stderr
    assert "serving" not in done.stdout
    deadline = time.monotonic() + 30
    while strays := ray_processes(before):
        assert time.monotonic() < deadline, strays
        time.sleep(0.5)


def test_serve_ray_refuses_impossible_replica_counts():
    command = [sys.executable, "-m", "qwen3tts_plugin", "serve-ray", "--min-replicas", "3"]
    done = subprocess.run([*command, "--max-replicas", "2"], capture_output=True, text=True)
    assert done.returncode == 2 and "--min-replicas" in done.stderr


def ray_processes(before: set[int]) -> list[str]:
    """Ray's processes (workers, raylet, GCS) started since ``before`` and still alive."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if process.pid not in before and ("ray::" in line or "/ray/" in line):
            found.append(line[:120])
    return found
