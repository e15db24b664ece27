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
  on qwen_tts's own loop over the same weights in memory (``generation.generate``), with the
  reason logged, when the backend was chosen by ``Backend=auto``. With ``Backend=cuda_graphs``
  set explicitly, a list of texts is spoken one by one through the graphs, and sampling values
  the graphs cannot honour are refused (``invalid_settings``), never silently replaced.

Imported only when a model is loaded (it imports torch). Unverified on a GPU so far: the first
GPU session runs ``scripts/gpu_check.sh``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookspecs import GenerationParams, TtsError

from ..devices import device_unusable_error
from ..generation import clone_prompts, generate, sampling_kwargs, seeded, synthesis_error
from ..loading import (
    check_device,
    forget_locals,
    free_device_memory,
    import_qwen_tts,
    keep_codec_in_float32,
    set_pad_token,
    verify_placement,
)
from ..log import get_logger
from ..quiet import quiet_import, quiet_output
from . import RUNTIME_IMPORT_ERRORS, runtime_unavailable

if TYPE_CHECKING:
    import numpy as np

    from ..devices import DevicePlan
    from ..voices import VoicePlan

log = get_logger(__name__)

GRAPH_SAMPLING = GenerationParams(do_sample=True, top_k=50, temperature=0.9, top_p=1.0)
"""The sampling values faster-qwen3-tts 0.3.x bakes into its code-predictor graph."""

MAX_SEQ_LEN = 4096
"""Static KV cache positions (prompt + frames). Larger costs memory (~110 KB per position for
the 0.6B talker in half precision); a request that might not fit runs on qwen_tts's loop."""

PROMPT_MARGIN = 512
"""Positions kept for the prompt (instruction, speaker, text of one piece)."""

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
        import_qwen_tts()
        check_device(plan.device)
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
        except TtsError as err:
            error: TtsError = forget_locals(err)  # type: ignore[assignment]
        except Exception as exc:  # noqa: BLE001 - loading or capture failed on the device
            error = device_unusable_error(plan.device, exc)
            error.__cause__ = forget_locals(exc)
        else:
            return cls(fast, plan)
        _drop(fast)
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
        return str(self.fast.speech_tokenizer.model.dtype).removeprefix("torch.")

    def generate(
        self, texts: Sequence[str], voices: Sequence[VoicePlan], params: GenerationParams
    ) -> list[np.ndarray]:
        explicit = self.plan.backend_source == "config"
        why = self.why_not_graphs(len(texts), params)
        if why is not None and not (why == SEVERAL_TEXTS and explicit):
            if explicit:
                raise TtsError(
                    "invalid_settings",
                    f"Backend=cuda_graphs cannot run this request: {why}",
                    "Set Backend=auto (such requests then run on qwen_tts's own loop), or use "
                    "the graphs' sampling values (do_sample=true, top_k=50, temperature=0.9, "
                    "top_p=1.0) and a smaller max_new_tokens.",
                )
            log.info("tts.backend.qwen_tts_loop", reason=why, texts=len(texts))
            return generate(self.fast.model, self.plan, texts, voices, params)
        return [self._one(text, voice, params) for text, voice in zip(texts, voices, strict=True)]

    def why_not_graphs(self, texts: int, params: GenerationParams) -> str | None:
        """Why a call cannot run on the graphs as one text (``SEVERAL_TEXTS``), or None."""
        fixed = GRAPH_SAMPLING
        wanted = (params.do_sample, params.top_k, params.temperature, params.top_p)
        if wanted != (fixed.do_sample, fixed.top_k, fixed.temperature, fixed.top_p):
            return (
                "its sampling values differ from the code-predictor graph's (do_sample=true, "
                "top_k=50, temperature=0.9, top_p=1.0)"
            )
        if params.max_new_tokens > MAX_SEQ_LEN - PROMPT_MARGIN:
            return (
                f"{params.max_new_tokens} frames do not fit the static cache "
                f"({MAX_SEQ_LEN} positions, {PROMPT_MARGIN} kept for the prompt)"
            )
        if texts > 1:
            return SEVERAL_TEXTS
        return None

    def _one(self, text: str, voice: VoicePlan, params: GenerationParams) -> np.ndarray:
        """One text through the graphs."""
        kwargs = sampling_kwargs(params)
        common = {
            "max_new_tokens": params.max_new_tokens,
            "temperature": kwargs["temperature"],
            "top_k": kwargs["top_k"],
            "top_p": kwargs["top_p"],
            "do_sample": kwargs["do_sample"],
        }
        if params.repetition_penalty is not None:
            common["repetition_penalty"] = params.repetition_penalty
        fast = self.fast
        try:
            with seeded(params.seed, self.plan), quiet_output("faster_qwen3_tts generate"):
                if voice.mode == "custom_voice":
                    wavs, _rate = fast.generate_custom_voice(
                        text=text,
                        speaker=voice.speaker,
                        language=voice.language,
                        instruct=voice.instruct,
                        **common,
                    )
                elif voice.mode == "voice_design":
                    wavs, _rate = fast.generate_voice_design(
                        text=text, instruct=voice.instruct, language=voice.language, **common
                    )
                else:
                    wavs, _rate = fast.generate_voice_clone(
                        text=text,
                        language=voice.language,
                        voice_clone_prompt=clone_prompts(fast.model, [voice]),
                        **common,
                    )
        except Exception as exc:  # noqa: BLE001 - anything the graphs or torch raise
            raise synthesis_error(exc) from forget_locals(exc)
        return wavs[0]

    def ran_out(self, waveform: np.ndarray, max_new_tokens: int) -> bool:
        # The graphs return max_new_tokens frames for a text that never ended, qwen_tts's loop
        # one fewer; the lower bound covers both (an end on the last frame costs a retry).
        samples_per_frame = self.fast.speech_tokenizer.get_decode_upsample_rate()
        return round(len(waveform) / samples_per_frame) >= max_new_tokens - 1

    def release(self) -> None:
        fast, self._fast = self._fast, None
        _drop(fast)


def _drop(fast: Any) -> None:
    """Free the graphs' memory pools (a captured graph holds its pool until dropped) and the
    weights."""
    if fast is not None:
        for graph in (getattr(fast, "predictor_graph", None), getattr(fast, "talker_graph", None)):
            if graph is not None and hasattr(graph, "graph"):
                graph.graph = None
    del fast
    free_device_memory()
