"""The example host's command line, driven in-process through ``example_host.cli.main``.

Real engine, tiny checkpoint, temporary settings files; one subprocess test proves
``python -m example_host`` works on its own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import structlog
from host_settings import write_settings

from example_host import logs
from example_host.scripts import parse_lines, parse_srt

FAST = ["--max-new-tokens", "8", "--seed", "1", "--allow-cut"]


def extra_params(path: Path) -> dict:
    return json.loads(path.read_text())["configs"]["qwen3_tts_default"]["extra_params"]


# --- settings -------------------------------------------------------------------------------


def test_a_missing_settings_file_is_created_with_the_default_config(host, tmp_path):
    path = tmp_path / "new" / "settings.json"
    code, out, _ = host("--settings", path, "settings", "show", "--json")
    assert code == 0
    data = json.loads(out)
    assert data == json.loads(path.read_text())
    config = data["configs"]["qwen3_tts_default"]
    assert config["provider"] == "qwen3_tts" and config["enabled"] is True
    assert config["extra_params"] == {"Device": "auto"}


def test_settings_file_comes_from_the_environment(host, tmp_path, monkeypatch):
    path = write_settings(tmp_path / "env.json", Speaker="ryan")
    monkeypatch.setenv("EXAMPLE_HOST_SETTINGS", str(path))
    code, out, _ = host("settings", "show")
    assert code == 0
    assert str(path) in out and "Speaker" in out and "ryan" in out


def test_settings_set_reads_json_values_and_unset_removes(host, settings):
    assert host("--settings", settings, "settings", "set", "XVectorOnly", "false")[0] == 0
    assert host("--settings", settings, "settings", "set", "Speaker", "ryan")[0] == 0
    assert host("--settings", settings, "settings", "set", "Device", "cuda:0")[0] == 0
    params = extra_params(settings)
    assert (params["XVectorOnly"], params["Speaker"], params["Device"]) == (False, "ryan", "cuda:0")
    code, out, _ = host("--settings", settings, "settings", "unset", "Speaker")
    assert code == 0 and "Speaker = (unset)" in out
    assert host("--settings", settings, "settings", "set", "Device", "null")[0] == 0
    assert "Speaker" not in extra_params(settings) and "Device" not in extra_params(settings)


@pytest.mark.parametrize(
    ("key", "value", "code", "expected"),
    [
        ("Device", "gpu", "invalid_device", "Device 'gpu' is not a device this engine understands"),
        ("Device", "0", "invalid_device", "Device 0 is not a device this engine understands"),
        ("Precision", "fp8", "invalid_settings", "Precision: Input should be 'auto'"),
        ("Quantization", "int4", "invalid_settings", "Quantization: Input should be 'auto'"),
        ("XVectorOnly", "3", "invalid_settings", "XVectorOnly: Input should be a valid boolean"),
        ("BatchSize", "65", "invalid_settings", "less than or equal to 64"),
    ],
)
def test_settings_set_refuses_what_the_engine_refuses_in_its_words(
    host, settings, key, value, code, expected
):
    before = settings.read_bytes()
    result, out, err = host("--settings", settings, "settings", "set", key, value)
    assert result == 2 and out == ""
    assert err.startswith(f"{code}: ") and expected in err, err
    assert "hint:" in err
    assert settings.read_bytes() == before


def test_a_model_key_is_judged_with_the_settings_it_joins(host, settings, tmp_path):
    """ModelPath overrides ModelKey, so the engine does not judge the key then; without it an
    unknown key is refused in the engine's words."""
    assert host("--settings", settings, "settings", "set", "ModelKey", "huge_9b")[0] == 0
    plain = write_settings(tmp_path / "plain.json", Device="cpu")
    code, _, err = host("--settings", plain, "settings", "set", "ModelKey", "huge_9b")
    assert code == 2 and err.startswith("unknown_model_key: unknown ModelKey 'huge_9b'")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Precision", "FP16"),
        ("Quantization", "INT8"),
        ("Attention", "SDPA"),
        ("XVectorOnly", "yes"),
        ("Device", "CUDA:1"),
        ("Backend", "Cuda_Graphs"),
        ("BatchSize", "AUTO"),
    ],
)
def test_settings_set_accepts_what_the_engine_accepts(host, settings, key, value):
    code, _, err = host("--settings", settings, "settings", "set", key, value)
    assert code == 0, err
    assert extra_params(settings)[key] == value


def test_an_unknown_setting_name_is_refused_with_a_guess_and_nothing_stored(host, settings):
    before = settings.read_text()
    code, _, err = host("--settings", settings, "settings", "set", "devcie", "cpu")
    assert code == 2 and "invalid_settings" in err and "did you mean Device?" in err
    assert settings.read_text() == before


def test_an_unknown_config_id_is_an_error(host, settings):
    code, _, err = host("--settings", settings, "settings", "set", "Device", "cpu", "--config", "x")
    assert code == 2 and "no config 'x'" in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"configs": {\n  "a": }', "invalid JSON at line 2 column 8"),
        ('{"configs": []}', 'expected an object with a "configs" object'),
        ('{"configs": {"a": {"extra_params": {}}}}', 'configs.a needs a "provider" string'),
    ],
)
def test_a_malformed_settings_file_is_reported_and_never_overwritten(
    host, tmp_path, content, problem
):
    path = tmp_path / "settings.json"
    path.write_text(content)
    for argv in (["settings", "set", "Device", "cpu"], ["smoke"], ["settings", "show"]):
        code, out, err = host("--settings", path, *argv)
        assert code == 2 and out == ""
        assert str(path) in err and problem in err
        assert "Traceback" not in err
    assert path.read_text() == content


