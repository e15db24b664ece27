"""Backends: what runs a loaded model. The engine talks to one only through ``Backend``.

A backend places a model folder on the plan's device at load time (and proves it landed
there), turns a list of texts into a list of waveforms in one generate call, and gives its
memory back on release. ``qwen_tts`` (qwen_tts's own generate loop) is the first; a faster one
is a second class with the same methods.

Importing this package is cheap: a backend's module (torch, qwen_tts) is imported on load.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hookspecs import TtsError

from ..devices import first_line
from ..hints import RUNTIME_HINT

if TYPE_CHECKING:
    import numpy as np

    from hookspecs import GenerationParams

    from ..devices import DevicePlan
    from ..voices import VoicePlan

BACKENDS = {
    "qwen_tts": "qwen3tts_plugin.backends.qwen_tts:QwenTtsBackend",
    "cuda_graphs": "qwen3tts_plugin.backends.cuda_graphs:CudaGraphsBackend",
}
"""Backend name (settings.BACKEND_NAMES) → ``module:class``."""

DEFAULT_BACKEND = "qwen_tts"


@dataclass(frozen=True)
class LoadKey:
    """What makes two loads the same model in memory."""

    path: str
    device: str
    dtype: str
    attn_implementation: str
    backend: str = DEFAULT_BACKEND


class Backend(Protocol):
    """A model placed on one device that speaks lists of texts."""

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

    def generate(
        self,
        texts: Sequence[str],
        voices: Sequence[VoicePlan],
        params: GenerationParams,
        strict: bool = False,
    ) -> list[np.ndarray]:
        """One waveform per text, in order, from one generate call.

        Every voice has the same mode; ``params`` apply to every text. ``strict``: the Backend
        setting named this backend, so a request it cannot run as asked is refused
        (``invalid_settings``) rather than run another way. Raises ``TtsError``
        (``synthesis_failed``) when the call fails: then no text has audio.
        """

    def max_frames(self, strict: bool = False) -> int:
        """The largest frame budget (``max_new_tokens``) one call can honour."""

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


RUNTIME_IMPORT_ERRORS = (ImportError, OSError, RuntimeError)
"""What importing torch, torchaudio or qwen_tts raises when they are missing or broken (a
torchaudio built for another torch fails to load its library with OSError or RuntimeError)."""


def runtime_unavailable(what: str, exc: BaseException) -> TtsError:
    """``engine_unavailable``: the runtime ``what`` needs cannot be imported."""
    return TtsError(
        "engine_unavailable",
        f"{what} cannot be imported: {type(exc).__name__}: {first_line(exc)}",
        RUNTIME_HINT,
    )
