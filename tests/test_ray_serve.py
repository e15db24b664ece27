"""The engine as a Ray Serve application, on a local Ray with two CPU replicas and the tiny
checkpoint: dubbing through it, a replica dying mid-dub, typed errors over the wire, a clean
start and stop. Skipped where Ray Serve is not installed (the ``[ray]`` extra)."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install '.[ray]')")

import psutil
import soundfile

import hookspecs
from example_host import cluster, dubbing
from example_host.scripts import read_script
from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, Voice
from hookspecs.wire import REPLICA_HEADER, RESULT_HEADER
from qwen3tts_plugin import ray_serve

pytestmark = pytest.mark.slow

SEED = 7
FRAMES = 24
LINES = [
    f"Line {n}: " + " ".join(["the quick brown fox jumps"] * (1 + n % 3)) + "." for n in range(32)
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service(tiny):
    """Two CPU replicas of the tiny custom_voice model; afterwards, Ray gone with every process
    it started."""
    options = ray_serve.ServiceOptions(
        settings={"ModelPath": str(tiny["custom_voice"])}, replicas=2, cpus_per_replica=1
    )
    before = set(psutil.Process().children(recursive=True))  # other tests' (a browser)
    url = ray_serve.start(options, port=free_port())
    try:
        yield url
    finally:
        ray_serve.stop()
        deadline = time.monotonic() + 30
        while set(psutil.Process().children(recursive=True)) - before:
            if time.monotonic() > deadline:
                left = set(psutil.Process().children(recursive=True)) - before
                raise AssertionError(f"processes left after stop: {[p.name() for p in left]}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("script") / "script.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def local_dub(tiny, script, tmp_path_factory):
    """The script dubbed by the installed engine in this process: the reference. With one
    torch thread, as each replica has (one CPU each): the codec's float32 sums round
    differently with another thread count (6e-8, measured), which can move a 16-bit sample
    by one step."""
    import torch

    out_dir = tmp_path_factory.mktemp("local")
    pm = hookspecs.plugin_manager()
    config = EngineConfig(
        provider="qwen3_tts",
        extra_params={"ModelPath": str(tiny["custom_voice"]), "Device": "cpu"},
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = dubbing.dub(pm, config, read_script(script), out_dir, generation(), batch_size=8)
    finally:
        torch.set_num_threads(threads)
    assert report.ok == len(LINES)
    return out_dir


def generation() -> GenerationParams:
    return GenerationParams(seed=SEED, max_new_tokens=FRAMES, allow_cut=True)


def cluster_dub(url, script, out_dir, client):
    """``dub --cluster`` as the CLI sets it up, with ``client`` to look at afterwards."""
    service = client.service()
    pm = hookspecs.plugin_manager(load_entrypoints=False)
    pm.register(client)
    config = EngineConfig(provider=service["provider"], extra_params=service["settings"])
    return dubbing.dub(
        pm,
        config,
        read_script(script),
        out_dir,
        generation(),
        voice=Voice(mode=service["voice_modes"][0]),
        lists_in_flight=client.in_flight,
    )


def same_wavs(one, other) -> None:
    for number in range(1, len(LINES) + 1):
        name = dubbing.wav_name(number)
        assert (one / name).read_bytes() == (other / name).read_bytes(), name


def test_a_dub_through_the_service_is_the_local_dub_spread_over_both_replicas(
    service, script, local_dub, tmp_path
):
    client = cluster.ClusterEngine(service, in_flight=16)
    report = cluster_dub(service, script, tmp_path, client)
    assert (report.ok, report.failed) == (len(LINES), 0)
    same_wavs(tmp_path, local_dub)
    assert len(client.served) == 2, client.served  # both replicas spoke
    assert min(client.served.values()) >= 4, client.served
    assert client.retried == 0


def test_dub_cluster_from_the_cli_resumes_like_a_local_dub(host, settings, service, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("Hello there.\n...\nA second line.\n", encoding="utf-8")
    argv = ["--settings", settings, "dub", lines, "--out-dir", tmp_path / "out"]
    argv += ["--cluster", service, "--seed", SEED, "--max-new-tokens", FRAMES, "--allow-cut"]
    code, out, err = host(*argv)
    assert code == 0, err
    assert "ok        2" in out and "skipped   1" in out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["cluster"] == service
    assert [e["status"] for e in manifest["segments"]] == ["ok", "skipped", "ok"]
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.wav")}
    code, out, err = host(*argv)
    assert code == 0 and "resumed   2" in out, out + err
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.wav")} == first


def post(url, path, body):
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_bad_input_comes_back_typed_with_the_hosts_status(service):
    status, _, body = post(service, "/v1/synthesize", {"text": " ... "})
    assert status == 422 and json.loads(body)["code"] == "empty_text"
    status, _, body = post(
        service, "/v1/synthesize", {"text": "Hi.", "voice": {"speaker": "nobody"}}
    )
    assert status == 422 and json.loads(body)["code"] == "unsupported_speaker"
    status, _, body = post(service, "/v1/synthesize", {"text": "Hi.", "settings": {"Device": "x"}})
    error = json.loads(body)
    assert status == 422 and error["code"] == "invalid_settings" and "Device" in error["detail"]
    refused = ({"Precision": "bf16"}, {"Backend": "qwen_tts"}, {"RefAudio": "/etc/hosts"})
    for settings in (*refused, {"MaxChars": 10**6}, {"PieceChars": 300}):
        status, _, body = post(service, "/v1/synthesize", {"text": "Hi.", "settings": settings})
        error = json.loads(body)
        assert status == 422 and error["code"] == "invalid_settings", settings
        assert next(iter(settings)) in error["detail"]
    status, _, body = post(service, "/v1/nowhere", {})
    assert status == 404 and json.loads(body)["code"] == "not_found"
    status, _, body = post(service, "/v1/synthesize", {"txt": "Hi."})
    assert status == 422 and json.loads(body)["code"] == "invalid_request"
    # through the client, the engine's error is the same TtsError, unretried
    client = cluster.ClusterEngine(service, tries=3)
    [item] = client.tts_synthesize_batch(requests=[request_for(service, "  ", client)])
    assert item.error.code == "empty_text" and client.retried == 0


def request_for(url, text, client):
    service = client.service()
    config = EngineConfig(provider=service["provider"], extra_params=service["settings"])
    return SynthesisRequest(config=config, text=text, out_path="/nonexistent/never.wav")


def test_openai_speech_route_speaks_wav_and_pcm_and_refuses_what_it_cannot_do(service):
    ask = {"model": "tts-1", "input": "Hello there.", "voice": "alloy"}
    status, headers, wav = post(service, "/v1/audio/speech", ask)
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="int16")
    assert rate == 24000 and len(samples) > 0
    assert json.loads(headers[RESULT_HEADER])["sample_rate"] == 24000
    assert headers[REPLICA_HEADER]
    status, headers, pcm = post(service, "/v1/audio/speech", {**ask, "response_format": "pcm"})
    assert status == 200 and headers["Content-Type"] == "audio/pcm"
    assert len(pcm) % 2 == 0 and len(pcm) > 0
    for refused in ({"response_format": "mp3"}, {"speed": 1.5}, {"voice": "nobody"}):
        status, _, body = post(service, "/v1/audio/speech", {**ask, **refused})
        error = json.loads(body)["error"]
        assert status == 422 and error["code"] in ("invalid_request", "unsupported_speaker")
        assert error["type"] == "invalid_request_error" and error["message"]


def test_killing_a_replica_mid_dub_loses_nothing(service, script, local_dub, tmp_path):
    """One replica is killed while requests are in flight: those are sent again and served by
    the other (or the replica Serve starts in its place); the dub finishes whole."""
    import ray

    client = cluster.ClusterEngine(service, in_flight=16, backoff_s=0.2)
    killed = []

    def kill_one_when_busy() -> None:
        """Mid-way through the second wave: every segment here has the same frame budget, so a
        replica's 8 requests end together; once the first wave's 16 are in (time T), each
        replica holds the next 8, and a kill at 1.4 T lands while they are being spoken."""
        started = time.monotonic()
        while sum(client.served.values()) < 16:
            time.sleep(0.005)
        wave = time.monotonic() - started
        time.sleep(0.4 * wave)
        replicas = [
            actor["name"]
            for actor in ray.util.list_named_actors(all_namespaces=True)
            if ray_serve.DEPLOYMENT_NAME in actor["name"]
        ]
        # the replica with the fewest answers is the one still speaking its requests (the first
        # listed could have answered all of its own already: 9 and 16 seen here once)
        victim = min(replicas, key=lambda name: client.served[name.rsplit("#", 1)[-1]])
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        killed.append((victim, dict(client.served), round(wave, 2)))

    killer = threading.Thread(target=kill_one_when_busy, daemon=True)
    killer.start()
    report = cluster_dub(service, script, tmp_path, client)
    killer.join(timeout=60)
    assert killed, "no replica was killed"
    assert (report.ok, report.failed) == (len(LINES), 0)
    for number in range(1, len(LINES) + 1):
        assert soundfile.info(str(tmp_path / dubbing.wav_name(number))).frames > 0
    same_wavs(tmp_path, local_dub)
    assert client.retried >= 1, (killed, client.served)
