"""One terminal monitor in a real pseudo-terminal on the simulated NVML driver, measured.

Where it sits: outside the data flow, under ``scripts/bench.py``, which runs vramtop and nvitop
through :func:`measure` alike, on the same ``tests/simdriver`` scenario and the same real child
processes. A pyte screen decides what is on screen (the two programs move the cursor
differently, so byte matching would judge them unequally). One run of one monitor:

1. spawn, and wait until a process row of the scenario (one of its PIDs, beside ``sleep``) is
   on screen: start to first process (the median of ``Plan.starts`` starts, the others quit
   there and then);
2. settle, then an idle window on a scenario whose values are constant: bytes per second sent
   to the terminal, and which screen lines changed;
3. the scenario starts to move (some processes grow), settle, then the measured window: CPU
   seconds per wall second and NVML calls per second of every process of the monitor, PSS and
   USS of each at the end, bytes to the terminal per second;
4. key to redraw: Down arrow in a quiet moment until the screen (text or attributes) changes,
   the median of several;
5. quit with ``q``; whatever outlives that is killed.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import pexpect  # noqa: E402
import psutil  # noqa: E402
import pyte  # noqa: E402
from tui import _AnsweringScreen  # noqa: E402

COLS, ROWS = 160, 45
DECCKM = 1 << 5  # pyte's number for private mode 1, application cursor keys
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Plan:
    settle_s: float  # after the first process on screen, before the idle window
    idle_s: float  # constant scenario: bytes to the terminal only
    window_s: float  # moving scenario: CPU, NVML calls, bytes
    key_presses: int
    starts: int  # start to first process: the median of this many starts


@dataclass
class Proc:
    """One process of a monitor, named by its title (``vramtop: sampler``)."""

    title: str
    cpu: float  # CPU seconds per wall second over the measured window
    pss_mib: float
    uss_mib: float


@dataclass
class Figures:
    first_process_s: float = math.nan
    idle_bytes_per_s: float = math.nan
    idle_changed_lines: list[str] = field(default_factory=list)
    cpu: float = math.nan
    pss_mib: float = math.nan
    bytes_per_s: float = math.nan
    key_ms: float = math.nan
    nvml_calls_per_s: float = math.nan
    procs: list[Proc] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: str = ""  # why the run did not finish; its figures are n/a


class Session:
    """A monitor in a pty, its output fed to a screen that answers cursor-position queries
    (blessed waits for that answer at start-up, which would be the pty's fault, not a user's)."""

    def __init__(
        self, argv: Sequence[str], env: dict[str, str], cwd: Path | None, rows: int = ROWS
    ) -> None:
        self.screen = _AnsweringScreen(COLS, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.spawned = time.monotonic()
        self.child = pexpect.spawn(
            argv[0],
            list(argv[1:]),
            env=env,
            dimensions=(rows, COLS),
            timeout=5,
            cwd=str(cwd) if cwd else None,
        )
        self.screen.answer = self.child.send

    def read(self, seconds: float) -> int:
        """Feed what arrives within ``seconds`` (one read) to the screen; the byte count."""
        try:
            data: bytes = self.child.read_nonblocking(65536, timeout=max(0.0, seconds))
        except pexpect.TIMEOUT:
            return 0
        self.stream.feed(data)
        return len(data)

    def pump(self, seconds: float) -> int:
        """Read for ``seconds``; the bytes written in that time."""
        total = 0
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            total += self.read(left)
        return total

    def wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} on screen within {timeout:.0f} s")
            if not self.child.isalive():
                raise RuntimeError(f"exited before showing {what}")
            self.read(0.05)

    def cells(self) -> tuple[tuple[Any, ...], ...]:
        """Every cell with its attributes: a selection bar is a change of attributes only."""
        buf = self.screen.buffer
        return tuple(tuple(buf[y][x] for x in range(COLS)) for y in range(self.screen.lines))


def shows_process(lines: Sequence[str], pids: set[str]) -> bool:
    """A line naming ``sleep`` and one of the scenario's PIDs: a process row."""
    return any("sleep" in line and pids & set(_NUMBER.findall(line)) for line in lines)


def changed_lines(before: Sequence[str], after: Sequence[str]) -> list[str]:
    """ "ROW: text" for each screen line that differs, the words from its first to its last
    changed cell (40 characters at most): which widget drew on constant values."""
    out = []
    for y, (old, new) in enumerate(zip(before, after, strict=True)):
        if old == new:
            continue
        first = next(x for x, (a, b) in enumerate(zip(old, new, strict=True)) if a != b)
        last = max(x for x, (a, b) in enumerate(zip(old, new, strict=True)) if a != b)
        # Out to the blanks around the change: "11:35:19", not "9".
        first = new.rfind(" ", 0, first) + 1
        last = new.find(" ", last + 1) % (len(new) + 1)
        out.append(f"{y + 1}: {new[first : min(last, first + 40)].strip() or '(blank)'}")
    return out


