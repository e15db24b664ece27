"""Narration scripts: a plain text file (one segment per line) or SubRip subtitles (.srt).

The parser reads the file's structure, not its words: it drops lines and cues that are empty or
only ASCII whitespace, trims ASCII whitespace at the ends, and passes everything else to the
engine as written. Whether a text is speakable is the engine's call (a line of ideographic
spaces, say, comes back as ``empty_text`` for that segment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ASCII_SPACE = " \t\r\n\f\v"

_TIMING = re.compile(
    r"^\s*(?P<start>\d+:\d{1,2}:\d{1,2}(?:[,.]\d{1,3})?)\s*-->\s*"
    r"(?P<end>\d+:\d{1,2}:\d{1,2}(?:[,.]\d{1,3})?)"
)
_TAG = re.compile(r"<[^<>]*>|\{\\[^{}]*\}")  # <i>, </font>, {\an8}


class ScriptError(Exception):
    """The script cannot be read or holds no segments."""


@dataclass(frozen=True)
class Segment:
    """One piece of narration: its number (srt cue index, or line number in a text file) and
    its text."""

    number: int
    text: str
    start_s: float | None = None
    end_s: float | None = None

    @property
    def empty(self) -> bool:
        """True when there is nothing to send to the engine (listed as skipped)."""
        return not self.text


def read_script(path: Path) -> list[Segment]:
    """The segments of a .srt file or of a text file, in order."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ScriptError(f"script not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"cannot read script {path}: {exc}") from None
    segments = parse_srt(text) if path.suffix.lower() == ".srt" else parse_lines(text)
    if not segments:
        raise ScriptError(f"script {path} has no segments")
    return segments


def parse_lines(text: str) -> list[Segment]:
    """One segment per line that is not blank, numbered by its line in the file (1-based), so
    a message about segment 7 points at line 7."""
    lines = (line.strip(ASCII_SPACE) for line in text.splitlines())
    return [Segment(number, line) for number, line in enumerate(lines, start=1) if line]


def parse_srt(text: str) -> list[Segment]:
    """SubRip cues: numbered by their index, text lines joined with a space, tags stripped.

    Tolerates a BOM, CRLF, missing or non-numeric indices (the next number is used) and missing
    blank lines between cues. A cue without text is kept as an empty segment.
    """
    lines = text.lstrip("\ufeff").splitlines()
    cues: list[tuple[str | None, re.Match[str], list[str]]] = []
    pending: list[str] = []  # lines since the last timing line
    for line in lines:
        timing = _TIMING.match(line)
        if timing is None:
            pending.append(line)
            continue
        index = None
        while pending and not pending[-1].strip(ASCII_SPACE):
            pending.pop()
        if pending and pending[-1].strip(ASCII_SPACE).isdigit():
            index = pending.pop().strip(ASCII_SPACE)
        if cues:
            cues[-1][2].extend(pending)
        pending = []
        cues.append((index, timing, []))
    if cues:
        cues[-1][2].extend(pending)
    segments: list[Segment] = []
    for index, timing, body in cues:
        previous = segments[-1].number if segments else 0
        number = int(index) if index is not None and int(index) > previous else previous + 1
        segments.append(
            Segment(
                number,
                _cue_text(body),
                _seconds(timing["start"]),
                _seconds(timing["end"]),
            )
        )
    return segments


def _cue_text(body: list[str]) -> str:
    """A cue's lines without tags, joined with single spaces."""
    parts = (_TAG.sub("", line).strip(ASCII_SPACE) for line in body)
    return " ".join(filter(None, parts))


def _seconds(stamp: str) -> float:
    """``HH:MM:SS,mmm`` as seconds."""
    hours, minutes, seconds = stamp.replace(",", ".").split(":")
    return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 3)
