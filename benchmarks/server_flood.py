"""The example host's server under a flood: ``python -m benchmarks.server_flood [--json OUT]``.

A real ``python -m example_host serve`` process (default limits) on the tiny checkpoint:

1. **200 concurrent previews** (one connection each, all sent at once) while a poller asks
   ``GET /api/tts/status`` every 50 ms: the status latency (median, p95, max), how many
   previews were spoken and how many were answered ``503 server_busy`` (connection cap or
   synthesis queue), and anything else.
2. **300 stalled connections** (each sends half a request head and waits): how each one ended
   (``503`` at once over the connection cap, closed to make room for a newer connection, or
   closed at the head deadline), status latency while they are held, how long until the server
   had closed them all, its open file descriptors before, during and after, and how many bytes
   its stderr grew by.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from example_host.serving import Limits

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PREVIEWS = 200
STALLED = 300
PREVIEW = {"text": "Hello there.", "generation": {"max_new_tokens": 8, "allow_cut": True}}


class Server:
    """``python -m example_host serve`` on a free loopback port, stderr kept in a file."""

    def __init__(self, model_dir: Path, folder: Path) -> None:
        settings = folder / "settings.json"
        config = {"provider": "qwen3_tts", "extra_params": {"ModelPath": str(model_dir)}}
        settings.write_text(json.dumps({"configs": {"qwen3_tts_default": config}}))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.stderr_path = folder / "stderr.log"
        self.command = [sys.executable, "-m", "example_host", "--settings", str(settings)]
        self.command += ["serve", "--port", str(self.port)]
        self.env = {**os.environ, "EXAMPLE_HOST_VOICES": str(folder / "voices")}

    def __enter__(self) -> Server:
        self.stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=subprocess.PIPE, stderr=self.stderr
        )
        self.process.stdout.readline()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if request(self.port, "GET", "/api/tts/status")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.stderr.close()

    def fds(self) -> int:
        """Open file descriptors of the server process (Linux)."""
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stderr_bytes(self) -> int:
        return self.stderr_path.stat().st_size


def request(
    port: int, method: str, path: str, body: dict | None = None, timeout: float = 120.0
) -> tuple[int, bytes]:
    """One request on its own connection: status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if body is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class StatusPoller:
    """Asks for the status every ``every`` seconds in a thread; keeps latency and answers."""

    def __init__(self, port: int, every: float = 0.05) -> None:
        self.port, self.every = port, every
        self.latencies: list[float] = []
        self.answers: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                status = request(self.port, "GET", "/api/tts/status", timeout=60)[0]
            except OSError:
                status = 0
            self.latencies.append(time.perf_counter() - started)
            self.answers[status] = self.answers.get(status, 0) + 1
            self.stop.wait(self.every)

    def __enter__(self) -> StatusPoller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "status_median_ms": round(1000 * statistics.median(ordered), 1),
            "status_p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
            "status_max_ms": round(1000 * ordered[-1], 1),
            "status_polls": len(ordered),
            "status_answers": self.answers,
        }


def previews(server: Server, count: int = PREVIEWS) -> dict[str, Any]:
    """``count`` previews at once, with the status polled meanwhile."""
    request(server.port, "POST", "/api/tts/preview", PREVIEW)  # warm: the model resident
    barrier = threading.Barrier(count)

    def one(_: int) -> tuple[int, str]:
        barrier.wait()
        try:
            status, body = request(server.port, "POST", "/api/tts/preview", PREVIEW)
        except OSError as exc:
            return 0, type(exc).__name__
        code = json.loads(body).get("code", "") if status != 200 else "ok"
        return status, code

    started = time.perf_counter()
    with StatusPoller(server.port) as poller, ThreadPoolExecutor(count) as pool:
        outcomes = list(pool.map(one, range(count)))
    wall = time.perf_counter() - started
    counted: dict[str, int] = {}
    for status, code in outcomes:
        counted[f"{status} {code}"] = counted.get(f"{status} {code}", 0) + 1
    return {"previews": count, "wall_s": round(wall, 2), "outcomes": counted, **poller.summary()}


def stalled(server: Server, count: int = STALLED) -> dict[str, Any]:
    """``count`` connections that send half a request head and wait."""
    fds_before, stderr_before = server.fds(), server.stderr_bytes()
    sockets = []
    started = time.perf_counter()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(b"GET /api/tts/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sockets.append(sock)
    time.sleep(0.5)
    fds_during = server.fds()
    with StatusPoller(server.port, every=0.1) as poller:
        time.sleep(2)
    endings: dict[str, int] = {}
    closed_at = []
    for sock in sockets:
        sock.settimeout(60)
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except OSError:
            pass
        closed_at.append(time.perf_counter() - started)
        if data.startswith(b"HTTP/1.1 503"):
            ending = "503 server_busy at once (over the cap, none stalled long enough to close)"
        elif closed_at[-1] < Limits.head_timeout - 1:
            ending = "closed to make room for a newer connection"
        else:
            ending = f"closed at the {Limits.head_timeout:g} s head deadline"
        endings[ending] = endings.get(ending, 0) + 1
        sock.close()
    time.sleep(0.5)
    return {
        "stalled": count,
        "endings": endings,
        "all_closed_by_server_s": round(max(closed_at), 2),
        "server_fds": {"before": fds_before, "during": fds_during, "after": server.fds()},
        "stderr_growth_bytes": server.stderr_bytes() - stderr_before,
        "status_while_stalled": poller.summary(),
        "status_after": request(server.port, "GET", "/api/tts/status")[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server_flood")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--previews", type=int, default=PREVIEWS)
    parser.add_argument("--stalled", type=int, default=STALLED)
    args = parser.parse_args(argv)
    from qwen3tts_plugin.testing import tiny_checkpoint

    with (
        tempfile.TemporaryDirectory(prefix="bench-flood-") as folder,
        Server(tiny_checkpoint("custom_voice"), Path(folder)) as server,
    ):
        results = {
            "previews": previews(server, args.previews),
            "stalled": stalled(server, args.stalled),
        }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
