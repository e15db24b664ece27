"""This engine's keys in ``EngineConfig.extra_params``, parsed and validated once per call."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hookspecs import ROLES_KEY, Quantization, TtsError

if TYPE_CHECKING:
    from hookspecs import ErrorInfo

from .hints import DEVICE_FORMS
from .registry import DEFAULT_MODEL_KEY, MODELS, ResolvedModel, resolve_model

MODELS_DIR_ENV = "QWEN_TTS_MODELS_DIR"
FRAME_BOUND_ENV = "QWEN3TTS_FRAME_BOUND"
"""FrameBound where a config does not set it (``auto`` when unset): a deployment's default.
The test suite sets ``off``: its tiny random checkpoints speak lengths that have nothing to do
with their text (tests/test_budgets.py sets FrameBound itself)."""

PRECISIONS = {
    "auto": "auto",
    "fp32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}
PRECISION_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
"""The short name a Precision setting gives each dtype (what messages and hosts show)."""
QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)
"""What a Quantization setting may name besides auto (the contract's ``Quantization``)."""
BACKEND_NAMES = ("qwen_tts", "cuda_graphs", "stepper")
"""The backends a Backend setting may name (besides auto); backends.BACKENDS maps each."""
MAX_BATCH_SIZE = 64
DEFAULT_PIECE_CHARS = 200
"""About 45 s of Chinese or 13 s of English speech: far inside the default 2048-frame budget
(164 s), and sentence-sized, which Qwen3-TTS speaks best."""
MIN_PIECE_CHARS = 20
MAX_PIECE_CHARS = 2000
DEFAULT_MAX_CHARS = 20_000
HARD_MAX_CHARS = 1_000_000


def _any_case(word: str) -> str:
    """An ECMA-262-safe regex matching ``word`` in any case (JSON Schema has no (?i))."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


DEVICE_PATTERN = (
    r"^\s*("
    + "|".join(_any_case(w) for w in ("auto", "default", "cpu", "mps"))
    + "|"
    + _any_case("cuda")
    + r"(:[0-9]{1,3})?)?\s*$"
)
"""Accepted Device forms; the same regex the engine applies, published in the settings schema."""


def _roles(*roles: str) -> dict[str, Any]:
    """A property's ``x-roles`` (hookspecs.SETTING_ROLES): what a host may use it for."""
    return {ROLES_KEY: list(roles)}


class EngineSettings(BaseModel):
    """The Qwen3-TTS keys of ``extra_params``. Unknown keys belong to other engines: ignored.

    ``Device`` is parsed here, once: it holds ``None`` (detect), ``cpu``, ``mps`` or
    ``cuda:N``, whatever case and spelling the host stored.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    Device: str | None = Field(
        default=None,
        description=f"Where the model runs: {DEVICE_FORMS}. Empty or 'auto' picks cuda:0 when "
        "a usable GPU is present, else cpu. An explicit GPU that fails is an error, never a "
        "silent CPU run.",
        json_schema_extra={"pattern": DEVICE_PATTERN, **_roles("device", "resident")},
    )
    Precision: Literal["auto", "fp32", "fp16", "bf16", "float32", "float16", "bfloat16"] = Field(
        default="auto",
        description="auto: bf16 on GPUs with compute capability >= 8.0, fp16 on older GPUs, "
        "fp32 on the CPU. bf16 on the CPU runs where the CPU computes it natively (AMX or "
        "AVX512-BF16; experimental) and is refused elsewhere; fp16 on the CPU is refused. The "
        "codec always runs fp32.",
        json_schema_extra=_roles("resident"),
    )
    Quantization: Literal[("auto", *QUANTIZATIONS)] = Field(  # type: ignore[valid-type]
        default="auto",
        description="int8: the talker's and code predictor's layers with int8 weights, on the "
        "CPU only: faster than fp32 and bf16 there, for one preview and for a dub (README, "
        "int8 weights on the CPU). Embeddings, norms and the code heads stay in Precision's "
        "dtype (fp32 by default), the codec fp32. Refused on GPUs and MPS, and on a CPU "
        "without int8 kernels. auto and none: no quantization. Experimental until heard on "
        "real weights: preview one text with one seed both ways to compare.",
        json_schema_extra=_roles("resident"),
    )
    Attention: Literal["auto", "sdpa", "flash_attention_2", "eager"] = Field(
        default="auto",
        description="Attention kernel. auto: flash_attention_2 when installed on a bf16 GPU, "
        "else sdpa.",
        json_schema_extra=_roles("resident"),
    )
    ModelKey: str = Field(
        default=DEFAULT_MODEL_KEY,
        description="Which published model to use (ignored when ModelPath is set).",
        json_schema_extra={"enum": list(MODELS), **_roles("model", "resident")},
    )
    ModelPath: Path | None = Field(
        default=None,
        description="A local model folder; overrides ModelKey.",
        json_schema_extra=_roles("model", "model_folder", "resident"),
    )
    ModelsDir: Path | None = Field(
        default=None,
        description=f"Folder holding model folders named like the repositories. Default: "
        f"${MODELS_DIR_ENV}, else the user data folder.",
        json_schema_extra=_roles("model", "resident"),
    )
    Language: str = Field(
        default="Auto",
        description="Language, e.g. English or Auto.",
        json_schema_extra=_roles("voice"),
    )
    Speaker: str | None = Field(
        default=None,
        description="Built-in speaker; default: the model's first speaker.",
        json_schema_extra=_roles("voice"),
    )
    Instruct: str | None = Field(
        default=None,
        description="Style instruction or, for voice design, the voice described.",
        json_schema_extra=_roles("voice"),
    )
    RefAudio: Path | None = Field(
        default=None,
        description="Reference recording for cloning.",
        json_schema_extra=_roles("reference_audio"),
    )
    RefText: str | None = Field(
        default=None, description="Transcript of RefAudio.", json_schema_extra=_roles("voice")
    )
    XVectorOnly: bool = Field(
        default=True,
        description="Voice clone from the speaker embedding only (no transcript needed).",
        json_schema_extra=_roles("voice"),
    )
    Backend: Literal[("auto", *BACKEND_NAMES)] = Field(  # type: ignore[valid-type]
        default="auto",
        description="What runs the generate calls. auto: cuda_graphs on a CUDA GPU when "
        "faster-qwen3-tts is installed (pip install qwen3tts-plugin[fast]), else qwen_tts. "
        "stepper: our own decode loop (rows leave and join a running batch, per-row seeds; "
        "sdpa or eager attention). "
        "cuda_graphs asked for where it cannot run is refused, never swapped.",
        json_schema_extra=_roles("resident"),
    )
    BatchSize: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)] = Field(
        default="auto",
        description=f"Most texts one generate call takes (1..{MAX_BATCH_SIZE}; 1 turns "
        "batching off). auto: the engine's measured choice for the device.",
        json_schema_extra=_roles("batch_size", "speed_only"),
    )

    FrameBound: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: each piece's frame budget is the smaller of max_new_tokens and the "
        "longest its text could take (2.5x ordinary speech, at least 4 s), so a line whose "
        "end never comes stops early: retried once at twice that with another seed, then "
        "refused (synthesis_runaway). off: max_new_tokens alone (a host that bounds its "
        "budgets itself, or speech far slower than words: singing, long held sounds).",
    )
    PieceChars: int = Field(
        default=DEFAULT_PIECE_CHARS,
        ge=MIN_PIECE_CHARS,
        le=MAX_PIECE_CHARS,
        description="Target length of one piece of a long text, in characters "
        f"({MIN_PIECE_CHARS}..{MAX_PIECE_CHARS}). Longer texts are split at sentence ends "
        "(then clause marks, then between words), spoken as one batch and joined with short "
        "pauses; shorter texts are spoken whole.",
    )
    MaxChars: int = Field(
        default=DEFAULT_MAX_CHARS,
        ge=1,
        le=HARD_MAX_CHARS,
        description="Longest text one request may carry, in characters; longer is refused "
        "(text_too_long) before any model work.",
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_means_unset(cls, data: Any) -> Any:
        """Hosts store cleared fields as "", "  " or null: all mean "use the default"."""
        if isinstance(data, dict):
            return {
                k: v
                for k, v in data.items()
                if v is not None and not (isinstance(v, str) and not v.strip())
            }
        return data

    @model_validator(mode="before")
    @classmethod
    def _frame_bound_default(cls, data: Any) -> Any:
        """FrameBound from ``$QWEN3TTS_FRAME_BOUND`` when the config leaves it unset (then
        validated like a set value)."""
        env = os.environ.get(FRAME_BOUND_ENV, "").strip()
        if isinstance(data, dict) and env and not str(data.get("FrameBound") or "").strip():
            return {**data, "FrameBound": env}
        return data

    @field_validator("Device", mode="before")
    @classmethod
    def _device(cls, value: Any) -> str | None:
        """The one place a Device setting is parsed (``invalid_device`` when it is none of
        the accepted forms; raised as is, so it wins over any other setting's error)."""
        return parse_device(value)

    @field_validator(
        "Precision", "Quantization", "Attention", "Backend", "FrameBound", mode="before"
    )
    @classmethod
    def _fold_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("BatchSize", mode="before")
    @classmethod
    def _batch_size_text(cls, value: Any) -> Any:
        """'auto' in any case, and whole numbers typed as text ('8'); never a bool."""
        if isinstance(value, bool):
            raise ValueError("BatchSize is 'auto' or a whole number, not true/false")
        if isinstance(value, str):
            text = value.strip().lower()
            return int(text) if text.isascii() and text.isdigit() else text
        return value

    @property
    def dtype_request(self) -> str:
        """Requested precision as a torch dtype name, or ``"auto"``."""
        return PRECISIONS[self.Precision]

    @property
    def models_dir(self) -> Path:
        """Where registry models live: ModelsDir, else $QWEN_TTS_MODELS_DIR, else user data."""
        if self.ModelsDir is not None:
            return self.ModelsDir.expanduser()
        env = os.environ.get(MODELS_DIR_ENV)
        if env:
            return Path(env).expanduser()
        from platformdirs import user_data_dir

        return Path(user_data_dir("qwen3tts_plugin")) / "models"

    @property
    def model(self) -> ResolvedModel:
        """The model folder these settings select (``unknown_model_key`` when ModelKey names
        none); nothing on disk is looked at."""
        return resolve_model(self.ModelPath, self.ModelKey, self.models_dir)


def parse_settings(extra_params: dict[str, Any] | None) -> EngineSettings:
    """Validate ``extra_params``: ``invalid_device`` for Device (checked first), else
    ``invalid_settings`` naming the key."""
    try:
        settings = EngineSettings.model_validate(extra_params or {})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        key = str(first["loc"][0]) if first["loc"] else "extra_params"
        detail = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'extra_params'}: {e['msg']} (got {e['input']!r})"
            for e in errors
        )
        raise TtsError("invalid_settings", detail, f"Fix the {key} setting.") from None
    return settings


