"""``Qwen3TTSService``: the editor's in-tree Qwen3-TTS service, answered through the hooks.

It keeps that service's method names, parameters, ``async``-ness and return dicts, and raises
``RuntimeError("<prefix>:<detail>")`` with the prefixes the editor's routes match. It reaches
the engine only through ``hookspecs.plugin_manager()`` and the hooks; unlike the service it
replaces it never falls back to the CPU, never moves a model with ``.to()``, patches nothing
in torch, and answers the speaker and language lists without loading a model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import hookspecs
from hookspecs import TtsError

from .. import PROVIDER
from ..log import get_logger
from ..settings import PRECISION_NAMES

if TYPE_CHECKING:
    import pluggy

    from hookspecs import (
        Capabilities,
        EngineConfig,
        EngineStatus,
        ModelInfo,
        SynthesisRequest,
        Voice,
    )

log = get_logger(__name__)

T = TypeVar("T")

EDITOR_PREFIXES = {
    "engine_unavailable": "qwen_tts_import_failed",
    "model_load_failed": "qwen_tts_model_load_failed",
}
"""Engine codes the editor knows under another name; every other code is its own prefix."""

DEFAULT_MODEL_KEY = "custom_0_6b"
"""The model the editor uses when a call names none."""

DEFAULT_SPEAKER = "Vivian"
"""The speaker the editor gives a custom_role voice asset that names none."""


class Qwen3TTSService:
    """The editor's ``Qwen3TTSService``: the same calls and results, on the plugin's engine.

    ``models_dir`` is where the editor keeps its model folders (its ``Qwen3TTSPathManager``
    base folder); None leaves the engine's default (``$QWEN_TTS_MODELS_DIR``, else the user
    data folder). ``extra_params`` are further engine settings (``Precision``, ``BatchSize``,
    ...). ``plugin_manager`` defaults to ``hookspecs.plugin_manager()``; where entry points
    cannot be read (a PyInstaller build without the package metadata), this engine's hooks
    are registered on it directly.
    """

    def __init__(
        self,
        models_dir: str | Path | None = None,
        extra_params: dict[str, Any] | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        self._extra_params = dict(extra_params or {})
        if self._extra_params.get("ModelPath"):
            raise ValueError("the editor names models by key: pass models_dir, not ModelPath")
        if models_dir is not None:
            self._extra_params["ModelsDir"] = str(models_dir)
        self._given_pm = plugin_manager
        self._pm: pluggy.PluginManager | None = None
        self._pm_lock = threading.Lock()

    # --- synthesis (the editor's signatures) ------------------------------------------------

    async def synthesize_custom_voice_to_wav(
        self,
        text: str,
        out_path: Path,
        model_key: str,
        language: str,
        speaker: str,
        instruct: str | None = None,
        device: str | None = None,
    ) -> dict[str, Any]:
        voice = _voice(mode="custom_voice", language=language, speaker=speaker, instruct=instruct)
        return await self._synthesize(text, out_path, model_key, voice, device)

    async def synthesize_voice_clone_to_wav(
        self,
        text: str,
        out_path: Path,
        model_key: str,
        language: str,
        ref_audio: str,
        ref_text: str | None = None,
        x_vector_only_mode: bool = True,
        device: str | None = None,
    ) -> dict[str, Any]:
        voice = _voice(
            mode="voice_clone",
            language=language,
            ref_audio=Path(ref_audio) if ref_audio else None,
            ref_text=ref_text,
            x_vector_only=bool(x_vector_only_mode),
        )
        return await self._synthesize(text, out_path, model_key, voice, device)

    async def synthesize_voice_design_to_wav(
        self,
        text: str,
        out_path: Path,
        model_key: str,
        language: str,
        instruct: str,
        device: str | None = None,
    ) -> dict[str, Any]:
        voice = _voice(mode="voice_design", language=language, instruct=instruct)
        return await self._synthesize(text, out_path, model_key, voice, device)

    async def synthesize_by_voice_asset(
        self,
        text: str,
        out_path: Path,
        voice_asset: Any,
        device: str | None = None,
    ) -> dict[str, Any]:
        """Speak ``text`` in a voice from the editor's voice store (a ``Qwen3TTSVoice`` or its
        dict): ``custom_role`` → a built-in speaker, ``clone`` → a clone of
        ``ref_audio_path``, ``design_clone`` → a clone (with transcript) of the designed
        reference recording."""
        asset = _asset_dict(voice_asset)
        kind = asset.get("kind", "clone")
        model_key = asset.get("model_key", "base_0_6b")
        language = asset.get("language", "Auto")
        ref_audio = str(asset.get("ref_audio_path") or "")
        if kind == "custom_role":
            return await self.synthesize_custom_voice_to_wav(
                text=text,
                out_path=out_path,
                model_key=model_key,
                language=language,
                speaker=str(asset.get("speaker") or DEFAULT_SPEAKER),
                instruct=asset.get("instruct"),
                device=device,
            )
        if kind == "design_clone":
            # The editor's service speaks the asset's ref_text here, whatever text it is given;
            # a narration line is what a caller asks for, so that is what is spoken.
            return await self.synthesize_voice_clone_to_wav(
                text=text,
                out_path=out_path,
                model_key=model_key,
                language=language,
                ref_audio=ref_audio,
                ref_text=asset.get("ref_text"),
                x_vector_only_mode=False,
                device=device,
            )
        return await self.synthesize_voice_clone_to_wav(
            text=text,
            out_path=out_path,
            model_key=model_key,
            language="auto",  # as the editor does: a clone's text language is detected
            ref_audio=ref_audio,
            ref_text=asset.get("ref_text"),
            x_vector_only_mode=bool(asset.get("x_vector_only_mode", True)),
            device=device,
        )

    async def synthesize_to_wav(
        self,
        text: str,
        out_path: Path,
        model_key: str,
        language: str,
        speaker: str | None = None,
        instruct: str | None = None,
        ref_audio: str | None = None,
        ref_text: str | None = None,
        x_vector_only_mode: bool = True,
        device: str | None = None,
    ) -> dict[str, Any]:
        """The editor's legacy entry: custom_* keys speak a built-in speaker (the model's
        first when none is named), every other key clones ``ref_audio``."""
        if model_key.startswith("custom_"):
            chosen = (speaker or "").strip()
            if not chosen:
                supported = await self.list_supported_speakers(model_key=model_key, device=device)
                chosen = next((s.strip() for s in supported if s.strip()), "")
                if not chosen:
                    raise ValueError("speaker_required_for_custom_voice")
            return await self.synthesize_custom_voice_to_wav(
                text=text,
                out_path=out_path,
                model_key=model_key,
                language=language,
                speaker=chosen,
                instruct=instruct,
                device=device,
            )
        return await self.synthesize_voice_clone_to_wav(
            text=text,
            out_path=out_path,
            model_key=model_key,
            language=language,
            ref_audio=str(ref_audio or ""),
            ref_text=ref_text,
            x_vector_only_mode=x_vector_only_mode,
            device=device,
        )

    # --- what a model offers ------------------------------------------------------------------

    async def list_supported_speakers(self, model_key: str, device: str | None = None) -> list[str]:
        """The model's built-in speakers, read from its folder (no model is loaded)."""
        info = await asyncio.to_thread(self._model_info, model_key, device)
        return list(info.speakers)

    async def list_supported_languages(
        self, model_key: str, device: str | None = None
    ) -> list[str]:
        """The model's languages, ``auto`` first, read from its folder (no model is loaded)."""
        info = await asyncio.to_thread(self._model_info, model_key, device)
        return list(info.languages)

    # --- status -------------------------------------------------------------------------------

    def get_runtime_status(self) -> dict[str, Any]:
        """The editor's status badge, from ``tts_status``."""
        status = self._status()
        error = status.last_error
        return {
            "loaded": status.loaded,
            "model_key": status.model,
            "model_path": str(status.model_path) if status.model_path else None,
            "device": status.device or "cpu",
            "precision": PRECISION_NAMES.get(status.dtype or "float32", status.dtype),
            "last_device_error": f"{error.code}:{error.detail}"
            if error is not None and error.code == "model_to_device_failed"
            else None,
        }

    # --- plumbing -----------------------------------------------------------------------------

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The plugin manager the hooks are called on, this engine registered on it."""
        with self._pm_lock:
            if self._pm is None:
                pm = self._given_pm or hookspecs.plugin_manager()
                if pm.get_plugin(PROVIDER) is None:
                    from .. import hooks

                    if not pm.is_registered(hooks):
                        pm.register(hooks, name=PROVIDER)
                        log.info("tts.autocut.registered", reason="no entry point for the engine")
                self._pm = pm
            return self._pm

    def config(self, model_key: str, device: str | None = None, **extra: Any) -> EngineConfig:
        """The engine config for one of the editor's calls."""
        from hookspecs import EngineConfig

        key = (model_key or "").strip() or DEFAULT_MODEL_KEY  # the editor's default, as it does
        params = {**self._extra_params, **extra, "ModelKey": key}
        if device is not None:
            params["Device"] = device
        return EngineConfig(provider=PROVIDER, extra_params=params)

    async def _synthesize(
        self, text: str, out_path: Path, model_key: str, voice: Voice, device: str | None
    ) -> dict[str, Any]:
        from hookspecs import SynthesisRequest

        config = self.config(model_key, device)
        request = SynthesisRequest(config=config, text=text, out_path=Path(out_path), voice=voice)
        result = await asyncio.to_thread(self._call, config, lambda: self._synthesize_now(request))
        return {
            "success": True,
            "path": str(result.path),
            "duration": result.duration_s,
            "sample_rate": result.sample_rate,
        }

    def _synthesize_now(self, request: SynthesisRequest) -> Any:
        result = self.plugin_manager.hook.tts_synthesize(request=request)
        if result is None:
            raise no_engine()
        return result

    def _model_info(self, model_key: str, device: str | None) -> ModelInfo:
        """The folder facts of ``model_key`` (blank: the editor's default), or the error the
        editor raises for it."""
        config = self.config(model_key, device)
        return self._call(config, lambda: self._selected(config, check=True))

    def _selected(self, config: EngineConfig, check: bool = False) -> ModelInfo:
        """The model ``config`` selects, as ``tts_capabilities`` finds its folder; with
        ``check``, ``unknown_model_key`` or ``model_invalid`` unless it is usable."""
        caps = self.capabilities(config)
        key = config.extra_params["ModelKey"]
        info = next((m for m in caps.models if m.configured and m.key == key), None)
        if info is None:
            raise TtsError("unknown_model_key", key)
        if check and not info.valid:
            raise TtsError("model_invalid", key)
        return info

    def _call(self, config: EngineConfig, action: Callable[[], T]) -> T:
        """``action()``, a ``TtsError`` raised as the editor's ``RuntimeError``."""
        try:
            return action()
        except TtsError as err:
            raise RuntimeError(self._editor_message(err, config)) from err

    def _editor_message(self, err: TtsError, config: EngineConfig) -> str:
        """``"<prefix>:<detail>"`` as the editor's service words it; the folder errors as
        ``model_invalid:<key>:<missing,...>|path=<dir>`` (``dir_missing`` when absent)."""
        key = config.extra_params["ModelKey"]
        if err.code == "unknown_model_key":
            return f"unknown_model_key:{key}"
        if err.code in ("model_invalid", "model_not_found"):
            try:
                info = self._selected(config)
            except TtsError:
                info = None
            if info is not None and not info.valid:
                missing = ",".join(info.missing) if info.present else "dir_missing"
                return f"model_invalid:{key}:{missing}|path={info.local_path}"
            return f"model_invalid:{key}:{err.detail}"
        hint = f" | hint: {err.hint}" if err.hint else ""
        return f"{EDITOR_PREFIXES.get(err.code, err.code)}:{err.detail}{hint}"

    def capabilities(self, config: EngineConfig | None = None) -> Capabilities:
        """This engine's ``tts_capabilities`` for ``config`` (``engine_unavailable`` if none)."""
        for caps in self.plugin_manager.hook.tts_capabilities(config=config):
            if caps.provider == PROVIDER:
                return caps
        raise no_engine()

    def _status(self) -> EngineStatus:
        for status in self.plugin_manager.hook.tts_status():
            if status.provider == PROVIDER:
                return status
        error = no_engine()
        raise RuntimeError(f"{EDITOR_PREFIXES[error.code]}:{error.detail}")


def _voice(**fields: Any) -> Voice:
    from hookspecs import Voice

    return Voice(**fields)


def _asset_dict(asset: Any) -> dict[str, Any]:
    """A voice asset as the editor reads it: a dict, or a pydantic model's dump."""
    if isinstance(asset, dict):
        return asset
    dump = getattr(asset, "model_dump", None)
    if callable(dump):
        dumped = dump()
        if isinstance(dumped, dict):
            return dumped
    raise ValueError("invalid_voice_asset")


def no_engine() -> TtsError:
    return TtsError(
        "engine_unavailable",
        f"no engine answers provider {PROVIDER!r} (entry-point group {hookspecs.PROJECT!r})",
        "Install qwen3tts-plugin in the editor's environment.",
    )
