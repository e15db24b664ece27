"""The settings page in a real browser: headless Chromium (Debian's package) driven by
Playwright, against the example host's app served on localhost with the real engine and the
tiny checkpoint. ``.ci/run`` installs Chromium; without it these tests skip, saying so."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium here: apt-get install chromium (.ci/run does)"
    ),
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
"""Root in a container needs no sandbox; the rest keep Chromium off the (closed) network."""

AUDIO_READY = (
    "() => { const a = document.getElementById('audio');"
    " return !a.hidden && a.src.startsWith('blob:') && a.duration > 0 }"
)


TOKEN = "page-token-1234"


@pytest.fixture
def settings(tmp_path, tiny):
    """No Device: detection decides (the CPU here)."""
    path = tmp_path / "settings.json"
    config = {"provider": "qwen3_tts", "extra_params": {"ModelPath": str(tiny["custom_voice"])}}
    path.write_text(json.dumps({"configs": {"qwen3_tts_default": config}}))
    return path


@pytest.fixture
def site(settings, pm, tmp_path):
    """The server as ``serve`` runs it, with a token: the page is opened through its token URL
    (what ``serve --host 0.0.0.0`` prints) and must send the token on every call."""
    import uvicorn

    from example_host.guard import Access
    from example_host.http import create_app
    from example_host.serving import Limits, uvicorn_config

    sock = socket.create_server(("127.0.0.1", 0))
    access = Access("127.0.0.1", token=TOKEN)
    app = create_app(settings, pm=pm, voices_path=tmp_path / "voices", access=access)
    server = uvicorn.Server(uvicorn_config(app, Limits()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the example host's server did not start within 20 s"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/?token={TOKEN}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def saved_device(settings):
    config = json.loads(settings.read_text())["configs"]["qwen3_tts_default"]
    return config["extra_params"].get("Device")


def test_preview_on_cpu_then_a_gpu_that_is_not_there_then_auto(site, browser, settings, engine):
    engine.release()
    page = browser.new_page()
    page.goto(site)
    page.wait_for_selector("#models tbody tr")
    assert "qwen3_tts" in page.text_content("#config-name")
    assert page.input_value("#device") == "auto"
    assert "selected" in page.text_content("#models")
    assert page.locator("#voice option").count() > 1  # the model's speakers

    page.select_option("#device", "cpu")
    page.fill("#text", "Hello from the browser.")
    page.click("#preview")
    page.wait_for_function(AUDIO_READY, timeout=60_000)
    decision = page.text_content("#decision")
    assert "device cpu (config)" in decision and "backend stepper" in decision
    # streamed: played through Web Audio as it came, the time to the first audio shown
    assert re.search(r"first audio \d+\.\d\d s \(engine \d+\.\d{3} s\)", decision), decision
    assert int(page.get_attribute("#decision", "data-parts")) >= 1
    assert page.evaluate("() => sharedContext.state") == "running"  # the page's Web Audio
    assert page.is_hidden("#error") and saved_device(settings) == "cpu"
    page.wait_for_function("() => document.getElementById('badge').textContent.includes('cpu')")

    page.select_option("#device", "other")
    page.fill("#device-other", "cuda:0")
    page.click("#preview")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert page.text_content("#error-code") == "model_to_device_failed"
    assert "Device=cpu" in page.text_content("#error-hint")
    assert page.is_hidden("#audio") and page.get_attribute("#audio", "src") is None
    assert page.is_hidden("#decision")
    page.wait_for_function(
        "() => document.getElementById('badge').textContent.includes('model_to_device_failed')"
    )
    assert "still on cpu" in page.text_content("#badge")  # the CPU model was kept
    assert saved_device(settings) == "cuda:0"

    page.select_option("#device", "auto")
    page.click("#preview")
    page.wait_for_function(AUDIO_READY, timeout=60_000)
    assert "(detected)" in page.text_content("#decision")
    assert page.is_hidden("#error") and saved_device(settings) == "auto"


def test_the_precision_hint_follows_this_cpu(site, browser):
    """The page reads the engine's CPU facts: on a CPU with native bfloat16 it suggests bf16
    for batched work (not for BatchSize 1) unless it suggests int8 (AVX512-VNNI, as doctor);
    where the engine would refuse a choice, it says so before Save."""
    from qwen3tts_plugin.devices import acceleration_status, cpu_bf16_native

    status = acceleration_status()
    cpu = status.extras["cpu"]
    native = cpu_bf16_native(status)
    suggested = native and not (cpu["int8"] and "avx512_vnni" in cpu["int8_features"])
    page = browser.new_page()
    page.goto(site)
    page.wait_for_selector("#models tbody tr")
    note = page.text_content("#acceleration")
    assert ("bf16 native" in note) == native and "cuda_graphs not installed" in note
    hint = "#precision-hint"
    assert page.input_value("#precision") == "auto"
    assert page.is_visible(hint) == suggested
    if suggested:
        assert "bf16 makes batched dubbing faster" in page.text_content(hint)
        page.fill("#batch-size", "1")
        assert page.is_hidden(hint)
    page.select_option("#precision", "bf16")
    assert ("experimental" if native else "refuses bf16") in page.text_content(hint)
    page.select_option("#precision", "fp16")
    assert "fp16 on the CPU is refused" in page.text_content(hint)


def test_quantization_is_offered_from_the_schema_saved_and_shown_once_loaded(
    site, browser, settings, engine
):
    """The select holds the schema's enum; int8 on the CPU is saved, previewed (a real int8 load
    of the tiny checkpoint) and named by the decision line and the engine badge."""
    from qwen3tts_plugin.devices import acceleration_status, cpu_int8
    from qwen3tts_plugin.settings import settings_schema

    if not cpu_int8(acceleration_status()):
        pytest.skip("this CPU runs no int8 layers: the engine refuses Quantization=int8 here")
    engine.release()
    page = browser.new_page()
    page.goto(site)
    page.wait_for_selector("#models tbody tr")
    offered = page.eval_on_selector_all("#quantization option", "os => os.map(o => o.value)")
    assert offered == settings_schema()["properties"]["Quantization"]["enum"]
    assert page.input_value("#quantization") == "auto"
    note = page.text_content("#acceleration")
    assert "int8 kernels" in note and "no int8 kernels" not in note

    page.select_option("#device", "cpu")
    page.select_option("#quantization", "int8")
    assert "about 2x faster than bf16" in page.text_content("#quantization-hint")
    page.click("#preview")
    page.wait_for_function(AUDIO_READY, timeout=60_000)
    assert page.is_hidden("#error")
    assert "(codec float32, int8 weights)" in page.text_content("#decision")
    config = json.loads(settings.read_text())["configs"]["qwen3_tts_default"]
    assert config["extra_params"]["Quantization"] == "int8"
    page.wait_for_function("() => document.getElementById('badge').textContent.includes('int8')")
    assert page.text_content("#badge") == "engine: cpu, float32 + int8 weights, stepper"

    page.select_option("#quantization", "none")
    page.click("#preview")
    page.wait_for_function(AUDIO_READY, timeout=60_000)
    assert "int8" not in page.text_content("#decision")
    page.wait_for_function("() => !document.getElementById('badge').textContent.includes('int8')")
    config = json.loads(settings.read_text())["configs"]["qwen3_tts_default"]
    assert config["extra_params"]["Quantization"] == "none"


def open_with_acceleration(browser, site, **changes):
    """The page with the engine's AccelerationStatus changed as ``changes`` say (``cpu`` merged
    into ``extras.cpu``), the rest of the capabilities as the engine gave them: another
    machine's facts, without that machine."""
    cpu = changes.pop("cpu", {})

    def engines(route):
        response = route.fetch()
        body = response.json()
        for caps in body:
            caps["acceleration"].update(changes)
            caps["acceleration"]["extras"]["cpu"] = {
                **caps["acceleration"]["extras"].get("cpu", {}),
                **cpu,
            }
        route.fulfill(response=response, json=body)

    page = browser.new_page()
    page.route(re.compile(r".*/api/tts/engines.*"), engines)
    page.goto(site)
    page.wait_for_selector("#models tbody tr")
    return page


