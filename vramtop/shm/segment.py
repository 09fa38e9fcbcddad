"""Lifetime of the shared-memory history segment: create, attach, unlink, stale cleanup.

Data flow: the supervisor calls :func:`cleanup_stale` at start, then :meth:`ShmSegment.create`
(it is the owner, and the only process that unlinks); actors attach by name with
:meth:`ShmSegment.attach` -- the sampler to write, analyzer and render to read.

Ownership and the resource tracker. On Python < 3.13 every ``SharedMemory`` registers its name
with ``multiprocessing``'s resource tracker, which unlinks (with a "leaked shared_memory" warning)
whatever is still registered when the processes sharing that tracker exit. With the fork start
method all vramtop processes share one tracker, and the tracker keeps one entry per name: an
actor's unregister would erase the owner's registration, and a non-owner's registration would get
the segment unlinked under the running program. So no vramtop process is tracked at all -- the
creator included (3.13+: ``track=False``; below, the tracker's register/unregister are bypassed for
``shared_memory`` while our calls run). Cleanup is explicit instead: the owner unlinks (also from an
``atexit`` hook if it forgot), and a run that died without unlinking -- SIGKILL, OOM killer -- is
cleaned by the next run's :func:`cleanup_stale`, which identifies dead creators by the
(pid, start time) written in the header.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any, Final

import psutil

from vramtop.identity import same_process
from vramtop.messages import ProcessIdentity
from vramtop.shm.layout import HEADER_SIZE, SegmentArrays, ShmLayout, parse_header

SEGMENT_PREFIX: Final = "vramtop"
SHM_DIR: Final = "/dev/shm"
_NAME_RE: Final = re.compile(rf"{SEGMENT_PREFIX}_(\d+)_(\d+)_([0-9a-f]{{8}})")

_tracker_lock = threading.Lock()
# Segments this interpreter created and has not unlinked yet: name -> creating pid.
_owned: dict[str, int] = {}


@atexit.register
def _unlink_forgotten() -> None:
    """An owner that exits without unlinking still leaves nothing in /dev/shm."""
    # Forked children inherit this hook and the dict; only the creating process may unlink.
    for name, pid in list(_owned.items()):
        if pid == os.getpid():
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(SHM_DIR, name))


@contextlib.contextmanager
def _untracked() -> Iterator[None]:
    """Keep ``shared_memory`` names away from the resource tracker (Python < 3.13).

    Other resource types pass through, so semaphores etc. created meanwhile are unaffected.
    """
    with _tracker_lock:
        register = resource_tracker.register
        unregister = resource_tracker.unregister

        def _register(name: Any, rtype: str) -> None:
            if rtype != "shared_memory":
                register(name, rtype)

        def _unregister(name: Any, rtype: str) -> None:
            if rtype != "shared_memory":
                unregister(name, rtype)

        setattr(resource_tracker, "register", _register)  # noqa: B010
        setattr(resource_tracker, "unregister", _unregister)  # noqa: B010
        try:
            yield
        finally:
            setattr(resource_tracker, "register", register)  # noqa: B010
            setattr(resource_tracker, "unregister", unregister)  # noqa: B010


class _SharedMemory(SharedMemory):
    """``SharedMemory`` that is never tracked and whose finaliser stays quiet.

    ``close()`` raises BufferError while numpy views of the buffer are alive elsewhere; the base
    class's ``__del__`` would print that as an ignored exception. The mapping is released anyway
    when the last view goes.
    """

    def __init__(self, name: str, create: bool = False, size: int = 0) -> None:
        if sys.version_info >= (3, 13):
            super().__init__(name, create, size, track=False)  # type: ignore[call-arg,unused-ignore]
        else:
            with _untracked():
                super().__init__(name, create, size)

    def unlink(self) -> None:
        with _untracked():
            super().unlink()

    def __del__(self) -> None:
        with contextlib.suppress(OSError, BufferError):
            self.close()


def segment_name(uid: int | None = None, pid: int | None = None, token: str | None = None) -> str:
    """``vramtop_<uid>_<creator pid>_<8 hex digits>``."""
    uid = os.getuid() if uid is None else uid
    pid = os.getpid() if pid is None else pid
    token = secrets.token_hex(4) if token is None else token
    name = f"{SEGMENT_PREFIX}_{uid}_{pid}_{token}"
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid segment name {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class SegmentName:
    uid: int
    pid: int
    token: str


def parse_segment_name(name: str) -> SegmentName | None:
    """The parts of a vramtop segment name; None for any other name."""
    m = _NAME_RE.fullmatch(name)
    if m is None:
        return None
    return SegmentName(uid=int(m.group(1)), pid=int(m.group(2)), token=m.group(3))


def _process_start_time(pid: int) -> float:
    return float(psutil.Process(pid).create_time())


class ShmSegment:
    """One run's history segment. The creating process is the owner and the one that unlinks."""

    def __init__(self, shm: _SharedMemory, layout: ShmLayout, owner: bool) -> None:
        self._shm = shm
        self.name: str = shm.name.lstrip("/")
        self.layout = layout
        self.owner = owner
        self._owner_pid = os.getpid()
        self._arrays: SegmentArrays | None = layout.arrays(shm.buf)  # type: ignore[arg-type]
        self._unlinked = False

    @classmethod
    def create(
        cls, history_length: int, gpu_count: int, process_slots: int, name: str | None = None
    ) -> ShmSegment:
        """Create and initialise a new segment; the caller owns it and must :meth:`unlink` it."""
        layout = ShmLayout(history_length, gpu_count, process_slots)
        name = segment_name() if name is None else name
        if parse_segment_name(name) is None:
            raise ValueError(f"invalid segment name {name!r}")
        shm = _SharedMemory(name, create=True, size=layout.size)
        try:
            segment = cls(shm, layout, owner=True)
            layout.initialise(
                segment.arrays, os.getpid(), _process_start_time(os.getpid()), time.time()
            )
        except BaseException:
            with contextlib.suppress(BufferError):
                shm.close()
            shm.unlink()
            raise
        _owned[segment.name] = os.getpid()
        return segment

    @classmethod
    def attach(cls, name: str) -> ShmSegment:
        """Map an existing segment (invisible to the resource tracker). Never unlinks it."""
        shm = _SharedMemory(name)
        try:
            layout = ShmLayout.from_buffer(shm.buf)  # type: ignore[arg-type]
            return cls(shm, layout, owner=False)
        except BaseException:
            shm.close()
            raise

    @property
    def arrays(self) -> SegmentArrays:
        if self._arrays is None:
            raise ValueError(f"shared-memory segment {self.name} is closed")
        return self._arrays

    @property
    def closed(self) -> bool:
        return self._arrays is None

    def close(self) -> None:
        """Drop this process's mapping. Views still held elsewhere keep it until they go."""
        self._arrays = None
        with contextlib.suppress(BufferError):
            self._shm.close()

    def unlink(self) -> None:
        """Remove the name from /dev/shm (owner only; idempotent). Mappings stay valid."""
        if not self.owner:
            raise PermissionError(f"only the creator unlinks {self.name}")
        if self._unlinked:
            return
        self._unlinked = True
        _owned.pop(self.name, None)
        with contextlib.suppress(FileNotFoundError):
            self._shm.unlink()

    def __enter__(self) -> ShmSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self.owner and os.getpid() == self._owner_pid:
            self.unlink()

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Sent to another process, a segment arrives as a plain (non-owner) attach.
        return (ShmSegment.attach, (self.name,))

    def __repr__(self) -> str:
        role = "owner" if self.owner else "attached"
        return f"ShmSegment({self.name!r}, {role}, {self.layout})"