MODEL_KEYS = ("ModelKey", "ModelPath", "ModelsDir")
"""The settings that say which model folder a config selects."""


def model_settings(extra_params: dict[str, Any] | None) -> EngineSettings:
    """The model-selecting settings alone, each one that does not validate left at its default:
    for listings (``tts_capabilities``) that must answer whatever else the config holds."""
    given = {k: v for k, v in (extra_params or {}).items() if k in MODEL_KEYS}
    kept = {}
    for key, value in given.items():
        try:
            EngineSettings.model_validate({key: value})
        except ValidationError:
            continue
        kept[key] = value
    return EngineSettings.model_validate(kept)


def parse_device(value: Any) -> str | None:
    """Normalise a Device setting: None means "detect"; ``cuda`` means ``cuda:0``.
    (``EngineSettings`` calls it; the rest of the engine reads ``EngineSettings.Device``.)"""
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_device(value)
    text = value.strip().lower()
    if text in ("", "auto", "default"):
        return None
    if text in ("cpu", "mps"):
        return text
    if text == "cuda":
        return "cuda:0"
    prefix, _, index = text.partition(":")
    if prefix == "cuda" and index.isascii() and index.isdigit() and len(index) <= 3:
        return f"cuda:{int(index)}"
    raise invalid_device(value)


def invalid_device(value: Any) -> TtsError:
    """The error for a Device value that is not one of the accepted forms."""
    return TtsError(
        "invalid_device",
        f"Device {value!r} is not a device this engine understands; accepted: {DEVICE_FORMS}",
        "Use 'cuda:0' for the first GPU, 'cpu' to run on the CPU, or 'auto' to detect.",
    )


def check_settings(extra_params: dict[str, Any]) -> list[ErrorInfo]:
    """``tts_check_settings``: the refusals a load would give these settings, before any
    machine check (device probe, model folder); ``[]`` when all are accepted."""
    from hookspecs import ErrorInfo

    try:
        parse_settings(extra_params).model  # noqa: B018 - resolving is the check
    except TtsError as err:
        return [ErrorInfo.from_error(err)]
    return []


def settings_schema() -> dict[str, Any]:
    """JSON schema of the engine's ``extra_params``, for a host's settings form."""
    return EngineSettings.model_json_schema()
