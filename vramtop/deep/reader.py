"""The monitor's side of deep mode: find reporters' sockets, check who serves them, read one
line from each without ever waiting on one.

Data flow: :class:`PollRound` is started by the deep actor (``deep/core.py``) once per
interval: it lists the private socket directories (``paths.py``), connects to every
``<pid>.sock`` without blocking, checks the peer with ``SO_PEERCRED`` and then, whenever one
of its sockets (:meth:`PollRound.fds`) has data, reads what has arrived
(:meth:`PollRound.step`). A round ends when every connection has given its line, failed, or
passed its deadline; its :class:`Outcome` per socket is what the actor turns into a message.

Trust rules (design.md, security model): the PID and UID come from ``SO_PEERCRED``, never from
the message; the peer must have our UID (root: any), and its PID must be the one the socket is
named after, or the socket is ignored (and said so). A line is at most ``protocol.MAX_LINE``
bytes; a reporter that sends more, sends garbage, or stays silent costs one bounded read and a
note, never a stall. A socket nobody listens on any more (its process died) is removed, only if
it is still the same file that was found.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import selectors
import socket
import stat
import struct
import tempfile
import time
from dataclasses import dataclass, field

from vramtop.deep import paths, protocol

MAX_SOCKETS = 512  # sockets read per round; more are left for later rounds
MAX_DIR_ENTRIES = 4096
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one socket gave this round. ``pid`` is the verified peer PID (0 when rejected)."""

    path: str
    pid: int
    report: protocol.Report | None = None
    problem: str = ""  # why there is no report: protocol error, silence, ...
    rejected: str = ""  # why the socket was not trusted at all (status line)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process that listens on the other end, from the kernel."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    pid, uid, gid = _CRED.unpack(raw)
    return pid, uid, gid


def socket_dirs(uid: int | None = None, env: dict[str, str] | None = None) -> list[tuple[str, int]]:
    """(directory, the UID that must own it) to look in. Root reads every user's reporters
    (the security model's "root: any"), each only from a directory that user owns."""
    uid = os.geteuid() if uid is None else uid
    out = [(d, uid) for d in paths.candidates(uid, env)]
    if uid == 0:
        pattern_uid = [
            *glob.glob("/run/user/[0-9]*/vramtop"),
            *glob.glob(os.path.join(tempfile.gettempdir(), "vramtop-[0-9]*")),
        ]
        for d in sorted(pattern_uid):
            owner = _uid_in(d)
            if owner is not None and owner != 0 and (d, owner) not in out:
                out.append((d, owner))
    return out


def _uid_in(path: str) -> int | None:
    name = os.path.basename(path)
    text = (
        name[len("vramtop-") :]
        if name.startswith("vramtop-")
        else os.path.basename(os.path.dirname(path))
    )
    return int(text) if text.isdigit() else None


def discover(dirs: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], list[str]]:
    """Sockets ``(path, claimed pid)`` in the private directories, and notes about what was
    ignored (a directory open to others, a file that is not ``<pid>.sock``)."""
    found: list[tuple[str, int]] = []
    notes: list[str] = []
    for directory, owner in dirs:
        try:
            paths.check_private(directory, owner)
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        except (paths.UnsafeDirectory, OSError) as exc:
            notes.append(f"deep mode: not reading {directory}: {exc}")
            continue
        for name in sorted(names)[:MAX_DIR_ENTRIES]:
            pid = paths.pid_of(name)
            path = os.path.join(directory, name)
            if pid is None:
                notes.append(f"deep mode: ignored {path[:120]}: not a <pid>.sock name")
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue  # gone since the listing: its process exited
            # A symlink could point a root monitor at any socket on the machine; who serves a
            # real socket is SO_PEERCRED's to say, when it is connected.
            if not stat.S_ISSOCK(st.st_mode):
                notes.append(f"deep mode: ignored {path[:120]}: not a socket")
                continue
            found.append((path, pid))
    return found, notes


@dataclass
class _Conn:
    path: str
    pid: int
    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)


