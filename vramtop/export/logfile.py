"""Append-only log files for recordings (CSV and NDJSON): whole samples or nothing.

Where it sits: ``export/csvlog.py`` and ``export/ndjson.py`` format a sample as a block of lines;
:class:`LogFile` puts that block on disk with one ``write`` on an ``O_APPEND`` descriptor, so a
reader (or a ``kill -9`` between two samples) never sees half a sample. Opening checks the file's
first line: a file of the same kind is continued, any other non-empty file is refused untouched.
An incomplete last line left by a crash in an earlier run is cut off before appending, so the
new samples start on a fresh line instead of gluing onto a broken one.

A write that fails raises :class:`LogWriteError` (one line for the user) after cutting off
whatever part of the sample reached the file, so the file stays whole samples. A full disk
(also a quota or a file-size limit) is a pause, not an end: :class:`PausedWrites` skips
samples while it lasts, counts them and says when writing resumes; the recorder and the
exporter actor both use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable
from typing import Any

TAIL_CHUNK = 65536
FIRST_LINE_MAX = 65536


class LogFileError(Exception):
    """The file cannot be used for this recording; ``str(exc)`` is one line for the user."""


# errno -> how the status line names it; each is a pause that ends when space returns.
FULL: dict[int, str] = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file size limit reached",
}


class LogWriteError(Exception):
    """A sample could not be written; ``str(exc)`` is one line, ``full`` says it is a pause."""

    def __init__(self, path: str, exc: OSError) -> None:
        self.path = path
        self.errno = exc.errno or 0
        self.full = FULL.get(self.errno, "")
        where = "stdout" if path == "-" else path
        super().__init__(f"{where}: cannot write: {exc.strerror or exc}")


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
        self._regular = False  # a regular file can be cut back after a partial write
        if not self._own:
            self.fd = sys.stdout.fileno()
            if header:
                self._write_header(header)
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LogFileError(f"{path}: {exc.strerror or exc}") from None
        self.fd = fd
        try:
            info = os.fstat(fd)
            self._regular = stat.S_ISREG(info.st_mode)
            size = info.st_size
            if size == 0:
                if header:
                    self._write_header(header)
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

    def _write_header(self, header: bytes) -> None:
        try:
            self.write(header)
        except LogWriteError as exc:
            raise LogFileError(str(exc)) from None

    def write(self, block: bytes) -> None:
        """Append ``block`` (whole lines) with as few syscalls as the kernel allows: one.

        Raises :class:`LogWriteError`; the part of ``block`` that did reach a regular file is
        cut off again first, so no sample is left half written."""
        start = os.fstat(self.fd).st_size if self._regular else 0
        view = memoryview(block)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
            if self.fsync and self._own:
                os.fsync(self.fd)
        except BrokenPipeError:
            raise  # the reader went away (`| head`): the end of the stream, not a failure
        except OSError as exc:
            if self._regular and len(view) < len(block):
                # If even this fails, the next open cuts the partial line.
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, start)
            raise LogWriteError(self.path, exc) from None

    def close(self) -> None:
        if self._own and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


class PausedWrites:
    """One recording's writes through a full disk: while the disk is full each sample is
    skipped and counted; the first sample that fits again resumes the recording."""

    def __init__(self, path: str) -> None:
        self.where = "stdout" if path == "-" else path
        self.reason = ""  # why writing is paused; "" while it is not
        self.skipped = 0  # samples skipped in the current pause
        self.lost = 0  # samples skipped in every pause so far

    @property
    def paused(self) -> bool:
        return bool(self.reason)

    def status(self) -> str:
        """The status line while paused ("" when not)."""
        if not self.reason:
            return ""
        n = self.skipped
        return f"recording paused: {self.reason} ({n} sample{'s' * (n != 1)} skipped)"

    def write(self, write: Callable[..., None], *args: Any, **kwargs: Any) -> str:
        """Run one sample's ``write(*args, **kwargs)``. Returns a line for the user when
        something changed (paused, resumed), "" otherwise. Errors other than a full disk are
        raised."""
        try:
            write(*args, **kwargs)
        except LogWriteError as exc:
            if not exc.full:
                raise
            self.skipped += 1
            self.lost += 1
            if self.reason:
                return ""
            self.reason = exc.full
            return f"{self.where}: {self.status()}; writing resumes when space returns"
        if not self.reason:
            return ""
        n, why = self.skipped, self.reason
        self.reason, self.skipped = "", 0
        return f"{self.where}: recording resumed ({n} sample{'s' * (n != 1)} skipped: {why})"


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
