"""Analyzer actor: shared-memory histories -> :class:`AnalysisMessage` for the render process.

Where it sits: the sampler posts a :class:`SampleMessage` per tick (newest wins); for each one
this shell copies a bounded window of the histories out of shared memory — the last ``WINDOW``
samples of every GPU, and of every process in the message only as far back as the analysis
looks, as one 2-D block under the seqlock — and hands them to the functional core
(:class:`vramtop.analysis.analyzer.Analyzer`). The result goes to the "render" mailbox. A torn
read (the sampler died mid-sample) skips the tick; the render process keeps showing the previous
analysis.

Other inputs: :class:`EnrichmentMessage` (which processes pre-allocate by design),
:class:`ConfigUpdate` (new thresholds), and a bare :class:`ProcessIdentity` (the process selected
in the UI: PELT segments are computed for it alone).
"""

from __future__ import annotations

import math

import numpy as np

from vramtop.actors.base import ActorContext
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
    SampleMessage,
)
from vramtop.shm import FIELD_INDEX, HistoryReader, ShmSegment, TornReadError

WINDOW = 300  # samples per series the analysis looks at, whatever history_length is
_READ_ATTEMPTS = 3
_USED, _TOTAL, _FREE, _TEMP = (FIELD_INDEX[k] for k in ("used", "total", "free", "temperature"))


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

    Raises :class:`TornReadError` when no consistent copy could be taken.
    """
    pw = window if proc_window is None else max(1, min(proc_window, window))
    for _ in range(_READ_ATTEMPTS):
        views = reader.views()
        count, h = views.count, views.history_length
        m = max(0, min(window, count, h))
        idx = np.arange(count - m, count, dtype=np.intp) % max(h, 1)
        ts = views.timestamps[idx].copy()
        gpu = views.gpu[:, idx, :].copy()
        usable = [r for r in rows if 0 <= r.slot < reader.process_slots]
        slots = np.asarray([r.slot for r in usable], dtype=np.intp)
        pidx = idx[max(0, m - pw) :]
        used = views.process[slots[:, None], pidx[None, :]] if slots.size else np.zeros((0, 0))
        pid = views.slot_pid[slots].copy()
        start_time = views.slot_start_time[slots].copy()
        first = views.slot_first[slots].copy()
        last = views.slot_last[slots].copy()
        if reader.stable(views.seq):
            break
    else:
        raise TornReadError("analyzer: the histories kept changing while being copied")

    # Samples outside the current occupant's life belong to someone else: n/a.
    mp = min(m, pw)
    sample_no = np.arange(count - mp, count, dtype=np.int64)
    alive = (sample_no[None, :] >= first[:, None]) & (sample_no[None, :] <= last[:, None])
    used = np.where(alive, used, np.nan)
    full = np.full((len(rows), mp), np.nan)
    gpu_index = np.asarray([r.gpu_index for r in rows], dtype=np.int64).reshape(-1)
    by_row = {id(r): i for i, r in enumerate(usable)}
    for i, r in enumerate(rows):
        j = by_row.get(id(r))
        # A slot handed to another process since the message was built: its data is not ours.
        same = j is not None and pid[j] == r.identity.pid
        if same and start_time[j] in (r.identity.start_time, 0.0) and j is not None:
            full[i] = used[j]
    procs = ProcessHistories(ts[m - mp :], full, tuple(r.identity for r in rows), gpu_index)

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


class AnalyzerCore:
    """Message-driven: one analysis per sample message, none in between."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.ctx: ActorContext | None = None
        self.segment: ShmSegment | None = None
        self.reader: HistoryReader | None = None
        self.analyzer = Analyzer(Config())
        self.preallocates: dict[ProcessIdentity, bool] = {}
        self.kv_cache_usage: dict[ProcessIdentity, float | None] = {}
        self.selected: ProcessIdentity | None = None
        self.latest: SampleMessage | None = None
        self.last_result: AnalysisResult | None = None
        self.skipped = 0  # ticks skipped on torn reads, for diagnostics
        self.done = False

    def start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self.analyzer.configure(ctx.config)
        self.segment = ShmSegment.attach(ctx.shm_name)
        self.reader = HistoryReader(self.segment)

    def handle(self, message: object) -> None:
        if isinstance(message, SampleMessage):
            self.latest = message
            self.analyze(message)
        elif isinstance(message, EnrichmentMessage):
            for item in message.items:
                self.preallocates[item.identity] = item.preallocates
        elif isinstance(message, ConfigUpdate):
            if not message.error:
                self.analyzer.configure(message.config)
        elif isinstance(message, ProcessIdentity):
            self.selected = message

    def analyze(self, message: SampleMessage) -> AnalysisResult | None:
        """Read, analyse, post; None when the read was torn (the tick is skipped)."""
        if self.reader is None:
            return None
        try:
            pw = process_window(self.analyzer.config.general.refresh_rate, self.window)
            gpus, procs = read_histories(self.reader, message.rows, self.window, pw)
        except TornReadError:
            self.skipped += 1
            return None
        live = set(procs.identities)
        # Hints for processes that are gone are dropped, so the maps stay bounded.
        if len(self.preallocates) > 4 * max(len(live), 256):
            self.preallocates = {k: v for k, v in self.preallocates.items() if k in live}
        stamp = message.snapshot.timestamp
        context = AnalysisContext(
            timestamp=stamp if math.isfinite(stamp) else None,
            preallocates=self.preallocates,
            kv_cache_usage=self.kv_cache_usage,
            selected=self.selected,
        )
        result = self.analyzer.step(gpus, procs, context)
        self.last_result = result
        if self.ctx is not None:
            self.ctx.send("render", AnalysisMessage(message.seq, result))
        return result

    def tick(self, now: float) -> float:
        # Nothing to do on a timer: the work follows the sampler's messages.
        return now + 1.0

    def fds(self) -> list[int]:
        return []

    def on_fd(self, fd: int) -> None:
        pass

    def stop(self) -> None:
        self.reader = None
        if self.segment is not None:
            self.segment.close()
            self.segment = None
