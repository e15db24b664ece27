"""The 12 Hz codec's decode, as qwen_tts runs it, with the attention masks kept between calls.

qwen_tts's ``Qwen3TTSTokenizerV2Model.decode`` builds the codec transformer's causal and
sliding-window masks afresh on every call (transformers' ``vmap`` mask builder): about 7 ms a
call on a 2-core CPU, an eighth of decoding one 64-frame row on the tiny checkpoint. A mask depends
only on the chunk's length (and batch, dtype, device), and the decode loop sends few lengths
(rows are padded to a bucket), so ``CodecDecoder`` builds each once, with the same transformers
functions, and hands them to the transformer, which takes prepared masks as they are. The rest
is qwen_tts's code path over the same modules: same samples, bit for bit (a test compares).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

CHUNK_FRAMES = 300
"""Frames per codec call for long rows (qwen_tts's ``chunked_decode`` default)."""
LEFT_CONTEXT = 25
"""Frames of left context each later chunk is decoded with (qwen_tts's default)."""


class CodecDecoder:
    """Decodes one row's codes [F, 16] (``-1`` rows: padding) to float32 samples."""

    def __init__(self, speech_tokenizer) -> None:
        """``speech_tokenizer`` is qwen_tts's ``Qwen3TTSTokenizer`` (12 Hz)."""
        self.model = speech_tokenizer.model
        self.device = speech_tokenizer.device
        self.decoder = self.model.decoder
        self.upsample = int(self.model.decode_upsample_rate)
        self._masks: dict[tuple, dict[str, torch.Tensor | None]] = {}

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """The row's samples: its non-padding frames' worth, as ``speech_tokenizer.decode``."""
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
