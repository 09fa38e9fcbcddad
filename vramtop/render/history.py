"""Memory histories for sparklines and the detail chart, read from the sampler's shm rings.

Where it sits: shm segment (written by the sampler) -> :class:`ShmHistory` -> ``cards.py``
(GPU sparklines) and ``detail.py`` (a process's memory chart). The segment is attached lazily
on first use and re-tried later if that fails; a torn read keeps the last good copy, so a busy
or restarting sampler never blanks a chart or stalls a frame.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Protocol

from vramtop.shm import HistoryReader, ShmSegment, TornReadError

RETRY_S = 2.0


Series = tuple[list[float], list[float]]  # (timestamps, values), oldest first, same length


class History(Protocol):
    def gpu_used(self, gpu: int, n: int) -> list[float]: ...

    def process_used(self, slot: int, n: int) -> list[float]: ...

    def gpu_series(self, gpu: int, field: str, n: int) -> Series: ...

    def process_series(self, slot: int, n: int) -> Series: ...


class NoHistory:
    """No rings (unit tests, ``--once``): every chart says "no history yet"."""

    def gpu_used(self, gpu: int, n: int) -> list[float]:
        return []

    def process_used(self, slot: int, n: int) -> list[float]:
        return []

    def gpu_series(self, gpu: int, field: str, n: int) -> Series:
        return [], []

    def process_series(self, slot: int, n: int) -> Series:
        return [], []


class ShmHistory:
    def __init__(self, shm_name: str) -> None:
        self.shm_name = shm_name
        self._segment: ShmSegment | None = None
        self._reader: HistoryReader | None = None
        self._retry_at = 0.0
        self._last: dict[tuple[str, int, int], list[float]] = {}
        self._last_series: dict[tuple[str, int, int], Series] = {}
        self.error = ""

    def _ready(self) -> HistoryReader | None:
        if self._reader is not None:
            return self._reader
        now = time.monotonic()
        if not self.shm_name or now < self._retry_at:
            return None
        try:
            self._segment = ShmSegment.attach(self.shm_name)
            self._reader = HistoryReader(self._segment, max_attempts=64)
            self.error = ""
        except Exception as exc:  # no segment yet, or a damaged one: charts wait
            self.error = f"history unavailable: {exc}"
            self._retry_at = now + RETRY_S
        return self._reader

    def _cached(self, key: tuple[str, int, int], read: object) -> list[float]:
        reader = self._ready()
        if reader is None:
            return self._last.get(key, [])
        try:
            values = read(reader)  # type: ignore[operator]
        except TornReadError:
            return self._last.get(key, [])
        except (IndexError, ValueError):
            return []
        out = [float(v) for v in values]
        self._last[key] = out
        return out

    def gpu_used(self, gpu: int, n: int) -> list[float]:
        if n <= 0:
            return []
        return self._cached(("gpu", gpu, n), lambda r: r.gpu_field(gpu, "used", n)[1])

    def process_used(self, slot: int, n: int) -> list[float]:
        if slot < 0 or n <= 0:
            return []
        values = list(
            self._cached(("proc", slot, n), lambda r: r.process_history(slot, None, n)[1])
        )
        # Leading NaN = before this process took the slot: not part of its history.
        while values and math.isnan(values[0]):
            values.pop(0)
        return values

    def _series(self, key: tuple[str, int, int], read: object) -> Series:
        reader = self._ready()
        if reader is None:
            return self._last_series.get(key, ([], []))
        try:
            ts, values = read(reader)  # type: ignore[operator]
        except TornReadError:
            return self._last_series.get(key, ([], []))
        except (IndexError, ValueError, KeyError):
            return [], []
        out = ([float(t) for t in ts], [float(v) for v in values])
        self._last_series[key] = out
        return out

    def gpu_series(self, gpu: int, field: str, n: int) -> Series:
        """Timestamps and one GPU field (``used``, ``reserved``, ``total``...) of the last n
        samples; the timeline places samples by their time, so gaps stay gaps."""
        if n <= 0:
            return [], []
        key = (f"gpu:{field}", gpu, n)
        return self._series(key, lambda r: r.gpu_field(gpu, field, n))

    def process_series(self, slot: int, n: int) -> Series:
        """Timestamps and used bytes of a slot's occupant; NaN before it arrived."""
        if slot < 0 or n <= 0:
            return [], []
        return self._series(("proc", slot, n), lambda r: r.process_history(slot, None, n))

    def forget(self) -> None:
        """Drop cached copies of processes (called when the process list changes)."""
        self._last = {k: v for k, v in self._last.items() if k[0] == "gpu"}
        self._last_series = {k: v for k, v in self._last_series.items() if k[0] != "proc"}

    def close(self) -> None:
        if self._segment is not None:
            with contextlib.suppress(Exception):
                self._segment.close()
        self._segment = None
        self._reader = None
