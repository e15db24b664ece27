"""The example host's server as a hostile client meets it: other sites' pages, rebinding
names, missing tokens, bodies it cannot parse, floods of previews, stalled and surplus
connections, log floods, concurrent writers of the settings file."""

from __future__ import annotations

import json
import logging
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

import hookspecs
from example_host.guard import Access
from example_host.http import SynthesisQueue, create_app
from example_host.serving import Limits, RepeatLimit, protect_logs, uvicorn_config
from example_host.settings_store import SettingsStore

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what the dev extra installs
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

FAST = {"max_new_tokens": 8, "seed": 1, "allow_cut": True}
CONFIG = "qwen3_tts_default"
HOST = [sys.executable, "-m", "example_host"]


@pytest.fixture
def settings(tmp_path, tiny):
    path = tmp_path / "settings.json"
    config = {
        "provider": "qwen3_tts",
        "extra_params": {"ModelPath": str(tiny["custom_voice"]), "Device": "cpu"},
    }
    path.write_text(json.dumps({"configs": {CONFIG: config}}))
    return path


def client_for(app, base_url="http://127.0.0.1:8765") -> TestClient:
    return TestClient(app, base_url=base_url)


def is_typed(response) -> bool:
    body = response.json()
    return set(body) == {"code", "detail", "hint"} and body["code"] and body["detail"]


