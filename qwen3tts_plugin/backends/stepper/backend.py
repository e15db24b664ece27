"""The ``stepper`` backend: qwen_tts loads and places the model exactly as for ``qwen_tts``
(``device_map``, verification, float32 codec); our own loop (``loop.Stepper``) decodes.

What it changes against qwen_tts's loop: a row that ends leaves the batch at once (its slot
goes to the next text of the call, when the call has more texts than slots), each row samples
with its own generator (a seeded text gives the same codes alone or in any batch), and no
frame's hidden states are kept past the next step. Greedy output is qwen_tts's (the tests
compare codes). Imported only when a model is loaded (it imports torch).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hookspecs import TtsError

from ..device import free_device_memory
from ..failures import forget_locals, synthesis_error
from ..qwen_tts.backend import QwenTtsBackend
from ..qwen_tts.calls import sampling_kwargs
from .codec import CodecDecoder, RowAudio
from .loop import Row, Stepper
from .prompts import build_prompts
from .sampling import RowSampler, Sampling

if TYPE_CHECKING:
    from hookspecs import GenerationParams

    from ...devices import DevicePlan
    from .. import Batch


class StepperBackend(QwenTtsBackend):
    """qwen_tts's loaded model, spoken through our decode loop."""

    name = "stepper"

    def __init__(self, model, plan: DevicePlan) -> None:
        super().__init__(model, plan)
        self._stepper: Stepper | None = None
        self.static_steps: bool | None = None
        """Fixed-shape steps: None decides by device (``Stepper``)."""
        self.capture_graphs: bool | None = None
        """Fixed-shape steps captured as CUDA graphs: None on CUDA (``Stepper``)."""
        self._codec: CodecDecoder | None = None
        self.capture_lock = threading.RLock()
        """Held by a graph capture and, on CUDA, by every codec decode and the GPU work of a
        streamed window (the loop's and the stream consumers'): a decode on another thread
        must not run during a capture."""

    def stepper(self, slots: int) -> Stepper:
        """The loop, with at least ``slots`` slots (kept between calls, with its cache). A
        smaller one it replaces is closed first: its graphs and caches freed at once."""
        if self._stepper is None or self._stepper.slots < slots:
            if self._close_stepper() and self.plan.is_cuda:
                free_device_memory()  # its graphs' pool back before the larger one allocates
            self._stepper = Stepper(
                self.model.model,
                slots,
                self.plan.attn_implementation,
                self.static_steps,
                self.capture_lock,
                self.capture_graphs,
            )
        return self._stepper

    def _close_stepper(self) -> bool:
        """Close the loop and drop it (its last reference); whether there was one."""
        old, self._stepper = self._stepper, None
        if old is None:
            return False
        old.close()
        return True

    def codec(self) -> CodecDecoder:
        """The codec's decode (its masks kept between calls)."""
        if self._codec is None:
            lock = self.capture_lock if self.plan.is_cuda else None  # no capture elsewhere
            self._codec = CodecDecoder(self.model.model.speech_tokenizer, lock=lock)
        return self._codec

    def release(self) -> None:
        self._close_stepper()
        self._codec = None
        super().release()

    def generate(self, batch: Batch) -> list[np.ndarray | TtsError | None]:
        """One waveform per text, in order (admitted texts after the batch's own); a text that
        failed alone (non-finite scores) is its ``TtsError`` in its place, one handed over
        through ``batch.settle`` or dropped (``batch.withdrawn``) is None. ``synthesis_failed``
        for the call when the model itself fails."""
        try:
            return self._generate(batch, self.decode)
        except TtsError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything torch raises in the loop is reported
            raise synthesis_error(exc) from forget_locals(exc)

    def codes(self, batch: Batch) -> list[torch.Tensor | TtsError | None]:
        """Each text's codes [F, 16] as the loop made them (what the codec would decode), in
        order, on the CPU; a text that failed alone is its ``TtsError``, one that made no
        frame None. For checks that compare loops code for code (the GPU check: captured
        graphs against eager steps)."""
        return self._generate(batch, lambda row: row.codes().cpu() if row.frames else None)

    @torch.inference_mode()
    def _generate(self, batch: Batch, outcome: Callable[[Row], Any]) -> list[Any]:
        """Run ``batch`` through the loop; ``outcome(row)`` of each row that ends."""
        results: list[Any] = []

        def rows_for(part: Batch) -> list[Row]:
            prompts = build_prompts(self.model, list(part.texts), list(part.voices))
            rows = []
            for index, prompt in enumerate(prompts):
                params = part.params_of(index)
                row = Row(prompt, self.sampler(params), params.max_new_tokens, len(results))
                row.sink = part.sink_of(index)
                if row.sink is not None:
                    row.sink.begin(RowAudio(self.codec(), prompt.ref_code))
                rows.append(row)
                results.append(None)
            return rows

        def finished(row: Row) -> None:
            result = row.error if row.error is not None else outcome(row)
            row.frames = []
            if batch.settle is not None:
                batch.settle(row.index, result)  # handed over now; nothing kept for the end
            else:
                results[row.index] = result

        refill = None
        if batch.admit is not None:
            admit = batch.admit

            def refill(free: int) -> list[Row]:
                more = admit(free)
                return rows_for(more) if more is not None else []

        dropped = None
        if batch.withdrawn is not None:
            withdrawn = batch.withdrawn

            def dropped(row: Row) -> bool:
                return withdrawn(row.index)

        rows = rows_for(batch)
        slots = batch.slots or len(rows)
        if refill is None:  # nothing will join: no more slots than texts
            slots = min(slots, len(rows))
        self.stepper(slots).run(rows, finished, slots, refill, dropped)
        return results

    def sampler(self, params: GenerationParams) -> RowSampler:
        """A row's sampler for ``params``: qwen_tts's values where the request gives none (the
        model folder's generate_config, then qwen_tts's defaults), the request's seed."""
        merged = merged_sampling(self.model, params)
        return RowSampler.seeded(
            talker=Sampling(
                merged["do_sample"], merged["temperature"], merged["top_k"], merged["top_p"]
            ),
            predictor=Sampling(
                merged["subtalker_dosample"],
                merged["subtalker_temperature"],
                merged["subtalker_top_k"],
                merged["subtalker_top_p"],
            ),
            repetition_penalty=merged["repetition_penalty"],
            seed=params.seed,
            device=self.model.model.talker.device,
        )

    def decode(self, row: Row) -> np.ndarray | TtsError:
        """The row's codes as a waveform (an in-context clone's reference codes decoded first
        and their share of the audio cut off, as qwen_tts does)."""
        if not row.frames:
            return TtsError(
                "synthesis_failed",
                "the model produced no frame for this text",
                "Give it a budget (max_new_tokens) of at least 2.",
            )
        codes = row.codes()
        ref_code = row.prompt.ref_code
        if ref_code is not None:
            codes = torch.cat([ref_code.to(codes.device), codes], dim=0)
        wav = self.codec().decode(codes)
        if ref_code is None:
            return wav
        cut = int(int(ref_code.shape[0]) / max(int(codes.shape[0]), 1) * wav.shape[0])
        return wav[cut:]


def merged_sampling(tts, params: GenerationParams) -> dict:
    """The sampling keywords qwen_tts would run ``params`` with (its ``generate_*`` methods
    fill what the request leaves unset from the model's generate_config, then defaults)."""
    hard_defaults = {
        "do_sample": True,
        "top_k": 50,
        "top_p": 1.0,
        "temperature": 0.9,
        "repetition_penalty": 1.05,
        "subtalker_dosample": True,
        "subtalker_top_k": 50,
        "subtalker_top_p": 1.0,
        "subtalker_temperature": 0.9,
    }
    given = sampling_kwargs(params)
    defaults = getattr(tts, "generate_defaults", None) or {}
    return {
        name: given[name] if given.get(name) is not None else defaults.get(name, fallback)
        for name, fallback in hard_defaults.items()
    }