# --- engines --------------------------------------------------------------------------------


def test_engines_table_and_json(host):
    code, out, _ = host("engines")
    assert code == 0
    for word in ("qwen3_tts", "custom_voice", "voice_clone", "custom_0_6b", "cuda_not_available"):
        assert word in out
    code, out, _ = host("engines", "--json")
    [caps] = json.loads(out)
    assert caps["provider"] == "qwen3_tts" and caps["acceleration"]["preferred_device"] == "cpu"
    assert {m["key"] for m in caps["models"]} >= {"custom_0_6b", "base_1_7b"}


def test_engines_look_in_the_configured_models_dir(host, tmp_path, tiny):
    models = tmp_path / "my models"
    shutil.copytree(tiny["custom_voice"], models / "Qwen3-TTS-12Hz-0.6B-CustomVoice")
    path = write_settings(tmp_path / "settings.json", ModelsDir=str(models))
    code, out, _ = host("--settings", path, "engines", "--json")
    [caps] = json.loads(out)
    custom = next(m for m in caps["models"] if m["key"] == "custom_0_6b")
    assert code == 0 and custom["valid"] and custom["configured"]
    assert custom["local_path"] == str(models / "Qwen3-TTS-12Hz-0.6B-CustomVoice")


def test_no_engine_installed_is_said_clearly(host, settings, monkeypatch):
    monkeypatch.setenv("AUTOCUT_TTS_PLUGINS", "")
    for argv in (["engines"], ["smoke"], ["preview", "Hi"], ["settings", "set", "Device", "cpu"]):
        code, out, err = host("--settings", settings, *argv)
        assert code == 3 and out == ""
        assert err.startswith("no_engine: no text-to-speech engine is installed")


# --- smoke and the Device toggle ---------------------------------------------------------------


def test_smoke_without_a_model_uses_the_tiny_checkpoint_for_this_run_only(host, tmp_path, tiny):
    path = tmp_path / "settings.json"
    wav = tmp_path / "smoke.wav"
    code, out, err = host("--settings", path, "smoke", "--out", wav, "--max-new-tokens", "8")
    assert code == 0, err
    first, *rows = out.splitlines()
    assert first == (
        f"no model configured: using the tiny checkpoint {tiny['custom_voice']} for this run "
        f"only (settings file {path} unchanged)"
    )
    # The file was created with the default config, and the checkpoint was not saved into it.
    assert extra_params(path) == {"Device": "auto"}
    table = dict(line.split(None, 1) for line in rows)
    assert table["model"] == str(tiny["custom_voice"]) and table["voice_mode"] == "custom_voice"
    assert (table["device"], table["device_source"], table["dtype"]) == (
        "cpu",
        "detected",
        "float32 (codec float32)",
    )
    assert table["quantization"] == "none"
    assert table["attention"] == "sdpa" and table["wav"] == str(wav)
    assert {"load_s", "cached", "synth_s", "rtf"} <= table.keys()
    assert sf.info(str(wav)).samplerate == 24_000
    # An existing file is not rewritten either; the second run says the same, model cached.
    before = path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino
    code, out, _ = host("--settings", path, "smoke", "--out", wav, "--max-new-tokens", "8")
    assert code == 0 and out.startswith("no model configured: using the tiny checkpoint")
    assert "cached         true" in out
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino) == before


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty default models folder, so the engine's default model is not installed."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("QWEN_TTS_MODELS_DIR", str(folder))
    return folder


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"ModelKey": "base_0_6b"}, "model_not_found"),
        ({"ModelsDir": "{tmp}/elsewhere"}, "model_not_found"),
        ({"ModelPath": "{tmp}/missing"}, "model_not_found"),
    ],
)
def test_smoke_uses_a_configured_model_as_is(host, tmp_path, models_dir, params, code):
    """A model named by ModelKey, ModelsDir or ModelPath is never swapped for the tiny one."""
    params = {k: v.format(tmp=tmp_path) for k, v in params.items()}
    path = write_settings(tmp_path / "settings.json", Device="cpu", **params)
    before = path.read_bytes()
    result, out, err = host("--settings", path, "smoke", "--out", tmp_path / "x.wav", *FAST)
    assert result == 2 and out == "" and "tiny checkpoint" not in err
    assert any(line.startswith(f"{code}: ") for line in err.splitlines())
    assert path.read_bytes() == before and not (tmp_path / "x.wav").exists()


def test_smoke_uses_the_engines_default_model_when_it_is_installed(
    host, tmp_path, tiny, models_dir
):
    (models_dir / "Qwen3-TTS-12Hz-0.6B-CustomVoice").symlink_to(tiny["custom_voice"])
    path = write_settings(tmp_path / "settings.json", Device="cpu")
    before = path.read_bytes()
    code, out, err = host("--settings", path, "smoke", "--out", tmp_path / "s.wav", *FAST)
    assert code == 0, err
    assert "tiny checkpoint" not in out
    table = dict(line.split(None, 1) for line in out.splitlines())
    assert table["model"] == "custom_0_6b" and table["voice_mode"] == "custom_voice"
    assert path.read_bytes() == before


