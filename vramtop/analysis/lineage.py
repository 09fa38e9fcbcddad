"""Lineage: a process that vanishes and comes back with the same user, command line and GPU is
the same job's next incarnation, not a stranger.

Where it sits: the analyzer core (``analysis/analyzer.py``) feeds :class:`LineageTracker` once
per tick with the rows it analyses — identity (PID, start time), GPU, user and command line from
the sampler's ``ProcessRow`` s, the latest memory figure, the GPU's free share, and whether the
process was growing into the limit — and gets back one :class:`Lineage` per row, which goes
into ``ProcessAnalysis.lineage`` and from there to the UI, the verdict, JSON and CSV. ``replay``
runs the same tracker over the recorded rows, so it reconstructs the same lineage.

Rules:

* Identity is (pid, start_time): a reused PID is a new process, and a restarted job (new PID)
  is a new identity linked to the old one, never merged with it.
* A row vanishing ends an incarnation; it is remembered for ``window_s`` seconds under the key
  (user, command line, GPU), with its peak, the time it was last seen and whether it likely ended
  in an OOM: its GPU had less than :data:`LIKELY_OOM_FREE_SHARE` free when it was last seen, or
  it was then growing into the limit.
* A new identity whose key matches a remembered incarnation takes it (the most recent one first;
  each is taken once, so four ranks restarted together are four lineages) and inherits that
  incarnation's own lineage. A process whose command line is unknown (another user's process,
  a PID from another namespace) is never linked: an empty key says nothing.

Cost: when the rows are the same as last tick (the common case) the update is a few array
operations; the dictionaries are consulted only when the process list changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vramtop.analysis.model import NO_LINEAGE, Incarnation, Lineage
from vramtop.analysis.trend import BoolArray, FloatArray
from vramtop.messages import ProcessIdentity

LIKELY_OOM_FREE_SHARE = 0.03  # "its GPU was (nearly) full": less than this share free
KEEP_PREVIOUS = 8  # incarnations kept per lineage (restarts still counts all)
MAX_ENDED = 4096  # remembered ended incarnations, oldest dropped first

Key = tuple[ProcessIdentity, int]  # (identity, GPU index)
Owner = tuple[str, str]  # (user, command line)


@dataclass(slots=True)
class _Live:
    key: Key
    job: tuple[str, str, int] | None  # (user, command, GPU); None: never linked
    lineage: Lineage
    peak: float
    last_seen: float
    last_free_share: float
    last_risk: bool
    first_seen: float = math.nan


class LineageTracker:
    """Links restarts; stateful between ticks, pure otherwise (no clock, no I/O)."""

    def __init__(self, window_s: float = 600.0) -> None:
        self.window_s = window_s
        self._live: dict[Key, _Live] = {}
        self._order: list[_Live] = []  # the last tick's rows, in their order
        self._peaks: FloatArray = np.zeros(0)
        self._ended: dict[tuple[str, str, int], list[tuple[Incarnation, Lineage]]] = {}
        self._ended_count = 0
        # The last tick's per-row figures; copied into the entries only when a row ends.
        self._last_share: FloatArray = np.zeros(0)
        self._last_risk: BoolArray = np.zeros(0, dtype=np.bool_)
        self._now = math.nan

    def update(
        self,
        now: float,
        keys: Sequence[Any],
        owners: Mapping[ProcessIdentity, Owner],
        levels: FloatArray,
        free_share: FloatArray,
        at_risk: BoolArray,
        same_keys: bool = False,
    ) -> list[Lineage]:
        """One tick: ``keys[i]`` holds ``levels[i]`` bytes (NaN = n/a) on a GPU with
        ``free_share[i]`` of its memory free; ``at_risk[i]`` says it is growing into the limit.
        Returns each row's lineage."""
        n = len(keys)
        levels = np.asarray(levels, dtype=np.float64).ravel()[:n]
        if not (same_keys and len(self._order) == n):
            self._rebuild(now, keys, owners)
        order = self._order
        peaks = np.fmax(self._peaks, levels) if self._peaks.size == n else levels.copy()
        self._peaks = peaks
        self._last_share = np.asarray(free_share, dtype=np.float64).ravel()
        self._last_risk = np.asarray(at_risk, dtype=np.bool_).ravel()
        self._now = now
        return [entry.lineage for entry in order]

    def _rebuild(
        self, now: float, keys: Sequence[Any], owners: Mapping[ProcessIdentity, Owner]
    ) -> None:
        previous = self._order
        # Bring the last tick's figures into the entries before any of them ends.
        if previous and self._peaks.size == len(previous):
            share, risk = self._last_share, self._last_risk
            for i, entry in enumerate(previous):
                entry.peak = _fmax(entry.peak, float(self._peaks[i]))
                entry.last_seen = self._now
                if i < share.size:
                    entry.last_free_share = float(share[i])
                if i < risk.size:
                    entry.last_risk = bool(risk[i])
        wanted = set(keys)
        for key in [k for k in self._live if k not in wanted]:
            self._end(self._live.pop(key))
        self._expire(now)
        order: list[_Live] = []
        peaks = np.full(len(keys), math.nan)
        for i, key in enumerate(keys):
            found = self._live.get(key)
            if found is None:
                found = self._live[key] = self._begin(key, owners.get(key[0]))
                found.first_seen = now
            order.append(found)
            peaks[i] = found.peak
        self._order = order
        self._peaks = peaks

    def _begin(self, key: Key, owner: Owner | None) -> _Live:
        job = None
        lineage = NO_LINEAGE
        if owner is not None and owner[1]:
            job = (owner[0], owner[1], key[1])
            queue = self._ended.get(job)
            if queue:
                incarnation, before = queue.pop()  # the most recent first
                self._ended_count -= 1
                if not queue:
                    del self._ended[job]
                kept = (*before.previous, incarnation)[-KEEP_PREVIOUS:]
                lineage = Lineage(restarts=before.restarts + 1, previous=kept)
        return _Live(key, job, lineage, math.nan, math.nan, math.nan, False)

    def _end(self, entry: _Live) -> None:
        if entry.job is None:
            return
        identity = entry.key[0]
        share = entry.last_free_share
        likely = (math.isfinite(share) and share < LIKELY_OOM_FREE_SHARE) or entry.last_risk
        ended_at = entry.last_seen if math.isfinite(entry.last_seen) else math.nan
        incarnation = Incarnation(
            pid=identity.pid,
            start_time=identity.start_time,
            ended_at=ended_at,
            peak_bytes=entry.peak,
            likely_oom=bool(likely),
            seen_s=max(ended_at - entry.first_seen, 0.0) if math.isfinite(ended_at) else 0.0,
        )
        self._ended.setdefault(entry.job, []).append((incarnation, entry.lineage))
        self._ended_count += 1

    def _expire(self, now: float) -> None:
        limit = now - self.window_s
        for job in list(self._ended):
            queue = [x for x in self._ended[job] if not x[0].ended_at < limit]
            self._ended_count -= len(self._ended[job]) - len(queue)
            if queue:
                self._ended[job] = queue
            else:
                del self._ended[job]
        while self._ended_count > MAX_ENDED:
            oldest = min(self._ended, key=lambda j: self._ended[j][0][0].ended_at)
            self._ended[oldest].pop(0)
            self._ended_count -= 1
            if not self._ended[oldest]:
                del self._ended[oldest]

    def remembered(self) -> int:
        """Ended incarnations waiting for a successor (bounded by :data:`MAX_ENDED`)."""
        return self._ended_count


