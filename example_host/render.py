"""Plain-text tables for the terminal. Pure functions: data in, text out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hookspecs import Capabilities, LoadResult, SynthesisResult

from .dubbing import DubReport


def pairs(rows: Sequence[tuple[str, Any]], indent: str = "") -> str:
    """Two columns: names padded to the widest, then values."""
    if not rows:
        return ""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{indent}{name.ljust(width)}  {value}".rstrip() for name, value in rows)


def grid(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> str:
    """Columns with a header line, each padded to its widest cell."""
    cells = [list(map(str, headers)), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(indent + line.rstrip() for line in lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _short_list(items: Sequence[str], limit: int = 6) -> str:
    if not items:
        return "-"
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, … ({len(items)})"


def _extra(value: Any) -> str:
    """An engine's extra acceleration fact: an optional library as installed or not (with its
    package and version when the engine says), anything else as it is."""
    if isinstance(value, dict) and "available" in value:
        if not value["available"]:
            return "not installed"
        named = " ".join(str(value[k]) for k in ("package", "version") if value.get(k))
        return f"installed ({named})" if named else "installed"
    if isinstance(value, dict):
        return ", ".join(f"{key} {_fact(fact)}" for key, fact in value.items()) or "-"
    return str(value)


def _fact(value: Any) -> str:
    if isinstance(value, bool):
        return _yes(value)
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "-"
    return str(value)


def engine_text(caps: Capabilities) -> str:
    """One engine: what it offers, this machine's acceleration, and its models."""
    acc = caps.acceleration
    rows: list[tuple[str, Any]] = [
        ("provider", f"{caps.provider} ({caps.display_name} {caps.version})"),
        ("voice modes", ", ".join(caps.voice_modes)),
        ("sample rate", f"{caps.sample_rate} Hz"),
        ("acceleration", f"{acc.backend}, preferred device {acc.preferred_device}"),
        (
            "  supported",
            _yes(acc.supported) + (f" ({', '.join(acc.reasons)})" if acc.reasons else ""),
        ),
        ("  torch", f"{acc.torch_version or '-'} (CUDA {acc.torch_cuda_version or 'none'})"),
        ("  flash_attn", "installed" if acc.flash_attn_available else "not installed"),
    ]
    rows += [(f"  {name}", _extra(value)) for name, value in acc.extras.items()]
    for gpu in acc.gpus:
        cc = ".".join(map(str, gpu.compute_capability))
        rows.append(
            (
                f"  cuda:{gpu.index}",
                f"{gpu.name}, {gpu.total_memory_bytes / 1024**3:.1f} GiB, compute capability {cc}",
            )
        )
    models = grid(
        ["model", "size", "kind", "present", "valid", "speakers", "languages"],
        [
            (
                m.key,
                m.size,
                m.kind,
                _yes(m.present),
                _yes(m.valid),
                _short_list(m.speakers),
                _short_list(m.languages),
            )
            for m in caps.models
        ],
        indent="  ",
    )
    folders = {m.local_path.parent for m in caps.models if m.local_path is not None}
    where = f" (in {folders.pop()})" if len(folders) == 1 else ""
    return pairs(rows) + f"\nmodels{where}\n" + models


def settings_text(path: Path, data: dict[str, Any]) -> str:
    """Every config of the settings file and its extra_params."""
    blocks = [f"settings file  {path}"]
    for config_id, config in data["configs"].items():
        state = "enabled" if config.get("enabled", True) else "disabled"
        head = f"{config_id}  ({config['provider']}, {state})"
        if config.get("description"):
            head += f"  {config['description']}"
        params = config.get("extra_params", {})
        body = pairs([(k, _json_value(v)) for k, v in params.items()], indent="  ")
        blocks.append(head + ("\n" + body if body else "\n  (no extra_params)"))
    return "\n".join(blocks)


def _json_value(value: Any) -> str:
    """Strings bare, everything else as JSON would show it."""
    import json

    return value if isinstance(value, str) else json.dumps(value)


def smoke_text(loaded: LoadResult, result: SynthesisResult, voice_mode: str) -> str:
    """The decisions a smoke run made and what it produced."""
    return pairs(
        [
            ("model", loaded.model),
            ("voice_mode", voice_mode),
            ("device", loaded.device),
            ("device_source", loaded.device_source),
            ("dtype", f"{loaded.dtype} (codec {loaded.codec_dtype})"),
            ("quantization", loaded.quantization),
            ("attention", loaded.attn_implementation),
            ("load_s", f"{loaded.load_s:.2f}"),
            ("cached", str(loaded.cached).lower()),
            ("synth_s", f"{result.synth_s:.2f}"),
            ("audio_s", f"{result.duration_s:.2f}"),
            ("rtf", f"{result.rtf:.3f}"),
            ("pieces", f"{result.pieces} ({result.cut_pieces} cut at the smoke budget)"),
            ("wav", result.path),
        ]
    )


def preview_line(result: SynthesisResult) -> str:
    """The one line the listen button prints."""
    cut = f" cut_pieces={result.cut_pieces}" if result.cut_pieces else ""
    return (
        f"{result.path}  duration={result.duration_s:.2f}s device={result.device} "
        f"dtype={result.dtype} codec_dtype={result.codec_dtype} "
        f"quantization={result.quantization} rtf={result.rtf:.3f} pieces={result.pieces}{cut}"
    )


def streamed_preview_line(result: SynthesisResult, first_s: float, chunks: int) -> str:
    """The listen button's line for a streamed preview: when the first audio came."""
    return f"{preview_line(result)} first_audio={first_s:.3f}s chunks={chunks}"


def dub_summary(report: DubReport) -> str:
    """Counts by outcome, audio and wall time, the skipped segments, one line per failure."""
    rows: list[tuple[str, Any]] = [
        ("segments", report.total),
        ("ok", report.ok),
        ("resumed", report.resumed),
        ("skipped", report.skipped),
        ("failed", report.failed),
    ]
    if report.not_run:
        rows.append(("pending", report.not_run))
    rows += [
        (
            "batch",
            f"lists of {report.batch_size}, up to {report.largest_batch} segments per "
            "generate call",
        ),
        ("audio", f"{report.audio_s:.2f} s"),
        ("wall", f"{report.wall_s:.2f} s"),
        ("manifest", report.manifest),
    ]
    lines = [pairs(rows)]
    if report.skipped_segments:
        numbers = ", ".join(str(n) for n in report.skipped_segments)
        lines.append(f"skipped  segment {numbers}: nothing to speak")
    for entry in report.failures:
        error = entry["error"]
        lines.append(f"failed   segment {entry['segment']}: {error['code']}: {error['detail']}")
    return "\n".join(lines)
