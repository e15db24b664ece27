"""The example host's command line as a user meets it: each error once, Ctrl-C, progress, demo.

Real engine, tiny checkpoint; the CLI in-process through ``example_host.cli.main`` where that
shows the behaviour, in a subprocess where only a process can (signals, a terminal, a fresh
home folder).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import soundfile as sf
import structlog
from host_settings import write_settings

from example_host import logs

FAST = ["--max-new-tokens", "8", "--allow-cut"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def script_of(folder: Path, lines: list[str]) -> Path:
    path = folder / "script.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli(*argv) -> list[str]:
    return [sys.executable, "-m", "example_host", *map(str, argv)]


# --- each error once ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Device": "cuda:0"}, "model_to_device_failed"),
        ({"ModelPath": "{tmp}/missing", "Device": "cpu"}, "model_not_found"),
    ],
)
def test_a_failing_command_prints_its_error_once(host, tmp_path, tiny, params, code):
    """The CLI's message, not also the engine's log event about the same failure; ``-v``
    shows that event too (it is held back, not lost)."""
    params = {"ModelPath": str(tiny["custom_voice"]), **params}
    params = {key: value.format(tmp=tmp_path) for key, value in params.items()}
    path = write_settings(tmp_path / "s.json", **params)
    for argv in (["smoke"], ["preview", "Hello."]):
        result, out, err = host("--settings", path, *argv, "--out", tmp_path / "x.wav", *FAST)
        assert result == 2 and out == ""
        assert err.count(code) == 1, err
        assert err.startswith(f"{code}: ") and "\nhint: " in err
    _, _, err = host("-v", "--settings", path, "smoke", "--out", tmp_path / "x.wav", *FAST)
    assert err.count(code) == 2 and "tts.load.failed" in err


def test_a_dub_stopped_by_a_failed_segment_names_the_error_once(host, tmp_path, tiny):
    path = write_settings(
        tmp_path / "s.json", ModelPath=str(tiny["custom_voice"]), Device="cpu", MaxChars=40
    )
    script = script_of(tmp_path, ["One.", "This line is longer than the forty characters allowed."])
    code, out, err = host(
        "--settings", path, "dub", script, "--out-dir", tmp_path / "dub", "--batch-size", "1",
        *FAST,
    )  # fmt: skip
    assert code == 2 and err.count("text_too_long") == 1, err
    assert "[2/2] seg 2 failed" in err and "failed   segment 2: text_too_long" in out


def test_other_warnings_are_still_shown_at_the_default_level(capsys):
    """Only events that carry an error code (the failure the command reports) are held back."""
    logs.configure(caller_reports_errors=True)
    log = structlog.get_logger("engine.under.test")
    log.warning("tts.device.query_failed", error="driver too old")
    log.warning("tts.load.failed", code="model_not_found", detail="gone")
    logging.getLogger("some.library").warning("careful")
    err = capsys.readouterr().err
    assert "tts.device.query_failed" in err and "careful" in err
    assert "model_not_found" not in err
    logs.configure(caller_reports_errors=False)  # serve: no command reports the page's errors
    log.warning("tts.load.failed", code="model_not_found", detail="gone")
    assert "model_not_found" in capsys.readouterr().err


# --- Ctrl-C ------------------------------------------------------------------------------------


def ok_segments(manifest: Path) -> int:
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["segments"]
    except (FileNotFoundError, ValueError):
        return 0
    return sum(entry["status"] == "ok" for entry in entries)


def test_ctrl_c_during_a_dub_says_what_was_kept_and_a_rerun_resumes(settings, tmp_path):
    script = script_of(tmp_path, [f"Line number {n} of the script." for n in range(1, 33)])
    out_dir = tmp_path / "dub"
    argv = cli("--settings", settings, "dub", script, "--out-dir", out_dir, *FAST)
    # --batch-size 1: the manifest is written after every segment.
    proc = subprocess.Popen(
        [*argv, "--batch-size", "1", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 120
    while ok_segments(out_dir / "manifest.json") == 0:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    interrupted_at = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - interrupted_at < 15  # it exits, nothing waits on a thread
    assert "Traceback" not in err and "segments  " not in out
    last = err.splitlines()[-1]
    match = re.fullmatch(
        r"interrupted: (\d+) of 32 segments written; run the same command again to resume", last
    )
    assert match, err
    written = int(match.group(1))
    assert 1 <= written < 32 and written == ok_segments(out_dir / "manifest.json")
    wavs = sorted(out_dir.glob("seg_*.wav"))
    assert len(wavs) >= written
    for wav in wavs:  # whole files only: every one reads to its end
        audio, rate = sf.read(str(wav))
        assert rate == 24_000 and len(audio) > 0
    assert not [p.name for p in out_dir.iterdir() if p.name.endswith((".tmp", ".moving"))]

    rerun = subprocess.run(
        [*argv, "--batch-size", "1", "--seed", "1"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    table = dict(line.split(None, 1) for line in rerun.stdout.splitlines())
    assert (table["resumed"], table["ok"]) == (str(written), str(32 - written))
    assert len(list(out_dir.glob("seg_*.wav"))) == 32


# --- progress ------------------------------------------------------------------------------------

PLAIN = re.compile(
    r"\[ ?(\d+)/(\d+)\] seg (\d+) (ok|skipped|failed|resumed)( +[\d.]+ s)?"
    r"  \(elapsed [\d.]+ s(?:, eta (\d+) s)?\)"
)


def test_dub_progress_off_a_terminal_is_one_plain_line_per_segment(host, settings, tmp_path):
    script = script_of(tmp_path, ["Alpha.", "Bravo.", "!!!", "Delta.", "Echo.", "Foxtrot."])
    out_dir = tmp_path / "dub"
    argv = ["--settings", settings, "dub", script, "--out-dir", out_dir, "--batch-size", "2"]
    code, _, err = host(*argv, *FAST)
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 6, err
    parsed = [PLAIN.fullmatch(line) for line in lines]
    assert all(parsed), err
    assert [(m[1], m[2]) for m in parsed] == [(str(n), "6") for n in range(1, 7)]
    assert sorted(int(m[3]) for m in parsed) == [1, 2, 3, 4, 5, 6]
    outcomes = {int(m[3]): m[4] for m in parsed}
    assert outcomes[3] == "skipped" and {outcomes[n] for n in (1, 2, 4, 5, 6)} == {"ok"}
    assert parsed[0][6] is not None and parsed[-1][6] is None  # an estimate, until the end
    assert all(m[5] for m in parsed if m[4] == "ok")  # the audio seconds of each

    code, _, err = host(*argv, *FAST)  # a rerun: every segment settled at once, resumed
    assert code == 0
    assert [m[4] for m in map(PLAIN.fullmatch, err.splitlines())].count("resumed") == 5


def test_dub_progress_on_a_terminal_is_a_bar_with_the_segment_and_an_estimate(settings, tmp_path):
    script = script_of(tmp_path, ["Alpha.", "Bravo.", "Charlie.", "Delta."])
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    argv = cli("--settings", settings, "dub", script, "--out-dir", tmp_path / "dub", *FAST)
    proc = subprocess.Popen(
        [*argv, "--batch-size", "2"], stdout=subprocess.PIPE, stderr=terminal, env=ENV
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed: the process is done with it
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = shown.decode()
    # a list's segments settle together: the bar moves once per list, naming them
    assert re.search(r"2/4 \[[\d:]+, seg 1-2 ok, eta \d+ s\]", text), text
    assert re.search(r"100%\|[^|]*\| 4/4 \[[\d:]+, seg 3-4 ok\]", text), text
    assert "[1/4]" not in text  # not the plain lines


# --- demo ----------------------------------------------------------------------------------------


@pytest.fixture
def fresh_home(tmp_path, tiny):
    """A user who never ran the host: empty home, cache and config folders; the tiny
    checkpoint cache shared (building it again is not what is tested)."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        **ENV,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "EXAMPLE_HOST_SETTINGS": str(home / "my-settings.json"),
        "QWEN3TTS_TINY_CACHE": str(tiny["custom_voice"].parent),
    }