def cpu_seconds(proc: psutil.Process) -> float:
    # schedstat counts nanoseconds on the CPU; cpu_times() moves in clock ticks (10 ms), too
    # coarse for an idle process over a few seconds.
    try:
        with open(f"/proc/{proc.pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        times = proc.cpu_times()
        return float(times.user + times.system)


def title(proc: psutil.Process, top: int, tool: str) -> str:
    """vramtop's processes carry their titles (setproctitle); nvitop is its command's name."""
    words = proc.cmdline()
    text = " ".join(words).strip()
    if text.startswith("vramtop"):
        return text
    if proc.pid == top:
        return tool
    return " ".join([Path(words[0]).name, *words[1:]])[:40] if words else proc.name()


def tree(pid: int) -> list[psutil.Process]:
    top = psutil.Process(pid)
    return [top, *top.children(recursive=True)]


def nvml_calls(stats: Path, pids: set[int]) -> int:
    """NVML calls so far by the given processes, from the driver's per-process counters."""
    total = 0
    for path in stats.glob("calls.*"):
        with contextlib.suppress(ValueError, OSError, IndexError):
            if int(path.name.split(".")[1]) in pids:
                total += sum(int(line.split()[1]) for line in path.read_text().splitlines())
    return total


def key_latency(session: Session, presses: int) -> tuple[float, int]:
    """Median milliseconds from Down to the first screen change, and how many presses changed
    nothing within 2 s."""
    latencies: list[float] = []
    missed = 0
    for _ in range(presses):
        # Press in a quiet moment, so a sample's redraw is not taken for the key's.
        quiet_since = time.monotonic()
        give_up = quiet_since + 2.0
        while time.monotonic() - quiet_since < 0.1 and time.monotonic() < give_up:
            if session.read(0.02):
                quiet_since = time.monotonic()
        before = session.cells()
        # What a terminal sends for Down: ESC O B once the program asked for application
        # cursor keys (curses does, nvitop among them), ESC [ B otherwise.
        session.child.send("\x1bOB" if DECCKM in session.screen.mode else "\x1b[B")
        sent = time.monotonic()
        while time.monotonic() - sent < 2.0:
            if session.read(0.2) and session.cells() != before:
                latencies.append(1000.0 * (time.monotonic() - sent))
                break
        else:
            missed += 1
    return (statistics.median(latencies) if latencies else math.nan), missed


def stop(session: Session, known: Sequence[psutil.Process]) -> list[str]:
    """Quit with q; whatever is still alive after that is killed. Returns what was forced."""
    notes = []
    child = session.child
    with contextlib.suppress(OSError):
        child.send("q")
    deadline = time.monotonic() + 10
    while child.isalive() and time.monotonic() < deadline:
        with contextlib.suppress(pexpect.EOF, OSError):
            session.read(0.1)
    if child.isalive():
        notes.append("did not quit on q within 10 s; killed")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    child.close(force=True)
    _, alive = psutil.wait_procs(list(known), timeout=5)
    for proc in alive:
        notes.append(f"pid {proc.pid} outlived the monitor; killed")
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return notes


def first_process(session: Session, pids: set[str]) -> float:
    """Seconds from spawn until a process row of the scenario is on screen."""
    session.wait(lambda: shows_process(session.screen.display, pids), 120, "process row")
    return time.monotonic() - session.spawned


def measure(
    tool: str,
    argv: Sequence[str],
    env: dict[str, str],
    stats: Path,
    pids: Sequence[int],
    animate: Callable[[], None],
    plan: Plan,
    cwd: Path | None = None,
    rows: int = ROWS,
) -> Figures:
    """Run ``argv`` (a monitor) through the five steps above; ``animate`` switches the scenario
    from constant values to moving ones."""
    out = Figures()
    wanted = {str(p) for p in pids}
    starts = []
    for _ in range(plan.starts - 1):  # start-only runs: start-up is the noisiest figure
        session = Session(argv, env, cwd, rows)
        try:
            starts.append(first_process(session, wanted))
        finally:
            alive: list[psutil.Process] = []
            with contextlib.suppress(psutil.Error):
                alive = tree(session.child.pid)
            out.notes.extend(f"{tool}: {n}" for n in stop(session, alive))
    session = Session(argv, env, cwd, rows)
    known: list[psutil.Process] = []
    try:
        known = tree(session.child.pid)
        starts.append(first_process(session, wanted))
        out.first_process_s = statistics.median(starts)
        session.pump(plan.settle_s)

        before = list(session.screen.display)
        start = time.monotonic()
        written = session.pump(plan.idle_s)
        out.idle_bytes_per_s = written / (time.monotonic() - start)
        after = session.screen.display
        out.idle_changed_lines = changed_lines(before, after)

        animate()
        session.pump(min(plan.settle_s, 2.0))
        known = tree(session.child.pid)
        titles = {p.pid: title(p, session.child.pid, tool) for p in known}
        cpu0 = {p.pid: cpu_seconds(p) for p in known}
        calls0 = nvml_calls(stats, set(titles))
        start = time.monotonic()
        written = session.pump(plan.window_s)
        wall = time.monotonic() - start
        for proc in known:
            try:
                mem = proc.memory_full_info()
                cpu = (cpu_seconds(proc) - cpu0[proc.pid]) / wall
            except psutil.NoSuchProcess:
                out.notes.append(f"{tool}: {titles[proc.pid]} exited during the window")
                continue
            out.procs.append(Proc(titles[proc.pid], cpu, mem.pss / 2**20, mem.uss / 2**20))
        if {p.pid for p in tree(session.child.pid)} != set(titles):
            out.notes.append(f"{tool}: its set of processes changed during the window")
        out.cpu = sum(p.cpu for p in out.procs)
        out.pss_mib = sum(p.pss_mib for p in out.procs)
        out.bytes_per_s = written / wall
        # The driver rewrites its counters once a second: good to about 1/window.
        out.nvml_calls_per_s = (nvml_calls(stats, set(titles)) - calls0) / wall

        out.key_ms, missed = key_latency(session, plan.key_presses)
        if missed:
            out.notes.append(f"{tool}: {missed} of {plan.key_presses} Down presses drew nothing")
    finally:
        out.notes.extend(f"{tool}: {n}" for n in stop(session, known))
    return out
