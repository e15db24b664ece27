"""``python -m example_host`` / ``example-host``: a stand-in for the video editor.

Results go to stdout, logs and errors to stderr. Logging: WARNING by default, ``-v`` INFO,
``--debug`` DEBUG plus tracebacks; ``--log-json`` for JSON lines.

Exit codes: 0 success; 1 ``dub`` finished with failed segments (``--keep-going``); 2 an error
(an engine ``TtsError``, a refused setting, an unreadable settings file or script, bad usage);
3 no engine installed; 4 ``serve`` cannot listen; 130 interrupted (Ctrl-C): one line says what
was kept, no traceback.

Each error is printed once: the message here, not also the engine's log event about it (shown
with ``-v``; see ``logs``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pydantic

from hookspecs import TtsError

from . import cluster, commands, logs
from .dubbing import ManifestError
from .scripts import ScriptError
from .settings_store import DEFAULT_CONFIG_ID, SettingsFileError, SettingsStore, UnknownConfigError

EXIT_ERROR = 2
EXIT_NO_ENGINE = 3
EXIT_PORT_BUSY = 4
EXIT_INTERRUPTED = 130
"""128 + SIGINT, as a shell reports a command stopped by Ctrl-C."""
HOST_ERRORS = (SettingsFileError, UnknownConfigError, ScriptError, ManifestError)


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options valid before and after the subcommand (after it, defaults are suppressed)."""

    def default(value):
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--settings",
        type=Path,
        default=default(None),
        help="settings file (default: $EXAMPLE_HOST_SETTINGS, else the user config folder)",
    )
    parser.add_argument(
        "--log-json", action="store_true", default=default(False), help="logs as JSON lines"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="log at INFO"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="log at DEBUG and show tracebacks",
    )


