"""The replay backend: a recording (CSV or NDJSON) played back as if the GPUs were live.

Data flow: a file written by ``vramtop record`` / ``--export-csv`` / ``--json-stream`` ->
:func:`open_recording` (format told by content) -> ``(Snapshot, rows)`` per sample ->
:class:`ReplayBackend` -> the sampler actor, exactly as NVML or the simulated GPUs would deliver
them; or ``vramtop replay --json`` pulls :meth:`ReplayBackend.samples` directly.

Two additions to the :class:`~vramtop.gpu.backend.GpuBackend` protocol, both optional for other
backends and looked up by the sampler with ``getattr``:

* ``rows_for(snapshot)``: the process rows recorded with that snapshot. A replay's identities,
  users and commands come from the recording; asking /proc about recorded PIDs would name
  whatever process has that PID today. Replayed rows are never ``same_user``: nothing in a
  recording can be inspected or signalled.
* ``next_due(now)``: when the next recorded sample is due (wall clock), so the sampler keeps the
  recording's cadence instead of its own refresh rate.

Pacing: recorded time runs at ``speed`` times real time from the first sample (``None`` or
``inf``: as fast as the consumer pulls). Pauses in the recording longer than
:data:`MAX_GAP_S` (a recorder stopped overnight, then continued) are played as that long. A
backend started with ``t0`` (the wall time the replay began; the supervisor hands it to a
restarted sampler) skips ahead to where the replay should be by now.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from vramtop.export.csvlog import HEADER_LINE, Sample, is_csv_header, read_csv
from vramtop.export.ndjson import is_document_line, read_ndjson
from vramtop.gpu.backend import BackendUnavailable, GpuBackend
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import ProcessRow

MAX_GAP_S = 60.0
END_IDLE_S = 3600.0  # nothing more to sample: the sampler may sleep this long
FIRST_LINE_MAX = 1 << 20
END_NOTE = "replay: end of recording"


class RecordingError(BackendUnavailable):
    """Not a readable vramtop recording; ``str(exc)`` is one line for the user."""


def _stderr(message: str) -> None:
    print(f"vramtop: {message}", file=sys.stderr, flush=True)


def open_recording(path: str, warn: Callable[[str], None] = _stderr) -> Iterator[Sample]:
    """The samples of the recording at ``path``, read lazily. Raises :class:`RecordingError`
    when the file cannot be opened or is not a vramtop recording."""
    try:
        stream = open(path, encoding="utf-8", errors="replace", newline="")  # noqa: SIM115
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from None
    try:
        first = stream.readline(FIRST_LINE_MAX)
        if is_csv_header(first) and first.endswith("\n"):
            return _closing(stream, read_csv(stream, path, warn))
        if first.endswith("\n") and is_document_line(first):
            return _closing(stream, read_ndjson(itertools.chain([first], stream), path, warn))
        if not first:
            raise RecordingError(f"{path}: empty file, not a vramtop recording")
        if first.startswith(HEADER_LINE[:20]) or first.startswith('{"schema_version"'):
            if not first.endswith("\n"):
                raise RecordingError(f"{path}: no complete sample in the recording")
            raise RecordingError(
                f"{path}: a vramtop recording with other columns (another vramtop version?)"
            )
        raise RecordingError(
            f"{path}: not a vramtop recording (expected the CSV of `vramtop record` "
            "or the NDJSON of `--json-stream`)"
        )
    except BaseException:
        stream.close()
        raise


def _closing(stream: object, samples: Iterator[Sample]) -> Iterator[Sample]:
    try:
        yield from samples
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


class ReplayBackend:
    """A recording behind the backend protocol. ``speed``: recorded seconds per real second;
    ``None`` or ``math.inf`` = as fast as possible. ``clock``/``sleep`` are injectable so tests
    can run a real-time replay without waiting."""

    name = "replay"

    def __init__(
        self,
        path: str,
        speed: float | None = 1.0,
        t0: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        warn: Callable[[str], None] = _stderr,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.path = path
        self.speed = math.inf if speed is None else float(speed)
        self.t0 = t0
        self._clock = clock
        self._sleep = sleep
        self._warn = warn
        self._samples: Iterator[Sample] | None = None
        self._next: Sample | None = None
        self._current: Sample | None = None
        self._play = 0.0  # recorded seconds played up to self._next (gaps capped)
        self.count = 0  # samples handed out

    # -- protocol --------------------------------------------------------------------------

    def open(self) -> None:
        if self._samples is not None:
            return
        self._samples = open_recording(self.path, self._warn)
        self._next = next(self._samples, None)
        if self._next is None:
            self.close()
            raise RecordingError(f"{self.path}: no complete sample in the recording")
        if self.t0 is None:
            self.t0 = self._clock()
        elif math.isfinite(self.speed):
            # A restarted sampler: continue where the replay is by now, not from the start.
            position = (self._clock() - self.t0) * self.speed
            while self._next is not None and self._peek_play() <= position:
                self._advance()

    def sample(self) -> Snapshot:
        """The next recorded sample (without waiting: pacing is ``next_due``'s job); after
        the end, the last sample again with a note saying so."""
        if self._samples is None:
            self.open()
        if self._next is not None:
            self._advance()
        assert self._current is not None
        snapshot = self._current[0]
        if self._next is None and END_NOTE not in snapshot.notes:
            snapshot = _with_note(snapshot, END_NOTE)
            self._current = (snapshot, self._current[1])
        return snapshot

    def close(self) -> None:
        samples, self._samples = self._samples, None
        if samples is not None:
            close = getattr(samples, "close", None)
            if close is not None:
                close()

    # -- additions the sampler uses ----------------------------------------------------------

    def rows_for(self, snapshot: Snapshot) -> tuple[ProcessRow, ...] | None:
        """The recorded process rows of ``snapshot`` (None for a snapshot not from here)."""
        if self._current is not None and self._current[0] is snapshot:
            return self._current[1]
        return None

    def next_due(self, now: float) -> float:
        """Wall time at which the next sample should be taken."""
        if self._next is None:
            return now + END_IDLE_S
        if not math.isfinite(self.speed) or self.t0 is None:
            return now
        return self.t0 + self._peek_play() / self.speed

    @property
    def finished(self) -> bool:
        return self._samples is not None and self._next is None

    def samples(self) -> Iterator[Sample]:
        """Every sample once, paced by ``speed`` (the ``replay --json`` path)."""
        self.open()
        while self._next is not None:
            wait = self.next_due(self._clock()) - self._clock()
            if wait > 0:
                self._sleep(wait)
            self._advance()
            assert self._current is not None
            yield self._current

    # -- internals --------------------------------------------------------------------------

    def _peek_play(self) -> float:
        """Playback position (recorded seconds from the first sample) of the next sample."""
        if self._current is None or self._next is None:
            return self._play
        gap = self._next[0].timestamp - self._current[0].timestamp
        return self._play + min(max(gap, 0.0), MAX_GAP_S)

    def _advance(self) -> None:
        assert self._next is not None and self._samples is not None
        self._play = self._peek_play()
        self._current = self._next
        self._next = next(self._samples, None)
        self.count += 1


def _with_note(snapshot: Snapshot, note: str) -> Snapshot:
    return Snapshot(
        timestamp=snapshot.timestamp,
        backend=snapshot.backend,
        gpus=snapshot.gpus,
        processes=snapshot.processes,
        driver_version=snapshot.driver_version,
        cuda_version=snapshot.cuda_version,
        nvml_version=snapshot.nvml_version,
        notes=(*snapshot.notes, note),
    )


__all__ = ["END_NOTE", "MAX_GAP_S", "RecordingError", "ReplayBackend", "open_recording"]

if TYPE_CHECKING:  # the replay backend keeps the protocol's promises
    _conforms: GpuBackend = ReplayBackend("")
