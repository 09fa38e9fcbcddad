"""The render process's picture of the world: the newest sample joined with what the enricher and
the analyzer said, as one :class:`ProcView` per table row.

Where it sits: ``SampleMessage`` / ``EnrichmentMessage`` / ``AnalysisMessage`` /
``DeepStateMessage`` -> :class:`Knowledge`
-> :func:`build_views` (filter, sort, tree) -> ``table.py`` and ``detail.py``. Everything is keyed
by process identity (pid, start time), so a reused PID never inherits an older process's facts.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vramtop.analysis.model import AnalysisResult, GpuAnalysis, ProcessAnalysis
from vramtop.deep import attribution
from vramtop.enrich.model import Enrichment
from vramtop.gpu.snapshot import GpuSample, ProcessSample
from vramtop.identity import same_process
from vramtop.messages import (
    DeepProcess,
    DeepStateMessage,
    ProcessIdentity,
    ProcessRow,
    SampleMessage,
)
from vramtop.scrape.model import ServerMetrics

RowKey = tuple[int, float, int]  # (pid, start time, gpu index): one row per process per GPU


def row_key(row: ProcessRow) -> RowKey:
    return (row.identity.pid, row.identity.start_time, row.gpu_index)


@dataclass
class Knowledge:
    """What arrived from the other actors, kept until the process leaves the GPUs."""

    enrichment: dict[ProcessIdentity, Enrichment] = field(default_factory=dict)
    processes: dict[tuple[ProcessIdentity, int], ProcessAnalysis] = field(default_factory=dict)
    gpus: dict[int, GpuAnalysis] = field(default_factory=dict)
    analysis_at: float = 0.0  # time.monotonic() of the last AnalysisMessage, 0 = never
    enrichment_at: float = 0.0
    enrich_notes: tuple[str, ...] = ()
    parents: dict[ProcessIdentity, tuple[int, str]] = field(default_factory=dict)
    # Deep mode, by PID (the start time is checked on lookup): the whole state of the last round.
    deep: dict[int, DeepProcess] = field(default_factory=dict)
    deep_notes: tuple[str, ...] = ()
    deep_at: float = 0.0  # time.monotonic() of the last DeepStateMessage, 0 = never
    servers: dict[ProcessIdentity, ServerMetrics] = field(default_factory=dict)
    scrape_at: float = 0.0  # time.monotonic() of the last ScrapeMessage, 0 = never

    def set_servers(self, servers: Iterable[ServerMetrics]) -> None:
        """The scraper's newest word replaces the older one (a server that went away is gone)."""
        self.servers = {ident: s for s in servers for ident in s.processes}
        self.scrape_at = time.monotonic()

    def add_enrichment(self, items: Iterable[Enrichment], notes: Iterable[str] = ()) -> None:
        for item in items:
            self.enrichment[item.identity] = item
        self.enrich_notes = tuple(notes)
        self.enrichment_at = time.monotonic()

    def set_analysis(self, result: AnalysisResult) -> None:
        self.processes = {(p.identity, p.gpu_index): p for p in result.processes}
        self.gpus = {g.gpu_index: g for g in result.gpus}
        self.analysis_at = time.monotonic()

    def set_deep(self, message: DeepStateMessage) -> None:
        self.deep = attribution.index(message.processes)
        self.deep_notes = message.notes
        self.deep_at = time.monotonic()

    def deep_of(self, identity: ProcessIdentity) -> DeepProcess | None:
        """The deep-mode report of exactly this process (a reused PID gets nothing)."""
        return attribution.lookup(self.deep, identity)

    def forget_except(self, alive: set[ProcessIdentity]) -> None:
        """Drop facts about processes no longer on any GPU (memory stays bounded)."""
        for store in (self.enrichment, self.parents, self.servers):
            for ident in [i for i in store if i not in alive]:
                del store[ident]
        if self.deep:
            pids = {i.pid for i in alive}
            self.deep = {pid: p for pid, p in self.deep.items() if pid in pids}

    def parent_of(self, identity: ProcessIdentity) -> tuple[int, str]:
        """(parent pid, parent name): the enricher's word first, else /proc (cached by identity;
        0 = unknown)."""
        cached = self.parents.get(identity)
        if cached is None:
            cached = _proc_parent(identity)
            self.parents[identity] = cached
        enriched = self.enrichment.get(identity)
        if enriched is not None and enriched.parent_pid and enriched.parent_pid != cached[0]:
            return enriched.parent_pid, ""
        return cached


