"""What a setting is for, as an engine marks it in its settings schema, so a host can act on an
engine's settings without knowing their names.

An engine's ``Capabilities.settings_schema`` is a JSON schema of its ``extra_params``; each
property may list its roles under ``"x-roles"``. Roles are optional: a host falls back to its
own behaviour where an engine marks none.
"""

from __future__ import annotations

from typing import Any

ROLES_KEY = "x-roles"
"""The schema keyword under which a property lists its roles."""

SETTING_ROLES = {
    "device": "where the model runs (a host's Device toggle)",
    "model": "selects the model; any of these set means the user chose one, and the default "
    "of such a setting names the model used when none is set",
    "model_folder": "a local model folder, taking precedence over the other model settings",
    "batch_size": "the most texts one generate call takes (an integer, or the engine's auto)",
    "speed_only": "changes how fast audio is made, never the audio",
    "resident": "decides the model in memory (which model, and its device, precision, kernels "
    "or backend): a change loads it again",
    "reference_audio": "a recording to clone, as a path on the engine's machine",
    "voice": "chooses who speaks and how (speaker, language, style, a clone's transcript); "
    "a request to a shared service may set it",
}
"""Every role a setting may have, and what it means."""


def settings_with_role(schema: dict[str, Any] | None, role: str) -> list[str]:
    """The names of the settings in ``schema`` (a settings schema) that have ``role``, in the
    schema's order; ``[]`` when none has it or the schema marks no roles."""
    if role not in SETTING_ROLES:
        raise ValueError(f"unknown setting role {role!r}; known: {', '.join(SETTING_ROLES)}")
    properties = (schema or {}).get("properties", {})
    return [name for name, prop in properties.items() if role in prop.get(ROLES_KEY, ())]
