"""What each CLI subcommand does: settings in, hook calls, results printed on stdout.

Every engine call goes through ``pm.hook.tts_capabilities``, ``tts_load`` or
``tts_synthesize``; nothing here knows which engine answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pluggy
from pydantic import ValidationError

import hookspecs
from hookspecs import GenerationParams, SynthesisRequest, SynthesisResult, TtsError, Voice

from . import dubbing, engines, render, scripts
from .settings_store import SettingsStore

SMOKE_TEXT = "Hello from the example host. This is a smoke test."
SMOKE_MAX_NEW_TOKENS = 24
"""The smoke run proves the path (load, generate, write), not the narration: a fixed, short
budget, and the cut it causes kept on purpose (``allow_cut``)."""


def cache_dir() -> Path:
    """Where the preview and smoke WAVs go by default: the per-user cache folder."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("example_host"))


def generation_params(args: argparse.Namespace, seed: int | None = None) -> GenerationParams:
    """Sampling parameters from ``--seed``, ``--max-new-tokens`` and ``--allow-cut`` (others:
    defaults); a value the engine cannot run is ``invalid_settings`` naming the option."""
    given: dict[str, Any] = {"seed": args.seed if args.seed is not None else seed}
    if args.max_new_tokens is not None:
        given["max_new_tokens"] = args.max_new_tokens
    if getattr(args, "allow_cut", False):
        given["allow_cut"] = True
    try:
        return GenerationParams(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors()
        )
        raise TtsError("invalid_settings", problems) from None


def synthesize(pm: pluggy.PluginManager, request: SynthesisRequest) -> SynthesisResult:
    """``tts_synthesize``, with ``unknown_provider`` when no engine answered."""
    result = pm.hook.tts_synthesize(request=request)
    if result is None:
        raise TtsError("unknown_provider", f"no engine answered {request.config.provider!r}")
    return result


# --- engines ------------------------------------------------------------------------------


def cmd_engines(args: argparse.Namespace, store: SettingsStore) -> int:
    """Each installed engine's capabilities."""
    found = engines.all_capabilities(
        engines.plugin_manager(), engines.engine_config(store.config(args.config))
    )
    if args.json:
        print(json.dumps([caps.model_dump(mode="json") for caps in found], indent=2))
    else:
        print("\n\n".join(render.engine_text(caps) for caps in found))
    return 0


# --- settings -----------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses as JSON (``true``, ``3``, ``null``), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_settings_show(args: argparse.Namespace, store: SettingsStore) -> int:
    data = store.load()
    print(json.dumps(data, indent=2) if args.json else render.settings_text(store.path, data))
    return 0


def cmd_settings_set(args: argparse.Namespace, store: SettingsStore) -> int:
    """Validate one value against the engine's schema, then save; null removes the key."""
    return _change(store, args.config, {args.key: parse_value(args.value)})


def cmd_settings_unset(args: argparse.Namespace, store: SettingsStore) -> int:
    return _change(store, args.config, {args.key: None})


def _change(store: SettingsStore, config_id: str, changes: dict[str, Any]) -> int:
    config = store.config(config_id)
    if any(value is not None for value in changes.values()):
        pm = engines.plugin_manager()
        caps = engines.engine_for(pm, config["provider"], engines.engine_config(config))
        stored = config.get("extra_params", {})
        for warning in engines.check_changes(pm, caps, changes, stored):
            print(f"warning: {warning}", file=sys.stderr)
    config = store.update_extra_params(config_id, changes)
    for key, value in changes.items():
        shown = "(unset)" if value is None else json.dumps(value, ensure_ascii=False)
        print(f"{config_id}.{key} = {shown}  (saved to {store.path})")
    return 0


# --- preview ------------------------------------------------------------------------------


def cmd_preview(args: argparse.Namespace, store: SettingsStore) -> int:
    """The editor's listen button: one WAV, one line.

    Without ``--mode`` the model is loaded first and speaks in its own mode; voice fields not
    given stay None, so the engine takes Speaker, Instruct, RefAudio, ... from extra_params.
    """
    pm = engines.plugin_manager()
    stored = store.enabled_config(args.config)
    engines.engine_for(pm, stored["provider"])
    config = engines.engine_config(stored)
    voice_fields = {
        "mode": args.mode,
        "speaker": args.speaker,
        "language": args.language,
        "instruct": args.instruct,
        "ref_audio": args.ref_audio,
        "ref_text": args.ref_text,
    }
    voice = Voice(**{k: v for k, v in voice_fields.items() if v is not None})
    request = SynthesisRequest(
        config=config,
        text=args.text,
        out_path=args.out or cache_dir() / "preview.wav",
        voice=engines.voice_with_mode(pm, config, voice),
        generation=generation_params(args),
    )
    print(render.preview_line(synthesize(pm, request)))
    return 0


