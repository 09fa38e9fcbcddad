"""Analyzer actor: shared-memory histories -> :class:`AnalysisMessage` for the render process.

Where it sits: the sampler publishes :class:`ProcessRows` per tick (state: newest wins); for the
newest rows of each batch this core copies a bounded window of the histories out of shared
memory (:func:`vramtop.shm.reader.read_histories`) — the last ``WINDOW`` samples of every GPU,
and of every process in the message only as far back as the analysis looks, as one 2-D block
under the seqlock (one contiguous run of columns per slot, straight from the ring views) — and
hands them to the functional core (:class:`vramtop.analysis.analyzer.Analyzer`). The result goes
to "render" (state) and "exporter" (which writes each sample with the analysis of the same
``seq``). A torn read (the sampler died mid-sample) skips the tick; the render process keeps
showing the previous analysis.

Other inputs: :class:`EnrichmentMessage` (which processes pre-allocate by design),
:class:`ScrapeMessage` (inference servers' KV cache use and queues, for their verdicts),
:class:`ConfigUpdate` (new thresholds), :class:`Selected` (the process selected
in the UI: PELT segments are computed for it alone) and :class:`DeepStateMessage` (deep mode:
PyTorch allocator retries in the last minute make a verdict TIGHT).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from vramtop.actors.base import ActorContext, Out
from vramtop.actors.routes import readers
from vramtop.analysis.analyzer import AnalysisContext, Analyzer
from vramtop.analysis.model import AnalysisResult
from vramtop.analysis.spikes import SPIKE_WINDOW_S
from vramtop.analysis.trend import PhaseParams
from vramtop.config import Config
from vramtop.identity import same_process
from vramtop.messages import (
    AnalysisMessage,
    ConfigUpdate,
    DeepStateMessage,
    EnrichmentMessage,
    ProcessIdentity,
    ProcessRow,
    ProcessRows,
    SampleMessage,
    ScrapeMessage,
    Selected,
)
from vramtop.shm import HistoryReader, ShmSegment, TornReadError, read_histories

WINDOW = 300  # samples per series the analysis looks at, whatever history_length is


def process_window(refresh_rate: float, window: int = WINDOW) -> int:
    """Samples per process the analysis needs: its longest look-back (spikes) at this rate."""
    seconds = max(SPIKE_WINDOW_S * 1.2, PhaseParams().long_window_s * 1.5)
    return int(min(window, math.ceil(seconds / max(refresh_rate, 1e-3)) + 2))


class AnalyzerCore:
    """Message-driven: one analysis per batch that brought new rows, none in between."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.segment: ShmSegment | None = None
        self.reader: HistoryReader | None = None
        self.analyzer = Analyzer(Config())
        self.preallocates: dict[ProcessIdentity, bool] = {}
        self.kv_cache_usage: dict[ProcessIdentity, float | None] = {}
        self.waiting: dict[ProcessIdentity, int | None] = {}
        self.queue_growing: dict[ProcessIdentity, bool] = {}
        self.selected: ProcessIdentity | None = None
        self.deep_retries: dict[int, tuple[ProcessIdentity, int]] = {}  # pid -> retries/minute
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
            elif isinstance(message, ScrapeMessage):
                self.take_servers(message)
            elif isinstance(message, DeepStateMessage):
                self.deep_retries = {
                    p.identity.pid: (p.identity, p.retries_last_minute)
                    for p in message.processes
                    if p.retries_last_minute > 0
                }
        if rows is None:
            return []
        self.latest = rows
        result = self.analyze(rows)
        if result is None:
            return []
        out = AnalysisMessage(rows.seq, result)
        return [(name, out) for name in readers("analysis")]

    def take_servers(self, message: ScrapeMessage) -> None:
        """The scraper's newest figures replace the older ones (by identity)."""
        servers = [(i, s) for s in message.servers if s.read_at for i in s.processes]
        self.kv_cache_usage = {i: s.kv_cache_usage for i, s in servers}
        self.waiting = {i: s.waiting for i, s in servers}
        self.queue_growing = {i: s.queue_growing for i, s in servers}

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
            waiting=self.waiting,
            queue_growing=self.queue_growing,
            selected=self.selected,
            alloc_retries=self._retries_by_row(rows.rows) if self.deep_retries else {},
        )
        result = self.analyzer.step(gpus, procs, context)
        self.last_result = result
        self.analyses += 1
        return result

    def _retries_by_row(self, rows: tuple[ProcessRow, ...]) -> dict[ProcessIdentity, int]:
        """The deep actor's retry counts under the sampler's identities (two readings of one
        process: ``same_process``)."""
        out = {}
        for row in rows:
            hit = self.deep_retries.get(row.identity.pid)
            if hit is not None and same_process(hit[0], row.identity):
                out[row.identity] = hit[1]
        return out

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
