"""The headless recorder: ``vramtop record FILE`` and ``vramtop --json-stream`` (no UI).

Data flow: backend (NVML, simulated or a replay) -> one ``Snapshot`` every ``interval`` seconds
-> process rows (``enrich.procinfo``, or the backend's own ``rows_for``) -> the enricher's core
(``enrich.enricher.Enricher``: framework, container, model files), the scraper's core (inference
servers' KV cache and queues, each server read at most once per ``rate_limit_seconds``) and the
analyzer's core over
in-memory history windows (``analysis.stream.StreamAnalyzer``: phase, rate, verdict, OOM ETA)
and deep-mode reporters' figures (``deep.core.DeepCore.poll``, a quarter interval at most)
-> ``export.csvlog.CsvLog`` or ``export.ndjson.NdjsonLog`` -> the file (or stdout). One
process, no shared memory, no terminal: made for ``nohup``, systemd units and tmux panes. A
recording being re-recorded (a replay backend) is analysed but not enriched: its PIDs are not
this machine's processes. :func:`run_record` is the mode (``cli.py`` calls it); :func:`record`
is its loop, which tests drive with a backend of their own.

Every sample is one whole write, so the file is complete up to the last sample whatever stops
the recorder. A full disk pauses the recording (``export.logfile.PausedWrites``): sampling goes
on, skipped samples are counted and said on stderr, and writing resumes when space returns; any
other write error ends it with one line and exit 1. SIGINT and SIGTERM end it after the sample
being written; SIGHUP is ignored (the terminal going away is no reason to stop a recording).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Mapping
from types import FrameType

from vramtop.analysis.stream import StreamAnalyzer
from vramtop.config import Config
from vramtop.deep.attribution import index
from vramtop.deep.core import DeepCore
from vramtop.enrich.enricher import Enricher
from vramtop.enrich.model import Enrichment
from vramtop.enrich.procinfo import ProcessTable, build_rows
from vramtop.export.csvlog import CsvLog
from vramtop.export.logfile import LogFileError, LogWriteError, PausedWrites
from vramtop.export.ndjson import NdjsonLog
from vramtop.gpu.backend import GpuBackend
from vramtop.gpu.factory import BackendSpec
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import EnrichmentMessage, ProcessIdentity, ProcessRow, ProcessRows
from vramtop.modes.exits import EXIT_GPU, EXIT_OK, EXIT_USAGE, fail, open_backend
from vramtop.scrape.core import ScraperCore
from vramtop.scrape.model import ServerMetrics

FORMATS = ("csv", "ndjson")


def format_for(path: str, requested: str | None) -> str:
    """``--format`` when given, else by extension: .ndjson/.jsonl/.json -> ndjson, else csv."""
    if requested is not None:
        return requested
    return "ndjson" if path.lower().endswith((".ndjson", ".jsonl", ".json")) else "csv"


def open_log(path: str, fmt: str) -> CsvLog | NdjsonLog:
    """Raises :class:`~vramtop.export.logfile.LogFileError` (one line) for an unusable file."""
    return CsvLog(path) if fmt == "csv" else NdjsonLog(path)


def check_log(path: str, fmt: str) -> str:
    """Refuse a file that is not ours before anything starts (it is then left untouched): the
    reason in one line, or "" when ``path`` can be written (continued) as ``fmt``."""
    try:
        open_log(path, fmt).close()
    except LogFileError as exc:
        return str(exc)
    return ""


def run_record(
    spec: BackendSpec, path: str, fmt: str, config: Config, count: int | None = None
) -> int:
    """The headless recorder: backend -> one whole sample per interval, with the enricher's
    and analyzer's results for it."""
    backend = open_backend(spec)
    if backend is None:
        return EXIT_GPU
    try:
        try:
            log = open_log(path, fmt)
        except LogFileError as exc:
            return fail(str(exc), EXIT_USAGE)
        where = "stdout" if path == "-" else path
        interval = config.general.refresh_rate
        print(
            f"vramtop: recording to {where} ({fmt}) every {interval:g} s; Ctrl-C or SIGTERM stops",
            file=sys.stderr,
            flush=True,
        )
        pause = PausedWrites(path)
        try:
            written = record(backend, log, interval, max_samples=count, config=config, pause=pause)
        except LogWriteError as exc:
            return fail(f"{exc}; recording stopped", EXIT_GPU)
        finally:
            log.close()
    finally:
        backend.close()
    lost = f", {pause.lost} skipped (no space)" if pause.lost else ""
    print(f"vramtop: {written} samples written to {where}{lost}", file=sys.stderr)
    return EXIT_OK