GPU = {
    "index": 0,
    "name": "NVIDIA H100 80GB HBM3",
    "total_memory_bytes": 80 * 2**30,
    "free_memory_bytes": 79 * 2**30,
    "compute_capability": [9, 0],
    "bf16_supported": True,
}


def test_the_int8_hint_refuses_a_gpu_or_mps_and_suggests_int8_on_a_cpu_with_it(site, browser):
    """Before Save: int8 on a GPU (chosen, or picked by auto) or on mps is refused; on a CPU
    with int8 kernels auto suggests int8 and int8 says what it gives."""
    page = open_with_acceleration(
        browser,
        site,
        supported=True,
        gpus=[GPU],
        reasons=[],
        cpu={"int8": True, "int8_features": ["avx512_vnni", "avx2"]},
    )
    hint = "#quantization-hint"
    assert "int8 kernels (avx512_vnni, avx2)" in page.text_content("#acceleration")
    assert page.input_value("#device") == "auto" and page.is_hidden(hint)  # auto: the GPU
    page.select_option("#quantization", "int8")
    assert "refuses it on a GPU (auto picks one here)" in page.text_content(hint)
    page.select_option("#device", "cuda:0")
    assert "int8 runs only on the CPU: the engine refuses it on cuda:0" in page.text_content(hint)
    page.select_option("#device", "other")
    page.fill("#device-other", "mps")
    assert "refuses it on mps. Choose auto" in page.text_content(hint)
    page.select_option("#device", "cpu")
    text = page.text_content(hint)
    assert "int8 weights: about 2x faster than bf16 and 4x fp32 for one preview" in text
    assert "Preview one text with one seed both ways to compare." in text
    page.select_option("#quantization", "auto")
    assert "int8 makes CPU previews and dubs faster" in page.text_content(hint)
    page.select_option("#quantization", "none")  # chosen on purpose: no suggestion
    assert page.is_hidden(hint)


