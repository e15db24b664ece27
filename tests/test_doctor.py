"""``python -m qwen3tts_plugin doctor``: the seed's quick checks as one command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qwen3tts_plugin.cli import main


def run(capsys, *argv):
    code = main(["doctor", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def models_dir(tiny, tmp_path, monkeypatch):
    """The default model (custom_0_6b) present where the engine looks: the tiny checkpoint."""
    import shutil

    folder = tmp_path / "models"
    shutil.copytree(tiny["custom_voice"], folder / "Qwen3-TTS-12Hz-0.6B-CustomVoice")
    monkeypatch.setenv("QWEN_TTS_MODELS_DIR", str(folder))
    return folder


def test_json_on_this_machine_is_cpu_and_usable(capsys):
    code, out, _ = run(capsys, "--json")
    report = json.loads(out)
    assert code == 0
    assert report["acceleration"]["cuda_available"] is False
    assert report["acceleration"]["preferred_device"] == "cpu"
    assert report["decision"] == {
        "device": "cpu",
        "source": "detected",
        "dtype": "float32",
        "quantization": "none",
        "attn_implementation": "sdpa",
        "backend": "stepper",
        "why": report["decision"]["why"],
    }
    assert report["usable"] is True and report["error"] is None
    assert any("0.6B" in line for line in report["advice"])
    assert (report["model"]["key"], report["model"]["valid"]) == ("custom_0_6b", True)


def test_without_the_model_it_is_not_usable_and_says_how_to_fetch_it(capsys, models_dir):
    code, out, _ = run(capsys, "--model-key", "base_0_6b")
    assert code == 1 and "NOT usable" in out
    assert "model_not_found" in out and "base_0_6b at " in out and "(missing)" in out
    assert "huggingface-cli download Qwen/Qwen3-TTS-12Hz-0.6B-Base --local-dir" in out
    (models_dir / "Qwen3-TTS-12Hz-0.6B-CustomVoice" / "merges.txt").unlink()
    code, out, _ = run(capsys, "--json")
    report = json.loads(out)
    assert code == 1 and report["error"]["code"] == "model_invalid"
    assert report["model"]["present"] and report["model"]["missing"] == ["merges.txt"]


def test_configured_cuda_here_exits_1_naming_model_to_device_failed(capsys):
    code, out, _ = run(capsys, "--device", "cuda:0", "--json")
    report = json.loads(out)
    assert code == 1
    assert report["usable"] is False
    assert report["decision"]["device"] == "cuda:0" and report["decision"]["source"] == "config"
    assert report["error"]["code"] == "model_to_device_failed"
    assert report["error"]["hint"]


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--device", "gpu"], "invalid_device"),
        (["--precision", "fp8"], "invalid_settings"),
        (["--device", "cpu", "--backend", "cuda_graphs"], "invalid_settings"),
    ],
)
def test_bad_settings_are_reported_with_their_code(capsys, argv, code):
    exit_code, out, _ = run(capsys, *argv, "--json")
    assert exit_code == 1 and json.loads(out)["error"]["code"] == code


def test_bf16_on_the_cpu_is_honoured_or_refused_as_the_cpu_allows(capsys):
    code, out, _ = run(capsys, "--device", "cpu", "--precision", "bf16", "--json")
    report = json.loads(out)
    if report["acceleration"]["extras"]["cpu"]["bf16"]:  # this machine: AVX512-BF16
        assert code == 0 and report["decision"]["dtype"] == "bfloat16"
        assert "natively" in report["decision"]["why"]
    else:
        assert code == 1 and report["error"]["code"] == "invalid_settings"
        assert "natively" in report["error"]["detail"]


def test_fp16_on_the_cpu_is_refused_with_a_hint(capsys):
    code, out, _ = run(capsys, "--device", "cpu", "--precision", "fp16", "--json")
    report = json.loads(out)
    assert code == 1 and report["decision"] is None
    assert report["error"]["code"] == "invalid_settings" and "bf16" in report["error"]["hint"]


def test_a_cpu_that_runs_int8_is_advised_int8_and_one_with_bf16_alone_bf16(capsys):
    code, out, _ = run(capsys, "--device", "cpu", "--json")
    report = json.loads(out)
    cpu = report["acceleration"]["extras"]["cpu"]
    assert code == 0 and report["decision"]["quantization"] == "none"
    int8_advised = any("Quantization=int8" in line for line in report["advice"])
    bf16_advised = any("Precision=bf16" in line for line in report["advice"])
    # advised where measured (this machine: AVX512-VNNI), honoured wherever the kernels run
    assert int8_advised == (cpu["int8"] and "avx512_vnni" in cpu["int8_features"])
    assert bf16_advised == (cpu["bf16"] and not int8_advised)
    code, out, _ = run(capsys, "--device", "cpu", "--quantization", "int8", "--json")
    report = json.loads(out)
    if cpu["int8"]:
        assert code == 0 and report["decision"]["quantization"] == "int8"
        assert not any("Quantization=int8" in line for line in report["advice"])
    else:
        assert code == 1 and report["error"]["code"] == "invalid_settings"
    code, out, _ = run(capsys, "--device", "cpu")
    assert ("bf16 native" in out) == cpu["bf16"]
    assert ("int8 layers run" in out) == cpu["int8"] and "quantization" in out


def test_int8_on_a_gpu_is_refused_by_the_doctor_too(capsys):
    code, out, _ = run(capsys, "--device", "cuda:0", "--quantization", "int8", "--json")
    report = json.loads(out)
    assert code == 1 and report["error"]["code"] == "invalid_settings"
    assert "runs only on the CPU" in report["error"]["detail"]


def test_table_names_the_decision_and_the_verdict(capsys):
    code, out, _ = run(capsys, "--device", "cuda:0")
    assert code == 1
    assert "model_to_device_failed" in out and "NOT usable" in out and "cuda:0 (config)" in out


def test_stdout_carries_only_the_json_in_a_fresh_process(models_dir):
    import os

    proc = subprocess.run(
        [sys.executable, "-m", "qwen3tts_plugin", "doctor", "--json", "-v"],
        capture_output=True,
        text=True,
        env={**os.environ, "QWEN_TTS_MODELS_DIR": str(models_dir)},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["usable"] is True
    assert "tts.device.resolved" in proc.stderr  # logs went to stderr
