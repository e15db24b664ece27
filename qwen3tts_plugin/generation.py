"""One call into qwen_tts for a settled voice, with seeded, isolated randomness.

Imported only from the functions that synthesise (it imports torch).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from hookspecs import GenerationParams, SynthesisRequest, TtsError

from .devices import DevicePlan
from .hints import DEVICE_HINT, FP32_HINT
from .loading import forget_locals
from .voices import VoicePlan

if TYPE_CHECKING:
    import numpy as np
    from qwen_tts import Qwen3TTSModel


def generate(
    model: Qwen3TTSModel, plan: DevicePlan, voice: VoicePlan, request: SynthesisRequest
) -> tuple[np.ndarray, int]:
    """Generate one waveform; any failure inside qwen_tts becomes ``synthesis_failed``."""
    kwargs = sampling_kwargs(request.generation)
    if voice.mode == "voice_clone":
        from .audio import read_reference

        reference = read_reference(voice.ref_audio)  # before the RNG fork: it is plain I/O
    try:
        with seeded(request.generation.seed, plan):
            if voice.mode == "custom_voice":
                wavs, rate = model.generate_custom_voice(
                    text=request.text,
                    speaker=voice.speaker,
                    language=voice.language,
                    instruct=voice.instruct,
                    **kwargs,
                )
            elif voice.mode == "voice_design":
                wavs, rate = model.generate_voice_design(
                    text=request.text, instruct=voice.instruct, language=voice.language, **kwargs
                )
            else:
                wavs, rate = model.generate_voice_clone(
                    text=request.text,
                    language=voice.language,
                    ref_audio=reference,
                    ref_text=voice.ref_text,
                    x_vector_only_mode=voice.x_vector_only,
                    **kwargs,
                )
    except Exception as exc:  # noqa: BLE001 - anything qwen_tts or torch raises is reported
        raise synthesis_error(exc) from forget_locals(exc)
    return wavs[0], int(rate)


def sampling_kwargs(params: GenerationParams) -> dict[str, Any]:
    """The request's sampling parameters, applied to the talker and its code predictor alike."""
    kwargs: dict[str, Any] = {
        "do_sample": params.do_sample,
        "temperature": params.temperature,
        "top_k": params.top_k,
        "top_p": params.top_p,
        "max_new_tokens": params.max_new_tokens,
        "subtalker_dosample": params.do_sample,
        "subtalker_temperature": params.temperature,
        "subtalker_top_k": params.top_k,
        "subtalker_top_p": params.top_p,
    }
    if params.repetition_penalty is not None:
        kwargs["repetition_penalty"] = params.repetition_penalty
    return kwargs


@contextlib.contextmanager
def seeded(seed: int | None, plan: DevicePlan) -> Iterator[None]:
    """Seed torch for one generation, restoring the process's RNG state afterwards."""
    if seed is None:
        yield
        return
    index = torch.device(plan.device).index or 0
    with torch.random.fork_rng(devices=[index] if plan.is_cuda else []):
        # Seed exactly what fork_rng restores: the CPU generator and the model's GPU.
        torch.random.default_generator.manual_seed(seed)
        if plan.is_cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def synthesis_error(exc: Exception) -> TtsError:
    """``synthesis_failed`` with the original error and the hint its message points to."""
    text = str(exc)
    lowered = text.lower()
    hint = None
    if re.search(r"\b(inf|nan)\b", lowered):
        hint = FP32_HINT
    elif "same device" in lowered or "out of memory" in lowered:
        hint = DEVICE_HINT
    return TtsError("synthesis_failed", f"{type(exc).__name__}: {text}", hint)
