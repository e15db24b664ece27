"""The example host's HTTP routes via FastAPI's TestClient: settings, engines, preview, errors."""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hookspecs
from example_host.http import HOST_CODES, STATUS_BY_CODE, create_app, status_for
from hookspecs.wire import HTTP_STATUS, WIRE_CODES

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what the dev extra installs
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

FAST = {"max_new_tokens": 8, "seed": 1, "allow_cut": True}


def local_client(app) -> TestClient:
    """A client that reaches the app by a loopback name, as a browser on this machine does
    (the access guard refuses TestClient's default Host, ``testserver``)."""
    return TestClient(app, base_url="http://127.0.0.1:8765")


@pytest.fixture
def settings(tmp_path, tiny):
    path = tmp_path / "settings.json"
    config = {
        "provider": "qwen3_tts",
        "enabled": True,
        "extra_params": {"ModelPath": str(tiny["custom_voice"]), "Device": "cpu"},
    }
    path.write_text(json.dumps({"configs": {"qwen3_tts_default": config}}))
    return path


@pytest.fixture
def client(settings, pm, tmp_path):
    app = create_app(settings, pm=pm, voices_path=tmp_path / "voices")
    with local_client(app) as test_client:
        yield test_client


def preview_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("example_host-preview-*"))


def test_get_settings_and_engines(client, settings):
    assert client.get("/api/tts/settings").json() == json.loads(settings.read_text())
    [caps] = client.get("/api/tts/engines").json()
    assert caps["provider"] == "qwen3_tts" and "Device" in caps["settings_schema"]["properties"]
    [chosen] = [m for m in caps["models"] if m["configured"]]  # the config's ModelPath
    assert (
        chosen["local_path"]
        == json.loads(settings.read_text())["configs"]["qwen3_tts_default"]["extra_params"][
            "ModelPath"
        ]
    )
    assert chosen["valid"] and chosen["kind"] == "custom_voice"


def test_status_route_reports_what_is_resident(client, engine):
    engine.release()
    [status] = client.get("/api/tts/status").json()
    assert status["provider"] == "qwen3_tts" and status["loaded"] is False
    assert (
        client.post("/api/tts/preview", json={"text": "Hi.", "generation": FAST}).status_code == 200
    )
    [status] = client.get("/api/tts/status").json()
    assert status["loaded"] and status["device"] == "cpu" and status["last_error"] is None


def test_put_settings_updates_and_removes(client, settings):
    body = {"extra_params": {"Speaker": "ryan", "Device": None}}
    response = client.put("/api/tts/settings/qwen3_tts_default", json=body)
    assert response.status_code == 200
    saved = json.loads(settings.read_text())["configs"]["qwen3_tts_default"]["extra_params"]
    assert saved["Speaker"] == "ryan" and "Device" not in saved
    assert response.json()["config"]["extra_params"] == saved


