"""The text to speak: checked and cleaned before any model work, then cut into pieces.

Qwen3-TTS speaks best in sentence-sized pieces, and one generate call has a frame budget, so a
long narration is split at sentence ends (then clause marks, then, as a last resort, between
words) into pieces of about ``PieceChars``, spoken as one batch and joined with short pauses.
A text no longer than one piece stays whole.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from hookspecs import TtsError

KEPT_CONTROLS = frozenset("\n\r\t")
"""Control characters kept in the text (line breaks mark sentence ends)."""
LINE_BREAK_CONTROLS = frozenset("\x0b\x0c\x1c\x1d\x1e\x85")
"""Control characters that separate lines: replaced by a line break, never glued words."""

PAUSE_S = {"paragraph": 0.6, "sentence": 0.3, "clause": 0.15, "word": 0.05}
"""Silence between two pieces, by what ended the first (seconds). A narrator's usual rests:
a breath after a sentence, a longer one at a paragraph, a short one at a clause; a split
between words (a sentence with no clause mark that fits in no piece) gets only a click guard."""

_SENTENCE_END = re.compile(
    r"(?:[。！？；…]+|(?<![.!?;])[.!?;]+(?=[\s\"'”’)\]」』）]|$)|\.{3,})"
    r"[\"'”’)\]」』）]*"
)
_CLAUSE_END = re.compile(r"(?:[，、：]+|[,:](?=\s)|—+)[\"'”’)\]」』）]*")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")


@dataclass(frozen=True)
class Piece:
    """One generate call's text, and the pause that follows it in the joined audio."""

    text: str
    pause_s: float


def clean_text(text: str, max_chars: int) -> str:
    """``text`` ready to speak: control characters that separate lines become line breaks,
    other control characters except tabs are removed.

    ``text_too_long`` over ``max_chars`` (checked first: no other work on a huge text),
    ``invalid_text`` when it is not valid Unicode (lone surrogates), ``empty_text`` when no
    letter or digit is left.
    """
    if len(text) > max_chars:
        raise TtsError(
            "text_too_long",
            f"the text has {len(text):,} characters; at most {max_chars:,} (MaxChars)",
            "Send the narration in parts (one per segment or chapter), or raise MaxChars.",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TtsError(
            "invalid_text",
            f"the text is not valid Unicode: {exc.reason} at position {exc.start}",
            "Decode the text properly (UTF-8); lone surrogates cannot be spoken.",
        ) from None
    cleaned = "".join(
        "\n" if c in LINE_BREAK_CONTROLS else c
        for c in text
        if c in KEPT_CONTROLS or c in LINE_BREAK_CONTROLS or unicodedata.category(c) != "Cc"
    )
    if not any(unicodedata.category(c)[0] in "LN" for c in cleaned):
        raise TtsError(
            "empty_text",
            "nothing to speak: the text has no letter or digit"
            + (" (it is empty)" if not cleaned.strip() else ""),
            "Send text with words in it.",
        )
    return cleaned


def split_pieces(text: str, piece_chars: int) -> list[Piece]:
    """``text`` in pieces of at most about ``piece_chars`` characters, in order.

    A text that fits is one piece, unchanged. Otherwise sentences (ends: 。！？；… and
    . ! ? ; before a space, line breaks) are packed into pieces, a paragraph (a blank line)
    always ending one; a sentence longer
    than a piece is split at clause marks (，、： anywhere, , and : before a space, —), and a
    clause still longer between words
    (at a space, or between two CJK characters), never inside a word or a number: a single
    word longer than a piece stays whole.
    """
    if len(text) <= piece_chars:
        return [Piece(text, 0.0)]
    units: list[tuple[str, str]] = []  # (text, what ends it)
    for paragraph in _PARAGRAPH_BREAK.split(text.strip()):
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        for line in lines:
            for sentence in _split_after(line, _SENTENCE_END):
                units.extend(_fit(sentence, piece_chars))
            units[-1] = (units[-1][0], "sentence")
        if units:
            units[-1] = (units[-1][0], "paragraph")
    pieces: list[Piece] = []
    current, end = "", "sentence"
    for unit, unit_end in units:
        if current and len(current) + 1 + len(unit) > piece_chars:
            pieces.append(Piece(current, PAUSE_S[end]))
            current = ""
        current = f"{current}{_joiner(current, unit)}{unit}" if current else unit
        end = unit_end
        if end == "paragraph":  # a paragraph always ends a piece, and its pause is kept
            pieces.append(Piece(current, PAUSE_S[end]))
            current = ""
    if current:
        pieces.append(Piece(current, PAUSE_S[end]))
    return [*pieces[:-1], Piece(pieces[-1].text, 0.0)]


def _fit(sentence: str, limit: int) -> list[tuple[str, str]]:
    """A sentence as units no longer than ``limit`` where it can be: clauses, then words."""
    if len(sentence) <= limit:
        return [(sentence, "sentence")]
    units: list[tuple[str, str]] = []
    for clause in _split_after(sentence, _CLAUSE_END):
        if len(clause) <= limit:
            units.append((clause, "clause"))
        else:
            units.extend((part, "word") for part in _between_words(clause, limit))
            units[-1] = (units[-1][0], "clause")
    units[-1] = (units[-1][0], "sentence")  # the sentence's end keeps its own pause
    return units


def _between_words(text: str, limit: int) -> list[str]:
    """``text`` cut into parts of at most ``limit`` characters where a cut may go (a space, or
    a side of a CJK character); a part grows past ``limit`` only when no cut is possible."""
    parts = []
    while len(text) > limit:
        cut = max((i for i in range(1, limit + 1) if _may_cut(text, i)), default=None)
        if cut is None:
            cut = next((i for i in range(limit + 1, len(text)) if _may_cut(text, i)), len(text))
        head, text = text[:cut].rstrip(), text[cut:].lstrip()
        if head:
            parts.append(head)
    if text:
        parts.append(text)
    return parts


def _may_cut(text: str, i: int) -> bool:
    """Whether a piece may end before ``text[i]``: at a space, or beside a CJK character
    (each is a word of its own); never inside a run of other characters (a word, a number,
    an address)."""
    before, after = text[i - 1], text[i]
    return before.isspace() or after.isspace() or _is_cjk(before) or _is_cjk(after)


_CJK_RANGES = (
    (0x3000, 0x303F),  # CJK punctuation
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x31F0, 0x31FF),  # katakana extensions
    (0x3400, 0x4DBF),  # Han extension A
    (0x4E00, 0x9FFF),  # Han
    (0xF900, 0xFAFF),  # Han compatibility
    (0xFF00, 0xFFEF),  # full-width forms
    (0x20000, 0x2FA1F),  # Han extensions B and later
)


def _is_cjk(char: str) -> bool:
    """Chinese or Japanese script: written without spaces, each character a word of its own.
    (Korean writes spaces between words: Hangul is cut at spaces like Latin text.)"""
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _split_after(text: str, marks: re.Pattern[str]) -> list[str]:
    """``text`` split after every match of ``marks``, parts stripped, empty ones dropped."""
    parts, start = [], 0
    for match in marks.finditer(text):
        parts.append(text[start : match.end()])
        start = match.end()
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _joiner(left: str, right: str) -> str:
    """No space inside Chinese or Japanese text, one anywhere else."""
    return "" if _is_cjk(left[-1]) and _is_cjk(right[0]) else " "
