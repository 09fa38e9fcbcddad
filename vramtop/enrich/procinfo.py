"""The few /proc facts the sampler attaches to every GPU process: identity, user, command.

Data flow: Snapshot PIDs -> :class:`ProcessTable` -> :func:`build_rows` -> the ``ProcessRow``
of every process in a sample: the sampler's ``SampleMessage``, and the rows ``--once`` and
``record`` compute the same way without the actor system.
Identity is (pid, start time) (design principle 8). Results are cached by identity, so a tick
costs one ``stat`` per *new* PID, not per PID. The security model applies: the command line is
read only for processes of our own UID (root: all); for the others we show user and PID only.
A process that vanishes between NVML and /proc is a normal event: it gets start time 0.0 and an
empty command, never an exception.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from vramtop.enrich.users import user_name
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow
from vramtop.sanitize import clean


@dataclass(frozen=True, slots=True)
class ProcessFacts:
    identity: ProcessIdentity
    uid: int  # -1 when unknown
    user: str
    command: str
    same_user: bool


class ProcessTable:
    """PID -> :class:`ProcessFacts`, cached while the PID stays on a GPU."""

    def __init__(self, my_uid: int | None = None) -> None:
        self.my_uid = os.geteuid() if my_uid is None else my_uid
        self._facts: dict[int, ProcessFacts] = {}
        self._users: dict[int, str] = {}

    def may_inspect(self, uid: int) -> bool:
        return self.my_uid == 0 or uid == self.my_uid

    def update(self, pids: Iterable[int]) -> dict[int, ProcessFacts]:
        """Facts for exactly ``pids``; PIDs no longer listed are forgotten (a reused PID that
        comes back later is looked up afresh, so it gets its own identity)."""
        wanted = set(pids)
        for gone in self._facts.keys() - wanted:
            del self._facts[gone]
        for pid in wanted - self._facts.keys():
            self._facts[pid] = self._lookup(pid)
        return self._facts

    def _lookup(self, pid: int) -> ProcessFacts:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                start = proc.create_time()
                uid = proc.uids().real
                allowed = self.may_inspect(uid)
                command = ""
                if allowed:
                    argv = proc.cmdline()
                    command = " ".join(argv) if argv else f"[{proc.name()}]"
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return ProcessFacts(ProcessIdentity(pid, 0.0), -1, "", "", False)
        except psutil.AccessDenied:
            return ProcessFacts(ProcessIdentity(pid, 0.0), -1, "", "", False)
        return ProcessFacts(
            ProcessIdentity(pid, start),
            uid,
            user_name(uid, self._users),
            clean(command),
            allowed,
        )


def build_rows(
    snapshot: Snapshot, facts: dict[int, ProcessFacts], slots: dict[tuple[int, int], int]
) -> tuple[ProcessRow, ...]:
    """One row per process of ``snapshot``; ``slots`` maps (pid, gpu) to its history slot
    (-1 without shared memory)."""
    rows = []
    for proc in snapshot.processes:
        fact = facts[proc.pid]
        rows.append(
            ProcessRow(
                identity=fact.identity,
                gpu_index=proc.gpu_index,
                slot=slots.get((proc.pid, proc.gpu_index), -1),
                user=fact.user,
                command=fact.command,
                same_user=fact.same_user,
            )
        )
    return tuple(rows)
