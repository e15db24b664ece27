"""The decode step with fixed shapes, replayed as CUDA graphs on CUDA.

On a GPU a decode step is bound by kernel launches, not arithmetic: one talker step and the
code predictor's 15 sub-steps are hundreds of small kernels per frame. ``StaticSteps`` runs
them over fixed shapes, so each can be captured once and replayed:

- rows are padded up to one of ``SIZES`` (the padding rows sit in free slots at position 0,
  their outputs unread), so a handful of shapes serve every row count;
- the talker attends over a width of the slot cache, the longest row's length rounded up to
  one of a few buckets (``width_bucket``: 64, 96, 128, 192, 256, ...), behind a mask built
  from a positions buffer (``SlotCache.begin_static_step``): a step's cost follows the rows'
  real lengths, whatever the cache's capacity, at most a third more than their longest. (With
  a mask, transformers' sdpa path repeats the 8 key/value heads to 16 before attending: over
  a 2048-position capacity at 16 rows that copy alone was about 7 GiB a step for the 0.6B's
  28 layers, whatever the rows' lengths.)
- each predictor sub-step writes the same places of the ``FrameCache`` every frame.

Sampling stays outside the graphs (each row's own values and generator, as on the CPU): per
frame, one talker replay and 15 predictor replays with a sampling call between them. A graph
is captured the first time its shape (rows, width) is needed; when the slot cache grows (a
longer row than its capacity), the talker's graphs are captured again. With no
``GraphCapture`` (the CPU tests) the same fixed-shape functions run eagerly, which is how the
padding, widths, masks and fixed cache places are tested where no GPU is.

Not yet run on a GPU: ``tests/test_gpu.py`` compares its codes with the eager loop's on the
card, in float32 and bfloat16.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from .layers import StepLayers

SIZES = (1, 2, 4, 8, 16, 32, 64)
"""Row counts the step is captured for (a step of ``n`` rows runs as the next one up)."""
WARMUP_RUNS = 2
"""Eager runs on a side stream before a capture (lazy set-up must not land in the graph)."""
NARROWEST = 64
"""The smallest attention width a talker step runs at (a prompt alone is about 20-60
positions)."""


def width_bucket(positions: int) -> int:
    """The attention width of a step whose longest row needs ``positions`` positions: the
    next of 64, 96, 128, 192, 256, 384, ... (powers of two and one and a half times them:
    about two captured widths per doubling, at most a third of the width masked off)."""
    power = NARROWEST
    while True:
        if positions <= power:
            return power
        if positions <= power + power // 2:
            return power + power // 2
        power *= 2


class GraphCapture:
    """How one loop's graphs are captured and replayed on CUDA.

    - On the loop's own device (a device guard) and its own capture stream, made on that
      device: a model on ``cuda:1`` captures there. (``torch.cuda.graph`` without a stream
      takes one stream for the whole process, made on whichever device was current at the
      first capture; entering it would make that device current again, and a capture for
      another device's kernels records nothing.) One stream for every capture into the pool,
      as PyTorch asks of captures that share one.
    - Into one memory pool for all of the loop's graphs (``torch.cuda.graph_pool_handle``),
      instead of one private pool each. Safe here because a graph's outputs are read (copied
      or consumed by sampling) before any other graph of the loop replays, and its outputs
      stay referenced (``Replay.outputs``), so no later capture takes their memory.
    - Holding ``lock`` (the backend's, which every codec decode of the model holds too): a
      decode on a stream consumer's thread during a capture could make the allocator free
      memory or load a kernel while the capture runs, which fails it.
    """

    def __init__(self, device: torch.device, lock: AbstractContextManager | None) -> None:
        self.device = device
        self.lock = lock if lock is not None else contextlib.nullcontext()
        with torch.cuda.device(device):
            self.pool = torch.cuda.graph_pool_handle()
            self.stream = torch.cuda.Stream()
        self.captured = 0
        """Graphs captured so far (all in ``pool``, from ``stream``)."""

    def capture(self, function: Callable[[], object]) -> tuple[torch.cuda.CUDAGraph, object]:
        """Warm ``function`` up on the capture stream, capture it; the graph and its
        outputs."""
        with self.lock, torch.cuda.device(self.device):
            stream = self.stream
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(WARMUP_RUNS):
                    function()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            # other threads may run CUDA work meanwhile that does not allocate or load
            # kernels (the lock keeps the codec's decodes out): only this thread's unsafe
            # calls would break the capture
            with torch.cuda.graph(
                graph, pool=self.pool, stream=stream, capture_error_mode="thread_local"
            ):
                outputs = function()
        self.captured += 1
        return graph, outputs

    def replay(self, graph: torch.cuda.CUDAGraph) -> None:
        with torch.cuda.device(self.device):
            graph.replay()


class Replay:
    """A function of static buffers: captured as a CUDA graph, or run as it is."""

    def __init__(self, function: Callable[[], object], capture: GraphCapture | None) -> None:
        self.function = function
        self.capture = capture
        self.graph = None
        self.outputs = None
        if capture is not None:
            self.graph, self.outputs = capture.capture(function)

    def __call__(self):
        """The outputs (a captured graph's live in its own buffers until its next replay)."""
        if self.graph is None:
            return self.function()
        self.capture.replay(self.graph)
        return self.outputs

    def close(self) -> None:
        """Let the graph, its outputs and its function go (their pool's memory with the last
        of them; the function is a closure over the steps that hold this replay)."""
        self.graph = None
        self.outputs = None
        self.function = None


def _drop(replays: dict) -> None:
    """Close and forget every replay in ``replays``."""
    for replay in replays.values():
        replay.close()
    replays.clear()


class StaticSteps:
    """The fixed-shape step over one loop's layers: its static buffers and replays per shape."""

    def __init__(self, layers: StepLayers, capture: GraphCapture | None) -> None:
        """``capture``: where and how to capture (None: run the same functions eagerly)."""
        self.layers = layers
        self.capture = capture
        talker = layers.talker
        slots = layers.slots
        width = talker.config.hidden_size
        device, dtype = talker.device, talker.dtype
        self.talker_inputs = torch.zeros((slots, 1, width), dtype=dtype, device=device)
        self.predictor_inputs = torch.zeros((slots, 2, width), dtype=dtype, device=device)
        self.predictor_codes = torch.zeros((slots,), dtype=torch.long, device=device)
        self._talker: dict[tuple[int, int], Replay] = {}
        """Talker replays per (rows, width), over the slot cache's buffers of ``_generation``."""
        self._generation = layers.cache.generation
        self._predictor: dict[tuple[int, int], Replay] = {}

    def size_for(self, rows: int) -> int:
        """The padded row count a step of ``rows`` runs as."""
        slots = self.layers.slots
        return next((size for size in SIZES if rows <= size <= slots), slots)

    def shapes(self) -> list[tuple[int, int]]:
        """The talker shapes (rows, width) made so far, in the order they were first used."""
        return list(self._talker)

    def close(self) -> None:
        """Drop every replay (the graphs and their memory go now, not at a later collection)."""
        for replays in (self._talker, self._predictor):
            _drop(replays)

    # --- the talker ---------------------------------------------------------------------------

    def talker_step(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One talker step of ``inputs`` [n, 1, D]: normed hidden states [n, 1, D] and
        first-codebook logits [n, V] (float32)."""
        rows = inputs.shape[0]
        size = self.size_for(rows)
        cache = self.layers.cache
        width = width_bucket(max(cache.lengths[:rows]) + 1)
        cache.begin_static_step(size, width)
        self.talker_inputs[:rows].copy_(inputs)
        if self._generation != cache.generation:  # the cache grew: graphs over old buffers
            _drop(self._talker)
            self._generation = cache.generation
        key = (size, width)
        if key not in self._talker:
            self._talker[key] = Replay(lambda: self._talker_function(size), self.capture)
        hidden, logits = self._talker[key]()
        cache.end_step(rows)
        return hidden[:rows], logits[:rows]

    def _talker_function(self, size: int):
        layers = self.layers
        hidden = layers.talker_layers(self.talker_inputs[:size], layers.cache.step_mask())
        return hidden, layers.talker.codec_head(hidden)[:, -1, :].float()

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
        layers = self.layers
        predictor = layers.talker.code_predictor
        if group == 0:
            embeds = predictor.small_to_mtp_projection(self.predictor_inputs[:size])
            start = 0
        else:
            embedding = predictor.model.get_input_embeddings()[group - 1]
            codes = self.predictor_codes[:size, None]
            embeds = predictor.small_to_mtp_projection(embedding(codes))
            start = group + 1  # two inputs for group 0, then one per group
        frame_cache = layers.frame_cache.at(size, start)
        hidden = layers.predictor_hidden(embeds, frame_cache, start)
        return predictor.lm_head[group](hidden)[:, -1, :].float()
