"""What each CLI subcommand does: settings in, hook calls, results printed on stdout.

Every engine call goes through ``pm.hook.tts_capabilities``, ``tts_load`` or
``tts_synthesize``; nothing here knows which engine answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
from pydantic import ValidationError

import hookspecs
from hookspecs import (
    EngineConfig,
    GenerationParams,
    SynthesisRequest,
    SynthesisResult,
    TtsError,
    Voice,
)

from . import cluster, dubbing, engines, logs, render, scripts
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


def synthesize_streamed(
    pm: pluggy.PluginManager, request: SynthesisRequest
) -> tuple[SynthesisResult, float, int]:
    """``tts_synthesize_stream`` read to its end: the result, the seconds until the first
    chunk came, and how many chunks there were (a player would play each as it comes)."""
    started = time.perf_counter()
    chunks = pm.hook.tts_synthesize_stream(request=request)
    if chunks is None:
        raise TtsError("unknown_provider", f"no engine answered {request.config.provider!r}")
    first_s = None
    for chunk in chunks:
        if first_s is None:
            first_s = time.perf_counter() - started
        if chunk.final:
            assert chunk.result is not None
            return chunk.result, first_s, chunk.index + 1
    raise TtsError("synthesis_failed", "the engine's stream ended without its final chunk")


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
    """Check and save under the settings lock (a running server's writes are not lost)."""
    engines.save_changes(engines.plugin_manager(), store, config_id, changes)
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
    if args.stream:
        print(render.streamed_preview_line(*synthesize_streamed(pm, request)))
    else:
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
    settings file is not changed). With ``--cluster URL`` the segments go to that service
    instead (``cluster_engine``): one per hook call by default, ``--in-flight`` calls at once,
    each settling as it ends (no replica waits for a list's slowest segment).
    """
    segments = scripts.read_script(args.script)
    engine = cluster_engine(args, store) if args.cluster else local_engine(args, store)
    header = {
        "script": str(args.script.resolve()),
        "config_id": args.config,
        "provider": engine.config.provider,
        "voice_mode": engine.voice.mode,
        **({"cluster": args.cluster} if args.cluster else {}),
    }
    with dubbing.Progress(len(segments)) as progress:
        try:
            report = dubbing.dub(
                engine.pm,
                engine.config,
                segments,
                args.out_dir,
                generation_params(args),
                voice=engine.voice,
                keep_going=args.keep_going,
                header=header,
                on_settled=progress.settled,
                batch_size=engine.batch_size,
                speed_only=engine.speed_only,
                lists_in_flight=engine.lists_in_flight,
            )
        except KeyboardInterrupt:
            raise Interrupted(dub_interrupted(args.out_dir, segments)) from None
    print(render.dub_summary(report))
    if report.stopped_by is not None:
        raise report.stopped_by
    return 1 if report.failed else 0


@dataclass(frozen=True)
class DubEngine:
    """What a dub speaks through: the plugin manager, the config and voice of every request,
    segments per hook call, the settings left out of the fingerprint, and hook calls at once."""

    pm: pluggy.PluginManager
    config: EngineConfig
    voice: Voice
    batch_size: int
    speed_only: list[str]
    lists_in_flight: int = 1


def local_engine(args: argparse.Namespace, store: SettingsStore) -> DubEngine:
    """The installed engine, its model loaded with the stored config (and ``--batch-size``)."""
    pm = engines.plugin_manager()
    stored = store.enabled_config(args.config)
    caps = engines.engine_for(pm, stored["provider"])
    batch_setting = engines.setting_with_role(caps, "batch_size")
    if args.batch_size is not None and batch_setting is not None:
        stored["extra_params"] = {**stored.get("extra_params", {}), batch_setting: args.batch_size}
    config = engines.engine_config(stored)
    loaded = engines.load(pm, config)
    return DubEngine(
        pm=pm,
        config=config,
        voice=Voice(mode=engines.own_voice_mode(loaded)),
        batch_size=args.batch_size or loaded.batch_size,
        speed_only=hookspecs.settings_with_role(caps.settings_schema, "speed_only"),
    )


def cluster_engine(args: argparse.Namespace, store: SettingsStore) -> DubEngine:
    """The service at ``--cluster``: its settings are the service's (so the manifest's
    fingerprint names the model that spoke) but for the stored config's voice settings
    (Speaker, Language, ... : those the service lists in ``voice_settings``), which go with
    every request, and its reference recording, sent as the voice's bytes."""
    client = cluster.ClusterEngine(args.cluster, in_flight=args.in_flight, tries=args.tries)
    service = client.service()
    pm = hookspecs.plugin_manager(load_entrypoints=False)
    pm.register(client, name="cluster")
    stored = store.enabled_config(args.config)
    stored_params = stored.get("extra_params", {})
    voice = Voice(mode=(service.get("voice_modes") or [Voice().mode])[0])
    for name in service.get("reference_audio_settings", []):
        if stored_params.get(name):  # a path here: the recording travels as the voice's bytes
            voice = voice.model_copy(update={"ref_audio": Path(stored_params[name])})
    own = {k: v for k, v in stored_params.items() if k in service["voice_settings"]}
    config = engines.engine_config(
        {**stored, "provider": service["provider"], "extra_params": {**service["settings"], **own}}
    )
    return DubEngine(
        pm=pm,
        config=config,
        voice=voice,
        batch_size=args.batch_size or 1,
        speed_only=service.get("speed_only_settings", []),
        lists_in_flight=args.in_flight,
    )


