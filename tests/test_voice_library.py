"""The voice library: which recordings it refuses and why, and writers that share it, in
threads and in processes, without losing or half-writing a voice."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import warnings
from pathlib import Path

import filelock
import numpy as np
import pytest
import soundfile as sf

from example_host.http import create_app
from example_host.voice_library import LOCK_NAME, SILENCE_DBFS, VoiceLibrary
from hookspecs import TtsError

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what the dev extra installs
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).parents[1]
RATE = 24_000
REPR_MARKS = ("object at 0x", "<_io.", "b'", 'b"')


def sine(seconds: float, level: float = 0.3) -> np.ndarray:
    """A 220 Hz tone at 24 kHz."""
    return level * np.sin(2 * np.pi * 220 * np.arange(int(RATE * seconds)) / RATE)


def encoded(samples: np.ndarray, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """``samples`` as the bytes of an audio file."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, format=fmt, subtype=subtype)
    return buffer.getvalue()


def with_nan() -> bytes:
    samples = sine(2)
    samples[[RATE // 2, RATE]] = np.nan
    return encoded(samples, subtype="FLOAT")


def with_inf() -> bytes:
    samples = sine(2)
    samples[100] = np.inf
    return encoded(samples, subtype="FLOAT")


def quiet_noise() -> bytes:
    """Noise at about -80 dBFS: a dead microphone's hiss, not a voice."""
    return encoded(1e-4 * np.random.default_rng(1).standard_normal(2 * RATE), subtype="FLOAT")


def half(data: bytes) -> bytes:
    """The first half of a file, as an interrupted copy leaves it."""
    return data[: len(data) // 2]


GOOD = encoded(sine(2))
BAD = {
    "zero bytes": (lambda: b"", "is an empty file (0 bytes)"),
    "empty": (lambda: encoded(sine(0)), "holds no audio samples"),
    "header only": (lambda: GOOD[:44], "is cut short: it ends at 0%"),
    "truncated wav": (lambda: half(GOOD), "is cut short: it ends at 50%"),
    "truncated flac": (lambda: half(encoded(sine(2), "FLAC")), "cannot be decoded"),
    "random bytes": (lambda: np.random.default_rng(0).bytes(5000), "cannot be decoded"),
    "too short": (lambda: encoded(sine(0.5)), "is 0.50 s long; a voice needs at least 1 s"),
    "too long": (lambda: encoded(sine(61, 0.1), subtype="PCM_U8"), "is longer than 60 s"),
    "silence": (lambda: encoded(np.zeros(2 * RATE)), "is silent (every sample is zero"),
    "quiet noise": (quiet_noise, "is silent (-80 dBFS"),
    "nan": (with_nan, "not numbers (NaN or infinity): 2 of 48000"),
    "inf": (with_inf, "not numbers (NaN or infinity): 1 of 48000"),
}
if "MP3" in sf.available_formats():  # libsndfile 1.1+; an MP3's header declares its length
    BAD["truncated mp3"] = (
        lambda: half(encoded(sine(2), "MP3", "MPEG_LAYER_III")),
        "is cut short: it ends at",
    )


def library_folders(root: Path) -> list[str]:
    """Every name in the library's folder but its lock file."""
    return sorted(path.name for path in root.iterdir() if path.name != LOCK_NAME)


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix"),
    [("WAV", None, ".wav"), ("FLAC", None, ".flac"), ("OGG", "VORBIS", ".ogg")]
    + [("MP3", "MPEG_LAYER_III", ".mp3")] * ("MP3" in sf.available_formats()),
)
def test_two_seconds_of_tone_in_each_format_become_a_voice(tmp_path, fmt, subtype, suffix):
    library = VoiceLibrary(tmp_path / "voices")
    data = encoded(sine(2), fmt, subtype)
    voice = library.add(" Tone ", f"tone{suffix}", data, ref_text="A tone.")
    assert (voice["name"], voice["duration_s"], voice["ref_text"]) == ("Tone", 2.0, "A tone.")
    assert library.list() == [voice]
    assert library.audio_path(voice["id"]).read_bytes() == data


@pytest.mark.parametrize("case", BAD)
def test_a_bad_recording_is_refused_with_a_plain_reason_and_nothing_is_stored(tmp_path, case):
    make, reason = BAD[case]
    library = VoiceLibrary(tmp_path / "voices")
    with pytest.raises(TtsError) as caught:
        library.add("", "take 1.wav", make())
    err = caught.value
    assert err.code == "ref_audio_invalid" and err.hint
    assert err.detail.startswith('"take 1.wav" ') and reason in err.detail, err.detail
    assert not any(mark in err.detail for mark in REPR_MARKS), err.detail
    assert library.list() == []
    assert not (tmp_path / "voices").exists() or library_folders(tmp_path / "voices") == []


def test_a_file_that_is_not_named_as_audio_is_refused(tmp_path):
    library = VoiceLibrary(tmp_path / "voices")
    with pytest.raises(TtsError) as caught:
        library.add("", "notes.txt", GOOD)
    assert caught.value.code == "ref_audio_invalid"
    assert caught.value.detail == '"notes.txt" is not a WAV, FLAC, OGG or MP3 file (by its name)'
    with pytest.raises(TtsError) as caught:
        library.add("", "", GOOD)
    assert caught.value.detail.startswith("the upload is not a WAV")


def test_the_clients_file_name_is_shown_without_folders_control_characters_or_excess(tmp_path):
    library = VoiceLibrary(tmp_path / "voices")
    for filename, shown in (
        ("../../etc/\x1b[31mred\x07\n.wav", '"[31mred.wav"'),
        ("C:\\Users\\me\\take.wav", '"take.wav"'),
        ("x" * 200 + ".wav", '"' + "x" * 79 + "\u2026" + '"'),
        ("\x00\u200b.wav", '".wav"'),
    ):
        with pytest.raises(TtsError) as caught:
            library.add("", filename, b"not audio at all")
        assert caught.value.detail.startswith(shown + " cannot be decoded"), caught.value.detail


def test_the_silence_threshold_is_the_documented_rms_level(tmp_path):
    """A tone whose RMS level is just over the threshold is kept; just under, refused."""
    library = VoiceLibrary(tmp_path / "voices")
    rms_of_unit_sine = 1 / np.sqrt(2)
    at_threshold = 10 ** (SILENCE_DBFS / 20) / rms_of_unit_sine
    kept = library.add("", "soft.wav", encoded(sine(2, at_threshold * 1.2), subtype="FLOAT"))
    with pytest.raises(TtsError):
        library.add("", "softer.wav", encoded(sine(2, at_threshold / 1.2), subtype="FLOAT"))
    assert [voice["id"] for voice in library.list()] == [kept["id"]]


# --- writers take turns -----------------------------------------------------------------------


def test_writers_wait_for_the_library_lock_and_say_server_busy_when_it_stays_taken(tmp_path):
    root = tmp_path / "voices"
    library = VoiceLibrary(root, lock_timeout_s=0.2)
    kept = library.add("Kept", "kept.wav", GOOD)
    holder = filelock.FileLock(root / LOCK_NAME)  # another writer, as another process holds it
    with holder:
        for write in (
            lambda: library.add("New", "new.wav", GOOD),
            lambda: library.delete(kept["id"]),
        ):
            started = time.monotonic()
            with pytest.raises(TtsError) as caught:
                write()
            assert caught.value.code == "server_busy" and time.monotonic() - started >= 0.2
    assert [voice["name"] for voice in library.list()] == ["Kept"]
    library.delete(kept["id"])  # the lock is free again
    assert library.list() == []


def test_the_next_writer_clears_what_a_dead_writer_left_behind(tmp_path):
    root = tmp_path / "voices"
    library = VoiceLibrary(root)
    staged = root / ".new-k1ll3d"  # an add killed between staging and its rename
    staged.mkdir(parents=True)
    (staged / "reference.wav").write_bytes(GOOD[:1000])
    doomed = root / ".deleted-0123456789ab-abcdef"  # a delete killed before its rmtree
    doomed.mkdir()
    (doomed / "voice.json").write_text("{}")
    voice = library.add("After", "after.wav", GOOD)
    assert library_folders(root) == [voice["id"]]


WRITER = """
import pathlib, sys, time
from example_host.voice_library import VoiceLibrary
root, tag, recording, go = sys.argv[1:]
library = VoiceLibrary(root)
data = pathlib.Path(recording).read_bytes()
while not pathlib.Path(go).exists():
    time.sleep(0.005)
for k in range(6):
    voice = library.add(f"{tag}-{k}", "take.wav", data)
    if k % 2:
        library.delete(voice["id"])
"""


def test_writers_in_several_processes_lose_no_voice_and_leave_no_half_voice(tmp_path):
    """Four processes add six voices each and delete every other one as they go, while this
    one reads: afterwards exactly the kept voices are listed, each whole, nothing staged."""
    root, recording, go = tmp_path / "voices", tmp_path / "take.wav", tmp_path / "go"
    recording.write_bytes(GOOD)
    tags = [f"p{n}" for n in range(4)]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), tag, str(recording), str(go)], cwd=ROOT
        )
        for tag in tags
    ]
    library = VoiceLibrary(root)
    time.sleep(0.5)  # let them import; they start together on the go file
    go.touch()
    reads = 0
    while any(writer.poll() is None for writer in writers):
        for voice in library.list():
            if int(voice["name"].rsplit("-", 1)[1]) % 2 == 0:  # never deleted: must be whole
                assert library.audio_path(voice["id"]).read_bytes() == GOOD
        reads += 1
        time.sleep(0.01)
    assert [writer.wait(timeout=60) for writer in writers] == [0] * len(tags)
    names = sorted(voice["name"] for voice in library.list())
    assert names == sorted(f"{tag}-{k}" for tag in tags for k in (0, 2, 4)), names
    assert len(library_folders(root)) == len(names)  # no .new-* or .deleted-* left
    assert reads > 0


