"""Finding engines through entry points, and checking settings against an engine's schema.

Everything the host knows about an engine comes from ``pm.hook.tts_capabilities(config=...)``
(given the stored config, so the engine looks for models where the user keeps them) and, for
the voice mode a model speaks, from the ``LoadResult`` of ``pm.hook.tts_load``.
"""

from __future__ import annotations

import difflib
from typing import Any

import pluggy

import hookspecs
from hookspecs import Capabilities, EngineConfig, LoadResult, TtsError, Voice, VoiceMode
from hookspecs.manager import PLUGINS_ENV

from .settings_store import SettingsStore


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


def unknown_setting(caps: Capabilities, key: str) -> TtsError:
    """``invalid_settings`` for a name the engine's settings schema does not list, with the
    name it probably meant."""
    names = list((caps.settings_schema or {}).get("properties", {}))
    folded = {name.lower(): name for name in names}
    guess = folded.get(key.strip().lower()) or next(
        iter(difflib.get_close_matches(key, names, n=1, cutoff=0.6)), None
    )
    return TtsError(
        "invalid_settings",
        f"{caps.provider} has no setting {key!r}" + (f"; did you mean {guess}?" if guess else ""),
        f"Its settings: {', '.join(names)}." if names else None,
    )


def check_setting(caps: Capabilities, key: str, value: Any) -> None:
    """Validate one extra_params value against the engine's ``settings_schema``: raises
    ``invalid_settings`` naming the key and what it accepts (or the name it probably meant)."""
    schema = caps.settings_schema or {}
    prop = schema.get("properties", {}).get(key)
    if prop is None:
        raise unknown_setting(caps, key)
    import jsonschema

    subschema = {**prop, "$defs": schema.get("$defs", {})}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(subschema).iter_errors(value)
    )
    if error is None:
        return
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
) -> None:
    """Validate ``changes`` (null removes a key) as they would be saved over ``stored``.

    A name the engine's ``settings_schema`` does not list is refused (``invalid_settings``,
    "did you mean Device?"); removing one is allowed. Then the engine judges the settings the
    config will hold (``tts_check_settings``: exactly what it accepts, in its own words, e.g.
    ModelKey is not checked while ModelPath overrides it); an engine without that hook has
    each changed value checked against its settings schema. Keys already stored that the engine
    does not know (another engine's, in the editor's file) are left alone.
    """
    values = {key: value for key, value in changes.items() if value is not None}
    schema_keys = (caps.settings_schema or {}).get("properties", {})
    for key in values:
        if key not in schema_keys:
            raise unknown_setting(caps, key)
    merged = {**(stored or {}), **changes}
    merged = {key: value for key, value in merged.items() if value is not None}
    refusals = pm.hook.tts_check_settings(
        config=EngineConfig(provider=caps.provider, extra_params=merged)
    )
    if refusals is None:  # an engine without the hook: its JSON schema decides
        for key, value in values.items():
            check_setting(caps, key, value)
    elif refusals:
        raise refusals[0].to_error()


def save_changes(
    pm: pluggy.PluginManager, store: SettingsStore, config_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Check ``changes`` against the config's engine and save them, both under the settings
    file's lock (a concurrent writer, another process included, loses nothing); the saved
    config."""

    def check(config: dict[str, Any]) -> None:
        if any(value is not None for value in changes.values()):
            caps = engine_for(pm, config["provider"], engine_config(config))
            check_changes(pm, caps, changes, config.get("extra_params", {}))

    return store.update_extra_params(config_id, changes, check)