def test_device_toggle_cpu_then_cuda_fails_then_auto_works(host, settings, tmp_path):
    def smoke(name):
        return host("--settings", settings, "smoke", "--out", tmp_path / name, *FAST)

    code, out, _ = smoke("cpu.wav")
    assert code == 0 and "device_source  config" in out
    assert host("--settings", settings, "settings", "set", "Device", "cuda:0")[0] == 0

    code, out, err = smoke("cuda.wav")
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if not line.startswith(("20", "{"))]
    assert any(line.startswith("model_to_device_failed: cuda:0") for line in lines)
    assert any(line.startswith("hint: ") and "Device=cpu" in line for line in lines)
    assert "Traceback" not in err
    assert not (tmp_path / "cuda.wav").exists()

    code, out, err = host(
        "--settings", settings, "preview", "Hello.", "--out", tmp_path / "p.wav", *FAST
    )
    assert code == 2 and "model_to_device_failed" in err and not (tmp_path / "p.wav").exists()

    assert host("--settings", settings, "settings", "set", "Device", "auto")[0] == 0
    code, out, _ = smoke("auto.wav")
    assert code == 0 and "device_source  detected" in out and (tmp_path / "auto.wav").is_file()


def test_debug_shows_the_traceback(host, settings, tmp_path):
    host("--settings", settings, "settings", "set", "Device", "cuda:0")
    code, _, err = host("--settings", settings, "smoke", "--debug", "--out", tmp_path / "x.wav")
    assert code == 2 and "Traceback" in err and "model_to_device_failed" in err


# --- preview --------------------------------------------------------------------------------


def test_preview_prints_one_line_and_writes_the_wav(host, settings, tmp_path):
    out_wav = tmp_path / "listen.wav"
    code, out, _ = host(
        "--settings", settings, "preview", "Hello there.", "--speaker", "Ryan",
        "--language", "English", "--out", out_wav, *FAST,
    )  # fmt: skip
    assert code == 0
    [line] = out.splitlines()
    path, *fields = line.split()
    values = dict(field.split("=") for field in fields)
    assert Path(path) == out_wav and values["device"] == "cpu" and values["dtype"] == "float32"
    assert values["codec_dtype"] == "float32" and values["quantization"] == "none"
    info = sf.info(str(out_wav))
    assert float(values["duration"].rstrip("s")) == pytest.approx(
        info.frames / info.samplerate, abs=0.01
    )
    assert float(values["rtf"]) > 0


def test_quantization_int8_is_shown_by_smoke_preview_and_the_dub_manifest(host, tmp_path, tiny):
    """Quantization=int8 on the CPU (a real int8 load of the tiny checkpoint) is named in the
    smoke table, the preview line and each manifest entry; the codec stays float32."""
    from qwen3tts_plugin.devices import acceleration_status, cpu_int8

    if not cpu_int8(acceleration_status()):
        pytest.skip("this CPU runs no int8 layers: the engine refuses Quantization=int8 here")
    settings = write_settings(
        tmp_path / "int8.json",
        ModelPath=str(tiny["custom_voice"]),
        Device="cpu",
        Quantization="int8",
    )
    code, out, err = host("--settings", settings, "smoke", "--out", tmp_path / "s.wav", *FAST)
    assert code == 0, err
    table = dict(line.split(None, 1) for line in out.splitlines())
    assert (table["dtype"], table["quantization"]) == ("float32 (codec float32)", "int8")

    code, out, err = host(
        "--settings", settings, "preview", "Hello there.", "--out", tmp_path / "p.wav", *FAST
    )
    assert code == 0, err
    [line] = out.splitlines()
    values = dict(field.split("=") for field in line.split()[1:])
    assert (values["codec_dtype"], values["quantization"]) == ("float32", "int8")

    script = tmp_path / "script.txt"
    script.write_text("One.\nTwo.\n")
    code, _, err = host("--settings", settings, "dub", script, "--out-dir", tmp_path / "d", *FAST)
    assert code == 0, err
    entries = manifest_of(tmp_path / "d")["segments"]
    assert [(e["status"], e["codec_dtype"], e["quantization"]) for e in entries] == [
        ("ok", "float32", "int8"),
    ] * 2


def test_a_streamed_preview_writes_the_same_wav_and_says_when_the_first_audio_came(
    host, tiny, tmp_path
):
    from host_settings import write_settings

    # FrameBound off: the tiny random model speaks far longer than its text, so a bound would
    # send the file's piece to a retry with another seed, which a stream cannot take
    settings = write_settings(
        tmp_path / "settings.json",
        ModelPath=str(tiny["custom_voice"]),
        Device="cpu",
        FrameBound="off",
    )
    lines = {}
    for name, extra in (("whole", []), ("streamed", ["--stream"])):
        code, out, _ = host(
            "--settings", settings, "preview", "Hello there.", "--out", tmp_path / f"{name}.wav",
            "--seed", "6", "--max-new-tokens", "300", *extra,
        )  # fmt: skip
        assert code == 0
        [lines[name]] = out.splitlines()
    values = dict(field.split("=") for field in lines["streamed"].split()[1:])
    assert float(values["first_audio"].rstrip("s")) > 0 and int(values["chunks"]) >= 1
    assert "first_audio" not in lines["whole"]
    assert (tmp_path / "streamed.wav").read_bytes() == (tmp_path / "whole.wav").read_bytes()


