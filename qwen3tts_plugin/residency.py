"""The one model in memory: made resident for a plan, released, and failed loads remembered.

Callers hold a turn of the scheduler (``Scheduler.alone`` or a run), so no generate call runs
on a model while it is replaced. Everything that can fail cheaply (the runtime import, the
device probe) runs before the resident model is released: a request that cannot load leaves
the working model in memory. Only a load that actually starts releases it, so two models
never sit in memory together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hookspecs import TtsError

from .backends import Backend, backend_class
from .log import get_logger
from .planning import LoadKey, LoadPlan, queue_stamp

log = get_logger(__name__)


@dataclass(frozen=True)
class Resident:
    """The backend in memory, the key it was loaded with, and the model as configured."""

    key: LoadKey
    backend: Backend
    model: str


class Residency:
    """Holds at most one ``Resident``; ``ensure`` and ``release`` need the caller's turn."""

    def __init__(self) -> None:
        self._resident: Resident | None = None
        # The last failed load of each key, stamped when it failed: pieces queued before it
        # fail with it instead of trying the same load again (a 1,024-item batch for a broken
        # folder tries it once, not once per generate call).
        self._failed: dict[LoadKey, tuple[int, TtsError]] = {}
        self.last_error: TtsError | None = None
        """The last failed load (a copy without its traceback); None after a good one."""

    @property
    def resident(self) -> Resident | None:
        return self._resident

    def resident_key(self) -> LoadKey | None:
        """The key of the model in memory (None: none)."""
        resident = self._resident
        return None if resident is None else resident.key

    def failed_before(self, key: LoadKey, queued: int) -> TtsError | None:
        """The failure of the last load of ``key`` when it came after ``queued`` (a piece
        queued before that load failed gets its error, not a second try)."""
        failed = self._failed.get(key)
        return failed[1] if failed is not None and queued < failed[0] else None

    def ensure(self, plan: LoadPlan) -> tuple[Resident, float | None]:
        """The resident model for ``plan``, loading it (and releasing another) if needed.

        Returns the resident and the seconds spent placing it, or None when it already was.
        A failed load raises its ``TtsError`` (unforeseen failures become
        ``model_load_failed``), is remembered and leaves ``last_error``.
        """
        key = plan.key
        if self._resident is not None and self._resident.key == key:
            return self._resident, None
        try:
            backend_type = backend_class(key.backend)
            backend_type.preflight(plan.device)  # first call: seconds of imports, not load time
            self.release("settings changed")
            log.info(
                "tts.load.start",
                model=plan.model.model,
                path=str(plan.model.path),
                device=plan.device.device,
                dtype=plan.device.dtype,
                quantization=plan.device.quantization,
                attn_implementation=plan.device.attn_implementation,
                backend=key.backend,
            )
            started = time.perf_counter()
            backend = backend_type.load(plan.model.path, plan.device)
        except Exception as exc:  # a TtsError, or a bug or broken install: typed, kept, raised
            err = exc if isinstance(exc, TtsError) else _unexpected_load_error(exc)
            # A copy without the traceback: the failed load's frames must not stay alive.
            self.last_error = TtsError(err.code, err.detail, err.hint)
            self._failed[key] = (queue_stamp(), self.last_error)
            log.error(
                "tts.load.failed",
                code=err.code,
                detail=err.detail,
                device=plan.device.device,
                kept_resident=self._resident is not None,
            )
            if err is exc:
                raise
            raise err from exc
        seconds = time.perf_counter() - started
        self._resident = Resident(key, backend, plan.model.model)
        self.last_error = None
        self._failed.pop(key, None)
        log.info("tts.load.done", seconds=round(seconds, 3), device=plan.device.device)
        return self._resident, seconds

    def release(self, reason: str) -> None:
        """Drop the resident model, if any, and free its memory."""
        resident = self._resident
        if resident is None:
            return
        self._resident = None
        resident.backend.release()
        log.info("tts.model.released", device=resident.key.device, reason=reason)


def _unexpected_load_error(exc: Exception) -> TtsError:
    """``model_load_failed`` for what no check foresaw (a bug, a qwen_tts that changed)."""
    log.exception("tts.load.crashed")
    return TtsError(
        "model_load_failed",
        f"{type(exc).__name__}: {exc}",
        "This looks like a bug or an unsupported qwen_tts version; the log has the traceback.",
    )
