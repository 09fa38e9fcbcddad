"""Every message that crosses a process boundary: small, typed, versionless dataclasses.

Routing (``actors/routes.py``): each tick the sampler sends :class:`ProcessRows` to the render
process, the analyzer, the enricher and the exporter, and :class:`SnapshotMessage` (the numbers)
to the render process and the exporter, which join the two into a :class:`SampleMessage`
(:class:`SampleJoiner`); the analyzer and enricher read the numbers from shared memory. The
analyzer sends
:class:`AnalysisMessage`; the supervisor sends :class:`ActorHealth`, :class:`ConfigUpdate` and
:class:`Stop` (an actor's heartbeat is a number in shared memory, ``actors/base.py``).

Two kinds (``actors/mailbox.py``): *state* — the classes in :data:`STATE_KINDS`, of which only
the newest matters and a mailbox keeps one per kind — and *commands*, everything else, never
dropped. A command that can repeat carries the whole state it describes (``Selected`` names the
selection, ``ActorHealth`` every actor), so the newest one suffices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vramtop.config import Config
from vramtop.deep.protocol import Report
from vramtop.gpu.snapshot import Snapshot
from vramtop.wire import compact

if TYPE_CHECKING:  # the model modules import ProcessIdentity from here
    from vramtop.analysis.model import AnalysisResult
    from vramtop.enrich.model import Enrichment
    from vramtop.scrape.model import ServerMetrics


@compact
@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """A process is (pid, start time); a reused PID is a new process (design principle 8)."""

    pid: int
    start_time: float  # seconds since the epoch, as psutil.Process.create_time(); 0.0 = unknown


@compact
@dataclass(frozen=True, slots=True)
class ProcessRow:
    """What the sampler knows of a GPU process beyond NVML: identity, slot, basic /proc facts."""

    identity: ProcessIdentity
    gpu_index: int
    slot: int  # index into the shm process rings, -1 when the slots are full
    user: str  # "" when unknown
    command: str  # sanitised, "" when not readable (other user, vanished)
    same_user: bool  # may vramtop read /proc details and send signals (same UID or root)


@compact
@dataclass(frozen=True, slots=True)
class SampleMessage:
    """One tick of the sampler: the snapshot plus where each process lives in shared memory."""

    seq: int  # the shm sample counter this message corresponds to
    snapshot: Snapshot
    rows: tuple[ProcessRow, ...]


@compact
@dataclass(frozen=True, slots=True)
class SnapshotMessage:
    """The sampler's tick as the render process and the exporter get it, beside the
    :class:`ProcessRows` of the same ``seq``; :class:`SampleJoiner` puts the two together.
    Sent apart so that the rows, the bulk of a tick at 1000s of processes, are pickled once
    for every reader."""

    seq: int
    snapshot: Snapshot


@compact
@dataclass(frozen=True, slots=True)
class ProcessRows:
    """The sampler's tick as the analyzer and enricher need it: the rows without the snapshot
    (the numbers are in shared memory already)."""

    seq: int
    timestamp: float  # the snapshot's wall time
    rows: tuple[ProcessRow, ...]


@compact
@dataclass(frozen=True, slots=True)
class ActorState:
    name: str
    alive: bool
    restarts: int
    failed: bool  # given up on after the restart intensity was exceeded
    last_error: str = ""


@compact
@dataclass(frozen=True, slots=True)
class ActorHealth:
    """Supervisor -> render: who is running, who was restarted, who was given up."""

    actors: tuple[ActorState, ...]


@compact
@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """Supervisor -> actors after SIGHUP. ``error`` set: the reload failed, the old config stays.
    ``note``: what the reload could not apply now (restart-only keys kept at their running
    values), shown after "config reloaded"."""

    config: Config
    error: str = ""
    source: str = ""
    note: str = ""


@compact
@dataclass(frozen=True, slots=True)
class LogLine:
    """Supervisor -> render: the newest line the actors wrote to stderr or logged (the screen
    belongs to the render process, so they never write to the terminal; the whole log is
    printed after it is restored). ``total`` counts every line so far."""

    text: str
    total: int


@compact
@dataclass(frozen=True, slots=True)
class Stop:
    """Supervisor -> actor: finish the current step and exit 0."""

    reason: str = ""


@compact
@dataclass(frozen=True, slots=True)
class Quit:
    """Render -> supervisor: the user asked to quit."""

    reason: str = "user"


@compact
@dataclass(frozen=True, slots=True)
class ActorError:
    """Actor -> supervisor: a one-line description of why it is about to die."""

    actor: str
    error: str
    details: tuple[str, ...] = field(default=())


@compact
@dataclass(frozen=True, slots=True)
class Selected:
    """Render -> analyzer: the process the user selected (PELT segments are computed for it
    alone, which keeps their cost bounded); None when nothing is selected."""

    identity: ProcessIdentity | None


@compact
@dataclass(frozen=True, slots=True)
class EnrichmentMessage:
    """Enricher -> render/analyzer: facts about new or changed processes (by identity)."""

    items: tuple[Enrichment, ...]
    notes: tuple[str, ...] = ()  # e.g. "processes from another PID namespace: run with --pid=host"


@compact
@dataclass(frozen=True, slots=True)
class AnalysisMessage:
    """Analyzer -> render: phases, verdicts and OOM predictions for one sample."""

    seq: int  # the shm sample count it was computed at
    result: AnalysisResult


@compact
@dataclass(frozen=True, slots=True)
class DeepProcess:
    """What one deep-mode reporter said, attributed to the PID ``SO_PEERCRED`` gave."""

    identity: ProcessIdentity
    report: Report | None  # the newest good report; None: none read yet (``problem`` says why)
    read_at: float  # wall time of that report (0.0 = never)
    retries_last_minute: int = 0  # rise of num_alloc_retries (all devices) over the last 60 s
    problem: str = ""  # why the newest read failed, e.g. "not JSON", "no answer within 2 s"


@compact
@dataclass(frozen=True, slots=True)
class DeepStateMessage:
    """Deep actor -> render/analyzer/exporter: every reporting process, whole state each time
    (a state message: only the newest matters)."""

    processes: tuple[DeepProcess, ...]
    notes: tuple[str, ...] = ()  # rejected sockets, unreadable directories (status line)
    at: float = 0.0  # wall time of the round


@compact
@dataclass(frozen=True, slots=True)
class ScrapeMessage:
    """Scraper -> render/analyzer/exporter (state: the newest replaces the older): what every
    inference server found in the GPU processes' server trees reported, or why nothing."""

    servers: tuple[ServerMetrics, ...]
    at: float = 0.0  # time.time() of the scrape round


