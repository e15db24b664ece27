"""Audio in and out: reference recordings, waveform checks, atomic 16-bit PCM WAV files.

Imported only from the functions that synthesise (it imports numpy and soundfile).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from hookspecs import TtsError

from .hints import (
    FP32_HINT,
    NAME_TOO_LONG_HINT,
    NOT_A_FILE_HINT,
    OUTPUT_PATH_HINT,
    output_write_hint,
)

MIN_REFERENCE_S = 0.5
"""Shorter references fail inside qwen_tts's feature extraction (and could not carry a voice)."""


def read_reference(path: Path) -> tuple[np.ndarray, int]:
    """A mono float32 waveform and its rate from any file soundfile or audioread can read."""
    if not path.is_file():
        raise TtsError("ref_audio_invalid", f"reference audio not found: {path}")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        audio, rate = read_with_audioread(path)
    if audio.size == 0 or not np.isfinite(audio).all():
        raise TtsError("ref_audio_invalid", f"reference audio {path} is empty or not finite")
    if audio.size < MIN_REFERENCE_S * rate:
        raise TtsError(
            "ref_audio_invalid",
            f"reference audio {path} is {audio.size / rate:.2f} s long; at least "
            f"{MIN_REFERENCE_S} s is needed",
            "Use 3 to 10 seconds of clean speech.",
        )
    peak = float(np.abs(audio).max())
    if peak > 1.0:
        # Out-of-range float audio: qwen_tts's mel code would print a warning on stdout.
        audio = audio * (0.99 / peak)
    return audio.astype(np.float32, copy=False), int(rate)


def read_with_audioread(path: Path) -> tuple[np.ndarray, int]:
    """Formats libsndfile cannot read (MP3, M4A, ...), decoded by audioread's backends
    (ffmpeg, GStreamer, ...): 16-bit PCM, averaged to mono."""
    import audioread

    try:
        with audioread.audio_open(str(path)) as source:
            rate, channels = int(source.samplerate), max(1, int(source.channels))
            pcm = b"".join(source)
    except Exception as exc:  # audioread's backends raise their own types
        raise TtsError(
            "ref_audio_invalid",
            f"cannot read reference audio {path}: {type(exc).__name__}: {exc}",
            "Use a WAV, FLAC or OGG file (other formats need ffmpeg installed).",
        ) from exc
    frame = 2 * channels
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % frame], dtype="<i2")
    audio = samples.astype(np.float32).reshape(-1, channels).mean(axis=1) / 32768.0
    return audio, rate


def check_waveform(wav: np.ndarray) -> np.ndarray:
    """The waveform as mono float32; ``invalid_audio`` when empty or not finite."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if wav.size == 0:
        raise TtsError("invalid_audio", "the model produced no audio", FP32_HINT)
    if not np.isfinite(wav).all():
        bad = int(np.count_nonzero(~np.isfinite(wav)))
        raise TtsError(
            "invalid_audio", f"the model produced {bad} non-finite samples of {wav.size}", FP32_HINT
        )
    return wav


NAME_MAX_FALLBACK = 255
"""The longest file name, in bytes, where the filesystem cannot say (ext4, NTFS, APFS: 255)."""

TEMP_STEM_CHARS = 32
"""How much of the file name the temporary file's name keeps (it must fit where the name fits)."""

SPECIAL_FILES = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
"""What an existing output path may be instead of a regular file, in words."""


def check_out_path(path: Path) -> None:
    """Refuse, before any model work, an output path that cannot be written.

    ``output_write_failed`` when the path holds a NUL character; when a name in it is longer
    than the filesystem allows; when what would be its folder is a file, or the nearest existing
    folder is not writable; when it exists and is not a regular file (a folder, named pipe,
    device, socket), or is a symbolic link to one, or a dangling link. A missing folder is fine:
    the write creates it. A link to a regular file is written through (write_wav_atomic).
    Nothing at the path is touched.
    """
    text = str(path)
    if "\x00" in text:
        raise out_path_refused(repr(text), "the path contains a NUL character", OUTPUT_PATH_HINT)
    folder = nearest_folder(path)
    problem = (
        name_too_long(path, folder)
        or folder_problem(folder)
        or entry_problem(path)
        or link_folder_problem(path)
    )
    if problem is not None:
        raise out_path_refused(path, *problem)


def out_path_refused(shown: object, problem: str, hint: str) -> TtsError:
    """The ``output_write_failed`` error for an output path refused before writing."""
    return TtsError("output_write_failed", f"cannot write {shown}: {problem}", hint)