def test_demo_previews_and_dubs_offline_without_touching_the_users_settings(fresh_home):
    proc = subprocess.run(
        cli("demo", "--no-serve"), capture_output=True, text=True, env=fresh_home, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("demo: random weights") and "noise" in lines[0]
    folder = Path(fresh_home["XDG_CACHE_HOME"]) / "example_host" / "demo"
    assert lines[1].startswith(f"demo settings  {folder / 'settings.json'}")
    assert f"preview  {folder / 'preview.wav'}" in lines
    assert f"dub      {folder / 'dub'}" in lines
    assert sf.info(str(folder / "preview.wav")).samplerate == 24_000
    manifest = json.loads((folder / "dub" / "manifest.json").read_text())
    assert [e["status"] for e in manifest["segments"]] == ["ok"] * 4
    for entry in manifest["segments"]:
        assert sf.info(str(folder / "dub" / entry["path"])).frames > 0
    assert not Path(fresh_home["EXAMPLE_HOST_SETTINGS"]).exists()
    assert not (Path(fresh_home["XDG_CONFIG_HOME"]) / "example_host").exists()


def test_demo_serves_the_page_with_its_own_settings_reset_each_run(fresh_home):
    import httpx

    folder = Path(fresh_home["XDG_CACHE_HOME"]) / "example_host" / "demo"
    folder.mkdir(parents=True)
    # What a user might have left from playing with the page: a device this machine lacks.
    write_settings(folder / "settings.json", Device="cuda:7")
    server = subprocess.Popen(
        cli("demo", "--port", "0"), stdout=subprocess.PIPE, text=True, env=fresh_home
    )
    try:
        for line in server.stdout:
            if line.startswith("serving "):
                break
        match = re.match(r"serving (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        assert f"settings: {folder / 'settings.json'}" in line
        response = None
        for _ in range(50):  # uvicorn starts accepting just after the line
            try:
                response = httpx.get(match.group(1) + "api/tts/settings", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None and response.status_code == 200
        params = response.json()["configs"]["qwen3_tts_default"]["extra_params"]
        assert params["Device"] == "auto" and Path(params["ModelPath"]).is_dir()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert not Path(fresh_home["EXAMPLE_HOST_SETTINGS"]).exists()
