"""The engine as a Ray Serve application: one resident model per replica, requests spread over
the replicas by Serve, batched inside each replica with ``@serve.batch``.

Needs the ``[ray]`` extra; nothing else in the plugin imports this module. Each replica owns one
engine (this plugin's hooks in a plugin manager of its own), loads its model when it starts
(a replica that cannot load fails to start, with the engine's error) and answers:

- ``POST /v1/synthesize``: a ``hookspecs.wire.SpeechRequest`` (JSON) → the WAV (``audio/wav``),
  with the result's fields as JSON in ``X-TTS-Result`` and the replica in ``X-TTS-Replica``;
- ``POST /v1/audio/speech``: OpenAI's speech route (``model``, ``input``, ``voice``,
  ``instructions``, ``response_format`` wav or pcm, ``speed`` 1 only), mapped onto the same;
- ``GET /v1/service``: the service's settings, which of them a request may not change, and the
  engine's status in the replica that answered; ``GET /healthz``: 200 when the model is resident.

Every error is ``{code, detail, hint}`` with ``hookspecs.wire``'s status (OpenAI's route wraps it
as ``{"error": {"message", "type", "code", "hint"}}``, the shape its clients read).
``python -m qwen3tts_plugin serve-ray`` starts it (``start`` below).
"""

import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

import hookspecs
from hookspecs import (
    ERROR_CODES,
    BatchItem,
    EngineConfig,
    ErrorInfo,
    SynthesisRequest,
    TtsError,
    Voice,
)
from hookspecs.wire import (
    FRAMEWORK_CODES,
    REPLICA_HEADER,
    RESULT_HEADER,
    SpeechRequest,
    status_for,
)

from . import hooks
from .hooks import PROVIDER
from .log import get_logger
from .settings import parse_settings

log = get_logger(__name__)

APP_NAME = "qwen3tts"
DEPLOYMENT_NAME = "Qwen3TTSReplica"
REQUEST_ROLE = "voice"
"""The settings a request may set (who speaks and how); every other one is the service's: a
request may repeat it, not change it (its model, device, batch size, limits such as MaxChars,
a recording named by a path)."""
MAX_BATCH_SIZE = 8
BATCH_WAIT_S = 0.05
"""How long a replica waits for more requests to fill a batch (a dub sends many at once)."""
CONCURRENT_BATCHES = 2
"""Batches a replica hands its engine at once: the engine's scheduler lets the second join the
first's generate loop, so a slot freed by a short line is not left idle."""
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                 "shimmer", "verse")  # fmt: skip
"""OpenAI's voice names: each speaks as the service's configured Speaker (README)."""


@dataclass(frozen=True)
class ServiceOptions:
    """How the service runs: the engine settings every replica loads with, and Serve's options.

    ``gpus_per_replica`` 0 gives CPU replicas (``Device=cpu``); 1 gives each replica one GPU,
    which it sees as ``cuda:0``. ``min_replicas``/``max_replicas`` turn on autoscaling in place
    of a fixed ``replicas``. ``max_ongoing_requests`` (default: ``max_batch_size``) is what a
    replica takes at once; more wait in Serve's router for whichever replica frees a slot first
    (measured: a replica that queues more than it speaks leaves the other idle at a dub's end).
    """

    settings: dict[str, Any] = field(default_factory=dict)
    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    max_batch_size: int = MAX_BATCH_SIZE
    max_ongoing_requests: int | None = None

    def replica_settings(self) -> dict[str, Any]:
        """The engine settings inside a replica: its Device follows its share of the machine."""
        device = parse_settings(self.settings).Device  # normal form: "cuda" is "cuda:0"
        wanted = "cuda:0" if self.gpus_per_replica > 0 else "cpu"
        if device not in (None, wanted):
            raise TtsError(
                "invalid_settings",
                f"Device={device!r} cannot be honoured in a replica with "
                f"{self.gpus_per_replica:g} GPUs (it sees {wanted})",
                "Leave Device unset: a replica with a GPU runs on cuda:0 (its own GPU), one "
                "without runs on the CPU; choose with --gpus-per-replica.",
            )
        return {**self.settings, "Device": wanted}

    def deployment_options(self) -> dict[str, Any]:
        """Serve's options for the replicas' deployment."""
        options: dict[str, Any] = {
            "ray_actor_options": {
                "num_cpus": self.cpus_per_replica,
                "num_gpus": self.gpus_per_replica,
            },
            "max_ongoing_requests": self.max_ongoing_requests or self.max_batch_size,
            "health_check_period_s": 10,
            "health_check_timeout_s": 30,
            "graceful_shutdown_timeout_s": 5,
        }
        if self.min_replicas is not None or self.max_replicas is not None:
            low = self.min_replicas if self.min_replicas is not None else 1
            options["autoscaling_config"] = {
                "min_replicas": low,
                "max_replicas": self.max_replicas if self.max_replicas is not None else low,
                "target_ongoing_requests": self.max_batch_size,
            }
        else:
            options["num_replicas"] = self.replicas
        return options