class Interrupted(Exception):
    """Ctrl-C stopped a command; the message says what was kept."""


def dub_interrupted(out_dir: Path, segments: list[scripts.Segment]) -> str:
    """What an interrupted dub kept, in one line; its half-written temporary files removed
    (every WAV and manifest is written atomically, so those are whole)."""
    if out_dir.is_dir():
        dubbing.remove_stale_temp_files(out_dir)
    speakable = sum(not segment.empty for segment in segments)
    return (
        f"{dubbing.written(out_dir)} of {speakable} segments written; run the same command "
        "again to resume"
    )


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


def server_token(args: argparse.Namespace) -> tuple[str | None, str]:
    """The token ``serve`` requires, and where it came from: ``--token``, else
    ``$EXAMPLE_HOST_TOKEN``, else a random one when bound beyond loopback (printed once),
    else none."""
    from . import guard

    if getattr(args, "token", None):
        return args.token, "--token"
    from_env = os.environ.get(guard.TOKEN_ENV, "").strip()
    if from_env:
        return from_env, f"${guard.TOKEN_ENV}"
    if guard.is_loopback(args.host):
        return None, "none (loopback)"
    return guard.new_token(), "generated"


def cmd_serve(args: argparse.Namespace, store: SettingsStore) -> int:
    """The HTTP routes, served by uvicorn until interrupted.

    Before serving: the settings file is read (a malformed one is reported now), the engines
    are found (``no_engine`` otherwise), and the address is bound (``PortBusyError``); then the
    URL and the engines go to stdout. Beyond loopback a token is required (``server_token``);
    only a generated one is printed, in the URL.
    """
    import socket

    import uvicorn

    from .guard import Access
    from .http import SYNTHESIS_QUEUE, SYNTHESIS_WORKERS, SynthesisQueue, create_app
    from .serving import Limits, protect_logs, uvicorn_config

    store.load()
    pm = engines.plugin_manager()
    found = engines.all_capabilities(pm)
    token, source = server_token(args)
    limits = Limits(
        max_connections=getattr(args, "max_connections", None) or Limits.max_connections
    )
    synthesis = SynthesisQueue(
        getattr(args, "synthesis_workers", None) or SYNTHESIS_WORKERS,
        SYNTHESIS_QUEUE if getattr(args, "queue_size", None) is None else args.queue_size,
    )
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
    url = f"http://{host}:{bound_port}/" + (f"?token={token}" if source == "generated" else "")
    shown = "" if source in ("generated", "none (loopback)") else f"  token: from {source}"
    print(f"serving {url}  engines: {names}  settings: {store.path}{shown}")
    sys.stdout.flush()
    protect_logs()
    app = create_app(
        store.path, pm=pm, access=Access(bound_host=args.host, token=token), synthesis=synthesis
    )
    uvicorn.Server(uvicorn_config(app, limits)).run(sockets=[sock])
    return 0