# --- dub ----------------------------------------------------------------------------------


def cmd_dub(args: argparse.Namespace, store: SettingsStore) -> int:
    """One WAV per segment plus manifest.json; resumes; exit 1 when segments failed.

    The model is loaded before the first segment: a model or device that cannot be used stops
    the run at once (exit 2), and the loaded model's own voice mode is used for every segment.
    Segments go to the engine ``--batch-size`` at a time (default: the engine's batch size for
    these settings, ``LoadResult.batch_size``); a given ``--batch-size`` also becomes the
    engine's batch-size setting (the one its schema marks ``batch_size``) for this run (the
    settings file is not changed).
    """
    pm = engines.plugin_manager()
    stored = store.enabled_config(args.config)
    caps = engines.engine_for(pm, stored["provider"])
    segments = scripts.read_script(args.script)
    batch_setting = engines.setting_with_role(caps, "batch_size")
    if args.batch_size is not None and batch_setting is not None:
        stored["extra_params"] = {**stored.get("extra_params", {}), batch_setting: args.batch_size}
    config = engines.engine_config(stored)
    loaded = engines.load(pm, config)
    voice = Voice(mode=engines.own_voice_mode(loaded))
    header = {
        "script": str(args.script.resolve()),
        "config_id": args.config,
        "provider": stored["provider"],
        "voice_mode": voice.mode,
    }
    with dubbing.progress_bar(len(segments)) as bar:

        def advance(segment: scripts.Segment, outcome: str) -> None:
            bar.set_postfix_str(f"seg {segment.number} {outcome}")
            bar.update(1)

        report = dubbing.dub(
            pm,
            config,
            segments,
            args.out_dir,
            generation_params(args),
            voice=voice,
            keep_going=args.keep_going,
            header=header,
            on_segment=advance,
            batch_size=args.batch_size or loaded.batch_size,
            speed_only=hookspecs.settings_with_role(caps.settings_schema, "speed_only"),
        )
    print(render.dub_summary(report))
    if report.stopped_by is not None:
        raise report.stopped_by
    return 1 if report.failed else 0


# --- smoke --------------------------------------------------------------------------------


def cmd_smoke(args: argparse.Namespace, store: SettingsStore) -> int:
    """Load and speak once with the current settings.

    The configured model is used as is. Only when the config names no model at all does this
    run use the tiny checkpoint, in memory, through the engine's model-folder setting (the one
    its schema marks ``model_folder``): the settings file is not changed.
    """
    pm = engines.plugin_manager()
    stored = store.enabled_config(args.config)
    caps = engines.engine_for(pm, stored["provider"], engines.engine_config(stored))
    params = stored.get("extra_params", {})
    folder_setting = engines.setting_with_role(caps, "model_folder")
    if folder_setting is not None and not engines.model_configured(caps, params):
        # The one import of the engine package: its documented test-checkpoint builder.
        from qwen3tts_plugin.testing import tiny_checkpoint

        path = str(tiny_checkpoint("custom_voice"))
        stored["extra_params"] = {**params, folder_setting: path}
        print(
            f"no model configured: using the tiny checkpoint {path} for this run only "
            f"(settings file {store.path} unchanged)"
        )
    config = engines.engine_config(stored)
    loaded = engines.load(pm, config)
    mode = engines.own_voice_mode(loaded)
    request = SynthesisRequest(
        config=config,
        text=SMOKE_TEXT,
        out_path=args.out or cache_dir() / "smoke.wav",
        voice=Voice(mode=mode),
        generation=generation_params(args, seed=0).model_copy(update={"allow_cut": True}),
    )
    print(render.smoke_text(loaded, synthesize(pm, request), mode))
    return 0


# --- serve --------------------------------------------------------------------------------


class PortBusyError(Exception):
    """The address ``serve`` was asked to listen on is taken (or not ours to take)."""


def cmd_serve(args: argparse.Namespace, store: SettingsStore) -> int:
    """The HTTP routes, served by uvicorn until interrupted.

    Before serving: the settings file is read (a malformed one is reported now), the engines
    are found (``no_engine`` otherwise), and the address is bound (``PortBusyError``); then the
    URL and the engines go to stdout.
    """
    import socket

    import uvicorn

    from .http import create_app

    store.load()
    pm = engines.plugin_manager()
    found = engines.all_capabilities(pm)
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as exc:
        raise PortBusyError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; choose another "
            "--port, or stop what holds it"
        ) from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    bound_port = sock.getsockname()[1]
    names = ", ".join(f"{caps.provider} ({caps.display_name} {caps.version})" for caps in found)
    print(f"serving http://{host}:{bound_port}/  engines: {names}  settings: {store.path}")
    sys.stdout.flush()
    config = uvicorn.Config(create_app(store.path, pm=pm), log_config=None)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
