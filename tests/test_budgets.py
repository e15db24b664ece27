"""A piece's frame budget from its text (``FrameBound``): a line whose end never comes stops
near the longest it could honestly take, is retried once at twice that, then fails as
``synthesis_runaway``; the caller's own ``max_new_tokens`` keeps ``synthesis_truncated``.

The runaway runs for real on ``tiny_checkpoint_without_eos`` (a talker that never ends a
text), through the hooks.
"""

from __future__ import annotations

import pytest
import soundfile as sf
from engine_logs import capture_logs

from hookspecs import (
    ERROR_CODES,
    EngineConfig,
    GenerationParams,
    SynthesisRequest,
    TtsError,
    Voice,
)
from hookspecs.wire import HTTP_STATUS
from qwen3tts_plugin.budgets import (
    FLOOR_S,
    FRAMES_PER_SECOND,
    MARGIN,
    derived_seed,
    last_budget,
    ordinary_seconds,
    text_bound,
)
from qwen3tts_plugin.testing import tiny_checkpoint_without_eos

SIX_WORDS = "The river bends twice near here."
SAMPLES_PER_FRAME = 1920


@pytest.fixture(scope="module")
def endless():
    return {variant: tiny_checkpoint_without_eos(variant) for variant in ("custom_voice", "base")}


def request(path, out, text=SIX_WORDS, settings=None, voice=None, **generation):
    extra = {"ModelPath": str(path), "Device": "cpu", "FrameBound": "auto", **(settings or {})}
    return SynthesisRequest(
        config=EngineConfig(provider="qwen3_tts", extra_params=extra),
        text=text,
        out_path=out,
        voice=voice or Voice(speaker="vivian"),
        generation=GenerationParams(**{"do_sample": False, **generation}),
    )


# --- the bound --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ordinary"),
    [
        (SIX_WORDS, (31 / 14 + 0.3, 0.3)),  # English: 14 characters a second, a mark 0.3 s
        ("今天的天气非常好。", (8 / 5 + 0.3, 0.3)),  # Mandarin: 5 Han a second
        ("きょうはいいてんきです。", (11 / 8 + 0.3, 0.3)),  # Japanese kana: 8 a second
        ("오늘은 날씨가 좋습니다.", (10 / 6 + 2 / 14 + 0.3, 0.3)),  # Hangul 6, spaces 14
        ("Привет, как дела?", (15 / 14 + 0.6, 0.3)),  # other scripts: as Latin letters
        ("1999", (16 / 14, 0.1)),  # a digit: a word or more
    ],
)
def test_the_bound_follows_each_scripts_speaking_rate(text, ordinary):
    seconds, tolerance = ordinary
    assert ordinary_seconds(text) == pytest.approx(seconds, abs=tolerance)
    expected = max(FLOOR_S, MARGIN * ordinary_seconds(text))
    assert text_bound(text) == pytest.approx(expected * FRAMES_PER_SECOND, abs=1)


def test_the_bound_has_a_floor_grows_with_the_text_and_stays_within_the_contract():
    assert text_bound("Hi.") == FLOOR_S * FRAMES_PER_SECOND == text_bound("")
    short, longer = text_bound(SIX_WORDS), text_bound(SIX_WORDS * 3)
    assert short < longer < 3 * short + 1
    assert text_bound("word " * 100_000) == 8192
    # six English words: well under 10 s, where the default budget is 164 s
    assert text_bound(SIX_WORDS) / FRAMES_PER_SECOND < 10


def test_the_largest_budget_a_piece_gets():
    assert last_budget(2048, 80) == 160  # twice its bound
    assert last_budget(100, 80) == 100  # within what was asked
    assert last_budget(40, 80) == 80  # the caller's own budget, doubled
    assert last_budget(40, None) == 80  # FrameBound=off


def test_a_retry_seed_is_another_one_and_always_the_same():
    assert derived_seed(7, 0) == derived_seed(7, 0) != 7
    assert len({derived_seed(7, i) for i in range(100)} | {derived_seed(8, 0)}) == 101
    assert 0 <= derived_seed(2**63 - 1, 5) < 2**63


def test_the_contract_lists_the_new_code_with_its_status():
    assert "synthesis_runaway" in ERROR_CODES
    assert HTTP_STATUS["synthesis_runaway"] == 500