# --- demo ---------------------------------------------------------------------------------

DEMO_SCRIPT = (
    "Welcome to the example host.",
    "These weights are random, so every line you hear is noise.",
    "Each line of a script becomes its own numbered file.",
    "Point the settings at a real model folder to hear a voice.",
)
DEMO_MAX_NEW_TOKENS = 24
"""Frames per piece in the demo (about two seconds): random weights rarely end a text, so
every piece uses its budget and is kept cut on purpose (``--allow-cut``)."""


def demo_dir() -> Path:
    """The demo's own folder: its settings file, preview and dub, in the user cache folder."""
    return cache_dir() / "demo"


def cmd_demo(args: argparse.Namespace, store: SettingsStore) -> int:
    """Try it offline: preview and dub on the tiny random checkpoint, then the settings page.

    Everything happens in ``demo_dir()`` with a settings file of its own, reset on each run and
    pointing the engine's model-folder setting at the tiny checkpoint; the user's settings
    file (``store``) is never read or written. The steps are the CLI's own ``preview``,
    ``dub`` and ``serve`` commands, parsed as their command lines would be.
    """
    folder = demo_dir()
    print(
        "demo: random weights (the tiny test checkpoint), so every voice is noise; it shows the "
        "path, not a voice"
    )
    sys.stdout.flush()  # building the checkpoint the first time takes a few seconds
    settings = prepare_demo_settings(folder / "settings.json")
    print(f"demo settings  {settings} (its own; yours, {store.path}, is not used)")
    script = folder / "script.txt"
    script.write_text("\n".join(DEMO_SCRIPT) + "\n", encoding="utf-8")
    budget = ["--max-new-tokens", str(DEMO_MAX_NEW_TOKENS), "--allow-cut"]
    steps = [
        ["preview", DEMO_SCRIPT[0], "--out", str(folder / "preview.wav"), *budget],
        ["dub", str(script), "--out-dir", str(folder / "dub"), *budget],
    ]
    for step in steps:
        code = run_as_cli([*step, "--settings", str(settings)])
        if code != 0:
            return code
    print(f"preview  {folder / 'preview.wav'}\ndub      {folder / 'dub'}")
    if args.no_serve:
        return 0
    sys.stdout.flush()
    logs.hold_back_reported(False)  # the page's errors reach no command: the log shows them
    serve = ["serve", "--host", "127.0.0.1", "--port", str(args.port)]
    return run_as_cli([*serve, "--settings", str(settings)])


def prepare_demo_settings(path: Path) -> Path:
    """A fresh demo settings file whose model-folder setting names the tiny checkpoint."""
    from .settings_store import DEFAULT_CONFIG_ID, default_settings

    data = default_settings()
    config = data["configs"][DEFAULT_CONFIG_ID]
    caps = engines.engine_for(engines.plugin_manager(), config["provider"])
    folder_setting = engines.setting_with_role(caps, "model_folder")
    if folder_setting is None:
        raise TtsError(
            "invalid_settings",
            f"engine {caps.provider!r} marks no model-folder setting for the demo's checkpoint",
            "Use `smoke` or `preview` with a model of that engine instead.",
        )
    # The one import of the engine package: its documented test-checkpoint builder.
    from qwen3tts_plugin.testing import tiny_checkpoint

    config["extra_params"][folder_setting] = str(tiny_checkpoint("custom_voice"))
    SettingsStore(path).save(data)
    return path


def run_as_cli(argv: list[str]) -> int:
    """One of the CLI's commands, in this process, parsed as its command line would be."""
    from .cli import build_parser

    args = build_parser().parse_args(argv)
    return args.run(args, SettingsStore(args.settings))
