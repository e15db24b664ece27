"""The one error type engines raise through the hooks."""

from __future__ import annotations

from typing import Any

ERROR_CODES: dict[str, str] = {
    "invalid_device": "the Device setting is not a device form the engine understands",
    "invalid_settings": "a setting (or a list of requests) the engine cannot honour",
    "unknown_model_key": "ModelKey names no known model",
    "model_not_found": "the model folder does not exist",
    "model_invalid": "the model folder is incomplete, damaged or not a model of this engine",
    "model_load_failed": "the folder passed its checks but did not load",
    "model_to_device_failed": "the model could not be placed on the chosen device",
    "engine_unavailable": "the engine's runtime (torch, its model library) cannot be imported",
    "empty_text": "nothing to speak: no letter or digit in the text",
    "invalid_text": "the text is not valid Unicode",
    "text_too_long": "the text is longer than the engine accepts (MaxChars)",
    "unsupported_mode": "the model does not speak this voice mode",
    "unsupported_speaker": "the model has no such built-in speaker",
    "unsupported_language": "the model does not speak this language",
    "instruct_required": "voice_design needs a description of the voice",
    "ref_audio_invalid": "the reference recording is missing, unreadable or too short",
    "ref_text_required": "an in-context voice clone needs the reference's transcript",
    "synthesis_failed": "generation failed inside the model",
    "synthesis_truncated": "a piece of the text used its whole frame budget without ending",
    "synthesis_runaway": "a piece ran past the longest its text could take (its end never came)",
    "invalid_audio": "the model produced empty or non-finite audio",
    "output_write_failed": "the WAV could not be written where asked",
}
"""Every code the contract's engines raise, with what it means: the one list a host maps
(to HTTP statuses, to messages). Engines may add their own; hosts should treat an unknown code
as an engine failure."""


class TtsError(Exception):
    """A failure with a stable ``code`` a host can match on, a ``detail`` and an optional ``hint``.

    ``str(err)`` is ``"<code>: <detail>"``, so hosts that match on the prefix (as the editor's
    backend does with ``model_to_device_failed: ...``) keep working.
    """

    def __init__(self, code: str, detail: str, hint: str | None = None) -> None:
        if not code or not code.replace("_", "").isalnum() or code != code.lower():
            raise ValueError(f"error codes are lower_snake_case identifiers, got {code!r}")
        super().__init__(code, detail, hint)
        self.code = code
        self.detail = detail
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"

    def __repr__(self) -> str:
        return f"TtsError(code={self.code!r}, detail={self.detail!r}, hint={self.hint!r})"

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON-ready data: ``{"code", "detail", "hint"}``."""
        return {"code": self.code, "detail": self.detail, "hint": self.hint}
