"""Sampler actor: the backend (NVML or simulated) -> shm rings + ``SampleMessage`` to readers.

It is the only writer of the shared-memory history (design principle 2). Each tick it takes one
snapshot, resolves process identities (``procinfo``), writes the rings and posts the snapshot with
the slot of every process to the :data:`READERS` that run (pickled once for all of them; newest
wins when a reader is slow). Files (``--export-csv``, ``--json-stream FILE``) are written by the
exporter actor (``actors/exporter.py``), which joins each sample with its analysis.

Two optional backend methods change that (both found with ``getattr``; see ``gpu/replay.py``):
``rows_for(snapshot)`` supplies the process rows (identities, users and commands recorded in a
file rather than read from /proc) and ``next_due(now)`` the wall time of the next tick (a replay
keeps the recording's cadence).
"""

from __future__ import annotations

import time
from dataclasses import replace

from vramtop.actors.base import ActorContext
from vramtop.enrich.procinfo import ProcessTable, build_rows
from vramtop.gpu.backend import GpuBackend
from vramtop.gpu.factory import BackendSpec, make_backend
from vramtop.messages import ConfigUpdate, ProcessRow, SampleMessage
from vramtop.shm import HistoryWriter, ShmSegment

READERS = ("render", "analyzer", "enricher", "exporter")


class SamplerCore:
    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self.backend: GpuBackend | None = None
        self.table = ProcessTable()
        self.segment: ShmSegment | None = None
        self.writer: HistoryWriter | None = None
        self.ctx: ActorContext | None = None
        self.interval = 1.0
        self.done = False

    def start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        self.interval = ctx.config.general.refresh_rate
        self.segment = ShmSegment.attach(ctx.shm_name)
        self.writer = HistoryWriter(self.segment)
        self.backend = make_backend(self.spec)
        self.backend.open()

    def handle(self, message: object) -> None:
        if isinstance(message, ConfigUpdate) and not message.error:
            self.interval = message.config.general.refresh_rate

    def tick(self, now: float) -> float:
        assert self.backend is not None and self.writer is not None and self.ctx is not None
        snapshot = self.backend.sample()
        rows_for = getattr(self.backend, "rows_for", None)
        recorded: tuple[ProcessRow, ...] | None = rows_for(snapshot) if rows_for else None
        if recorded is None:
            facts = self.table.update(p.pid for p in snapshot.processes)
            start_times = {pid: f.identity.start_time for pid, f in facts.items()}
            slots = self.writer.write(snapshot, start_times)
            rows = build_rows(snapshot, facts, slots)
        else:
            start_times = {r.identity.pid: r.identity.start_time for r in recorded}
            slots = self.writer.write(snapshot, start_times)
            rows = tuple(
                replace(r, slot=slots.get((r.identity.pid, r.gpu_index), -1)) for r in recorded
            )
        message = SampleMessage(self.writer.count, snapshot, rows)
        self.ctx.broadcast(READERS, message)
        next_due = getattr(self.backend, "next_due", None)
        if next_due is not None:
            wall = time.time()
            due: float = next_due(wall)
            return now + max(0.0, due - wall)
        # Steady cadence: the next tick is due one interval after this one began.
        return now + self.interval

    def fds(self) -> list[int]:
        return []

    def on_fd(self, fd: int) -> None:
        pass

    def stop(self) -> None:
        if self.backend is not None:
            self.backend.close()
        if self.segment is not None:
            self.segment.close()
