"""How many frames a piece of text may take: the smaller of the caller's ``max_new_tokens`` and
a bound computed from the text, so a row whose end never comes stops near the longest the line
could honestly take instead of at 2,048 frames (164 s).

The bound is the text's length at ordinary speaking rates, times ``MARGIN``, with a floor.
Rates per kind of character (``NORMAL_RATES``), from the cross-language speech-rate study of
Pellegrino, Coupé and Marsico (2011, *Language* 87(3): 539-558): about 6.2 syllables a second
in English (14 characters, spaces included), 5.2 in Mandarin (one Han character a syllable),
7.8 morae in Japanese (one kana a mora); Korean ~6 syllable blocks. A digit is spoken as a
word or more (``1999``: four words), so it counts as ``DIGIT_CHARS`` letters; every
sentence or clause mark adds a pause. ``MARGIN`` (2.5x the ordinary duration: a slow narrator,
a voice described as slow, an in-context clone of a slow speaker) and the retry at twice the
bound leave room for any honest reading.

Pure: no torch, no model.
"""

from __future__ import annotations

import math
import unicodedata

from hookspecs.models import MAX_NEW_TOKENS

FRAMES_PER_SECOND = 12.5
"""Codec frames a second of audio (the 12 Hz models: 24,000 samples / 1,920)."""

NORMAL_RATES = {"han": 5.0, "kana": 8.0, "hangul": 6.0, "other": 14.0}
"""Characters an ordinary speaker says a second, by kind (module docstring)."""
DIGIT_CHARS = 4
"""A digit counts as this many letters (``other`` characters)."""
PAUSE_S = 0.3
"""Seconds a sentence or clause mark adds."""
PAUSE_MARKS = frozenset(".,;:!?…。，、；：！？")
MARGIN = 2.5
"""The bound over the ordinary duration."""
FLOOR_S = 4.0
"""The least bound, in seconds (a one-word line, an interjection)."""


def kind_of(char: str) -> str | None:
    """Which rate a character is spoken at (``NORMAL_RATES``), or None when it is not spoken
    (punctuation, symbols, control characters)."""
    code = ord(char)
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
        return "han"
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF:
        return "kana"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "hangul"
    category = unicodedata.category(char)
    if category[0] in "LNM" or char == " ":
        return "other"
    return None


def ordinary_seconds(text: str) -> float:
    """How long an ordinary speaker takes to say ``text``, pauses included."""
    seconds = 0.0
    for char in text:
        if char in PAUSE_MARKS:
            seconds += PAUSE_S
            continue
        kind = kind_of(char)
        if kind is None:
            continue
        weight = DIGIT_CHARS if char.isdigit() else 1
        seconds += weight / NORMAL_RATES[kind]
    return seconds


def text_bound(text: str) -> int:
    """The most frames ``text`` could honestly take: its ordinary duration times ``MARGIN``,
    at least ``FLOOR_S``, within the contract's ``MAX_NEW_TOKENS``."""
    seconds = max(FLOOR_S, MARGIN * ordinary_seconds(text))
    return min(math.ceil(seconds * FRAMES_PER_SECOND), MAX_NEW_TOKENS)


def first_budget(asked: int, bound: int | None) -> int:
    """A piece's budget on its first try: the caller's ``asked`` or its text's ``bound``
    (None: no bound, ``FrameBound=off``), the smaller."""
    return asked if bound is None else min(asked, bound)


def runaway_retry_budget(asked: int, tried: int, ceiling: int) -> int | None:
    """The budget a piece cut at its text bound (``tried`` < ``asked``) is spoken again with:
    twice the bound, within the caller's ``asked`` and what the backend honours; None when
    that is no more than it had."""
    budget = min(2 * tried, asked, ceiling)
    return budget if budget > tried else None


def last_budget(asked: int, bound: int | None) -> int:
    """The largest budget a piece gets over its tries (what a stream, which cannot take audio
    back for a retry, gives it from the start): twice its text's ``bound``, within ``asked``,
    when the bound is the smaller; else twice ``asked``, within the contract's most."""
    if bound is not None and bound < asked:
        return min(2 * bound, asked)
    return min(2 * asked, MAX_NEW_TOKENS)


def derived_seed(seed: int, piece: int) -> int:
    """The seed a sampled piece's runaway retry draws with: another one, the same every time
    for the same request seed and piece (a retry that replayed the seed would run away
    again)."""
    return (seed * 1_000_003 + 7_919 * (piece + 1)) % 2**63
