"""The enricher's functional core: GPU process rows in, what /proc tells about them out.

Data flow: the sampler's ``SampleMessage.rows`` -> :meth:`Enricher.update` -> new or changed
:class:`~vramtop.enrich.model.Enrichment` items -> ``EnrichmentMessage`` (``actors/enricher.py``)
-> render / analyzer. ``--once``, the benchmark and the tests call this class directly.

Cost: results are cached by process identity (pid, start time; design principle 8), so a tick
costs a dictionary lookup per unchanged process. A process is read in full when it first appears
and again on a short schedule while it is young (:data:`REVISIT_AFTER`: a server sets its title,
loads its libraries and maps its weights in its first minutes), at most
:data:`REVISIT_BUDGET` re-reads per update; after that it costs nothing until it leaves.

Security model: cmdline, maps, fds and environ are read only for processes of vramtop's own UID
(root: all). For the others only ``stat``, ``status`` (UID, parent, NSpid) and ``cgroup`` are
read — world-readable files that give the user, PID and container. Every string is sanitised.
A process that vanishes or whose PID is reused while it is read is a normal event: it gets the
facts read so far checked against its identity, never an exception.
"""

from __future__ import annotations

import heapq
import itertools
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from vramtop.enrich import containers, framework, models
from vramtop.enrich.framework import Detection
from vramtop.enrich.model import Enrichment
from vramtop.enrich.procfs import INIT_PID_NS, ProcFS, StatFields
from vramtop.enrich.users import user_name
from vramtop.identity import same_process
from vramtop.messages import ProcessIdentity, ProcessRow
from vramtop.sanitize import clean

REVISIT_AFTER: tuple[float, ...] = (2.0, 10.0, 30.0, 120.0)  # seconds after first seen
REVISIT_BUDGET = 32  # full re-reads per update, at most
PARENT_DEPTH = 4  # ancestors looked at for a worker's server
MAX_ARGS = 128  # argv entries kept (each capped at 256 characters by clean)
DETECT_LEN = 4096  # characters of each argument that detection looks at

NAMESPACE_NOTE = "processes from another PID namespace: run with --pid=host to see them"


@dataclass(slots=True)
class _Entry:
    enrichment: Enrichment
    first_seen: float
    visits: int  # re-reads done so far (index into the revisit schedule)
    command: str  # the sampler's command when last read: a new title means a re-read


@dataclass(frozen=True, slots=True)
class _Ancestor:
    uid: int
    ppid: int
    detection: Detection | None


