"""The CUDA-graph backend: faster-qwen3-tts 0.3.x replays the talker's and code predictor's
decode steps as CUDA graphs with a static KV cache (kernel launches, not arithmetic, bound a
decode step on a GPU).

The device policy stays the engine's: faster-qwen3-tts loads through qwen_tts with
``device_map`` on the plan's device; the codec is then given float32 and everything is
verified as for ``qwen_tts``. Graphs are captured at load, so load time includes capture.

Its code-predictor graph samples with fixed values (``do_sample=True, top_k=50,
temperature=0.9, top_p=1.0``), and it speaks one text per call. What runs where:

- one text with those sampling values, within the static cache: the graphs;
- anything else (other sampling values, a list of texts, a budget the cache cannot hold) runs
  on qwen_tts's own loop over the same weights in memory (``qwen_tts.calls.generate``), with
  the reason logged, when the backend was chosen by ``Backend=auto``. A batch marked ``exact``
  (``Backend=cuda_graphs`` set explicitly) has its texts spoken one by one through the graphs,
  and sampling values the graphs cannot honour are refused (``invalid_settings``), never
  silently replaced.

Imported only when a model is loaded (it imports torch). Unverified on a GPU so far: the first
GPU session runs ``scripts/gpu_check.sh``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookspecs import GenerationParams, TtsError
from hookspecs.models import MAX_NEW_TOKENS

from ..log import get_logger
from ..quiet import quiet_import, quiet_output
from .device import free_device_memory
from .failures import (
    RUNTIME_IMPORT_ERRORS,
    device_unusable_error,
    forget_locals,
    runtime_unavailable,
)
from .qwen_tts.backend import QwenTtsBackend, frames_in
from .qwen_tts.calls import generate, sampling_kwargs, speak
from .qwen_tts.placement import codec_dtype, keep_codec_in_float32, set_pad_token, verify_placement

if TYPE_CHECKING:
    import numpy as np

    from ..devices import DevicePlan
    from ..voices import VoicePlan
    from . import Batch

log = get_logger(__name__)

GRAPH_SAMPLING = GenerationParams(do_sample=True, top_k=50, temperature=0.9, top_p=1.0)
"""The sampling values faster-qwen3-tts 0.3.x bakes into its code-predictor graph."""

MAX_SEQ_LEN = 4096
"""Static KV cache positions (prompt + frames). Larger costs memory (~110 KB per position for
the 0.6B talker in half precision); a request that might not fit runs on qwen_tts's loop."""

PROMPT_MARGIN = 512
"""Positions an explicit cuda_graphs keeps for the prompt: its largest frame budget is
MAX_SEQ_LEN - PROMPT_MARGIN."""

PROMPT_OVERHEAD = 64
"""Positions of a prompt besides its text (chat markers, speaker and language codes)."""


def prompt_positions(text: str, voice: VoicePlan) -> int:
    """An upper bound on the static-cache positions a prompt takes: a text token is never
    shorter than a character, and an in-context clone adds its reference's codes (12.5 per
    second) and transcript."""
    positions = PROMPT_OVERHEAD + len(text) + len(voice.instruct or "")
    if voice.mode == "voice_clone" and not voice.x_vector_only:
        audio, rate = voice.reference or ((), 1)
        positions += math.ceil(len(audio) / rate * 12.5) + len(voice.ref_text or "")
    return positions


WARMUP_PREFILL = 100

SEVERAL_TEXTS = "several texts in one call (the graphs speak one at a time)"
"""Provisional rule until measured on a GPU: under auto, a list runs as one batched qwen_tts
call on the same weights (a decode step is launch-bound, so batching is nearly free there too);
a single text goes through the graphs."""


