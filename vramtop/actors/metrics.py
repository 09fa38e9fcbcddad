"""Metrics actor (``vramtop: metrics``): the newest frame -> a Prometheus endpoint.

Where it sits: in ``vramtop exporter`` (``modes/exporter.py``), in place of the render process.
It subscribes to the sampler's rows and snapshot, the analyzer's result and the deep actor's
round (state: the newest wins) and takes the enrichment deltas and the other actors' per-process
state (commands or state, whatever reaches it). It keeps one frame — the newest sample with the
analysis of that same sample where it has arrived — and serves it over HTTP with
prometheus_client: a custom collector builds the ``--once --json`` document of the frame at
scrape time and turns it into metric families (``export/prometheus.py``), so a scrape costs no
NVML call and nothing is computed between scrapes.

The HTTP server runs in prometheus_client's daemon thread; the frame is replaced as one
reference, so the collector never sees half an update.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vramtop.actors.base import ActorContext, Out
from vramtop.analysis.model import AnalysisResult
from vramtop.config import Config
from vramtop.deep import attribution
from vramtop.enrich.model import Enrichment
from vramtop.messages import (
    AnalysisMessage,
    ConfigUpdate,
    DeepProcess,
    DeepStateMessage,
    EnrichmentMessage,
    ProcessIdentity,
    ProcessRows,
    SampleJoiner,
    SampleMessage,
    ScrapeMessage,
    SnapshotMessage,
)
from vramtop.scrape.model import ServerMetrics


@dataclass(frozen=True)
class Frame:
    """What a scrape shows: one sample, the analysis of it (or the newest one), the facts."""

    sample: SampleMessage
    analysis: AnalysisResult | None
    enrichments: dict[ProcessIdentity, Enrichment] = field(default_factory=dict)
    deep: dict[int, DeepProcess] = field(default_factory=dict)  # deep-mode reports by PID
    servers: dict[ProcessIdentity, ServerMetrics] = field(default_factory=dict)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ValueError with the reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen takes HOST:PORT (got {text!r})")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class MetricsCore:
    def __init__(self, listen: str = "127.0.0.1:9400", hostname: str | None = None) -> None:
        self.listen = listen
        self.hostname = hostname or socket.gethostname()
        self.config = Config()
        self.frame: Frame | None = None
        self.done = False
        self._joiner = SampleJoiner()
        self._analyses: dict[int, AnalysisResult] = {}
        self._enrichments: dict[ProcessIdentity, Enrichment] = {}
        self._deep: dict[int, DeepProcess] = {}
        self._servers: dict[ProcessIdentity, ServerMetrics] = {}  # the scraper's newest word
        self._server: Any = None
        self.scrapes = 0

    def start(self, ctx: ActorContext) -> Out:
        from prometheus_client import CollectorRegistry, start_http_server

        self.config = ctx.config
        host, port = parse_listen(self.listen)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)  # type: ignore[arg-type]
        self._server = start_http_server(port, addr=host, registry=registry)
        return []

    def handle(self, batch: Sequence[object], now: float) -> Out:
        changed = False
        for message in batch:
            if isinstance(message, SnapshotMessage | ProcessRows):
                joined = self._joiner.add(message)
                if joined is not None:
                    self._sample = joined
                    changed = True
            elif isinstance(message, SampleMessage):
                self._sample = message
                changed = True
            elif isinstance(message, AnalysisMessage):
                self._analyses[message.seq] = message.result
                for old in [s for s in self._analyses if s < message.seq - 4]:
                    del self._analyses[old]
                changed = True
            elif isinstance(message, EnrichmentMessage):
                # Copy on write: the collector may be reading the dict in its thread.
                fresh = dict(self._enrichments)
                for item in message.items:
                    fresh[item.identity] = item
                self._enrichments = fresh
                changed = True
            elif isinstance(message, DeepStateMessage):
                self._deep = attribution.index(message.processes)  # a new dict: copy on write
                changed = True
            elif isinstance(message, ScrapeMessage):
                self._servers = {i: s for s in message.servers for i in s.processes}
                changed = True
            elif isinstance(message, ConfigUpdate) and not message.error:
                self.config = message.config
        if changed:
            self._publish()
        return []

    def _publish(self) -> None:
        sample: SampleMessage | None = getattr(self, "_sample", None)
        if sample is None:
            return
        analysis = self._analyses.get(sample.seq)
        if analysis is None and self._analyses:
            # The analysis of this sample is not here yet: the newest one still describes
            # the same processes a second earlier, which beats none.
            analysis = self._analyses[max(self._analyses)]
        live = {r.identity for r in sample.rows}
        if len(self._enrichments) > 2 * len(live) + 64:
            self._enrichments = {k: v for k, v in self._enrichments.items() if k in live}
        self.frame = Frame(sample, analysis, self._enrichments, self._deep, self._servers)

    def collect(self) -> list[Any]:
        """prometheus_client's collector protocol: called in the HTTP thread at each scrape."""
        from vramtop.export.document import to_document
        from vramtop.export.prometheus import families

        frame = self.frame
        self.scrapes += 1
        if frame is None:
            return []
        sample = frame.sample
        doc = to_document(
            sample.snapshot,
            sample.rows,
            frame.enrichments,
            frame.analysis,
            servers=frame.servers,
            deep=frame.deep,
        )
        return families(doc, self.hostname, self.config.exporter.max_process_series)

    def tick(self, now: float) -> tuple[float, Out]:
        return now + 60.0, []

    def stop(self) -> None:
        server = self._server
        if isinstance(server, tuple) and server:
            server = server[0]
        shutdown = getattr(server, "shutdown", None)
        if shutdown is not None:
            shutdown()
