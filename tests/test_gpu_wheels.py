"""The carried wheels (scripts/fetch_gpu_wheels.sh) plus the GPU machine's image
(scripts/device_image.txt) hold everything the GPU calls install and import.

No network, no GPU: the Requires-Dist closure is read from this venv's installed metadata (the
carried wheel's own METADATA where .whl/ holds it), markers evaluated for CPython 3.12 on Linux
x86_64, no extras. The closure stops at the image's packages (the image is consistent in
itself) and checks every version the image is known to have, and every carried version, against
what asks for it. ``scripts/gpu_dry_run.sh`` is the full proof (an image-like venv, the same
install, every module imported); this is the cheap guard against the list rotting.
"""

from __future__ import annotations

import re
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
FETCH = ROOT / "scripts" / "fetch_gpu_wheels.sh"
IMAGE = ROOT / "scripts" / "device_image.txt"
WHEELS = ROOT / ".whl"

TARGET = {
    "implementation_name": "cpython",
    "implementation_version": "3.12.3",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": "3.12.3",
    "python_version": "3.12",
    "sys_platform": "linux",
    "extra": "",
}
"""The GPU machine's interpreter (../shared/gpu.md: Python 3.12.3, Linux x86_64)."""

FASTER_QWEN3_TTS = [
    "qwen-tts>=0.1.1",
    "transformers<5,>=4.57",
    "torch>=2.5.1",
    "numpy",
    "soundfile",
    "huggingface-hub<1.0,>=0.36.0",
]
"""faster-qwen3-tts 0.3.2's Requires-Dist without extras (its [ggml] and [demo] extras are not
used). The dev venv does not install the [fast] extra and CI has no .whl/, so it is written here;
checked against the wheel's METADATA where .whl/ holds it."""

NOT_NEEDED = {
    "gradio": "qwen-tts requires it for its web demo (qwen_tts.cli.demo) alone, never imported",
}
"""Requirements the GPU calls never import (scripts/gpu_imports.py excludes their modules)."""

ROOTS = ["qwen3tts-plugin", "qwen-tts", "faster-qwen3-tts", "pytest"]
"""What the GPU calls import: our package (its runtime dependencies, [fast] by name), qwen-tts,
faster-qwen3-tts (the cuda_graphs backend) and pytest."""


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def carried_list(text: str) -> list[tuple[str, str]]:
    """(name, version) of each NAME==VERSION in the script's WHEELS block."""
    text = text[text.index("# BEGIN WHEELS") : text.index("# END WHEELS")]
    return [
        (norm(name), version)
        for name, version in re.findall(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s)#]+)", text)
    ]


def image_list(text: str) -> dict[str, str | None]:
    """name -> the version seen on the image (None: any)."""
    image: dict[str, str | None] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            spec = line.split()[0]
            name = re.split(r"[<>=!~]", spec, maxsplit=1)[0]
            exact = re.fullmatch(r"[^=<>!~]+==([^=<>!~,]+)", spec)
            image[norm(name)] = exact.group(1) if exact else None
    return image


def wheel_requires(name: str, version: str) -> list[str] | None:
    """Requires-Dist from the carried wheel in .whl/, if it is there."""
    prefix = f"{name.replace('-', '_')}-{version}-"
    for wheel in sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []:
        if wheel.name.lower().startswith(prefix):
            with zipfile.ZipFile(wheel) as z:
                meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
                text = z.read(meta).decode("utf-8")
            return re.findall(r"^Requires-Dist: (.+)$", text, re.MULTILINE)
    return None


def requires(name: str, version: str | None) -> tuple[list[str], str]:
    """A distribution's Requires-Dist and where they were read."""
    if version:
        found = wheel_requires(name, version)
        if found is not None:
            return found, "carried wheel"
    if name == "faster-qwen3-tts":
        return FASTER_QWEN3_TTS, "written in this test"
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return [], "not installed here: its requirements unchecked"
    where = "dev venv" + (f" {dist.version}" if version and dist.version != version else "")
    return list(dist.requires or []), where


def applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(TARGET)


def closure_problems(carried: dict[str, str], image: dict[str, str | None]) -> list[str]:
    """Each requirement of the GPU calls' closure that neither the carried wheels nor the image
    satisfy, as a line naming who asks for it."""
    problems: list[str] = []
    seen: set[str] = set()
    queue = list(ROOTS)
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        own, source = requires(name, carried.get(name))
        for line in own:
            requirement = Requirement(line)
            if not applies(requirement):
                continue
            dep = norm(requirement.name)
            if dep in NOT_NEEDED:
                continue
            if dep in carried:
                have: str | None = carried[dep]
            elif dep in image:
                have = image[dep]
            else:
                problems.append(
                    f"{dep} (required by {name}, read from {source}): neither carried "
                    f"nor on the image"
                )
                continue
            if have and not requirement.specifier.contains(Version(have), prereleases=True):
                where = "carried" if dep in carried else "the image's"
                problems.append(f"{dep} {have} ({where}) does not satisfy {name}'s {line!r}")
            if dep in carried:
                queue.append(dep)
    return problems


def test_the_image_list_is_read():
    image = image_list(IMAGE.read_text(encoding="utf-8"))
    assert len(image) > 190
    assert image["torch"] == "2.11.0" and image["numpy"] == "2.5.2"
    assert {"pytest", "pluggy", "numba", "scipy", "onnxruntime", "requests"} <= image.keys()


def test_one_version_of_each_carried_wheel():
    names = [name for name, _ in carried_list(FETCH.read_text(encoding="utf-8"))]
    assert len(names) > 20
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_carried_wheels_and_the_image_cover_the_gpu_calls():
    carried = dict(carried_list(FETCH.read_text(encoding="utf-8")))
    image = image_list(IMAGE.read_text(encoding="utf-8"))
    assert closure_problems(carried, image) == []


@pytest.mark.parametrize(
    ("dropped", "missing"),
    [
        # The list as it stood: pycparser shows once cffi is carried (cffi's requirement).
        (("decorator", "cffi", "pycparser"), {"decorator", "cffi"}),
        (("pycparser",), {"pycparser"}),
    ],
)
def test_a_hole_in_the_list_is_named(dropped, missing):
    carried = dict(carried_list(FETCH.read_text(encoding="utf-8")))
    for name in dropped:
        carried.pop(name)
    image = image_list(IMAGE.read_text(encoding="utf-8"))
    assert {line.split()[0] for line in closure_problems(carried, image)} == missing


def test_faster_qwen3_tts_requirements_as_written():
    carried = dict(carried_list(FETCH.read_text(encoding="utf-8")))
    found = wheel_requires("faster-qwen3-tts", carried["faster-qwen3-tts"])
    if found is None:
        pytest.skip("no .whl/ here (scripts/fetch_gpu_wheels.sh fills it)")
    marker_free = [line for line in found if Requirement(line).marker is None]
    assert marker_free == FASTER_QWEN3_TTS