@pytest.mark.parametrize(
    ("name", "meant"), [("Devcie", "Device"), ("device", "Device"), ("OtherEngineKey", None)]
)
def test_an_unknown_setting_name_is_refused_and_nothing_saved(client, settings, name, meant):
    before = settings.read_bytes()
    body = {"extra_params": {"Speaker": "ryan", name: "cpu"}}
    response = client.put("/api/tts/settings/qwen3_tts_default", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "invalid_settings" and repr(name) in error["detail"]
    if meant:
        assert f"did you mean {meant}?" in error["detail"]
    else:
        assert "did you mean" not in error["detail"]
    assert "Device" in error["hint"]  # the engine's settings are listed
    assert settings.read_bytes() == before


def test_another_engines_stored_key_is_kept_and_can_be_removed(client, settings):
    data = json.loads(settings.read_text())
    data["configs"]["qwen3_tts_default"]["extra_params"]["OtherEngineKey"] = 1
    settings.write_text(json.dumps(data))
    put = client.put(
        "/api/tts/settings/qwen3_tts_default", json={"extra_params": {"Speaker": "ryan"}}
    )
    assert put.status_code == 200 and put.json()["config"]["extra_params"]["OtherEngineKey"] == 1
    removed = client.put(
        "/api/tts/settings/qwen3_tts_default", json={"extra_params": {"OtherEngineKey": None}}
    )
    assert removed.status_code == 200
    assert "OtherEngineKey" not in removed.json()["config"]["extra_params"]


def test_settings_too_large_to_keep_are_refused(client, settings):
    before = settings.read_bytes()
    body = {"extra_params": {"Instruct": "x" * (1024 * 1024 + 1)}}
    response = client.put("/api/tts/settings/qwen3_tts_default", json=body)
    assert response.status_code == 422 and response.json()["code"] == "invalid_settings"
    assert "1,048,576" in response.json()["detail"]
    assert settings.read_bytes() == before


def test_put_a_bad_device_is_refused_and_nothing_saved(client, settings):
    before = settings.read_bytes()
    body = {"extra_params": {"Speaker": "ryan", "Device": "gpu"}}
    response = client.put("/api/tts/settings/qwen3_tts_default", json=body)
    assert response.status_code == 422
    error = response.json()  # the engine's own words (tts_check_settings)
    assert error["code"] == "invalid_device" and "Device 'gpu' is not a device" in error["detail"]
    assert "cuda:0" in error["hint"]
    assert settings.read_bytes() == before


def test_put_to_an_unknown_config_is_404(client):
    response = client.put("/api/tts/settings/nope", json={"extra_params": {"Device": "cpu"}})
    assert response.status_code == 404 and response.json()["code"] == "unknown_config"


def test_preview_returns_a_wav_with_headers_and_leaves_no_file(client):
    before = preview_dirs()
    body = {"text": "Hello there.", "voice": {"speaker": "ryan"}, "generation": FAST}
    response = client.post("/api/tts/preview", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(response.content))
    assert rate == int(response.headers["X-TTS-Sample-Rate"]) == 24_000
    assert len(audio) / rate == pytest.approx(float(response.headers["X-TTS-Duration"]), abs=1e-3)
    assert response.headers["X-TTS-Device"] == "cpu"
    assert response.headers["X-TTS-Dtype"] == "float32"
    assert response.headers["X-TTS-Codec-Dtype"] == "float32"
    assert response.headers["X-TTS-Quantization"] == "none"
    assert float(response.headers["X-TTS-RTF"]) > 0
    assert preview_dirs() == before


LONG = {
    "text": "The river bends twice before it reaches the old mill, and nobody remembers who "
    "built it.",
    "voice": {"speaker": "vivian"},
    "generation": {"do_sample": True, "seed": 6, "temperature": 1.5, "max_new_tokens": 300},
}
"""179 frames on the tiny checkpoint (see test_streaming): several chunks."""


def test_a_streamed_preview_is_raw_pcm_as_it_comes_and_sounds_as_the_wav(client):
    before = preview_dirs()
    whole = client.post("/api/tts/preview", json=LONG)
    expected, rate = sf.read(io.BytesIO(whole.content), dtype="int16")
    with client.stream("POST", "/api/tts/preview/stream", json=LONG) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["X-TTS-Stream"] == "pcm_s16le"
        assert int(response.headers["X-TTS-Sample-Rate"]) == rate
        assert response.headers["X-TTS-Device"] == "cpu"
        assert response.headers["X-TTS-Backend"] == "stepper"
        assert float(response.headers["X-TTS-First-Chunk-Seconds"]) > 0
        parts = list(response.iter_bytes())
    streamed = np.frombuffer(b"".join(parts), dtype="<i2")
    assert streamed.shape == expected.shape
    noise = ((streamed.astype(float) - expected.astype(float)) ** 2).sum()
    assert 10 * np.log10((expected.astype(float) ** 2).sum() / max(noise, 1e-12)) >= 40
    assert preview_dirs() == before


def test_quantization_int8_is_named_by_the_preview_headers_whole_and_streamed(client):
    """Quantization=int8 on the CPU (a real int8 load of the tiny checkpoint): the WAV's
    headers come from its result, the stream's from the engine's status (its first chunk is
    not the last); both say int8, and none again once the setting is dropped."""
    from qwen3tts_plugin.devices import acceleration_status, cpu_int8

    if not cpu_int8(acceleration_status()):
        pytest.skip("this CPU runs no int8 layers: the engine refuses Quantization=int8 here")
    put = client.put(
        "/api/tts/settings/qwen3_tts_default", json={"extra_params": {"Quantization": "int8"}}
    )
    assert put.status_code == 200, put.text
    whole = client.post("/api/tts/preview", json={"text": "Hello.", "generation": FAST})
    assert whole.status_code == 200, whole.text
    assert whole.headers["X-TTS-Quantization"] == "int8"
    assert whole.headers["X-TTS-Codec-Dtype"] == "float32"
    with client.stream("POST", "/api/tts/preview/stream", json=LONG) as response:
        assert response.status_code == 200
        assert response.headers["X-TTS-Quantization"] == "int8"
        assert response.headers["X-TTS-Codec-Dtype"] == "float32"
        assert "X-TTS-RTF" not in response.headers  # the status's headers, not a result's
        assert response.read()
    [status] = client.get("/api/tts/status").json()
    assert status["quantization"] == "int8"

    client.put("/api/tts/settings/qwen3_tts_default", json={"extra_params": {"Quantization": None}})
    response = client.post("/api/tts/preview", json={"text": "Hello.", "generation": FAST})
    assert response.status_code == 200 and response.headers["X-TTS-Quantization"] == "none"


def test_a_streamed_preview_refused_before_its_first_chunk_is_the_usual_json_error(client):
    response = client.post(
        "/api/tts/preview/stream", json={"text": "Hi", "voice": {"speaker": "nobody"}}
    )
    assert response.status_code == status_for("unsupported_speaker")
    assert response.json()["code"] == "unsupported_speaker"


def test_device_from_settings_reaches_the_engine_unchanged(client):
    """cuda:0 on this machine: 503 model_to_device_failed with its hint; auto works again."""
    put = client.put(
        "/api/tts/settings/qwen3_tts_default", json={"extra_params": {"Device": "cuda:0"}}
    )
    assert put.status_code == 200
    before = preview_dirs()
    response = client.post("/api/tts/preview", json={"text": "Hello.", "generation": FAST})
    assert response.status_code == 503
    error = response.json()
    assert error["code"] == "model_to_device_failed" and error["detail"].startswith("cuda:0")
    assert "Device=cpu" in error["hint"]
    assert preview_dirs() == before

    client.put("/api/tts/settings/qwen3_tts_default", json={"extra_params": {"Device": "auto"}})
    response = client.post("/api/tts/preview", json={"text": "Hello.", "generation": FAST})
    assert response.status_code == 200 and response.headers["X-TTS-Device"] == "cpu"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"text": "   ", "generation": FAST}, "empty_text"),
        ({"text": "\u0000\u0007 🎬", "generation": FAST}, "empty_text"),
        ({"text": "Hi", "generation": {"max_new_tokens": 1}}, "invalid_request"),
        ({"text": "Hi", "voice": {"speaker": "nobody"}, "generation": FAST}, "unsupported_speaker"),
        ({"text": "Hi", "generation": {"max_new_tokens": 0}}, "invalid_request"),
        ({"voice": {}}, "invalid_request"),
    ],
)
def test_invalid_preview_input_is_422(client, body, code):
    response = client.post("/api/tts/preview", json=body)
    assert response.status_code == 422 and response.json()["code"] == code


