"""``dub --cluster``'s client against services that do not answer (no Ray needed): a request
is tried again and again, then fails typed, never silently."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

from example_host import cluster
from hookspecs import EngineConfig, SynthesisRequest


@pytest.fixture
def hangs_up():
    """A server that accepts each connection and closes it unanswered, counting them (what a
    client sees of a replica that dies with its request)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            connection.recv(65536)
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    server.close()


def test_a_request_without_an_answer_is_retried_then_fails_typed(hangs_up, tmp_path):
    url, accepted = hangs_up
    client = cluster.ClusterEngine(url, tries=3, backoff_s=0.01)
    request = SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts"), text="Hello.", out_path=tmp_path / "a.wav"
    )
    [item] = client.tts_synthesize_batch(requests=[request])
    assert item.error.code == "service_unavailable"
    assert "3 tries" in item.error.detail and item.error.hint
    assert len(accepted) == 3 and client.retried == 2
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_an_untyped_answer_from_something_else_fails_at_once(tmp_path):
    """A URL that is not the service (a 404 page) is not retried as if a replica had died."""

    class NotTheService(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"<html>Not Found</html>")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotTheService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = cluster.ClusterEngine(f"http://127.0.0.1:{server.server_port}", tries=3)
        request = SynthesisRequest(
            config=EngineConfig(provider="qwen3_tts"), text="Hi.", out_path=tmp_path / "a.wav"
        )
        [item] = client.tts_synthesize_batch(requests=[request])
    finally:
        server.shutdown()
    assert item.error.code == "service_unavailable" and "HTTP 404" in item.error.detail
    assert "after 1 try;" in item.error.detail and client.retried == 0


def test_dub_cluster_stops_at_once_when_the_service_is_not_there(host, settings, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = tmp_path / "lines.txt"
    script.write_text("Hello.\n", encoding="utf-8")
    code, _, err = host(
        "--settings", settings, "dub", script, "--out-dir", tmp_path / "out",
        "--cluster", f"http://127.0.0.1:{port}",
    )  # fmt: skip
    assert code == 2 and "service_unavailable" in err and "serve-ray" in err
    assert not (tmp_path / "out").exists()


# --- dub with several lists in flight (what --cluster does), on the installed engine -------


def lines_dub(pm, tiny, tmp_path, lines, out, **options):
    from example_host import dubbing
    from example_host.scripts import read_script
    from hookspecs import GenerationParams

    script = tmp_path / "lines.txt"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = EngineConfig(
        provider="qwen3_tts",
        extra_params={"ModelPath": str(tiny["custom_voice"]), "Device": "cpu", "MaxChars": 60},
    )
    generation = GenerationParams(seed=3, max_new_tokens=12, allow_cut=True)
    return dubbing.dub(pm, config, read_script(script), tmp_path / out, generation, **options)


def test_lists_in_flight_settle_as_they_end_with_the_audio_of_one_at_a_time(pm, tiny, tmp_path):
    lines = [f"Line number {n}, spoken on its own." for n in range(6)]
    settled = []
    one = lines_dub(pm, tiny, tmp_path, lines, "one", batch_size=1)
    many = lines_dub(
        pm, tiny, tmp_path, lines, "many", batch_size=1, lists_in_flight=3,
        on_settled=settled.append,
    )  # fmt: skip
    assert (one.ok, many.ok) == (6, 6)
    assert sorted(e.segment.number for events in settled for e in events) == list(range(1, 7))
    for n in range(1, 7):
        name = f"seg_{n:04d}.wav"
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()
    manifest = json.loads((tmp_path / "many" / "manifest.json").read_text())
    assert [entry["status"] for entry in manifest["segments"]] == ["ok"] * 6


def test_lists_in_flight_start_no_new_list_after_a_failure(pm, tiny, tmp_path):
    lines = [f"Line {n}." for n in range(10)]
    lines[1] = "This line is far longer than the sixty characters MaxChars allows here."
    report = lines_dub(pm, tiny, tmp_path, lines, "out", batch_size=1, lists_in_flight=3)
    assert report.stopped_by.code == "text_too_long"
    assert report.failed == 1 and report.not_run >= 5, (report.ok, report.not_run)
