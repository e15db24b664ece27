"""Saved clone voices: a reference recording and its transcript, under the host's data folder.

Each voice is a folder ``<root>/<id>/`` holding ``voice.json`` and the recording as uploaded.
HTTP synthesis refers to voices by id only, so a client never names a path on the server.

The folders are the index: there is no second list of voices that could disagree with them.
A voice appears and disappears by one atomic rename, so a reader never sees half a voice.
Writers (``add``, ``delete``), in this process or any other, take turns on ``<root>/.lock``;
holding it, a writer also clears what a writer that died left behind (``.new-*``,
``.deleted-*``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import struct
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from hookspecs import TtsError

VOICES_ENV = "EXAMPLE_HOST_VOICES"
"""Folder of the voice library; default: the user data folder's ``example_host/voices``."""

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MIN_SECONDS = 1.0
"""Shorter recordings are refused: too little of a voice to clone (the engine wants 3-10 s)."""
MAX_SECONDS = 60.0
"""Longer recordings are refused, and decoding stops there (a small FLAC can hold hours)."""
SILENCE_DBFS = -60.0
"""Recordings whose RMS level is below this (0.1 % of full scale) are refused as silent."""
TRUNCATION_TOLERANCE = 0.01
"""A stream that decodes to fewer frames than its header declares, by more than this share,
was cut short (an MP3's declared length is an estimate, hence the slack)."""
LOCK_TIMEOUT_S = 10.0
"""How long a writer waits for ``<root>/.lock`` before answering ``server_busy``."""
LOCK_NAME = ".lock"
UPLOAD_HINT = "Upload 3 to 10 seconds of clean speech as WAV, FLAC, OGG or MP3."

_ID = re.compile(r"^[0-9a-f]{12}$")
_LEFTOVERS = (".new-*", ".deleted-*")
_BLOCK_SAMPLES = 1 << 20
_SHOWN_CHARS = 80


def default_root() -> Path:
    """``$EXAMPLE_HOST_VOICES``, else ``<user data dir>/example_host/voices``."""
    configured = os.environ.get(VOICES_ENV)
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("example_host")) / "voices"


