"""Requests turned into plans before any model work: what to load, what to speak, and which
pieces may share a generate call.

Pure: no torch, no model. Every check a request can fail without a model runs here, cheapest
first (settings, text, device decision, model folder, voice, output path, reference audio), so
a bad request fails before anything loads. The machine's acceleration status comes in as a
value (``Planner(status)``); the decision made from it is kept per status and settings.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookspecs import AccelerationStatus, GenerationParams, SynthesisRequest, TtsError
from hookspecs.models import MAX_NEW_TOKENS

from .budgets import first_budget, text_bound
from .devices import DevicePlan, batch_size_for, decide
from .log import get_logger
from .registry import ModelFacts, ResolvedModel, check_model_dir, read_model_facts
from .settings import EngineSettings, parse_settings
from .text import Piece, clean_text, split_pieces
from .voices import VoicePlan, resolve_voice, with_reference

if TYPE_CHECKING:
    from .backends import FrameSink

log = get_logger(__name__)

MAX_BATCH_REQUESTS = 1024
"""Most requests one ``tts_synthesize_batch`` call takes."""


STEPPER_ROWS_PER_SLOT = 4
"""Texts a stepper call takes per slot (``benchmarks``: mixed lengths keep every slot busy)."""


@dataclass(frozen=True)
class LoadKey:
    """What makes two loads the same model in memory."""

    path: str
    device: str
    dtype: str
    attn_implementation: str
    backend: str
    quantization: str


@dataclass(frozen=True)
class LoadPlan:
    """A config's settings, device decision and model folder, all checked; nothing loaded."""

    settings: EngineSettings
    device: DevicePlan
    model: ResolvedModel
    facts: ModelFacts

    @functools.cached_property
    def key(self) -> LoadKey:
        """What makes two loads the same: folder, device, dtype, attention, backend,
        quantization."""
        return LoadKey(
            path=str(self.model.path),
            device=self.device.device,
            dtype=self.device.dtype,
            attn_implementation=self.device.attn_implementation,
            backend=self.device.backend,
            quantization=self.device.quantization,
        )

    @functools.cached_property
    def batch_size(self) -> int:
        """Most texts one generate call decodes at once with these settings."""
        return batch_size_for(self.settings.BatchSize, self.device)

    @property
    def rows_per_slot(self) -> int:
        """Texts one generate call takes per decode slot: the stepper hands an ended text's
        slot to the next at once, so its calls take more texts than it decodes at once."""
        return STEPPER_ROWS_PER_SLOT if self.device.backend == "stepper" else 1

    @property
    def run_limit(self) -> int:
        """Most texts one generate call takes."""
        return self.batch_size * self.rows_per_slot


@dataclass(frozen=True, eq=False)
class SpeechPlan:
    """One request, checked: what to load, the settled voice, and the pieces of its text."""

    request: SynthesisRequest
    load: LoadPlan
    voice: VoicePlan
    pieces: tuple[Piece, ...]

    @property
    def params(self) -> GenerationParams:
        return self.request.generation

    @functools.cached_property
    def bounds(self) -> tuple[int | None, ...]:
        """Each piece's frame bound from its text (``budgets.text_bound``); None for all with
        ``FrameBound=off``."""
        if self.load.settings.FrameBound == "off":
            return (None,) * len(self.pieces)
        return tuple(text_bound(piece.text) for piece in self.pieces)


@dataclass(frozen=True, eq=False)
class PieceTask:
    """One piece of one request, to be spoken with ``params`` (its budget for this try).

    What the scheduler reads (``load_key``, ``batch_key``, ``limit``) is fixed here: pieces
    with equal batch keys may share a generate call.
    """

    speech: SpeechPlan
    index: int
    params: GenerationParams
    batch_key: Hashable | None
    queued: int = field(default_factory=lambda: queue_stamp())
    """When the piece was queued, to tell which pieces queued before a load failed."""
    sink: FrameSink | None = None
    """Who gets the piece's frames as they are made (a streamed request), or None."""

    @property
    def text(self) -> str:
        return self.speech.pieces[self.index].text

    @property
    def voice(self) -> VoicePlan:
        return self.speech.voice

    @property
    def load_key(self) -> LoadKey:
        return self.speech.load.key

    @property
    def limit(self) -> int:
        return self.speech.load.run_limit


_QUEUE_ORDER = itertools.count()


def queue_stamp() -> int:
    """A number larger than every one handed out before (pieces queued, loads failed)."""
    return next(_QUEUE_ORDER)