def test_preview_reports_an_engine_error(host, settings, tmp_path):
    code, out, err = host(
        "--settings", settings, "preview", "Hi", "--speaker", "nobody",
        "--out", tmp_path / "x.wav", *FAST,
    )  # fmt: skip
    assert code == 2 and out == "" and "unsupported_speaker" in err
    assert not (tmp_path / "x.wav").exists()


def test_log_json_renders_structlog_and_stdlib_records_to_stderr(capsys):
    logs.configure(json_lines=True, level=logging.INFO)
    structlog.get_logger("example_host.test").info("host.test", answer=42)
    structlog.get_logger("example_host.test").debug("host.hidden")
    logging.getLogger("some.library").warning("careful")
    captured = capsys.readouterr()
    assert captured.out == ""
    events = [json.loads(line) for line in captured.err.splitlines()]
    assert [(e["event"], e["level"]) for e in events] == [
        ("host.test", "info"),
        ("careful", "warning"),
    ]
    assert events[0]["answer"] == 42 and events[1]["logger"] == "some.library"


# --- dub ------------------------------------------------------------------------------------


SCRIPT = "First line.\n\nSecond line.\r\nThird line.\n   \nFourth line.\nFifth line.\n"


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def summary(out: str) -> dict:
    per_segment = re.compile(r"(failed|skipped) +segment \d")
    rows = (line for line in out.splitlines() if not per_segment.match(line))
    return dict(line.split(None, 1) for line in rows)


def test_dub_a_script_then_resume_touches_nothing(host, settings, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text(SCRIPT)
    out_dir = tmp_path / "dub"
    code, out, _ = host("--settings", settings, "dub", script, "--out-dir", out_dir, *FAST)
    assert code == 0
    counts = summary(out)
    assert (counts["segments"], counts["ok"], counts["resumed"], counts["failed"]) == (
        "5", "5", "0", "0",
    )  # fmt: skip
    manifest = manifest_of(out_dir)
    entries = manifest["segments"]
    assert [e["segment"] for e in entries] == [1, 3, 4, 6, 7]  # line numbers
    assert [e["text"] for e in entries][:2] == ["First line.", "Second line."]
    for entry in entries:
        assert entry["status"] == "ok" and entry["path"] == f"seg_{entry['segment']:04d}.wav"
        assert (entry["dtype"], entry["codec_dtype"], entry["quantization"]) == (
            "float32", "float32", "none",
        )  # fmt: skip
        info = sf.info(str(out_dir / entry["path"]))
        assert entry["duration_s"] == pytest.approx(info.frames / info.samplerate)
        assert entry["start_s"] is None and entry["end_s"] is None
    assert float(counts["audio"].split()[0]) == pytest.approx(
        sum(e["duration_s"] for e in entries), abs=0.01
    )
    stamps = {p.name: p.stat().st_mtime_ns for p in out_dir.glob("seg_*.wav")}

    code, out, _ = host("--settings", settings, "dub", script, "--out-dir", out_dir, *FAST)
    assert code == 0 and (summary(out)["ok"], summary(out)["resumed"]) == ("0", "5")
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.glob("seg_*.wav")} == stamps
    assert manifest_of(out_dir)["segments"] == entries

    # A changed line is done again, the others are not.
    script.write_text(SCRIPT.replace("Third line.", "Third line, rewritten."))
    code, out, _ = host("--settings", settings, "dub", script, "--out-dir", out_dir, *FAST)
    assert (summary(out)["ok"], summary(out)["resumed"]) == ("1", "4")


