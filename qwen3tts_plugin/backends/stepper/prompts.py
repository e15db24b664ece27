"""Each text's talker prompt, built as qwen_tts 0.1.1 builds it, one row at a time.

``Qwen3TTSForConditionalGeneration.generate`` builds every row's prompt embeddings (chat
markers, codec think/language/speaker codes, the first text token or the whole text, an
in-context clone's reference codes), then left-pads the rows together. This module does the
per-row part only, with the same operations in the same order, so that a row's prefill is the
one qwen_tts runs for that text alone (greedy output: the same codes). The keyword defaults
are those of qwen_tts's own ``generate_*`` methods (custom voice and voice design speak the
whole text in the prompt, ``non_streaming_mode=True``; voice clone streams it, ``False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from qwen_tts import Qwen3TTSModel

    from ...voices import VoicePlan

NON_STREAMING_BY_MODE = {"custom_voice": True, "voice_design": True, "voice_clone": False}
"""qwen_tts's default ``non_streaming_mode`` for each generate method."""


@dataclass
class RowPrompt:
    """One text's talker input: the prompt to prefill, then what each decode step adds."""

    embeds: torch.Tensor
    """[1, P, D]: the prompt's embeddings."""
    trailing: torch.Tensor
    """[T, D]: added to decode step ``i < T`` (the rest of the text, streamed)."""
    pad: torch.Tensor
    """[D]: added to every decode step from ``T`` on."""
    ref_code: torch.Tensor | None = None
    """An in-context clone's reference codes [F, 16]: decoded before the row's own codes, and
    their share of the audio cut off again (as qwen_tts does)."""


def build_prompts(tts: Qwen3TTSModel, texts: list[str], voices: list[VoicePlan]) -> list[RowPrompt]:
    """One ``RowPrompt`` per text (every voice of one mode, as in a qwen_tts call)."""
    mode = voices[0].mode
    clone_items: list[Any] = [None] * len(texts)
    if mode == "voice_clone":
        from ..qwen_tts.calls import clone_prompts

        clone_items = clone_prompts(tts, voices)
    return [
        build_prompt(tts, text, voice, item)
        for text, voice, item in zip(texts, voices, clone_items, strict=True)
    ]


def build_prompt(
    tts: Qwen3TTSModel, text: str, voice: VoicePlan, clone_item: Any = None
) -> RowPrompt:
    """``text``'s prompt in ``voice`` (``clone_item``: its qwen_tts voice-clone prompt)."""
    model = tts.model
    talker = model.talker
    config = model.config
    tcfg = config.talker_config
    device = talker.device
    non_streaming = NON_STREAMING_BY_MODE[voice.mode]

    def text_embed(ids: torch.Tensor) -> torch.Tensor:
        return talker.text_projection(talker.get_text_embeddings()(ids))

    def codec_embed(codes: list[int]) -> torch.Tensor:
        return talker.get_input_embeddings()(torch.tensor([codes], device=device, dtype=torch.long))

    input_id = tokenize(tts, f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n")
    parts: list[torch.Tensor] = []
    instruct = _instruct(tts, voice)
    if instruct:
        parts.append(text_embed(tokenize(tts, f"<|im_start|>user\n{instruct}<|im_end|>\n")))

    speaker = voice.speaker if voice.mode == "custom_voice" else None
    speaker_embed = None
    if clone_item is not None:
        if clone_item.x_vector_only_mode or clone_item.icl_mode:
            speaker_embed = clone_item.ref_spk_embedding.to(device).to(talker.dtype)
    elif speaker:
        speaker_embed = talker.get_input_embeddings()(
            torch.tensor(tcfg.spk_id[speaker.lower()], device=device, dtype=input_id.dtype)
        )

    language = (voice.language or "Auto").lower()
    language_id = None if language == "auto" else tcfg.codec_language_id[language]
    if language in ("chinese", "auto") and speaker and tcfg.spk_is_dialect[speaker.lower()]:
        language_id = tcfg.codec_language_id[tcfg.spk_is_dialect[speaker.lower()]]

    special = torch.tensor(
        [[config.tts_bos_token_id, config.tts_eos_token_id, config.tts_pad_token_id]],
        device=device,
        dtype=input_id.dtype,
    )
    tts_bos, tts_eos, tts_pad = text_embed(special).chunk(3, dim=1)

    if language_id is None:
        think = [tcfg.codec_nothink_id, tcfg.codec_think_bos_id, tcfg.codec_think_eos_id]
    else:
        think = [tcfg.codec_think_id, tcfg.codec_think_bos_id, language_id, tcfg.codec_think_eos_id]
    codec = [codec_embed(think)]
    if speaker_embed is not None:
        codec.append(speaker_embed.view(1, 1, -1))
    codec.append(codec_embed([tcfg.codec_pad_id, tcfg.codec_bos_id]))
    codec_input = torch.cat(codec, dim=1)

    role = text_embed(input_id[:, :3])
    pads = tts_pad.expand(-1, codec_input.shape[1] - 2, -1)
    prompt = torch.cat((role, torch.cat((pads, tts_bos), dim=1) + codec_input[:, :-1]), dim=1)

    ref_code = None
    if clone_item is not None and clone_item.ref_code is not None and clone_item.icl_mode:
        ref_code = clone_item.ref_code.to(device)
        ref_id = tokenize(tts, f"<|im_start|>assistant\n{clone_item.ref_text}<|im_end|>\n")
        icl, trailing = model.generate_icl_prompt(
            text_id=input_id[:, 3:-5],
            ref_id=ref_id[:, 3:-2],
            ref_code=ref_code,
            tts_pad_embed=tts_pad,
            tts_eos_embed=tts_eos,
            non_streaming_mode=non_streaming,
        )
        prompt = torch.cat([prompt, icl], dim=1)
    elif non_streaming:
        body = torch.cat((text_embed(input_id[:, 3:-5]), tts_eos), dim=1)
        body = body + codec_embed([tcfg.codec_pad_id] * (input_id[:, 3:-5].shape[1] + 1))
        prompt = torch.cat([prompt, body, tts_pad + codec_embed([tcfg.codec_bos_id])], dim=1)
        trailing = tts_pad
    else:
        first = text_embed(input_id[:, 3:4]) + codec_input[:, -1:]
        prompt = torch.cat([prompt, first], dim=1)
        trailing = torch.cat((text_embed(input_id[:, 4:-5]), tts_eos), dim=1)

    if parts:
        prompt = torch.cat([*parts, prompt], dim=1)
    return RowPrompt(
        embeds=prompt, trailing=trailing.squeeze(0), pad=tts_pad.reshape(-1), ref_code=ref_code
    )


def tokenize(tts: Qwen3TTSModel, text: str) -> torch.Tensor:
    """``text``'s token ids [1, N] on the model's device, as qwen_tts tokenizes."""
    ids = tts.processor(text=text, return_tensors="pt", padding=True)["input_ids"].to(tts.device)
    return ids.unsqueeze(0) if ids.dim() == 1 else ids


def _instruct(tts: Qwen3TTSModel, voice: VoicePlan) -> str | None:
    """The instruction qwen_tts would pass: none for a clone, and none for a 0.6B custom voice
    (qwen_tts drops it there)."""
    if voice.mode == "voice_clone":
        return None
    if voice.mode == "custom_voice" and tts.model.tts_model_size in "0b6":
        return None
    return voice.instruct or None
