"""Shared fixtures: offline mode, the tiny checkpoints, the plugin manager, the engine."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tiny random checkpoints speak lengths that have nothing to do with their text (a sampled
# "Hello there." runs past the 4 s floor a third of the time): the frame bound off by default
# here; tests/test_budgets.py sets FrameBound=auto itself.
os.environ.setdefault("QWEN3TTS_FRAME_BOUND", "off")

import pytest

import hookspecs


def pytest_collection_modifyitems(config, items):
    """GPU tests skip themselves where CUDA is not usable."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _logging_defaults():
    """Applications under test (doctor, example_host) configure structlog and the root logger;
    undo it after."""
    yield
    import structlog

    structlog.reset_defaults()
    host_logs = sys.modules.get("example_host.logs")
    if host_logs is not None:  # the example host's CLI ran in this process: its handler goes
        host_logs.reset()


@pytest.fixture
def settings(tmp_path, tiny):
    """The example host's settings file on the tiny custom_voice checkpoint, on the CPU (test
    modules with a ``settings`` fixture of their own use theirs)."""
    from host_settings import write_settings

    return write_settings(
        tmp_path / "settings.json", ModelPath=str(tiny["custom_voice"]), Device="cpu"
    )


@pytest.fixture
def host(capsys):
    """Run the example host's CLI in-process: host(*argv) -> (exit code, stdout, stderr)."""
    from example_host.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def tiny():
    """Built (or cached) tiny checkpoints by variant; read-only, copy before changing one."""
    from qwen3tts_plugin.testing import VARIANTS, tiny_checkpoint

    return {variant: tiny_checkpoint(variant) for variant in VARIANTS}


@pytest.fixture(scope="session")
def pm():
    """The host's view: a plugin manager with the installed engines, found by entry point."""
    return hookspecs.plugin_manager()


@pytest.fixture
def engine():
    """The engine behind the installed plugin (the one ``pm.hook`` reaches)."""
    from qwen3tts_plugin.hooks import get_engine

    return get_engine()


@pytest.fixture(scope="session")
def unloadable(tiny, tmp_path_factory):
    """A tiny custom_voice folder that passes every check before a load and fails the load:
    complete, whole files, but one tensor's shape disagrees with config.json."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("unloadable") / "mismatched"
    shutil.copytree(tiny["custom_voice"], folder)
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    head = tensors["talker.codec_head.weight"]
    tensors["talker.codec_head.weight"] = head[: head.shape[0] // 2].clone()
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="session")
def broken_logits(tiny, tmp_path_factory):
    """The tiny custom_voice checkpoint with NaN in the talker's head: it loads, and every
    generate call fails inside the model (as fp16 overflow does)."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("broken") / "nan_logits"
    shutil.copytree(tiny["custom_voice"], folder)
    weights = folder / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["talker.codec_head.weight"] = tensors["talker.codec_head.weight"] * float("nan")
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="session")
def ref_wav(tmp_path_factory):
    """A two-second reference recording at 16 kHz stereo FLAC (any rate, layout and format
    libsndfile reads must work)."""
    import numpy as np
    import soundfile as sf

    path = tmp_path_factory.mktemp("ref") / "ref.flac"
    t = np.arange(32_000) / 16_000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    sf.write(path, np.stack([tone, tone * 0.5], axis=1).astype(np.float32), 16_000)
    return path
