"""The one door through which the enricher reads /proc: bounded, never raising, injectable.

Data flow: ``Enricher`` (``enrich/enricher.py``) -> :class:`ProcFS` -> files under ``root``
(``/proc`` on a real system, a directory of fixture files in tests). Every read is capped (design
principle 9: bound every read), and every failure — the process vanished (``ENOENT``/``ESRCH``),
we may not look (``EACCES``), the file is odd — comes back as ``None`` or an empty result: a
process that ends while we read it is a normal event.

Every path touched goes through :meth:`ProcFS.touch`, so a test can prove which files were (and
were not) opened for a process: the same-UID rule of the security model is checked that way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

# Caps per file. A CUDA/PyTorch process has a few thousand mappings (~1 MB of maps text); 4 MiB
# leaves room and still bounds a pathological process.
CMDLINE_MAX = 64 * 1024
COMM_MAX = 64
STAT_MAX = 4096
STATUS_MAX = 16 * 1024
CGROUP_MAX = 64 * 1024
ENVIRON_MAX = 256 * 1024
MAPS_MAX = 4 * 1024 * 1024
FD_MAX = 4096  # file descriptors looked at per process
DIR_MAX = 10_000  # entries listed from one directory (site-packages)
LINK_MAX = 4096
_CHUNK = 256 * 1024

# The initial PID namespace always has this inode (PROC_PID_INIT_INO in the kernel).
INIT_PID_NS = "pid:[4026531836]"


@dataclass(frozen=True, slots=True)
class StatFields:
    ppid: int
    start_ticks: int  # field 22: start time in clock ticks since boot
    state: str


@dataclass(frozen=True, slots=True)
class FileId:
    """A file as the kernel knows it: where a descriptor or a mapping points."""

    dev: int
    ino: int
    size: int


class ProcFS:
    """Bounded reads of ``root`` (default ``/proc``). ``on_access`` sees every path touched."""

    def __init__(self, root: str = "/proc", on_access: Callable[[str], None] | None = None):
        self.root = root.rstrip("/") or "/"
        self.on_access = on_access
        self.clock_ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._boot_time: float | None = None

    # -- primitives -------------------------------------------------------------------------

    def path(self, pid: int | str, *parts: str) -> str:
        return "/".join((self.root, str(pid), *parts))

    def touch(self, path: str) -> None:
        if self.on_access is not None:
            self.on_access(path)

    def read_path(self, path: str, limit: int) -> bytes | None:
        """At most ``limit`` bytes of ``path``; None when it cannot be read."""
        self.touch(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            parts: list[bytes] = []
            left = limit
            # /proc files come a page or a seq_file buffer at a time: loop until EOF or the cap.
            while left > 0:
                chunk = os.read(fd, min(left, _CHUNK))
                if not chunk:
                    break
                parts.append(chunk)
                left -= len(chunk)
            return b"".join(parts)
        except OSError:
            return None
        finally:
            os.close(fd)

    def read(self, pid: int | str, name: str, limit: int) -> bytes | None:
        return self.read_path(self.path(pid, name), limit)

    def readlink(self, path: str) -> str | None:
        self.touch(path)
        try:
            return os.readlink(path)[:LINK_MAX]
        except OSError:
            return None

    def stat_path(self, path: str) -> os.stat_result | None:
        self.touch(path)
        try:
            return os.stat(path)
        except (OSError, ValueError):
            return None

    def listdir(self, path: str, limit: int = DIR_MAX) -> list[str]:
        self.touch(path)
        names: list[str] = []
        try:
            with os.scandir(path) as it:
                for entry in it:
                    names.append(entry.name)
                    if len(names) >= limit:
                        break
        except OSError:
            pass
        return names

    # -- per-process files readable for every process ------------------------------------------

    def stat(self, pid: int) -> StatFields | None:
        data = self.read(pid, "stat", STAT_MAX)
        if not data:
            return None
        # comm (field 2) may hold spaces and parentheses: split after the last ")".
        fields = data.rsplit(b")", 1)[-1].split()
        try:
            return StatFields(int(fields[1]), int(fields[19]), fields[0].decode("ascii", "replace"))
        except (IndexError, ValueError):
            return None

    def status(self, pid: int) -> dict[str, str] | None:
        data = self.read(pid, "status", STATUS_MAX)
        if not data:
            return None
        out: dict[str, str] = {}
        for line in data.decode("utf-8", "replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key] = value.strip()
        return out

    def cgroup(self, pid: int) -> str | None:
        data = self.read(pid, "cgroup", CGROUP_MAX)
        return None if data is None else data.decode("utf-8", "replace")

    def boot_time(self) -> float:
        """``btime`` of ``root/stat`` (what psutil adds to the start ticks); 0.0 if unknown."""
        if self._boot_time is None:
            self._boot_time = 0.0
            data = self.read_path(self.root + "/stat", 64 * 1024) or b""
            for line in data.splitlines():
                if line.startswith(b"btime "):
                    with contextlib.suppress(IndexError, ValueError):
                        self._boot_time = float(line.split()[1])
                    break
        return self._boot_time

    def start_time(self, fields: StatFields) -> float:
        """Seconds since the epoch, computed as psutil's ``create_time`` does."""
        return self.boot_time() + fields.start_ticks / self.clock_ticks

    def own_pid_namespace(self) -> str | None:
        """``pid:[inode]`` of the namespace vramtop runs in."""
        return self.readlink(self.root + "/self/ns/pid")

    # -- details: only for processes the security model lets us inspect ------------------------

    def cmdline(self, pid: int) -> tuple[str, ...] | None:
        data = self.read(pid, "cmdline", CMDLINE_MAX)
        if data is None:
            return None
        # A title set with setproctitle comes as one NUL-padded string: drop empty tails.
        return tuple(a.decode("utf-8", "replace") for a in data.split(b"\0") if a)

    def comm(self, pid: int) -> str:
        data = self.read(pid, "comm", COMM_MAX)
        return "" if data is None else data.decode("utf-8", "replace").strip()

    def maps(self, pid: int) -> bytes | None:
        return self.read(pid, "maps", MAPS_MAX)

    def environ(self, pid: int) -> dict[str, str] | None:
        data = self.read(pid, "environ", ENVIRON_MAX)
        if data is None:
            return None
        out: dict[str, str] = {}
        for item in data.split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep:
                out[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        return out

    def fd_targets(self, pid: int, limit: int = FD_MAX) -> list[tuple[str, str]]:
        """(fd path, link target) of up to ``limit`` descriptors."""
        base = self.path(pid, "fd")
        out = []
        for name in self.listdir(base, limit):
            link = self.readlink(f"{base}/{name}")
            if link is not None:
                out.append((f"{base}/{name}", link))
        return out

    def file_id(self, path: str) -> FileId | None:
        st = self.stat_path(path)
        if st is None:
            return None
        return FileId(st.st_dev, st.st_ino, st.st_size)

    def in_root(self, pid: int, path: str) -> str:
        """``path`` as the process sees it (its mount namespace: a container's files)."""
        return self.path(pid, "root") + path


class RecordingProcFS(ProcFS):
    """A :class:`ProcFS` that keeps every path it touched, in order (tests, audits)."""

    def __init__(self, root: str = "/proc") -> None:
        self.accessed: list[str] = []
        super().__init__(root, self.accessed.append)

    def touched(self, pid: int) -> list[str]:
        """The files of ``pid`` touched so far, as names relative to ``root/PID``."""
        prefix = self.path(pid) + "/"
        return [p[len(prefix) :] for p in self.accessed if p.startswith(prefix)]
