"""Shared fixtures: offline mode, the tiny checkpoints, the plugin manager, the engine."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

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
def _structlog_defaults():
    """Applications under test (doctor, example_host) configure structlog; undo it after."""
    yield
    import structlog

    structlog.reset_defaults()


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