class _Stopper:
    """SIGINT/SIGTERM -> a flag plus a wake-up byte, so the wait between samples ends at once
    and the sample being written is never cut short."""

    def __init__(self) -> None:
        self.stop = False
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self._old: dict[int, object] = {}

    def __enter__(self) -> _Stopper:
        for signo in (signal.SIGINT, signal.SIGTERM):
            self._old[signo] = signal.signal(signo, self._on_signal)
        self._old[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return self

    def __exit__(self, *_: object) -> None:
        for signo, handler in self._old.items():
            signal.signal(signo, handler)  # type: ignore[arg-type]
        os.close(self._r)
        os.close(self._w)

    def _on_signal(self, _signo: int, _frame: FrameType | None) -> None:
        self.stop = True
        with contextlib.suppress(OSError):
            os.write(self._w, b"x")

    def wait(self, seconds: float) -> None:
        if seconds > 0 and not self.stop:
            with contextlib.suppress(InterruptedError):
                select.select([self._r], [], [], seconds)


def record(
    backend: GpuBackend,
    log: CsvLog | NdjsonLog,
    interval: float,
    max_samples: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    config: Config | None = None,
    enricher: Enricher | None = None,
    pause: PausedWrites | None = None,
) -> int:
    """Sample ``backend`` into ``log`` until a signal (or ``max_samples`` taken); returns how
    many samples were written. ``backend`` must be open; both are left for the caller to close.
    ``config`` gives the analysis thresholds and history length (default: the defaults).
    ``pause`` carries a full disk (samples skipped, said on stderr); other write errors raise
    :class:`~vramtop.export.logfile.LogWriteError`."""
    pause = pause or PausedWrites(log.log.path)
    table = ProcessTable()
    rows_for = getattr(backend, "rows_for", None)
    next_due = getattr(backend, "next_due", None)
    if rows_for is None and enricher is None:
        enricher = Enricher()
    config = config or Config()
    analyzer = StreamAnalyzer(config)
    # A recording being re-recorded has no live servers to ask; with scraping off, none is.
    scraper = ScraperCore(config) if rows_for is None and config.scraping.enable else None
    # Deep mode: reporters of this machine's processes (not a replay's), read once a sample.
    deep = DeepCore(interval_s=interval) if rows_for is None else None
    written = taken = 0
    with _Stopper() as stopper, contextlib.ExitStack() as cleanup:
        if deep is not None:
            cleanup.callback(deep.stop)
        due = clock()
        while not stopper.stop and (max_samples is None or taken < max_samples):
            snapshot = backend.sample()
            rows: tuple[ProcessRow, ...] | None = rows_for(snapshot) if rows_for else None
            if rows is None:
                facts = table.update(p.pid for p in snapshot.processes)
                rows = build_rows(snapshot, facts, {})
            enrichments = {}
            if enricher is not None and rows_for is None:
                enricher.update(rows)
                enrichments = dict(enricher.known)
            servers = _scrape(scraper, snapshot, rows, enrichments, clock())
            prealloc = {k: e.preallocates for k, e in enrichments.items()}
            analysis = analyzer.step(snapshot, rows, prealloc, servers)
            reports = index(deep.poll(min(0.25, interval / 4))) if deep is not None else {}
            said = pause.write(
                log.write,
                snapshot,
                rows,
                enrichments=enrichments,
                analysis=analysis,
                servers=servers,
                deep=reports,
            )
            if said:
                print(f"vramtop: {said}", file=sys.stderr, flush=True)
            taken += 1
            written += not pause.paused
            if getattr(backend, "finished", False):
                break  # a replay being re-recorded: nothing more will come
            if next_due is not None:
                wall = time.time()
                stopper.wait(next_due(wall) - wall)
                continue
            # Steady cadence; after a stall (suspend, slow driver) start afresh, no burst.
            due += interval
            now = clock()
            if due < now:
                due = now
            stopper.wait(due - now)
    return written


def _scrape(
    scraper: ScraperCore | None,
    snapshot: Snapshot,
    rows: tuple[ProcessRow, ...],
    enrichments: Mapping[ProcessIdentity, Enrichment],
    now: float,
) -> dict[ProcessIdentity, ServerMetrics]:
    """The scraper's newest figures by GPU process (a round only when one is due)."""
    if scraper is None:
        return {}
    batch = [
        ProcessRows(0, snapshot.timestamp, rows),
        EnrichmentMessage(tuple(enrichments.values())),
    ]
    scraper.handle(batch, now)
    scraper.tick(now)
    last = scraper.last
    return {} if last is None else {i: s for s in last.servers for i in s.processes}
