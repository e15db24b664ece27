"""The one error type engines raise through the hooks."""

from __future__ import annotations

from typing import Any


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