def test_threads_adding_at_once_lose_no_voice(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    library = VoiceLibrary(tmp_path / "voices")
    with ThreadPoolExecutor(4) as pool:
        added = list(pool.map(lambda n: library.add(f"t{n}", "t.wav", GOOD)["id"], range(12)))
    assert sorted(voice["id"] for voice in library.list()) == sorted(added)
    assert len(library_folders(tmp_path / "voices")) == 12


# --- through the HTTP route -------------------------------------------------------------------


@pytest.fixture
def client(tmp_path, pm):
    app = create_app(tmp_path / "settings.json", pm=pm, voices_path=tmp_path / "voices")
    with TestClient(app, base_url="http://127.0.0.1:8765") as test_client:
        yield test_client


def upload(client: TestClient, filename: str, data: bytes):
    return client.post(
        "/api/tts/voices", files={"file": (filename, data, "audio/wav")}, data={"name": "Me"}
    )


@pytest.mark.parametrize(
    "case", ["zero bytes", "empty", "silence", "nan", "too short", "random bytes"]
)
def test_the_upload_route_answers_422_ref_audio_invalid_for_a_bad_recording(client, case):
    make, reason = BAD[case]
    response = upload(client, "me.wav", make())
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "ref_audio_invalid" and body["hint"]
    assert body["detail"].startswith('"me.wav" ') and reason in body["detail"]
    assert not any(mark in body["detail"] for mark in REPR_MARKS), body["detail"]
    assert client.get("/api/tts/voices").json() == []


def test_the_upload_route_saves_a_good_recording(client):
    response = upload(client, "me.flac", encoded(sine(2), "FLAC"))
    assert response.status_code == 201, response.text
    assert response.json()["duration_s"] == 2.0
    assert [voice["name"] for voice in client.get("/api/tts/voices").json()] == ["Me"]
