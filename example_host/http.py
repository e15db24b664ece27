"""The editor backend's TTS routes, as a FastAPI app: settings, engines and the listen button.

``create_app(...)`` builds the app (the settings page at ``/``, the JSON routes under
``/api/tts``); ``python -m example_host serve`` runs it with uvicorn (``serving``: connection
limits). Every error, the framework's included (404, 405, a body that cannot be parsed), is JSON
``{code, detail, hint}`` with the status ``STATUS_BY_CODE`` gives each code (the README's
table). ``guard.AccessGuard`` decides who may call at all; synthesis runs in its own threads
behind a bounded queue (``SynthesisQueue``), so the other routes never wait behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pluggy
from fastapi import FastAPI, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from hookspecs import GenerationParams, SynthesisRequest, SynthesisResult, TtsError, Voice, wire
from hookspecs.wire import FRAMEWORK_CODES, HTTP_STATUS, UNPROCESSABLE

from . import engines
from .guard import Access, AccessGuard
from .settings_store import DEFAULT_CONFIG_ID, SettingsFileError, SettingsStore, UnknownConfigError
from .voice_library import VoiceLibrary

log = logging.getLogger(__name__)
T = TypeVar("T")
S = TypeVar("S")

STATIC = Path(__file__).parent / "static"
"""The settings page: plain HTML, CSS and JavaScript, no build step, nothing from a CDN."""

MAX_BODY_BYTES = 10 * 1024 * 1024
"""Default limit on a request body (JSON): far above MaxChars of text, far below a flood."""
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
"""Default limit on an uploaded reference recording (minutes of WAV; 3 to 10 s is enough)."""
UPLOAD_PATH = "/api/tts/voices"
SYNTHESIS_WORKERS = 8
"""Syntheses handed to the engine at once (it batches concurrent calls into one generate call:
8 is its CPU batch size)."""
SYNTHESIS_QUEUE = 32
"""Syntheses that may wait for a worker; one more is answered 503 ``server_busy`` at once."""
RETRY_AFTER_S = 2

HOST_CODES = {
    "unknown_config": "no stored config has this id",
    "unknown_provider": "no installed engine answers the config's provider",
    "no_engine": "no text-to-speech engine is installed",
    "settings_file_invalid": "the host's settings file cannot be read",
    "config_disabled": 'the config says "enabled": false',
    "unknown_voice": "no saved voice has this id",
    "forbidden_host": "the request's Host is not a name this server answers to (DNS rebinding)",
    "forbidden_origin": "the request comes from another site's page",
    "unauthorized": "the server needs its token and the request has none or another",
}
"""The host's own codes, beside the contract's ``hookspecs.ERROR_CODES`` and the HTTP front's
``hookspecs.wire.WIRE_CODES`` (``server_busy`` here: the synthesis queue, the connection limit
or the voice library's lock is busy)."""

STATUS_BY_CODE = {
    **HTTP_STATUS,
    "unknown_provider": UNPROCESSABLE,
    "unknown_config": 404,
    "unknown_voice": 404,
    "config_disabled": 409,
    "unauthorized": 401,
    "forbidden_host": 403,
    "forbidden_origin": 403,
    "no_engine": 503,
    "settings_file_invalid": 500,
}
"""HTTP status of every code, the contract's, the wire's and the host's (README, "HTTP")."""


def status_for(code: str) -> int:
    """The HTTP status for an error code; 500 for a code no list knows (another engine's)."""
    return wire.status_for(code, STATUS_BY_CODE)


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


class SynthesisQueue:
    """Runs syntheses in ``workers`` threads of their own, with at most ``depth`` waiting.

    One more is refused at once with ``server_busy`` (503, ``Retry-After``). A request whose
    client leaves before its turn is dropped from the queue unrun.
    """

    def __init__(self, workers: int = SYNTHESIS_WORKERS, depth: int = SYNTHESIS_QUEUE) -> None:
        if workers < 1 or depth < 0:
            raise ValueError(f"need workers >= 1 and depth >= 0, got {workers} and {depth}")
        self.workers = workers
        self.depth = depth
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="synthesis")
        self.lock = threading.Lock()
        self.taken = 0

    @property
    def waiting(self) -> int:
        """Syntheses admitted and not yet done, beyond those running."""
        return max(0, self.taken - self.workers)

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in a synthesis thread; ``server_busy`` when the queue is full."""
        self._take()
        future = self.executor.submit(work)
        future.add_done_callback(self._release)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()  # not started yet: never runs (a running one finishes unread)
            raise

    async def open_stream(self, open_: Callable[[Callable[[], None]], S]) -> S:
        """``open_(release)`` in a synthesis thread, counted like ``run`` until ``release()``
        is called (a stream calls it when it is closed, so an open stream holds its place);
        a failed open releases at once, and a stream opened for a client that left is
        closed."""
        self._take()
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                self._release(None)

        def failed(future: Future) -> None:
            if future.cancelled() or future.exception() is not None:
                release()

        def close_unread(future: Future) -> None:
            if not future.cancelled() and future.exception() is None:
                future.result().close()

        future = self.executor.submit(open_, release)
        future.add_done_callback(failed)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel():
                future.add_done_callback(close_unread)
            raise

    def _take(self) -> None:
        with self.lock:
            if self.taken >= self.workers + self.depth:
                raise TtsError(
                    "server_busy",
                    f"{self.workers} syntheses are running and {self.depth} waiting, the most "
                    "this server queues",
                    "Retry in a few seconds (Retry-After); a dub sends its segments in one "
                    "batch instead (example_host dub).",
                )
            self.taken += 1

    def _release(self, _: object) -> None:
        with self.lock:
            self.taken -= 1

    def close(self) -> None:
        """Drop what waits; let what runs finish (it holds no client any more)."""
        self.executor.shutdown(wait=False, cancel_futures=True)


def create_app(
    settings_path: str | Path | None = None,
    pm: pluggy.PluginManager | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    voices_path: str | Path | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    access: Access | None = None,
    synthesis: SynthesisQueue | None = None,
) -> FastAPI:
    """The app, reading ``settings_path`` (default: the CLI's) and the engines in ``pm``,
    keeping saved voices in ``voices_path`` (default: the user data folder). Request bodies
    over ``max_body_bytes`` (uploads: ``max_upload_bytes``) are refused with 413 before they
    are read whole. ``access`` says who may call (default: loopback names only, no token);
    ``synthesis`` is the queue previews wait in (default: ``SynthesisQueue()``)."""
    store = SettingsStore(settings_path)
    library = VoiceLibrary(voices_path)
    pm = pm or engines.plugin_manager()
    synthesis = synthesis or SynthesisQueue()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        synthesis.close()

    app = FastAPI(title="example_host TTS routes", lifespan=lifespan)
    app.add_middleware(
        BodyLimit, max_bytes=max_body_bytes, upload_bytes={UPLOAD_PATH: max_upload_bytes}
    )
    app.add_middleware(AccessGuard, access=access or Access())
    app.add_middleware(PageHeaders)
    app.state.synthesis = synthesis

    @app.exception_handler(TtsError)
    async def tts_error(request: Request, err: TtsError) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if err.code == "server_busy" else None
        return JSONResponse(err.to_dict(), status_code=status_for(err.code), headers=headers)

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
        detail = "; ".join(_validation_problem(e) for e in exc.errors())
        body = {"code": "invalid_request", "detail": detail, "hint": None}
        return JSONResponse(body, status_code=UNPROCESSABLE)

    @app.exception_handler(HTTPException)
    async def framework_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            framework_error_body(request, exc),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        body = {
            "code": "internal_error",
            "detail": f"the server failed ({type(exc).__name__})",
            "hint": "The server's log has the trace; please report it.",
        }
        return JSONResponse(body, status_code=500)

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
        config = engines.save_changes(pm, store, config_id, body.extra_params)
        return {"config_id": config_id, "config": config}

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
        audio, result = await synthesis.run(lambda: _speak(pm, store, library, body))
        return Response(audio, media_type="audio/wav", headers=_headers(result))

    @app.post("/api/tts/preview/stream")
    async def preview_stream(body: PreviewBody) -> Response:
        stream = await synthesis.open_stream(
            lambda release: PreviewStream.open(pm, store, library, body, release)
        )
        return StreamingResponse(
            stream.pcm(synthesis), media_type="application/octet-stream", headers=stream.headers(pm)
        )

    return app


def _validation_problem(error: dict[str, Any]) -> str:
    """One validation error as ``where: what`` (never the input's repr)."""
    where = ".".join(map(str, error["loc"]))
    return f"{where}: {error['msg']}"


def framework_error_body(request: Request, exc: HTTPException) -> dict[str, Any]:
    """``{code, detail, hint}`` for an error the framework raised (no route, wrong method, a
    body it cannot parse)."""
    code = FRAMEWORK_CODES.get(exc.status_code, "invalid_request")
    detail, hint = str(exc.detail), None
    if code == "not_found":
        detail = f"no route {request.url.path!r}"
        hint = "The routes are under /api/tts (see the README's HTTP table); the page is at /."
    elif code == "method_not_allowed":
        allowed = (getattr(exc, "headers", None) or {}).get("Allow", "")
        detail = f"{request.method} is not allowed on {request.url.path!r}"
        hint = f"Use {allowed}." if allowed else None
    elif "parsing the body" in detail:
        detail = "the body cannot be parsed (JSON must be UTF-8)"
        hint = "Send UTF-8 JSON with Content-Type: application/json."
    elif "boundary" in detail.lower():
        detail = f"the multipart body cannot be parsed: {detail}"
        hint = "Let the HTTP client build the multipart body (it sets the boundary)."
    return {"code": code, "detail": detail, "hint": hint}


def _speak(
    pm: pluggy.PluginManager, store: SettingsStore, library: VoiceLibrary, body: PreviewBody
) -> tuple[bytes, SynthesisResult]:
    """Synthesise into a temp file, read it, delete it (runs in a worker thread)."""
    with tempfile.TemporaryDirectory(prefix="example_host-preview-") as folder:
        request = _preview_request(pm, store, library, body, Path(folder) / "preview.wav")
        result = pm.hook.tts_synthesize(request=request)
        if result is None:
            raise TtsError("unknown_provider", f"no engine answered {request.config.provider!r}")
        return result.path.read_bytes(), result


class PreviewStream:
    """A streamed preview: raw PCM as the engine hands it over (``tts_synthesize_stream``).

    Raw 16-bit little-endian mono PCM (``application/octet-stream``, ``X-TTS-Stream:
    pcm_s16le``, the rate in ``X-TTS-Sample-Rate``; not ``audio/L16``, which is big-endian)
    rather than a WAV: a WAV header states the data's length, unknown until the end, and a
    player fed chunks (Web Audio in the page, ``aplay -f S16_LE`` from curl) needs only the
    rate. The first chunk is made before the response starts, in the synthesis queue (a flood
    is refused as for previews), so every refusal and early failure is the usual JSON error;
    a failure after it cuts the response short (no final empty chunk: clients see a broken
    transfer). An open stream keeps its place in the synthesis queue and reads its chunks in
    the queue's threads. A client that goes away closes the engine's stream: its row leaves
    the loop.
    The engine writes the file into a temporary folder, deleted at the end.
    """

    def __init__(
        self,
        folder: tempfile.TemporaryDirectory,
        chunks: Any,
        first: Any,
        first_s: float,
        release: Callable[[], None],
    ):
        self.folder = folder
        self.chunks = chunks
        self.first = first
        self.first_s = first_s
        self.release = release

    @classmethod
    def open(
        cls,
        pm: pluggy.PluginManager,
        store: SettingsStore,
        library: VoiceLibrary,
        body: PreviewBody,
        release: Callable[[], None],
    ) -> PreviewStream:
        """The request checked and its first chunk made (runs in a worker thread)."""
        started = time.perf_counter()
        folder = tempfile.TemporaryDirectory(prefix="example_host-preview-")
        try:
            request = _preview_request(pm, store, library, body, Path(folder.name) / "preview.wav")
            chunks = pm.hook.tts_synthesize_stream(request=request)
            if chunks is None:
                raise TtsError(
                    "unknown_provider", f"no engine answered {request.config.provider!r}"
                )
            try:
                first = next(chunks)
            except BaseException:
                chunks.close()
                raise
        except BaseException:
            folder.cleanup()
            raise
        return cls(folder, chunks, first, time.perf_counter() - started, release)

    def headers(self, pm: pluggy.PluginManager) -> dict[str, str]:
        """How the audio comes and where it is made (the engine's status: the model that
        speaks it is resident by now); the result's headers when it came whole."""
        headers = {
            "X-TTS-Stream": "pcm_s16le",
            "X-TTS-Sample-Rate": str(self.first.sample_rate),
            "X-TTS-First-Chunk-Seconds": f"{self.first_s:.3f}",
        }
        if self.first.final:
            return {**_headers(self.first.result), **headers}
        for status in pm.hook.tts_status():
            if status.loaded:
                headers |= {
                    "X-TTS-Provider": status.provider,
                    "X-TTS-Device": status.device or "",
                    "X-TTS-Dtype": status.dtype or "",
                    "X-TTS-Codec-Dtype": status.codec_dtype or "",
                    "X-TTS-Quantization": status.quantization or "",
                    "X-TTS-Attention": status.attn_implementation or "",
                    "X-TTS-Backend": status.backend or "",
                }
        return headers

    async def pcm(self, synthesis: SynthesisQueue) -> AsyncIterator[bytes]:
        """The chunks' samples, each read in a synthesis thread; the engine's stream is
        closed however this ends (a client that left included: the close is shielded from
        the disconnect's cancellation, and stops a chunk still being read)."""
        reading: Future | None = None
        try:
            chunk = self.first
            yield chunk.samples
            while not chunk.final:
                reading = synthesis.executor.submit(next, self.chunks, None)
                chunk = await asyncio.wrap_future(reading)
                if chunk is None:
                    break
                yield chunk.samples
        except TtsError as err:
            log.warning("preview stream failed after its first chunk: %s", err)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self.close, reading)

    def close(self, reading: Future | None = None) -> None:
        """Close the engine's stream (its ``close`` may come from any thread: a chunk being
        read ends at once), then delete the folder and give the queue its place back."""
        try:
            self.chunks.close()
            if reading is not None:
                futures_wait([reading])
            self.folder.cleanup()
        finally:
            self.release()


def _preview_request(
    pm: pluggy.PluginManager,
    store: SettingsStore,
    library: VoiceLibrary,
    body: PreviewBody,
    out_path: Path,
) -> SynthesisRequest:
    """The request a preview body asks for, written to ``out_path``.

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
    return SynthesisRequest(
        config=config,
        text=body.text,
        out_path=out_path,
        voice=voice,
        generation=body.generation or GenerationParams(),
    )


def _headers(result: SynthesisResult) -> dict[str, str]:
    """Where and how the audio was made, as response headers."""
    return {
        "X-TTS-Provider": result.provider,
        "X-TTS-Device": result.device,
        "X-TTS-Dtype": result.dtype,
        "X-TTS-Codec-Dtype": result.codec_dtype,
        "X-TTS-Quantization": result.quantization,
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


class PageHeaders:
    """ASGI middleware: headers that keep the page out of other sites' frames and keep its
    URL (which may carry the token) out of ``Referer``."""

    HEADERS = (
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


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
        response = JSONResponse(error.to_dict(), status_code=status_for("request_too_large"))
        await response(scope, receive, send)