def _proc_parent(identity: ProcessIdentity) -> tuple[int, str]:
    with contextlib.suppress(Exception):
        import psutil

        proc = psutil.Process(identity.pid)
        # A reused PID is another process: its parent says nothing about ours.
        if not same_process(identity, ProcessIdentity(proc.pid, proc.create_time())):
            return 0, ""
        parent = proc.parent()
        if parent is not None:
            return parent.pid, parent.name()
    return 0, ""


@dataclass(frozen=True)
class ProcView:
    """One table row: a process on one GPU, with everything known about it."""

    row: ProcessRow
    proc: ProcessSample | None
    gpu: GpuSample | None
    enrichment: Enrichment | None
    analysis: ProcessAnalysis | None
    depth: int = 0  # tree view indentation
    tree_prefix: str = ""
    deep: DeepProcess | None = None  # its deep-mode reporter, when it runs one
    server: ServerMetrics | None = None  # the scraper's figures of this process's server

    @property
    def key(self) -> RowKey:
        return row_key(self.row)

    @property
    def pid(self) -> int:
        return self.row.identity.pid

    @property
    def vram(self) -> float:
        return float(self.proc.used_bytes) if self.proc is not None else math.nan

    @property
    def gpu_fraction(self) -> float:
        total = float(self.gpu.memory_total) if self.gpu is not None else math.nan
        return self.vram / total if total else math.nan  # NaN: n/a; 0: no total to divide by

    @property
    def sm(self) -> float:
        return float(self.proc.sm_util) if self.proc is not None else math.nan

    @property
    def rate(self) -> float:
        return self.analysis.trend.rate_mib_s if self.analysis is not None else math.nan

    @property
    def eta(self) -> float:
        a = self.analysis
        return a.eta.eta_s if a is not None and a.eta is not None else math.nan

    @property
    def command(self) -> str:
        row = self.row
        if row.command:
            return row.command
        if self.enrichment is not None and self.enrichment.cmdline:
            return " ".join(self.enrichment.cmdline)
        return "(other user)" if not row.same_user and row.user else "N/A"

    @property
    def user(self) -> str:
        return self.row.user or (self.enrichment.user if self.enrichment else "") or "?"


@dataclass(frozen=True)
class GroupLine:
    """Tree view: a parent that holds no GPU memory itself but whose children do."""

    pid: int
    name: str
    children: int


TableItem = ProcView | GroupLine


def _num_key(value: float) -> float:
    return -math.inf if math.isnan(value) else value


SORT_KEYS: dict[str, Callable[[ProcView], object]] = {
    "GPU": lambda v: v.row.gpu_index,
    "PID": lambda v: v.pid,
    "USER": lambda v: v.user,
    "VRAM": lambda v: _num_key(v.vram),
    "%MEM": lambda v: _num_key(v.gpu_fraction),
    "SM%": lambda v: _num_key(v.sm),
    "RATE": lambda v: _num_key(v.rate),
    "ETA": lambda v: math.inf if math.isnan(v.eta) else v.eta,
    "COMMAND": lambda v: v.command,
}
SORT_ORDER = tuple(SORT_KEYS)
# Descending first for sizes and rates (the biggest matters), ascending for names and ETAs.
DESCENDING_FIRST = frozenset({"VRAM", "%MEM", "SM%", "RATE"})


