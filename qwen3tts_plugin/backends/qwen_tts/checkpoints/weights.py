"""Random weights for a checkpoint's two models, built with qwen_tts's own classes from the
folder's configs and written as safetensors.

Two ways to make random weights useful:

- ``audible`` (the tiny checkpoints): torch's default init, codebooks N(0, 1), attention to the
  prompt strengthened and the vocoder given a gain, so that a tiny model's noise is audible,
  differs with its input, and ends after a second or three;
- ``published`` (real-size checkpoints): transformers' own init for the talker (half-precision
  safe, as a real model's speed and memory need), torch's default init for the codec.

Either can be made ``never ending``: the talker's end-of-speech row of ``codec_head`` is zeroed
(its logit is exactly 0) and the codebook rows scaled by a gain, so that end-of-speech is never
drawn and every generation uses its whole budget.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

VOCODER_GAIN = 64.0
ATTENTION_GAIN = 3.0
CODE_PREDICTOR_SHARPNESS = 4.0
"""The ``audible`` shaping's gains (part of every tiny checkpoint's cache key)."""

SHAPINGS = ("audible", "published")


def write_weights(
    folder: pathlib.Path,
    model_config: dict[str, Any],
    codec_config: dict[str, Any],
    seed: int,
    shaping: str,
    dtype: str,
    never_ending_gain: float | None,
) -> None:
    """Both ``model.safetensors`` files from ``seed``, one model in memory at a time, without
    touching the caller's RNG. Floating tensors are saved in ``dtype``."""
    import torch

    if shaping not in SHAPINGS:
        raise ValueError(f"unknown shaping {shaping!r}; expected one of {SHAPINGS}")
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        torch.manual_seed(seed)
        state = talker_state(model_config, shaping)
        if never_ending_gain is not None:
            never_end(state, model_config["talker_config"], never_ending_gain)
        save_weights(state, folder / "model.safetensors", dtype)
        del state
        torch.manual_seed(seed + 1)
        state = codec_state(codec_config, shaping)
        save_weights(state, folder / "speech_tokenizer" / "model.safetensors", dtype)


def talker_state(config: dict[str, Any], shaping: str) -> dict[str, Any]:
    """The talker (and speaker encoder) built with the current torch RNG; its weights."""
    from ..runtime import import_qwen_tts

    import_qwen_tts()  # quietly: the flash-attn banner goes to the debug log
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**copy.deepcopy(config)))
    if shaping == "audible":
        reset_weights(model)
        make_talker_listen(model.talker)
    return model.state_dict()


def codec_state(config: dict[str, Any], shaping: str) -> dict[str, Any]:
    """The 12 Hz speech tokenizer built with the current torch RNG; its weights."""
    from ..runtime import import_qwen_tts

    import_qwen_tts()
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model

    model = Qwen3TTSTokenizerV2Model(Qwen3TTSTokenizerV2Config(**copy.deepcopy(config)))
    reset_weights(model)
    if shaping == "audible":
        make_vocoder_audible(model.decoder)
    return model.state_dict()


def reset_weights(model: Any) -> None:
    """Give conv/linear/embedding layers torch's default init and the codebooks random entries.

    transformers' N(0, 0.02) init leaves the vocoder nearly silent (~1e-8).
    """
    import torch
    from torch import nn

    resettable = (nn.Linear, nn.Conv1d, nn.ConvTranspose1d, nn.Embedding, nn.LayerNorm)
    for module in model.modules():
        if isinstance(module, resettable):
            module.reset_parameters()
        for name in ("embedding_sum", "embed_sum"):  # qwen_tts and Mimi codebooks
            codebook = getattr(module, name, None)
            if isinstance(codebook, torch.Tensor):
                with torch.no_grad():
                    codebook.normal_()


def make_talker_listen(talker: Any) -> None:
    """Make the prompt (text, speaker, instruct, reference) change the sampled codes.

    With default init the residual stream is dominated by the current frame's code embeddings, so
    the attention to the prompt barely moves the hidden state, and flat logits turn the same seed
    into the same codes whatever the input. Stronger attention values and sharper code-predictor
    heads fix that; the talker's own head (first codebook and EOS) stays as it is, which keeps
    typical outputs at about 1-3 seconds.
    """
    import torch

    with torch.no_grad():
        for layer in talker.model.layers:
            layer.self_attn.v_proj.weight *= ATTENTION_GAIN
            layer.self_attn.o_proj.weight *= ATTENTION_GAIN
        for head in talker.code_predictor.lm_head:
            head.weight *= CODE_PREDICTOR_SHARPNESS


def make_vocoder_audible(decoder: Any) -> None:
    """Let the codes, not the biases, shape the waveform, at a speech-like level with no DC.

    With random biases the vocoder plays the same periodic pattern whatever the codes; without
    them it is quiet (RMS ~1e-3), so the output conv gets a fixed gain. Its taps are made to sum to
    zero per channel: every SnakeBeta adds sin^2 >= 0, which would otherwise leave a DC offset.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        for module in decoder.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)) and (
                module.bias is not None
            ):
                module.bias.zero_()
        output = decoder.decoder[-1].conv
        output.weight -= output.weight.mean(dim=-1, keepdim=True)
        output.weight *= VOCODER_GAIN


def never_end(state: dict[str, Any], talker_config: dict[str, Any], gain: float) -> None:
    """Zero the talker's end-of-speech row of ``codec_head`` and scale the codebook rows (the
    only other codes generation leaves unsuppressed) by ``gain``.

    The end-of-speech logit is then exactly 0: at the real size (2,048 codes) that is the
    median, outside any top-k of 50, and greedy never picks it; a tiny codebook needs the
    gain as well, so that sampling never draws it either.
    """
    import torch

    eos, codebook = talker_config["codec_eos_token_id"], talker_config["vocab_size"] - 1024
    with torch.no_grad():
        head = state["talker.codec_head.weight"]
        head[:codebook] *= gain
        head[eos] = 0.0


def save_weights(state: dict[str, Any], path: pathlib.Path, dtype: str) -> None:
    """Write floating tensors in ``dtype`` (others as they are) as safetensors with fixed
    metadata: byte-identical for the same seed."""
    import torch
    from safetensors.torch import save_file

    target = getattr(torch, dtype)
    tensors = {
        key: (value.detach().to("cpu", target) if value.is_floating_point() else value)
        .contiguous()
        .clone()
        for key, value in state.items()
    }
    save_file(tensors, str(path), metadata={"format": "pt"})