def _generation_options(parser: argparse.ArgumentParser, max_new_tokens: int | None) -> None:
    parser.add_argument("--seed", type=int, help="random seed (same seed, same audio)")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=max_new_tokens,
        help="advanced: frame budget of each piece (12.5 frames per second of audio)",
    )
    parser.add_argument(
        "--allow-cut",
        action="store_true",
        help="keep a piece that used its whole budget as it is (a quick partial preview) "
        "instead of retrying it with twice the budget and failing with synthesis_truncated",
    )


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number, ``minimum`` or more."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="example-host",
        description="A stand-in for the video editor: finds TTS engines by entry point.",
    )
    _global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    engines = sub.add_parser("engines", parents=[common], help="installed engines")
    engines.add_argument("--json", action="store_true", help="print JSON")
    engines.add_argument(
        "--config", default=DEFAULT_CONFIG_ID, help="config id whose settings the engine reads"
    )
    engines.set_defaults(run=commands.cmd_engines)

    settings = sub.add_parser("settings", parents=[common], help="show or change settings")
    actions = settings.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", parents=[common], help="print the settings file")
    show.add_argument("--json", action="store_true", help="print the file's JSON")
    show.set_defaults(run=commands.cmd_settings_show)
    set_ = actions.add_parser("set", parents=[common], help="set an extra_params value")
    set_.add_argument("key")
    set_.add_argument("value", help="JSON when it parses as JSON (true, 3, null), else text")
    set_.set_defaults(run=commands.cmd_settings_set)
    unset = actions.add_parser("unset", parents=[common], help="remove an extra_params key")
    unset.add_argument("key")
    unset.set_defaults(run=commands.cmd_settings_unset)
    for action in (set_, unset):
        action.add_argument("--config", default=DEFAULT_CONFIG_ID, help="config id")

    preview = sub.add_parser("preview", parents=[common], help="speak one text into a WAV")
    preview.add_argument("text")
    preview.add_argument("--speaker")
    preview.add_argument("--language")
    preview.add_argument("--mode", choices=["custom_voice", "voice_design", "voice_clone"])
    preview.add_argument("--instruct")
    preview.add_argument("--ref-audio", type=Path)
    preview.add_argument("--ref-text")
    preview.add_argument(
        "--out", type=Path, help="WAV path (default: preview.wav in the user cache folder)"
    )
    preview.add_argument("--config", default=DEFAULT_CONFIG_ID, help="config id")
    preview.add_argument(
        "--stream",
        action="store_true",
        help="take the audio as it is spoken (tts_synthesize_stream) and print the time to "
        "the first chunk",
    )
    _generation_options(preview, None)
    preview.set_defaults(run=commands.cmd_preview)

    dub = sub.add_parser("dub", parents=[common], help="one WAV per script line or srt cue")
    dub.add_argument("script", type=Path, help="a text file (one segment per line) or .srt")
    dub.add_argument("--out-dir", type=Path, required=True)
    dub.add_argument("--keep-going", action="store_true", help="continue past failed segments")
    dub.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        help="segments per generate call (default: the engine's choice; 1 turns batching off)",
    )
    dub.add_argument("--config", default=DEFAULT_CONFIG_ID, help="config id")
    dub.add_argument(
        "--cluster",
        metavar="URL",
        help="speak through a service (python -m qwen3tts_plugin serve-ray) at URL instead of "
        "the installed engine; its model and device settings are the service's",
    )
    dub.add_argument(
        "--in-flight",
        type=_int_at_least(1),
        default=cluster.IN_FLIGHT,
        help=f"--cluster: requests at the service at once (default {cluster.IN_FLIGHT})",
    )
    dub.add_argument(
        "--tries",
        type=_int_at_least(1),
        default=cluster.TRIES,
        help="--cluster: tries per segment when the service gives no answer (a replica died) "
        f"before the segment fails with service_unavailable (default {cluster.TRIES})",
    )
    _generation_options(dub, None)
    dub.set_defaults(run=commands.cmd_dub)

    smoke = sub.add_parser("smoke", parents=[common], help="load and speak once")
    smoke.add_argument(
        "--out", type=Path, help="WAV path (default: smoke.wav in the user cache folder)"
    )
    smoke.add_argument("--config", default=DEFAULT_CONFIG_ID, help="config id")
    _generation_options(smoke, commands.SMOKE_MAX_NEW_TOKENS)
    smoke.set_defaults(run=commands.cmd_smoke)

    serve = sub.add_parser("serve", parents=[common], help="HTTP preview routes (uvicorn)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default loopback; any other needs a token)",
    )
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument(
        "--token",
        help="token every /api route needs (default: $EXAMPLE_HOST_TOKEN; beyond loopback "
        "a random one, printed once in the URL)",
    )
    serve.add_argument(
        "--queue-size",
        type=_int_at_least(0),
        help="previews that may wait for a synthesis worker before 503 server_busy (default 32)",
    )
    serve.add_argument(
        "--synthesis-workers",
        type=_int_at_least(1),
        help="previews handed to the engine at once (default 8; it batches them)",
    )
    serve.add_argument(
        "--max-connections",
        type=_int_at_least(1),
        help="open connections at once (default 256); one more closes a connection that has "
        "waited over 1 s for its request head, else is answered 503",
    )
    serve.set_defaults(run=commands.cmd_serve)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="try it offline: preview, dub and the settings page on the tiny random checkpoint "
        "(noise), with settings of its own",
    )
    demo.add_argument("--port", type=int, default=8765, help="port of the settings page")
    demo.add_argument("--no-serve", action="store_true", help="stop after the preview and dub")
    demo.set_defaults(run=commands.cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    reports_errors = args.command != "serve"  # serve's callers get their errors over HTTP
    logs.configure(json_lines=args.log_json, level=level, caller_reports_errors=reports_errors)
    try:
        return args.run(args, SettingsStore(args.settings))
    except TtsError as err:
        _report(err, args.debug, f"{err.code}: {err.detail}", err.hint)
        return EXIT_NO_ENGINE if err.code == "no_engine" else EXIT_ERROR
    except commands.PortBusyError as exc:
        _report(exc, args.debug, f"error: {exc}")
        return EXIT_PORT_BUSY
    except HOST_ERRORS as exc:
        _report(exc, args.debug, f"error: {exc}")
        return EXIT_ERROR
    except pydantic.ValidationError as exc:
        _report(exc, args.debug, f"error: invalid request: {exc}")
        return EXIT_ERROR
    except commands.Interrupted as exc:
        _report(exc, args.debug, f"interrupted: {exc}")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt as exc:
        _report(exc, args.debug, "interrupted")
        return EXIT_INTERRUPTED


def _report(exc: BaseException, debug: bool, message: str, hint: str | None = None) -> None:
    """An error on stderr: a message, an optional hint, a traceback only with --debug."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(message, file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
