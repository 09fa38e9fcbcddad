"""Consistent copies of the history rings for the analyzer and render processes.

Data flow: shm rings (written by the sampler's HistoryWriter) -> :class:`HistoryReader` -> numpy
arrays in time order (oldest first) -> analysis functions and sparklines.

Every copy method runs under the seqlock: read ``seq`` (must be even), copy, read ``seq`` again;
a copy is returned only if ``seq`` did not move, so it never mixes two samples. On contention it
retries -- a few times at once, then yielding the CPU, then with short sleeps -- and after
``max_attempts`` raises :class:`TornReadError` rather than returning anything doubtful. With the
sampler writing once a second a retry is rare; the error means the writer is stuck mid-sample
(it died; the supervisor's restarted sampler repairs the segment), so callers keep showing what
they had and try again next frame.

:meth:`HistoryReader.views` is the zero-copy escape hatch: raw views plus the ``seq`` they were
taken at. The caller reads what it needs and must then check :meth:`HistoryReader.stable`; if that
is False the data it read may be torn and must be discarded. :func:`read_histories` is the
analyzer's read built on it: every GPU's window and the windows of one sample's processes, as
the analysis core's ``GpuHistory`` / ``ProcessHistories`` inputs.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from vramtop.analysis.analyzer import GpuHistory, ProcessHistories
from vramtop.identity import same_process_mask
from vramtop.messages import ProcessRow
from vramtop.shm.layout import FIELD_INDEX, SegmentArrays
from vramtop.shm.segment import ShmSegment

T = TypeVar("T")
FloatArray = npt.NDArray[np.float64]

_SPIN = 8  # immediate retries before yielding the CPU
_YIELD = 64  # retries with sched_yield before sleeping
_SLEEP_S = 0.0005


class TornReadError(RuntimeError):
    """No consistent copy within the retry budget (the writer is stuck or dead mid-sample)."""


@dataclass(frozen=True, slots=True)
class SlotTable:
    """A consistent copy of the process-slot table, taken when ``count`` samples existed."""

    count: int
    pid: npt.NDArray[np.int64]  # -1 = never used
    start_time: FloatArray
    gpu: npt.NDArray[np.int32]
    generation: npt.NDArray[np.uint64]
    first: npt.NDArray[np.int64]
    last: npt.NDArray[np.int64]

    @property
    def active(self) -> npt.NDArray[np.bool_]:
        """Slots whose occupant is in the latest sample."""
        active: npt.NDArray[np.bool_] = (
            (self.last == self.count - 1) & (self.last >= self.first) & (self.pid >= 0)
        )
        return active

    def find(self, pid: int, start_time: float, gpu: int) -> int:
        """The slot holding process (pid, start_time) on ``gpu``, or -1."""
        same = same_process_mask(
            self.pid,
            self.start_time,
            np.asarray(pid, dtype=np.int64),
            np.asarray(start_time, dtype=np.float64),
        )
        hits = np.flatnonzero(same & (self.gpu == gpu))
        return int(hits[0]) if hits.size else -1


@dataclass(frozen=True, slots=True)
class RingViews:
    """Zero-copy views of a segment, valid only if ``reader.stable(seq)`` holds after use.

    Sample number ``k`` is at ring index ``k % history_length``; samples ``count - H .. count - 1``
    (those >= 0) are in the ring.
    """

    seq: int
    count: int
    history_length: int
    timestamps: FloatArray
    gpu: FloatArray  # [G, H, F]
    process: FloatArray  # [P, H]
    slot_pid: npt.NDArray[np.int64]
    slot_start_time: FloatArray
    slot_gpu: npt.NDArray[np.int32]
    slot_first: npt.NDArray[np.int64]
    slot_last: npt.NDArray[np.int64]
    slot_generation: npt.NDArray[np.uint64]


class HistoryReader:
    """Read-only access to one segment; any number of readers may run beside the writer."""

    def __init__(self, segment: ShmSegment, max_attempts: int = 400) -> None:
        self._segment = segment
        self._a: SegmentArrays = segment.arrays
        self._h = segment.layout.history_length
        self._g = segment.layout.gpu_count
        self._p = segment.layout.process_slots
        self.max_attempts = max(1, max_attempts)
        self.retries = 0  # failed attempts so far, for diagnostics and benchmarks

    @property
    def history_length(self) -> int:
        return self._h

    @property
    def gpu_count(self) -> int:
        return self._g

    @property
    def process_slots(self) -> int:
        return self._p

    @property
    def count(self) -> int:
        """Samples written so far."""
        return int(self._a.count[0])

    def latest_sample_index(self) -> int:
        """Sample number of the newest complete sample, -1 when there is none."""
        return self.count - 1

    # -- the seqlock -----------------------------------------------------------------------

    def _consistent(self, copy: Callable[[int], T]) -> T:
        seq = self._a.seq
        count = self._a.count
        for attempt in range(self.max_attempts):
            before = int(seq[0])
            if not before & 1:
                result = copy(int(count[0]))
                if int(seq[0]) == before:
                    return result
            self.retries += 1
            if attempt < _SPIN:
                continue
            if attempt < _YIELD:
                os.sched_yield()
            else:
                time.sleep(_SLEEP_S)
        raise TornReadError(
            f"no consistent copy of {self._segment.name} after {self.max_attempts} attempts"
        )

    def stable(self, seq_before: int) -> bool:
        """True if no sample was written since ``seq_before`` (from :meth:`views`)."""
        return not seq_before & 1 and int(self._a.seq[0]) == seq_before

    # -- copies ----------------------------------------------------------------------------

    def _window(self, count: int, n: int | None) -> tuple[int, npt.NDArray[np.intp]]:
        """First sample number and ring indices of the last ``n`` samples, oldest first."""
        available = min(count, self._h)
        m = available if n is None else max(0, min(int(n), available))
        start = count - m
        return start, np.arange(start, count, dtype=np.intp) % self._h

    def _check_gpu(self, gpu: int) -> None:
        if not 0 <= gpu < self._g:
            raise IndexError(f"GPU {gpu} not in history (0..{self._g - 1})")

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self._p:
            raise IndexError(f"slot {slot} not in history (0..{self._p - 1})")

    def gpu_history(self, gpu: int, n: int | None = None) -> tuple[FloatArray, FloatArray]:
        """(timestamps[m], values[m, F]) of the last n samples of one GPU, oldest first.

        ``m = min(n, count, history_length)``; columns follow ``GPU_FIELDS``.
        """
        self._check_gpu(gpu)
        ts_ring = self._a.timestamps
        gpu_ring = self._a.gpu[gpu]

        def copy(count: int) -> tuple[FloatArray, FloatArray]:
            _, idx = self._window(count, n)
            return ts_ring[idx], gpu_ring[idx]

        return self._consistent(copy)

    def gpu_field(
        self, gpu: int, field_name: str, n: int | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """(timestamps[m], values[m]) of one field (a name from ``GPU_FIELDS``), oldest first."""
        self._check_gpu(gpu)
        try:
            column = FIELD_INDEX[field_name]
        except KeyError:
            raise KeyError(f"unknown GPU field {field_name!r}") from None
        ts_ring = self._a.timestamps
        field_ring = self._a.gpu[gpu, :, column]

        def copy(count: int) -> tuple[FloatArray, FloatArray]:
            _, idx = self._window(count, n)
            return ts_ring[idx], field_ring[idx]

        return self._consistent(copy)

    def process_history(
        self, slot: int, generation: int | None = None, n: int | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """(timestamps[m], used bytes[m]) of the slot's current occupant, oldest first.

        Samples before the occupant's first sample, after its last one, or where the driver gave
        no figure are NaN. If ``generation`` is given and the slot has been handed to another
        process since, every value is NaN: the old process's history is gone.
        """
        self._check_slot(slot)
        a = self._a
        ts_ring = a.timestamps
        proc_ring = a.process[slot]

        def copy(count: int) -> tuple[int, FloatArray, FloatArray, int, int, int]:
            start, idx = self._window(count, n)
            return (
                start,
                ts_ring[idx],
                proc_ring[idx],
                int(a.slot_generation[slot]),
                int(a.slot_first[slot]),
                int(a.slot_last[slot]),
            )

        start, ts, used, gen, first, last = self._consistent(copy)
        if generation is not None and gen != generation:
            used.fill(math.nan)
            return ts, used
        # Positions in the window of the occupant's first and last samples.
        lo = min(max(first - start, 0), used.size)
        hi = min(max(last - start + 1, 0), used.size)
        used[:lo] = math.nan
        used[max(hi, lo) :] = math.nan
        return ts, used

    def slots(self) -> SlotTable:
        """A consistent copy of the slot table."""
        a = self._a

        def copy(count: int) -> SlotTable:
            return SlotTable(
                count=count,
                pid=a.slot_pid.copy(),
                start_time=a.slot_start_time.copy(),
                gpu=a.slot_gpu.copy(),
                generation=a.slot_generation.copy(),
                first=a.slot_first.copy(),
                last=a.slot_last.copy(),
            )

        return self._consistent(copy)

    def views(self) -> RingViews:
        """Raw views of every ring (no copy) and the seq they belong to; see :meth:`stable`."""
        a = self._a
        seq = a.seq
        for attempt in range(self.max_attempts):
            before = int(seq[0])
            if not before & 1:
                count = int(a.count[0])
                if int(seq[0]) == before:
                    return RingViews(
                        seq=before,
                        count=count,
                        history_length=self._h,
                        timestamps=a.timestamps,
                        gpu=a.gpu,
                        process=a.process,
                        slot_pid=a.slot_pid,
                        slot_start_time=a.slot_start_time,
                        slot_gpu=a.slot_gpu,
                        slot_first=a.slot_first,
                        slot_last=a.slot_last,
                        slot_generation=a.slot_generation,
                    )
            self.retries += 1
            if attempt >= _SPIN:
                os.sched_yield() if attempt < _YIELD else time.sleep(_SLEEP_S)
        raise TornReadError(f"{self._segment.name}: writer stuck mid-sample")


# -- the analyzer's read: every GPU and the processes of one sample, in one consistent copy ----

_READ_ATTEMPTS = 3
_USED, _TOTAL, _FREE, _TEMP = (FIELD_INDEX[k] for k in ("used", "total", "free", "temperature"))
_SLOT, _GPU, _IDENTITY = attrgetter("slot"), attrgetter("gpu_index"), attrgetter("identity")
_PID, _START = attrgetter("identity.pid"), attrgetter("identity.start_time")


def read_histories(
    reader: HistoryReader,
    rows: tuple[ProcessRow, ...],
    window: int,
    proc_window: int | None = None,
) -> tuple[list[GpuHistory], ProcessHistories]:
    """A consistent copy of the last ``window`` samples of every GPU and the last
    ``proc_window`` (default: ``window``) of ``rows``' slots.

    Only those columns are copied, one contiguous run per row (two where the ring wraps), under
    the seqlock. Raises :class:`TornReadError` when no consistent copy could be taken.
    """
    pw = window if proc_window is None else max(1, min(proc_window, window))
    k = len(rows)
    slots = np.fromiter(map(_SLOT, rows), dtype=np.intp, count=k)
    row_pid = np.fromiter(map(_PID, rows), dtype=np.int64, count=k)
    row_start = np.fromiter(map(_START, rows), dtype=np.float64, count=k)
    gpu_index = np.fromiter(map(_GPU, rows), dtype=np.int64, count=k)
    usable = (slots >= 0) & (slots < reader.process_slots)
    everyone = bool(usable.all())
    if not everyone:
        slots = slots[usable]
    for _ in range(_READ_ATTEMPTS):
        views = reader.views()
        count, h = views.count, views.history_length
        m = max(0, min(window, count, h))
        idx = np.arange(count - m, count, dtype=np.intp) % max(h, 1)
        ts = views.timestamps[idx]
        gpu = views.gpu[:, idx, :]
        mp = min(m, pw)
        used = _columns(views.process, slots, count - mp, mp, h)
        pid = views.slot_pid[slots]
        start_time = views.slot_start_time[slots]
        first = views.slot_first[slots]
        last = views.slot_last[slots]
        if reader.stable(views.seq):
            break
    else:
        raise TornReadError("analyzer: the histories kept changing while being copied")

    # Samples outside the current occupant's life belong to someone else: n/a.
    partial = np.flatnonzero((first > count - mp) | (last < count - 1))
    if partial.size:
        sample_no = np.arange(count - mp, count, dtype=np.int64)
        alive = (sample_no[None, :] >= first[partial, None]) & (
            sample_no[None, :] <= last[partial, None]
        )
        used[partial] = np.where(alive, used[partial], np.nan)
    # A slot handed to another process since the message was built: its data is not ours.
    ours = same_process_mask(pid, start_time, row_pid[usable], row_start[usable])
    if everyone and bool(ours.all()):
        full = used
    else:
        full = np.full((k, mp), np.nan)
        full[np.flatnonzero(usable)[ours]] = used[ours]
    procs = ProcessHistories(ts[m - mp :], full, tuple(map(_IDENTITY, rows)), gpu_index)

    gpus = []
    for g in range(gpu.shape[0]):
        values = gpu[g]
        latest = values[-1] if m else np.full(values.shape[-1], np.nan)
        gpus.append(
            GpuHistory(
                index=g,
                ts=ts,
                used=values[:, _USED] if m else np.zeros(0),
                total=float(latest[_TOTAL]),
                free=float(latest[_FREE]),
                temperature_c=float(latest[_TEMP]),
            )
        )
    return gpus, procs


def _columns(
    ring: npt.NDArray[np.float64], slots: npt.NDArray[np.intp], first: int, n: int, h: int
) -> npt.NDArray[np.float64]:
    """Samples ``first .. first + n - 1`` of the ring rows ``slots``, as a new [len(slots), n]."""
    if n <= 0 or h <= 0:
        return np.zeros((slots.size, 0))
    lo = first % h
    if lo + n <= h:
        return ring[slots, lo : lo + n]
    out = np.empty((slots.size, n))
    out[:, : h - lo] = ring[slots, lo:h]
    out[:, h - lo :] = ring[slots, : n - (h - lo)]
    return out
