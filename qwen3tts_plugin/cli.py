"""``python -m qwen3tts_plugin doctor``: what this machine offers and what the engine would do.

The seed's quick verification commands as one command. This is an application entry point, so
it (and only it) configures structlog: logs go to stderr, stdout carries the report alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import time
from typing import Any

import structlog

from hookspecs import AccelerationStatus, TtsError

from .settings import BACKEND_NAMES, QUANTIZATIONS

SMALL_GPU_BYTES = 6 * 1024**3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwen3tts_plugin")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="acceleration status and the device decision")
    doctor.add_argument("--device", help="Device setting to decide for (default: auto)")
    doctor.add_argument("--precision", help="Precision setting (auto, fp32, fp16, bf16)")
    doctor.add_argument(
        "--quantization", help=f"Quantization setting (auto, {', '.join(QUANTIZATIONS)})"
    )
    doctor.add_argument("--attention", help="Attention setting (auto, sdpa, ...)")
    doctor.add_argument("--batch-size", help="BatchSize setting (auto or a number)")
    doctor.add_argument("--backend", help=f"Backend setting (auto, {', '.join(BACKEND_NAMES)})")
    doctor.add_argument("--model-key", help="ModelKey setting (default: custom_0_6b)")
    doctor.add_argument("--models-dir", help="ModelsDir setting (default: $QWEN_TTS_MODELS_DIR)")
    doctor.add_argument("--model-path", help="ModelPath setting (a model folder)")
    doctor.add_argument("--text", help="a line to show the frame bound of (FrameBound)")
    doctor.add_argument("--json", action="store_true", help="print JSON only")
    doctor.add_argument("-v", "--verbose", action="store_true", help="log decisions to stderr")
    add_serve_ray(commands)
    args = parser.parse_args(argv)
    _configure_logging(verbose=args.verbose)
    if args.command == "serve-ray":
        return serve_ray(args)
    report = doctor_report(
        args.device,
        args.precision,
        args.attention,
        args.backend,
        batch_size=args.batch_size,
        quantization=args.quantization,
        text=args.text,
        model={
            "ModelKey": args.model_key,
            "ModelsDir": args.models_dir,
            "ModelPath": args.model_path,
        },
    )
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if report["usable"] else 1


def add_serve_ray(commands: Any) -> None:
    """The ``serve-ray`` command's options (the ``[ray]`` extra runs it)."""
    serve = commands.add_parser(
        "serve-ray",
        help="run the engine as a Ray Serve application (one model per replica)",
        description="Start the engine on Ray Serve: POST /v1/synthesize, POST /v1/audio/speech "
        "(OpenAI's shape), GET /v1/service, GET /healthz. Runs until Ctrl-C.",
    )
    serve.add_argument("--replicas", type=int, default=1, help="replicas (default 1)")
    serve.add_argument("--min-replicas", type=int, help="autoscaling: fewest replicas")
    serve.add_argument("--max-replicas", type=int, help="autoscaling: most replicas")
    serve.add_argument(
        "--gpus-per-replica",
        type=float,
        help="GPUs each replica holds: 1 on GPU machines (it runs on cuda:0, its own GPU), 0 for "
        "CPU replicas (default: 1 when this machine has CUDA, else 0)",
    )
    serve.add_argument("--cpus-per-replica", type=float, default=1.0, help="default 1")
    serve.add_argument(
        "--max-batch-size", type=int, default=8, help="requests per batch (default 8)"
    )
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an engine setting for every replica, e.g. ModelPath=/models/x (repeatable)",
    )
    serve.add_argument(
        "--address", help="the Ray cluster to join (default: start a local Ray, or RAY_ADDRESS)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    serve.add_argument("-v", "--verbose", action="store_true", help="log decisions to stderr")


def replica_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the replica and batch counts asked for, or None."""
    low, high = args.min_replicas, args.max_replicas
    if args.replicas < 1 or args.max_batch_size < 1 or (high is not None and high < 1):
        return "--replicas, --max-replicas and --max-batch-size must be at least 1"
    if low is not None and (low < 0 or (high is not None and low > high)):
        return "--min-replicas must be between 0 and --max-replicas"
    return None


def serve_ray(args: argparse.Namespace) -> int:
    """Start the Serve application, print its URL, run until interrupted, stop cleanly."""
    try:
        from . import ray_serve
    except ImportError as exc:
        print(
            f"serve-ray needs Ray Serve ({exc}); install the extra: "
            "pip install 'qwen3tts-plugin[ray]'",
            file=sys.stderr,
        )
        return 2
    problem = replica_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    gpus = args.gpus_per_replica
    if gpus is None:
        from .devices import probe

        gpus = 1.0 if probe().cuda_available else 0.0
    try:
        settings = dict(_setting(item) for item in args.set)
        options = ray_serve.ServiceOptions(
            settings=settings,
            replicas=args.replicas,
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            cpus_per_replica=args.cpus_per_replica,
            gpus_per_replica=gpus,
            max_batch_size=args.max_batch_size,
        )
        url = ray_serve.start(options, address=args.address, host=args.host, port=args.port)
    except TtsError as err:
        print(f"error: {err}" + (f"\nhint: {err.hint}" if err.hint else ""), file=sys.stderr)
        return 2
    print(f"serving {url}  (POST /v1/synthesize, POST /v1/audio/speech, GET /v1/service)")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: as Ctrl-C
    try:
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    finally:
        ray_serve.stop()
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _setting(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as a setting; VALUE read as JSON where it is (numbers, true), else text."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise TtsError("invalid_settings", f"--set {item!r} is not KEY=VALUE")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def doctor_report(
    device: str | None = None,
    precision: str | None = None,
    attention: str | None = None,
    backend: str | None = None,
    model: dict[str, str | None] | None = None,
    batch_size: str | None = None,
    quantization: str | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """Status, decision and advice as JSON-ready data; ``usable`` says whether a load could work."""
    from .backends.device import check_device
    from .devices import batch_size_for, cpu_speed_advice, decide, probe
    from .settings import parse_settings

    status = probe(free_memory=True)
    extra = {
        "Device": device,
        "Precision": precision,
        "Quantization": quantization,
        "Attention": attention,
        "Backend": backend,
        "BatchSize": batch_size,
        **(model or {}),
    }
    report: dict[str, Any] = {
        "acceleration": status.model_dump(mode="json"),
        "settings": {k: v for k, v in extra.items() if v is not None},
        "decision": None,
        "model": None,
        "usable": False,
        "error": None,
        "advice": [],
        "frame_bound": frame_bound_report(text),
    }
    try:
        settings = parse_settings(extra)
        plan = decide(settings, status)
        report["decision"] = {
            "device": plan.device,
            "source": plan.source,
            "dtype": plan.dtype,
            "quantization": plan.quantization,
            "attn_implementation": plan.attn_implementation,
            "backend": plan.backend,
            "why": plan.why,
        }
        check_device(plan.device)  # the loader's own placement probe: one real allocation
        report["model"] = model_report(extra)
        if not report["model"]["valid"]:
            raise _model_error(report["model"])
    except TtsError as err:
        report["error"] = err.to_dict()
    else:
        report["usable"] = True
        report["advice"] = advice(status, plan.device)
        suggestion = cpu_speed_advice(plan, status, batch_size_for(settings.BatchSize, plan))
        if suggestion:
            report["advice"].append(suggestion)
    return report


def frame_bound_report(text: str | None) -> dict[str, Any]:
    """The rule that bounds a piece's frames by its text (``budgets``), and with ``text``
    that line's bound."""
    from . import budgets

    report: dict[str, Any] = {
        "chars_per_second": budgets.NORMAL_RATES,
        "digit_chars": budgets.DIGIT_CHARS,
        "pause_s": budgets.PAUSE_S,
        "margin": budgets.MARGIN,
        "floor_s": budgets.FLOOR_S,
    }
    if text is not None:
        frames = budgets.text_bound(text)
        report |= {"text": text, "frames": frames, "seconds": frames / budgets.FRAMES_PER_SECOND}
    return report


def model_report(extra: dict[str, Any]) -> dict[str, Any]:
    """The folder the settings select: where, present, valid, what it lacks."""
    from .registry import model_info
    from .settings import model_settings

    return model_info(model_settings(extra).model, configured=True).model_dump(mode="json")


def _model_error(model: dict[str, Any]) -> TtsError:
    """The error a load would give for the selected folder."""
    from pathlib import Path

    from .registry import check_model_dir

    try:
        check_model_dir(Path(model["local_path"]))
    except TtsError as err:
        return err
    return TtsError("model_invalid", f"model folder {model['local_path']}: {model['missing']}")


def advice(status: AccelerationStatus, device: str) -> list[str]:
    """Model-size advice for the chosen device (the seed's: small GPUs take 0.6B models)."""
    if not device.startswith("cuda"):
        return ["Running on the CPU: prefer the 0.6B models; expect slower than real time."]
    index = int(device.split(":")[1])
    gpu = next((g for g in status.gpus if g.index == index), None)
    if gpu is None:
        return []
    gib = gpu.total_memory_bytes / 1024**3
    if gpu.total_memory_bytes < SMALL_GPU_BYTES:
        return [f"{gpu.name} has {gib:.1f} GiB: prefer the 0.6B models (1.7B needs more memory)."]
    return [f"{gpu.name} has {gib:.1f} GiB: the 0.6B and 1.7B models both fit."]


def render(report: dict[str, Any]) -> str:
    """The report as a readable table."""
    acc = report["acceleration"]
    rows = [
        ("CUDA available", acc["cuda_available"]),
        ("supported", acc["supported"]),
        ("reasons", ", ".join(acc["reasons"]) or "-"),
        ("preferred device", acc["preferred_device"]),
        ("torch", f"{acc['torch_version']} (CUDA {acc['torch_cuda_version'] or 'none'})"),
        ("flash_attn", "installed" if acc["flash_attn_available"] else "not installed"),
        ("cuda_graphs", _graphs_row(acc["extras"])),
        ("CPU", _cpu_row(acc["extras"])),
        ("GPUs", acc["device_count"]),
    ]
    for gpu in acc["gpus"]:
        cc = ".".join(map(str, gpu["compute_capability"]))
        free = gpu["free_memory_bytes"]
        free_text = f" ({free / 1024**3:.1f} GiB free)" if free is not None else ""
        rows.append(
            (
                f"  cuda:{gpu['index']}",
                f"{gpu['name']}, {gpu['total_memory_bytes'] / 1024**3:.1f} GiB{free_text}, "
                f"compute capability {cc}, bf16 {'yes' if gpu['bf16_supported'] else 'no'}",
            )
        )
    decision = report["decision"]
    if decision:
        rows += [
            ("device", f"{decision['device']} ({decision['source']})"),
            ("dtype", decision["dtype"]),
            ("quantization", decision["quantization"]),
            ("attention", decision["attn_implementation"]),
            ("backend", decision["backend"]),
            ("why", decision["why"]),
        ]
    model = report.get("model")
    if model:
        state = (
            "valid" if model["valid"] else "present, incomplete" if model["present"] else "missing"
        )
        rows.append(("model", f"{model['key']} at {model['local_path']} ({state})"))
        if model["missing"]:
            rows.append(("  missing", ", ".join(model["missing"])))
    if report["error"]:
        err = report["error"]
        rows.append(("error", f"{err['code']}: {err['detail']}"))
        if err["hint"]:
            rows.append(("hint", err["hint"]))
    bound = report["frame_bound"]
    rates = bound["chars_per_second"]
    rows.append(
        (
            "frame bound",
            f"{bound['margin']}x ordinary speech ({rates['other']} characters a second, Han "
            f"{rates['han']}, kana {rates['kana']}, Hangul {rates['hangul']}; a digit "
            f"{bound['digit_chars']} letters, {bound['pause_s']} s a mark), at least "
            f"{bound['floor_s']} s (FrameBound=auto)",
        )
    )
    if "frames" in bound:
        rows.append(("  this text", f"{bound['frames']} frames ({bound['seconds']:.1f} s)"))
    rows += [("advice", line) for line in report["advice"]]
    rows.append(("verdict", "usable" if report["usable"] else "NOT usable"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _graphs_row(extras: dict[str, Any]) -> str:
    graphs = extras.get("cuda_graphs") or {}
    if graphs.get("available"):
        return f"installed ({graphs['package']} {graphs['version']})"
    return "not installed (pip install 'qwen3tts-plugin[fast]')"


def _cpu_row(extras: dict[str, Any]) -> str:
    cpu = extras.get("cpu") or {}
    if not cpu:
        return "-"
    bf16 = (
        f"bf16 native ({', '.join(cpu['bf16_features'])})"
        if cpu.get("bf16")
        else "no native bf16 (Precision=bf16 refused on the CPU)"
    )
    features = ", ".join(cpu.get("int8_features") or [])
    int8 = (
        f"int8 layers run{f' ({features})' if features else ''} (Quantization=int8)"
        if cpu.get("int8")
        else "no int8 kernels (Quantization=int8 refused)"
    )
    return f"{cpu.get('capability') or '?'}; {bf16}; {int8}"


def _configure_logging(verbose: bool) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.INFO if verbose else logging.WARNING
        ),
        logger_factory=_stderr_logger,
    )


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # Resolved per call: whatever sys.stderr is now (test runners swap it).
    return structlog.PrintLogger(sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
