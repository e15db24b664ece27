"""How errors cross HTTP: the status of every contract code, and the codes any HTTP front adds.

One map for every server that speaks for an engine (the example host's routes, the Ray Serve
application) and every client that reads them, so a ``TtsError`` raised in an engine reaches a
caller on another machine as the same code, detail, hint and status. The body is always
``{"code", "detail", "hint"}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .models import GenerationParams, Voice

UNPROCESSABLE = 422
TOO_LARGE = 413

WIRE_CODES: dict[str, str] = {
    "invalid_request": "the request body does not validate",
    "request_too_large": "the request body is over the server's limit",
    "not_found": "no route has this path",
    "method_not_allowed": "the route does not take this method",
    "server_busy": "the server cannot take more work now: retry later",
    "internal_error": "the server failed in a way it has no code for (its log has the trace)",
    "service_unavailable": "the service did not answer, or its replica died, try after try",
}
"""Codes of an HTTP front itself, beside the contract's ``ERROR_CODES``."""

HTTP_STATUS: dict[str, int] = {
    # the request is wrong: the caller can fix it
    **dict.fromkeys(
        (
            "invalid_request",
            "invalid_device",
            "invalid_settings",
            "empty_text",
            "invalid_text",
            "instruct_required",
            "unsupported_mode",
            "unsupported_speaker",
            "unsupported_language",
            "ref_audio_invalid",
            "ref_text_required",
            "synthesis_truncated",
        ),
        UNPROCESSABLE,
    ),
    "text_too_long": TOO_LARGE,
    "request_too_large": TOO_LARGE,
    "not_found": 404,
    "method_not_allowed": 405,
    # the engine cannot serve it until the machine changes (a model, a driver, a package)
    **dict.fromkeys(
        (
            "unknown_model_key",
            "model_not_found",
            "model_invalid",
            "model_load_failed",
            "model_to_device_failed",
            "engine_unavailable",
            "server_busy",
            "service_unavailable",
        ),
        503,
    ),
    # the server itself failed
    **dict.fromkeys(
        (
            "synthesis_failed",
            "synthesis_runaway",
            "invalid_audio",
            "output_write_failed",
            "internal_error",
        ),
        500,
    ),
}
"""HTTP status of every contract and wire code."""

FRAMEWORK_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
"""The wire code of an error a web framework answers by itself (no route, wrong method, a body
over its limit); any other status it answers is ``invalid_request``."""


def status_for(code: str, statuses: dict[str, int] = HTTP_STATUS) -> int:
    """The HTTP status for an error code; 500 for a code no list knows (another engine's)."""
    return statuses.get(code, 500)


# --- synthesis over HTTP ----------------------------------------------------------------------

RESULT_HEADER = "X-TTS-Result"
"""Response header of a synthesis route: the ``SynthesisResult`` fields as JSON, ``path``
left out (the WAV is the body; the caller writes it where it wants)."""

REPLICA_HEADER = "X-TTS-Replica"
"""Response header naming the replica that spoke (to see requests spread over replicas)."""


class SpeechRequest(BaseModel):
    """One text to speak, as data: what a client sends a service (``POST /v1/synthesize``).

    The reference recording of a voice clone travels as bytes (``ref_audio_b64``), never as a
    path: the replica that speaks it may be on another machine.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(description="Text to speak.")
    voice: Voice = Field(default_factory=Voice, description="Voice; its ref_audio must be None.")
    ref_audio_b64: str | None = Field(
        default=None, description="The reference recording's file bytes, base64 (a clone)."
    )
    generation: GenerationParams = Field(default_factory=GenerationParams)
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Engine settings (extra_params) for this request; the service's own model, "
        "device and batch settings may be repeated, never changed.",
    )

    @field_validator("voice")
    @classmethod
    def _no_path(cls, voice: Voice) -> Voice:
        if voice.ref_audio is not None:
            raise ValueError("voice.ref_audio is a path; send the recording as ref_audio_b64")
        return voice

    @field_validator("ref_audio_b64")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("ref_audio_b64 is not base64") from None
        return value

    def ref_audio_bytes(self) -> bytes | None:
        """The reference recording's bytes, or None."""
        return None if self.ref_audio_b64 is None else base64.b64decode(self.ref_audio_b64)
