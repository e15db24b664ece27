"""A text-to-speech service as an engine: ``dub --cluster URL`` speaks through it.

``ClusterEngine`` answers the batch hook by sending each request to a service started with
``python -m qwen3tts_plugin serve-ray`` (``POST /v1/synthesize``), at most ``in_flight`` at a
time, and writing each WAV it gets back atomically where the request asked (a temporary file in
the same folder, then ``os.replace``; dub's stale-file patterns cover it). So a cluster dub is a
local dub with another engine: same manifest, same resume rules.

A request that gets no answer (the connection broke, the replica serving it died, Serve had no
replica ready: a 500, 502, 503 or 504 without a typed error, or an answer that cannot be read)
is sent again, up to ``tries`` times with a growing pause; then it fails with
``service_unavailable``, never with a silent gap. A typed error (``{code, detail, hint}``) comes
back as that same error, unretried, except ``server_busy``, which asks for a retry; any other
untyped answer (a 404 from something that is not the service) fails at once.

Requests run in daemon threads, at most ``in_flight`` at the service at once however the
caller groups them, so an interrupted dub exits without waiting for the ones in flight.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from email.message import Message
from http.client import HTTPException
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hookspecs import BatchItem, ErrorInfo, SynthesisRequest, SynthesisResult, TtsError, hookimpl
from hookspecs.wire import REPLICA_HEADER, RESULT_HEADER, SpeechRequest

from .dubbing import write_atomically
from .threads import completed

log = logging.getLogger(__name__)

IN_FLIGHT = 16
"""Requests a dub keeps at the service at once (its replicas batch what arrives together)."""
TRIES = 4
TIMEOUT_S = 900.0
"""How long one request may take: a long narration on a busy CPU replica takes minutes."""
RETRY_CODES = frozenset({"server_busy", "service_unavailable"})
NO_ANSWER_STATUSES = frozenset({500, 502, 503, 504})
"""Statuses that, without a typed error, mean no replica answered (one died, none was ready)."""


class ClusterEngine:
    """The batch hook of a remote service, for a plugin manager of the host's own."""

    def __init__(
        self,
        url: str,
        in_flight: int = IN_FLIGHT,
        tries: int = TRIES,
        timeout_s: float = TIMEOUT_S,
        backoff_s: float = 0.5,
    ) -> None:
        if in_flight < 1 or tries < 1:
            raise ValueError(f"need in_flight >= 1 and tries >= 1, got {in_flight} and {tries}")
        self.url = url.rstrip("/")
        self.in_flight = in_flight
        self.tries = tries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.served: Counter[str] = Counter()
        """Requests answered, by the replica that spoke them."""
        self.retried = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(in_flight)

    def service(self) -> dict[str, Any]:
        """``GET /v1/service``: the service's settings, fixed settings, voice modes and status;
        ``service_unavailable`` when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.url}/v1/service", timeout=30) as response:
                return json.loads(response.read())
        except (OSError, HTTPException, ValueError) as exc:
            raise TtsError(
                "service_unavailable",
                f"the service at {self.url} did not answer ({type(exc).__name__}: {exc})",
                "Start it with `python -m qwen3tts_plugin serve-ray` and pass its URL.",
            ) from None

    @hookimpl
    def tts_synthesize_batch(self, requests: list[SynthesisRequest]) -> list[BatchItem]:
        calls = list(enumerate(requests))
        done = dict(completed(lambda call: self.synthesize(*call), calls, len(calls)))
        return [done[index] for index in range(len(calls))]

    def synthesize(self, index: int, request: SynthesisRequest) -> BatchItem:
        """One request at the service, retried while it gets no answer; its WAV written."""
        try:
            body = wire_body(request)
        except TtsError as err:
            return BatchItem(index=index, error=ErrorInfo.from_error(err))
        problem = ""
        for attempt in range(self.tries):
            if attempt:
                with self._lock:
                    self.retried += 1
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with self._slots:
                    status, headers, payload = self.post("/v1/synthesize", body)
            except (OSError, HTTPException) as exc:  # no answer at all
                problem = f"{type(exc).__name__}: {exc}"
                log.warning("cluster request %d: %s (try %d)", index, problem, attempt + 1)
                continue
            if status == 200:
                try:
                    result = SynthesisResult(
                        path=request.out_path, **json.loads(headers.get(RESULT_HEADER) or "")
                    )
                except (ValueError, TypeError, ValidationError) as exc:
                    problem = f"an answer without a readable {RESULT_HEADER}: {exc}"
                    log.warning("cluster request %d: %s (try %d)", index, problem, attempt + 1)
                    continue
                return self.written(index, result, headers, payload)
            error = typed_error(payload)
            if error is not None and error.code not in RETRY_CODES:
                return BatchItem(index=index, error=ErrorInfo.from_error(error))
            problem = f"HTTP {status}: {str(error) if error else payload[:200]!r}"
            if error is None and status not in NO_ANSWER_STATUSES:
                break  # something else answered: not the service
            log.warning("cluster request %d: %s (try %d)", index, problem, attempt + 1)
        error = TtsError(
            "service_unavailable",
            f"the service at {self.url} gave no answer after {plural(attempt + 1, 'try')}; "
            f"last: {problem}",
            "Check the service (GET /v1/service); run the dub again to resume.",
        )
        return BatchItem(index=index, error=ErrorInfo.from_error(error))

    def post(self, path: str, body: bytes) -> tuple[int, Message, bytes]:
        """POST ``body`` (JSON); status, headers (names in any case) and body, whatever the
        status."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers, exc.read()

    def written(
        self, index: int, result: SynthesisResult, headers: Message, wav: bytes
    ) -> BatchItem:
        """The service's WAV at ``result.path``, written atomically, as a result."""
        try:
            result.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(result.path, wav)
        except OSError as exc:
            error = TtsError("output_write_failed", f"{result.path}: {exc}")
            return BatchItem(index=index, error=ErrorInfo.from_error(error))
        with self._lock:
            self.served[headers.get(REPLICA_HEADER) or "?"] += 1
        return BatchItem(index=index, result=result)


def wire_body(request: SynthesisRequest) -> bytes:
    """``request`` as the service's JSON: the clone's recording as bytes, not a path."""
    voice, recording = request.voice, None
    if voice.ref_audio is not None:
        try:
            recording = base64.b64encode(Path(voice.ref_audio).read_bytes()).decode("ascii")
        except OSError as exc:
            raise TtsError("ref_audio_invalid", f"{voice.ref_audio}: {exc}") from None
        voice = voice.model_copy(update={"ref_audio": None})
    body = SpeechRequest(
        text=request.text,
        voice=voice,
        ref_audio_b64=recording,
        generation=request.generation,
        settings=request.config.extra_params,
    )
    return body.model_dump_json().encode("utf-8")


def plural(count: int, word: str) -> str:
    """``1 try``, ``3 tries``."""
    return f"{count} {word if count == 1 else word[:-1] + 'ies'}"


def typed_error(payload: bytes) -> TtsError | None:
    """The ``{code, detail, hint}`` in an error response; None for any other body."""
    try:
        data = json.loads(payload)
        return TtsError(data["code"], data["detail"], data.get("hint"))
    except (ValueError, KeyError, TypeError):
        return None