def build_views(
    sample: SampleMessage,
    knowledge: Knowledge,
    rows: Iterable[ProcessRow],
    *,
    text: str = "",
    sort: str = "VRAM",
    descending: bool = True,
) -> list[ProcView]:
    gpus = {g.index: g for g in sample.snapshot.gpus}
    procs = {(p.pid, p.gpu_index): p for p in sample.snapshot.processes}
    needle = text.lower()
    views = []
    for row in rows:  # the visible ones (render.filters.visible_rows), in the sample's order
        view = ProcView(
            row=row,
            proc=procs.get((row.identity.pid, row.gpu_index)),
            gpu=gpus.get(row.gpu_index),
            enrichment=knowledge.enrichment.get(row.identity),
            analysis=knowledge.processes.get((row.identity, row.gpu_index)),
            deep=knowledge.deep_of(row.identity) if knowledge.deep else None,
            server=knowledge.servers.get(row.identity),
        )
        if needle and needle not in _haystack(view):
            continue
        views.append(view)
    key = SORT_KEYS.get(sort, SORT_KEYS["VRAM"])
    # Ties break on GPU then PID, so equal rows never swap places between frames.
    views.sort(key=lambda v: (v.row.gpu_index, v.pid))
    views.sort(key=key, reverse=descending)  # type: ignore[arg-type]
    return views


def _haystack(view: ProcView) -> str:
    e = view.enrichment
    extra = f" {e.framework} {e.container.id if e.container else ''}" if e else ""
    return f"{view.pid} {view.user} {view.command}{extra}".lower()


def tree_items(views: list[ProcView], knowledge: Knowledge) -> list[TableItem]:
    """Nest GPU processes under their parents: a server's workers sit under the server.

    A child goes under its nearest ancestor that is itself in the table; children of the same
    non-GPU parent are gathered under a :class:`GroupLine` for that parent. Order within a level
    keeps the current sort.
    """
    by_pid: dict[int, ProcView] = {}
    for v in views:
        by_pid.setdefault(v.pid, v)
    parent_of: dict[RowKey, int] = {}
    names: dict[int, str] = {}
    for v in views:
        ppid, pname = knowledge.parent_of(v.row.identity)
        parent_of[v.key] = ppid
        if ppid and pname:
            names[ppid] = pname
    children: dict[int, list[ProcView]] = {}
    roots: list[ProcView] = []
    for v in views:
        ppid = parent_of[v.key]
        if ppid in by_pid and by_pid[ppid].pid != v.pid:
            children.setdefault(ppid, []).append(v)
        else:
            roots.append(v)
    # Siblings under a parent that is not in the table.
    groups: dict[int, list[ProcView]] = {}
    for v in roots:
        groups.setdefault(parent_of[v.key], []).append(v)
    out: list[TableItem] = []
    placed: set[int] = set()

    def emit(v: ProcView, depth: int, last: bool) -> None:
        prefix = ("  " * (depth - 1) + ("└─" if last else "├─")) if depth else ""
        out.append(
            ProcView(
                v.row, v.proc, v.gpu, v.enrichment, v.analysis, depth, prefix, v.deep, v.server
            )
        )
        if v.pid in placed:
            return  # the same process on a second GPU: its children are listed once
        placed.add(v.pid)
        kids = children.get(v.pid, [])
        for i, kid in enumerate(kids):
            emit(kid, depth + 1, i == len(kids) - 1)

    seen_groups: set[int] = set()
    for v in roots:
        ppid = parent_of[v.key]
        members = groups.get(ppid, [])
        pids = {m.pid for m in members}
        if ppid > 1 and len(pids) > 1:
            if ppid in seen_groups:
                continue
            seen_groups.add(ppid)
            out.append(GroupLine(ppid, names.get(ppid, "?"), len(members)))
            for i, m in enumerate(members):
                emit(m, 1, i == len(members) - 1)
        else:
            emit(v, 0, True)
    return out