class CudaGraphsBackend:
    """A ``FasterQwen3TTS`` on one CUDA device, its graphs captured at load."""

    name = "cuda_graphs"

    def __init__(self, fast: Any, plan: DevicePlan) -> None:
        self._fast: Any | None = fast
        self.plan = plan

    @classmethod
    def preflight(cls, plan: DevicePlan) -> None:
        QwenTtsBackend.preflight(plan)  # qwen_tts imported, the device proven
        try:
            quiet_import("faster_qwen3_tts")
        except RUNTIME_IMPORT_ERRORS as exc:
            raise runtime_unavailable("faster_qwen3_tts (the cuda_graphs backend)", exc) from exc

    @classmethod
    def load(cls, path: Path, plan: DevicePlan) -> CudaGraphsBackend:
        import torch
        from faster_qwen3_tts import FasterQwen3TTS

        fast = None
        try:
            with quiet_output("faster_qwen3_tts load"):
                fast = FasterQwen3TTS.from_pretrained(
                    str(path),
                    device=plan.device,
                    dtype=getattr(torch, plan.dtype),
                    attn_implementation=plan.attn_implementation,
                    max_seq_len=MAX_SEQ_LEN,
                )
                keep_codec_in_float32(fast.model, path, plan)
                verify_placement(fast.model, plan)
                set_pad_token(fast.model)
                fast.warmup(prefill_len=WARMUP_PREFILL)  # the graph capture
                prime_mask_table(fast, plan.device)
        except TtsError as err:
            error: TtsError = forget_locals(err)  # type: ignore[assignment]
        except Exception as exc:  # noqa: BLE001 - loading or capture failed on the device
            error = device_unusable_error(plan.device, exc)
            error.__cause__ = forget_locals(exc)
        else:
            return cls(fast, plan)
        _clear_graphs(fast)
        fast = None  # a half-built model must not hold VRAM (the error keeps no frames)
        free_device_memory()
        raise error

    @property
    def fast(self) -> Any:
        if self._fast is None:
            raise RuntimeError("this backend was released")
        return self._fast

    @property
    def model(self) -> Any:
        """The qwen_tts model under the graphs (benchmarks and checks compare against it)."""
        return self.fast.model

    @property
    def sample_rate(self) -> int:
        return int(self.fast.sample_rate)

    @property
    def codec_dtype(self) -> str:
        return codec_dtype(self.fast.model)

    def generate(self, batch: Batch) -> list[np.ndarray]:
        why = self.why_not_graphs(batch.texts, batch.voices, batch.params)
        if why is not None and not (why == SEVERAL_TEXTS and batch.exact):
            if batch.exact:
                raise TtsError(
                    "invalid_settings",
                    f"Backend=cuda_graphs cannot run this request: {why}",
                    "Set Backend=auto (such requests then run on qwen_tts's own loop), or use "
                    "the graphs' sampling values (do_sample=true, top_k=50, temperature=0.9, "
                    "top_p=1.0), shorter pieces (PieceChars) and a smaller max_new_tokens.",
                )
            log.info("tts.backend.qwen_tts_loop", reason=why, texts=len(batch.texts))
            return generate(self.fast.model, self.plan, batch)
        return [
            self._one(text, voice, batch.params)
            for text, voice in zip(batch.texts, batch.voices, strict=True)
        ]

    def max_frames(self, exact: bool) -> int:
        # auto: a budget the cache cannot hold runs on qwen_tts's loop, which takes any
        return MAX_SEQ_LEN - PROMPT_MARGIN if exact else MAX_NEW_TOKENS

    def why_not_graphs(
        self, texts: Sequence[str], voices: Sequence[VoicePlan], params: GenerationParams
    ) -> str | None:
        """Why a call cannot run on the graphs as one text (``SEVERAL_TEXTS``), or None."""
        fixed = GRAPH_SAMPLING
        wanted = (params.do_sample, params.top_k, params.temperature, params.top_p)
        if wanted != (fixed.do_sample, fixed.top_k, fixed.temperature, fixed.top_p):
            return (
                "its sampling values differ from the code-predictor graph's (do_sample=true, "
                "top_k=50, temperature=0.9, top_p=1.0)"
            )
        prompt = max(
            prompt_positions(text, voice) for text, voice in zip(texts, voices, strict=True)
        )
        if prompt + params.max_new_tokens >= MAX_SEQ_LEN - 1:
            return (
                f"about {prompt} prompt positions and {params.max_new_tokens} frames do not fit "
                f"the static cache ({MAX_SEQ_LEN} positions; the graphs would stop short "
                "without a word)"
            )
        if len(texts) > 1:
            return SEVERAL_TEXTS
        return None

    def _one(self, text: str, voice: VoicePlan, params: GenerationParams) -> np.ndarray:
        """One text through the graphs (they take no code-predictor sampling keywords)."""
        fast = self.fast
        with quiet_output("faster_qwen3_tts generate"):
            wavs = speak(
                fast,
                fast.model,
                self.plan,
                [text],
                [voice],
                sampling_kwargs(params, code_predictor=False),
                params.seed,
                one_text=True,
            )
        return wavs[0]

    def ran_out(self, waveform: np.ndarray, max_new_tokens: int) -> bool:
        return frames_in(waveform, self.fast.model) >= max_new_tokens - 1

    def release(self) -> None:
        fast, self._fast = self._fast, None
        _clear_graphs(fast)
        fast = None  # the last reference: the weights and the graphs' pools can go
        free_device_memory()


def prime_mask_table(fast: Any, device: str) -> None:
    """Build the talker graph's mask table for one unpadded text now, at load, instead of in
    the first request: faster-qwen3-tts 0.3.2 builds one mask per static-cache position
    (``MAX_SEQ_LEN`` calls to transformers' mask builder) at capture for no padding key, and
    again on the first generate, whose key is the text's pad count (0 for one text)."""
    import torch

    prime = getattr(fast.talker_graph, "set_generation_state", None)
    if prime is None:  # a 0.3.x without the per-key table: nothing to build ahead
        return
    one_text = torch.ones((1, 1), dtype=torch.long, device=device)
    with torch.inference_mode():  # the graph's mask buffer is an inference tensor
        prime(one_text, None)


def _clear_graphs(fast: Any) -> None:
    """Drop the captured graphs (each holds its memory pool until dropped)."""
    for owner in ("predictor_graph", "talker_graph"):
        graph = getattr(fast, owner, None)
        if graph is not None and hasattr(graph, "graph"):
            graph.graph = None
