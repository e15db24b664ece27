"""The hooks a text-to-speech engine implements. Each docstring is that hook's manual."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .markers import hookspec

if TYPE_CHECKING:  # annotations only: plugin_manager() stays free of pydantic's start-up cost
    from collections.abc import Iterator

    from .models import (
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


@hookspec
def tts_capabilities(config: EngineConfig | None) -> Capabilities:
    """Describe the engine: provider name, voice modes, models, acceleration, settings schema.

    Called by hosts to fill an engines list or a settings page. Every installed engine answers;
    the host receives a list with one ``Capabilities`` per engine (not firstresult). Must be
    cheap enough for a settings page: no model is loaded to answer it.

    Hosts pass ``config`` by name, ``None`` for the engines' defaults:
    ``pm.hook.tts_capabilities(config=None)``. The engine that ``config.provider`` names reads
    where models live from its settings (a models folder, a model path) and marks the model
    the config selects (``ModelInfo.configured``); other engines answer with their defaults.
    A setting that does not validate never fails this hook: the engine falls back to its
    defaults for that setting (``tts_load`` reports the error).
    """


@hookspec(firstresult=True)
def tts_check_settings(config: EngineConfig) -> list[ErrorInfo] | None:
    """Say whether the engine accepts ``config.extra_params`` as settings, with its own words.

    For a host's settings form and ``settings set``: each value is judged exactly as a load
    would judge it (forms, ranges, case, known model keys), without loading or probing
    anything, so a setting for a machine the user will move to (``Device=cuda:0`` here) is
    accepted. Returns ``[]`` when every setting is accepted, else one ``ErrorInfo`` per refusal
    (``invalid_settings``, ``invalid_device``, ``unknown_model_key``); None when
    ``config.provider`` is not this engine's (firstresult). Keys the engine does not know are
    ignored (other engines share ``extra_params``).
    """


@hookspec
def tts_status() -> EngineStatus:
    """Say what the engine holds in memory now, and why its last load failed, if it did.

    For a status badge (loaded, model, device, precision, last device error). Every installed
    engine answers; the host receives a list with one ``EngineStatus`` per engine (not
    firstresult) and picks by ``provider``. Cheap and side-effect free: it loads nothing, and
    an engine that never loaded a model imports no machine-learning library to answer.
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
    returns a result wins (firstresult). Loads the model first when needed. The text is spoken
    whole: an engine may split a long text into pieces (``SynthesisResult.pieces``), but never
    returns audio that was cut short without saying so; it fails instead
    (``synthesis_truncated``; ``synthesis_runaway`` when a piece ran far past the longest its
    text could take), unless ``GenerationParams.allow_cut`` asks to keep the cut
    (``SynthesisResult.cut_pieces``). Text that cannot be spoken is refused before any model
    work (``text_too_long``, ``invalid_text``, ``empty_text``). The file is written
    atomically: on any ``TtsError`` no partial file is left and an existing file at the path is
    untouched. Safe to call from many threads at once.
    """


@hookspec(firstresult=True)
def tts_synthesize_batch(requests: list[SynthesisRequest]) -> list[BatchItem] | None:
    """Speak many requests, sharing generate calls where they can, and report each one.

    Answered by the engine whose provider every request names (``request.config.provider``);
    an engine returns None when any request names another, and the first result wins
    (firstresult). Returns one ``BatchItem`` per request, in request order (``item.index`` is
    the request's position): ``result`` when its WAV was written, else ``error`` (an
    ``ErrorInfo`` with the ``TtsError`` fields).

    One bad request fails alone: every request is validated on its own (settings, text, voice,
    output path) with the same codes ``tts_synthesize`` raises, gets its own error and writes
    nothing, and the others are still written. Requests that can share a generate call (same
    model, voice mode and sampling parameters) run together, up to the engine's batch size
    per call; a failure inside a shared call fails every item of that call. An engine may run
    seeded requests on their own so that a seed gives the same audio in a batch as alone. Files
    are written atomically, as by ``tts_synthesize``. An empty list returns an empty list.
    Raises ``TtsError`` only for the list as a whole (for example ``invalid_settings`` when it
    is longer than the engine accepts). Safe to call from many threads at once.
    """


@hookspec(firstresult=True)
def tts_synthesize_stream(request: SynthesisRequest) -> Iterator[AudioChunk] | None:
    """Speak ``request`` as ``tts_synthesize`` does, handing the audio over as it is made.

    Return None when ``request.config.provider`` is not this engine's (firstresult). Every
    check that can fail before generation (settings, text, model, voice, output path) raises
    here, with the codes ``tts_synthesize`` raises, before an iterator is returned. The
    iterator yields ``AudioChunk``s in order; their samples joined are the request's audio
    (the same as ``tts_synthesize`` gives, within the tolerance the engine documents). The
    last chunk has ``final=True`` and the ``SynthesisResult``: by then the WAV at
    ``request.out_path`` is written, atomically, as by ``tts_synthesize``. A failure after
    the first chunk raises its ``TtsError`` from the iterator, and no file is written.
    Closing the iterator early (``close()``, or dropping it) stops the work at once and
    writes nothing. An engine that cannot stream yields the whole audio as one final chunk.
    Safe to call from many threads at once; each iterator belongs to one consumer.
    """