class Enricher:
    """Process rows -> enrichments, cached by identity. Not thread-safe; one per actor."""

    def __init__(
        self,
        procfs: ProcFS | None = None,
        my_uid: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        revisit_after: Sequence[float] = REVISIT_AFTER,
        revisit_budget: int = REVISIT_BUDGET,
    ) -> None:
        self.procfs = procfs if procfs is not None else ProcFS()
        self.my_uid = os.geteuid() if my_uid is None else my_uid
        self.clock = clock
        self.revisit_after = tuple(revisit_after)
        self.revisit_budget = revisit_budget
        self._cache: dict[ProcessIdentity, _Entry] = {}
        self._due: list[tuple[float, int, ProcessIdentity]] = []  # (when, seq, identity) heap
        self._seq = itertools.count()
        self._users: dict[int, str] = {}
        self._ancestors: dict[tuple[int, int], _Ancestor] = {}
        self._listings: dict[tuple[str, int, int, int], list[str]] = {}
        self._versions: dict[tuple[tuple[str, int, int, int], str], str] = {}
        self._own_ns: str | None = None
        self._ns_checked = False
        self._ns_last: tuple[frozenset[int], str | None] | None = None
        self.reads = 0  # full enrichments done (new + revisits): for the benchmark and tests

    # -- public ------------------------------------------------------------------------------

    def may_inspect(self, uid: int) -> bool:
        return self.my_uid == 0 or (uid >= 0 and uid == self.my_uid)

    @property
    def known(self) -> Mapping[ProcessIdentity, Enrichment]:
        """The current enrichment of every process of the last update."""
        return {ident: entry.enrichment for ident, entry in self._cache.items()}

    def get(self, identity: ProcessIdentity) -> Enrichment | None:
        entry = self._cache.get(identity)
        return None if entry is None else entry.enrichment

    def update(self, rows: Iterable[ProcessRow]) -> list[Enrichment]:
        """Enrichments of the processes that are new or changed since the last update.

        Identities no longer in ``rows`` are forgotten (a reused PID is a new identity anyway).
        """
        now = self.clock()
        current: dict[ProcessIdentity, ProcessRow] = {}
        for row in rows:
            current.setdefault(row.identity, row)
        for gone in self._cache.keys() - current.keys():
            del self._cache[gone]
        out: list[Enrichment] = []
        retitled: list[ProcessIdentity] = []
        for ident, row in current.items():
            entry = self._cache.get(ident)
            if entry is None:
                enrichment = self.enrich(ident, row)
                self._cache[ident] = _Entry(enrichment, now, 0, row.command)
                self._schedule(ident, now, 0)
                out.append(enrichment)
            elif entry.command != row.command:
                retitled.append(ident)
        budget = self.revisit_budget
        for ident in retitled:
            if budget <= 0:
                break
            budget -= 1
            self._revisit(ident, current[ident], now, out)
        while self._due and self._due[0][0] <= now and budget > 0:
            _, _, ident = heapq.heappop(self._due)
            if ident in self._cache and ident in current:
                budget -= 1
                self._revisit(ident, current[ident], now, out)
        if len(self._due) > 4 * len(self._cache) + 64:
            self._due = [d for d in self._due if d[2] in self._cache]
            heapq.heapify(self._due)
        if len(self._ancestors) > 4096:
            self._ancestors.clear()
        return out

    def enrich(self, identity: ProcessIdentity, row: ProcessRow | None = None) -> Enrichment:
        """Read everything the security model allows about one process, uncached."""
        self.reads += 1
        pid = identity.pid
        user_hint = row.user if row is not None else ""
        gone = Enrichment(identity, -1, user_hint, False)
        if identity.start_time <= 0.0:
            return gone  # the sampler could not resolve it: vanished, or another PID namespace
        fs = self.procfs
        stat = fs.stat(pid)
        if stat is None or not self._same_process(stat, identity):
            return gone
        status = fs.status(pid)
        if status is None:
            return gone
        uid = _uid(status)
        user = user_name(uid, self._users)
        container = containers.detect(fs.cgroup(pid), status)
        if not self.may_inspect(uid):
            return Enrichment(identity, uid, user, False, container=container, parent_pid=stat.ppid)

        # Escapes hidden in a title must neither reach the screen nor hide a framework.
        argv = tuple(clean(a, DETECT_LEN) for a in (fs.cmdline(pid) or ())[:MAX_ARGS])
        comm = clean(fs.comm(pid), 64)
        maps = fs.maps(pid)
        detection = self._detect(argv, comm, maps, stat.ppid)
        fw = detection.framework if detection else ""
        environ = fs.environ(pid) if fw == framework.JAX else None
        version = self._version(pid, maps, fw) if maps else ""
        files = models.collect(fs, pid, maps)

        # Vanished (or replaced by a reused PID) while we read: keep only what stat/status said.
        again = fs.stat(pid)
        if again is None or again.start_ticks != stat.start_ticks:
            return Enrichment(identity, uid, user, True, container=container, parent_pid=stat.ppid)
        return Enrichment(
            identity=identity,
            uid=uid,
            user=user,
            same_user=True,
            cmdline=tuple(clean(a) for a in argv),
            framework=fw,
            framework_version=version,
            framework_evidence=detection.evidence if detection else "",
            model_files=files,
            container=container,
            parent_pid=stat.ppid,
            preallocates=framework.preallocates(fw, environ),
        )

    def namespace_note(self, pids: Iterable[int]) -> str | None:
        """:data:`NAMESPACE_NOTE` when vramtop runs in a PID namespace of its own (a container
        without ``--pid=host``) and some of NVML's PIDs do not exist in it; None otherwise.
        Costs nothing in the host namespace, and one ``stat`` per PID when the set changes."""
        if not self._ns_checked:
            self._own_ns = self.procfs.own_pid_namespace()
            self._ns_checked = True
        if self._own_ns is None or self._own_ns == INIT_PID_NS:
            return None
        wanted = frozenset(pids)
        if self._ns_last is not None and self._ns_last[0] == wanted:
            return self._ns_last[1]
        missing = any(self.procfs.stat(pid) is None for pid in wanted)
        note = NAMESPACE_NOTE if missing else None
        self._ns_last = (wanted, note)
        return note

    # -- internals ---------------------------------------------------------------------------

    def _schedule(self, ident: ProcessIdentity, first_seen: float, visits: int) -> None:
        if visits < len(self.revisit_after):
            when = first_seen + self.revisit_after[visits]
            heapq.heappush(self._due, (when, next(self._seq), ident))

    def _revisit(
        self, ident: ProcessIdentity, row: ProcessRow, now: float, out: list[Enrichment]
    ) -> None:
        entry = self._cache[ident]
        fresh = self.enrich(ident, row)
        elapsed = now - entry.first_seen
        # Skip the schedule's points already passed (a process revisited late).
        visits = entry.visits + 1
        while visits < len(self.revisit_after) and self.revisit_after[visits] <= elapsed:
            visits += 1
        entry.visits = visits
        entry.command = row.command
        self._schedule(ident, entry.first_seen, visits)
        if fresh != entry.enrichment:
            entry.enrichment = fresh
            out.append(fresh)

    def _same_process(self, stat: StatFields, identity: ProcessIdentity) -> bool:
        if stat.state in ("Z", "X", "x"):
            return False
        if self.procfs.boot_time() <= 0.0:
            return True  # no btime to compare with: trust the PID
        return same_process(ProcessIdentity(identity.pid, self.procfs.start_time(stat)), identity)

    def _detect(
        self, argv: Sequence[str], comm: str, maps: bytes | None, ppid: int
    ) -> Detection | None:
        """Serving frameworks before libraries; within each: argv/title, maps, parent chain."""
        own = framework.from_argv(argv, comm)
        if own is not None and own.serving:
            return own
        serving_maps, library_maps = framework.from_maps(maps) if maps else (None, None)
        if serving_maps is not None:
            return serving_maps
        parent = self._ancestor_detection(ppid)
        if parent is not None and parent.serving:
            return parent
        return own or library_maps or parent

    def _ancestor(self, pid: int) -> _Ancestor | None:
        stat = self.procfs.stat(pid)
        if stat is None:
            return None
        key = (pid, stat.start_ticks)
        found = self._ancestors.get(key)
        if found is None:
            status = self.procfs.status(pid)
            uid = _uid(status) if status else -1
            detection = None
            if self.may_inspect(uid):
                argv = [clean(a, DETECT_LEN) for a in (self.procfs.cmdline(pid) or ())[:MAX_ARGS]]
                detection = framework.from_argv(argv, clean(self.procfs.comm(pid), 64))
            found = _Ancestor(uid, stat.ppid, detection)
            self._ancestors[key] = found
        return found

    def _ancestor_detection(self, ppid: int) -> Detection | None:
        """The nearest serving framework among the ancestors (else the nearest library)."""
        nearest: Detection | None = None
        pid = ppid
        for depth in range(PARENT_DEPTH):
            if pid <= 1:
                break
            anc = self._ancestor(pid)
            if anc is None or not self.may_inspect(anc.uid):
                break
            if anc.detection is not None:
                relation = "parent" if depth == 0 else "ancestor"
                found = Detection(
                    anc.detection.framework, f"{relation} {pid} is {anc.detection.framework}"
                )
                if found.serving:
                    return found
                nearest = nearest or found
            pid = anc.ppid
        return nearest

    def _version(self, pid: int, maps: bytes, fw: str) -> str:
        if not framework.DISTRIBUTIONS.get(fw):
            return ""
        for directory in framework.site_packages(maps):
            path = self.procfs.in_root(pid, directory)
            st = self.procfs.stat_path(path)
            if st is None:
                continue
            key = (directory, st.st_dev, st.st_ino, st.st_mtime_ns)
            listing = self._listings.get(key)
            if listing is None:
                if len(self._listings) > 64:
                    self._listings.clear()
                    self._versions.clear()
                listing = self.procfs.listdir(path)
                self._listings[key] = listing
            version = self._versions.get((key, fw))
            if version is None:
                version = self._versions[(key, fw)] = framework.version_from_listing(listing, fw)
            if version:
                return version
        return ""


def _uid(status: Mapping[str, str]) -> int:
    """The real UID (``Uid:`` first field), as the sampler's ``procinfo`` uses; -1 unknown."""
    try:
        return int(status.get("Uid", "").split()[0])
    except (IndexError, ValueError):
        return -1
