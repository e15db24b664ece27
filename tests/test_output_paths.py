"""Where the WAV goes: paths refused before generation, and the operating system's reasons a
write fails, each an ``output_write_failed`` with the reason in the detail, nothing left behind
and an earlier file at the path untouched.

Everything runs the real engine on the tiny checkpoints through ``pm.hook``. A full disk is
produced for real where this machine allows an unprivileged mount namespace (a 8 KiB tmpfs), and
"file too large" for real with ``RLIMIT_FSIZE``, both in a subprocess; one test patches
``os.write`` for files in one folder, so that a full disk is also covered where neither works.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from engine_logs import capture_logs

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, TtsError, Voice
from qwen3tts_plugin.audio import write_wav_atomic

FAST = GenerationParams(max_new_tokens=6, seed=1, allow_cut=True)
EARLIER = b"an earlier take, not a WAV"


def request_for(model: Path, out: Path, text: str = "Hello world.") -> SynthesisRequest:
    return SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params={"ModelPath": str(model)}),
        text=text,
        out_path=out,
        voice=Voice(speaker="ryan"),
        generation=FAST,
    )


def refusal(pm, request: SynthesisRequest) -> tuple[TtsError, list[dict]]:
    """The error ``tts_synthesize`` raises for ``request``, and the events logged meanwhile."""
    with capture_logs() as logs, pytest.raises(TtsError) as info:
        pm.hook.tts_synthesize(request=request)
    return info.value, logs


def snapshot(path: Path) -> tuple:
    """What a user could tell apart at ``path``: the entry itself (and a link's target)."""
    own = os.lstat(path)
    link = os.readlink(path) if path.is_symlink() else None
    listing = sorted(os.listdir(path)) if path.is_dir() else None
    return own.st_mode, own.st_ino, own.st_mtime_ns, link, listing


# --- refused before generation: what exists at the path is not a regular file ------------------


def make_fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe")
    return folder / "pipe"


def make_socket(folder: Path) -> Path:
    # Bound by a relative name: AF_UNIX paths are limited to ~108 bytes, tmp_path can be longer.
    sock = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        sock.bind("sock")
    finally:
        os.chdir(cwd)
    sock.close()  # the socket file stays
    return folder / "sock"


def make_folder(folder: Path) -> Path:
    (folder / "takes").mkdir()
    (folder / "takes" / "keep.txt").write_text("mine")
    return folder / "takes"


def link_to(make):
    def made(folder: Path) -> Path:
        target = make(folder)
        (folder / "link.wav").symlink_to(target)
        return folder / "link.wav"

    return made


def dangling(folder: Path) -> Path:
    (folder / "link.wav").symlink_to(folder / "gone" / "take.wav")
    return folder / "link.wav"


def link_to_dev_null(folder: Path) -> Path:
    # Safe even if the refusal regressed: os.replace would replace this link, never /dev/null.
    # (/dev/null itself is never used as out_path here: we run as root.)
    (folder / "link.wav").symlink_to("/dev/null")
    return folder / "link.wav"


NOT_FILES = {
    "fifo": (make_fifo, "it is a named pipe (FIFO)"),
    "socket": (make_socket, "it is a socket"),
    "folder": (make_folder, "it is a folder"),
    "link to a fifo": (link_to(make_fifo), "which is a named pipe (FIFO)"),
    "link to a socket": (link_to(make_socket), "which is a socket"),
    "link to a folder": (link_to(make_folder), "which is a folder"),
    "link to /dev/null": (link_to_dev_null, "symbolic link to /dev/null, which is a character"),
    "dangling link": (dangling, "which does not exist (a dangling link)"),
}


@pytest.mark.parametrize("case", list(NOT_FILES))
def test_an_out_path_that_is_not_a_regular_file_is_refused_before_generation_and_left_alone(
    pm, tiny, tmp_path, case
):
    make, words = NOT_FILES[case]
    out = make(tmp_path)
    before, names = snapshot(out), sorted(os.listdir(tmp_path))
    error, logs = refusal(pm, request_for(tiny["custom_voice"], out))
    assert error.code == "output_write_failed"
    assert error.detail.startswith(f"cannot write {out}: ") and words in error.detail
    assert "regular file" in error.hint
    assert not [e for e in logs if e["event"] == "tts.generate.done"], "it spoke first"
    assert snapshot(out) == before and sorted(os.listdir(tmp_path)) == names


def test_a_path_that_turned_into_a_fifo_while_the_model_spoke_is_refused_at_the_write(tmp_path):
    out = make_fifo(tmp_path)
    before = snapshot(out)
    with pytest.raises(TtsError) as info:
        write_wav_atomic(out, np.zeros(2400, dtype=np.float32), 24_000)
    assert info.value.code == "output_write_failed" and "named pipe" in info.value.detail
    assert snapshot(out) == before and os.listdir(tmp_path) == ["pipe"]


def test_a_link_to_a_regular_file_is_written_through_and_stays_a_link(pm, tiny, tmp_path):
    takes = tmp_path / "takes"
    takes.mkdir()
    (takes / "scene1.wav").write_bytes(EARLIER)
    link = tmp_path / "current.wav"
    link.symlink_to(takes / "scene1.wav")
    result = pm.hook.tts_synthesize(request=request_for(tiny["custom_voice"], link))
    assert result.path == link and os.readlink(link) == str(takes / "scene1.wav")
    assert sf.info(str(takes / "scene1.wav")).frames / 24_000 == pytest.approx(result.duration_s)
    assert sorted(os.listdir(takes)) == ["scene1.wav"] and sorted(os.listdir(tmp_path)) == [
        "current.wav",
        "takes",
    ]


# --- names too long for the filesystem ---------------------------------------------------------


def test_a_file_name_longer_than_the_filesystem_allows_is_refused_before_generation(
    pm, tiny, tmp_path
):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    out = tmp_path / ("n" * 296 + ".wav")
    error, logs = refusal(pm, request_for(tiny["custom_voice"], out))
    assert error.code == "output_write_failed"
    assert f"the file name is 300 bytes long; the filesystem allows at most {limit}" in (
        error.detail
    )
    assert "shorter file name" in error.hint
    assert not [e for e in logs if e["event"] == "tts.generate.done"]
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_with_a_name_too_long_is_refused_and_not_created(pm, tiny, tmp_path):
    out = tmp_path / ("f" * 300) / "take.wav"
    error, _ = refusal(pm, request_for(tiny["custom_voice"], out))
    assert error.code == "output_write_failed" and "folder name fffff" in error.detail
    assert "300 bytes long" in error.detail and list(tmp_path.iterdir()) == []


def test_a_name_exactly_as_long_as_allowed_is_written(pm, tiny, tmp_path):
    """The temporary file beside it must fit too, so it does not carry the whole name."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    out = tmp_path / ("n" * (limit - 4) + ".wav")
    result = pm.hook.tts_synthesize(request=request_for(tiny["custom_voice"], out))
    assert sf.info(str(out)).frames / 24_000 == pytest.approx(result.duration_s)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


# --- the operating system refuses the write -----------------------------------------------------


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(folder)``: files in ``folder`` take 4 KiB, then every write fails with ENOSPC.

    Patched because a full disk cannot be made portably in a test (the real one, in a mount
    namespace, is test_a_really_full_disk_...): only ``os.write`` on descriptors of files in
    that folder is changed, found through /proc; every other write is the real one.
    """
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to tell which file a descriptor writes")
    real_write = os.write
    folders: list[str] = []
    room = {"bytes": 4096}

    def write(fd, data):
        where = os.readlink(f"/proc/self/fd/{fd}")
        if not any(where.startswith(folder + os.sep) for folder in folders):
            return real_write(fd, data)
        if room["bytes"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = real_write(fd, bytes(data[: room["bytes"]]))
        room["bytes"] -= written
        return written

    monkeypatch.setattr(os, "write", write)
    return lambda folder: folders.append(str(folder))


def test_a_full_disk_is_output_write_failed_with_the_systems_reason(pm, tiny, tmp_path, full_disk):
    out = tmp_path / "take.wav"
    out.write_bytes(EARLIER)
    full_disk(tmp_path)
    error, logs = refusal(pm, request_for(tiny["custom_voice"], out))
    assert error.code == "output_write_failed"
    assert error.detail == f"cannot write {out}: No space left on device (ENOSPC)"
    assert "disk is full" in error.hint
    assert [e for e in logs if e["event"] == "tts.generate.done"], "it failed at the write"
    assert out.read_bytes() == EARLIER and [p.name for p in tmp_path.iterdir()] == ["take.wav"]


def test_in_a_batch_the_item_whose_disk_is_full_fails_alone(pm, tiny, tmp_path, full_disk):
    full, fine = tmp_path / "full", tmp_path / "fine"
    full.mkdir()
    full_disk(full)
    items = batch_with_a_bad_middle(pm, tiny, fine, full / "1.wav")
    assert "No space left on device" in items[1].error.detail
    assert list(full.iterdir()) == [] and sorted(p.name for p in fine.iterdir()) == [
        "0.wav",
        "2.wav",
    ]


def batch_with_a_bad_middle(pm, tiny, folder, bad):
    """Three requests through the batch hook, the middle one aimed at ``bad``: only it fails,
    with ``output_write_failed``; the items."""
    requests = [
        request_for(tiny["custom_voice"], folder / "0.wav", "The river bends twice."),
        request_for(tiny["custom_voice"], bad, "Nobody remembers who built it."),
        request_for(tiny["custom_voice"], folder / "2.wav", "Go."),
    ]
    items = pm.hook.tts_synthesize_batch(requests=requests)
    assert [item.error.code if item.error else "ok" for item in items] == [
        "ok",
        "output_write_failed",
        "ok",
    ]
    return items


def test_in_a_batch_an_item_aimed_at_a_fifo_fails_alone(pm, tiny, tmp_path):
    pipe = make_fifo(tmp_path)
    items = batch_with_a_bad_middle(pm, tiny, tmp_path, pipe)
    assert "named pipe" in items[1].error.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.wav", "2.wav", "pipe"]
    assert pipe.is_fifo()


HOST_SCRIPT = """
import json, os, resource, signal, sys
from pathlib import Path

import hookspecs
from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, TtsError

model, out, fsize = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
out.write_bytes(b"an earlier take")
pm = hookspecs.plugin_manager()
config = EngineConfig(provider="qwen3_tts", extra_params={"ModelPath": model})
pm.hook.tts_load(config=config)
if fsize:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the first write past it kills us
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, hard))
request = SynthesisRequest(
    config=config, text="Hello world.", out_path=out,
    generation=GenerationParams(max_new_tokens=6, seed=1, allow_cut=True),
)
try:
    pm.hook.tts_synthesize(request=request)
    error = None
except TtsError as err:
    error = err.to_dict()
names = sorted(p.name for p in out.parent.iterdir())
print(json.dumps({"error": error, "names": names, "earlier": out.read_bytes().decode("latin-1")}))
"""
"""A host that keeps an earlier take at ``out``, then speaks over it (the WAV is ~23 KB)."""


def run_host(tmp_path: Path, args: list[str], prefix: tuple[str, ...] = ()) -> dict:
    """HOST_SCRIPT's report, run with ``args`` (model, out, RLIMIT_FSIZE or 0) after ``prefix``."""
    script = tmp_path / "host.py"
    script.write_text(HOST_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [*prefix, sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_file_larger_than_the_system_allows_is_output_write_failed(tiny, tmp_path):
    """Real: the process may write no file past 4 KiB (``ulimit -f``), so the write gets EFBIG."""
    out = tmp_path / "out" / "take.wav"
    out.parent.mkdir()
    seen = run_host(tmp_path, [str(tiny["custom_voice"]), str(out), "4096"])
    assert seen["error"]["code"] == "output_write_failed"
    assert seen["error"]["detail"] == f"cannot write {out}: File too large (EFBIG)"
    assert "ulimit -f" in seen["error"]["hint"]
    assert seen["names"] == ["take.wav"] and seen["earlier"] == "an earlier take"


@pytest.mark.slow
def test_a_really_full_disk_is_output_write_failed_and_leaves_the_earlier_take(tiny, tmp_path):
    """Real: an 8 KiB tmpfs mounted in a private mount namespace of an unprivileged user
    namespace (``unshare -Urm``; gone with the process, nothing changes outside it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = 'mount -t tmpfs -o size=8k tmpfs "$1" && shift && exec "$@"'
    namespace = ("unshare", "-Urm", "sh", "-c", mount, "sh", str(disk))
    probe = (
        subprocess.run([*namespace, "true"], capture_output=True, text=True)
        if shutil.which("unshare")
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip(f"no unprivileged mount namespace here: {probe and probe.stderr.strip()}")
    out = disk / "take.wav"
    seen = run_host(tmp_path, [str(tiny["custom_voice"]), str(out), "0"], namespace)
    assert seen["error"]["code"] == "output_write_failed"
    assert seen["error"]["detail"] == f"cannot write {out}: No space left on device (ENOSPC)"
    assert "disk is full" in seen["error"]["hint"]
    assert seen["names"] == ["take.wav"] and seen["earlier"] == "an earlier take"
