"""The data that crosses the hooks: pydantic v2 models, documented field by field.

Hosts build ``EngineConfig`` and ``SynthesisRequest``; engines return ``Capabilities``,
``LoadResult`` and ``SynthesisResult``. Every model validates on construction, so a bad value
is a clear ``pydantic.ValidationError`` at the host's door rather than a ``KeyError`` deep in an
engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import TtsError

DType = Literal["float32", "float16", "bfloat16"]
"""Floating-point precision an engine actually loaded, named as torch names it."""

Quantization = Literal["none", "int8"]
"""How an engine stored the weights of its generating layers: ``none`` (in ``dtype``) or
``int8`` (int8 weights, activations rounded to int8 per row; the rest in ``dtype``, the codec
in ``codec_dtype``)."""

VoiceMode = Literal["custom_voice", "voice_design", "voice_clone"]
ModelKind = Literal["custom_voice", "voice_design", "base"]
DeviceSource = Literal["config", "detected"]


class _Model(BaseModel):
    # protected_namespaces=(): fields such as model_path are ours, not pydantic's (pydantic
    # before 2.10 warns about every field starting with "model_").
    model_config = ConfigDict(
        extra="forbid", frozen=True, defer_build=True, protected_namespaces=()
    )


class EngineConfig(BaseModel):
    """One engine configuration as the host stores it; the host may pass all of its fields."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True, protected_namespaces=())

    provider: str = Field(
        description="Engine that answers this config, e.g. 'qwen3_tts'. Other engines return None."
    )
    extra_params: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Engine settings (Device, ModelKey, Speaker, ...). Shared by all engines: each reads "
            "the keys it knows and ignores the rest."
        ),
    )


class Voice(_Model):
    """Who speaks and how; fields left None take the engine's settings from ``extra_params``."""

    mode: VoiceMode = Field(
        default="custom_voice",
        description=(
            "custom_voice: a built-in speaker; voice_design: a voice described by `instruct`; "
            "voice_clone: a voice cloned from `ref_audio`."
        ),
    )
    speaker: str | None = Field(
        default=None, description="Built-in speaker name (custom_voice); case-insensitive."
    )
    language: str | None = Field(
        default=None, description="Language name such as 'English' or 'Auto'; case-insensitive."
    )
    instruct: str | None = Field(
        default=None,
        description="Style instruction (custom_voice) or voice description (voice_design).",
    )
    ref_audio: Path | None = Field(
        default=None, description="Reference recording to clone (voice_clone); any common format."
    )
    ref_text: str | None = Field(
        default=None, description="Transcript of `ref_audio`; required unless x_vector_only."
    )
    x_vector_only: bool | None = Field(
        default=None,
        description=(
            "voice_clone: use only the speaker embedding, no transcript. None takes the engine's "
            "setting from extra_params, whose own default then applies."
        ),
    )


MAX_NEW_TOKENS = 8192
"""The largest frame budget a request may ask for (about 11 minutes of audio)."""


class GenerationParams(_Model):
    """Sampling parameters passed through to the model's ``generate``.

    Every number must be finite and in the range the model can run; anything else is refused
    here, naming the field, before it reaches an engine.
    """

    do_sample: bool = Field(default=True, description="Sample; False picks the most likely token.")
    temperature: float = Field(
        default=0.9, gt=0, allow_inf_nan=False, description="Sampling temperature, > 0."
    )
    top_k: int = Field(default=50, ge=0, description="Top-k sampling; 0 disables it.")
    top_p: float = Field(
        default=1.0, gt=0, le=1, allow_inf_nan=False, description="Nucleus sampling, 0 < p <= 1."
    )
    repetition_penalty: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Repetition penalty; None keeps the model's default.",
    )
    max_new_tokens: int = Field(
        default=2048,
        ge=2,
        le=MAX_NEW_TOKENS,
        description="Frame budget of one generate call (of each piece of a long text), 2..8192. "
        "A piece that uses it all without ending is retried once with twice the budget, then "
        "refused (synthesis_truncated) unless allow_cut. An engine may give a piece less: "
        "the longest its text could take (then a piece that uses that is retried once with "
        "twice it and another seed, then refused as synthesis_runaway).",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        lt=2**63,
        description="Random seed; the same seed, text and settings give the same audio.",
    )
    allow_cut: bool = Field(
        default=False,
        description="Keep a piece that used its whole budget as it is (no retry, no error), "
        "and count it in SynthesisResult.cut_pieces: for quick partial previews and "
        "fixed-length benchmarks. False: a narration is spoken whole or the call fails.",
    )


