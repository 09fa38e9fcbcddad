"""The deep actor's core (``vramtop: deep``): reporters' sockets -> one :class:`DeepStateMessage`
per round for the render process, the analyzer and the exporter; :func:`read_once` is the same
round for ``--once``.

Where it sits: processes that called ``vramtop.report()`` (or run under ``vramtop wrap``) serve
their PyTorch allocator figures on ``<pid>.sock`` in the user's private socket directory. Once
per refresh interval this core lists those directories and starts a :class:`PollRound`
(``deep/reader.py``: non-blocking connects, ``SO_PEERCRED`` checks, bounded reads). The core
never waits on a socket: the open ones are its :meth:`DeepCore.fds`, so the actor's loop wakes
when one has data (:meth:`DeepCore.on_fd` reads it) or when the round's deadline comes, and in
between serves its inbox and heartbeats as any actor does. A silent, slow or flooding reporter
costs a bounded read and a note, never a stall. When every socket
has answered, failed or timed out, the round's results are attributed to the verified PID with
its start time (a reused PID is a new process) and sent as one whole-state message.

A round's message is sent only when it differs from the last one sent; the readers start knowing
of no reporter, so without reporters nothing is ever sent (the render process forgets the
reports of processes that left the GPUs by itself, whatever a restarted deep actor knows). State
kept between rounds: the newest good report of each process (a failed read keeps it, with the
problem beside it, so one slow answer does not blank the panel) and a minute of
``num_alloc_retries`` totals per process, from which "retries in the last minute" is computed
for the verdict. Processes whose socket is gone are forgotten.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from vramtop.deep.reader import PollRound, discover, socket_dirs
from vramtop.messages import ConfigUpdate, DeepProcess, DeepStateMessage, ProcessIdentity

if TYPE_CHECKING:  # the core is also run without the actor system (``--once``)
    from vramtop.actors.base import ActorContext

Out = list[tuple[str, object]]

# Every reader of the "deep" state kind (``actors/routes.py``, not imported: ``--once`` and
# ``record`` run this core without the actor system); those not running are skipped.
DESTINATIONS = ("render", "analyzer", "exporter", "metrics")
RETRY_WINDOW_S = 60.0
TIMEOUT_S = 2.0  # a reporter that has not answered by then is "silent" for this round
BUDGET_S = 0.0  # how long one step may wait on sockets (the actor: 0, its loop waits instead)


def identity_of(pid: int) -> ProcessIdentity | None:
    """(pid, start time) as the sampler computes it, or None when the process is gone."""
    import psutil

    try:
        return ProcessIdentity(pid, psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


class DeepCore:
    name = "deep"

    def __init__(
        self,
        interval_s: float | None = None,
        timeout_s: float = TIMEOUT_S,
        budget_s: float = BUDGET_S,
        dirs: list[tuple[str, int]] | None = None,
        wall: Callable[[], float] = time.time,
        identify: Callable[[int], ProcessIdentity | None] = identity_of,
    ) -> None:
        """``interval_s``: seconds between rounds (default: the refresh rate, followed on
        reload); ``dirs``: (directory, owner UID) to read (default: ``reader.socket_dirs``)."""
        self.fixed_interval = interval_s
        self.interval = 1.0 if interval_s is None else interval_s
        self.timeout_s = timeout_s
        self.budget_s = budget_s
        self.dirs = dirs
        self.wall = wall
        self.identify = identify
        self.round: PollRound | None = None
        self.next_round = 0.0
        self.dir_notes: list[str] = []
        self.notes: list[str] = []  # the last round's (rejected sockets, unusable directories)
        self.known: dict[ProcessIdentity, DeepProcess] = {}
        self.retries: dict[ProcessIdentity, collections.deque[tuple[float, int]]] = {}
        self.rounds = 0
        self.removed_stale = 0
        # What the readers were last told; they start knowing of no reporter, so an empty
        # round (the usual case) is never sent at all.
        self.sent: tuple[tuple[DeepProcess, ...], tuple[str, ...]] = ((), ())
        self.done = False

    # -- actor protocol -------------------------------------------------------------------
    def start(self, ctx: ActorContext) -> Out:
        self._configure(ctx.config.general.refresh_rate)
        return []

    def _configure(self, refresh_rate: float) -> None:
        if self.fixed_interval is None:
            self.interval = refresh_rate

    def handle(self, batch: Sequence[object], now: float) -> Out:
        for message in batch:
            if isinstance(message, ConfigUpdate) and not message.error:
                self._configure(message.config.general.refresh_rate)
        return []

    def tick(self, now: float) -> tuple[float, Out]:
        out: Out = []
        if self.round is None and now >= self.next_round:
            dirs = self.dirs if self.dirs is not None else socket_dirs()
            sockets, self.dir_notes = discover(dirs)
            self.round = PollRound(sockets, now, self.timeout_s)
            self.next_round = now + self.interval
        out = self._step()
        if self.round is not None:
            return min(self.round.deadline, self.next_round), out
        return self.next_round, out

    def fds(self) -> list[int]:
        return self.round.fds() if self.round is not None else []

    def on_fd(self, fd: int) -> Out:
        return self._step()

    def _step(self) -> Out:
        if self.round is None:
            return []
        self.round.step(self.budget_s)
        if not self.round.finished:
            return []
        out = self._publish(self.round)
        self.round.close()
        self.round = None
        return out

    def poll(self, wait_s: float) -> tuple[DeepProcess, ...]:
        """Without the actor loop (``--once``, ``record``): start a round if none is open, wait
        at most ``wait_s`` for its answers, and return every process's newest state. A round
        still open after ``wait_s`` (a silent reporter) carries on at the next call."""
        end = time.monotonic() + wait_s
        if self.round is None:
            self.next_round = 0.0
            self.tick(time.monotonic())
        while self.round is not None:
            left = end - time.monotonic()
            if left <= 0:
                break
            self.round.step(min(left, 0.05))
            if self.round.finished:
                self._step()
        return tuple(sorted(self.known.values(), key=lambda p: p.identity.pid))

    def stop(self) -> None:
        if self.round is not None:
            self.round.close()
            self.round = None

    # -- results ------------------------------------------------------------------------------
    def _publish(self, done: PollRound) -> Out:
        wall = self.wall()
        notes = list(self.dir_notes)
        known: dict[ProcessIdentity, DeepProcess] = {}
        for o in done.outcomes:
            if o.rejected:
                notes.append(f"deep mode: ignored {o.rejected}")
                continue
            identity = self.identify(o.pid)
            if identity is None:
                continue  # exited while being read
            before = self.known.get(identity)
            if o.report is not None:
                total = sum(d.num_alloc_retries for d in o.report.devices)
                rise = self._retries(identity, wall, total)
                known[identity] = DeepProcess(identity, o.report, wall, rise)
            elif before is not None:
                known[identity] = DeepProcess(
                    identity, before.report, before.read_at, before.retries_last_minute, o.problem
                )
            else:
                known[identity] = DeepProcess(identity, None, 0.0, 0, o.problem)
        for identity in [i for i in self.retries if i not in known]:
            del self.retries[identity]
        self.known = known
        self.rounds += 1
        self.removed_stale += len(done.removed)
        self.notes = notes
        processes = tuple(sorted(known.values(), key=lambda p: p.identity.pid))
        content = (processes, tuple(notes[:16]))
        if content == self.sent:
            return []  # nothing new (the usual case without reporters): no redraw for nothing
        self.sent = content
        message = DeepStateMessage(processes=content[0], notes=content[1], at=wall)
        return [(dest, message) for dest in DESTINATIONS]

    def _retries(self, identity: ProcessIdentity, wall: float, total: int) -> int:
        """How much the retry counter rose over the last minute (0 on first sight: a count
        inherited from before vramtop looked says nothing about now)."""
        window = self.retries.setdefault(identity, collections.deque())
        window.append((wall, total))
        while len(window) > 1 and window[0][0] < wall - RETRY_WINDOW_S:
            window.popleft()
        return max(0, total - min(t for _, t in window))


def read_once(
    timeout_s: float = 1.0, dirs: list[tuple[str, int]] | None = None
) -> DeepStateMessage:
    """One round, waited for (``--once``): every reporter's state now, silent ones after at
    most ``timeout_s``."""
    core = DeepCore(timeout_s=timeout_s, dirs=dirs)
    processes = core.poll(timeout_s + 0.5)
    core.stop()
    return DeepStateMessage(processes, tuple(core.notes), time.time())