class OpenAISpeech(BaseModel):
    """The body of OpenAI's ``POST /v1/audio/speech``."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="Accepted and reported; the service speaks its one model.")
    input: str = Field(description="Text to speak.")
    voice: str = Field(description="A speaker of the model, or an OpenAI voice name.")
    instructions: str | None = Field(default=None, description="Style instruction.")
    response_format: str = Field(default="wav", description="wav or pcm (24 kHz s16le mono).")
    speed: float | None = Field(default=None, description="Only 1.0: speed is not supported.")


api = FastAPI(title="Qwen3-TTS on Ray Serve")


@api.exception_handler(TtsError)
async def _tts_error(request: Request, err: TtsError) -> JSONResponse:
    return error_response(err, openai=request.url.path == "/v1/audio/speech")


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = "; ".join(
        f"{'.'.join(str(part) for part in e['loc'][1:]) or 'body'}: {e['msg']}"
        for e in exc.errors()
    )
    err = TtsError("invalid_request", detail)
    return error_response(err, openai=request.url.path == "/v1/audio/speech")


@api.exception_handler(StarletteHTTPException)
async def _framework_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = FRAMEWORK_CODES.get(exc.status_code, "invalid_request")
    err = TtsError(code, f"{request.method} {request.url.path}: {exc.detail}")
    return error_response(err, openai=request.url.path == "/v1/audio/speech")


@api.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("tts.ray.internal_error", path=request.url.path, error=repr(exc), exc_info=exc)
    err = TtsError("internal_error", f"{type(exc).__name__}: {exc}", "The replica's log has it.")
    return error_response(err, openai=request.url.path == "/v1/audio/speech")


def error_response(err: TtsError, openai: bool = False) -> JSONResponse:
    """``err`` as JSON with its status; in OpenAI's error shape for OpenAI's route."""
    body: dict[str, Any] = err.to_dict()
    if openai:
        kind = "invalid_request_error" if status_for(err.code) < 500 else "server_error"
        body = {"error": {"message": err.detail, "type": kind, "code": err.code, "hint": err.hint}}
    return JSONResponse(body, status_code=status_for(err.code))


def failed(index: int, err: TtsError) -> BatchItem:
    return BatchItem(index=index, error=ErrorInfo.from_error(err))


def pcm_of(wav: bytes) -> bytes:
    """The samples of a 16-bit mono WAV (the engine's), without the header."""
    import io

    import soundfile

    samples, _ = soundfile.read(io.BytesIO(wav), dtype="int16")
    return samples.astype("<i2").tobytes()


WORKDIR_PREFIX = "qwen3tts-replica-"
"""A replica's temporary folder (requests' WAVs and recordings while they are spoken) is named
``<prefix><pid>-<random>`` in the temp folder."""


def remove_orphaned_workdirs() -> None:
    """The temporary folders of replicas that died without cleaning up (killed, crashed): they
    may hold clients' recordings."""
    for folder in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = folder.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def replica_name() -> str:
    """This replica's id as Serve names it (its actor's name ends with it)."""
    try:
        return serve.get_replica_context().replica_id.unique_id
    except (AttributeError, RuntimeError):
        return f"pid-{os.getpid()}"


# Defined after its helpers: Serve pickles the class when it is decorated.
@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(api)
class Qwen3TTSReplica:
    """One replica: one engine with its model resident, requests batched into its batch hook."""

    def __init__(self, settings: dict[str, Any], max_batch_size: int = MAX_BATCH_SIZE) -> None:
        self.pm = hookspecs.plugin_manager(load_entrypoints=False)
        self.pm.register(hooks)
        self.settings = settings
        self.config = EngineConfig(provider=PROVIDER, extra_params=settings)
        caps = self.pm.hook.tts_capabilities(config=self.config)[0]
        self.open = hookspecs.settings_with_role(caps.settings_schema, REQUEST_ROLE)
        self.fixed = sorted(set(caps.settings_schema.get("properties", {})) - set(self.open))
        self.speed_only = hookspecs.settings_with_role(caps.settings_schema, "speed_only")
        self.recordings = hookspecs.settings_with_role(caps.settings_schema, "reference_audio")
        self.loaded = self.pm.hook.tts_load(config=self.config)  # a TtsError fails the start
        remove_orphaned_workdirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        self.replica = replica_name()
        self.max_batch_size = max_batch_size
        self.synthesize_many.set_max_batch_size(max_batch_size)
        log.info(
            "tts.ray.replica.ready",
            replica=self.replica,
            device=self.loaded.device,
            dtype=self.loaded.dtype,
            quantization=self.loaded.quantization,
            backend=self.loaded.backend,
        )

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "workdir", ""), ignore_errors=True)

    def check_health(self) -> None:
        """Serve's health check: the engine still holds the model (else Serve replaces it)."""
        status = self.status()
        if not status.loaded:
            error = status.last_error
            raise RuntimeError(f"model not resident: {error.code if error else 'unloaded'}")

    def status(self):
        """This engine's ``EngineStatus``."""
        return next(s for s in self.pm.hook.tts_status() if s.provider == PROVIDER)

    @api.get("/healthz")
    def healthz(self) -> JSONResponse:
        status = self.status()
        return JSONResponse({"ok": status.loaded}, status_code=200 if status.loaded else 503)

    @api.get("/v1/service")
    def service(self) -> dict[str, Any]:
        return {
            "provider": PROVIDER,
            "settings": self.settings,
            "voice_settings": self.open,
            "fixed_settings": self.fixed,
            "speed_only_settings": self.speed_only,
            "reference_audio_settings": self.recordings,
            "voice_modes": self.loaded.voice_modes,
            "replica": self.replica,
            "status": self.status().model_dump(mode="json"),
            "max_batch_size": self.max_batch_size,
        }

    @api.post("/v1/synthesize")
    async def synthesize(self, body: SpeechRequest) -> Response:
        item, wav = await self.synthesize_many(body)
        return self.wav_response(item, wav)

    @api.post("/v1/audio/speech")
    async def openai_speech(self, body: OpenAISpeech) -> Response:
        request = self.from_openai(body)
        item, wav = await self.synthesize_many(request)
        if item.error is not None:
            return error_response(item.error.to_error(), openai=True)
        if body.response_format == "pcm":
            return Response(pcm_of(wav), media_type="audio/pcm", headers=self.headers(item))
        return self.wav_response(item, wav)

    def from_openai(self, body: OpenAISpeech) -> SpeechRequest:
        """OpenAI's request as ours; what it asks and we cannot do is refused, not ignored."""
        if body.response_format not in ("wav", "pcm"):
            raise TtsError(
                "invalid_request",
                f"response_format {body.response_format!r} is not supported",
                "Ask for wav or pcm (24 kHz 16-bit mono); encode other formats on the client.",
            )
        if body.speed not in (None, 1, 1.0):
            raise TtsError(
                "invalid_request",
                f"speed {body.speed} is not supported (Qwen3-TTS speaks at its own pace)",
                "Leave speed out or send 1.0; stretch the audio afterwards if needed.",
            )
        speaker = None if body.voice.lower() in OPENAI_VOICES else body.voice
        mode = self.loaded.voice_modes[0] if self.loaded.voice_modes else Voice().mode
        voice = Voice(mode=mode, speaker=speaker, instruct=body.instructions)
        return SpeechRequest(text=body.input, voice=voice)

    def wav_response(self, item: BatchItem, wav: bytes | None) -> Response:
        if item.error is not None:
            return error_response(item.error.to_error())
        return Response(wav, media_type="audio/wav", headers=self.headers(item))

    def headers(self, item: BatchItem) -> dict[str, str]:
        result = item.result.model_dump(mode="json", exclude={"path"})
        return {RESULT_HEADER: json.dumps(result), REPLICA_HEADER: self.replica}

    @serve.batch(
        max_batch_size=MAX_BATCH_SIZE,
        batch_wait_timeout_s=BATCH_WAIT_S,
        max_concurrent_batches=CONCURRENT_BATCHES,
    )
    async def synthesize_many(
        self, bodies: list[SpeechRequest]
    ) -> list[tuple[BatchItem, bytes | None]]:
        """Concurrent requests through one call of the engine's batch hook (in a thread: the
        replica's event loop keeps taking requests meanwhile)."""
        return await asyncio.to_thread(self.run_batch, bodies)

    def run_batch(self, bodies: list[SpeechRequest]) -> list[tuple[BatchItem, bytes | None]]:
        """``bodies`` spoken; each a result with its WAV's bytes, or an error."""
        folder = Path(tempfile.mkdtemp(dir=self.workdir))
        started = time.perf_counter()
        try:
            outcomes: dict[int, tuple[BatchItem, bytes | None]] = {}
            requests: dict[int, SynthesisRequest] = {}
            for index, body in enumerate(bodies):
                try:
                    requests[index] = self.request_for(body, folder / f"{index}.wav", folder)
                except TtsError as err:
                    outcomes[index] = (failed(index, err), None)
            if requests:
                items = self.engine_batch(list(requests.values()))
                for index, item in zip(requests, items, strict=True):
                    wav = item.result.path.read_bytes() if item.result is not None else None
                    outcomes[index] = (item.model_copy(update={"index": index}), wav)
            log.info(
                "tts.ray.batch",
                replica=self.replica,
                requests=len(bodies),
                failed=sum(item.error is not None for item, _ in outcomes.values()),
                seconds=round(time.perf_counter() - started, 3),
            )
            return [outcomes[index] for index in range(len(bodies))]
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def engine_batch(self, requests: list[SynthesisRequest]) -> list[BatchItem]:
        """The batch hook; a refusal of the whole list is every request's error."""
        try:
            return self.pm.hook.tts_synthesize_batch(requests=requests)
        except TtsError as err:
            return [failed(index, err) for index in range(len(requests))]

    def request_for(self, body: SpeechRequest, out_path: Path, folder: Path) -> SynthesisRequest:
        """The engine's request for ``body``: the service's settings with the request's voice
        settings on top (any other only repeated), a clone's recording written to ``folder``."""
        changed = sorted(
            key
            for key, value in body.settings.items()
            if key not in self.open and value != self.settings.get(key)
        )
        if changed:
            raise TtsError(
                "invalid_settings",
                f"this service's {', '.join(changed)} cannot be changed by a request (a request "
                f"may set {', '.join(self.open)})",
                "Leave the service's settings out of the request (GET /v1/service shows them); "
                "send a clone's recording itself as ref_audio_b64, not a path.",
            )
        voice = body.voice
        recording = body.ref_audio_bytes()
        if recording is not None:
            path = folder / f"{out_path.stem}.ref"
            path.write_bytes(recording)
            voice = voice.model_copy(update={"ref_audio": path})
        config = EngineConfig(provider=PROVIDER, extra_params={**self.settings, **body.settings})
        return SynthesisRequest(
            config=config,
            text=body.text,
            out_path=out_path,
            voice=voice,
            generation=body.generation,
        )


