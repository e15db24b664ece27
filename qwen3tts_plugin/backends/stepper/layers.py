"""What one decode step runs: the talker's and the code predictor's layers over the loop's
caches, eagerly or as the body of a captured graph (``graphs.StaticSteps``).

The loop (``loop.Stepper``) decides which rows take a step and samples their codes; the fixed-
shape steps capture these functions; both hold this object, which holds neither of them, so a
replaced loop and its graphs are freed the moment the last reference goes (no cycle waits for
the garbage collector while the graphs' memory stays taken).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache

from .slots import FrameCache, SlotCache


def head_dim_of(config) -> int:
    """A transformer config's attention head width (given, or hidden size over heads)."""
    return getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)


class StepLayers:
    """The talker and code predictor of one loaded model, with ``slots`` slots of cache."""

    def __init__(self, talker, slots: int, attn_implementation: str) -> None:
        """``talker`` is qwen_tts's talker (``Qwen3TTSForConditionalGeneration.talker``),
        loaded with ``attn_implementation``."""
        self.talker = talker
        self.slots = slots
        predictor_config = talker.code_predictor.model.config
        # sdpa makes the predictor's causal prefill itself (no mask, as transformers passes
        # it then); eager and sliding-window layers need the model's own mask building
        self.direct_predictor = attn_implementation == "sdpa" and all(
            kind == "full_attention" for kind in predictor_config.layer_types
        )
        config = talker.config
        self.cache = SlotCache(
            layers=len(talker.model.layers),
            slots=slots,
            kv_heads=config.num_key_value_heads,
            head_dim=head_dim_of(config),
            dtype=talker.dtype,
            device=talker.device,
        )
        self.frame_cache: FrameCache | None = None
        if self.direct_predictor:
            self.frame_cache = FrameCache(
                layers=predictor_config.num_hidden_layers,
                slots=slots,
                kv_heads=predictor_config.num_key_value_heads,
                head_dim=head_dim_of(predictor_config),
                positions=config.num_code_groups + 1,
                dtype=talker.dtype,
                device=talker.device,
            )

    def talker_layers(self, inputs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``inputs`` [n, 1, D] through the talker's layers and norm, at the positions of the
        step the slot cache has begun."""
        model = self.talker.model
        cache = self.cache
        positions = cache.positions().view(1, -1, 1).expand(3, -1, -1)
        position_embeddings = model.rotary_emb(inputs, positions)
        hidden = inputs
        for layer in model.layers:
            hidden = layer(
                hidden,
                attention_mask=mask,
                position_ids=positions[0],
                past_key_values=cache,
                use_cache=True,
                position_embeddings=position_embeddings,
            )[0]
        return model.norm(hidden)

    def predictor_hidden(
        self, embeds: torch.Tensor, cache: FrameCache | DynamicCache, start: int
    ) -> torch.Tensor:
        """The code predictor's normed hidden states for ``embeds`` at positions ``start``..."""
        model = self.talker.code_predictor.model
        if not self.direct_predictor:
            out = model(inputs_embeds=embeds, past_key_values=cache, use_cache=True)
            return out.last_hidden_state
        positions = torch.arange(start, start + embeds.shape[1], device=embeds.device)[None]
        position_embeddings = model.rotary_emb(embeds, positions)
        hidden = embeds
        for layer in model.layers[: model.config.num_hidden_layers]:
            hidden = layer(
                hidden,
                attention_mask=None,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                cache_position=positions[0],
                position_embeddings=position_embeddings,
            )[0]
        return model.norm(hidden)
