"""Where PELT runs: in this process (tests, ``replay``, the evaluation) or in a short-lived
helper process (the live analyzer), so ruptures and SciPy never stay in the long-lived analyzer.

Where it sits: :class:`vramtop.analysis.analyzer.Analyzer` asks its segmenter for the segments
of the process whose detail panel is open, and, with ``oom_prediction.algorithm = "pelt"``, for
the start of each GPU's current segment. :class:`InProcess` calls ``analysis/pelt.py`` directly.
:class:`PeltHelper` forks a helper process on the first request (titled ``vramtop: pelt``), sends
it each request over a pipe and waits for the answer for at most ``TIMEOUT_S``; the helper
imports ruptures, answers, and exits after ``IDLE_S`` without a request, taking the ~80 MiB of
ruptures and SciPy with it. Closing the detail panel therefore frees that memory a few seconds
later, and the analyzer itself never imports them. A helper that died or timed out is replaced
on the next request; until then the answer is "no segments" with a note saying why.

Whether ruptures is installed is found without importing it (``importlib.util.find_spec``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np

from vramtop.analysis.model import Segment
from vramtop.analysis.pelt import PELT_MISSING_HINT

TIMEOUT_S = 2.0  # PELT over 300 points takes tens of milliseconds
START_TIMEOUT_S = 30.0  # importing ruptures and SciPy on a busy machine takes seconds
IDLE_S = 10.0
HELPER_TITLE = "vramtop: pelt"

Segments = tuple[tuple[Segment, ...], str]  # (segments, why there are none)


class Segmenter(Protocol):
    def segments(self, ts: object, row: object, starts_in_window: bool) -> Segments: ...

    def segment_start(self, ts: object, used: object) -> float | None: ...

    def installed(self) -> bool: ...

    def idle(self) -> None: ...

    def close(self) -> None: ...


def installed() -> bool:
    """Is ruptures importable? (Found on the path, not imported.)"""
    try:
        return importlib.util.find_spec("ruptures") is not None
    except (ImportError, ValueError):
        return False


class InProcess:
    """PELT in the calling process."""

    def segments(self, ts: object, row: object, starts_in_window: bool) -> Segments:
        from vramtop.analysis import pelt

        if not pelt.available():
            return (), PELT_MISSING_HINT
        return tuple(pelt.segments(ts, row, starts_in_window=starts_in_window)), ""

    def segment_start(self, ts: object, used: object) -> float | None:
        from vramtop.analysis import pelt

        return pelt.current_segment_start(ts, used)

    def installed(self) -> bool:
        from vramtop.analysis import pelt

        return pelt.available()  # in this process importing it is the point

    def idle(self) -> None:
        pass

    def close(self) -> None:
        pass


def _serve(conn: Connection, idle_s: float) -> None:
    """The helper process: answer requests until the pipe closes or nobody asks for a while."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops the program, not Ctrl-C
    with contextlib.suppress(Exception):
        import setproctitle

        setproctitle.setproctitle(HELPER_TITLE)
    from vramtop.analysis import pelt

    try:
        conn.send(("ready", pelt.available()))  # imports ruptures here, once
        while conn.poll(idle_s):
            try:
                kind, args = conn.recv()
            except (EOFError, OSError):
                break
            answer: Any
            try:
                if kind == "segments":
                    ts, row, starts = args
                    if not pelt.available():
                        answer = ((), PELT_MISSING_HINT)
                    else:
                        answer = (tuple(pelt.segments(ts, row, starts_in_window=starts)), "")
                else:
                    ts, used = args
                    answer = pelt.current_segment_start(ts, used)
            except Exception as exc:  # a degenerate series must not kill the helper
                answer = (
                    ((), f"segments failed: {type(exc).__name__}") if kind == "segments" else None
                )
            conn.send(answer)
    finally:
        conn.close()


class PeltHelper:
    """PELT in a helper process that lives only while it is asked (see the module docstring)."""

    def __init__(self, idle_s: float = IDLE_S, timeout_s: float = TIMEOUT_S) -> None:
        self.idle_s = idle_s
        self.timeout_s = timeout_s
        self._proc: Any = None
        self._conn: Connection | None = None
        self.started = 0  # helpers started so far (diagnostics, tests)

    def installed(self) -> bool:
        return installed()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else int(self._proc.pid)

    def alive(self) -> bool:
        return self._proc is not None and bool(self._proc.is_alive())

    def _ensure(self) -> Connection | None:
        if self._conn is not None and self.alive():
            return self._conn
        self._reap()
        ctx = multiprocessing.get_context("fork")  # named: the default changes in Python 3.14
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, self.idle_s), name=HELPER_TITLE, daemon=True)
        try:
            proc.start()
        except OSError:
            parent.close()
            child.close()
            return None
        child.close()
        self._proc, self._conn = proc, parent
        self.started += 1
        try:
            ready = parent.poll(START_TIMEOUT_S) and parent.recv()[0] == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._reap()
            return None
        return parent

    def _ask(self, kind: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        conn = self._ensure()
        if conn is None:
            return False, None
        try:
            conn.send((kind, args))
            if conn.poll(self.timeout_s):
                return True, conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            pass
        self._reap()  # too slow or gone: the next request starts a fresh one
        return False, None

    def segments(self, ts: object, row: object, starts_in_window: bool) -> Segments:
        if not installed():
            return (), PELT_MISSING_HINT
        t = np.asarray(ts, dtype=np.float64).copy()
        r = np.asarray(row, dtype=np.float64).copy()
        ok, answer = self._ask("segments", (t, r, bool(starts_in_window)))
        if not ok:
            return (), "segments: the PELT helper did not answer in time"
        segments, note = answer
        return tuple(segments), str(note)

    def segment_start(self, ts: object, used: object) -> float | None:
        t = np.asarray(ts, dtype=np.float64).copy()
        u = np.asarray(used, dtype=np.float64).copy()
        ok, answer = self._ask("start", (t, u))
        return float(answer) if ok and answer is not None else None

    def _reap(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None
        proc = self._proc
        self._proc = None
        if proc is not None:
            if proc.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)
            proc.join(timeout=1.0)

    def idle(self) -> None:
        """Called on ticks that want no segments: collect a helper that left on its own."""
        if self._proc is not None and not self._proc.is_alive():
            self._reap()

    def close(self) -> None:
        self._reap()