# --- through the hooks ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["custom_voice", "base"])
def test_a_line_that_never_ends_fails_as_a_runaway_near_its_bound(
    pm, endless, tmp_path, ref_wav, variant
):
    """Six words on a talker that never ends: a verdict after its bound and twice that, not
    after 2,048 + 4,096 frames; in each voice mode the model speaks."""
    bound = text_bound(SIX_WORDS)
    voice = (
        Voice(speaker="vivian")
        if variant != "base"
        else Voice(mode="voice_clone", ref_audio=ref_wav, x_vector_only=True)
    )
    with capture_logs() as logs, pytest.raises(TtsError) as info:
        pm.hook.tts_synthesize(request=request(endless[variant], tmp_path / "x.wav", voice=voice))
    assert info.value.code == "synthesis_runaway"
    assert f"within {2 * bound} frames" in info.value.detail and "river bends" in info.value.detail
    assert "another seed" in info.value.hint
    assert not (tmp_path / "x.wav").exists()
    [budgets] = [e for e in logs if e["event"] == "tts.pieces.budgets"]
    assert (budgets["asked"], budgets["budgets"]) == (2048, [bound])
    assert [e["pieces"] for e in logs if e["event"] == "tts.pieces.retry"] == [1]


def test_the_callers_own_budget_keeps_synthesis_truncated(pm, endless, tmp_path):
    with pytest.raises(TtsError) as info:
        pm.hook.tts_synthesize(
            request=request(endless["custom_voice"], tmp_path / "x.wav", max_new_tokens=20)
        )
    assert info.value.code == "synthesis_truncated" and "budget of 40 frames" in info.value.detail


def test_allow_cut_keeps_the_audio_up_to_the_bound_and_says_so(pm, endless, tmp_path):
    result = pm.hook.tts_synthesize(
        request=request(endless["custom_voice"], tmp_path / "cut.wav", allow_cut=True)
    )
    bound = text_bound(SIX_WORDS)
    assert result.piece_budgets == [bound] and result.cut_pieces == 1
    frames = len(sf.read(str(result.path))[0]) / SAMPLES_PER_FRAME
    assert frames == pytest.approx(bound - 1, abs=1)  # not 2,047 frames (164 s)


def test_frame_bound_off_gives_max_new_tokens_alone(pm, endless, tmp_path):
    result = pm.hook.tts_synthesize(
        request=request(
            endless["custom_voice"],
            tmp_path / "off.wav",
            settings={"FrameBound": "off"},
            allow_cut=True,
            max_new_tokens=150,
        )
    )
    assert result.piece_budgets == [150] and text_bound(SIX_WORDS) < 150


def test_pieces_with_different_bounds_share_a_qwen_tts_call_each_judged_by_its_own(
    pm, endless, tmp_path
):
    """qwen_tts runs one budget a call (the largest); a short piece is still cut at its own
    bound, its audio trimmed there."""
    texts = ["Go.", SIX_WORDS * 3]
    requests = [
        request(
            endless["custom_voice"],
            tmp_path / f"{i}.wav",
            text,
            settings={"Backend": "qwen_tts"},
            allow_cut=True,
        )
        for i, text in enumerate(texts)
    ]
    items = pm.hook.tts_synthesize_batch(requests=requests)
    assert [item.result.batch_size for item in items] == [2, 2]
    for item, text in zip(items, texts, strict=True):
        assert item.result.piece_budgets == [text_bound(text)]
        frames = len(sf.read(str(item.result.path))[0]) / SAMPLES_PER_FRAME
        assert frames == pytest.approx(text_bound(text) - 1, abs=1)


def test_a_stream_that_runs_away_ends_typed(pm, endless, tmp_path):
    with pytest.raises(TtsError) as info:
        for _chunk in pm.hook.tts_synthesize_stream(
            request=request(endless["custom_voice"], tmp_path / "s.wav")
        ):
            pass
    assert info.value.code == "synthesis_runaway"
    assert f"within {2 * text_bound(SIX_WORDS)} frames" in info.value.detail
    assert not (tmp_path / "s.wav").exists()


def test_the_default_comes_from_the_environment_when_the_config_leaves_it_unset(monkeypatch):
    from qwen3tts_plugin.settings import FRAME_BOUND_ENV, parse_settings

    monkeypatch.delenv(FRAME_BOUND_ENV, raising=False)
    assert parse_settings({}).FrameBound == "auto"
    monkeypatch.setenv(FRAME_BOUND_ENV, "off")
    assert parse_settings({}).FrameBound == "off" == parse_settings({"FrameBound": " "}).FrameBound
    assert parse_settings({"FrameBound": "AUTO"}).FrameBound == "auto"
    monkeypatch.setenv(FRAME_BOUND_ENV, "sometimes")
    with pytest.raises(TtsError) as info:
        parse_settings({})
    assert info.value.code == "invalid_settings" and "FrameBound" in info.value.hint


def test_doctor_shows_the_rule_and_a_lines_bound(capsys):
    from qwen3tts_plugin.cli import doctor_report

    report = doctor_report(device="cpu", text=SIX_WORDS)
    assert report["frame_bound"]["frames"] == text_bound(SIX_WORDS)
    assert report["frame_bound"]["margin"] == MARGIN
