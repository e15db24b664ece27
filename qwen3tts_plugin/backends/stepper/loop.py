"""Our decode loop over qwen_tts's loaded modules: slots, continuous admission, per-row
sampling.

Rows (texts) that take free slots at the same time are prefilled in one talker call, each at
the positions qwen_tts gives a text alone (shorter prompts padded on the right, out of every
real position's sight), and their caches go into the free slots. Then every step, for all
rows at once: each row picks its first-codebook code from its own logits (its own sampling
values and generator); rows that ended (end of speech, or their budget) leave and free their
slot, which the next waiting row takes at once; the code predictor's 15 sub-steps run batched
over the rows (their keys and values in one preallocated ``FrameCache``, written over every
frame); each row's next input (its 16 codes' embeddings, plus its next text token or the pad)
goes through the talker's layers with its own position, against its own cache.

qwen_tts keeps the codes of every step but the last: a row that never ends gives
``budget - 1`` frames, as there. Nothing is kept from a step but what the next one reads
(qwen_tts keeps every frame's hidden states to the end of the call).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicCache

from hookspecs import TtsError

from .. import FrameSink
from .graphs import GraphCapture, StaticSteps
from .layers import StepLayers
from .prompts import RowPrompt
from .sampling import RowSampler, TalkerRules, choose
from .slots import SlotCache


@dataclass(eq=False)
class Row:
    """One text in the loop: its prompt, how it chooses codes, how many it may take, and what
    it has produced so far."""

    prompt: RowPrompt
    sampler: RowSampler
    budget: int
    """``max_new_tokens``: first-codebook codes this row may choose."""
    index: int = 0
    """Its caller's number for it (the text's place in the call)."""
    chosen: list[int] = field(default_factory=list)
    """First-codebook codes chosen so far (the repetition penalty's history)."""
    frames: list[torch.Tensor] = field(default_factory=list)
    """Whole frames [16] so far."""
    logits: torch.Tensor | None = None
    """[1, V] float32: what the next first-codebook code is chosen from."""
    hidden: torch.Tensor | None = None
    """[1, 1, D]: the talker's last hidden state (the code predictor's first input)."""
    code: int | None = None
    """The code chosen this step, its frame not yet completed."""
    error: TtsError | None = None
    sink: FrameSink | None = None
    """Who gets each frame as it is made (a streamed text)."""

    @property
    def step(self) -> int:
        """Decode steps this row has taken (which text token comes next)."""
        return len(self.frames)

    def codes(self) -> torch.Tensor:
        """The row's frames [F, 16]."""
        return torch.stack(self.frames)


class Stepper:
    """Runs rows through ``slots`` slots on one loaded qwen_tts model."""

    def __init__(
        self,
        model,
        slots: int,
        attn_implementation: str = "sdpa",
        static: bool | None = None,
        capture_lock: AbstractContextManager | None = None,
        capture: bool | None = None,
    ) -> None:
        """``model`` is qwen_tts's ``Qwen3TTSForConditionalGeneration`` (the wrapper's
        ``.model``), loaded with ``attn_implementation``. ``static``: run each step with
        fixed shapes (``graphs.StaticSteps``); None: on CUDA with sdpa attention, not
        elsewhere. ``capture``: capture the fixed-shape steps as CUDA graphs (None: on CUDA;
        False runs the same shapes eagerly, what the GPU check compares the graphs with).
        ``capture_lock``: held while a graph is captured (every codec decode of the model
        holds it too)."""
        self.talker = model.talker
        self.slots = slots
        self.layers = StepLayers(self.talker, slots, attn_implementation)
        config = model.config.talker_config
        self.eos_id = config.codec_eos_token_id
        self.groups = config.num_code_groups
        self.rules = TalkerRules(self.eos_id, config.vocab_size, self.talker.device)
        direct = self.layers.direct_predictor
        on_cuda = self.talker.device.type == "cuda"
        if static is None:
            static = on_cuda and direct
        if static and not direct:
            raise ValueError("fixed-shape steps need sdpa attention and full-attention layers")
        self.static: StaticSteps | None = None
        if static:
            if capture is None:
                capture = on_cuda
            if capture and not on_cuda:
                raise ValueError("CUDA graphs need a model on a CUDA device")
            graphs = GraphCapture(self.talker.device, capture_lock) if capture else None
            self.static = StaticSteps(self.layers, graphs)

    @property
    def cache(self) -> SlotCache:
        """The talker's key/value slots."""
        return self.layers.cache

    def close(self) -> None:
        """Drop the captured graphs and the caches now (a replaced or released loop)."""
        if self.static is not None:
            self.static.close()
        self.static = None
        self.layers = None

    @torch.inference_mode()
    def run(
        self,
        rows: Sequence[Row],
        finished: Callable[[Row], None],
        slots: int | None = None,
        refill: Callable[[int], list[Row]] | None = None,
        dropped: Callable[[Row], bool] | None = None,
    ) -> None:
        """Speak every row, at most ``slots`` (default: all this loop has) at once;
        ``finished(row)`` as each one ends (its ``frames``, or ``error``). When slots are
        free, ``refill(free)`` may give more rows (once per step). While ``rows`` still wait,
        every other free slot goes to such a newcomer first (a text that arrives during a long
        call waits for a row or two to end, not for the call, and the call's own rows keep at
        least half the slots that free up). A row for which ``dropped(row)`` turns true
        (checked every step) leaves at once, unfinished.

        A row whose logits are not finite fails alone (``synthesis_failed``); an exception
        from the model itself propagates (every row still running is lost).
        """
        width = min(slots or self.slots, self.slots)
        waiting = deque(rows)
        active: list[Row] = []
        self.cache.rows = 0
        newcomers_turn = True  # with one slot free at a time, newcomers and own rows alternate
        while waiting or active:
            if dropped is not None:
                for row in [row for row in active if dropped(row)]:
                    self._leave(active, row)
                waiting = deque(row for row in waiting if not dropped(row))
            free = width - len(active)
            if refill is not None and free > 0:
                share = free
                if waiting:  # the call's own rows wait too: newcomers get half, rounded
                    share = (free + newcomers_turn) // 2
                    newcomers_turn = not newcomers_turn if free % 2 else newcomers_turn
                if share:
                    waiting.extendleft(reversed(refill(share)))
            joining = [waiting.popleft() for _ in range(min(len(waiting), width - len(active)))]
            if joining:
                self._prefill(joining, first_slot=len(active))
                active.extend(joining)
                self.cache.rows = len(active)
            ended = self._choose([row for row in active if row.code is None])
            for row in ended:
                self._leave(active, row)
                finished(row)
            if ended and waiting:
                continue  # fill the freed slots before the step
            if active:
                self._step(active)

    # --- one row ---------------------------------------------------------------------------

    def _prefill(self, rows: list[Row], first_slot: int) -> None:
        """The rows' prompts through the talker in one call, each at positions ``0..P-1`` as
        qwen_tts runs a text alone (shorter prompts padded on the right, where the causal
        mask keeps them from every real position); their caches into ``first_slot`` on."""
        lengths = [row.prompt.embeds.shape[1] for row in rows]
        longest = max(lengths)
        device = rows[0].prompt.embeds.device
        embeds = torch.cat(
            [
                torch.nn.functional.pad(row.prompt.embeds, (0, 0, 0, longest - length))
                for row, length in zip(rows, lengths, strict=True)
            ]
        )
        columns = torch.arange(longest, device=device)
        mask = (columns[None, :] < torch.tensor(lengths, device=device)[:, None]).long()
        positions = columns.view(1, 1, -1).expand(3, len(rows), -1)
        cache = DynamicCache()
        out = self.talker.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        last = torch.tensor(lengths, device=device) - 1
        hidden = out.last_hidden_state[torch.arange(len(rows), device=device), last][:, None]
        logits = self.talker.codec_head(hidden)[:, -1, :].float()
        for index, row in enumerate(rows):
            row.logits = logits[index : index + 1]
            row.hidden = hidden[index : index + 1]
        self.cache.fill(
            first_slot,
            [layer.keys for layer in cache.layers],
            [layer.values for layer in cache.layers],
            lengths,
        )

    def _choose(self, rows: list[Row]) -> list[Row]:
        """Choose each row's next first-codebook code; the rows that ended."""
        if not rows:
            return []
        logits = torch.cat([row.logits for row in rows])
        finite = torch.isfinite(logits).all(dim=-1).tolist()
        ended = []
        for row, ok in zip(rows, finite, strict=True):
            if not ok:
                row.error = TtsError(
                    "synthesis_failed",
                    f"the talker's scores became non-finite after {row.step} frames",
                    "The model produced NaN or infinite values for this text: try "
                    "Precision=fp32, or another seed.",
                )
                ended.append(row)
        going = [row for row, ok in zip(rows, finite, strict=True) if ok]
        if going:
            keep = torch.tensor(finite, device=logits.device)
            codes = self.rules.choose(
                [row.sampler for row in going], [row.chosen for row in going], logits[keep]
            )
            for row, code in zip(going, codes, strict=True):
                row.chosen.append(code)
                if code == self.eos_id or len(row.chosen) >= row.budget:
                    ended.append(row)  # qwen_tts keeps no frame for the last code of a budget
                else:
                    row.code = code
        for row in rows:
            row.logits = None
        return ended

    def _leave(self, active: list[Row], row: Row) -> None:
        """Free ``row``'s slot: the last row moves into it, so slots stay ``0..n-1``."""
        slot = active.index(row)
        last = len(active) - 1
        if row.error is not None:
            self.cache.clear(slot)
        if slot != last:
            self.cache.move(last, slot)
            active[slot] = active[last]
        active.pop()
        self.cache.lengths[last] = 0
        self.cache.rows = len(active)
        row.hidden = None

    # --- one step of every row --------------------------------------------------------------

    def _step(self, active: list[Row]) -> None:
        """Complete each row's frame (the code predictor), then one talker step for all."""
        talker = self.talker
        codes = torch.tensor([[row.code] for row in active], device=talker.device)
        first = talker.get_input_embeddings()(codes)  # [n, 1, D]
        hidden = torch.cat([row.hidden for row in active], dim=0)
        predictor_inputs = torch.cat((hidden, first), dim=1)
        if self.static is not None:
            rest = self._predict_static(active, predictor_inputs)  # [n, groups - 1]
        else:
            rest = self._predict(active, predictor_inputs)
        predictor_embeddings = talker.code_predictor.get_input_embeddings()
        embeds = [first] + [
            predictor_embeddings[i](rest[:, i : i + 1]) for i in range(self.groups - 1)
        ]
        inputs = torch.cat(embeds, dim=1).sum(1, keepdim=True)  # [n, 1, D]
        text = []
        for row in active:
            trailing = row.prompt.trailing
            text.append(trailing[row.step] if row.step < trailing.shape[0] else row.prompt.pad)
        inputs = inputs + torch.stack(text)[:, None, :]
        for index, row in enumerate(active):
            row.frames.append(torch.cat((codes[index], rest[index])))
            row.code = None
            if row.sink is not None:
                row.sink.frame(row.frames[-1])
        if self.static is not None:
            out, logits = self.static.talker_step(inputs)
        else:
            out = self._talker_step(inputs)
            logits = talker.codec_head(out)[:, -1, :].float()
        for index, row in enumerate(active):
            row.logits = logits[index : index + 1]
            row.hidden = out[index : index + 1, -1:, :]

    def _predict(self, active: list[Row], inputs: torch.Tensor) -> torch.Tensor:
        """The code predictor's codes 1..15 for every row [n, groups - 1], batched; each row
        samples its own."""
        predictor = self.talker.code_predictor
        frame_cache = self.layers.frame_cache
        dynamic = DynamicCache() if frame_cache is None else None
        embeds = predictor.small_to_mtp_projection(inputs)
        chosen = []
        start = 0
        for group in range(self.groups - 1):
            cache = dynamic if dynamic is not None else frame_cache.at(len(active), start)
            hidden = self.layers.predictor_hidden(embeds, cache, start)
            start += embeds.shape[1]
            logits = predictor.lm_head[group](hidden)[:, -1, :].float()
            codes = choose([row.sampler for row in active], logits, talker=False)
            chosen.append(codes)
            if group < self.groups - 2:
                embedding = predictor.model.get_input_embeddings()[group]
                embeds = predictor.small_to_mtp_projection(embedding(codes[:, None]))
        return torch.stack(chosen, dim=1)

    def _predict_static(self, active: list[Row], inputs: torch.Tensor) -> torch.Tensor:
        """``_predict`` through the fixed-shape sub-steps (sampling between them)."""
        chosen = []
        given = inputs
        for group in range(self.groups - 1):
            logits = self.static.predictor_logits(group, len(active), given)
            given = choose([row.sampler for row in active], logits, talker=False)
            chosen.append(given)
        return torch.stack(chosen, dim=1)

    def _talker_step(self, inputs: torch.Tensor) -> torch.Tensor:
        """One token per row through the talker's layers, each at its own position against its
        own cache; the normed hidden states [n, 1, D]."""
        mask = self.cache.begin_step()
        hidden = self.layers.talker_layers(inputs, mask)
        self.cache.end_step()
        return hidden
