"""The decode step with fixed shapes, replayed as CUDA graphs on CUDA.

On a GPU a decode step is bound by kernel launches, not arithmetic: one talker step and the
code predictor's 15 sub-steps are hundreds of small kernels per frame. ``StaticSteps`` runs
them over fixed shapes, so each can be captured once and replayed:

- rows are padded up to one of ``SIZES`` (the padding rows sit in free slots at position 0,
  their outputs unread), so a handful of shapes serve every row count;
- the talker attends over the slot cache's whole capacity with a mask built from a positions
  buffer (``SlotCache.begin_static_step``), not over the step's longest row;
- each predictor sub-step writes the same places of the ``FrameCache`` every frame.

Sampling stays outside the graphs (each row's own values and generator, as on the CPU): per
frame, one talker replay and 15 predictor replays with a sampling call between them. A graph
is captured the first time its shape is needed; when the slot cache grows (a longer row than
its capacity), the talker's graphs are captured again. With ``capture=False`` (the CPU tests)
the same fixed-shape functions run eagerly, which is how the padding, masks and fixed cache
places are tested where no GPU is.

Not yet run on a GPU (issue 21): ``tests/test_gpu.py`` compares its greedy codes with the
eager loop's on the card.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .loop import Stepper

SIZES = (1, 2, 4, 8, 16, 32, 64)
"""Row counts the step is captured for (a step of ``n`` rows runs as the next one up)."""
WARMUP_RUNS = 2
"""Eager runs on a side stream before a capture (lazy set-up must not land in the graph)."""


class Replay:
    """A function of static buffers: captured as a CUDA graph, or run as it is."""

    def __init__(self, function: Callable[[], object], capture: bool) -> None:
        self.function = function
        self.graph = None
        self.outputs = None
        if capture:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(WARMUP_RUNS):
                    function()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            # other threads may run CUDA work meanwhile (a stream's consumer decodes its
            # windows): only this thread's unsafe calls would break the capture
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.outputs = function()

    def __call__(self):
        """The outputs (a captured graph's live in its own buffers until its next replay)."""
        if self.graph is None:
            return self.function()
        self.graph.replay()
        return self.outputs


class StaticSteps:
    """The fixed-shape step of one ``Stepper``: its static buffers and replays per size."""

    def __init__(self, stepper: Stepper, capture: bool) -> None:
        self.stepper = stepper
        self.capture = capture
        talker = stepper.talker
        predictor = talker.code_predictor
        slots = stepper.slots
        width = talker.config.hidden_size
        device, dtype = talker.device, talker.dtype
        self.talker_inputs = torch.zeros((slots, 1, width), dtype=dtype, device=device)
        self.predictor_inputs = torch.zeros((slots, 2, width), dtype=dtype, device=device)
        self.predictor_codes = torch.zeros((slots,), dtype=torch.long, device=device)
        self.predictor = predictor
        self._talker: dict[int, Replay] = {}
        """Talker replays per size, over the slot cache's buffers of ``_generation``."""
        self._generation = stepper.cache.generation
        self._predictor: dict[tuple[int, int], Replay] = {}

    def size_for(self, rows: int) -> int:
        """The padded row count a step of ``rows`` runs as."""
        return next(
            (size for size in SIZES if rows <= size <= self.stepper.slots), self.stepper.slots
        )

    # --- the talker ---------------------------------------------------------------------------

    def talker_step(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One talker step of ``inputs`` [n, 1, D]: normed hidden states [n, 1, D] and
        first-codebook logits [n, V] (float32)."""
        rows = inputs.shape[0]
        size = self.size_for(rows)
        cache = self.stepper.cache
        cache.begin_static_step(size)
        self.talker_inputs[:rows].copy_(inputs)
        if self._generation != cache.generation:  # the cache grew: graphs over old buffers
            self._talker.clear()
            self._generation = cache.generation
        if size not in self._talker:
            self._talker[size] = Replay(lambda: self._talker_function(size), self.capture)
        hidden, logits = self._talker[size]()
        cache.end_step(rows)
        return hidden[:rows], logits[:rows]

    def _talker_function(self, size: int):
        stepper = self.stepper
        hidden = stepper.talker_layers(self.talker_inputs[:size], stepper.cache.step_mask())
        return hidden, stepper.talker.codec_head(hidden)[:, -1, :].float()

    # --- the code predictor ---------------------------------------------------------------------

    def predictor_logits(self, group: int, rows: int, given: torch.Tensor) -> torch.Tensor:
        """Sub-step ``group``'s logits [rows, V]: ``given`` is the talker's hidden state and
        first code's embedding [rows, 2, D] for group 0, else the codes chosen in the group
        before [rows]."""
        size = self.size_for(rows)
        target = self.predictor_inputs if group == 0 else self.predictor_codes
        target[:rows].copy_(given)
        key = (size, group)
        if key not in self._predictor:
            self._predictor[key] = Replay(
                lambda: self._predictor_function(size, group), self.capture
            )
        return self._predictor[key]()[:rows]

    def _predictor_function(self, size: int, group: int) -> torch.Tensor:
        predictor = self.predictor
        if group == 0:
            embeds = predictor.small_to_mtp_projection(self.predictor_inputs[:size])
            start = 0
        else:
            embedding = predictor.model.get_input_embeddings()[group - 1]
            codes = self.predictor_codes[:size, None]
            embeds = predictor.small_to_mtp_projection(embedding(codes))
            start = group + 1  # two inputs for group 0, then one per group
        frame_cache = self.stepper.frame_cache.at(size, start)
        hidden = self.stepper.predictor_hidden(embeds, frame_cache, start)
        return predictor.lm_head[group](hidden)[:, -1, :].float()
