"""Known models, where their folders live, and what a folder must hold before a load."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hookspecs import ModelInfo, TtsError

from .hints import MODELS_DIR_HINT, download_hint


@dataclass(frozen=True)
class ModelSpec:
    """A published model: its settings key, repository id, kind and size."""

    key: str
    repo_id: str
    kind: str
    size: str

    @property
    def folder_name(self) -> str:
        """The local folder name: the repository name, as the hub's CLI lays it out."""
        return self.repo_id.rsplit("/", 1)[-1]


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec("custom_0_6b", "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice", "custom_voice", "0.6B"),
        ModelSpec("custom_1_7b", "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice", "custom_voice", "1.7B"),
        ModelSpec("base_0_6b", "Qwen/Qwen3-TTS-12Hz-0.6B-Base", "base", "0.6B"),
        ModelSpec("base_1_7b", "Qwen/Qwen3-TTS-12Hz-1.7B-Base", "base", "1.7B"),
        ModelSpec(
            "voice_design_1_7b", "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign", "voice_design", "1.7B"
        ),
    )
}
DEFAULT_MODEL_KEY = "custom_0_6b"

MODE_FOR_KIND = {
    "custom_voice": "custom_voice",
    "voice_design": "voice_design",
    "base": "voice_clone",
}
"""The voice mode each kind of model speaks (``config.json``'s ``tts_model_type``)."""

# What from_pretrained reads. Each entry lists alternatives; the first is the name reported.
REQUIRED_FILES: tuple[tuple[str, ...], ...] = (
    ("config.json",),
    ("generation_config.json",),
    ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"),
    ("tokenizer_config.json",),
    ("vocab.json", "tokenizer.json"),
    ("merges.txt", "tokenizer.json"),
    ("preprocessor_config.json",),
    ("speech_tokenizer/config.json",),
    ("speech_tokenizer/model.safetensors", "speech_tokenizer/pytorch_model.bin"),
    ("speech_tokenizer/preprocessor_config.json",),
)

_SIZE_NAMES = {"0b6": "0.6B", "1b7": "1.7B"}


@dataclass(frozen=True)
class ModelFacts:
    """What ``config.json`` says about a model folder, read without loading weights."""

    kind: str
    size: str | None
    speakers: tuple[str, ...]
    languages: tuple[str, ...]

    @property
    def voice_modes(self) -> tuple[str, ...]:
        """The voice modes this model can synthesise (one per kind in Qwen3-TTS)."""
        mode = MODE_FOR_KIND.get(self.kind)
        return (mode,) if mode else ()


@dataclass(frozen=True)
class ResolvedModel:
    """The model a settings object selects: as configured, where it lives, and the published
    model it is (matched by folder name for a folder named directly; None when unknown)."""

    model: str
    path: Path
    spec: ModelSpec | None
    local: bool = False
    """Named by a folder path (ModelPath), not by a registry key."""


def resolve_model(model_path: Path | None, model_key: str, models_dir: Path) -> ResolvedModel:
    """The one place of the rule: ModelPath, else ``models_dir/<repo name>`` for ModelKey
    (``unknown_model_key`` when the registry does not know it). Looks at nothing on disk."""
    if model_path is not None:
        path = model_path.expanduser()
        return ResolvedModel(str(model_path), path, spec_for_folder(path), local=True)
    spec = MODELS.get(model_key)
    if spec is None:
        raise unknown_key_error(model_key)
    return ResolvedModel(spec.key, models_dir / spec.folder_name, spec)


def spec_for_folder(path: Path) -> ModelSpec | None:
    """The published model whose repository name ``path``'s folder carries, if any."""
    return next((s for s in MODELS.values() if s.folder_name == path.name), None)


def unknown_key_error(key: str) -> TtsError:
    """The error for a ModelKey the registry does not know."""
    return TtsError(
        "unknown_model_key",
        f"unknown ModelKey {key!r}; known keys: {', '.join(MODELS)}",
        "Set ModelKey to one of the known keys, or ModelPath to a local model folder.",
    )


def missing_files(path: Path) -> list[str]:
    """What keeps ``path`` from loading, found without loading it (empty when complete): the
    files it lacks, and weights cut short or damaged (``"model.safetensors (truncated: ...)"``).
    """
    missing = [names[0] for names in REQUIRED_FILES if not any((path / n).is_file() for n in names)]
    return missing + weight_problems(path) + weight_problems(path / "speech_tokenizer")


