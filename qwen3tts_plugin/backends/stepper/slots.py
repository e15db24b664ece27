"""The talker's key/value cache as slots: one row per slot, each at its own length.

Rows in use always fill slots ``0..n-1`` (a finished row's slot takes the last row's cache),
so a decode step attends over views, never gathered copies. Capacity grows when a row needs
more positions than the cache holds.
"""

from __future__ import annotations

import torch


def layer_buffers(
    layers: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Zeroed keys and values of ``shape`` for each of ``layers`` layers."""
    keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
    values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
    return keys, values


class SlotCache:
    """Keys and values [slots, kv_heads, capacity, head_dim] per layer, and each slot's length.

    A decode step calls ``update`` once per layer (through the attention module, as a
    transformers cache is called): the step's keys and values go to each row's next position
    and the rows' whole caches, up to the longest, come back.
    """

    def __init__(
        self,
        layers: int,
        slots: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
        capacity: int = 256,
    ) -> None:
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys, self.values = layer_buffers(layers, shape, dtype, device)
        self.lengths = [0] * slots
        self.rows = 0
        """Slots in use (``0..rows-1``)."""
        self._positions: torch.Tensor | None = None
        self._width = 0
        self._static_positions = torch.zeros(slots, dtype=torch.long, device=device)
        self.generation = 0
        """Bumped when the buffers are replaced (growth): graphs over the old ones are stale."""

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    @property
    def slots(self) -> int:
        return self.keys[0].shape[0]

    def ensure(self, positions: int) -> None:
        """Room for ``positions`` per slot (grows by half again, at least)."""
        if positions <= self.capacity:
            return
        grown = max(positions, self.capacity + self.capacity // 2)
        for store in (self.keys, self.values):
            for index, old in enumerate(store):
                new = old.new_zeros((*old.shape[:2], grown, old.shape[3]))
                new[:, :, : old.shape[2]] = old
                store[index] = new
        self.generation += 1

    def fill(
        self,
        first_slot: int,
        layer_keys: list[torch.Tensor],
        layer_values: list[torch.Tensor],
        lengths: list[int],
    ) -> None:
        """Put prefilled rows' caches ([rows, kv_heads, P, head_dim] per layer, row ``i``'s
        first ``lengths[i]`` positions its own) in slots ``first_slot`` on."""
        self.ensure(max(lengths) + 1)
        for layer, (k, v) in enumerate(zip(layer_keys, layer_values, strict=True)):
            for row, length in enumerate(lengths):
                self.keys[layer][first_slot + row, :, :length] = k[row, :, :length]
                self.values[layer][first_slot + row, :, :length] = v[row, :, :length]
        for row, length in enumerate(lengths):
            self.lengths[first_slot + row] = length

    def clear(self, slot: int) -> None:
        """Zero ``slot`` whole: a row that broke may have left non-finite keys there, and a
        masked NaN still poisons attention (NaN times a zero weight is NaN)."""
        for store in (self.keys, self.values):
            for tensor in store:
                tensor[slot].zero_()
        self.lengths[slot] = 0

    def move(self, source: int, target: int) -> None:
        """Give ``target`` the cache of ``source`` (a finished row's slot taking the last)."""
        length = self.lengths[source]
        for store in (self.keys, self.values):
            for tensor in store:
                tensor[target, :, :length] = tensor[source, :, :length]
        self.lengths[target] = length
        self.lengths[source] = 0

    def begin_step(self) -> torch.Tensor | None:
        """Prepare one decode step of rows ``0..rows-1``: the additive attention mask
        [rows, 1, 1, width] (None when every row has the same length, so nothing is masked)."""
        lengths = self.lengths[: self.rows]
        self._width = max(lengths) + 1
        self.ensure(self._width)
        device = self.keys[0].device
        self._positions = torch.tensor(lengths, device=device)
        if min(lengths) == max(lengths):
            return None
        return self.step_mask()

    def begin_static_step(self, size: int, width: int) -> None:
        """Prepare one fixed-shape decode step of ``size`` rows (``rows`` in use, the rest
        free slots at position 0) attending over the first ``width`` positions (at least the
        longest row's new one): positions in a buffer that stays put (``step_mask`` reads
        it), so the step can be captured once per (size, width)."""
        lengths = self.lengths[: self.rows]
        if width <= max(lengths):
            raise ValueError(f"width {width} does not reach position {max(lengths)}")
        self.ensure(width)
        padded = lengths + [0] * (size - len(lengths))
        self._static_positions[:size].copy_(torch.tensor(padded), non_blocking=True)
        self._positions = self._static_positions[:size]
        self._width = width
        self.rows = size

    def step_mask(self) -> torch.Tensor:
        """The step's additive attention mask [rows, 1, 1, width]: each row sees its own
        positions up to its new one (tensor work only, so a captured step builds it too)."""
        assert self._positions is not None
        columns = torch.arange(self._width, device=self._positions.device)
        masked = columns[None, :] > self._positions[:, None]
        mask = torch.zeros(masked.shape, dtype=self.keys[0].dtype, device=masked.device)
        mask.masked_fill_(masked, torch.finfo(mask.dtype).min)
        return mask[:, None, None, :]

    def positions(self) -> torch.Tensor:
        """The position each row's new token takes in this step [rows]."""
        assert self._positions is not None
        return self._positions

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
        """The transformers cache call: store the step's [rows, kv_heads, 1, head_dim] keys
        and values at each row's position, return the rows' caches up to the step's width."""
        rows = torch.arange(self.rows, device=key_states.device)
        self.keys[layer_idx][rows, :, self._positions] = key_states[:, :, 0]
        self.values[layer_idx][rows, :, self._positions] = value_states[:, :, 0]
        width = self._width
        return self.keys[layer_idx][: self.rows, :, :width], self.values[layer_idx][
            : self.rows, :, :width
        ]

    def end_step(self, rows: int | None = None) -> None:
        """Every row in the step is one position longer (``rows``: the rows in use of a
        fixed-shape step, whose padding rows stay free)."""
        if rows is not None:
            self.rows = rows
        for slot in range(self.rows):
            self.lengths[slot] += 1
        self._positions = None


class FrameCache:
    """The code predictor's keys and values for one frame of every row, preallocated once
    ([slots, kv_heads, positions, head_dim] per layer) and written over each step, where a
    transformers ``DynamicCache`` would grow by concatenation 15 times a step.

    The predictor's positions are the same every frame (two inputs, then one per code), so a
    step writes the same places: ``at(rows, written)`` says where the next call writes.
    """

    def __init__(
        self,
        layers: int,
        slots: int,
        kv_heads: int,
        head_dim: int,
        positions: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.keys, self.values = layer_buffers(
            layers, (slots, kv_heads, positions, head_dim), dtype, device
        )
        self.rows = 0
        self.written = 0
        """Positions of this frame written before the current call."""

    def at(self, rows: int, written: int) -> FrameCache:
        """Ready for a call over ``rows`` rows whose frame holds ``written`` positions."""
        self.rows = rows
        self.written = written
        return self

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
        """The transformers cache call: store [rows, kv_heads, n, head_dim] after what this
        frame holds, return the frame's keys and values so far."""
        end = self.written + key_states.shape[2]
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[: self.rows, :, self.written : end] = key_states
        values[: self.rows, :, self.written : end] = value_states
        return keys[: self.rows, :, :end], values[: self.rows, :, :end]
