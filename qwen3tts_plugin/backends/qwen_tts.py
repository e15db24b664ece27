"""The reference backend: qwen_tts's own ``Qwen3TTSModel`` and its generate loop.

Imported only when a model is loaded (it imports torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hookspecs.models import MAX_NEW_TOKENS

from ..generation import generate
from ..loading import check_device, free_device_memory, import_qwen_tts, load_model

if TYPE_CHECKING:
    import numpy as np
    from qwen_tts import Qwen3TTSModel

    from hookspecs import GenerationParams

    from ..devices import DevicePlan
    from ..voices import VoicePlan


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
        return str(self.model.model.speech_tokenizer.model.dtype).removeprefix("torch.")

    @property
    def sample_rate(self) -> int:
        return self.model.model.speech_tokenizer.get_output_sample_rate()

    def generate(
        self,
        texts: Sequence[str],
        voices: Sequence[VoicePlan],
        params: GenerationParams,
        strict: bool = False,
    ) -> list[np.ndarray]:
        return generate(self.model, self.plan, texts, voices, params)

    def max_frames(self, strict: bool = False) -> int:
        return MAX_NEW_TOKENS

    def ran_out(self, waveform: np.ndarray, max_new_tokens: int) -> bool:
        # qwen_tts keeps the codes of every step but the last: a text that never produced its
        # end-of-speech code comes back with max_new_tokens - 1 frames (one frame is
        # get_decode_upsample_rate() samples; a voice-clone trim can be off by a sample).
        samples_per_frame = self.model.model.speech_tokenizer.get_decode_upsample_rate()
        return round(len(waveform) / samples_per_frame) >= max_new_tokens - 1

    def release(self) -> None:
        self._model = None
        free_device_memory()
