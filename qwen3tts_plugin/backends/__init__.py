"""Backends: what runs a loaded model. The engine talks to one only through ``Backend``.

A backend places a model folder on the plan's device at load time (and proves it landed
there), speaks a ``Batch`` of texts in one generate call, and gives its memory back on
release. ``qwen_tts`` (qwen_tts's own generate loop) is the reference; ``cuda_graphs``
(faster-qwen3-tts) replays its decode steps as CUDA graphs; ``stepper`` runs our own decode
loop over qwen_tts's loaded modules (rows leave and join a running batch, per-row seeds).
Only modules in this package import torch's model libraries (qwen_tts, transformers,
faster_qwen3_tts).

Importing this package is cheap: a backend's module (torch, qwen_tts) is imported on load.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .failures import RUNTIME_IMPORT_ERRORS, runtime_unavailable

if TYPE_CHECKING:
    import numpy as np

    from hookspecs import GenerationParams, TtsError

    from ..devices import DevicePlan
    from ..voices import VoicePlan

BACKENDS = {
    "qwen_tts": "qwen3tts_plugin.backends.qwen_tts.backend:QwenTtsBackend",
    "cuda_graphs": "qwen3tts_plugin.backends.cuda_graphs:CudaGraphsBackend",
    "stepper": "qwen3tts_plugin.backends.stepper.backend:StepperBackend",
}
"""Backend name (settings.BACKEND_NAMES) → ``module:class``."""


@dataclass(frozen=True)
class Batch:
    """One generate call: texts with one voice mode and, unless the backend samples per text,
    one set of sampling values."""

    texts: tuple[str, ...]
    voices: tuple[VoicePlan, ...]
    params: GenerationParams
    exact: bool = False
    """The Backend setting named this backend: a request it cannot run as asked is refused
    (``invalid_settings``) rather than run another way."""
    each: tuple[GenerationParams, ...] = ()
    """Each text's own values (seed and budget included), for a backend that samples per text
    (``stepper``); empty: ``params`` for all. Other backends only get texts whose values are
    ``params``."""
    slots: int | None = None
    """Texts to decode at once (``BatchSize``), for a backend that admits the rest of the call
    as texts end (``stepper``); None: all of them."""

    admit: Callable[[int], Batch | None] | None = None
    """For a backend that frees a slot when a text ends: ``admit(free)`` gives up to ``free``
    more texts for this call (their indices follow the ones it has), or None."""
    settle: Callable[[int, np.ndarray | TtsError], None] | None = None
    """``settle(index, waveform)`` hands a text's result over as soon as it is in; the backend
    then returns None in its place."""
    sinks: tuple[FrameSink | None, ...] = ()
    """Per text, where a backend that decodes frame by frame (``stepper``) hands its frames
    as they are made (a streamed request); empty or None: nobody listens. Other backends
    ignore them (the text's audio then comes whole, with its outcome)."""
    withdrawn: Callable[[int], bool] | None = None
    """``withdrawn(index)``: nobody waits for text ``index`` any more (its caller stopped); a
    backend that can drop a text mid-call frees its slot and returns None in its place."""

    def params_of(self, index: int) -> GenerationParams:
        """The values text ``index`` is spoken with."""
        return self.each[index] if self.each else self.params

    def sink_of(self, index: int) -> FrameSink | None:
        """Who listens to text ``index``'s frames (None: nobody)."""
        return self.sinks[index] if self.sinks else None


class FrameSink(Protocol):
    """A streamed text's listener: its frames as the decode loop makes them."""

    def begin(self, audio: Any) -> None:
        """The text joined the loop; ``audio.window(frames, start, end)`` turns its frames
        into samples (from any thread)."""

    def frame(self, codes: Any) -> None:
        """One more frame of the text, [16] codes (on the decode loop's thread: be quick)."""


class Backend(Protocol):
    """A model placed on one device that speaks batches of texts."""

    name: str
    plan: DevicePlan

    @classmethod
    def preflight(cls, plan: DevicePlan) -> None:
        """Every check a load can fail cheaply, before the engine releases the model in
        memory: import the runtime (seconds, once per process; ``engine_unavailable``) and
        prove ``plan.device`` usable (``model_to_device_failed``). Loads nothing."""

    @classmethod
    def load(cls, path: Path, plan: DevicePlan) -> Backend:
        """Place the model in ``path`` on ``plan.device`` and verify it; ``TtsError`` if not."""

    @property
    def sample_rate(self) -> int:
        """Rate of the waveforms ``generate`` returns, in Hz."""

    @property
    def codec_dtype(self) -> str:
        """Precision the speech tokenizer (codec) runs in."""

    def generate(self, batch: Batch) -> list[np.ndarray | TtsError | None]:
        """One waveform per text of ``batch``, in order, from one generate call; a backend
        that can fail one text alone puts its ``TtsError`` in that text's place. A backend
        that admits texts (``batch.admit``) lists them after the batch's own; a text it
        handed over through ``batch.settle`` is None.

        Raises ``TtsError`` (``synthesis_failed``) when the call fails: then no text has
        audio; ``invalid_settings`` when ``batch.exact`` and this backend cannot run it as
        asked.
        """

    def max_frames(self, exact: bool) -> int:
        """The largest frame budget (``max_new_tokens``) one call can honour (``exact``: for
        batches that must run on this backend's own path)."""

    def ran_out(self, waveform: np.ndarray, max_new_tokens: int) -> bool:
        """Whether ``waveform`` used its whole frame budget: the text did not end, it was cut.
        (A text whose end fell on the very last frame looks the same; a retry with a larger
        budget tells them apart.)"""

    def release(self) -> None:
        """Drop the model and give its memory back; the backend is unusable afterwards."""


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name`` in ``BACKENDS`` (imports its module and torch);
    ``engine_unavailable`` when they cannot be imported."""
    module_name, _, class_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except RUNTIME_IMPORT_ERRORS as exc:
        raise runtime_unavailable(f"the {name} backend", exc) from exc
    return getattr(module, class_name)