def _creator_alive(name: SegmentName, path: str) -> bool:
    """Whether the run that created the segment may still be running (when unsure: yes)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return True  # already gone; nothing to do
    except OSError:
        return True
    try:
        raw = os.read(fd, HEADER_SIZE)
    except OSError:
        raw = b""
    finally:
        os.close(fd)
    info = parse_header(raw)
    if info is None or info.creator_pid != name.pid:
        # No trustworthy header (a creator mid-initialisation, or junk): go by the name's pid.
        return psutil.pid_exists(name.pid)
    try:
        proc = psutil.Process(info.creator_pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = float(proc.create_time())
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True
    # Another start time is a reused PID, not our creator.
    creator = ProcessIdentity(info.creator_pid, info.creator_start)
    return same_process(ProcessIdentity(info.creator_pid, started), creator)


def cleanup_stale(directory: str = SHM_DIR) -> list[str]:
    """Unlink segments left in /dev/shm by dead vramtop runs of this UID; return their names.

    A segment is stale when its creator (pid + start time from the header) is gone, or its pid now
    belongs to a process that started later (PID reuse). Live runs' segments are never touched;
    unlinking only removes the name, so processes that still map a stale segment are unaffected.
    """
    uid = os.getuid()
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        parsed = parse_segment_name(entry.name)
        if parsed is None or parsed.uid != uid:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            continue
        if _creator_alive(parsed, entry.path):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue  # another run's cleanup got there first
        except OSError:
            continue
        removed.append(entry.name)
    return removed
