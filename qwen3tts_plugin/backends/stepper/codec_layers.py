"""The codec decoder's convolution stack, computed with less work on the CPU.

The same math as qwen_tts's modules (``Qwen3TTSTokenizerV2Decoder.decoder``: a causal
convolution, four blocks of SnakeBeta, a transposed convolution and three residual units, then
SnakeBeta and a last convolution), over the same parameters, read from those modules; only the
order of float32 roundings differs (measured: 3e-7 at most on the real-size codec). What it
saves, measured on a 2-core AVX512 CPU (real-size codec, one 16-frame row, 670 → 584 ms):

- **Transposed convolutions as one matrix product and an overlap-add.** Every one here has a
  kernel of one or two strides, so each input step's product lands in at most two output
  blocks; torch's CPU ``conv_transpose1d`` ran the 1536 → 768 channel one at a third of the
  speed of a matrix product (44 → 24 ms).
- **SnakeBeta in place**: ``x + sin(αx)² / β`` in one new tensor instead of five.
- **Causal padding inside the convolution**: zero padding on both sides, the surplus outputs on
  the right dropped, instead of a padded copy of the input before every convolution.

Tried and dropped: a channels-last layout (time-major memory) for the high-rate blocks, 1.6×
faster for one 96-channel convolution alone but slower over the whole stack (the layout
changes between blocks cost more); oneDNN weight prepacking (no gain: 31 vs 29 ms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supports(decoder_stack) -> bool:
    """Whether ``decoder_stack`` (the decoder's ``decoder`` ModuleList) is laid out as these
    functions read it; a qwen_tts laid out otherwise keeps its own modules' forward."""
    try:
        first, *blocks, snake, last = decoder_stack
        convs = [first, last]
        snakes = [snake]
        transposed = []
        for block in blocks:
            act, up, *units = block.block
            snakes.append(act)
            transposed.append(up)
            for unit in units:
                snakes += [unit.act1, unit.act2]
                convs += [unit.conv1, unit.conv2]
        return bool(blocks) and all(
            [
                *(_plain_causal_conv(module) for module in convs),
                *(_plain_transposed_conv(module) for module in transposed),
                *(isinstance(module.alpha, torch.Tensor) for module in snakes),
                *(isinstance(module.beta, torch.Tensor) for module in snakes),
                *(isinstance(module.no_div_by_zero, float) for module in snakes),
            ]
        )
    except (AttributeError, TypeError, ValueError):
        return False


def _plain_causal_conv(module) -> bool:
    """A qwen_tts ``CausalConvNet`` of stride 1 whose padding is all its own (left, zeros)."""
    conv = module.conv
    return (
        isinstance(conv, torch.nn.Conv1d)
        and conv.stride == (1,)
        and conv.padding == (0,)
        and conv.padding_mode == "zeros"
        and conv.bias is not None
        and isinstance(module.padding, int)
    )


def _plain_transposed_conv(module) -> bool:
    """A qwen_tts ``CausalTransConvNet`` whose kernel is one or two strides, nothing else set."""
    conv = module.conv
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    return (
        isinstance(conv, torch.nn.ConvTranspose1d)
        and kernel in (stride, 2 * stride)
        and conv.padding == conv.output_padding == (0,)
        and conv.dilation == (1,)
        and conv.groups == 1
        and conv.bias is not None
        and isinstance(module.right_pad, int)
    )


def run(decoder_stack, hidden: torch.Tensor) -> torch.Tensor:
    """``hidden`` [B, latent, T] through ``decoder_stack``: the waveform [B, 1, samples],
    before qwen_tts's clamp."""
    first, *blocks, snake, last = decoder_stack
    hidden = causal_conv(first, hidden)
    for block in blocks:
        act, up, *units = block.block
        hidden = transposed_conv(up, snake_beta(act, hidden))
        for unit in units:
            hidden = residual_unit(unit, hidden)
    return causal_conv(last, snake_beta(snake, hidden))


def snake_beta(module, x: torch.Tensor) -> torch.Tensor:
    """``x + sin(x·e^α)² / (e^β + ε)``, per channel, as qwen_tts's ``SnakeBeta``."""
    alpha = module.alpha.exp()[:, None]
    inverse_beta = 1.0 / (module.beta.exp()[:, None] + module.no_div_by_zero)
    out = torch.mul(x, alpha).sin_()
    return out.mul_(out).mul_(inverse_beta).add_(x)


def causal_conv(module, x: torch.Tensor) -> torch.Tensor:
    """qwen_tts's ``CausalConvNet`` (stride 1): each output sees only its input step and the
    ones before it."""
    conv = module.conv
    pad = module.padding
    out = F.conv1d(x, conv.weight, conv.bias, 1, pad, conv.dilation, conv.groups)
    return out[..., : x.shape[-1]] if pad else out


def transposed_conv(module, x: torch.Tensor) -> torch.Tensor:
    """qwen_tts's ``CausalTransConvNet`` (kernel of one or two strides) as a matrix product
    and an overlap-add, the last ``right_pad`` samples cut as it cuts them."""
    conv = module.conv
    weight = conv.weight  # [in, out, kernel]
    channels_in, channels_out, kernel = weight.shape
    stride = conv.stride[0]
    batch, _, steps = x.shape
    products = torch.matmul(x.transpose(1, 2), weight.reshape(channels_in, -1))
    products = products.view(batch, steps, channels_out, kernel).permute(0, 2, 1, 3)
    bias = conv.bias[:, None, None]
    if kernel == stride:
        out = (products + bias).reshape(batch, channels_out, steps * stride)
    else:
        out = bias.expand(batch, channels_out, steps + 1, stride).clone()
        out[:, :, :steps] += products[..., :stride]
        out[:, :, 1:] += products[..., stride:]
        out = out.view(batch, channels_out, (steps + 1) * stride)
    end = out.shape[-1] - module.right_pad
    return out[..., :end]


def residual_unit(unit, x: torch.Tensor) -> torch.Tensor:
    """qwen_tts's decoder ``ResidualUnit``: SnakeBeta, dilated convolution, SnakeBeta,
    pointwise convolution, plus the input."""
    hidden = causal_conv(unit.conv1, snake_beta(unit.act1, x))
    hidden = causal_conv(unit.conv2, snake_beta(unit.act2, hidden))
    return hidden.add_(x)