def nearest_folder(path: Path) -> Path:
    """The closest ancestor of ``path`` that exists (the current folder for a bare name)."""
    for folder in path.parents:
        if os.path.exists(folder):  # False for any OSError (a name too long among them)
            return folder
    return Path(path.anchor or ".")


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, the filesystem holding ``folder`` accepts."""
    if hasattr(os, "pathconf") and "PC_NAME_MAX" in os.pathconf_names:
        try:
            return int(os.pathconf(folder, "PC_NAME_MAX"))
        except OSError:  # the filesystem does not say
            return NAME_MAX_FALLBACK
    return NAME_MAX_FALLBACK


def name_too_long(path: Path, folder: Path) -> tuple[str, str] | None:
    """Why a name ``path`` would create below its existing ``folder`` cannot exist, if so."""
    limit = name_max(folder)
    created = path.parts[len(folder.parts) :]
    for place, name in enumerate(created, start=1):
        size = len(os.fsencode(name))
        if size > limit:
            last = place == len(created)
            what = "the file name" if last else f"the folder name {name[:40]}..."
            return (
                f"{what} is {size} bytes long; the filesystem allows at most {limit}",
                NAME_TOO_LONG_HINT,
            )
    return None


def folder_problem(folder: Path) -> tuple[str, str] | None:
    """Why the nearest existing folder cannot receive the file, if so."""
    if not folder.is_dir():
        return f"{folder} is not a folder", OUTPUT_PATH_HINT
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable", OUTPUT_PATH_HINT
    return None


def entry_problem(path: Path) -> tuple[str, str] | None:
    """Why what already exists at ``path`` must not be replaced, if so; a missing path and a
    regular file (or a link to one) are fine."""
    try:
        own = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return os_reason(exc), output_write_hint(exc.errno)
    if not stat.S_ISLNK(own.st_mode):
        kind = special_kind(own.st_mode)
        return (f"it is {kind}", NOT_A_FILE_HINT) if kind else None
    link = f"it is a symbolic link to {os.readlink(path)}"
    try:
        target = os.stat(path)
    except FileNotFoundError:
        return f"{link}, which does not exist (a dangling link)", NOT_A_FILE_HINT
    except OSError as exc:
        return f"{link}: {os_reason(exc)}", NOT_A_FILE_HINT
    kind = special_kind(target.st_mode)
    return (f"{link}, which is {kind}", NOT_A_FILE_HINT) if kind else None


def special_kind(mode: int) -> str | None:
    """What a file of ``mode`` is, in words, when it is not a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((words for test, words in SPECIAL_FILES if test(mode)), "not a regular file")


def link_folder_problem(path: Path) -> tuple[str, str] | None:
    """For a link to a regular file: why the folder the file lies in cannot receive it, if so."""
    if not os.path.islink(path):
        return None
    return folder_problem(written_path(path).parent)


def written_path(path: Path) -> Path:
    """Where the WAV for ``path`` lands: the file a symbolic link points to, else ``path``."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else path


def os_reason(exc: OSError) -> str:
    """The operating system's reason, in its words, with the errno name: ``No space left on
    device (ENOSPC)``."""
    name = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    reason = exc.strerror or str(exc)
    return f"{reason} ({name})" if name else reason


SAMPLE_RATE_ANY = 24_000
"""A raw PCM encoding carries no rate; libsndfile wants one anyway."""


def write_wav_atomic(path: Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM: encoded in memory, written to a temporary file in the target
    folder with plain file calls and fsync, then renamed onto the target.

    The path is checked again first (it may have changed while the model spoke). Any
    operating-system failure (full disk, file too large, name too long, permission) is
    ``output_write_failed`` with the system's reason; nothing is left behind and an existing
    file at ``path`` is untouched. A symbolic link to a regular file is written through.
    """
    check_out_path(path)
    data = wav_bytes(path, wav, sample_rate)
    target = written_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_with(target, data)
    except OSError as exc:
        raise TtsError(
            "output_write_failed",
            f"cannot write {path}: {os_reason(exc)}",
            output_write_hint(exc.errno),
        ) from exc


def wav_bytes(path: Path, wav: np.ndarray, sample_rate: int) -> memoryview:
    """The whole WAV file, encoded in memory (so no file error can hide inside libsndfile)."""
    buffer = io.BytesIO()
    try:
        sf.write(buffer, np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    except sf.LibsndfileError as exc:
        raise TtsError(
            "output_write_failed", f"cannot encode {path} as WAV: {exc}", OUTPUT_PATH_HINT
        ) from exc
    return buffer.getbuffer()


def pcm16_bytes(wav: np.ndarray) -> bytes:
    """Mono 16-bit little-endian PCM of ``wav``, converted exactly as ``wav_bytes`` converts
    (the same libsndfile path), so streamed samples equal the file's."""
    if not wav.size:
        return b""
    buffer = io.BytesIO()
    sf.write(
        buffer,
        np.clip(wav, -1.0, 1.0),
        SAMPLE_RATE_ANY,
        subtype="PCM_16",
        format="RAW",
        endian="LITTLE",
    )
    return buffer.getvalue()


def replace_with(target: Path, data: memoryview) -> None:
    """``data`` written to a temporary sibling of ``target``, synced, then renamed onto it;
    the temporary file is removed when any step fails."""
    fd, name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name[:TEMP_STEM_CHARS]}.", suffix=".tmp"
    )
    tmp_name: str | None = name
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(name, 0o644)  # temporary files are private; the result is not
        os.replace(name, target)
        tmp_name = None
    finally:
        if tmp_name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)


def write_all(fd: int, data: memoryview) -> None:
    """Every byte of ``data`` written to ``fd`` (a short write is followed by another, which
    raises the operating system's reason when no more fits)."""
    while data:
        data = data[os.write(fd, data) :]