def test_a_non_finite_number_is_422(client):
    body = '{"text": "Hi", "generation": {"temperature": Infinity}}'
    response = client.post(
        "/api/tts/preview", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "generation.temperature" in response.json()["detail"]


def test_too_much_text_is_413_before_any_model_work(client, settings, pm):
    huge = client.post("/api/tts/preview", json={"text": "字" * 210_000})
    assert huge.status_code == 413 and huge.json()["code"] == "text_too_long"
    with local_client(create_app(settings, pm=pm, max_body_bytes=2_000)) as small:
        body = {"text": "a" * 5_000}
        response = small.post("/api/tts/preview", json=body)
        assert response.status_code == 413 and response.json()["code"] == "request_too_large"
        chunks = (
            part for part in [json.dumps(body).encode()[i : i + 500] for i in range(0, 5_100, 500)]
        )
        streamed = small.post(
            "/api/tts/preview", content=chunks, headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413  # no Content-Length: counted as it arrives
        assert (
            small.post("/api/tts/preview", json={"text": "Hi.", "generation": FAST}).status_code
            == 200
        )


def test_a_narration_cut_short_is_422_with_the_piece_named(tmp_path, pm):
    from qwen3tts_plugin.testing import tiny_checkpoint_without_eos

    path = tmp_path / "settings.json"
    config = {
        "provider": "qwen3_tts",
        "extra_params": {"ModelPath": str(tiny_checkpoint_without_eos()), "Device": "cpu"},
    }
    path.write_text(json.dumps({"configs": {"qwen3_tts_default": config}}))
    with local_client(create_app(path, pm=pm)) as client:
        body = {"text": "It never ends.", "generation": {"max_new_tokens": 4}}
        response = client.post("/api/tts/preview", json=body)
        assert response.status_code == 422
        assert response.json()["code"] == "synthesis_truncated"
        body["generation"]["allow_cut"] = True
        response = client.post("/api/tts/preview", json=body)
        assert response.status_code == 200 and response.headers["X-TTS-Cut-Pieces"] == "1"


def write_reference_wav(path: Path, seconds: float = 1.5) -> Path:
    import numpy as np

    t = np.arange(int(24_000 * seconds)) / 24_000
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * 220 * t), 24_000)
    return path


