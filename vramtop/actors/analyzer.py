"""Analyzer actor: shared-memory histories -> :class:`AnalysisMessage` for the render process.

Where it sits: the sampler publishes :class:`ProcessRows` per tick (state: newest wins); for the
newest rows of each batch this core copies a bounded window of the histories out of shared
memory — the last ``WINDOW`` samples of every GPU, and of every process in the message only as
far back as the analysis looks, as one 2-D block under the seqlock (one contiguous run of
columns per slot, straight from the ring views) — and hands them to the functional core
(:class:`vramtop.analysis.analyzer.Analyzer`). The result goes to "render" (state) and
"exporter" (which writes each sample with the analysis of the same ``seq``). A torn read (the
sampler died mid-sample) skips the tick; the render process keeps showing the previous analysis.

Other inputs: :class:`EnrichmentMessage` (which processes pre-allocate by design),
:class:`ConfigUpdate` (new thresholds), and :class:`Selected` (the process selected
in the UI: PELT segments are computed for it alone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from vramtop.actors.base import ActorContext, Out
from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
from vramtop.analysis.model import AnalysisResult
from vramtop.analysis.spikes import SPIKE_WINDOW_S
from vramtop.analysis.trend import PhaseParams
from vramtop.config import Config
from vramtop.messages import (
    AnalysisMessage,
    ConfigUpdate,
    EnrichmentMessage,
    ProcessIdentity,
    ProcessRow,
    ProcessRows,
    SampleMessage,
    Selected,
)
from vramtop.shm import FIELD_INDEX, HistoryReader, ShmSegment, TornReadError

WINDOW = 300  # samples per series the analysis looks at, whatever history_length is
_READ_ATTEMPTS = 3
_USED, _TOTAL, _FREE, _TEMP = (FIELD_INDEX[k] for k in ("used", "total", "free", "temperature"))
_SLOT, _GPU, _IDENTITY = attrgetter("slot"), attrgetter("gpu_index"), attrgetter("identity")
_PID, _START = attrgetter("identity.pid"), attrgetter("identity.start_time")


def process_window(refresh_rate: float, window: int = WINDOW) -> int:
    """Samples per process the analysis needs: its longest look-back (spikes) at this rate."""
    seconds = max(SPIKE_WINDOW_S * 1.2, PhaseParams().long_window_s * 1.5)
    return int(min(window, math.ceil(seconds / max(refresh_rate, 1e-3)) + 2))


def read_histories(
    reader: HistoryReader,
    rows: tuple[ProcessRow, ...],
    window: int = WINDOW,
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
    ours = (pid == row_pid[usable]) & ((start_time == row_start[usable]) | (start_time == 0.0))
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


class AnalyzerCore:
    """Message-driven: one analysis per batch that brought new rows, none in between."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.segment: ShmSegment | None = None
        self.reader: HistoryReader | None = None
        self.analyzer = Analyzer(Config())
        self.preallocates: dict[ProcessIdentity, bool] = {}
        self.kv_cache_usage: dict[ProcessIdentity, float | None] = {}
        self.selected: ProcessIdentity | None = None
        self.latest: ProcessRows | None = None
        self.last_result: AnalysisResult | None = None
        self.analyses = 0
        self.skipped = 0  # ticks skipped on torn reads, for diagnostics
        self.done = False

    def start(self, ctx: ActorContext) -> Out:
        self.analyzer.configure(ctx.config)
        self.segment = ShmSegment.attach(ctx.shm_name)
        self.reader = HistoryReader(self.segment)
        return []

    def handle(self, batch: Sequence[object], now: float) -> Out:
        rows: ProcessRows | None = None
        for message in batch:
            if isinstance(message, ProcessRows | SampleMessage):
                rows = _as_rows(message)
            elif isinstance(message, EnrichmentMessage):
                for item in message.items:
                    self.preallocates[item.identity] = item.preallocates
            elif isinstance(message, ConfigUpdate):
                if not message.error:
                    self.analyzer.configure(message.config)
            elif isinstance(message, Selected):
                self.selected = message.identity
        if rows is None:
            return []
        self.latest = rows
        result = self.analyze(rows)
        if result is None:
            return []
        out = AnalysisMessage(rows.seq, result)
        return [("render", out), ("exporter", out)]

    def analyze(self, message: ProcessRows | SampleMessage) -> AnalysisResult | None:
        """Read and analyse; None when the read was torn (the tick is skipped)."""
        if self.reader is None:
            return None
        rows = _as_rows(message)
        try:
            pw = process_window(self.analyzer.config.general.refresh_rate, self.window)
            gpus, procs = read_histories(self.reader, rows.rows, self.window, pw)
        except TornReadError:
            self.skipped += 1
            return None
        # Hints for processes that are gone are dropped, so the maps stay bounded.
        if len(self.preallocates) > 4 * max(len(procs.identities), 256):
            live = set(procs.identities)
            self.preallocates = {k: v for k, v in self.preallocates.items() if k in live}
        stamp = rows.timestamp
        context = AnalysisContext(
            timestamp=stamp if math.isfinite(stamp) else None,
            preallocates=self.preallocates,
            kv_cache_usage=self.kv_cache_usage,
            selected=self.selected,
        )
        result = self.analyzer.step(gpus, procs, context)
        self.last_result = result
        self.analyses += 1
        return result

    def tick(self, now: float) -> tuple[float, Out]:
        # Nothing to do on a timer: the work follows the sampler's messages.
        return now + 60.0, []

    def stop(self) -> None:
        self.reader = None
        if self.segment is not None:
            self.segment.close()
            self.segment = None


def _as_rows(message: ProcessRows | SampleMessage) -> ProcessRows:
    if isinstance(message, ProcessRows):
        return message
    return ProcessRows(message.seq, message.snapshot.timestamp, message.rows)
