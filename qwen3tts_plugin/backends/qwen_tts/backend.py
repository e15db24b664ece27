"""The reference backend: qwen_tts's own ``Qwen3TTSModel`` and its generate loop.

Imported only when a model is loaded (it imports torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hookspecs.models import MAX_NEW_TOKENS

from ..device import check_device, free_device_memory
from .calls import generate
from .placement import codec_dtype, load_model
from .runtime import import_qwen_tts

if TYPE_CHECKING:
    import numpy as np
    from qwen_tts import Qwen3TTSModel

    from ...devices import DevicePlan
    from .. import Batch


class QwenTtsBackend:
    """A ``Qwen3TTSModel`` placed with ``device_map`` and verified; batched generate calls."""

    name = "qwen_tts"

    def __init__(self, model: Qwen3TTSModel, plan: DevicePlan) -> None:
        self._model: Qwen3TTSModel | None = model
        self.plan = plan

    @classmethod
    def preflight(cls, plan: DevicePlan) -> None:
        import_qwen_tts()
        check_device(plan.device)

    @classmethod
    def load(cls, path: Path, plan: DevicePlan) -> QwenTtsBackend:
        return cls(load_model(path, plan), plan)

    @property
    def model(self) -> Qwen3TTSModel:
        """The loaded qwen_tts model (benchmarks and checks compare against it)."""
        if self._model is None:
            raise RuntimeError("this backend was released")
        return self._model

    @property
    def codec_dtype(self) -> str:
        return codec_dtype(self.model)

    @property
    def sample_rate(self) -> int:
        return self.model.model.speech_tokenizer.get_output_sample_rate()

    def generate(self, batch: Batch) -> list[np.ndarray]:
        return generate(self.model, self.plan, batch)

    def max_frames(self, exact: bool) -> int:
        return MAX_NEW_TOKENS  # qwen_tts's loop honours any budget the contract allows

    def ran_out(self, waveform: np.ndarray, max_new_tokens: int) -> bool:
        return frames_in(waveform, self.model) >= max_new_tokens - 1

    def release(self) -> None:
        self._model = None
        free_device_memory()


def frames_in(waveform: np.ndarray, model: Qwen3TTSModel) -> int:
    """Codec frames in ``waveform``, rounded: a voice-clone trim can be off by a sample.

    qwen_tts keeps the codes of every step but the last: a text that never produced its
    end-of-speech code comes back with ``max_new_tokens - 1`` frames; CUDA graphs return
    ``max_new_tokens``. ``ran_out`` takes the lower bound for both (a text that ended on its
    very last frame looks cut; the retry with a larger budget tells them apart).
    """
    samples_per_frame = model.model.speech_tokenizer.get_decode_upsample_rate()
    return round(len(waveform) / samples_per_frame)
