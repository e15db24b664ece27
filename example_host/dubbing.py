"""Narration dubbing: one WAV per script segment plus ``manifest.json``, resumable.

Segments go to the engine in lists through ``tts_synthesize_batch``, ``batch_size`` at a time,
so they share generate calls. The manifest is rewritten atomically after every list. A rerun
reuses the audio of any earlier segment with the same text and settings fingerprint whose WAV
is still there with the recorded size and duration, wherever that segment now sits (its file
is renamed to the new number): a crashed run picks up where it stopped, a finished one touches
nothing, and a line inserted at the top is the only one synthesised.

A segment the engine finds nothing to speak in (``empty_text``: punctuation only, emoji, ...)
is skipped like an empty one. ``Progress`` shows segments as they settle: a list's segments
settle together, when the generate calls they share end.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from hookspecs import (
    BatchItem,
    EngineConfig,
    ErrorInfo,
    GenerationParams,
    SynthesisRequest,
    TtsError,
    Voice,
)

from .scripts import Segment
from .threads import completed

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class ManifestError(Exception):
    """An existing manifest that cannot be read; it is left alone."""


@dataclass(frozen=True)
class SegmentDone:
    """One segment settled, for progress: its outcome (ok, resumed, skipped, failed), its
    audio seconds (None without audio), and whether it went to the engine in this run."""

    segment: Segment
    outcome: str
    audio_s: float | None
    spoken: bool


@dataclass
class DubReport:
    """What one run did: counts by outcome, the failures, and timing.

    ``batch_size``: segments sent per hook call; ``largest_batch``: the most segments that
    shared one generate call in this run (0 when nothing was generated).
    """

    manifest: Path
    total: int = 0
    ok: int = 0
    resumed: int = 0
    skipped: int = 0
    failed: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    skipped_segments: list[int] = field(default_factory=list)
    stopped_by: TtsError | None = None
    batch_size: int = 1
    largest_batch: int = 0

    @property
    def not_run(self) -> int:
        """Segments left undone because the run stopped at a failure."""
        return self.total - self.ok - self.resumed - self.skipped - self.failed


def wav_name(number: int) -> str:
    """The file a segment is written to, e.g. ``seg_0001.wav``."""
    return f"seg_{number:04d}.wav"


def fingerprint(
    config: EngineConfig,
    generation: GenerationParams,
    voice: Voice | None = None,
    speed_only: Iterable[str] = (),
) -> str:
    """A short hash of everything besides the text that decides a segment's audio;
    ``speed_only`` settings (the engine's ``speed_only`` role) change how fast, not what."""
    dumped = config.model_dump(mode="json", include={"provider", "extra_params"})
    for key in speed_only:
        dumped["extra_params"].pop(key, None)
    recipe = {
        "config": dumped,
        "voice": (voice or Voice()).model_dump(mode="json"),
        "generation": generation.model_dump(mode="json"),
    }
    blob = json.dumps(recipe, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def read_manifest(path: Path) -> dict[int, dict[str, Any]]:
    """Entries of an existing manifest by segment number; empty when there is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {int(entry["segment"]): entry for entry in data["segments"]}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ManifestError(
            f"manifest {path} cannot be read ({type(exc).__name__}: {exc}); "
            "delete it or choose another --out-dir"
        ) from None


FILE_MODE = 0o644
"""The mode of every file dub leaves (the engine writes its WAVs 0644 too)."""

STALE_PATTERNS = (".seg_*.wav.*.tmp", ".manifest.*.tmp", ".seg_*.wav.moving")
"""Temporary files a run that crashed may leave: a WAV or manifest being written, a reused WAV
being renamed. The next run in the folder removes them (one dub per folder at a time)."""


def remove_stale_temp_files(out_dir: Path) -> list[Path]:
    """Remove the temporary files an earlier, interrupted run left in ``out_dir``."""
    stale = [path for pattern in STALE_PATTERNS for path in out_dir.glob(pattern)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_manifest(path: Path, header: dict[str, Any], entries: dict[int, dict]) -> None:
    """Write the manifest atomically (``write_atomically``)."""
    data = {**header, "segments": [entries[n] for n in sorted(entries)]}
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    write_atomically(path, text.encode("utf-8"))


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path`` whole or not at all: a temporary file beside it (``.<name>.*.tmp``,
    which ``STALE_PATTERNS`` covers), mode ``FILE_MODE``, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, FILE_MODE)  # mkstemp makes it private; our files are not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resumable(entry: dict[str, Any] | None, text: str, fp: str, out_dir: Path) -> bool:
    """Whether ``entry`` already holds the audio of ``text``, made with the same settings."""
    if not entry or entry.get("status") != "ok" or entry.get("text") != text:
        return False
    if entry.get("fingerprint") != fp or not entry.get("path"):
        return False
    wav = out_dir / entry["path"]
    try:
        if wav.stat().st_size != entry.get("bytes"):
            return False
        import soundfile

        info = soundfile.info(str(wav))
    except (OSError, RuntimeError):  # gone, or not a readable sound file
        return False
    return abs(info.frames / info.samplerate - float(entry.get("duration_s", -1))) < 1e-3


def _reusable(
    old: dict[int, dict[str, Any]], segments: list[Segment], fp: str, out_dir: Path
) -> dict[int, dict[str, Any]]:
    """Earlier entries whose audio serves a segment now, by the segment's number: same text
    and fingerprint, WAV intact; a segment keeps its own number's entry when that one fits."""
    by_text: dict[str, list[dict[str, Any]]] = {}
    for entry in old.values():
        if resumable(entry, str(entry.get("text")), fp, out_dir):
            by_text.setdefault(entry["text"], []).append(entry)
    reused: dict[int, dict[str, Any]] = {}
    for segment in segments:  # first the segments whose own entry still fits
        same = old.get(segment.number)
        candidates = by_text.get(segment.text, [])
        if not segment.empty and same is not None and same in candidates:
            candidates.remove(same)
            reused[segment.number] = same
    for segment in segments:  # then any other entry with the same text
        candidates = by_text.get(segment.text, [])
        if not segment.empty and segment.number not in reused and candidates:
            reused[segment.number] = candidates.pop(0)
    return reused


def _move_reused(reused: dict[int, dict[str, Any]], out_dir: Path) -> None:
    """Rename reused WAVs to their segments' names: through temporary names first, so two
    files that trade places never overwrite each other."""
    moving = {
        number: out_dir / entry["path"]
        for number, entry in reused.items()
        if entry["path"] != wav_name(number)
    }
    staged = {}
    for number, source in moving.items():
        staged[number] = out_dir / f".{wav_name(number)}.moving"
        os.replace(source, staged[number])
    for number, temporary in staged.items():
        os.replace(temporary, out_dir / wav_name(number))


def _base_entry(segment: Segment) -> dict[str, Any]:
    return {
        "segment": segment.number,
        "text": segment.text,
        "status": "pending",
        "path": None,
        "duration_s": None,
        "start_s": segment.start_s,
        "end_s": segment.end_s,
    }


def dub(
    pm: pluggy.PluginManager,
    config: EngineConfig,
    segments: list[Segment],
    out_dir: Path,
    generation: GenerationParams,
    voice: Voice | None = None,
    keep_going: bool = False,
    header: dict[str, Any] | None = None,
    on_settled: Callable[[list[SegmentDone]], None] | None = None,
    batch_size: int = 1,
    speed_only: Iterable[str] = (),
    lists_in_flight: int = 1,
) -> DubReport:
    """Synthesise every segment not already done into ``out_dir``; see the module docstring.

    ``voice`` goes to every request as given (None: the contract's default ``Voice()``).
    ``batch_size`` segments go to the engine per hook call. ``on_settled(events)`` (for
    progress) is called with the segments resumed or skipped at the start, then with each
    list's segments once the list is done and the manifest written: a list's segments settle
    together, as they share generate calls. Without
    ``keep_going`` the run stops after the list holding the first failed segment; the
    segments of that list that were written are kept. ``speed_only`` names the settings left
    out of the fingerprint (a changed batch size does not redo a finished dub).
    ``lists_in_flight`` lists go to the engine at once, each from a daemon thread of its own
    (``threads.completed``), and settle as each ends (a service with several replicas:
    ``--cluster``); no new list starts after a failure unless ``keep_going``.
    """
    voice = voice or Voice()
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out_dir)
    manifest = out_dir / MANIFEST
    old = read_manifest(manifest)
    fp = fingerprint(config, generation, voice, speed_only)
    header = {"version": MANIFEST_VERSION, **(header or {}), "fingerprint": fp}
    entries: dict[int, dict[str, Any]] = {}
    todo: list[Segment] = []
    report = DubReport(manifest=manifest, total=len(segments), batch_size=max(1, batch_size))
    reused = _reusable(old, segments, fp, out_dir)
    numbered = {segment.number: segment for segment in segments}
    for segment in segments:
        entry = reused.get(segment.number)
        if segment.empty:
            entries[segment.number] = {**_base_entry(segment), "status": "skipped"}
        elif entry is not None:
            entries[segment.number] = {
                **entry,
                "segment": segment.number,
                "path": wav_name(segment.number),
                "start_s": segment.start_s,
                "end_s": segment.end_s,
            }
        else:
            entries[segment.number] = _base_entry(segment)
            todo.append(segment)
    moving = {n for n, entry in reused.items() if entry["path"] != wav_name(n)}
    if moving:  # a crash while renaming must not leave entries naming another line's audio
        interim = {n: _base_entry(s) if n in moving else entries[n] for n, s in numbered.items()}
        write_manifest(manifest, header, interim)
    _move_reused(reused, out_dir)
    settled = []
    for segment in segments:
        status = entries[segment.number]["status"]
        if status == "skipped":
            report.skipped += 1
            report.skipped_segments.append(segment.number)
        elif status == "ok":
            report.resumed += 1
            report.audio_s += entries[segment.number]["duration_s"]
        if status != "pending":
            outcome = "resumed" if status == "ok" else status
            duration = entries[segment.number]["duration_s"]
            settled.append(SegmentDone(segment, outcome, duration, spoken=False))
    write_manifest(manifest, header, entries)
    if on_settled and settled:
        on_settled(settled)
    lists = [
        todo[first : first + report.batch_size] for first in range(0, len(todo), report.batch_size)
    ]

    def settle(chunk: list[Segment], done: list[dict[str, Any]]) -> None:
        entries.update((segment.number, entry) for segment, entry in zip(chunk, done, strict=True))
        write_manifest(manifest, header, entries)
        if on_settled:
            on_settled(
                [
                    SegmentDone(segment, entry["status"], entry["duration_s"], spoken=True)
                    for segment, entry in zip(chunk, done, strict=True)
                ]
            )
        for segment, entry in zip(chunk, done, strict=True):
            if entry["status"] == "ok":
                report.ok += 1
                report.audio_s += entry["duration_s"]
                report.largest_batch = max(report.largest_batch, entry["batch_size"])
            elif entry["status"] == "skipped":
                report.skipped += 1
                report.skipped_segments.append(segment.number)
            else:
                report.failed += 1
                report.failures.append(entry)

    def speak(chunk: list[Segment]) -> list[dict[str, Any]]:
        return _synthesize(pm, config, voice, chunk, out_dir, generation, fp)

    def stop() -> bool:
        return bool(report.failures) and not keep_going

    for chunk, done in _in_turn(speak, lists, lists_in_flight, stop):
        settle(chunk, done)
    if report.failures and not keep_going:
        error = report.failures[0]["error"]
        report.stopped_by = TtsError(error["code"], error["detail"], error["hint"])
    report.wall_s = time.perf_counter() - started
    return report


def _in_turn(
    speak: Callable[[list[Segment]], list[dict[str, Any]]],
    lists: list[list[Segment]],
    in_flight: int,
    stop: Callable[[], bool],
) -> Iterator[tuple[list[Segment], list[dict[str, Any]]]]:
    """Each list with its entries, ``in_flight`` lists spoken at once, yielded as each ends
    (in order when one at a time); none started once ``stop()`` says so."""
    if in_flight <= 1:
        for chunk in lists:
            if stop():
                return
            yield chunk, speak(chunk)
        return
    for position, done in completed(speak, lists, in_flight, stop):
        yield lists[position], done


def _synthesize(
    pm: pluggy.PluginManager,
    config: EngineConfig,
    voice: Voice,
    segments: list[Segment],
    out_dir: Path,
    generation: GenerationParams,
    fp: str,
) -> list[dict[str, Any]]:
    """Segments through one ``tts_synthesize_batch`` call; their manifest entries, in order."""
    requests = [
        SynthesisRequest(
            config=config,
            text=segment.text,
            out_path=out_dir / wav_name(segment.number),
            voice=voice,
            generation=generation,
        )
        for segment in segments
    ]
    try:
        items = pm.hook.tts_synthesize_batch(requests=requests)
    except TtsError as err:  # the list as a whole was refused: every segment failed with it
        return [{**_base_entry(s), "status": "failed", "error": err.to_dict()} for s in segments]
    if items is None:  # an engine without the batch hook: one call per segment
        items = [_one_by_one(pm, index, request) for index, request in enumerate(requests)]
    entries = []
    for segment, item in zip(segments, items, strict=True):
        entry = _base_entry(segment)
        if item.error is not None and item.error.code == "empty_text":
            entries.append({**entry, "status": "skipped", "reason": item.error.detail})
            continue
        if item.error is not None:
            entries.append({**entry, "status": "failed", "error": item.error.model_dump()})
            continue
        result = item.result
        entries.append(
            {
                **entry,
                "status": "ok",
                "path": result.path.name,
                "duration_s": result.duration_s,
                "sample_rate": result.sample_rate,
                "bytes": result.path.stat().st_size,
                "device": result.device,
                "dtype": result.dtype,
                "codec_dtype": result.codec_dtype,
                "quantization": result.quantization,
                "synth_s": round(result.synth_s, 3),
                "batch_size": result.batch_size,
                "pieces": result.pieces,
                "cut_pieces": result.cut_pieces,
                "fingerprint": fp,
            }
        )
    return entries


def _one_by_one(pm: pluggy.PluginManager, index: int, request: SynthesisRequest) -> BatchItem:
    """``tts_synthesize`` for one request, as the ``BatchItem`` the batch hook would give."""
    try:
        result = pm.hook.tts_synthesize(request=request)
        if result is None:
            raise TtsError(
                "unknown_provider", f"no engine answered provider {request.config.provider!r}"
            )
    except TtsError as err:
        return BatchItem(index=index, error=ErrorInfo.from_error(err))
    return BatchItem(index=index, result=result)


def written(out_dir: Path) -> int:
    """Segments the manifest in ``out_dir`` lists as written (status ok); 0 without one."""
    entries = read_manifest(out_dir / MANIFEST)
    return sum(entry.get("status") == "ok" for entry in entries.values())


class Progress:
    """Progress on stderr with an estimate of the time left: a tqdm bar on a terminal (moved
    once per list, naming its segments), else one plain line per segment (for a job's logs).

    The segments of a list settle together (they share generate calls), so they share one
    estimate. It counts only segments spoken in this run (resumed ones take no time), from the
    moment the first list went to the engine.
    """

    BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.done = 0
        self.spoken = 0
        self.started = self.speaking_since = time.perf_counter()
        self.bar = None
        self._redirect: Any = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                unit="seg",
                file=self.stream,
                bar_format=self.BAR_FORMAT,
                mininterval=0,  # one update per list: show each
                miniters=1,
            )

    def __enter__(self) -> Progress:
        if self.bar is not None:  # log lines (the engine's warnings) above the bar, not in it
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm(tqdm_class=type(self.bar))
            self._redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None
        if self.bar is not None:
            self.bar.close()

    def settled(self, events: list[SegmentDone]) -> None:
        """Count segments that settled together (one list, or those resumed at the start)
        and show them, with one estimate for them all."""
        now = time.perf_counter()
        before = self.done
        self.done += len(events)
        self.spoken += sum(event.spoken for event in events)
        if not self.spoken:  # settled at the start: the pace counts from here
            self.speaking_since = now
        eta = self.eta_s(now)
        if self.bar is not None:
            more = f", eta {clock(eta)}" if eta is not None else ""
            self.bar.set_postfix_str(together(events) + more, refresh=False)
            self.bar.update(len(events))
            return
        for shown, event in enumerate(events, start=before + 1):
            print(self.line(shown, event, now - self.started, eta), file=self.stream)
        self.stream.flush()

    def line(self, done: int, event: SegmentDone, elapsed: float, eta: float | None) -> str:
        """One plain progress line: ``[ 3/32] seg 3 ok  2.10 s  (elapsed 4.2 s, eta 40 s)``."""
        width = len(str(self.total))
        said = f"seg {event.segment.number} {event.outcome}"
        audio = f"  {event.audio_s:.2f} s" if event.audio_s is not None else ""
        times = f"elapsed {clock(elapsed, 1)}" + (f", eta {clock(eta)}" if eta is not None else "")
        return f"[{done:>{width}}/{self.total}] {said}{audio}  ({times})"

    def eta_s(self, now: float) -> float | None:
        """Seconds left at the pace of the segments spoken so far; None before the first
        one, and once every segment is done."""
        if not self.spoken or self.done >= self.total:
            return None
        return (now - self.speaking_since) / self.spoken * (self.total - self.done)


def together(events: list[SegmentDone]) -> str:
    """Segments that settled together, briefly: ``seg 3 ok``, ``seg 9-16 ok``, or
    ``seg 9-16: 7 ok, 1 failed``."""
    numbers = [event.segment.number for event in events]
    span = str(numbers[0]) if len(numbers) == 1 else f"{min(numbers)}-{max(numbers)}"
    counts: dict[str, int] = {}
    for event in events:
        counts[event.outcome] = counts.get(event.outcome, 0) + 1
    if len(counts) == 1:
        return f"seg {span} {events[0].outcome}"
    return f"seg {span}: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items())


def clock(seconds: float, decimals: int = 0) -> str:
    """A duration for people: ``4.2 s``, ``40 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.{decimals}f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