def weight_problems(folder: Path) -> list[str]:
    """Safetensors weights in ``folder`` (one file, or the shards an index lists) that are
    missing, cut short or damaged, named relative to the model folder."""
    prefix = "speech_tokenizer/" if folder.name == "speech_tokenizer" else ""
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted({str(name) for name in weight_map.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return [f"{prefix}{index.name} (unreadable)"]
    else:
        return []
    problems = []
    for name in files:
        file = folder / name
        problem = "missing" if not file.is_file() else safetensors_problem(file)
        if problem:
            problems.append(f"{prefix}{name} ({problem})")
    return problems


MAX_SAFETENSORS_HEADER = 100_000_000
"""The largest header the safetensors library itself accepts (bytes)."""


def safetensors_problem(file: Path) -> str | None:
    """Why ``file`` is not a whole safetensors file (an interrupted download), or None.

    Reads the header only: 8 bytes of length, then a JSON table whose offsets say where the
    data ends; the file must end exactly there. The verdict is kept while the file's size and
    modification time stay the same (every request checks its folder: one ``stat`` then).
    """
    try:
        stat = file.stat()
    except OSError as exc:
        return f"damaged: unreadable ({type(exc).__name__})"
    return _header_problem(str(file), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _header_problem(name: str, size: int, _mtime_ns: int) -> str | None:
    file = Path(name)
    try:
        with file.open("rb") as stream:
            head = stream.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else 0
            if not 2 <= length <= MAX_SAFETENSORS_HEADER or 8 + length > size:
                return f"truncated: {size} bytes and no complete header"
            table = json.loads(stream.read(length))
        if not isinstance(table, dict):
            return "damaged: the header is not a table"
        ends = [0]
        for name, entry in table.items():
            if name == "__metadata__":
                continue
            start, end = entry["data_offsets"]
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
                return f"damaged: bad offsets for {name}"
            ends.append(end)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"damaged: unreadable header ({type(exc).__name__})"
    expected = 8 + length + max(ends)
    if size < expected:
        return f"truncated: {size} of {expected} bytes"
    if size > expected:
        return f"damaged: {size} bytes where the header describes {expected}"
    return None


def check_model_dir(path: Path) -> None:
    """Raise ``model_not_found`` or ``model_invalid`` unless ``path`` is a complete model folder."""
    if not path.is_dir():
        raise TtsError("model_not_found", f"model folder not found: {path}", folder_hint(path))
    missing = missing_files(path)
    if missing:
        raise TtsError(
            "model_invalid",
            f"model folder {path} is incomplete; missing or damaged: {', '.join(missing)}",
            folder_hint(path),
        )


def folder_hint(path: Path) -> str:
    """What to do about a missing or broken folder: the download command for a published
    model's folder (named like its repository), else the general advice."""
    spec = spec_for_folder(path)
    return download_hint(spec.repo_id, path) if spec else MODELS_DIR_HINT


def read_model_facts(path: Path) -> ModelFacts:
    """Kind, size, speakers, languages from ``path/config.json``; else ``model_invalid``."""
    config_file = path / "config.json"
    try:
        config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
        talker = config.get("talker_config") or {}
        kind = str(config["tts_model_type"])
        speakers = tuple(str(s) for s in (talker.get("spk_id") or {}))
        codec_languages = talker.get("codec_language_id") or {}
        languages = ("auto", *(str(lang) for lang in codec_languages if "dialect" not in lang))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TtsError(
            "model_invalid", f"cannot read {config_file}: {exc}", MODELS_DIR_HINT
        ) from exc
    if kind not in MODE_FOR_KIND:
        raise TtsError(
            "model_invalid",
            f"{config_file}: tts_model_type {kind!r} is not a Qwen3-TTS model type "
            f"({', '.join(MODE_FOR_KIND)})",
            MODELS_DIR_HINT,
        )
    size = _SIZE_NAMES.get(str(config.get("tts_model_size", "")))
    return ModelFacts(kind=kind, size=size, speakers=speakers, languages=languages)


def model_info(model: ResolvedModel, configured: bool = False) -> ModelInfo:
    """A model's status where it lives, for ``tts_capabilities`` and ``doctor``; its key is the
    model as configured (a registry key, or the folder path as given)."""
    return _folder_info(model.path, model.model, model.spec, configured)


def catalog(models_dir: Path, selected: ResolvedModel | None) -> list[ModelInfo]:
    """Every published model as found in ``models_dir``, the ``selected`` one marked
    ``configured``; a folder the settings name directly comes last."""
    infos = [
        model_info(
            resolve_model(None, key, models_dir),
            configured=selected is not None and not selected.local and selected.model == key,
        )
        for key in MODELS
    ]
    if selected is not None and selected.local:
        infos.append(model_info(selected, configured=True))
    return infos


def _folder_info(path: Path, key: str, spec: ModelSpec | None, configured: bool) -> ModelInfo:
    present = path.is_dir()
    missing = missing_files(path) if present else []
    facts = None
    if present and "config.json" not in missing:
        try:
            facts = read_model_facts(path)
        except TtsError:
            missing = [*missing, "config.json (unreadable or not a Qwen3-TTS model)"]
    if facts is not None:
        kind, size = facts.kind, facts.size
    else:
        kind, size = (spec.kind, spec.size) if spec else (None, None)
    return ModelInfo(
        key=key,
        repo_id=spec.repo_id if spec else "",
        kind=kind,
        size=size,
        configured=configured,
        local_path=path,
        present=present,
        valid=present and not missing,
        missing=missing,
        speakers=list(facts.speakers) if facts else [],
        languages=list(facts.languages) if facts else [],
    )
