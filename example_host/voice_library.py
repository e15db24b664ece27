"""Saved clone voices: a reference recording and its transcript, under the host's data folder.

Each voice is a folder ``<root>/<id>/`` holding ``voice.json`` and the recording as uploaded.
HTTP synthesis refers to voices by id only, so a client never names a path on the server.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from hookspecs import TtsError

VOICES_ENV = "EXAMPLE_HOST_VOICES"
"""Folder of the voice library; default: the user data folder's ``example_host/voices``."""

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_ID = re.compile(r"^[0-9a-f]{12}$")


def default_root() -> Path:
    """``$EXAMPLE_HOST_VOICES``, else ``<user data dir>/example_host/voices``."""
    configured = os.environ.get(VOICES_ENV)
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("example_host")) / "voices"


class VoiceLibrary:
    """Add, list, read and delete saved voices. One process writes at a time (the server)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()

    def add(
        self,
        name: str,
        filename: str,
        data: bytes,
        ref_text: str | None = None,
        language: str | None = None,
    ) -> dict[str, Any]:
        """Store an uploaded recording as a new voice; ``invalid_request`` when it is not
        audio this host can read."""
        suffix = Path(filename or "").suffix.lower()
        if suffix not in AUDIO_SUFFIXES:
            raise TtsError(
                "invalid_request",
                f"{filename!r} is not a {', '.join(AUDIO_SUFFIXES)} file",
                "Upload 3 to 10 seconds of clean speech as WAV, FLAC, OGG or MP3.",
            )
        duration = _duration(data, filename)
        name = name.strip() or Path(filename).stem
        voice = {
            "id": uuid.uuid4().hex[:12],
            "name": name,
            "ref_text": (ref_text or "").strip() or None,
            "language": (language or "").strip() or None,
            "file": f"reference{suffix}",
            "duration_s": round(duration, 3),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.root.mkdir(parents=True, exist_ok=True)
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
        folder = self._folder(voice_id)
        doomed = self.root / f".deleted-{voice_id}-{uuid.uuid4().hex[:6]}"
        try:
            os.replace(folder, doomed)
        except FileNotFoundError:
            raise _unknown(voice_id, "it was just deleted") from None
        shutil.rmtree(doomed, ignore_errors=True)

    def _folder(self, voice_id: str) -> Path:
        folder = self.root / voice_id
        if not _ID.fullmatch(voice_id) or not (folder / "voice.json").is_file():
            raise _unknown(voice_id, "there is none")
        return folder


def _unknown(voice_id: str, why: str) -> TtsError:
    return TtsError(
        "unknown_voice",
        f"no saved voice {voice_id!r}: {why}",
        "List the saved voices (GET /api/tts/voices) and use one of their ids.",
    )


def _duration(data: bytes, filename: str) -> float:
    """The recording's length in seconds, read by libsndfile from the bytes."""
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
    except (RuntimeError, TypeError, soundfile.LibsndfileError) as exc:
        raise TtsError(
            "invalid_request",
            f"{filename!r} is not audio this host can read: {exc}",
            "Upload 3 to 10 seconds of clean speech as WAV, FLAC, OGG or MP3.",
        ) from None
    return info.frames / info.samplerate if info.samplerate else 0.0
