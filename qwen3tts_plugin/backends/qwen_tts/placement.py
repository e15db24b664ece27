"""A qwen_tts model placed on its device at load time, and proof that every component landed
there in its dtype (the talker the plan's, the codec float32).

Imported only when a model is about to load: importing it imports torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hookspecs import TtsError

from ...log import get_logger
from ..device import check_device, free_device_memory
from ..failures import device_unusable_error, forget_locals
from ..quantization import float_linears, quantize_talker, quantized_layers
from .runtime import import_qwen_tts

if TYPE_CHECKING:
    from qwen_tts import Qwen3TTSModel

    from ...devices import DevicePlan

log = get_logger(__name__)

CODEC_DTYPE = "float32"
"""The speech tokenizer (codec) always runs in float32: in half precision its SnakeBeta
activations overflow into NaN, i.e. silent audio (the codec config's own
``encoder_config.dtype`` is float32)."""


def load_model(path: Path, plan: DevicePlan) -> Qwen3TTSModel:
    """Load ``path`` straight onto ``plan.device`` (``device_map=``; never ``.to()`` later)."""
    model_cls = import_qwen_tts()
    check_device(plan.device)
    started = time.perf_counter()
    model = None
    try:
        model = model_cls.from_pretrained(
            str(path),
            device_map=plan.device,
            dtype=getattr(torch, plan.dtype),
            attn_implementation=plan.attn_implementation,
        )
        keep_codec_in_float32(model, path, plan)
    except Exception as exc:  # noqa: BLE001 - from_pretrained raises anything; classified
        error = _classify_load_error(path, plan, exc)
        error.__cause__ = forget_locals(exc)
    else:
        try:
            quantize(model, plan)
            verify_placement(model, plan)
            verify_quantization(model, plan)
        except TtsError as exc:
            error = forget_locals(exc)
        else:
            set_pad_token(model)
            log.debug("tts.load.placed", device=plan.device, seconds=time.perf_counter() - started)
            return model
    model = None  # a half-built or rejected model must not hold (V)RAM
    free_device_memory()
    raise error


def set_pad_token(model: Qwen3TTSModel) -> None:
    """Tell the talker what to pad finished texts of a batch with: its end-of-speech code.

    That is what transformers picks when none is set, with a warning on stderr on every
    generate call; set on this loaded model, the behaviour stays and the warning goes. A
    qwen_tts whose model is laid out otherwise keeps transformers' default (and its warning).
    """
    try:
        talker = model.model.talker
        talker.generation_config.pad_token_id = model.model.config.talker_config.codec_eos_token_id
    except AttributeError as exc:
        log.debug("tts.load.pad_token_unset", reason=str(exc))


def keep_codec_in_float32(model: Qwen3TTSModel, path: Path, plan: DevicePlan) -> None:
    """Give a half-precision model its codec in float32, loaded on ``plan.device`` directly.

    qwen_tts loads the codec with the talker's dtype; rounding its float32 weights to half and
    back would lose them, so the codec is loaded again from its folder, in float32, with
    ``device_map`` (never moved), and the half copy is dropped. A float32 plan keeps the codec
    qwen_tts loaded.
    """
    if plan.dtype == CODEC_DTYPE:
        return
    from qwen_tts import Qwen3TTSTokenizer

    codec = Qwen3TTSTokenizer.from_pretrained(
        str(path / "speech_tokenizer"), device_map=plan.device, dtype=getattr(torch, CODEC_DTYPE)
    )
    model.model.load_speech_tokenizer(codec)
    free_device_memory()  # the half-precision codec qwen_tts loaded first


QUANTIZATION_HINT = "Set Quantization=auto (no quantization) to load the model as it is."


def quantize(model: Qwen3TTSModel, plan: DevicePlan) -> None:
    """Give the talker's and code predictor's layers int8 weights when the plan says so
    (``quantization``); ``model_load_failed`` when they cannot be made."""
    if plan.quantization == "none":
        return
    started = time.perf_counter()
    try:
        layers = quantize_talker(model.model.talker)
    except (RuntimeError, AttributeError, MemoryError) as exc:
        raise TtsError(
            "model_load_failed",
            f"int8 weights for the talker could not be made: {type(exc).__name__}: {exc}",
            QUANTIZATION_HINT,
        ) from exc
    free_device_memory()  # the replaced float layers, their heap pages back to the system
    log.info(
        "tts.load.quantized",
        quantization=plan.quantization,
        layers=layers,
        seconds=round(time.perf_counter() - started, 3),
    )


def codec_dtype(model: Qwen3TTSModel) -> str:
    """The dtype the loaded codec runs in, as torch names it."""
    return str(model.model.speech_tokenizer.model.dtype).removeprefix("torch.")


def _classify_load_error(path: Path, plan: DevicePlan, exc: Exception) -> TtsError:
    text = str(exc).lower()
    if plan.device != "cpu" and (
        isinstance(exc, (torch.OutOfMemoryError, getattr(torch, "AcceleratorError", ())))
        or any(word in text for word in ("cuda", "nvidia", "out of memory", "mps", "device"))
    ):
        return device_unusable_error(plan.device, exc)
    if "flash" in text and plan.attn_implementation == "flash_attention_2":
        return TtsError(
            "invalid_settings",
            f"flash_attention_2 could not be used: {exc}",
            "Set Attention=auto (sdpa).",
        )
    return TtsError(
        "model_load_failed",
        f"{path}: {type(exc).__name__}: {exc}",
        "The folder passed validation but did not load: re-download it (weights may be "
        "truncated) and check that it is a Qwen3-TTS 12Hz model.",
    )


def components(model: Qwen3TTSModel) -> dict[str, Any]:
    """The nn.Modules a wrapper holds: the model, and the speech tokenizer's own model."""
    found = {"model": model.model}
    speech_tokenizer = getattr(model.model, "speech_tokenizer", None)
    if speech_tokenizer is not None and getattr(speech_tokenizer, "model", None) is not None:
        found["speech_tokenizer.model"] = speech_tokenizer.model
    return found


