"""Long narration: checked text, sentence pieces, one WAV, never cut short without a word.

The truncation path runs for real: ``tiny_checkpoint_without_eos`` is a tiny checkpoint whose
talker never ends a text, so every piece uses its whole budget.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from engine_logs import capture_logs
from pydantic import ValidationError

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, TtsError
from qwen3tts_plugin.text import PAUSE_S, clean_text, split_pieces

SAMPLES_PER_FRAME = 1920  # 24 kHz / 12.5 frames per second

CHINESE = "今天我们来讲一个关于河流的故事。它从山里流出来，经过村庄和城市，最后流进大海！"
ENGLISH = (
    "The river bends twice before the old mill. Nobody remembers who built it; the stones "
    "are older than the town."
)


def narration(chars: int) -> str:
    """Chinese and English sentences, in paragraphs, about ``chars`` characters long."""
    paragraphs, text = [], ""
    while len(text) < chars:
        paragraphs.append(f"{CHINESE}{ENGLISH} {CHINESE}")
        text = "\n\n".join(paragraphs)
    return text


@pytest.fixture(scope="module")
def never_ends():
    from qwen3tts_plugin.testing import tiny_checkpoint_without_eos

    return tiny_checkpoint_without_eos()


def request(path, out, text, generation=None, **extra):
    params = {"ModelPath": str(path), "Device": "cpu", **extra}
    return SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params=params),
        text=text,
        out_path=out,
        generation=generation or GenerationParams(),
    )


# --- the text ----------------------------------------------------------------------------------


def test_a_text_that_fits_is_one_piece_unchanged():
    text = "  Hello,\tworld.  "
    assert split_pieces(text, 200) == [split_pieces(text, 200)[0]]
    assert split_pieces(text, 200)[0].text == text


def test_long_text_splits_at_sentence_ends_and_keeps_every_word():
    text = narration(3_000)
    pieces = split_pieces(text, 200)
    assert len(pieces) >= 10
    assert all(len(p.text) <= 200 for p in pieces)
    assert "".join("".join(p.text.split()) for p in pieces) == "".join(text.split())
    for piece in pieces[:-1]:
        assert piece.text[-1] in "。！？；….!?;", piece.text
    assert {p.pause_s for p in pieces[:-1]} <= {PAUSE_S["sentence"], PAUSE_S["paragraph"]}
    assert pieces[-1].pause_s == 0.0


def test_paragraphs_end_pieces_with_the_longer_pause():
    pieces = split_pieces("First part here.\n\nSecond part here. And more of it.", 30)
    assert [p.text for p in pieces] == ["First part here.", "Second part here.", "And more of it."]
    assert [p.pause_s for p in pieces] == [PAUSE_S["paragraph"], PAUSE_S["sentence"], 0.0]


def test_a_long_sentence_splits_at_clauses_then_between_words_never_inside_one():
    sentence = (
        "In 1998, the river rose by 3.75 metres, flooding the valley, the mills and the "
        "bridges that nobody had repaired since the war ended decades before"
    )
    pieces = split_pieces(sentence, 40)
    assert all(len(p.text) <= 40 for p in pieces)
    words = sentence.split()
    assert [w for p in pieces for w in p.text.split()] == words  # no word or number cut
    assert pieces[0].text == "In 1998, the river rose by 3.75 metres,"
    assert pieces[0].pause_s == PAUSE_S["clause"]
    assert PAUSE_S["word"] in {p.pause_s for p in pieces}


def test_chinese_without_punctuation_splits_between_characters():
    text = "这是一个非常长的句子没有任何标点符号一直说下去" * 4
    pieces = split_pieces(text, 25)
    assert "".join(p.text for p in pieces) == text
    assert all(len(p.text) <= 25 for p in pieces)


def test_korean_is_cut_between_words_and_keeps_its_spaces():
    text = "여러분 안녕하세요. 오늘은 그리고 날씨가 좋습니다. " * 6
    pieces = split_pieces(text, 30)
    assert [w for p in pieces for w in p.text.split()] == text.split()


def test_the_last_part_of_a_split_sentence_keeps_the_sentence_pause():
    pieces = split_pieces("First clause, second clause, third clause here. Next one.", 30)
    assert [(p.text, p.pause_s) for p in pieces] == [
        ("First clause, second clause,", PAUSE_S["clause"]),
        ("third clause here. Next one.", 0.0),
    ]
    pieces = split_pieces("First clause, second clause, third clause here. Next one is here.", 30)
    assert (pieces[1].text, pieces[1].pause_s) == ("third clause here.", PAUSE_S["sentence"])


def test_a_word_longer_than_a_piece_stays_whole():
    url = "https://example.com/" + "a" * 80
    pieces = split_pieces(f"See {url} for more.", 30)
    assert url in [p.text for p in pieces] or any(url in p.text for p in pieces)


def test_clean_text_drops_controls_and_refuses_what_cannot_be_spoken():
    assert clean_text("a\x00b\x1bc\n\td\r", 100) == "abc\n\td\r"
    assert clean_text("one\x0btwo\x85three", 100) == "one\ntwo\nthree"  # never glued
    for text in ("", "  \n", "...!!!", "\x00\x07", "😀 🎉", "——"):
        with pytest.raises(TtsError) as info:
            clean_text(text, 100)
        assert info.value.code == "empty_text" and "nothing to speak" in info.value.detail
    with pytest.raises(TtsError, match="invalid_text") as info:
        clean_text("ok \ud800 not ok", 100)
    assert "position 3" in info.value.detail
    with pytest.raises(TtsError, match="text_too_long") as info:
        clean_text("x" * 101, 100)
    assert "MaxChars" in info.value.detail


def test_generation_params_refuse_what_qwen_tts_cannot_run():
    bad = {
        "temperature": math.inf,
        "top_p": math.nan,
        "repetition_penalty": -math.inf,
        "max_new_tokens": 1,
    }
    for field, value in bad.items():
        with pytest.raises(ValidationError) as info:
            GenerationParams(**{field: value})
        assert info.value.errors()[0]["loc"] == (field,)
    assert GenerationParams(max_new_tokens=2).max_new_tokens == 2
    assert GenerationParams().allow_cut is False


# --- the engine ----------------------------------------------------------------------------------


def test_a_long_narration_is_one_wav_spoken_in_pieces(pm, tiny, tmp_path):
    text = narration(3_000)
    out = tmp_path / "narration.wav"
    with capture_logs() as logs:
        result = pm.hook.tts_synthesize(
            request=request(tiny["custom_voice"], out, text, GenerationParams(do_sample=False))
        )
    assert result.pieces == len(split_pieces(text, 200)) >= 10
    assert result.cut_pieces == 0 and result.batch_size > 1
    audio, rate = sf.read(out)
    assert rate == 24_000 and audio.size / rate == pytest.approx(result.duration_s)
    split = next(e for e in logs if e["event"] == "tts.pieces.split")
    assert split["pieces"] == result.pieces and split["chars"] == len(text)
    calls = [e for e in logs if e["event"] == "tts.generate.done"]
    assert len(calls) < result.pieces  # the pieces shared generate calls


def test_a_piece_that_never_ends_is_retried_once_then_refused(pm, never_ends, tmp_path):
    out = tmp_path / "keep.wav"
    out.write_bytes(b"earlier take")
    text = "First sentence of two. Second sentence, a little longer than the first."
    with capture_logs() as logs, pytest.raises(TtsError) as info:
        pm.hook.tts_synthesize(
            request=request(
                never_ends, out, text, GenerationParams(max_new_tokens=6), PieceChars=40
            )
        )
    error = info.value
    assert error.code == "synthesis_truncated"
    assert error.detail.startswith("piece 1 of 2 (")
    assert "budget of 12 frames" in error.detail and "given 6 first" in error.detail
    assert "allow_cut" in error.hint and "PieceChars" in error.hint
    assert out.read_bytes() == b"earlier take"  # nothing written, the earlier file untouched
    budgets = [e["pieces"] for e in logs if e["event"] == "tts.pieces.retry"]
    assert budgets == [2]


def test_every_cut_piece_gets_its_retry_before_the_verdict_even_one_call_at_a_time(
    pm, never_ends, tmp_path
):
    """BatchSize=1: the retries run in separate generate calls; the request is judged only
    once all of them are in, with the budget they had."""
    text = "First sentence of three. Second sentence here. Third sentence to end it."
    with capture_logs() as logs, pytest.raises(TtsError) as info:
        pm.hook.tts_synthesize(
            request=request(
                never_ends,
                tmp_path / "out.wav",
                text,
                GenerationParams(max_new_tokens=4),
                PieceChars=30,
                BatchSize=1,
            )
        )
    assert info.value.code == "synthesis_truncated"
    assert "budget of 8 frames" in info.value.detail and "given 4 first" in info.value.detail
    calls = [e["texts"] for e in logs if e["event"] == "tts.generate.done"]
    assert calls == [1] * 6  # three pieces, then each of them once more


def test_allow_cut_keeps_cut_pieces_and_counts_them(pm, never_ends, tmp_path):
    """Every piece of the never-ending model is exactly its budget long: the joined file is
    the pieces plus the pauses between them, to the sample."""
    text = "First sentence of two. Second sentence, a little longer than the first."
    params = GenerationParams(max_new_tokens=6, allow_cut=True)
    out = tmp_path / "cut.wav"
    with capture_logs() as logs:
        result = pm.hook.tts_synthesize(
            request=request(never_ends, out, text, params, PieceChars=40)
        )
    pieces = split_pieces(text, 40)
    assert (result.pieces, result.cut_pieces) == (len(pieces), len(pieces)) == (2, 2)
    frames = params.max_new_tokens - 1
    expected = len(pieces) * frames * SAMPLES_PER_FRAME + sum(
        round(p.pause_s * 24_000) for p in pieces
    )
    assert sf.info(out).frames == expected
    assert "tts.pieces.retry" not in [e["event"] for e in logs]
    audio, _ = sf.read(out)
    gap = slice(
        frames * SAMPLES_PER_FRAME, frames * SAMPLES_PER_FRAME + round(pieces[0].pause_s * 24_000)
    )
    assert np.all(audio[gap] == 0)  # the pause between the pieces is silence


def test_in_a_batch_a_truncated_request_fails_alone(pm, tiny, never_ends, tmp_path):
    greedy = GenerationParams(do_sample=False, max_new_tokens=400)
    requests = [
        request(tiny["custom_voice"], tmp_path / "a.wav", "A short line that ends.", greedy),
        request(
            never_ends,
            tmp_path / "b.wav",
            "This one never ends.",
            GenerationParams(max_new_tokens=4),
        ),
    ]
    items = pm.hook.tts_synthesize_batch(requests=requests)
    assert items[0].ok and items[0].result.cut_pieces == 0
    assert items[1].error.code == "synthesis_truncated" and not (tmp_path / "b.wav").exists()


def test_a_seeded_long_text_gives_the_same_file_twice(pm, tiny, tmp_path):
    text = narration(500)
    params = GenerationParams(seed=7, max_new_tokens=12, allow_cut=True)
    first = pm.hook.tts_synthesize(
        request=request(tiny["custom_voice"], tmp_path / "1.wav", text, params)
    )
    second = pm.hook.tts_synthesize(
        request=request(tiny["custom_voice"], tmp_path / "2.wav", text, params)
    )
    assert first.pieces > 1
    assert (tmp_path / "1.wav").read_bytes() == (tmp_path / "2.wav").read_bytes()
    assert second.pieces == first.pieces


def test_text_over_max_chars_is_refused_before_anything_else(pm, tmp_path):
    huge = "字" * 210_000
    req = request(tmp_path / "no model here", tmp_path / "x.wav", huge)
    with pytest.raises(TtsError) as info:
        pm.hook.tts_synthesize(request=req)
    assert info.value.code == "text_too_long" and "210,000" in info.value.detail
    small = request(tmp_path / "no model here", tmp_path / "x.wav", "字" * 50, MaxChars=20)
    with pytest.raises(TtsError, match="text_too_long"):
        pm.hook.tts_synthesize(request=small)


@pytest.mark.parametrize(
    ("text", "code"),
    [("\x00\x00\x00", "empty_text"), ("🎬🎬", "empty_text"), ("bad \udc80 text", "invalid_text")],
)
def test_unspeakable_text_is_refused_before_model_work(pm, tiny, tmp_path, text, code):
    with capture_logs() as logs, pytest.raises(TtsError, match=code):
        pm.hook.tts_synthesize(request=request(tiny["custom_voice"], tmp_path / "x.wav", text))
    assert "tts.generate.done" not in [e["event"] for e in logs]
    assert not (tmp_path / "x.wav").exists()


def test_control_characters_are_not_spoken(pm, tiny, tmp_path):
    """A NUL in the middle is dropped: the audio equals that of the text without it."""
    greedy = GenerationParams(do_sample=False, max_new_tokens=30, allow_cut=True)
    pm.hook.tts_synthesize(
        request=request(tiny["custom_voice"], tmp_path / "a.wav", "Hello\x00 there.", greedy)
    )
    pm.hook.tts_synthesize(
        request=request(tiny["custom_voice"], tmp_path / "b.wav", "Hello there.", greedy)
    )
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