def test_dub_redoes_lost_or_damaged_wavs_and_changed_settings(host, settings, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text("One.\nTwo.\n")
    out_dir = tmp_path / "dub"
    host("--settings", settings, "dub", script, "--out-dir", out_dir, *FAST)
    (out_dir / "seg_0002.wav").write_bytes(b"RIFF")
    code, out, _ = host("--settings", settings, "dub", script, "--out-dir", out_dir, *FAST)
    assert code == 0 and (summary(out)["ok"], summary(out)["resumed"]) == ("1", "1")
    (out_dir / "seg_0001.wav").unlink()
    code, out, _ = host("--settings", settings, "dub", script, "--out-dir", out_dir, *FAST)
    assert code == 0 and (summary(out)["ok"], summary(out)["resumed"]) == ("1", "1")
    fast_other_seed = ["--max-new-tokens", "8", "--seed", "2", "--allow-cut"]
    code, out, _ = host(
        "--settings", settings, "dub", script, "--out-dir", out_dir, *fast_other_seed
    )
    assert code == 0 and (summary(out)["ok"], summary(out)["resumed"]) == ("2", "0")


SRT = (
    "\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello</i> there,\r\nfriend.\r\n\r\n"
    "2\r\n00:00:03,000 --> 00:00:04,000\r\n\r\n"
    "4\r\n00:00:05,000 --> 00:00:06,250\r\n{\\an8}Last <b>cue</b>.\r\n"
)


def test_parse_srt_handles_bom_crlf_tags_multiline_and_empty_cues():
    segments = parse_srt(SRT)
    assert [(s.number, s.text, s.start_s, s.end_s) for s in segments] == [
        (1, "Hello there, friend.", 1.0, 2.5),
        (2, "", 3.0, 4.0),
        (4, "Last cue.", 5.0, 6.25),
    ]
    # Missing blank lines and a missing index still parse.
    loose = "00:00:01,000 --> 00:00:02,000\nA\n2\n00:00:02,000 --> 00:00:03,000\nB\n"
    assert [(s.number, s.text) for s in parse_srt(loose)] == [(1, "A"), (2, "B")]


def test_parse_lines_passes_text_through_numbered_by_line_and_skips_blank_lines():
    assert [(s.number, s.text) for s in parse_lines(" a \n\n\t\n\u3000\nb")] == [
        (1, "a"),
        (4, "\u3000"),
        (5, "b"),
    ]


def test_dub_an_srt_skips_the_empty_cue(host, settings, tmp_path):
    script = tmp_path / "subs.srt"
    script.write_bytes(SRT.encode("utf-8"))
    out_dir = tmp_path / "dub"
    code, out, _ = host("--settings", settings, "dub", script, "--out-dir", out_dir, *FAST)
    assert code == 0
    assert (summary(out)["ok"], summary(out)["skipped"], summary(out)["failed"]) == ("2", "1", "0")
    assert "skipped  segment 2: nothing to speak" in out.splitlines()
    entries = {e["segment"]: e for e in manifest_of(out_dir)["segments"]}
    assert entries[1]["text"] == "Hello there, friend."
    assert (entries[1]["start_s"], entries[1]["end_s"], entries[1]["status"]) == (1.0, 2.5, "ok")
    assert entries[2]["status"] == "skipped" and entries[2]["path"] is None
    assert entries[4]["path"] == "seg_0004.wav"
    assert sorted(p.name for p in out_dir.glob("*.wav")) == ["seg_0001.wav", "seg_0004.wav"]


TOO_LONG = "This second line is longer than the forty characters MaxChars allows."


@pytest.fixture
def strict(tmp_path, tiny):
    """Settings whose MaxChars (40) the TOO_LONG line breaks: a segment that fails alone."""
    return write_settings(
        tmp_path / "strict.json", ModelPath=str(tiny["custom_voice"]), Device="cpu", MaxChars=40
    )


def test_dub_keep_going_reports_the_failing_segment(host, strict, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text(f"One.\n{TOO_LONG}\nThree.\n")
    out_dir = tmp_path / "dub"
    code, out, _ = host(
        "--settings", strict, "dub", script, "--out-dir", out_dir, "--keep-going", *FAST
    )
    assert code == 1
    assert (summary(out)["ok"], summary(out)["failed"]) == ("2", "1")
    assert "failed   segment 2: text_too_long:" in out
    entry = manifest_of(out_dir)["segments"][1]
    assert entry["status"] == "failed" and entry["error"]["code"] == "text_too_long"
    assert not (out_dir / "seg_0002.wav").exists()


def test_dub_without_keep_going_stops_at_the_first_failure(host, strict, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text(f"One.\n{TOO_LONG}\nThree.\n")
    out_dir = tmp_path / "dub"
    code, out, err = host(
        "--settings", strict, "dub", script, "--out-dir", out_dir, "--batch-size", "1", *FAST
    )
    assert code == 2 and any(line.startswith("text_too_long: ") for line in err.splitlines())
    assert (summary(out)["ok"], summary(out)["failed"], summary(out)["pending"]) == ("1", "1", "1")
    statuses = [e["status"] for e in manifest_of(out_dir)["segments"]]
    assert statuses == ["ok", "failed", "pending"]


def test_dub_stops_after_the_list_holding_the_first_failure_and_keeps_its_files(
    host, strict, tmp_path
):
    script = tmp_path / "script.txt"
    script.write_text(f"One.\n{TOO_LONG}\nThree.\nFour.\nFive.\n")
    out_dir = tmp_path / "dub"
    code, _out, err = host(
        "--settings", strict, "dub", script, "--out-dir", out_dir, "--batch-size", "3", *FAST
    )
    assert code == 2 and any(line.startswith("text_too_long: ") for line in err.splitlines())
    statuses = [e["status"] for e in manifest_of(out_dir)["segments"]]
    assert statuses == ["ok", "failed", "ok", "pending", "pending"]
    assert sorted(p.name for p in out_dir.glob("*.wav")) == ["seg_0001.wav", "seg_0003.wav"]


def test_dub_sends_segments_in_lists_that_share_generate_calls(host, settings, tmp_path):
    """Segments share generate calls (the engine's batch size by default); --batch-size 1 makes
    each segment its own call. Resume ignores the batch size."""
    script = tmp_path / "script.txt"
    script.write_text("".join(f"Segment number {n} of the narration.\n" for n in range(1, 21)))
    unseeded = ["--max-new-tokens", "8", "--allow-cut"]
    out_dir = tmp_path / "dub"
    code, out, _ = host("--settings", settings, "dub", script, "--out-dir", out_dir, *unseeded)
    # the engine's auto batch size on the CPU (the stepper): 16
    assert code == 0 and summary(out)["batch"] == "lists of 16, up to 16 segments per generate call"
    sizes = [e["batch_size"] for e in manifest_of(out_dir)["segments"]]
    assert sizes == [16] * 16 + [4] * 4

    code, out, _ = host(
        "--settings", settings, "dub", script, "--out-dir", out_dir, "--batch-size", "4", *unseeded
    )
    assert code == 0 and (summary(out)["ok"], summary(out)["resumed"]) == ("0", "20")

    other = tmp_path / "one_by_one"
    code, out, _ = host(
        "--settings", settings, "dub", script, "--out-dir", other, "--batch-size", "1", *unseeded
    )
    assert code == 0 and summary(out)["batch"] == "lists of 1, up to 1 segments per generate call"
    assert {e["batch_size"] for e in manifest_of(other)["segments"]} == {1}

    # a seed: the engine's stepper (auto on the CPU) draws each segment from its own
    # generator, so seeded segments share calls and sound as they do alone
    seeded = tmp_path / "seeded"
    code, out, _ = host("--settings", settings, "dub", script, "--out-dir", seeded, *FAST)
    assert code == 0 and {e["batch_size"] for e in manifest_of(seeded)["segments"]} == {16, 4}
    alone = tmp_path / "seeded_alone"
    code, out, _ = host(
        "--settings", settings, "dub", script, "--out-dir", alone, "--batch-size", "1", *FAST
    )
    assert code == 0
    for n in range(1, 21):
        name = f"seg_{n:04d}.wav"
        assert (seeded / name).read_bytes() == (alone / name).read_bytes(), name


def test_dub_refuses_a_batch_size_below_one(host, settings, tmp_path):
    with pytest.raises(SystemExit):
        host("--settings", settings, "dub", "x.txt", "--out-dir", tmp_path, "--batch-size", "0")


def test_dub_on_an_unusable_gpu_stops_before_the_first_segment(host, settings, tmp_path):
    """The model is loaded first: a device that cannot be used fails the run at once."""
    host("--settings", settings, "settings", "set", "Device", "cuda:0")
    script = tmp_path / "script.txt"
    script.write_text("One.\nTwo.\n")
    out_dir = tmp_path / "dub"
    code, out, err = host(
        "--settings", settings, "dub", script, "--out-dir", out_dir, "--keep-going", *FAST
    )
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if not line.startswith(("20", "{"))]
    assert any(line.startswith("model_to_device_failed: cuda:0") for line in lines)
    assert any(line.startswith("hint: ") for line in lines)
    assert not out_dir.exists()


def test_dub_refuses_a_missing_script(host, settings, tmp_path):
    code, _, err = host("--settings", settings, "dub", tmp_path / "nope.txt", "--out-dir", tmp_path)
    assert code == 2 and "script not found" in err


# --- the model's own voice mode ---------------------------------------------------------------


def write_reference_wav(path: Path, seconds: float = 1.5) -> Path:
    """A short 24 kHz tone to clone from."""
    import numpy as np

    t = np.arange(int(24_000 * seconds)) / 24_000
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * 220 * t), 24_000)
    return path


