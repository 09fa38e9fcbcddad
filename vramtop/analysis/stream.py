"""The stream analyzer: the analyzer stepped over samples given in order, without shared memory.

Data flow: (``Snapshot``, rows) one sample at a time, from a backend (``--once``,
``modes/record.py``) or a recording (``modes/replay.py``) -> :class:`StreamAnalyzer` ->
``AnalysisResult`` of that sample.

The analysis is :class:`vramtop.analysis.analyzer.Analyzer` stepped once per sample, in order,
over the same windows the live analyzer reads from shared memory: the last
``general.history_length`` samples of every GPU's used memory and of every current process's
memory (NaN where it was absent or n/a). :class:`_Windows` keeps those windows in numpy rings,
so a step costs one column write plus the analyzer, whatever the length of the recording.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
from vramtop.analysis.model import AnalysisResult
from vramtop.config import Config
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow

if TYPE_CHECKING:
    from vramtop.scrape.model import ServerMetrics


class _Windows:
    """The last ``n`` samples of every GPU and process, as the analyzer's history inputs."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.ts = np.full(n, np.nan)
        self.gpu_used: dict[int, np.ndarray[Any, np.dtype[np.float64]]] = {}
        self.rows: dict[tuple[ProcessIdentity, int], int] = {}
        self.proc_used = np.full((16, n), np.nan)
        self.last_seen: dict[tuple[ProcessIdentity, int], int] = {}
        self.free_rows: list[int] = list(range(15, -1, -1))

    def add(
        self, snap: Snapshot, rows: tuple[ProcessRow, ...]
    ) -> list[tuple[ProcessIdentity, int]]:
        col = self.count % self.n
        self.ts[col] = snap.timestamp
        for g in snap.gpus:
            ring = self.gpu_used.get(g.index)
            if ring is None:
                ring = self.gpu_used[g.index] = np.full(self.n, np.nan)
            ring[col] = math.nan if g.lost else float(g.memory_used)
        present = {g.index for g in snap.gpus}
        for index, ring in self.gpu_used.items():
            if index not in present:
                ring[col] = math.nan  # a GPU missing from this sample
        self.proc_used[:, col] = np.nan
        identity = {(r.identity.pid, r.gpu_index): r.identity for r in rows}
        current = []
        for p in snap.processes:
            key = (identity.get((p.pid, p.gpu_index), ProcessIdentity(p.pid, 0.0)), p.gpu_index)
            row = self.rows.get(key)
            if row is None:
                row = self.rows[key] = self._free_row()
            self.proc_used[row, col] = float(p.used_bytes)
            self.last_seen[key] = self.count
            current.append(key)
        self.count += 1
        self._forget_old()
        return current

    def _free_row(self) -> int:
        if not self.free_rows:
            old = self.proc_used.shape[0]
            grown = np.full((old * 2, self.n), np.nan)
            grown[:old] = self.proc_used
            self.proc_used = grown
            self.free_rows = list(range(old * 2 - 1, old - 1, -1))
        return self.free_rows.pop()

    def _forget_old(self) -> None:
        """A process absent for a whole window has no history left: free its row."""
        stale = [k for k, seen in self.last_seen.items() if self.count - seen > self.n]
        for key in stale:
            row = self.rows.pop(key)
            del self.last_seen[key]
            self.proc_used[row] = np.nan
            self.free_rows.append(row)

    def order(self) -> np.ndarray[Any, np.dtype[np.intp]]:
        """Ring columns, oldest first."""
        if self.count < self.n:
            return np.arange(self.count)
        return (np.arange(self.n) + self.count) % self.n


class StreamAnalyzer:
    """The analyzer stepped over samples given in order, with its history windows in memory."""

    def __init__(self, config: Config, window: int | None = None) -> None:
        self.analyzer = Analyzer(config)
        self.windows = _Windows(window or config.general.history_length)

    def step(
        self,
        snapshot: Snapshot,
        rows: tuple[ProcessRow, ...],
        preallocates: Mapping[ProcessIdentity, bool] | None = None,
        servers: Mapping[ProcessIdentity, ServerMetrics] | None = None,
    ) -> AnalysisResult:
        """One sample's analysis; ``servers``: the scraper's figures by GPU process (KV cache
        use and queues for the pre-allocating servers' verdicts)."""
        windows = self.windows
        current = windows.add(snapshot, rows)
        order = windows.order()
        ts = windows.ts[order]
        gpus = [
            GpuHistory(
                index=g.index,
                ts=ts,
                used=windows.gpu_used[g.index][order],
                total=float(g.memory_total),
                free=float(g.memory_free),
                temperature_c=float(g.temperature_c),
            )
            for g in snapshot.gpus
            if not g.lost
        ]
        picked = np.asarray([windows.rows[k] for k in current], dtype=np.intp)
        procs = ProcessHistories(
            ts,
            windows.proc_used[picked][:, order] if current else np.zeros((0, ts.size)),
            tuple(k[0] for k in current),
            np.asarray([k[1] for k in current], dtype=np.int64),
        )
        read = {i: s for i, s in (servers or {}).items() if s.read_at}
        context = AnalysisContext(
            timestamp=snapshot.timestamp,
            preallocates=preallocates or {},
            kv_cache_usage={i: s.kv_cache_usage for i, s in read.items()},
            waiting={i: s.waiting for i, s in read.items()},
            queue_growing={i: s.queue_growing for i, s in read.items()},
        )
        return self.analyzer.step(gpus, procs, context)