class SynthesisRequest(_Model):
    """One piece of text to speak into one WAV file."""

    config: EngineConfig = Field(description="The engine configuration to synthesise with.")
    text: str = Field(description="Text to speak.")
    out_path: Path = Field(description="Where the WAV goes; its folder is created if missing.")
    voice: Voice = Field(default_factory=Voice, description="Voice selection.")
    generation: GenerationParams = Field(
        default_factory=GenerationParams, description="Sampling parameters."
    )


class SynthesisResult(_Model):
    """What one synthesis produced, and where and how it ran."""

    provider: str = Field(description="Engine that produced the audio.")
    path: Path = Field(description="The written WAV file.")
    duration_s: float = Field(ge=0, description="Audio length in seconds.")
    sample_rate: int = Field(gt=0, description="Sample rate of the WAV in Hz.")
    device: str = Field(description="Device the model ran on, e.g. 'cuda:0' or 'cpu'.")
    dtype: DType = Field(
        description="Precision the model (talker and code predictor) was loaded in."
    )
    codec_dtype: DType = Field(
        default="float32",
        description="Precision the speech tokenizer (codec) decoded in; float32 whatever dtype is.",
    )
    quantization: Quantization = Field(
        default="none",
        description="'int8' when the talker's and code predictor's layers ran with int8 "
        "weights (the Quantization setting), else 'none'.",
    )
    attn_implementation: str = Field(description="Attention kernel, e.g. 'sdpa'.")
    load_s: float = Field(
        ge=0,
        description="Seconds spent placing the model (one-time imports not included); 0.0 "
        "when it was already resident.",
    )
    synth_s: float = Field(ge=0, description="Seconds spent generating and writing the audio.")
    rtf: float = Field(
        ge=0, description="Real-time factor: synth_s / duration_s; below 1 is faster."
    )
    piece_budgets: list[int] = Field(
        default_factory=list,
        description="The frame budget each piece was spoken with at last: max_new_tokens or, "
        "when smaller, the longest its text could take (an engine's bound against a row whose "
        "end never comes); twice that after a retry. Empty: the engine does not say.",
    )
    batch_size: int = Field(
        default=1,
        ge=1,
        description="How many texts shared the generate call that made this file (1: it ran "
        "alone; the largest such call for a text spoken in pieces). synth_s is those shared "
        "calls' time plus this file's write.",
    )
    pieces: int = Field(
        default=1,
        ge=1,
        description="How many pieces the text was spoken in (a long text is split at sentence "
        "ends; see PieceChars).",
    )
    cut_pieces: int = Field(
        default=0,
        ge=0,
        description="Pieces kept although they used their whole frame budget (only with "
        "GenerationParams.allow_cut; otherwise always 0).",
    )
    backend: str = Field(
        default="qwen_tts",
        description="What ran the generate calls that made this file (see LoadResult.backend).",
    )


class AudioChunk(_Model):
    """One piece of a streamed synthesis (``tts_synthesize_stream``), in order."""

    index: int = Field(ge=0, description="Position in the stream: 0, 1, 2, ...")
    samples: bytes = Field(
        description="Mono 16-bit signed little-endian PCM (may be empty in the final chunk)."
    )
    sample_rate: int = Field(gt=0, description="Samples per second of `samples`.")
    final: bool = Field(
        default=False, description="The last chunk: the file is written and `result` set."
    )
    result: SynthesisResult | None = Field(
        default=None, description="What was written (final chunk only)."
    )

    @model_validator(mode="after")
    def _result_with_final(self) -> AudioChunk:
        if self.final != (self.result is not None):
            raise ValueError("exactly the final chunk carries the result")
        if len(self.samples) % 2:
            raise ValueError("samples must be whole 16-bit samples")
        return self

    @property
    def duration_s(self) -> float:
        """Seconds of audio in this chunk."""
        return len(self.samples) / 2 / self.sample_rate


