"""Exporter actor: samples + enrichment + analysis -> ``--export-csv`` / ``--json-stream FILE``.

Where it sits: the sampler sends it every tick's :class:`SnapshotMessage` and
:class:`ProcessRows` (joined here into a :class:`SampleMessage`), the enricher sends its
:class:`EnrichmentMessage` deltas, the analyzer the :class:`AnalysisMessage` of each sample and
the deep actor its :class:`DeepStateMessage` (the newest is written beside every sample).
Sample N is written together with the analysis whose ``seq`` is N, so a row's phase and verdict
are those vramtop showed at that instant. The analysis of a sample normally arrives a few
milliseconds after the sample; a sample waits for it at most :attr:`ExporterCore.wait_s` (one
refresh interval), or less when a later sample's analysis shows that this one was skipped; it is
then written with the newest earlier analysis (what the screen showed beside it), at most
:data:`STALE_ANALYSIS_SAMPLES` samples old, else without one. Samples are written in the order
taken, none dropped, each in one append (``export/logfile.py``), so a ``kill -9`` loses at most
the sample still waiting for its analysis. Enrichment is kept by identity (the latest facts
about each process) and dropped for identities that left.

Started by the supervisor only when an export is requested (``modes/monitor.py``); the files are
opened for appending at every start, so a restarted exporter continues them. A full disk pauses
a file (``export.logfile.PausedWrites``): samples are skipped and counted, the status line says
so (a :class:`Notice` to the render process, and a line on stderr, which the supervisor prints
after the terminal is restored) and writing resumes when space returns. Any other write error stops
that file alone, said the same way; the monitor goes on.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vramtop.actors.base import ActorContext, Out
from vramtop.analysis.model import AnalysisResult
from vramtop.deep import attribution
from vramtop.enrich.model import Enrichment
from vramtop.export.csvlog import CsvLog
from vramtop.export.logfile import LogWriteError, PausedWrites
from vramtop.export.ndjson import NdjsonLog
from vramtop.messages import (
    AnalysisMessage,
    ConfigUpdate,
    DeepProcess,
    DeepStateMessage,
    EnrichmentMessage,
    Notice,
    ProcessIdentity,
    ProcessRows,
    SampleJoiner,
    SampleMessage,
    ScrapeMessage,
    SnapshotMessage,
)
from vramtop.scrape.model import ServerMetrics

# A sample whose own analysis never came is written with the newest earlier one (as the screen
# showed it), if that is at most this many samples older; older still, without.
STALE_ANALYSIS_SAMPLES = 3
MAX_PENDING = 64  # samples waiting for their analysis: beyond this the oldest is written now
IDLE_TICK_FRACTION = 0.25  # with nothing pending, look again after this share of an interval


@dataclass(slots=True)
class _Pending:
    message: SampleMessage
    deadline: float  # monotonic time after which it is written without analysis


class ExporterCore:
    def __init__(
        self,
        export_csv: str | None = None,
        export_ndjson: str | None = None,
        wait_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``wait_s``: how long a sample waits for its analysis (default: the refresh
        interval from the config, followed on reload)."""
        self.export_csv = export_csv
        self.export_ndjson = export_ndjson
        self.fixed_wait = wait_s
        self.wait_s = 1.0 if wait_s is None else wait_s
        self.clock = clock
        self.logs: list[CsvLog | NdjsonLog] = []
        self.pauses: dict[str, PausedWrites] = {}  # by path
        self.out: Out = []  # notices to send with the next return
        self.pending: deque[_Pending] = deque()
        self.results: dict[int, AnalysisResult] = {}
        self.newest_result = -1  # highest seq an analysis arrived for
        self._shown: tuple[int, AnalysisResult] | None = None  # the last analysis written
        self.enrichments: dict[ProcessIdentity, Enrichment] = {}
        self.servers: dict[ProcessIdentity, ServerMetrics] = {}  # the scraper's newest word
        self.deep: dict[int, DeepProcess] = {}  # the deep actor's newest round, by PID
        self.written = 0
        self._joiner = SampleJoiner()
        self.with_analysis = 0  # samples written with their analysis (for tests, diagnostics)
        self.done = False

    def start(self, ctx: ActorContext) -> Out:
        self._configure(ctx.config.general.refresh_rate)
        if self.export_csv is not None:
            self.logs.append(CsvLog(self.export_csv))
        if self.export_ndjson is not None:
            self.logs.append(NdjsonLog(self.export_ndjson))
        self.pauses = {log.log.path: PausedWrites(log.log.path) for log in self.logs}
        return []

    def _configure(self, refresh_rate: float) -> None:
        if self.fixed_wait is None:
            self.wait_s = refresh_rate

    def handle(self, batch: Sequence[object], now: float) -> Out:
        for message in batch:
            self._take(message)
        self.flush(self.clock())
        return self._sent()

    def _sent(self) -> Out:
        out, self.out = self.out, []
        return out

    def _notice(self, path: str, text: str, level: str = "warn", said: str = "") -> None:
        if said:
            # An actor's stderr goes to the supervisor, which prints it after the terminal is
            # restored: the user finds the pause and the resume there too.
            print(f"vramtop: {said}", file=sys.stderr, flush=True)
        self.out.append(("render", Notice(f"export {path}", text, level, said)))

    def _take(self, message: object) -> None:
        if isinstance(message, SnapshotMessage | ProcessRows):
            message = self._joiner.add(message)
        if isinstance(message, SampleMessage):
            self.pending.append(_Pending(message, self.clock() + self.wait_s))
            while len(self.pending) > MAX_PENDING:
                self._write(self.pending.popleft())
        elif isinstance(message, AnalysisMessage):
            if not self.pending or message.seq >= self.pending[0].message.seq:
                self.results[message.seq] = message.result
                self.newest_result = max(self.newest_result, message.seq)
        elif isinstance(message, EnrichmentMessage):
            for item in message.items:
                self.enrichments[item.identity] = item
        elif isinstance(message, ScrapeMessage):
            self.servers = {i: s for s in message.servers for i in s.processes}
        elif isinstance(message, DeepStateMessage):
            self.deep = attribution.index(message.processes)
        elif isinstance(message, ConfigUpdate) and not message.error:
            self._configure(message.config.general.refresh_rate)

    def flush(self, now: float, everything: bool = False) -> None:
        """Write every pending sample that is ready, oldest first, stopping at the first that
        may still get its analysis (order is never changed)."""
        while self.pending:
            head = self.pending[0]
            seq = head.message.seq
            ready = (
                everything
                or seq in self.results
                or self.newest_result > seq  # the analyzer went past it: skipped
                or now >= head.deadline
            )
            if not ready:
                break
            self._write(self.pending.popleft())

    def _write(self, item: _Pending) -> None:
        message = item.message
        result = self.results.pop(message.seq, None)
        if result is None and self._shown is not None:
            # The analyzer skipped this sample (busy: its input is newest-wins) or is late.
            # The newest earlier analysis is what the screen showed beside it at that moment.
            seq, shown = self._shown
            if message.seq - seq <= STALE_ANALYSIS_SAMPLES:
                result = shown
        elif result is not None:
            self._shown = (message.seq, result)
        # Results for samples already written can no longer be used.
        for seq in [s for s in self.results if s < message.seq]:
            del self.results[seq]
        self._forget_departed(message)
        for log in list(self.logs):
            path = log.log.path
            pause = self.pauses[path]
            try:
                said = pause.write(
                    log.write,
                    message.snapshot,
                    message.rows,
                    enrichments=self.enrichments,
                    analysis=result,
                    servers=self.servers,
                    deep=self.deep,
                )
            except LogWriteError as exc:
                # Not a full disk (an I/O error, a device gone): this file stops, the rest goes on.
                log.close()
                self.logs.remove(log)
                line = f"recording stopped: {exc}"
                self._notice(path, line, "crit", line)
                continue
            if pause.paused:
                self._notice(path, pause.status(), "warn", said)
            elif said:
                self._notice(path, "", said=said)  # resumed: the standing line goes
        self.written += 1
        self.with_analysis += result is not None

    def _forget_departed(self, message: SampleMessage) -> None:
        """Drop enrichment of processes in neither this sample nor one still waiting (an
        enrichment may arrive before the sample that first shows its process is written)."""
        if len(self.enrichments) <= 2 * len(message.rows) + 16:
            return
        live = {r.identity for r in message.rows}
        for item in self.pending:
            live.update(r.identity for r in item.message.rows)
        self.enrichments = {k: v for k, v in self.enrichments.items() if k in live}

    def tick(self, now: float) -> tuple[float, Out]:
        self.flush(now)
        if self.pending:
            return max(now, self.pending[0].deadline), self._sent()
        return now + max(0.05, self.wait_s * IDLE_TICK_FRACTION), self._sent()

    def stop(self) -> None:
        # Stopping (quit, SIGTERM, restart): nothing taken is left unwritten.
        self.flush(self.clock(), everything=True)
        for log in self.logs:
            log.close()
        self.logs = []
