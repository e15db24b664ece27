"""The three hooks a text-to-speech engine implements. Each docstring is that hook's manual."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .markers import hookspec

if TYPE_CHECKING:  # annotations only: plugin_manager() stays free of pydantic's start-up cost
    from .models import (
        Capabilities,
        EngineConfig,
        LoadResult,
        SynthesisRequest,
        SynthesisResult,
    )


@hookspec
def tts_capabilities() -> Capabilities:
    """Describe the engine: provider name, voice modes, models, acceleration, settings schema.

    Called by hosts to fill an engines list or a settings page. Every installed engine answers;
    the host receives a list with one ``Capabilities`` per engine (not firstresult). Must be
    cheap enough for a settings page: no model is loaded to answer it.
    """


@hookspec(firstresult=True)
def tts_load(config: EngineConfig) -> LoadResult | None:
    """Make the model that ``config`` selects resident, and say where and how it was placed.

    Return None when ``config.provider`` is not this engine's; the first engine that returns a
    result wins (firstresult). Loading the same settings again is cheap and returns
    ``cached=True``. Raises ``TtsError`` on failure (for example ``invalid_device``,
    ``model_not_found``, ``model_to_device_failed``); an engine never silently moves to another
    device than the one the settings and the machine decide.
    """


@hookspec(firstresult=True)
def tts_synthesize(request: SynthesisRequest) -> SynthesisResult | None:
    """Speak ``request.text`` into a WAV at ``request.out_path`` and describe the result.

    Return None when ``request.config.provider`` is not this engine's; the first engine that
    returns a result wins (firstresult). Loads the model first when needed. The file is written
    atomically: on any ``TtsError`` no partial file is left and an existing file at the path is
    untouched. Safe to call from many threads at once.
    """
