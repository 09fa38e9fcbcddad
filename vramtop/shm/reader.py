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
is False the data it read may be torn and must be discarded.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

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
        hits = np.flatnonzero(
            (self.pid == pid) & (self.start_time == start_time) & (self.gpu == gpu)
        )
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