class ErrorInfo(_Model):
    """A ``TtsError`` as data: what one failed item of a batch carries."""

    code: str = Field(description="Stable error code, e.g. 'empty_text' (as TtsError.code).")
    detail: str = Field(description="What went wrong, for people.")
    hint: str | None = Field(default=None, description="What to do about it, when known.")

    @classmethod
    def from_error(cls, error: TtsError) -> ErrorInfo:
        """The data of ``error``."""
        return cls(code=error.code, detail=error.detail, hint=error.hint)

    def to_error(self) -> TtsError:
        """A ``TtsError`` to raise (``str()`` is ``"<code>: <detail>"``)."""
        return TtsError(self.code, self.detail, self.hint)


class BatchItem(_Model):
    """The outcome of one request of ``tts_synthesize_batch``: a result or an error."""

    index: int = Field(ge=0, description="Position of the request in the list passed in.")
    result: SynthesisResult | None = Field(
        default=None, description="What was written; None when the request failed."
    )
    error: ErrorInfo | None = Field(
        default=None, description="Why the request failed (nothing was written); else None."
    )

    @model_validator(mode="after")
    def _one_outcome(self) -> BatchItem:
        if (self.result is None) == (self.error is None):
            raise ValueError("a BatchItem has exactly one of result and error")
        return self

    @property
    def ok(self) -> bool:
        """True when the request was written."""
        return self.result is not None


class LoadResult(_Model):
    """The outcome of a load: what is resident now and how the decision was made."""

    provider: str = Field(description="Engine that loaded the model.")
    model: str = Field(description="The model as configured: a registry key or a folder path.")
    model_path: Path = Field(description="Folder the weights were loaded from.")
    device: str = Field(description="Device the model sits on, e.g. 'cuda:0' or 'cpu'.")
    device_source: DeviceSource = Field(
        description="'config' when extra_params.Device chose the device, 'detected' otherwise."
    )
    dtype: DType = Field(description="Precision the model was loaded in.")
    attn_implementation: str = Field(description="Attention kernel, e.g. 'sdpa'.")
    load_s: float = Field(
        ge=0,
        description="Seconds spent placing the model (one-time imports not included); "
        "when cached, this call's whole (tiny) time.",
    )
    cached: bool = Field(description="True when the model was already resident as configured.")
    voice_modes: list[VoiceMode] = Field(
        default_factory=list,
        description="Voice modes the loaded model speaks; the first is its own (a host can "
        "use it when the user chose none).",
    )
    batch_size: int = Field(
        default=1,
        ge=1,
        description="Most texts one generate call takes with these settings (BatchSize, or "
        "the engine's choice for the device); a host can send requests in lists this long.",
    )
    backend: str = Field(
        default="qwen_tts",
        description="What runs the generate calls: 'qwen_tts' (its own loop) or "
        "'cuda_graphs' (decode steps replayed as CUDA graphs).",
    )
    codec_dtype: DType = Field(
        default="float32",
        description="Precision of the speech tokenizer (codec); float32 whatever the "
        "model's dtype, as half precision overflows in it.",
    )
    quantization: Quantization = Field(
        default="none",
        description="'int8' when the talker's and code predictor's layers hold int8 weights "
        "(the Quantization setting), else 'none'.",
    )


class GpuInfo(_Model):
    """One CUDA device as torch sees it."""

    index: int = Field(ge=0, description="CUDA device index.")
    name: str = Field(description="Device name, e.g. 'NVIDIA H100 80GB HBM3'.")
    total_memory_bytes: int = Field(ge=0, description="Total device memory in bytes.")
    free_memory_bytes: int | None = Field(
        default=None, ge=0, description="Free device memory in bytes, when it could be queried."
    )
    compute_capability: tuple[int, int] = Field(description="(major, minor), e.g. (9, 0).")
    bf16_supported: bool = Field(description="Whether the device computes in bfloat16.")


