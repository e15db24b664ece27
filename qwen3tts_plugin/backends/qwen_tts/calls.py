"""qwen_tts's generate methods called for a batch: the one voice-mode dispatch, the sampling
values, the seed, the voice-clone prompts.

Every backend that speaks through qwen_tts's API (qwen_tts itself, and faster-qwen3-tts, whose
methods take the same keywords for one text) calls ``speak``. Imported only from the functions
that synthesise (it imports torch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from hookspecs import GenerationParams, TtsError

from ..failures import forget_locals, synthesis_error

if TYPE_CHECKING:
    import numpy as np
    from qwen_tts import Qwen3TTSModel

    from ...devices import DevicePlan
    from ...voices import VoicePlan
    from .. import Batch

GREEDY_TOP_K = 50
"""transformers' default top_k: the value it expects when sampling is off."""


def generate(model: Qwen3TTSModel, plan: DevicePlan, batch: Batch) -> list[np.ndarray]:
    """One waveform per text of ``batch`` from one qwen_tts call; any failure inside it is
    ``synthesis_failed`` for the whole call."""
    wavs = speak(
        model,
        model,
        plan,
        batch.texts,
        batch.voices,
        sampling_kwargs(batch.params),
        batch.params.seed,
    )
    if len(wavs) != len(batch.texts):
        raise TtsError(
            "synthesis_failed",
            f"qwen_tts returned {len(wavs)} waveforms for {len(batch.texts)} texts",
        )
    return list(wavs)


def speak(
    target: Any,
    model: Qwen3TTSModel,
    plan: DevicePlan,
    texts: Sequence[str],
    voices: Sequence[VoicePlan],
    sampling: dict[str, Any],
    seed: int | None,
    one_text: bool = False,
) -> list[np.ndarray]:
    """The generate method of ``target`` for the voices' mode, called once, seeded.

    ``target`` is a ``Qwen3TTSModel`` (one value per text) or an object with the same three
    methods for one text (``one_text``: each keyword gets the single value); ``model`` is the
    qwen_tts model that builds voice-clone prompts. Every voice has one mode.
    """
    modes = {voice.mode for voice in voices}
    if len(texts) != len(voices) or len(modes) != 1 or (one_text and len(texts) != 1):
        raise ValueError(f"one voice per text, all of one mode; got {len(texts)} texts, {modes}")

    def each(values: list[Any]) -> Any:
        return values[0] if one_text else values

    texts, voices = list(texts), list(voices)
    languages = each([voice.language for voice in voices])
    try:
        with seeded(seed, plan):
            if voices[0].mode == "custom_voice":
                wavs, _rate = target.generate_custom_voice(
                    text=each(texts),
                    speaker=each([voice.speaker for voice in voices]),
                    language=languages,
                    instruct=each([voice.instruct for voice in voices]),
                    **sampling,
                )
            elif voices[0].mode == "voice_design":
                wavs, _rate = target.generate_voice_design(
                    text=each(texts),
                    instruct=each([voice.instruct for voice in voices]),
                    language=languages,
                    **sampling,
                )
            else:
                wavs, _rate = target.generate_voice_clone(
                    text=each(texts),
                    language=languages,
                    voice_clone_prompt=clone_prompts(model, voices),
                    **sampling,
                )
    except Exception as exc:  # noqa: BLE001 - anything qwen_tts or torch raises is reported
        raise synthesis_error(exc) from forget_locals(exc)
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


def sampling_kwargs(params: GenerationParams, code_predictor: bool = True) -> dict[str, Any]:
    """The request's sampling parameters as generate keywords, for the talker and (with
    ``code_predictor``) its code predictor alike.

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
    }
    if code_predictor:
        kwargs.update(
            subtalker_dosample=sampling,
            subtalker_temperature=temperature,
            subtalker_top_k=top_k,
            subtalker_top_p=top_p,
        )
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
