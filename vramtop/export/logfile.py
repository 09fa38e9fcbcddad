"""Append-only log files for recordings (CSV and NDJSON): whole samples or nothing.

Where it sits: ``export/csvlog.py`` and ``export/ndjson.py`` format a sample as a block of lines;
:class:`LogFile` puts that block on disk with one ``write`` on an ``O_APPEND`` descriptor, so a
reader (or a ``kill -9`` between two samples) never sees half a sample. Opening checks the file's
first line: a file of the same kind is continued, any other non-empty file is refused untouched.
An incomplete last line left by a crash in an earlier run is cut off before appending, so the
new samples start on a fresh line instead of gluing onto a broken one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

TAIL_CHUNK = 65536
FIRST_LINE_MAX = 65536


class LogFileError(Exception):
    """The file cannot be used for this recording; ``str(exc)`` is one line for the user."""


class LogFile:
    """An append-only descriptor plus the whole-block write. ``path`` "-" is stdout."""

    def __init__(
        self,
        path: str,
        header: bytes,
        accepts: Callable[[bytes], bool],
        kind: str,
        fsync: bool = False,
    ) -> None:
        """``header``: written when the file is new or empty (may be b""). ``accepts(first)``:
        whether an existing file whose first line is ``first`` may be continued. ``kind`` names
        the format in error messages."""
        self.path = path
        self.fsync = fsync
        self._own = path != "-"
        if not self._own:
            self.fd = sys.stdout.fileno()
            if header:
                self.write(header)
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LogFileError(f"{path}: {exc.strerror or exc}") from None
        self.fd = fd
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                if header:
                    self.write(header)
                return
            first = os.pread(fd, FIRST_LINE_MAX, 0).split(b"\n", 1)[0]
            if not accepts(first):
                raise LogFileError(
                    f"{path}: exists and is not a vramtop {kind} recording with the same "
                    "columns; refusing to append to it or overwrite it (choose another file)"
                )
            _cut_partial_line(fd, size, path)
        except BaseException:
            os.close(fd)
            raise

    def write(self, block: bytes) -> None:
        """Append ``block`` (whole lines) with as few syscalls as the kernel allows: one."""
        view = memoryview(block)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        if self.fsync and self._own:
            os.fsync(self.fd)

    def close(self) -> None:
        if self._own and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def _cut_partial_line(fd: int, size: int, path: str) -> None:
    """Drop an unterminated last line (a crash mid-write in an earlier run)."""
    start = max(0, size - TAIL_CHUNK)
    tail = os.pread(fd, size - start, start)
    if tail.endswith(b"\n"):
        return
    cut = tail.rfind(b"\n")
    keep = start + cut + 1 if cut >= 0 else 0
    if keep == 0 and start > 0:
        return  # an enormous last line: leave the file alone rather than guess
    print(
        f"vramtop: {path}: dropped an incomplete last line "
        f"({size - keep} bytes) left by an interrupted recording",
        file=sys.stderr,
    )
    os.ftruncate(fd, keep)