def own_mode_settings(tmp_path: Path, tiny: dict, variant: str) -> Path:
    """A config whose ModelPath is a Base (voice clone) or VoiceDesign tiny checkpoint, with
    the reference or the description it needs in extra_params."""
    params: dict = {"Device": "cpu"}
    if variant.startswith("base"):
        params.update(
            ModelPath=str(tiny["base"]), RefAudio=str(write_reference_wav(tmp_path / "ref.wav"))
        )
        if variant == "base_icl":  # ICL clone: the transcript also comes from the settings
            params.update(XVectorOnly=False, RefText="A short tone.")
    else:
        params.update(ModelPath=str(tiny["voice_design"]), Instruct="A calm, low voice.")
    return write_settings(tmp_path / "settings.json", **params)


OWN_MODES = [("base", "voice_clone"), ("base_icl", "voice_clone"), ("voice_design", "voice_design")]


@pytest.mark.parametrize(("variant", "mode"), OWN_MODES)
def test_dub_and_preview_speak_in_the_models_own_mode(host, tmp_path, tiny, variant, mode):
    """No --mode: the host loads the model and uses voice_modes[0]; the reference or the
    instruct comes from extra_params, which the host does not override."""
    settings = own_mode_settings(tmp_path, tiny, variant)
    script = tmp_path / "script.txt"
    script.write_text("First line.\nSecond line.\n")
    out_dir = tmp_path / "dub"
    code, out, err = host("--settings", settings, "dub", script, "--out-dir", out_dir, *FAST)
    assert code == 0, err
    assert (summary(out)["ok"], summary(out)["failed"]) == ("2", "0")
    manifest = manifest_of(out_dir)
    assert manifest["voice_mode"] == mode
    assert [e["status"] for e in manifest["segments"]] == ["ok", "ok"]

    wav = tmp_path / "preview.wav"
    code, out, err = host("--settings", settings, "preview", "Hello.", "--out", wav, *FAST)
    assert code == 0, err
    assert out.split()[0] == str(wav) and sf.info(str(wav)).samplerate == 24_000

    code, out, err = host("--settings", settings, "smoke", "--out", tmp_path / "s.wav", *FAST)
    assert code == 0, err
    assert dict(line.split(None, 1) for line in out.splitlines())["voice_mode"] == mode


def test_an_explicit_mode_is_kept_and_instruct_can_come_from_the_command_line(host, tmp_path, tiny):
    settings = write_settings(
        tmp_path / "settings.json", ModelPath=str(tiny["voice_design"]), Device="cpu"
    )
    wav = tmp_path / "p.wav"
    code, _, err = host("--settings", settings, "preview", "Hi.", "--out", wav, *FAST)
    assert code == 2 and "instruct_required" in err and not wav.exists()
    code, _, err = host(
        "--settings", settings, "preview", "Hi.", "--instruct", "A bright voice.", "--out", wav,
        *FAST,
    )  # fmt: skip
    assert code == 0, err
    assert wav.is_file()
    code, _, err = host(
        "--settings", settings, "preview", "Hi.", "--mode", "custom_voice",
        "--out", tmp_path / "x.wav", *FAST,
    )  # fmt: skip
    assert code == 2 and "unsupported_mode" in err