class Planner:
    """Turns configs and requests into plans; keeps the device decision per machine status."""

    def __init__(self, status: Callable[[], AccelerationStatus]) -> None:
        """``status()`` is this machine's acceleration status (probed once, then cached)."""
        self._status = status
        self._decisions: dict[tuple[Any, ...], tuple[AccelerationStatus, DevicePlan]] = {}

    def load_plan(self, extra_params: dict[str, Any]) -> LoadPlan:
        """Settings, device decision and model folder, cheapest first; loads nothing."""
        return self._load_plan(parse_settings(extra_params))

    def speech_plan(
        self, request: SynthesisRequest, references: dict[Path, Any] | None = None
    ) -> SpeechPlan:
        """``request`` checked (settings, text, device, model folder, voice, output path,
        reference audio) and split into pieces. ``references`` shares decoded reference
        recordings between the requests of a batch."""
        from .audio import check_out_path

        settings = parse_settings(request.config.extra_params)
        text = clean_text(request.text, settings.MaxChars)
        load = self._load_plan(settings)
        voice = resolve_voice(request.voice, settings, load.facts)
        check_out_path(request.out_path)
        voice = with_reference(voice, references)
        pieces = split_pieces(text, settings.PieceChars)
        if len(pieces) > 1:
            log.info("tts.pieces.split", chars=len(text), pieces=len(pieces))
        return SpeechPlan(request, load, voice, tuple(pieces))

    def _load_plan(self, settings: EngineSettings) -> LoadPlan:
        device = self._decision(settings)
        model = settings.model
        check_model_dir(model.path)
        return LoadPlan(settings, device, model, read_model_facts(model.path))

    def _decision(self, settings: EngineSettings) -> DevicePlan:
        """The device decision for these settings, made (and logged) once per machine status."""
        status = self._status()
        key = (
            settings.Device,
            settings.Precision,
            settings.Quantization,
            settings.Attention,
            settings.Backend,
        )
        known = self._decisions.get(key)
        if known is not None and known[0] is status:
            return known[1]
        plan = decide(settings, status)
        self._decisions[key] = (status, plan)
        return plan


def piece_tasks(
    speech: SpeechPlan,
    each: Mapping[int, GenerationParams],
    sinks: Sequence[FrameSink] | None = None,
) -> list[PieceTask]:
    """Tasks for the pieces ``each`` names, piece ``i`` spoken with ``each[i]`` (and, for a
    streamed request, its frames going to ``sinks[i]``)."""
    return [
        PieceTask(
            speech,
            index,
            params,
            batch_key(speech, params),
            sink=None if sinks is None else sinks[index],
        )
        for index, params in each.items()
    ]


def first_tries(speech: SpeechPlan) -> dict[int, GenerationParams]:
    """Each piece's values for its first try: the request's, with the smaller of its
    ``max_new_tokens`` and the piece's bound (``budgets.first_budget``)."""
    params = speech.params
    return {
        index: with_budget(params, first_budget(params.max_new_tokens, bound))
        for index, bound in enumerate(speech.bounds)
    }


def with_budget(params: GenerationParams, budget: int, seed: int | None = None) -> GenerationParams:
    """``params`` with another frame budget (and seed, when given)."""
    update: dict[str, Any] = {"max_new_tokens": budget}
    if seed is not None:
        update["seed"] = seed
    return params.model_copy(update=update)


def batch_key(speech: SpeechPlan, params: GenerationParams) -> Hashable | None:
    """Which pieces may share a generate call with these: same model, voice mode, sampling
    values and backend rules, up to the batch size. None: the piece runs alone. Budgets may
    differ (a call runs to the largest; each piece is judged by its own).

    Seeded sampled pieces share calls only with their own request's pieces: a seed gives the
    same audio alone, in a batch or among concurrent calls.
    """
    load = speech.load
    limit = load.batch_size
    if limit == 1:
        return None
    mode = speech.voice.mode
    if load.device.backend == "stepper":  # values, budget and seed are per text there
        return (load.key, mode, limit, load.device.exact_backend)
    if params.do_sample and params.seed is not None:
        seeded = params.model_copy(update={"max_new_tokens": 0, "allow_cut": False})
        return (load.key, mode, seeded, limit, id(speech))
    sampling = params.model_copy(update={"seed": None, "allow_cut": False, "max_new_tokens": 0})
    # an explicit Backend and auto may share a model, never a call (what may run differs)
    return (load.key, mode, sampling, limit, load.device.exact_backend)


def retry_budget(asked: int, tried: int, ceiling: int) -> int | None:
    """The budget a piece cut at ``tried`` frames is spoken again with: twice what the request
    ``asked``, within what the backend honours (``ceiling``) and the contract's most; None
    when that is no more than it had."""
    budget = min(2 * asked, ceiling, MAX_NEW_TOKENS)
    return budget if budget > tried else None


def claim_out_path(request: SynthesisRequest, index: int, claimed: dict[str, int]) -> None:
    """Refuse an output path an earlier request of the same batch writes."""
    path = os.path.abspath(request.out_path)
    first = claimed.setdefault(path, index)
    if first != index:
        raise TtsError(
            "output_write_failed",
            f"{request.out_path} is also the output of request {first} in this batch",
            "Give every request of a batch its own out_path.",
        )