def test_the_int8_hint_refuses_int8_on_a_cpu_without_its_kernels(site, browser):
    page = open_with_acceleration(
        browser, site, supported=False, gpus=[], cpu={"int8": False, "int8_features": []}
    )
    hint = "#quantization-hint"
    assert "no int8 kernels" in page.text_content("#acceleration")
    assert page.is_hidden(hint)  # auto: nothing to suggest
    page.select_option("#quantization", "int8")
    assert "the engine refuses int8 here. Choose auto." in page.text_content(hint)
    page.select_option("#device", "cpu")
    assert "the engine refuses int8 here" in page.text_content(hint)


def test_without_its_token_the_page_says_so(site, browser):
    page = browser.new_page()
    page.goto(site.split("?")[0])
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error-code") == "unauthorized"


def test_a_refused_setting_shows_the_engines_words_and_saves_nothing(site, browser, settings):
    before = settings.read_bytes()
    page = browser.new_page()
    page.goto(site)
    page.wait_for_selector("#models tbody tr")
    page.fill("#batch-size", "500")
    page.click("#save")
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error-code") == "invalid_settings"
    assert "BatchSize" in page.text_content("#error-detail")
    assert settings.read_bytes() == before


def test_a_cloning_model_offers_the_saved_voices_and_speaks_one(
    site, browser, settings, tiny, tmp_path
):
    import numpy as np
    import soundfile as sf

    from example_host.voice_library import VoiceLibrary

    data = json.loads(settings.read_text())
    data["configs"]["qwen3_tts_default"]["extra_params"] = {
        "ModelPath": str(tiny["base"]),
        "Device": "cpu",
    }
    settings.write_text(json.dumps(data))
    ref = tmp_path / "narrator.wav"
    t = np.arange(24_000 * 2) / 24_000
    sf.write(ref, 0.3 * np.sin(2 * np.pi * 200 * t), 24_000)
    voice = VoiceLibrary(tmp_path / "voices").add("Narrator", "narrator.wav", ref.read_bytes())

    page = browser.new_page()
    page.goto(site)
    page.wait_for_selector(f"#voice option[value='saved:{voice['id']}']", state="attached")
    page.select_option("#voice", f"saved:{voice['id']}")
    page.click("#preview")
    page.wait_for_function(AUDIO_READY, timeout=60_000)
    assert page.is_hidden("#error")
