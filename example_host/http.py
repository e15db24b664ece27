"""The editor backend's TTS routes, as a FastAPI app: settings, engines and the listen button.

``create_app(...)`` builds the app (the settings page at ``/``, the JSON routes under
``/api/tts``); ``python -m example_host serve`` runs it with uvicorn. Errors are JSON
``{code, detail, hint}`` with the status ``STATUS_BY_CODE`` gives each code (422, 413, 404, 409,
503, 500; the README's table).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pluggy
from fastapi import FastAPI, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from hookspecs import GenerationParams, SynthesisRequest, SynthesisResult, TtsError, Voice

from . import engines
from .settings_store import DEFAULT_CONFIG_ID, SettingsFileError, SettingsStore, UnknownConfigError
from .voice_library import VoiceLibrary

STATIC = Path(__file__).parent / "static"
"""The settings page: plain HTML, CSS and JavaScript, no build step, nothing from a CDN."""

UNPROCESSABLE = 422
TOO_LARGE = 413
MAX_BODY_BYTES = 10 * 1024 * 1024
"""Default limit on a request body (JSON): far above MaxChars of text, far below a flood."""
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
"""Default limit on an uploaded reference recording (minutes of WAV; 3 to 10 s is enough)."""
UPLOAD_PATH = "/api/tts/voices"

HOST_CODES = {
    "invalid_request": "the request body does not validate",
    "request_too_large": "the request body is over the server's limit",
    "unknown_config": "no stored config has this id",
    "unknown_provider": "no installed engine answers the config's provider",
    "no_engine": "no text-to-speech engine is installed",
    "settings_file_invalid": "the host's settings file cannot be read",
    "config_disabled": 'the config says "enabled": false',
    "unknown_voice": "no saved voice has this id",
}
"""The host's own codes, beside the contract's ``hookspecs.ERROR_CODES``."""

STATUS_BY_CODE = {
    # the request is wrong: the caller can fix it
    **dict.fromkeys(
        (
            "invalid_request",
            "invalid_device",
            "invalid_settings",
            "empty_text",
            "invalid_text",
            "instruct_required",
            "unsupported_mode",
            "unsupported_speaker",
            "unsupported_language",
            "ref_audio_invalid",
            "ref_text_required",
            "synthesis_truncated",
            "unknown_provider",
        ),
        UNPROCESSABLE,
    ),
    "text_too_long": TOO_LARGE,
    "request_too_large": TOO_LARGE,
    "unknown_config": 404,
    "unknown_voice": 404,
    "config_disabled": 409,
    # the engine cannot serve it until the machine changes (a model, a driver, a package)
    **dict.fromkeys(
        (
            "unknown_model_key",
            "model_not_found",
            "model_invalid",
            "model_load_failed",
            "model_to_device_failed",
            "engine_unavailable",
            "no_engine",
        ),
        503,
    ),
    # the server itself failed
    **dict.fromkeys(
        ("synthesis_failed", "invalid_audio", "output_write_failed", "settings_file_invalid"),
        500,
    ),
}
"""HTTP status of every code, the contract's and the host's (README, "HTTP")."""


def status_for(code: str) -> int:
    """The HTTP status for an error code; 500 for a code no list knows (another engine's)."""
    return STATUS_BY_CODE.get(code, 500)


class SettingsUpdate(BaseModel):
    """A partial update of one config's extra_params; a null value removes the key."""

    extra_params: dict[str, Any] = Field(default_factory=dict)


class PreviewBody(BaseModel):
    """What the listen button sends. A clone voice is a saved voice's id (``voice_id``),
    never a path on the server."""

    text: str
    config_id: str = DEFAULT_CONFIG_ID
    voice: Voice | None = None
    voice_id: str | None = None
    generation: GenerationParams | None = None


def create_app(
    settings_path: str | Path | None = None,
    pm: pluggy.PluginManager | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    voices_path: str | Path | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The app, reading ``settings_path`` (default: the CLI's) and the engines in ``pm``,
    keeping saved voices in ``voices_path`` (default: the user data folder). Request bodies
    over ``max_body_bytes`` (uploads: ``max_upload_bytes``) are refused with 413 before they
    are read whole."""
    store = SettingsStore(settings_path)
    library = VoiceLibrary(voices_path)
    pm = pm or engines.plugin_manager()
    app = FastAPI(title="example_host TTS routes")
    app.add_middleware(
        BodyLimit, max_bytes=max_body_bytes, upload_bytes={UPLOAD_PATH: max_upload_bytes}
    )

    @app.exception_handler(TtsError)
    async def tts_error(request: Request, err: TtsError) -> JSONResponse:
        return JSONResponse(err.to_dict(), status_code=status_for(err.code))

    @app.exception_handler(UnknownConfigError)
    async def unknown_config(request: Request, exc: UnknownConfigError) -> JSONResponse:
        body = {"code": "unknown_config", "detail": str(exc), "hint": None}
        return JSONResponse(body, status_code=404)

    @app.exception_handler(SettingsFileError)
    async def settings_file(request: Request, exc: SettingsFileError) -> JSONResponse:
        body = {"code": "settings_file_invalid", "detail": str(exc), "hint": "Fix the file."}
        return JSONResponse(body, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        body = {"code": "invalid_request", "detail": detail, "hint": None}
        return JSONResponse(body, status_code=UNPROCESSABLE)

    @app.get("/", include_in_schema=False)
    def settings_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/tts/engines")
    def list_engines(config_id: str = DEFAULT_CONFIG_ID) -> list[dict[str, Any]]:
        config = engines.engine_config(store.config(config_id))
        return [caps.model_dump(mode="json") for caps in engines.all_capabilities(pm, config)]

    @app.get("/api/tts/status")
    def engine_status() -> list[dict[str, Any]]:
        return [status.model_dump(mode="json") for status in pm.hook.tts_status()]

    @app.get("/api/tts/settings")
    def read_settings() -> dict[str, Any]:
        return store.load()

    @app.put("/api/tts/settings/{config_id}")
    def update_settings(config_id: str, body: SettingsUpdate) -> dict[str, Any]:
        if body.extra_params.get("RefAudio") is not None:
            raise TtsError(
                "invalid_request",
                "RefAudio names a file on the server; over HTTP, clone voices come from the "
                "voice library",
                "Upload the recording (POST /api/tts/voices) and preview with its voice_id.",
            )
        config = store.config(config_id)
        caps = engines.engine_for(pm, config["provider"], engines.engine_config(config))
        stored = config.get("extra_params", {})
        warnings = engines.check_changes(pm, caps, body.extra_params, stored)
        config = store.update_extra_params(config_id, body.extra_params)
        return {"config_id": config_id, "config": config, "warnings": warnings}

    @app.get("/api/tts/voices")
    def list_voices() -> list[dict[str, Any]]:
        return library.list()

    @app.post(UPLOAD_PATH, status_code=201)
    async def add_voice(
        file: UploadFile,
        name: str = Form(""),
        ref_text: str | None = Form(None),
        language: str | None = Form(None),
    ) -> dict[str, Any]:
        data = await file.read()
        return await run_in_threadpool(
            library.add, name, file.filename or "", data, ref_text, language
        )

    @app.delete("/api/tts/voices/{voice_id}", status_code=204)
    def delete_voice(voice_id: str) -> Response:
        library.delete(voice_id)
        return Response(status_code=204)

    @app.post("/api/tts/preview")
    async def preview(body: PreviewBody) -> Response:
        audio, result = await run_in_threadpool(_speak, pm, store, library, body)
        return Response(audio, media_type="audio/wav", headers=_headers(result))

    return app


def _speak(
    pm: pluggy.PluginManager, store: SettingsStore, library: VoiceLibrary, body: PreviewBody
) -> tuple[bytes, SynthesisResult]:
    """Synthesise into a temp file, read it, delete it (runs in a worker thread).

    The config's extra_params, Device included, reach the engine unchanged. Without
    ``voice.mode`` the model is loaded first and speaks in its own mode (``voice_modes[0]``).
    ``voice_id`` clones a saved voice (in-context when it has a transcript).
    """
    if body.voice is not None and body.voice.ref_audio is not None:
        raise TtsError(
            "invalid_request",
            "voice.ref_audio names a file on the server; HTTP synthesis clones saved voices "
            "only, by voice_id",
            "Upload the recording (POST /api/tts/voices) and send its id as voice_id.",
        )
    stored = store.enabled_config(body.config_id)
    engines.engine_for(pm, stored["provider"])
    config = engines.engine_config(stored)
    if body.voice_id is not None:
        saved = library.get(body.voice_id)
        fields = body.voice.model_dump(exclude_unset=True) if body.voice else {}
        voice = Voice(
            **{
                "language": saved["language"],
                **fields,
                "mode": "voice_clone",
                "ref_audio": library.audio_path(body.voice_id),
                "ref_text": saved["ref_text"],
                "x_vector_only": saved["ref_text"] is None,
            }
        )
    else:
        voice = engines.voice_with_mode(pm, config, body.voice or Voice())
    with tempfile.TemporaryDirectory(prefix="example_host-preview-") as folder:
        request = SynthesisRequest(
            config=config,
            text=body.text,
            out_path=Path(folder) / "preview.wav",
            voice=voice,
            generation=body.generation or GenerationParams(),
        )
        result = pm.hook.tts_synthesize(request=request)
        if result is None:
            raise TtsError("unknown_provider", f"no engine answered {stored['provider']!r}")
        return result.path.read_bytes(), result


def _headers(result: SynthesisResult) -> dict[str, str]:
    """Where and how the audio was made, as response headers."""
    return {
        "X-TTS-Provider": result.provider,
        "X-TTS-Device": result.device,
        "X-TTS-Dtype": result.dtype,
        "X-TTS-Attention": result.attn_implementation,
        "X-TTS-Duration": f"{result.duration_s:.3f}",
        "X-TTS-Sample-Rate": str(result.sample_rate),
        "X-TTS-RTF": f"{result.rtf:.3f}",
        "X-TTS-Synth-Seconds": f"{result.synth_s:.3f}",
        "X-TTS-Batch-Size": str(result.batch_size),
        "X-TTS-Pieces": str(result.pieces),
        "X-TTS-Backend": result.backend,
        "X-TTS-Load-Seconds": f"{result.load_s:.3f}",
        "X-TTS-Cut-Pieces": str(result.cut_pieces),
    }


class BodyLimit:
    """ASGI middleware: 413 ``request_too_large`` for a body over ``max_bytes``, judged by
    Content-Length when sent (the server's HTTP layer holds a client to it), else by counting
    what arrives."""

    def __init__(
        self, app: Any, max_bytes: int, upload_bytes: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "").rstrip("/")
        upload = path in self.upload_bytes
        limit = self.upload_bytes.get(path, self.max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit, upload)
            return
        if declared:
            await self.app(scope, receive, send)
            return
        # No Content-Length (a chunked upload): read it here, up to the limit, then replay it.
        # (An error raised while the app reads would be turned into a 400 by the framework.)
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left mid-upload: nothing to answer, nothing to run
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > limit:
                await self._refuse(scope, receive, send, limit, upload)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(
        self, scope: Any, receive: Any, send: Any, limit: int, upload: bool = False
    ) -> None:
        hint = (
            "Upload 3 to 10 seconds of speech: a reference longer than that does not help."
            if upload
            else "Send less text per request (split a long narration), or start the server "
            "with a larger body limit."
        )
        error = TtsError("request_too_large", f"the request body is over {limit:,} bytes", hint)
        response = JSONResponse(error.to_dict(), status_code=TOO_LARGE)
        await response(scope, receive, send)
