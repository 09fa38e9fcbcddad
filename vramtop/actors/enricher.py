"""Enricher actor: the sampler's process rows -> /proc enrichment -> render and analyzer.

Message-driven: the newest :class:`ProcessRows` of each batch runs :meth:`Enricher.update`
(``enrich/enricher.py``), and when something is new or changed it posts one
``EnrichmentMessage(items, notes)`` to the :data:`RECEIVERS`. Items are deltas (commands: never
dropped); receivers keep a dict by identity and drop identities that leave the sample's rows. A
receiver may be restarted with an empty dict, so every :data:`RESYNC_SECONDS` the whole current
set is sent again."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from vramtop.actors.base import ActorContext, Out
from vramtop.enrich.enricher import Enricher
from vramtop.messages import EnrichmentMessage, ProcessRows, SampleMessage

RECEIVERS = ("render", "analyzer", "exporter", "scraper", "metrics")
RESYNC_SECONDS = 10.0
IDLE_TICK_SECONDS = 60.0


class EnricherCore:
    def __init__(
        self, enricher: Enricher | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.enricher = enricher
        self.clock = clock
        self.done = False
        self.notes: tuple[str, ...] = ()
        self._last_full = float("-inf")

    def start(self, ctx: ActorContext) -> Out:
        if self.enricher is None:
            self.enricher = Enricher()
        return []

    def handle(self, batch: Sequence[object], now: float) -> Out:
        latest = [m for m in batch if isinstance(m, ProcessRows | SampleMessage)]
        if not latest:
            return []
        out = self.step(latest[-1])
        return [] if out is None else [(name, out) for name in RECEIVERS]

    def step(self, message: ProcessRows | SampleMessage) -> EnrichmentMessage | None:
        """The message to send for one sample, or None when nothing changed."""
        if self.enricher is None:
            self.enricher = Enricher()
        items = self.enricher.update(message.rows)
        note = self.enricher.namespace_note(r.identity.pid for r in message.rows)
        notes = (note,) if note else ()
        now = self.clock()
        if now - self._last_full >= RESYNC_SECONDS:
            self._last_full = now
            self.notes = notes
            return EnrichmentMessage(tuple(self.enricher.known.values()), notes)
        if not items and notes == self.notes:
            return None
        self.notes = notes
        return EnrichmentMessage(tuple(items), notes)

    def tick(self, now: float) -> tuple[float, Out]:
        return now + IDLE_TICK_SECONDS, []

    def stop(self) -> None:
        pass