def component_dtypes(plan: DevicePlan) -> dict[str, str]:
    """The dtype each component's parameters must have: the talker the plan's, the codec
    float32."""
    return {"model": plan.dtype, "speech_tokenizer.model": CODEC_DTYPE}


def verify_placement(model: Qwen3TTSModel, plan: DevicePlan) -> None:
    """Raise ``model_to_device_failed`` naming any tensor off ``plan.device`` or off its dtype
    (the plan's for the talker, float32 for the codec).

    Buffers may keep another floating dtype (rotary ``inv_freq``, codebook statistics stay
    float32 in half-precision loads); parameters may not.
    """
    target = torch.device(plan.device)
    dtypes = component_dtypes(plan)
    strays: list[str] = []
    for owner, module in components(model).items():
        dtype = getattr(torch, dtypes[owner])
        for name, param in module.named_parameters():
            if not _same_device(param.device, target):
                strays.append(f"{owner}.{name} on {param.device}")
            elif param.is_floating_point() and param.dtype != dtype:
                strays.append(f"{owner}.{name} is {str(param.dtype).removeprefix('torch.')}")
        for name, buffer in module.named_buffers():
            if not _same_device(buffer.device, target):
                strays.append(f"{owner}.{name} (buffer) on {buffer.device}")
    wrappers = {"model.device": model.device}
    speech_tokenizer = getattr(model.model, "speech_tokenizer", None)
    if speech_tokenizer is None:
        strays.append("speech_tokenizer missing")
    else:
        wrappers["speech_tokenizer.device"] = speech_tokenizer.device
    for name, device in wrappers.items():
        if device is None or not _same_device(torch.device(device), target):
            strays.append(f"{name} is {device}")
    if strays:
        shown = ", ".join(strays[:5]) + (f" (+{len(strays) - 5} more)" if len(strays) > 5 else "")
        raise TtsError(
            "model_to_device_failed",
            f"not every component is on {plan.device} in its dtype ({plan.dtype}, codec "
            f"{CODEC_DTYPE}): {shown}",
            "A component was left behind (the cause of 'Expected all tensors to be on the same "
            "device'). Load with device_map only; do not move the model with .to() afterwards.",
        )


def verify_quantization(model: Qwen3TTSModel, plan: DevicePlan) -> None:
    """Raise ``model_load_failed`` unless the talker's layers are as the plan says: with
    ``int8``, every linear layer of its quantized parts int8 (none left in float); without,
    none int8."""
    talker = model.model.talker
    quantized, left = quantized_layers(talker), len(float_linears(talker))
    if plan.quantization == "int8" and (left or not quantized):
        problem = f"{left} of the layers to quantize are still float ({quantized} int8)"
    elif plan.quantization == "none" and quantized:
        problem = f"{quantized} layers are int8"
    else:
        return
    raise TtsError(
        "model_load_failed",
        f"the loaded talker is not as Quantization={plan.quantization} asks: {problem}",
        "This looks like a bug or a qwen_tts whose model is laid out otherwise. "
        + QUANTIZATION_HINT,
    )


def _same_device(actual: torch.device, target: torch.device) -> bool:
    if actual.type != target.type:
        return False
    return target.index is None or actual.index in (None, target.index)