def application(options: ServiceOptions):
    """The Serve application for ``options`` (``serve.run`` it)."""
    deployment = Qwen3TTSReplica.options(**options.deployment_options())
    return deployment.bind(options.replica_settings(), options.max_batch_size)


# --- starting and stopping --------------------------------------------------------------------


def start(
    options: ServiceOptions,
    address: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> str:
    """Ray (a local one, or the cluster at ``address``), Serve's HTTP proxy on ``host:port``
    and the application, running: its URL. A replica that cannot load its model stops the
    start with the engine's error (``start_failed``)."""
    import ray

    try:
        if not ray.is_initialized():
            ray.init(
                address=address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                namespace="qwen3tts",
            )
        serve.start(
            http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"}
        )
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        stop()
        raise TtsError(
            "service_unavailable",
            f"Ray or Serve did not start ({type(exc).__name__}: {exc})",
            "Check --address (a running cluster's, or none for a local Ray) and that "
            f"{host}:{port} is free.",
        ) from None
    try:
        serve.run(application(options), name=APP_NAME, route_prefix="/", blocking=False)
    except RuntimeError as exc:  # Serve's word for a deployment whose replicas did not start
        error = start_failed(str(exc))
        stop()
        raise error from None
    return f"http://{host}:{port}"


def start_failed(message: str) -> TtsError:
    """Why the replicas did not start, as the engine's own error where Serve's message carries
    it (a replica's ``TtsError``: a missing model, a device that refused it), else
    ``model_load_failed`` with Serve's message."""
    for deployment in getattr(
        serve.status().applications.get(APP_NAME), "deployments", {}
    ).values():
        message = getattr(deployment, "message", "") or message
    found = re.findall(r"TtsError: ([a-z_]+): (.*)", message)
    if found and found[-1][0] in ERROR_CODES:
        code, detail = found[-1]
        return TtsError(code, detail, "The replicas' engine refused to load; see the detail.")
    last = message.strip().splitlines()[-1] if message.strip() else "no message"
    return TtsError(
        "model_load_failed",
        f"the service's replicas did not start: {last}",
        "Check the settings with `python -m qwen3tts_plugin doctor` on a replica's machine.",
    )


def stop() -> None:
    """The application deleted, and this process off Ray (a local Ray it started stops with
    it; a cluster it joined goes on, its Serve included, for other applications)."""
    import ray

    if ray.is_initialized():
        serve.delete(APP_NAME)
        ray.shutdown()