class PollRound:
    """One pass over every reporter: connect now, read as data arrives, finish by ``deadline``
    (``now`` and the deadline are ``time.monotonic()`` values)."""

    def __init__(
        self,
        sockets: list[tuple[str, int]],
        now: float,
        timeout_s: float,
        my_uid: int | None = None,
    ) -> None:
        self.deadline = now + timeout_s
        self.timeout_s = timeout_s
        self.my_uid = os.geteuid() if my_uid is None else my_uid
        self.outcomes: list[Outcome] = []
        self.removed: list[str] = []
        self.selector = selectors.DefaultSelector()
        self.open: dict[int, _Conn] = {}
        for path, claimed in sockets[:MAX_SOCKETS]:
            self._connect(path, claimed)

    @property
    def finished(self) -> bool:
        return not self.open

    def _connect(self, path: str, claimed: int) -> None:
        try:
            before = os.lstat(path)
        except OSError:
            return  # gone since it was listed: the process exited
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ECONNREFUSED:
                self._remove_stale(path, before.st_ino)
            elif exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.outcomes.append(Outcome(path, claimed, problem="busy (backlog full)"))
            elif exc.errno != errno.ENOENT:
                why = f"{os.path.basename(path)}: cannot connect: {exc.strerror}"
                self.outcomes.append(Outcome(path, 0, rejected=why))
            return
        try:
            pid, uid, _gid = peer_credentials(sock)
        except OSError as exc:
            sock.close()
            self.outcomes.append(Outcome(path, 0, rejected=f"no peer credentials: {exc}"))
            return
        name = os.path.basename(path)
        if self.my_uid != 0 and uid != self.my_uid:
            sock.close()
            self.outcomes.append(Outcome(path, 0, rejected=f"{name} is served by UID {uid}"))
            return
        if pid != claimed:
            sock.close()
            self.outcomes.append(Outcome(path, 0, rejected=f"{name} is served by PID {pid}"))
            return
        conn = _Conn(path, pid, sock)
        self.open[sock.fileno()] = conn
        self.selector.register(sock, selectors.EVENT_READ, conn)

    def _remove_stale(self, path: str, inode: int) -> None:
        """Nobody listens: its process is gone. Remove it if it is still the file we saw."""
        with contextlib.suppress(OSError):
            if os.lstat(path).st_ino == inode:
                os.unlink(path)
                self.removed.append(path)

    def step(self, budget_s: float = 0.0) -> None:
        """Read what has arrived, and what arrives within ``budget_s`` (0: only what is there
        now); close what is done, and, past the deadline, what is still silent."""
        end = time.monotonic() + budget_s
        while self.open:
            wait = max(0.0, min(end, self.deadline) - time.monotonic())
            ready = self.selector.select(wait)
            for key, _events in ready:
                self._read(key.data)
            if not ready or time.monotonic() >= end:
                break
        if self.open and time.monotonic() >= self.deadline:
            for conn in list(self.open.values()):
                self._finish(conn, problem=f"no answer within {self.timeout_s:g} s")

    def fds(self) -> list[int]:
        """The sockets still being read: the actor's loop wakes when one has data."""
        return list(self.open)

    def _read(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(protocol.MAX_LINE + 1 - len(conn.buffer))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._finish(conn, problem=f"read failed: {exc.strerror or exc}")
            return
        if not chunk:
            what = "closed without a complete line" if conn.buffer else "closed without a word"
            self._finish(conn, problem=what)
            return
        conn.buffer += chunk
        end = conn.buffer.find(b"\n")
        if end >= 0:
            try:
                report = protocol.decode(bytes(conn.buffer[: end + 1]))
            except protocol.ProtocolError as exc:
                self._finish(conn, problem=str(exc))
            else:
                self._finish(conn, report=report)
        elif len(conn.buffer) > protocol.MAX_LINE:
            self._finish(conn, problem=f"line longer than {protocol.MAX_LINE} bytes")

    def _finish(
        self, conn: _Conn, report: protocol.Report | None = None, problem: str = ""
    ) -> None:
        self.open.pop(conn.sock.fileno(), None)
        with contextlib.suppress(Exception):
            self.selector.unregister(conn.sock)
        conn.sock.close()
        self.outcomes.append(Outcome(conn.path, conn.pid, report, problem))

    def close(self) -> None:
        for conn in list(self.open.values()):
            self._finish(conn, problem="monitor stopped")
        self.selector.close()