@pytest.mark.parametrize("variant", ["base", "voice_design"])
def test_preview_without_a_mode_speaks_in_the_models_own_mode(
    client, settings, tmp_path, tiny, variant
):
    """A Base (clone) or VoiceDesign ModelPath: the reference or instruct comes from settings.
    RefAudio is a path on the server: the server's owner sets it (the file, the CLI); over
    HTTP it is refused, clone voices come from the library."""
    params = {"ModelPath": str(tiny[variant])}
    if variant == "base":
        ref = str(write_reference_wav(tmp_path / "ref.wav"))
        put = client.put(
            "/api/tts/settings/qwen3_tts_default", json={"extra_params": {"RefAudio": ref}}
        )
        assert put.status_code == 422 and "voice library" in put.json()["detail"]
        data = json.loads(settings.read_text())
        data["configs"]["qwen3_tts_default"]["extra_params"].update(RefAudio=ref)
        settings.write_text(json.dumps(data))
    else:
        params["Instruct"] = "A calm, low voice."
    put = client.put("/api/tts/settings/qwen3_tts_default", json={"extra_params": params})
    assert put.status_code == 200
    for voice in (None, {"language": "English"}):
        body = {"text": "Hello.", "generation": FAST, **({"voice": voice} if voice else {})}
        response = client.post("/api/tts/preview", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "audio/wav"
    # A mode the user chose is sent as chosen.
    body = {"text": "Hello.", "voice": {"mode": "custom_voice"}, "generation": FAST}
    response = client.post("/api/tts/preview", json=body)
    assert response.status_code == 422 and response.json()["code"] == "unsupported_mode"


def test_a_missing_model_is_503(client, tmp_path):
    body = {"extra_params": {"ModelPath": str(tmp_path / "missing")}}
    assert client.put("/api/tts/settings/qwen3_tts_default", json=body).status_code == 200
    response = client.post("/api/tts/preview", json={"text": "Hi", "generation": FAST})
    assert response.status_code == 503 and response.json()["code"] == "model_not_found"


def test_no_engine_installed_is_503(settings):
    app = create_app(settings, pm=hookspecs.plugin_manager(load_entrypoints=False))
    with local_client(app) as client:
        response = client.get("/api/tts/engines")
        assert response.status_code == 503 and response.json()["code"] == "no_engine"
        response = client.post("/api/tts/preview", json={"text": "Hi"})
        assert response.status_code == 503


def test_a_malformed_settings_file_is_500_and_kept(tmp_path, pm):
    path = tmp_path / "settings.json"
    path.write_text("{nope")
    with local_client(create_app(path, pm=pm)) as client:
        response = client.get("/api/tts/settings")
    assert response.status_code == 500 and response.json()["code"] == "settings_file_invalid"
    assert path.read_text() == "{nope"


def test_every_error_code_has_a_documented_http_status():
    codes = set(hookspecs.ERROR_CODES) | set(WIRE_CODES) | set(HOST_CODES)
    assert set(STATUS_BY_CODE) == codes
    assert set(HTTP_STATUS) == set(hookspecs.ERROR_CODES) | set(WIRE_CODES)
    readme = (Path(__file__).parents[1] / "example_host" / "README.md").read_text()
    table = readme[readme.index("| status | codes |") :]
    for code in codes:
        assert f"`{code}`" in table, code
    assert status_for("another_engines_code") == 500


def test_every_code_the_sources_raise_is_listed():
    """A TtsError with a code no list knows would reach a host unmapped."""
    import ast

    root = Path(__file__).parents[1]
    known = {
        "qwen3tts_plugin": set(hookspecs.ERROR_CODES) | set(WIRE_CODES),
        "example_host": set(hookspecs.ERROR_CODES) | set(WIRE_CODES) | set(HOST_CODES),
    }
    for package, codes in known.items():
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                name = getattr(node, "func", None)
                called = getattr(name, "id", getattr(name, "attr", None))
                if called == "TtsError" and node.args and isinstance(node.args[0], ast.Constant):
                    assert node.args[0].value in codes, (path.name, node.args[0].value)


def test_status_mapping():
    assert status_for("invalid_device") == status_for("ref_text_required") == 422
    assert status_for("unsupported_mode") == status_for("unknown_provider") == 422
    assert status_for("unknown_model_key") == status_for("model_invalid") == 503
    assert status_for("synthesis_failed") == status_for("invalid_audio") == 500
    assert status_for("text_too_long") == status_for("request_too_large") == 413
    assert status_for("invalid_text") == status_for("synthesis_truncated") == 422


def test_concurrent_previews_share_generate_calls(client):
    """Listen buttons pressed at once (the route runs each in a worker thread): requests that
    arrive while a generate call runs go together into the next one."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    body = {
        "text": "Hello there.",
        "voice": {"speaker": "ryan"},
        "generation": {"max_new_tokens": 8, "allow_cut": True},
    }
    client.post("/api/tts/preview", json=body)  # the model is resident before the rush
    barrier = threading.Barrier(8)

    def press(_):
        barrier.wait()
        return client.post("/api/tts/preview", json=body)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(press, range(8)))
    assert all(r.status_code == 200 for r in responses)
    assert max(int(r.headers["X-TTS-Batch-Size"]) for r in responses) > 1


# --- the voice library ------------------------------------------------------------------------


@pytest.fixture
def cloning(tmp_path, tiny, pm):
    """A server whose config is the tiny Base (voice cloning) model, with an empty library."""
    path = tmp_path / "clone-settings.json"
    config = {
        "provider": "qwen3_tts",
        "extra_params": {"ModelPath": str(tiny["base"]), "Device": "cpu"},
    }
    path.write_text(json.dumps({"configs": {"qwen3_tts_default": config}}))
    app = create_app(path, pm=pm, voices_path=tmp_path / "voices", max_upload_bytes=400_000)
    with local_client(app) as test_client:
        yield test_client


def upload(client, path, **fields):
    with open(path, "rb") as handle:
        return client.post(
            "/api/tts/voices", files={"file": (path.name, handle, "audio/wav")}, data=fields
        )


def test_a_saved_voice_is_uploaded_listed_spoken_by_id_and_deleted(cloning, tmp_path):
    ref = write_reference_wav(tmp_path / "narrator.wav")
    response = upload(cloning, ref, name="Narrator", ref_text="Hello.")
    assert response.status_code == 201
    voice = response.json()
    assert (voice["name"], voice["ref_text"], voice["duration_s"]) == ("Narrator", "Hello.", 1.5)
    assert str(tmp_path) not in json.dumps(voice)  # no server path ever goes out
    assert [v["id"] for v in cloning.get("/api/tts/voices").json()] == [voice["id"]]

    body = {"text": "Hi there.", "voice_id": voice["id"], "generation": FAST}
    spoken = cloning.post("/api/tts/preview", json=body)
    assert spoken.status_code == 200 and spoken.content.startswith(b"RIFF")

    assert cloning.delete(f"/api/tts/voices/{voice['id']}").status_code == 204
    assert cloning.get("/api/tts/voices").json() == []
    for response in (
        cloning.delete(f"/api/tts/voices/{voice['id']}"),
        cloning.post("/api/tts/preview", json=body),
        cloning.delete("/api/tts/voices/../../etc"),
    ):
        assert response.status_code in (404, 405), response.text
    assert cloning.post("/api/tts/preview", json=body).json()["code"] == "unknown_voice"


def test_a_server_path_is_never_cloned(cloning, tmp_path):
    ref = write_reference_wav(tmp_path / "secret.wav")
    body = {"text": "Hi.", "voice": {"mode": "voice_clone", "ref_audio": str(ref)}}
    response = cloning.post("/api/tts/preview", json=body)
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    assert "voice_id" in response.json()["detail"]


def test_uploads_that_are_not_audio_or_too_large_are_refused(cloning, tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_bytes(b"RIFF but not audio")
    response = upload(cloning, fake, name="x")
    assert response.status_code == 422 and response.json()["code"] == "ref_audio_invalid"
    text = tmp_path / "voice.txt"
    text.write_text("hello")
    assert upload(cloning, text).status_code == 422
    big = write_reference_wav(tmp_path / "long.wav", seconds=10)  # 480 KB > 400 KB
    response = upload(cloning, big, name="long")
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"
    assert cloning.get("/api/tts/voices").json() == []


def test_a_damaged_voice_record_is_skipped_not_a_server_error(cloning, tmp_path):
    ref = write_reference_wav(tmp_path / "ok.wav")
    good = upload(cloning, ref, name="Good").json()
    broken = tmp_path / "voices" / "0123456789ab"
    broken.mkdir()
    (broken / "voice.json").write_text("{}")
    assert [v["id"] for v in cloning.get("/api/tts/voices").json()] == [good["id"]]
    response = cloning.post("/api/tts/preview", json={"text": "Hi.", "voice_id": broken.name})
    assert response.status_code == 404 and response.json()["code"] == "unknown_voice"
