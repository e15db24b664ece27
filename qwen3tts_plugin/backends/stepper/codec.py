"""The 12 Hz codec's decode, as qwen_tts runs it, with the attention masks kept between calls.

qwen_tts's ``Qwen3TTSTokenizerV2Model.decode`` builds the codec transformer's causal and
sliding-window masks afresh on every call (transformers' ``vmap`` mask builder): about 7 ms a
call on a 2-core CPU, an eighth of decoding one 64-frame row on the tiny checkpoint. A mask depends
only on the chunk's length (and batch, dtype, device): at most one per length up to a chunk
(325 frames with its context), so ``CodecDecoder`` builds each once, with the same transformers
functions, and hands them to the transformer, which takes prepared masks as they are. The rest
is qwen_tts's code path over the same modules, but for the convolution stack, which on the
CPU runs through ``codec_layers`` (same math with less work; samples equal to float32
rounding, a test compares).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager

import numpy as np
import torch
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from . import codec_layers

CHUNK_FRAMES = 300
"""Frames per codec call for long rows (qwen_tts's ``chunked_decode`` default)."""
LEFT_CONTEXT = 25
"""Frames of left context each later chunk is decoded with (qwen_tts's default)."""

DECODE_BUCKET = 8
"""Frames a streamed window's codes are padded to a multiple of before the codec decodes them
(with -1, which the codec reads as padding and cuts off again), so that the windows' few
lengths reach the codec as fewer shapes still (a shape not seen before costs its convolutions'
set-up). A finished row is decoded at its own length: on the real-size model a new length's
set-up costs 0–0.15 s once while padding cost 40 ms a frame every time (3.5 frames a row on
average), so the bucket that rows were padded to until issue 23 cost more than it saved
(13 frames: 0.49 s alone, 0.59 s padded to 16). The audio differs from an unpadded decode by
float rounding only (2e-7 at most, measured), as qwen_tts's own padded batch decode does.
Rows are decoded one at a time, as each ends: on the real-size model a row alone costs less
than its share of a batched decode (8 × 0.47 s vs 5.5 s for 8 rows of 13 frames)."""


def pad_to_bucket(codes: torch.Tensor) -> torch.Tensor:
    """``codes`` [F, 16] padded with -1 rows to a multiple of ``DECODE_BUCKET`` frames."""
    missing = -codes.shape[0] % DECODE_BUCKET
    if not missing:
        return codes
    pad = torch.full((missing, codes.shape[1]), -1, dtype=codes.dtype, device=codes.device)
    return torch.cat([codes, pad])


class CodecDecoder:
    """Decodes one row's codes [F, 16] (``-1`` rows: padding) to float32 samples."""

    def __init__(
        self,
        speech_tokenizer,
        own_layers: bool | None = None,
        lock: AbstractContextManager | None = None,
    ) -> None:
        """``speech_tokenizer`` is qwen_tts's ``Qwen3TTSTokenizer`` (12 Hz); ``own_layers``
        runs the convolution stack through ``codec_layers`` (None: on the CPU, where it was
        measured; False: qwen_tts's modules, bit for bit, as before issue 23). ``lock`` is
        held through each decode (the stepper's graph captures hold it on CUDA)."""
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self.model = speech_tokenizer.model
        self.device = speech_tokenizer.device
        self.decoder = self.model.decoder
        self.upsample = int(self.model.decode_upsample_rate)
        self.sample_rate = int(self.model.get_output_sample_rate())
        if own_layers is None:
            own_layers = torch.device(self.device).type == "cpu"
        self.own_layers = own_layers and codec_layers.supports(self.decoder.decoder)
        self._masks: dict[tuple, dict[str, torch.Tensor | None]] = {}

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """The row's samples: its non-padding frames' worth, as ``speech_tokenizer.decode``."""
        with self.lock:
            codes = codes.to(self.device)[None]  # [1, F, 16]
            length = int((codes[..., 0] > -1).sum()) * self.upsample
            codes = torch.clamp(codes, min=0).transpose(1, 2)
            wav = self._chunked(codes).squeeze(1)[0, :length]
            return wav.to(torch.float32).cpu().numpy()

    def _chunked(self, codes: torch.Tensor) -> torch.Tensor:
        """qwen_tts's ``chunked_decode``: chunks of ``CHUNK_FRAMES`` with left context."""
        upsample = int(self.decoder.total_upsample)
        wavs = []
        start = 0
        frames = codes.shape[-1]
        while start < frames:
            end = min(start + CHUNK_FRAMES, frames)
            context = LEFT_CONTEXT if start - LEFT_CONTEXT > 0 else start
            wav = self._forward(codes[..., start - context : end])
            wavs.append(wav[..., context * upsample :])
            start = end
        return torch.cat(wavs, dim=-1)

    def _forward(self, codes: torch.Tensor) -> torch.Tensor:
        """qwen_tts's ``Qwen3TTSTokenizerV2Decoder.forward``, the masks from ``_masks_for``."""
        decoder = self.decoder
        hidden = decoder.quantizer.decode(codes)
        hidden = decoder.pre_conv(hidden).transpose(1, 2)
        masks = self._masks_for(hidden)
        hidden = decoder.pre_transformer(inputs_embeds=hidden, attention_mask=masks)
        hidden = hidden.last_hidden_state
        hidden = hidden.permute(0, 2, 1)
        for blocks in decoder.upsample:
            for block in blocks:
                hidden = block(hidden)
        if self.own_layers:
            return codec_layers.run(decoder.decoder, hidden).clamp(min=-1, max=1)
        wav = hidden
        for block in decoder.decoder:
            wav = block(wav)
        return wav.clamp(min=-1, max=1)

    def _masks_for(self, hidden: torch.Tensor) -> dict:
        """The transformer's masks for ``hidden`` [batch, length, ...], built as its forward
        builds them (no padding, no cache), once per shape."""
        batch, length = hidden.shape[:2]
        transformer = self.decoder.pre_transformer
        key = (batch, length, hidden.dtype, hidden.device)
        masks = self._masks.get(key)
        if masks is None:
            config = transformer.config
            embeds = torch.empty(
                (batch, length, config.hidden_size), dtype=hidden.dtype, device=hidden.device
            )
            positions = torch.arange(length, device=hidden.device)
            arguments = {
                "config": config,
                "input_embeds": embeds,
                "attention_mask": None,
                "cache_position": positions,
                "past_key_values": None,
                "position_ids": positions[None],
            }
            masks = {"full_attention": create_causal_mask(**arguments)}
            if transformer.has_sliding_layers:
                masks["sliding_attention"] = create_sliding_window_causal_mask(**arguments)
            self._masks[key] = masks
        return masks


class RowAudio:
    """A streamed row's audio, a window of its frames at a time (any thread)."""

    def __init__(self, codec: CodecDecoder, ref_code: torch.Tensor | None) -> None:
        """``ref_code``: an in-context clone's reference codes, which come before the row's
        own frames in the codec's input (their audio is not the row's)."""
        self.codec = codec
        self.ref_code = ref_code
        self.sample_rate = codec.sample_rate
        self.samples_per_frame = codec.upsample

    def window(self, frames: Sequence[torch.Tensor], start: int, end: int) -> np.ndarray:
        """The samples of ``frames[start:end]``, decoded after up to ``LEFT_CONTEXT`` frames
        before them (the reference's last codes where the row has fewer), as qwen_tts
        decodes a long row's later chunks. The window's device work holds the codec's lock
        (re-entrant: the decode takes it again)."""
        with self.codec.lock:
            return self._window(frames, start, end)

    def _window(self, frames: Sequence[torch.Tensor], start: int, end: int) -> np.ndarray:
        context = list(frames[max(0, start - LEFT_CONTEXT) : start])
        own = torch.stack(list(frames[start:end]))
        parts = [own]
        if context:
            parts.insert(0, torch.stack(context))
        missing = LEFT_CONTEXT - len(context)
        borrowed = 0
        if missing and self.ref_code is not None:
            borrowed = min(missing, int(self.ref_code.shape[0]))
            if borrowed:
                parts.insert(0, self.ref_code[-borrowed:].to(own.device))
        wav = self.codec.decode(pad_to_bucket(torch.cat(parts)))
        return wav[(len(context) + borrowed) * self.samples_per_frame :]
