"""Import check for the offline GPU machine: import every module the GPU calls need.

Run by ``scripts/gpu_check.sh`` before pytest (the GPU tests import qwen_tts inside their bodies,
after the CUDA skip, so a CPU collection proves nothing about imports). Walks every module of
qwen_tts, faster_qwen3_tts, hookspecs, qwen3tts_plugin and benchmarks (directories without an
``__init__.py`` too: qwen_tts ships namespace subpackages that ``pkgutil.walk_packages`` skips),
imports the audio stack qwen_tts loads lazily, then makes a few cheap calls into it (librosa's
mel filter, resampling through soxr, a WAV round trip through soundfile). One line per failure,
a summary line, exit 1 if anything failed.

    python scripts/gpu_imports.py [--modules-out FILE]

``--modules-out`` writes the top-level modules imported (one a line), to compare environments.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import importlib.util
import io
import os
import pkgutil
import sys
import time
import traceback
import warnings

ROOTS = ("qwen_tts", "faster_qwen3_tts", "hookspecs", "qwen3tts_plugin", "benchmarks")

EXCLUDED = {
    # qwen_tts
    "qwen_tts.cli.demo": "the Gradio web demo: needs gradio (neither carried nor on the image)",
    # qwen3tts_plugin
    "qwen3tts_plugin.__main__": "runs the CLI (sys.exit) when imported; the doctor step runs it",
    "qwen3tts_plugin.ray_serve": "the Ray Serve application: needs ray ([ray] extra, host only)",
    # benchmarks
    "benchmarks.server_flood": (
        "drives `python -m example_host serve`: imports example_host.serving (fastapi, uvicorn: "
        "the [host-http] extra, host only)"
    ),
}
"""Modules not imported on the GPU machine, each with the reason. faster_qwen3_tts needs no
exception: its ggml backend imports qwentts_cpp (the [ggml] extra) only when constructed, and the
wheel ships no demo server (the [demo] extra's fastapi app lives in its repository only)."""

EXTRA = (
    # What qwen_tts imports at the top of its modules or lazily through librosa's lazy_loader.
    "soundfile",
    "soxr",
    "audioread",
    "pooch",
    "sox",
    "onnxruntime",
    "torchaudio",
    "torchaudio.compliance.kaldi",
    "librosa",
    "librosa.core",
    "librosa.core.audio",
    "librosa.core.spectrum",
    "librosa.core.convert",
    "librosa.filters",
    "librosa.util",
    "librosa.util.utils",
    "librosa.util.files",
    # What the tests and the doctor import besides.
    "pytest",
    "safetensors.torch",
    "transformers",
    "accelerate",
    "huggingface_hub",
    "tokenizers",
    "pydantic",
    "structlog",
    "platformdirs",
    "pluggy",
)


def walk(root: str) -> list[str]:
    """``root`` and every module under it, namespace subpackages included, sorted."""
    spec = importlib.util.find_spec(root)  # found, not imported: a failing root still walks
    if spec is None:
        raise ModuleNotFoundError(f"No module named {root!r}")
    names = {root}
    for base in spec.submodule_search_locations or []:
        for folder, dirs, _files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if d.isidentifier())
            relative = os.path.relpath(folder, base)
            prefix = root if relative == "." else root + "." + relative.replace(os.sep, ".")
            if prefix != root:
                names.add(prefix)
            for info in pkgutil.iter_modules([folder]):
                if not info.ispkg:
                    names.add(f"{prefix}.{info.name}")
    return sorted(names)


def calls() -> list[tuple[str, object]]:
    """Cheap calls that load what imports alone leave lazy (numba's jit, soxr, libsndfile)."""
    import numpy as np

    def mel():
        from librosa.filters import mel

        assert mel(sr=24_000, n_fft=1024, n_mels=128, fmin=0, fmax=12_000).shape == (128, 513)

    def resample():
        import librosa

        out = librosa.resample(y=np.zeros(2400, np.float32), orig_sr=24_000, target_sr=16_000)
        assert out.shape == (1600,)

    def wav_round_trip():
        import soundfile as sf

        buffer = io.BytesIO()
        sf.write(buffer, np.zeros(240, np.float32), 24_000, format="WAV", subtype="PCM_16")
        buffer.seek(0)
        data, rate = sf.read(buffer)
        assert rate == 24_000 and data.shape == (240,)

    def kaldi_fbank():
        import torch
        import torchaudio.compliance.kaldi as kaldi

        assert kaldi.fbank(torch.zeros(1, 16_000), num_mel_bins=80).shape[1] == 80

    return [
        ("librosa.filters.mel", mel),
        ("librosa.resample", resample),
        ("soundfile WAV", wav_round_trip),
        ("kaldi.fbank", kaldi_fbank),
    ]


VERSIONS = (
    *("torch", "torchaudio", "numpy", "transformers", "huggingface-hub", "tokenizers"),
    *("accelerate", "qwen-tts", "faster-qwen3-tts", "librosa", "soundfile", "onnxruntime"),
    *("pydantic", "typing-extensions", "scipy", "numba", "scikit-learn"),
)


def versions() -> str:
    """Each key distribution's version, and "(site)" where it came from the carried wheels
    (the first on PYTHONPATH): an image package the wheels shadow shows as such."""
    from importlib import metadata

    site = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
    shown = []
    for name in VERSIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            shown.append(f"{name} -")
            continue
        where = str(dist.locate_file(""))
        shown.append(f"{name} {dist.version}" + (" (site)" if site and where == site else ""))
    return "versions: " + ", ".join(shown)


def cuda() -> str:
    """'cuda: yes <card>' or 'cuda: no' (gpu_check.sh reads it)."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda: yes {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    except BaseException as exc:  # noqa: BLE001
        return f"cuda: no ({type(exc).__name__}: {exc})"
    return "cuda: no"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_imports.py")
    parser.add_argument("--modules-out", help="write the top-level modules imported here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    failures: list[str] = []
    done = excluded = 0

    def attempt(name: str) -> None:
        nonlocal done
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: every failure is a line
            failures.append(f"FAIL import {name}: {type(exc).__name__}: {exc}")
            return
        done += 1
        for w in caught:
            if not issubclass(w.category, DeprecationWarning | PendingDeprecationWarning):
                print(f"warning on import {name}: {w.category.__name__}: {w.message}")

    for root in ROOTS:
        try:
            names = walk(root)
        except BaseException as exc:  # noqa: BLE001
            failures.append(f"FAIL import {root}: {type(exc).__name__}: {exc}")
            continue
        for name in names:
            if name in EXCLUDED:
                excluded += 1
                continue
            attempt(name)
    for name in EXTRA:
        attempt(name)
    called = 0
    for label, call in calls():
        try:
            call()
            called += 1
        except BaseException as exc:  # noqa: BLE001
            tail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            failures.append(f"FAIL call {label}: {tail}")
    for line in failures:
        print(line)
    causes = collections.Counter(line.split(": ", 1)[1] for line in failures)
    for cause, count in causes.most_common():  # the distinct errors, most frequent first
        print(f"cause ({count}x): {cause}")
    print(versions())
    print(cuda())
    if args.modules_out:
        tops = sorted({name.split(".")[0] for name in sys.modules if not name.startswith("_")})
        with open(args.modules_out, "w", encoding="utf-8") as f:
            f.write("\n".join(tops) + "\n")
    seconds = time.perf_counter() - started
    print(
        f"imports: {done} modules imported, {excluded} excluded, {called} calls ran, "
        f"{len(failures)} failed, {seconds:.1f} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())  # the repo's packages, as PYTHONPATH has them on the card
    sys.exit(main())
