"""Enricher actor: the sampler's process rows -> /proc enrichment -> render and analyzer.

Message-driven: each ``SampleMessage`` runs :meth:`Enricher.update` (``enrich/enricher.py``), and
when something is new or changed it posts one ``EnrichmentMessage(items, notes)`` to the
"render" and "analyzer" mailboxes. Items are deltas; receivers keep a dict by identity and drop
identities that leave the sample's rows. Mailboxes are lossy and a receiver may be restarted with
an empty dict, so every :data:`RESYNC_SECONDS` the whole current set is sent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vramtop.actors.base import ActorContext
from vramtop.enrich.enricher import Enricher
from vramtop.messages import EnrichmentMessage, SampleMessage

RECEIVERS = ("render", "analyzer", "exporter")
RESYNC_SECONDS = 10.0
IDLE_TICK_SECONDS = 60.0


class EnricherCore:
    def __init__(
        self, enricher: Enricher | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.enricher = enricher
        self.clock = clock
        self.ctx: ActorContext | None = None
        self.done = False
        self.notes: tuple[str, ...] = ()
        self._last_full = float("-inf")

    def start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        if self.enricher is None:
            self.enricher = Enricher()

    def handle(self, message: object) -> None:
        if isinstance(message, SampleMessage):
            out = self.step(message)
            if out is not None and self.ctx is not None:
                for name in RECEIVERS:
                    self.ctx.send(name, out)

    def step(self, message: SampleMessage) -> EnrichmentMessage | None:
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

    def tick(self, now: float) -> float:
        return now + IDLE_TICK_SECONDS

    def fds(self) -> list[int]:
        return []

    def on_fd(self, fd: int) -> None:
        pass

    def stop(self) -> None:
        pass