class VoiceLibrary:
    """Add, list, read and delete saved voices. Any number of threads and processes may share
    a library: readers need no lock, writers take turns on ``<root>/.lock``."""

    def __init__(
        self, root: str | os.PathLike | None = None, lock_timeout_s: float = LOCK_TIMEOUT_S
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.lock_timeout_s = lock_timeout_s

    def add(
        self,
        name: str,
        filename: str,
        data: bytes,
        ref_text: str | None = None,
        language: str | None = None,
    ) -> dict[str, Any]:
        """Store an uploaded recording as a new voice; ``ref_audio_invalid`` when it is not
        1 to 60 s of audible, finite audio this host decodes whole."""
        suffix = Path(filename or "").suffix.lower()
        if suffix not in AUDIO_SUFFIXES:
            raise _refused(filename, "is not a WAV, FLAC, OGG or MP3 file (by its name)")
        duration = check_recording(data, filename)
        voice = {
            "id": uuid.uuid4().hex[:12],
            "name": name.strip() or Path(filename).stem,
            "ref_text": (ref_text or "").strip() or None,
            "language": (language or "").strip() or None,
            "file": f"reference{suffix}",
            "duration_s": round(duration, 3),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with self._writing():
            self._publish(voice, data)
        return voice

    def list(self) -> list[dict[str, Any]]:
        """Every saved voice, oldest first; a folder that is not a whole voice is skipped."""
        if not self.root.is_dir():
            return []
        voices = []
        for folder in self.root.iterdir():
            if _ID.match(folder.name):
                try:
                    voices.append(self.get(folder.name))
                except TtsError:
                    continue
        return sorted(voices, key=lambda voice: voice["created_at"])

    def get(self, voice_id: str) -> dict[str, Any]:
        """One voice by id; ``unknown_voice`` when there is none (or it is being deleted, or
        its record is damaged)."""
        folder = self._folder(voice_id)
        try:
            voice = json.loads((folder / "voice.json").read_text(encoding="utf-8"))
            if not all(isinstance(voice.get(k), str) for k in ("id", "file", "created_at")):
                raise ValueError("incomplete voice record")
        except (OSError, ValueError) as exc:
            raise _unknown(voice_id, f"its record cannot be read ({type(exc).__name__})") from None
        return voice

    def audio_path(self, voice_id: str) -> Path:
        """Where the voice's recording lies (for the engine, never sent to a client)."""
        return self._folder(voice_id) / self.get(voice_id)["file"]

    def delete(self, voice_id: str) -> None:
        """Remove a voice: renamed out of sight first, so no reader sees it half gone."""
        self._folder(voice_id)
        with self._writing():
            doomed = self.root / f".deleted-{voice_id}-{uuid.uuid4().hex[:6]}"
            try:
                os.replace(self.root / voice_id, doomed)
            except FileNotFoundError:
                raise _unknown(voice_id, "it was just deleted") from None
            shutil.rmtree(doomed, ignore_errors=True)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the library's write lock over a root cleared of dead writers' leftovers;
        ``server_busy`` when another writer keeps it over ``lock_timeout_s``."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.root / LOCK_NAME, timeout=self.lock_timeout_s)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise TtsError(
                "server_busy",
                "the voice library is being changed by another writer "
                f"(waited {self.lock_timeout_s:g} s for its lock)",
                "Try again in a moment.",
            ) from None
        try:
            for pattern in _LEFTOVERS:
                for leftover in self.root.glob(pattern):
                    shutil.rmtree(leftover, ignore_errors=True)
            yield
        finally:
            lock.release()

    def _publish(self, voice: dict[str, Any], data: bytes) -> None:
        """Write the voice into a staging folder and rename it into place (lock held)."""
        staging = Path(tempfile.mkdtemp(prefix=".new-", dir=self.root))
        try:
            (staging / voice["file"]).write_bytes(data)
            (staging / "voice.json").write_text(json.dumps(voice, indent=2), encoding="utf-8")
            for path in (staging, *staging.iterdir()):
                path.chmod(0o755 if path.is_dir() else 0o644)
            os.replace(staging, self.root / voice["id"])
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _folder(self, voice_id: str) -> Path:
        """The folder of a saved voice; ``unknown_voice`` when the id names none."""
        folder = self.root / voice_id
        if not _ID.fullmatch(voice_id) or not (folder / "voice.json").is_file():
            raise _unknown(voice_id, "there is none")
        return folder


def _unknown(voice_id: str, why: str) -> TtsError:
    """``unknown_voice`` for ``voice_id``, saying ``why``."""
    return TtsError(
        "unknown_voice",
        f"no saved voice {voice_id!r}: {why}",
        "List the saved voices (GET /api/tts/voices) and use one of their ids.",
    )


@dataclass
class _Decoded:
    """What decoding a recording whole found out about it."""

    rate: int
    channels: int
    declared: int
    frames: int = 0
    non_finite: int = 0
    sum_squares: float = 0.0

    @property
    def seconds(self) -> float:
        """The decoded length in seconds."""
        return self.frames / self.rate

    @property
    def dbfs(self) -> float:
        """The RMS level in dB below full scale (``-inf`` for digital silence)."""
        rms = math.sqrt(self.sum_squares / max(1, self.frames * self.channels))
        return 20 * math.log10(rms) if rms > 0 else -math.inf


def check_recording(data: bytes, filename: str) -> float:
    """The recording's length in seconds, decoded whole; ``ref_audio_invalid`` when it cannot
    be decoded or is cut short, empty, non-finite, too short, too long or silent."""
    if not data:
        raise _refused(filename, "is an empty file (0 bytes)", "Upload the recording itself.")
    decoded = _decode(data, filename)
    if decoded.frames > MAX_SECONDS * decoded.rate:
        raise _refused(
            filename,
            f"is longer than {MAX_SECONDS:g} s",
            "Trim it to 3 to 10 seconds of clean speech.",
        )
    share = min(_wav_share_present(data), _decoded_share(decoded))
    if share < 1 - TRUNCATION_TOLERANCE:
        raise _refused(
            filename,
            f"is cut short: it ends at {share:.0%} of the length its header declares",
            "Upload the whole file (was a download or copy interrupted?).",
        )
    if decoded.frames == 0:
        raise _refused(filename, "holds no audio samples", "Record 3 to 10 seconds of speech.")
    if decoded.non_finite:
        raise _refused(
            filename,
            f"holds samples that are not numbers (NaN or infinity): {decoded.non_finite} of "
            f"{decoded.frames * decoded.channels}",
            "Export the recording again, as 16-bit PCM WAV or FLAC.",
        )
    if decoded.seconds < MIN_SECONDS:
        raise _refused(
            filename,
            f"is {decoded.seconds:.2f} s long; a voice needs at least {MIN_SECONDS:g} s",
            "Record 3 to 10 seconds of clean speech.",
        )
    if decoded.dbfs < SILENCE_DBFS:
        level = "every sample is zero" if decoded.dbfs == -math.inf else f"{decoded.dbfs:.0f} dBFS"
        raise _refused(
            filename,
            f"is silent ({level}; the RMS level must reach {SILENCE_DBFS:g} dBFS)",
            "Check the microphone and its input level, then record 3 to 10 seconds of speech.",
        )
    return decoded.seconds


def _decode(data: bytes, filename: str) -> _Decoded:
    """Decode every frame (up to just past ``MAX_SECONDS``), keeping only running totals."""
    import numpy as np
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            decoded = _Decoded(sound.samplerate, sound.channels, sound.frames)
            limit, frames = MAX_SECONDS * sound.samplerate, max(1, _BLOCK_SAMPLES // sound.channels)
            while len(block := sound.read(frames, dtype="float32", always_2d=True)):
                finite = np.isfinite(block)
                decoded.frames += len(block)
                decoded.non_finite += int(block.size - np.count_nonzero(finite))
                decoded.sum_squares += float(np.square(block[finite], dtype=np.float64).sum())
                if decoded.frames > limit:
                    break
    except RuntimeError as exc:  # soundfile.LibsndfileError is one
        raise _refused(
            filename,
            f"cannot be decoded ({_decoder_reason(exc)})",
            "The file is damaged or not audio: export the recording again as WAV or FLAC "
            "(MP3 needs libsndfile 1.1 or later on the server).",
        ) from None
    return decoded


def _decoder_reason(exc: RuntimeError) -> str:
    """libsndfile's reason in plain words (its exception text holds the BytesIO's repr)."""
    if getattr(exc, "code", None) == 7:  # "file does not exist": a short read from memory
        return "the data ends before the first frame"
    reason = str(getattr(exc, "error_string", "") or "").strip()
    reason = reason.removeprefix("Error : ").rstrip(".")
    return reason or "the decoder refused it"


def _wav_share_present(data: bytes) -> float:
    """For a RIFF/WAVE file, the share of its ``data`` chunk's declared bytes that are there
    (libsndfile quietly reads a cut WAV as a shorter one); 1.0 when it is not a WAV."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return 1.0
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = struct.unpack_from("<4sI", data, offset)
        if chunk == b"data":
            if size in (0, 0xFFFFFFFF):  # written by a streaming recorder: length unknown
                return 1.0
            return min(1.0, (len(data) - offset - 8) / size)
        offset += 8 + size + (size & 1)
    return 1.0


def _decoded_share(decoded: _Decoded) -> float:
    """The share of the header's declared frames that decoded (1.0 when none is declared)."""
    if not 0 < decoded.declared < 2**62:
        return 1.0
    return min(1.0, decoded.frames / decoded.declared)


def _refused(filename: str, what: str, hint: str = UPLOAD_HINT) -> TtsError:
    """``ref_audio_invalid`` naming the upload as its client called it, never a repr."""
    return TtsError("ref_audio_invalid", f"{_shown(filename)} {what}", hint)


def _shown(filename: str) -> str:
    """The client's file name, quoted, without folders or control characters, at most
    ``_SHOWN_CHARS`` long."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(c for c in name if not unicodedata.category(c).startswith("C"))
    if len(name) > _SHOWN_CHARS:
        name = name[: _SHOWN_CHARS - 1] + "\u2026"
    return f'"{name}"' if name else "the upload"
