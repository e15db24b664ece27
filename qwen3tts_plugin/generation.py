"""One qwen_tts generate call for a list of texts and settled voices, seeded and isolated.

Imported only from the functions that synthesise (it imports torch).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from hookspecs import GenerationParams, TtsError

from .devices import DevicePlan
from .hints import DEVICE_HINT, FP32_HINT, MEMORY_HINT
from .loading import forget_locals
from .voices import VoicePlan

if TYPE_CHECKING:
    import numpy as np
    from qwen_tts import Qwen3TTSModel


def generate(
    model: Qwen3TTSModel,
    plan: DevicePlan,
    texts: Sequence[str],
    voices: Sequence[VoicePlan],
    params: GenerationParams,
) -> list[np.ndarray]:
    """One waveform per text from one qwen_tts call; any failure inside it is
    ``synthesis_failed`` for the whole call."""
    modes = {voice.mode for voice in voices}
    if len(texts) != len(voices) or len(modes) != 1:
        raise ValueError(f"one voice per text, all of one mode; got {len(texts)} texts, {modes}")
    kwargs = sampling_kwargs(params)
    texts, voices = list(texts), list(voices)
    try:
        with seeded(params.seed, plan):
            if voices[0].mode == "custom_voice":
                wavs, _rate = model.generate_custom_voice(
                    text=texts,
                    speaker=[voice.speaker for voice in voices],
                    language=[voice.language for voice in voices],
                    instruct=[voice.instruct for voice in voices],
                    **kwargs,
                )
            elif voices[0].mode == "voice_design":
                wavs, _rate = model.generate_voice_design(
                    text=texts,
                    instruct=[voice.instruct for voice in voices],
                    language=[voice.language for voice in voices],
                    **kwargs,
                )
            else:
                wavs, _rate = model.generate_voice_clone(
                    text=texts,
                    language=[voice.language for voice in voices],
                    voice_clone_prompt=clone_prompts(model, voices),
                    **kwargs,
                )
    except Exception as exc:  # noqa: BLE001 - anything qwen_tts or torch raises is reported
        raise synthesis_error(exc) from forget_locals(exc)
    if len(wavs) != len(texts):
        raise TtsError(
            "synthesis_failed", f"qwen_tts returned {len(wavs)} waveforms for {len(texts)} texts"
        )
    return list(wavs)


def clone_prompts(model: Qwen3TTSModel, voices: list[VoicePlan]) -> list[Any]:
    """One voice-clone prompt per voice, each distinct decoded reference encoded once."""
    if any(voice.reference is None for voice in voices):
        raise ValueError("voice_clone voices carry their decoded reference (VoicePlan.reference)")
    # VoicePlan equality ignores the decoded audio: two reads of one path may differ.
    keys = [(voice, id(voice.reference)) for voice in voices]
    distinct = dict.fromkeys(keys)
    items = model.create_voice_clone_prompt(
        ref_audio=[voice.reference for voice, _ in distinct],
        ref_text=[voice.ref_text for voice, _ in distinct],
        x_vector_only_mode=[voice.x_vector_only for voice, _ in distinct],
    )
    by_key = dict(zip(distinct, items, strict=True))
    return [by_key[key] for key in keys]


def sampling_kwargs(params: GenerationParams) -> dict[str, Any]:
    """The request's sampling parameters, applied to the talker and its code predictor alike.

    Greedy decoding ignores temperature, top-k and top-p; they are passed at transformers'
    neutral values then, which it would otherwise warn about ("generation flags are not valid").
    """
    sampling = params.do_sample
    temperature = params.temperature if sampling else 1.0
    top_k = params.top_k if sampling else GREEDY_TOP_K
    top_p = params.top_p if sampling else 1.0
    kwargs: dict[str, Any] = {
        "do_sample": sampling,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "max_new_tokens": params.max_new_tokens,
        "subtalker_dosample": sampling,
        "subtalker_temperature": temperature,
        "subtalker_top_k": top_k,
        "subtalker_top_p": top_p,
    }
    if params.repetition_penalty is not None:
        kwargs["repetition_penalty"] = params.repetition_penalty
    return kwargs


GREEDY_TOP_K = 50
"""transformers' default top_k: the value it expects when sampling is off."""


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
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in lowered:
        hint = MEMORY_HINT
    elif re.search(r"\b(inf|nan)\b", lowered):
        hint = FP32_HINT
    elif "same device" in lowered:
        hint = DEVICE_HINT
    return TtsError("synthesis_failed", f"{type(exc).__name__}: {text}", hint)