# --- the real entry point -----------------------------------------------------------------------


def test_python_m_example_host_smoke_end_to_end(tmp_path, tiny):
    settings = tmp_path / "settings.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EXAMPLE_HOST_SETTINGS": str(settings)}
    wav = tmp_path / "smoke.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "example_host", "--log-json", "-v", "smoke", "--out", str(wav)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    # stdout holds the results alone: the checkpoint line, then the decision table.
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("no model configured: using the tiny checkpoint")
    assert lines[-1] == f"wav            {wav}"
    assert all(len(line.split(None, 1)) == 2 for line in lines[1:])
    assert "for this run only" in lines[0] and f"settings file {settings} unchanged" in lines[0]
    assert sf.info(str(wav)).frames > 0
    assert extra_params(settings) == {"Device": "auto"}
    # Logs went to stderr as JSON lines, the engine's included.
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    done = [e for e in events if e["event"] == "tts.synthesize.done"]
    assert done and done[0]["provider"] == "qwen3_tts" and done[0]["device"] == "cpu"


def test_dub_falls_back_to_one_call_per_segment_for_an_engine_without_the_batch_hook(tmp_path):
    """Another engine (defined here) that implements only tts_load and tts_synthesize."""
    import numpy as np

    import hookspecs
    from example_host.dubbing import dub
    from hookspecs import EngineConfig, GenerationParams, SynthesisResult

    class ToneEngine:
        @hookspecs.hookimpl
        def tts_synthesize(self, request):
            if request.config.provider != "tone":
                return None
            sf.write(request.out_path, np.zeros(2400, dtype=np.float32), 24_000, subtype="PCM_16")
            return SynthesisResult(
                provider="tone",
                path=request.out_path,
                duration_s=0.1,
                sample_rate=24_000,
                device="cpu",
                dtype="float32",
                attn_implementation="none",
                load_s=0,
                synth_s=0.01,
                rtf=0.1,
            )

    pm = hookspecs.plugin_manager(load_entrypoints=False)
    pm.register(ToneEngine(), name="tone")
    segments = parse_lines("One.\nTwo.\nThree.")
    report = dub(
        pm,
        EngineConfig(provider="tone"),
        segments,
        tmp_path / "dub",
        GenerationParams(),
        batch_size=8,
    )
    assert (report.ok, report.failed, report.largest_batch) == (3, 0, 1)
    assert sorted(p.name for p in (tmp_path / "dub").glob("*.wav")) == [
        "seg_0001.wav",
        "seg_0002.wav",
        "seg_0003.wav",
    ]
    report = dub(pm, EngineConfig(provider="nobody"), segments, tmp_path / "x", GenerationParams())
    assert report.failures[0]["error"]["code"] == "unknown_provider"