def _fmax(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


def describe(lineage: Lineage, now: float) -> str:
    """One line for the detail panel: "restarted 2x in 4m, each time at 54.4G — likely OOM"."""
    from vramtop.analysis.verdict import eta_text, times
    from vramtop.fmt import size

    k = lineage.restarts
    if k == 0 or not lineage.previous:
        return "first run (no earlier run of this command on this GPU)"
    first = lineage.previous[0]
    since = first.start_time if first.start_time else first.ended_at
    span = f" in {eta_text(now - since)}" if math.isfinite(since) and now > since else ""
    head = f"restarted {times(k)}{span}"
    peaks = [p.peak_bytes for p in lineage.previous if math.isfinite(p.peak_bytes)]
    ooms = [p for p in lineage.previous if p.likely_oom]
    if peaks and len(ooms) == len(lineage.previous):
        lo, hi = min(peaks), max(peaks)
        at = f"each time at {size(hi)}" if hi - lo <= 0.05 * hi else f"at {size(lo)}-{size(hi)}"
        if len(lineage.previous) == 1:
            at = f"at {size(hi)}"
        return f"{head}, {at} — likely OOM"
    last = lineage.previous[-1]
    how = "likely OOM" if last.likely_oom else "exited with room to spare"
    peak = f" at {size(last.peak_bytes)}" if math.isfinite(last.peak_bytes) else ""
    return f"{head}; the last run ended{peak} ({how}), {len(ooms)} of {k} likely OOM"