class AccelerationStatus(_Model):
    """What acceleration this machine offers, and why not when it offers none."""

    supported: bool = Field(description="True when a usable CUDA GPU is present.")
    preferred_device: str = Field(description="'cuda:0' when supported, else 'cpu'.")
    backend: Literal["pytorch-cuda", "cpu"] = Field(description="Backend the engine would use.")
    reasons: list[str] = Field(
        default_factory=list,
        description="Why acceleration is unsupported, as stable codes (e.g. 'cuda_not_available').",
    )
    os: dict[str, str] = Field(default_factory=dict, description="Operating system facts.")
    torch_version: str | None = Field(default=None, description="torch.__version__, if importable.")
    torch_cuda_version: str | None = Field(
        default=None, description="CUDA version torch was built with (torch.version.cuda)."
    )
    cuda_available: bool = Field(default=False, description="torch.cuda.is_available().")
    device_count: int = Field(default=0, ge=0, description="torch.cuda.device_count().")
    gpus: list[GpuInfo] = Field(default_factory=list, description="Every visible CUDA device.")
    min_compute_capability: tuple[int, int] = Field(
        default=(6, 0), description="Lowest compute capability the engine accepts."
    )
    flash_attn_available: bool = Field(
        default=False, description="Whether the flash_attn package is importable."
    )
    extras: dict[str, Any] = Field(
        default_factory=dict,
        description="Facts particular to the engine (optional libraries and the backends they "
        "enable, their versions), each documented by the engine; JSON-ready values.",
    )


class ModelInfo(_Model):
    """One model the engine knows, and whether its local folder is usable."""

    key: str = Field(
        description="Registry key used in settings, e.g. 'custom_0_6b'; for a folder the "
        "config names directly (ModelPath), that path."
    )
    repo_id: str = Field(
        description="Published repository id, e.g. 'Qwen/Qwen3-TTS-12Hz-...'; empty for a "
        "local folder the engine cannot match to one."
    )
    kind: ModelKind | None = Field(
        description="custom_voice, voice_design or base (voice cloning); None when a local "
        "folder's config cannot be read."
    )
    size: Literal["0.6B", "1.7B"] | None = Field(
        description="Parameter count class; None when a local folder's config does not say."
    )
    configured: bool = Field(
        default=False,
        description="True for the model the config passed to tts_capabilities selects (with "
        "no config of this engine's, its default model).",
    )
    local_path: Path | None = Field(default=None, description="Where the engine looks for it.")
    present: bool = Field(description="Whether the local folder exists.")
    valid: bool = Field(description="Whether the folder holds every file a load needs.")
    missing: list[str] = Field(default_factory=list, description="Files the folder lacks.")
    speakers: list[str] = Field(default_factory=list, description="Built-in speakers, if any.")
    languages: list[str] = Field(default_factory=list, description="Supported languages.")


class EngineStatus(_Model):
    """What an engine holds in memory now, and the last load that failed."""

    provider: str = Field(description="Engine that reports.")
    loaded: bool = Field(description="True when a model is resident.")
    model: str | None = Field(
        default=None, description="The resident model as configured: a registry key or a path."
    )
    model_path: Path | None = Field(default=None, description="Folder it was loaded from.")
    device: str | None = Field(default=None, description="Device it sits on, e.g. 'cuda:0'.")
    dtype: DType | None = Field(default=None, description="Precision it was loaded in.")
    codec_dtype: DType | None = Field(
        default=None, description="Precision of its speech tokenizer (codec): float32."
    )
    quantization: Quantization | None = Field(
        default=None,
        description="'int8' when its generating layers hold int8 weights, else 'none'.",
    )
    attn_implementation: str | None = Field(default=None, description="Attention kernel.")
    backend: str | None = Field(
        default=None, description="What runs its generate calls, e.g. 'qwen_tts'."
    )
    last_error: ErrorInfo | None = Field(
        default=None,
        description="The last failed load (a device that refused the model, a folder that did "
        "not load, a missing runtime); cleared by the next successful load.",
    )


class Capabilities(_Model):
    """What an engine offers; returned by every engine from ``tts_capabilities``."""

    provider: str = Field(description="Provider name configs use to select this engine.")
    display_name: str = Field(description="Human-readable engine name.")
    version: str = Field(description="Engine version.")
    voice_modes: list[VoiceMode] = Field(description="Voice modes the engine supports.")
    sample_rate: int = Field(gt=0, description="Output sample rate in Hz.")
    models: list[ModelInfo] = Field(default_factory=list, description="Known models.")
    acceleration: AccelerationStatus = Field(description="This machine's acceleration status.")
    settings_schema: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON schema of the engine's extra_params; a property may list its roles "
        "under 'x-roles' (hookspecs.SETTING_ROLES), so a host can find, say, the batch-size "
        "setting without knowing its name.",
    )
