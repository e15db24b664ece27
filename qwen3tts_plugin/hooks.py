"""The engine's hook implementations: thin adapters from the contract to the engine.

This module is the ``autocut_tts`` entry point. Importing it must stay cheap (a host loads
every plugin at start-up): the engine, and with it torch and qwen_tts, come on the first call.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from hookspecs import hookimpl

from . import PROVIDER

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hookspecs import (
        AudioChunk,
        BatchItem,
        Capabilities,
        EngineConfig,
        EngineStatus,
        ErrorInfo,
        LoadResult,
        SynthesisRequest,
        SynthesisResult,
    )

    from .engine import Engine

_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process's one engine (one resident model, shared by every caller)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                from .engine import Engine

                _engine = Engine()
    return _engine


@hookimpl
def tts_capabilities(config: EngineConfig | None) -> Capabilities:
    return get_engine().capabilities(config if config and config.provider == PROVIDER else None)


@hookimpl
def tts_check_settings(config: EngineConfig) -> list[ErrorInfo] | None:
    if config.provider != PROVIDER:
        return None
    from .settings import check_settings

    return check_settings(config.extra_params)


@hookimpl
def tts_status() -> EngineStatus:
    if _engine is None:  # nothing was ever loaded: no engine (and no torch) to ask
        from hookspecs import EngineStatus

        return EngineStatus(provider=PROVIDER, loaded=False)
    return _engine.status()


@hookimpl
def tts_load(config: EngineConfig) -> LoadResult | None:
    if config.provider != PROVIDER:
        return None
    return get_engine().load(config)


@hookimpl
def tts_synthesize(request: SynthesisRequest) -> SynthesisResult | None:
    if request.config.provider != PROVIDER:
        return None
    return get_engine().synthesize(request)


@hookimpl
def tts_synthesize_batch(requests: list[SynthesisRequest]) -> list[BatchItem] | None:
    if any(request.config.provider != PROVIDER for request in requests):
        return None
    return get_engine().synthesize_batch(requests)


@hookimpl
def tts_synthesize_stream(request: SynthesisRequest) -> Iterator[AudioChunk] | None:
    if request.config.provider != PROVIDER:
        return None
    return get_engine().synthesize_stream(request)
