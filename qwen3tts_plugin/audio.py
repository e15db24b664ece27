"""Audio in and out: reference recordings, waveform checks, atomic 16-bit PCM WAV files.

Imported only from the functions that synthesise (it imports numpy and soundfile).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from hookspecs import TtsError

from .hints import FP32_HINT

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


def check_out_path(path: Path) -> None:
    """Refuse, before any model work, an output path that cannot be written.

    ``output_write_failed`` when the path holds a NUL character, when it is a folder, when
    what would be its folder is a file, or when the nearest existing folder is not writable.
    A missing folder is fine: the write creates it.
    """
    problem = None
    shown: object = path
    if "\x00" in str(path):
        problem, shown = "the path contains a NUL character", repr(str(path))
    elif path.is_dir():
        problem = "it is a folder"
    else:
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            problem = f"{folder} is not a folder"
        elif not os.access(folder, os.W_OK | os.X_OK):
            problem = f"the folder {folder} is not writable"
    if problem:
        raise TtsError(
            "output_write_failed",
            f"cannot write {shown}: {problem}",
            "Choose a writable output path: a .wav file in a folder you can write to.",
        )


def write_wav_atomic(path: Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM: a temporary file in the target folder, then a rename.

    On failure nothing is left behind and an existing file at ``path`` is untouched.
    """
    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as tmp:
            tmp_name = tmp.name
            sf.write(tmp, np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        os.chmod(tmp_name, 0o644)  # temporary files are private; the result is not
        os.replace(tmp_name, path)
        tmp_name = None
    except (OSError, sf.LibsndfileError) as exc:
        raise TtsError(
            "output_write_failed",
            f"cannot write {path}: {exc}",
            "Choose a writable output folder with free space.",
        ) from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