def test_dub_numbers_segments_by_line_and_skips_what_has_nothing_to_speak(host, settings, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text("One line.\n\nThird line.\n!!! ...\nFifth line.\n", encoding="utf-8")
    out = tmp_path / "dub"
    code, _, err = host(
        "--settings", settings, "dub", script, "--out-dir", out, *FAST
    )  # fmt: skip
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    status = {entry["segment"]: entry["status"] for entry in manifest["segments"]}
    assert status == {1: "ok", 3: "ok", 4: "skipped", 5: "ok"}
    skipped = next(e for e in manifest["segments"] if e["segment"] == 4)
    assert "nothing to speak" in skipped["reason"]
    assert sorted(p.name for p in out.glob("*.wav")) == [
        "seg_0001.wav",
        "seg_0003.wav",
        "seg_0005.wav",
    ]


def test_dub_resume_matches_by_text_so_an_inserted_line_is_the_only_one_spoken(
    host, settings, tmp_path
):
    script, out = tmp_path / "script.txt", tmp_path / "dub"
    script.write_text("Alpha one.\nBravo two.\nCharlie three.\n", encoding="utf-8")
    assert host("--settings", settings, "dub", script, "--out-dir", out, *FAST)[0] == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.wav")}
    script.write_text("A new first line.\nAlpha one.\nBravo two.\nCharlie three.\n")
    code, stdout, err = host("--settings", settings, "dub", script, "--out-dir", out, *FAST)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    entries = {entry["segment"]: entry for entry in manifest["segments"]}
    assert [entries[n]["text"] for n in (1, 2, 3, 4)] == [
        "A new first line.",
        "Alpha one.",
        "Bravo two.",
        "Charlie three.",
    ]
    # the three old takes moved down a line, byte for byte; only line 1 was synthesised
    assert (out / "seg_0002.wav").read_bytes() == before["seg_0001.wav"]
    assert (out / "seg_0003.wav").read_bytes() == before["seg_0002.wav"]
    assert (out / "seg_0004.wav").read_bytes() == before["seg_0003.wav"]
    assert all(entries[n]["path"] == f"seg_{n:04d}.wav" for n in entries)
    assert re.search(r"\bok\s+1\b", stdout) and re.search(r"\bresumed\s+3\b", stdout)
    assert not list(out.glob(".*moving"))


def test_serve_says_where_it_listens_and_which_engines_it_found(settings, tmp_path):
    import httpx

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "example_host", "--settings", str(settings)]
    server = subprocess.Popen(
        [*command, "serve", "--port", "0"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = server.stdout.readline()
        match = re.match(r"serving (http://127\.0\.0\.1:(\d+)/)  engines: qwen3_tts \(", line)
        assert match, line
        assert f"settings: {settings}" in line
        response = None
        for _ in range(50):  # uvicorn starts accepting just after the line
            try:
                response = httpx.get(match.group(1) + "api/tts/status", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None, "the server printed its URL but never answered"
        assert response.status_code == 200 and response.json()[0]["provider"] == "qwen3_tts"
        busy = subprocess.run(
            [*command, "serve", "--port", match.group(2)], capture_output=True, text=True, env=env
        )
        assert busy.returncode == 4 and busy.stdout == ""
        assert f"cannot listen on 127.0.0.1:{match.group(2)}" in busy.stderr
        none = subprocess.run(
            [*command, "serve", "--port", "0"],
            capture_output=True,
            text=True,
            env={**env, "AUTOCUT_TTS_PLUGINS": ""},
        )
        assert none.returncode == 3 and none.stderr.startswith("no_engine: ")
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_dub_removes_what_a_crashed_run_left_and_writes_files_of_one_mode(host, settings, tmp_path):
    script, out = tmp_path / "script.txt", tmp_path / "dub"
    script.write_text("Alpha one.\nBravo two.\n", encoding="utf-8")
    out.mkdir()
    left = [
        out / ".seg_0002.wav.k3j2l1.tmp",
        out / ".manifest.x8y.tmp",
        out / ".seg_0001.wav.moving",
    ]
    for path in left:
        path.write_bytes(b"half written")
    keep = out / "notes.txt"
    keep.write_text("mine")
    assert host("--settings", settings, "dub", script, "--out-dir", out, *FAST)[0] == 0
    assert not any(path.exists() for path in left) and keep.read_text() == "mine"
    modes = {path.name: path.stat().st_mode & 0o777 for path in out.iterdir() if path != keep}
    assert set(modes.values()) == {0o644}, modes


def test_a_disabled_config_is_not_used(host, tmp_path, tiny):
    path = tmp_path / "settings.json"
    config = {
        "provider": "qwen3_tts",
        "enabled": False,
        "extra_params": {"ModelPath": str(tiny["custom_voice"]), "Device": "cpu"},
    }
    path.write_text(json.dumps({"configs": {"qwen3_tts_default": config}}))
    for argv in (["smoke", *FAST], ["preview", "Hi.", "--out", tmp_path / "p.wav", *FAST]):
        code, out, err = host("--settings", path, *argv)
        assert code == 2 and out == "", argv
        assert err.startswith("config_disabled: config 'qwen3_tts_default' is disabled")
    assert not (tmp_path / "p.wav").exists()


def test_the_host_reads_an_engines_setting_names_from_its_schema():
    """An engine whose settings are named otherwise: the host still finds its model and
    batch-size settings through their roles."""
    from example_host import engines
    from hookspecs import ROLES_KEY, AccelerationStatus, Capabilities, ModelInfo

    schema = {
        "properties": {
            "Voice": {"type": "string", "default": "alto", ROLES_KEY: ["model"]},
            "Folder": {"type": "string", ROLES_KEY: ["model", "model_folder"]},
            "Chunk": {"type": "integer", ROLES_KEY: ["batch_size", "speed_only"]},
        }
    }

    def caps(valid):
        return Capabilities(
            provider="other",
            display_name="Other",
            version="1",
            voice_modes=["custom_voice"],
            sample_rate=16_000,
            models=[
                ModelInfo(key="alto", repo_id="", kind=None, size=None, present=valid, valid=valid)
            ],
            acceleration=AccelerationStatus(supported=False, preferred_device="cpu", backend="cpu"),
            settings_schema=schema,
        )

    assert engines.setting_with_role(caps(True), "model_folder") == "Folder"
    assert engines.setting_with_role(caps(True), "batch_size") == "Chunk"
    assert engines.setting_with_role(caps(True), "device") is None
    assert engines.model_configured(caps(True), {})  # the default model is there
    assert not engines.model_configured(caps(False), {"Folder": ""})  # blank is unset
    assert engines.model_configured(caps(False), {"Folder": "/models/mine"})


def test_engine_log_lines_go_above_the_dubs_progress_bar_not_into_it(capsys, monkeypatch):
    """On a terminal the engine's warnings (stdlib logging, through the host's handler) are
    written on a line of their own while the bar is up, and the bar is drawn again below."""
    from example_host.dubbing import Progress

    logs.configure(level=logging.WARNING)
    try:
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal, as far as tqdm asks
        with Progress(3, stream=sys.stderr):
            logging.getLogger("qwen3tts_plugin.engine").warning("tts.synthesize.failed code=x")
    finally:
        logs.reset()
    err = capsys.readouterr().err
    at = err.index("tts.synthesize.failed")
    line_start = max(err.rfind("\n", 0, at), err.rfind("\r", 0, at)) + 1  # \r: back to column 0
    before = err[line_start:at]
    assert "0/3" not in before and "|" not in before, repr(err)  # not after the bar's text
    assert "0/3" in err[at:]  # the bar drawn again below the line
