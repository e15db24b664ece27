"""Finding engines through entry points, and checking settings against an engine's schema.

Everything the host knows about an engine comes from ``pm.hook.tts_capabilities()``.
"""

from __future__ import annotations

from typing import Any

import pluggy

import hookspecs
from hookspecs import Capabilities, EngineConfig, TtsError
from hookspecs.manager import PLUGINS_ENV


def plugin_manager() -> pluggy.PluginManager:
    """The engines installed under the ``autocut_tts`` entry-point group."""
    return hookspecs.plugin_manager()


def all_capabilities(pm: pluggy.PluginManager) -> list[Capabilities]:
    """Every installed engine's capabilities; ``no_engine`` when there are none."""
    found = pm.hook.tts_capabilities()
    if not found:
        raise TtsError(
            "no_engine",
            f"no text-to-speech engine is installed (entry-point group '{hookspecs.PROJECT}')",
            "Install an engine, e.g. `pip install qwen3tts-plugin`, and check that "
            f"${PLUGINS_ENV} (if set) names it.",
        )
    return found


def engine_for(pm: pluggy.PluginManager, provider: str) -> Capabilities:
    """The capabilities of the engine that answers ``provider``."""
    engines = all_capabilities(pm)
    for caps in engines:
        if caps.provider == provider:
            return caps
    installed = ", ".join(caps.provider for caps in engines)
    raise TtsError(
        "unknown_provider",
        f"no installed engine answers provider {provider!r} (installed: {installed})",
        "Set the config's provider to an installed engine, or install the engine.",
    )


def engine_config(config: dict[str, Any]) -> EngineConfig:
    """The contract's ``EngineConfig`` for one stored config (all its fields pass through)."""
    return EngineConfig.model_validate(config)


def model_configured(caps: Capabilities, extra_params: dict[str, Any]) -> bool:
    """Whether the settings name a model: ModelPath, or a ModelKey whose folder is valid."""
    if extra_params.get("ModelPath"):
        return True
    key = extra_params.get("ModelKey")
    return bool(key) and any(m.key == key and m.valid for m in caps.models)


def check_setting(caps: Capabilities, key: str, value: Any) -> str | None:
    """Validate one extra_params value against the engine's ``settings_schema``.

    Raises ``invalid_settings`` naming the key and what it accepts. Returns a warning when the
    engine does not know the key (other engines share extra_params, so it is kept).
    """
    schema = caps.settings_schema or {}
    prop = schema.get("properties", {}).get(key)
    if prop is None:
        return f"{caps.provider} does not know the setting {key!r}; kept for other engines"
    import jsonschema

    subschema = {**prop, "$defs": schema.get("$defs", {})}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(subschema).iter_errors(value)
    )
    if error is None:
        return None
    reason = (
        f"{value!r} does not match the pattern {error.validator_value}"
        if error.validator == "pattern"
        else error.message
    )
    raise TtsError(
        "invalid_settings",
        f"{key}={value!r} is not accepted: {reason}",
        f"{key}: {prop['description']}" if prop.get("description") else None,
    )


def check_changes(caps: Capabilities, changes: dict[str, Any]) -> list[str]:
    """Validate every non-null value of ``changes`` (null removes a key); return the warnings."""
    warnings = (
        check_setting(caps, key, value) for key, value in changes.items() if value is not None
    )
    return [warning for warning in warnings if warning]


MODE_FOR_KIND = {
    "custom_voice": "custom_voice",
    "voice_design": "voice_design",
    "base": "voice_clone",
}


def default_voice_mode(caps: Capabilities, extra_params: dict[str, Any]) -> str:
    """The voice mode the configured registry model speaks in; custom_voice when unknown."""
    if not extra_params.get("ModelPath"):
        for model in caps.models:
            if model.key == extra_params.get("ModelKey"):
                return MODE_FOR_KIND.get(model.kind, "custom_voice")
    return "custom_voice"
