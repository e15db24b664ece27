"""int8 weights for the talker's and the code predictor's transformer layers (``Quantization``).

Each ``nn.Linear`` of those layers becomes an ``Int8Linear``: its weight rounded once, at load,
to int8 with one scale per output channel; at run time each row of the input is rounded to int8
with its own scale, multiplied in int32 by ``torch._int_mm`` (PyTorch's own int8 kernel, the one
torchao and Inductor lower to) and scaled back. Per row, not per tensor: a row's codes do not
depend on which other rows share its batch (the int32 sums are exact), so a seeded text gives
the same audio alone or in any batch, as in float.

Left as they are: embeddings, norms, the text projection, the heads that score codes (so the
sampling sees float logits from quantized hidden states) and the codec (float32).

Why not the alternatives, measured on a 2-core AVX512 CPU with torch 2.11 (README, The CPU
path): ``torch.ao.quantization.quantize_dynamic`` (fbgemm) is deprecated in this torch (its
warning says it goes) and scales activations per tensor, which makes a row's codes depend on
its batch; torchao 0.18's int8 configs run eagerly through tensor subclasses, 2.8x slower
than this at batch 1, and add a dependency.
"""

from __future__ import annotations

import torch
from torch import nn

QUANTIZED_LAYERS = ("model.layers", "code_predictor.model.layers")
"""The talker's submodules (``Qwen3TTSForConditionalGeneration.talker``) whose linear layers
take int8 weights: its own transformer layers and the code predictor's."""

INT8_MAX = 127
TINY = torch.finfo(torch.float32).tiny
"""The smallest scale (a normal float32: an all-zero row divides by it, not by zero, even where
a host flushes subnormals)."""


class Int8Linear(nn.Module):
    """A linear layer with int8 weights (per output channel) and int8 activations (per row)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """``weight`` [out, in] in any float dtype; it is quantized here and not kept."""
        super().__init__()
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]
        with torch.no_grad():
            wide = weight.detach().float()
            scale = (wide.abs().amax(dim=1) / INT8_MAX).clamp_(min=TINY)
            quantized = torch.round(wide / scale[:, None]).to(torch.int8)
        # [out, in] stored, [in, out] used (its transpose, a view): _int_mm's fast layout
        self.register_buffer("qweight", quantized.contiguous())
        self.register_buffer("scale", scale)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).float()
        row_scale = rows.abs().amax(dim=1, keepdim=True).div_(INT8_MAX).clamp_(min=TINY)
        quantized = torch.round(rows / row_scale).to(torch.int8)
        out = torch._int_mm(quantized, self.qweight.t()).float()
        out = out.mul_(row_scale).mul_(self.scale)
        if self.bias is not None:
            out = out.add_(self.bias)
        return out.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def float_linears(talker: nn.Module) -> list[tuple[nn.Module, str]]:
    """Where the float ``nn.Linear`` layers of the talker's quantized parts sit: (parent,
    attribute name) pairs."""
    return [
        (parent, name)
        for path in QUANTIZED_LAYERS
        for parent in talker.get_submodule(path).modules()
        for name, child in parent.named_children()
        if type(child) is nn.Linear
    ]


def quantize_talker(talker: nn.Module) -> int:
    """Give the talker's and code predictor's transformer layers int8 weights, in place (each
    float layer is freed as soon as its int8 one replaces it); the number replaced."""
    places = float_linears(talker)
    for parent, name in places:
        setattr(parent, name, Int8Linear.from_linear(getattr(parent, name)))
    return len(places)


def quantized_layers(talker: nn.Module) -> int:
    """How many linear layers of ``talker`` run with int8 weights."""
    return sum(isinstance(module, Int8Linear) for module in talker.modules())