@compact
@dataclass(frozen=True, slots=True)
class Notice:
    """Actor -> render: a standing line for the status bar, e.g. "recording paused: disk full
    (3 samples skipped)". Repeatable: each carries the whole text for its ``key``, and ""
    clears it. ``said``: the event that changed it ("recording resumed ..."), shown briefly."""

    key: str
    text: str
    level: str = "warn"  # warn | crit (a theme colour)
    said: str = ""


Message = (
    SampleMessage
    | SnapshotMessage
    | ProcessRows
    | ActorHealth
    | ConfigUpdate
    | LogLine
    | Stop
    | Quit
    | ActorError
    | EnrichmentMessage
    | AnalysisMessage
    | Selected
    | DeepStateMessage
    | ScrapeMessage
    | Notice
)


STATE_KINDS: dict[type, str] = {
    SnapshotMessage: "snapshot",
    SampleMessage: "sample",
    ProcessRows: "rows",
    AnalysisMessage: "analysis",
    DeepStateMessage: "deep",
    ScrapeMessage: "scrape",
}
"""Message classes that are state (newest replaces older), by channel name."""


def state_kind(message: object) -> str | None:
    """The state channel of ``message``; None for a command."""
    return STATE_KINDS.get(type(message))


class SampleJoiner:
    """Puts a :class:`SnapshotMessage` and the :class:`ProcessRows` of the same ``seq`` back
    together as a :class:`SampleMessage`. Parts older than the newest joined sample are
    dropped, so a lost part costs one sample, never memory."""

    KEEP = 64  # unjoined parts kept at most per kind

    def __init__(self) -> None:
        self._snapshots: dict[int, Snapshot] = {}
        self._rows: dict[int, tuple[ProcessRow, ...]] = {}

    def add(self, message: object) -> SampleMessage | None:
        if isinstance(message, SampleMessage):
            return message
        if isinstance(message, SnapshotMessage):
            seq = message.seq
            self._snapshots[seq] = message.snapshot
        elif isinstance(message, ProcessRows):
            seq = message.seq
            self._rows[seq] = message.rows
        else:
            return None
        if seq in self._snapshots and seq in self._rows:
            joined = SampleMessage(seq, self._snapshots.pop(seq), self._rows.pop(seq))
            for parts in (self._snapshots, self._rows):
                for old in [k for k in parts if k < seq]:
                    del parts[old]
            return joined
        for parts in (self._snapshots, self._rows):
            while len(parts) > self.KEEP:
                del parts[min(parts)]
        return None