# --- who may call -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST"])
def test_a_loopback_server_answers_its_loopback_names(settings, pm, tmp_path, host):
    with client_for(create_app(settings, pm=pm, voices_path=tmp_path / "v")) as client:
        assert client.get("/api/tts/status", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("path", ["/api/tts/settings", "/"])
def test_a_rebinding_name_is_refused_before_any_route(settings, pm, tmp_path, path):
    """DNS rebinding: attacker.example resolves to 127.0.0.1; the Host header still says so."""
    with client_for(create_app(settings, pm=pm, voices_path=tmp_path / "v")) as client:
        response = client.get(path, headers={"host": "attacker.example:8765"})
    assert response.status_code == 403 and response.json()["code"] == "forbidden_host"
    assert is_typed(response) and "attacker.example" in response.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://attacker.example"},
        {"origin": "null"},  # a sandboxed frame, a file:// page
        {"origin": "http://127.0.0.1:9999"},  # another local server's page
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_another_pages_request_is_refused_and_changes_nothing(settings, pm, tmp_path, headers):
    before = settings.read_bytes()
    with client_for(create_app(settings, pm=pm, voices_path=tmp_path / "v")) as client:
        body = {"extra_params": {"Device": "cuda:0"}}
        put = client.put(f"/api/tts/settings/{CONFIG}", json=body, headers=headers)
        preview = client.post("/api/tts/preview", json={"text": "Hi."}, headers=headers)
    for response in (put, preview):
        assert response.status_code == 403 and response.json()["code"] == "forbidden_origin"
        assert is_typed(response)
    assert settings.read_bytes() == before


def test_the_servers_own_page_may_call_it(settings, pm, tmp_path):
    own = {"origin": "http://127.0.0.1:8765", "sec-fetch-site": "same-origin"}
    with client_for(create_app(settings, pm=pm, voices_path=tmp_path / "v")) as client:
        put = client.put(f"/api/tts/settings/{CONFIG}", json={"extra_params": {}}, headers=own)
        page = client.get("/", headers={"sec-fetch-site": "cross-site"})  # a link to the page
    assert put.status_code == 200
    assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"  # the URL may carry the token


def test_beyond_loopback_every_api_route_needs_the_token(settings, pm, tmp_path):
    app = create_app(
        settings, pm=pm, voices_path=tmp_path / "v", access=Access("0.0.0.0", token="s3cret")
    )
    with client_for(app, "http://studio-pc.lan:8765") as client:
        for path in ("/api/tts/status", "/api/tts/settings", "/api/tts/voices"):
            refused = client.get(path)
            assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
            assert refused.headers["www-authenticate"] == "Bearer" and is_typed(refused)
            wrong = client.get(path, headers={"authorization": "Bearer s3cre"})
            assert wrong.status_code == 401
            assert client.get(path, headers={"authorization": "Bearer s3cret"}).status_code == 200
            assert client.get(f"{path}?token=s3cret").status_code == 200
        assert client.get("/").status_code == 200  # the page holds no data; it sends the token
        assert client.get("/static/app.js").status_code == 200


def test_serve_beyond_loopback_generates_a_token_and_prints_it_once(settings, tmp_path):
    """A real ``serve`` on 0.0.0.0: the URL it prints carries a random token that works."""
    env = {"EXAMPLE_HOST_VOICES": str(tmp_path / "v")}
    with serve_process(settings, ["--host", "0.0.0.0"], env) as (line, port):
        assert "?token=" in line
        token = line.split("?token=")[1].split()[0]
        assert len(token) >= 24
        assert http_get(port, "/api/tts/status")[0] == 401
        assert http_get(port, f"/api/tts/status?token={token}")[0] == 200


def test_a_token_from_the_environment_is_never_printed(settings, tmp_path):
    env = {"EXAMPLE_HOST_TOKEN": "from-env-77", "EXAMPLE_HOST_VOICES": str(tmp_path / "v")}
    with serve_process(settings, ["--host", "0.0.0.0", "-v"], env) as (line, port):
        assert "from-env-77" not in line and "EXAMPLE_HOST_TOKEN" in line
        assert http_get(port, "/api/tts/status?token=from-env-77")[0] == 200
        process = serve_process.current
    assert "from-env-77" not in process.stdout_text + process.stderr_text  # access log: redacted


# --- every error is typed -----------------------------------------------------------------


def test_framework_errors_are_typed(settings, pm, tmp_path):
    with client_for(create_app(settings, pm=pm, voices_path=tmp_path / "v")) as client:
        missing = client.get("/api/tts/nope")
        wrong_method = client.delete("/api/tts/settings")
        not_utf8 = client.post(
            "/api/tts/preview",
            content=b'{"text": "\xff\xfe"}',
            headers={"content-type": "application/json"},
        )
        no_boundary = client.post(
            "/api/tts/voices", content=b"xx", headers={"content-type": "multipart/form-data"}
        )
        broken_json = client.post(
            "/api/tts/preview", content=b"{bad", headers={"content-type": "application/json"}
        )
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"
    assert "GET" in wrong_method.json()["hint"]
    assert not_utf8.status_code == 400 and "UTF-8" in not_utf8.json()["detail"]
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["detail"]
    assert broken_json.status_code == 422 and broken_json.json()["code"] == "invalid_request"
    for response in (missing, wrong_method, not_utf8, no_boundary, broken_json):
        assert is_typed(response), response.text
        assert "object at 0x" not in response.text


# --- the synthesis queue ------------------------------------------------------------------


class Gate:
    """Holds every ``tts_synthesize`` call until opened: a hook wrapper around the real engine,
    so a test decides how long a synthesis takes (nothing else about it is changed)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.waiting = threading.Semaphore(0)

    @hookspecs.hookimpl(wrapper=True)
    def tts_synthesize(self, request):
        self.waiting.release()
        self.open.wait(timeout=30)
        return (yield)


def test_a_full_queue_answers_busy_at_once_and_status_never_waits(settings, tmp_path):
    pm = hookspecs.plugin_manager()
    gate = Gate()
    pm.register(gate)
    queue = SynthesisQueue(workers=1, depth=1)
    app = create_app(settings, pm=pm, voices_path=tmp_path / "v", synthesis=queue)
    body = {"text": "Hi.", "voice": {"mode": "custom_voice"}, "generation": FAST}
    with client_for(app) as client, ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, "/api/tts/preview", json=body)
        assert gate.waiting.acquire(timeout=30)  # one in the engine
        waiting = pool.submit(client.post, "/api/tts/preview", json=body)
        deadline = time.monotonic() + 10
        while queue.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.perf_counter()
        busy = client.post("/api/tts/preview", json=body)
        refused_in = time.perf_counter() - started
        started = time.perf_counter()
        for path in ("/api/tts/status", "/api/tts/settings", "/api/tts/engines", "/api/tts/voices"):
            assert client.get(path).status_code == 200
        others_in = time.perf_counter() - started
        gate.open.set()
        assert running.result(timeout=60).status_code == 200
        assert waiting.result(timeout=60).status_code == 200
    assert busy.status_code == 503 and busy.json()["code"] == "server_busy" and is_typed(busy)
    assert busy.headers["retry-after"] == "2"
    assert refused_in < 1.0 and others_in < 5.0  # nothing waited for the engine


def test_a_preview_whose_client_left_before_its_turn_never_runs():
    import asyncio

    queue = SynthesisQueue(workers=1, depth=5)
    release, ran = threading.Event(), []

    async def scenario():
        first = asyncio.ensure_future(queue.run(release.wait))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(queue.run(lambda: ran.append(1)))
        await asyncio.sleep(0.05)
        second.cancel()  # the client disconnected while waiting
        await asyncio.sleep(0.05)
        release.set()
        await first
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    queue.close()
    assert ran == [] and queue.taken == 0


# --- connections: a real server -----------------------------------------------------------


class Served:
    """The app under uvicorn with ``serving``'s protocol, in a thread, on a free port."""

    def __init__(self, app, limits: Limits) -> None:
        import uvicorn

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(app, limits))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        data = read_all(sock)
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (None: still open after ``seconds``)."""
    sock.settimeout(seconds)
    started = time.monotonic()
    try:
        read_all(sock)
    except TimeoutError:
        return None
    return time.monotonic() - started


@pytest.fixture
def served(settings, pm, tmp_path):
    limits = Limits(max_connections=20, head_timeout=0.5, body_timeout=0.5, keep_alive_timeout=1)
    with Served(create_app(settings, pm=pm, voices_path=tmp_path / "v"), limits) as server:
        yield server


def test_stalled_and_idle_connections_are_closed(served):
    silent = socket.create_connection(("127.0.0.1", served.port))
    half_head = socket.create_connection(("127.0.0.1", served.port))
    half_head.sendall(b"GET /api/tts/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    slow_loris = socket.create_connection(("127.0.0.1", served.port))
    half_body = socket.create_connection(("127.0.0.1", served.port))
    half_body.sendall(
        b"PUT /api/tts/settings/qwen3_tts_default HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )

    def drip():  # a byte every 0.2 s never completes the head: the deadline is not re-armed
        for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaa":
            try:
                slow_loris.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.2)

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    for sock in (silent, half_head, slow_loris, half_body):
        assert closed_within(sock, 5.0) is not None
        sock.close()
    keep_alive = socket.create_connection(("127.0.0.1", served.port))
    keep_alive.sendall(b"GET /api/tts/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert keep_alive.recv(65536).startswith(b"HTTP/1.1 200")
    assert 0.5 < closed_within(keep_alive, 5.0) < 3.0  # idle after its answer: closed at 1 s
    keep_alive.close()


def test_connections_over_the_cap_are_answered_busy_and_the_server_recovers(served):
    # 20 connections just opened: none has waited evict_after (1 s) yet, so none is closed
    held = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(20)]
    extra = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    answer = read_all(extra)
    extra.close()
    assert answer.startswith(b"HTTP/1.1 503")
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["code"] == "server_busy" and b"retry-after: 1" in answer.lower()
    for sock in held:
        sock.close()
    time.sleep(0.2)
    assert http_get(served.port, "/api/tts/status")[0] == 200


def test_connections_that_send_nothing_cannot_keep_a_client_out(settings, pm, tmp_path):
    limits = Limits(max_connections=20, head_timeout=60, evict_after=0.3)
    app = create_app(settings, pm=pm, voices_path=tmp_path / "v")
    with Served(app, limits) as server:
        stalled = []
        for _ in range(20):
            stalled.append(socket.create_connection(("127.0.0.1", server.port)))
            time.sleep(0.01)
        stalled[-1].sendall(b"GET /api/tts/status HTTP/1.1\r\n")  # a head begun, never ended
        time.sleep(0.5)
        with ThreadPoolExecutor(10) as pool:  # 10 clients at once over a full cap
            answers = list(pool.map(lambda _: http_get(server.port, "/api/tts/status"), range(10)))
        assert [status for status, _ in answers] == [200] * 10
        time.sleep(0.2)
        closed = [i for i, sock in enumerate(stalled) if closed_within(sock, 0.1) is not None]
        # as many as needed, the oldest first
        assert 1 <= len(closed) <= 10 and closed == list(range(len(closed)))
        for sock in stalled:
            sock.close()


def test_a_flood_of_bad_requests_writes_a_few_log_lines(served, caplog):
    protect_logs(burst=3, window=60)
    try:
        with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
            for _ in range(50):
                with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
                    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                    read_all(sock)
    finally:
        for name in ("uvicorn.error", "asyncio", "uvicorn.access"):
            for f in list(logging.getLogger(name).filters):
                logging.getLogger(name).removeFilter(f)
    invalid = [r for r in caplog.records if "Invalid HTTP request" in r.getMessage()]
    assert len(invalid) == 3
    assert http_get(served.port, "/api/tts/status")[0] == 200


def test_repeat_limit_says_how_many_it_dropped():
    repeat = RepeatLimit(burst=2, window=0.2)
    record = lambda: logging.LogRecord("x", logging.WARNING, "f", 1, "boom", None, None)  # noqa: E731
    passed = [repeat.filter(r) for r in [record() for _ in range(5)]]
    assert passed == [True, True, False, False, False]
    time.sleep(0.25)
    later = record()
    assert repeat.filter(later) and "3 more like it" in later.getMessage()


# --- concurrent writers -------------------------------------------------------------------


def set_keys(path: str, prefix: str, count: int) -> None:
    store = SettingsStore(path)
    for n in range(count):
        store.update_extra_params(CONFIG, {f"{prefix}{n}": n})


def test_concurrent_writers_in_several_processes_lose_nothing(settings):
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=set_keys, args=(str(settings), f"p{p}_", 10)) for p in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    params = json.loads(settings.read_text())["configs"][CONFIG]["extra_params"]
    assert {f"p{p}_{n}" for p in range(4) for n in range(10)} <= set(params)
    assert list(settings.parent.glob(".settings.json.*.tmp")) == []


def test_concurrent_puts_and_a_cli_set_lose_nothing(settings, pm, tmp_path):
    changes = {
        "Speaker": "ryan",
        "Language": "English",
        "Instruct": "calm",
        "PieceChars": 300,
        "MaxChars": 5000,
        "BatchSize": 4,
        "Precision": "fp32",
        "Attention": "sdpa",
    }
    cli = subprocess.Popen(
        [*HOST, "--settings", str(settings), "settings", "set", "XVectorOnly", "false"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with client_for(create_app(settings, pm=pm, voices_path=tmp_path / "v")) as client:

        def put(item):
            return client.put(f"/api/tts/settings/{CONFIG}", json={"extra_params": dict([item])})

        with ThreadPoolExecutor(8) as pool:
            assert all(r.status_code == 200 for r in pool.map(put, changes.items()))
    _, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    params = json.loads(settings.read_text())["configs"][CONFIG]["extra_params"]
    assert {key: params[key] for key in changes} == changes and params["XVectorOnly"] is False


def test_cli_refuses_an_unknown_setting_name(settings):
    before = settings.read_bytes()
    done = subprocess.run(
        [*HOST, "--settings", str(settings), "settings", "set", "Devcie", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "invalid_settings" in done.stderr and "did you mean Device?" in done.stderr
    assert settings.read_bytes() == before


# --- a real `serve` process ---------------------------------------------------------------


class serve_process:
    """``python -m example_host serve`` on a free port; yields its first stdout line and port."""

    current: subprocess.Popen | None = None

    def __init__(self, settings, extra: list[str], env: dict[str, str]) -> None:
        import os

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.command = [sys.executable, "-m", "example_host", "--settings", str(settings)]
        self.command += ["serve", "--port", str(self.port), *extra]
        self.env = {**os.environ, **env}

    def __enter__(self):
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        serve_process.current = self.process
        line = self.process.stdout.readline()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                http_get(self.port, "/", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        return line, self.port

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        out, err = self.process.communicate(timeout=30)
        self.process.stdout_text, self.process.stderr_text = out, err


def test_a_client_that_leaves_a_streamed_preview_stops_the_engines_work(served, engine):
    """The listener closes the page mid-sentence: the server notices at its next chunk, closes
    the engine's stream, and the row leaves the loop (the engine is idle long before the 175
    frames still to come would have taken)."""
    body = json.dumps(
        {
            "text": "The river bends twice before it reaches the old mill, and nobody "
            "remembers who built it.",
            "voice": {"speaker": "vivian"},
            "generation": {"do_sample": True, "seed": 6, "temperature": 1.5, "max_new_tokens": 300},
        }
    ).encode()
    sock = socket.create_connection(("127.0.0.1", served.port))
    sock.sendall(
        b"POST /api/tts/preview/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200") and b"pcm_s16le" in head
    assert engine.busy  # still speaking
    sock.close()
    left = time.monotonic()
    while engine.busy and time.monotonic() - left < 30:
        time.sleep(0.01)
    assert time.monotonic() - left < 1.5  # the whole text takes 2.5 s or more here
