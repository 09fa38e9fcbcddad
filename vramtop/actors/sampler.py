"""Sampler actor: the backend (NVML or simulated) -> shm rings + the tick's messages to readers.

It is the only writer of the shared-memory history (design principle 2). Each tick it takes one
snapshot, resolves process identities (``procinfo``), writes the rings and sends each reader the
messages shaped for it: :class:`ProcessRows` (identities and slots) to every reader, and
:class:`SnapshotMessage` (the numbers) to the render process and the exporter, which join the
two (``messages.SampleJoiner``); the analyzer and enricher read the numbers from shared memory.
Each is pickled once for all its readers, and both are state: a slow reader gets the newest.
Files (``--export-csv``, ``--json-stream FILE``) are written by the exporter actor
(``actors/exporter.py``), which joins each sample with its analysis.

Two optional backend methods change that (both found with ``getattr``; see ``gpu/replay.py``):
``rows_for(snapshot)`` supplies the process rows (identities, users and commands recorded in a
file rather than read from /proc) and ``next_due(now)`` the wall time of the next tick (a replay
keeps the recording's cadence).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from vramtop.actors.base import ActorContext, Out
from vramtop.actors.routes import readers
from vramtop.enrich.procinfo import ProcessTable, build_rows
from vramtop.gpu.backend import GpuBackend
from vramtop.gpu.factory import BackendSpec, make_backend
from vramtop.messages import (
    AnalysisMessage,
    ConfigUpdate,
    ProcessRow,
    ProcessRows,
    SnapshotMessage,
)
from vramtop.shm import HistoryWriter, ShmSegment


class SamplerCore:
    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self.backend: GpuBackend | None = None
        self.table = ProcessTable()
        self.segment: ShmSegment | None = None
        self.writer: HistoryWriter | None = None
        self.interval = 1.0
        self.done = False

    def start(self, ctx: ActorContext) -> Out:
        self.interval = ctx.config.general.refresh_rate
        self.segment = ShmSegment.attach(ctx.shm_name)
        self.writer = HistoryWriter(self.segment)
        self.backend = make_backend(self.spec)
        self.backend.open()
        return []

    def handle(self, batch: Sequence[object], now: float) -> Out:
        for message in batch:
            if isinstance(message, ConfigUpdate) and not message.error:
                self.interval = message.config.general.refresh_rate
        return []

    def tick(self, now: float) -> tuple[float, Out]:
        assert self.backend is not None and self.writer is not None
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
        seq = self.writer.count
        numbers = SnapshotMessage(seq, snapshot)
        identities = ProcessRows(seq, snapshot.timestamp, rows)
        out: Out = [(name, identities) for name in readers("rows")]
        out += [(name, numbers) for name in readers("snapshot")]
        analysis_for = getattr(self.backend, "analysis_for", None)
        if analysis_for is not None and (result := analysis_for(snapshot)) is not None:
            # The fleet view: each node analysed its own GPUs; that is what is shown.
            judged = AnalysisMessage(seq, result)
            out += [(name, judged) for name in readers("analysis")]
        next_due = getattr(self.backend, "next_due", None)
        if next_due is not None:
            wall = time.time()
            due: float = next_due(wall)
            return now + max(0.0, due - wall), out
        # Steady cadence: the next tick is due one interval after this one began.
        return now + self.interval, out

    def stop(self) -> None:
        if self.backend is not None:
            self.backend.close()
        if self.segment is not None:
            self.segment.close()
