"""Analyzer actor: shared-memory histories -> :class:`AnalysisMessage` for the render process.

Where it sits: the sampler posts a :class:`SampleMessage` per tick (newest wins); for each one
this shell copies a bounded window of the histories out of shared memory
(:func:`vramtop.shm.reader.read_histories`) — the last ``WINDOW``
samples of every GPU, and of every process in the message only as far back as the analysis
looks, as one 2-D block under the seqlock (one contiguous run of columns per slot, straight from
the ring views) — and hands them to the functional core
(:class:`vramtop.analysis.analyzer.Analyzer`). The result goes to the "render" mailbox. A torn
read (the sampler died mid-sample) skips the tick; the render process keeps showing the previous
analysis.

Other inputs: :class:`EnrichmentMessage` (which processes pre-allocate by design),
:class:`ConfigUpdate` (new thresholds), and :class:`Selected` (the process selected
in the UI: PELT segments are computed for it alone).
"""

from __future__ import annotations

import math

from vramtop.actors.base import ActorContext
from vramtop.analysis.analyzer import AnalysisContext, Analyzer
from vramtop.analysis.model import AnalysisResult
from vramtop.analysis.spikes import SPIKE_WINDOW_S
from vramtop.analysis.trend import PhaseParams
from vramtop.config import Config
from vramtop.messages import (
    AnalysisMessage,
    ConfigUpdate,
    EnrichmentMessage,
    ProcessIdentity,
    SampleMessage,
    Selected,
)
from vramtop.shm import HistoryReader, ShmSegment, TornReadError, read_histories

WINDOW = 300  # samples per series the analysis looks at, whatever history_length is


def process_window(refresh_rate: float, window: int = WINDOW) -> int:
    """Samples per process the analysis needs: its longest look-back (spikes) at this rate."""
    seconds = max(SPIKE_WINDOW_S * 1.2, PhaseParams().long_window_s * 1.5)
    return int(min(window, math.ceil(seconds / max(refresh_rate, 1e-3)) + 2))


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
        elif isinstance(message, Selected):
            self.selected = message.identity

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
        # Hints for processes that are gone are dropped, so the maps stay bounded.
        if len(self.preallocates) > 4 * max(len(procs.identities), 256):
            live = set(procs.identities)
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
            self.ctx.broadcast(("render", "exporter"), AnalysisMessage(message.seq, result))
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
