"""Finding engines through entry points, and checking settings against an engine's schema.

Everything the host knows about an engine comes from ``pm.hook.tts_capabilities(config=...)``
(given the stored config, so the engine looks for models where the user keeps them) and, for
the voice mode a model speaks, from the ``LoadResult`` of ``pm.hook.tts_load``.
"""

from __future__ import annotations

from typing import Any

import pluggy

import hookspecs
from hookspecs import Capabilities, EngineConfig, LoadResult, TtsError, Voice, VoiceMode
from hookspecs.manager import PLUGINS_ENV


def plugin_manager() -> pluggy.PluginManager:
    """The engines installed under the ``autocut_tts`` entry-point group."""
    return hookspecs.plugin_manager()


def all_capabilities(
    pm: pluggy.PluginManager, config: EngineConfig | None = None
) -> list[Capabilities]:
    """Every installed engine's capabilities, the engine ``config`` names answering for its
    settings; ``no_engine`` when there are none."""
    found = pm.hook.tts_capabilities(config=config)
    if not found:
        raise TtsError(
            "no_engine",
            f"no text-to-speech engine is installed (entry-point group '{hookspecs.PROJECT}')",
            "Install an engine, e.g. `pip install qwen3tts-plugin`, and check that "
            f"${PLUGINS_ENV} (if set) names it.",
        )
    return found


def engine_for(
    pm: pluggy.PluginManager, provider: str, config: EngineConfig | None = None
) -> Capabilities:
    """The capabilities of the engine that answers ``provider`` (for ``config``, if given)."""
    engines = all_capabilities(pm, config)
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


def setting_with_role(caps: Capabilities, role: str) -> str | None:
    """The name of the engine's setting for ``role`` (``hookspecs.SETTING_ROLES``), read from
    its settings schema; None when it marks none."""
    names = hookspecs.settings_with_role(caps.settings_schema, role)
    return names[0] if names else None


def model_configured(caps: Capabilities, extra_params: dict[str, Any]) -> bool:
    """Whether the config names a model: a setting with the ``model`` role set (not blank),
    or such a setting's default (the engine's default model) valid where the engine looks."""
    schema = caps.settings_schema or {}
    names = hookspecs.settings_with_role(schema, "model")
    if any(extra_params.get(name) not in (None, "") for name in names):
        return True
    properties = schema.get("properties", {})
    defaults = {properties[name].get("default") for name in names} - {None}
    return any(m.key in defaults and m.valid for m in caps.models)


def load(pm: pluggy.PluginManager, config: EngineConfig) -> LoadResult:
    """``tts_load``: the model resident (cheap when it already is), or the engine's error."""
    loaded = pm.hook.tts_load(config=config)
    if loaded is None:
        raise TtsError("unknown_provider", f"no engine answered provider {config.provider!r}")
    return loaded


def own_voice_mode(loaded: LoadResult) -> VoiceMode:
    """The loaded model's own voice mode (the first it lists); the contract's default when an
    engine lists none."""
    return loaded.voice_modes[0] if loaded.voice_modes else Voice().mode


def voice_with_mode(pm: pluggy.PluginManager, config: EngineConfig, voice: Voice) -> Voice:
    """``voice`` as given when it names a mode; else with the mode of the model ``config``
    loads. Fields left None stay None, so the engine fills them from extra_params."""
    if "mode" in voice.model_fields_set:
        return voice
    mode = own_voice_mode(load(pm, config))
    return Voice(**{**voice.model_dump(exclude_unset=True), "mode": mode})


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


def check_changes(
    pm: pluggy.PluginManager,
    caps: Capabilities,
    changes: dict[str, Any],
    stored: dict[str, Any] | None = None,
) -> list[str]:
    """Validate ``changes`` (null removes a key) as they would be saved over ``stored``; return
    the warnings.

    The engine judges the settings the config will hold (``tts_check_settings``: exactly what
    it accepts, in its own words, e.g. ModelKey is not checked while ModelPath overrides it);
    an engine without that hook has each changed value checked against its settings schema.
    Keys the engine does not know are kept for other engines, with a warning.
    """
    values = {key: value for key, value in changes.items() if value is not None}
    merged = {**(stored or {}), **changes}
    merged = {key: value for key, value in merged.items() if value is not None}
    schema_keys = (caps.settings_schema or {}).get("properties", {})
    warnings = [
        f"{caps.provider} does not know the setting {key!r}; kept for other engines"
        for key in values
        if key not in schema_keys
    ]
    refusals = pm.hook.tts_check_settings(
        config=EngineConfig(provider=caps.provider, extra_params=merged)
    )
    if refusals is None:  # an engine without the hook: its JSON schema decides
        for key, value in values.items():
            check_setting(caps, key, value)
        return warnings
    if refusals:
        raise refusals[0].to_error()
    return warnings
