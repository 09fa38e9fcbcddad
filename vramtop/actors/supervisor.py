"""The supervisor: owns shared memory, mailboxes, config and the lifetimes of every actor.

Erlang/OTP style: each actor has a child spec; a dead actor is restarted with exponential
back-off and gets its old mailbox back (nothing queued is lost); an actor that dies more than
``max_restarts`` times within ``period`` seconds is given up, the render process is told and the
rest keep running. State lives outside the actors (shared memory, mailboxes, the scenario clock),
so a restart continues where the dead process stopped.

It owns the shared memory (design principle 4): given a :class:`ShmShape` it removes segments
left by dead runs, creates the history segment before the first actor starts and unlinks it on
every way out. It also creates the state channels (``actors/mailbox.py``) that carry samples and
analyses, newest-wins, to their subscribers.

The supervisor also owns the terminal's safety: it saves the termios state before the render
process starts and restores it (leaving the alternate screen, showing the cursor) whenever the
render process dies, before restarting it. SIGINT/SIGTERM stop everything in order; SIGHUP
reloads the config and sends it to every actor. Shared memory is unlinked on every exit path;
a run that was SIGKILLed is cleaned up by the next start (``shm.segment.cleanup_stale``).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection
from multiprocessing.process import BaseProcess
from typing import Any

from vramtop.actors.base import ActorContext, ActorCore, run_actor, set_title
from vramtop.actors.mailbox import Mailbox, make_channels
from vramtop.config import Config, ConfigError, keep_restart_only, load_config
from vramtop.messages import (
    ActorError,
    ActorHealth,
    ActorState,
    ConfigUpdate,
    LogLine,
    Quit,
    Stop,
)
from vramtop.shm import ShmSegment, cleanup_stale

LOG_LINES_KEPT = 2000  # printed after the terminal is restored; older ones are counted

# Mouse reporting off, leave the alternate screen, show the cursor, reset attributes.
ALT_SCREEN_OFF = "\x1b[?1006l\x1b[?1000l\x1b[?1049l\x1b[?25h\x1b[0m"
CONTEXT = mp.get_context("fork")  # explicit: 3.14 changes the default start method


@dataclass(frozen=True)
class ShmShape:
    """The history segment the supervisor creates: sized once, never on the hot path."""

    history_length: int
    gpu_count: int
    process_slots: int


def channel_capacity(process_slots: int) -> int:
    """Bytes a state channel holds: room for a sample of every process slot (a message that
    does not fit travels through the command queue instead, still newest-wins per batch)."""
    return 256 * 1024 + 1024 * process_slots


@dataclass
class ChildSpec:
    name: str
    factory: Callable[[], ActorCore]
    max_restarts: int = 5  # restart intensity: this many restarts ...
    period: float = 30.0  # ... within this many seconds, then the actor is given up
    heartbeat_timeout: float = 15.0
    essential: bool = False  # the program cannot go on without it (the render process)
    owns_terminal: bool = False
    every_state: bool = False  # needs every sample, not the newest (the exporter's files)


def lazy(module: str, name: str, *args: Any, **kwargs: Any) -> Callable[[], ActorCore]:
    """A :class:`ChildSpec` factory that imports the core's module when it is called: in the
    actor's own process, after the fork (``run_actor``), never in the supervisor."""

    def make() -> ActorCore:
        import importlib

        core: ActorCore = getattr(importlib.import_module(module), name)(*args, **kwargs)
        return core

    return make


@dataclass
class _Child:
    spec: ChildSpec
    inbox: Mailbox
    process: BaseProcess | None = None
    restarts: int = 0
    recent: deque[float] = field(default_factory=deque)
    failed: bool = False
    last_error: str = ""
    start_at: float | None = 0.0  # monotonic time of the next (re)start; None = not scheduled
    judged_from: float = 0.0  # monotonic time before which a busy stretch is not judged
    writing_since: Any = field(default_factory=lambda: CONTEXT.RawValue("d", 0.0))
    busy_since: Any = field(default_factory=lambda: CONTEXT.RawValue("d", 0.0))  # heartbeat
    stalled: bool = False  # its terminal output is blocked (said once in the log)


class Supervisor:
    def __init__(
        self,
        config: Config,
        specs: list[ChildSpec],
        shm_name: str = "",
        config_path: str | None = None,
        overrides: Mapping[str, object] | None = None,
        housekeeping: Callable[[], object] | None = None,
        shm: ShmShape | None = None,
        state_routes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """``state_routes``: which actors subscribe to each state kind, e.g.
        ``{"sample": ("render",), "rows": ("analyzer", "enricher")}``; a kind not routed
        (or an actor not listed) gets its messages through the command queue."""
        self.housekeeping = housekeeping  # called every loop turn (reaping demo children)
        self.config = config
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        self.shm_name = shm_name
        self.shm_shape = shm
        self.segment: ShmSegment | None = None
        names = {s.name for s in specs}
        queued = {s.name for s in specs if s.every_state}
        routes = {
            k: [a for a in v if a in names and a not in queued]
            for k, v in (state_routes or {}).items()
        }
        self.channels = make_channels(routes, channel_capacity(config.general.process_slots))
        self.inbox = Mailbox(CONTEXT, "supervisor")
        self.children = {
            s.name: _Child(s, Mailbox(CONTEXT, s.name, self.channels, not s.every_state))
            for s in specs
        }
        self.stopping = False
        self.exit_code = 0
        self.exit_message = ""
        self._signals: deque[int] = deque()
        self._termios: Any = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        # The actors' stderr: a pipe whose read end only this process holds open for reading.
        self._log_r, self._log_w = os.pipe()
        os.set_blocking(self._log_r, False)
        self.log: deque[str] = deque(maxlen=LOG_LINES_KEPT)
        self.logged = 0
        self._log_partial = b""

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> int:
        set_title(None)
        self._install_signals()
        self._save_terminal()
        try:
            self._create_segment()
            while not self.stopping:
                self._start_due()
                self._wait(1.0)
                self._handle_signals()
                self._read_log()
                self._handle_inbox()
                self._reap()
                self._check_heartbeats()
                if self.housekeeping is not None:
                    self.housekeeping()
        finally:
            self._shutdown()
        return self.exit_code

    def _create_segment(self) -> None:
        if self.shm_shape is None:
            return
        cleanup_stale()
        shape = self.shm_shape
        self.segment = ShmSegment.create(
            shape.history_length, max(1, shape.gpu_count), shape.process_slots
        )
        self.shm_name = self.segment.name

    def _install_signals(self) -> None:
        for signo in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCONT, signal.SIGTSTP):
            signal.signal(signo, self._on_signal)

    def _on_signal(self, signo: int, _frame: object) -> None:
        # Only queue it: the main loop acts on it (self-pipe wakes the wait).
        self._signals.append(signo)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"s")

    def _save_terminal(self) -> None:
        if any(c.spec.owns_terminal for c in self.children.values()) and os.isatty(0):
            import termios

            with contextlib.suppress(termios.error):
                self._termios = termios.tcgetattr(0)

    def _terminal_gone(self) -> bool:
        """Whether the terminal we were started on hung up (closed window, dropped link)."""
        if self._termios is None:
            return False
        import select

        try:
            poller = select.poll()
            poller.register(0, select.POLLIN)
            events = poller.poll(0)
        except (OSError, ValueError):
            return True
        return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events)

    def restore_terminal(self) -> None:
        """Put the terminal back as the user had it (the render process may have been killed).
        Never blocks for long: with output stopped (Ctrl-S, a frozen link) a write would wait
        forever, so it is given a second; TCSANOW, because draining would wait the same."""
        if self._termios is None or self._terminal_gone():
            return
        import termios

        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(0, termios.TCSANOW, self._termios)
        _write_with_timeout(1, ALT_SCREEN_OFF.encode(), 1.0)

    # -- children -------------------------------------------------------------------------
    def _context_for(self, child: _Child) -> ActorContext:
        return ActorContext(
            name=child.spec.name,
            config=self.config,
            inbox=child.inbox,
            supervisor=self.inbox,
            outboxes={name: c.inbox for name, c in self.children.items()},
            shm_name=self.shm_name,
            channels=self.channels,
            log_fd=self._log_w,
            owns_terminal=child.spec.owns_terminal,
            writing_since=child.writing_since,
            busy_since=child.busy_since,
        )

    def _start(self, child: _Child) -> None:
        child.inbox.repair()
        proc = CONTEXT.Process(
            target=run_actor,
            args=(child.spec.factory, self._context_for(child)),
            name=f"vramtop: {child.spec.name}",
        )
        proc.daemon = False
        # What the supervisor imported is shared with every actor page by page until one
        # writes it. A collection in the child would write every tracked object's header (and
        # copy its page): frozen objects are never traversed.
        gc.freeze()
        child.busy_since.value = time.monotonic()  # busy from its start to its first wait
        proc.start()
        child.process = proc
        child.start_at = None
        child.judged_from = time.monotonic()

    def _start_due(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.start_at is not None and now >= child.start_at and not self.stopping:
                self._start(child)

    def _wait(self, timeout: float) -> None:
        now = time.monotonic()
        due = [c.start_at for c in self.children.values() if c.start_at is not None]
        if due:
            timeout = max(0.0, min(timeout, min(due) - now))
        waitables: list[Any] = [self._wake_r, self._log_r, self.inbox.fileno()]
        waitables += [c.process.sentinel for c in self.children.values() if c.process is not None]
        with contextlib.suppress(InterruptedError):
            connection.wait(waitables, timeout)

    def _handle_signals(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self._wake_r, 1024)
        while self._signals:
            signo = self._signals.popleft()
            if signo == signal.SIGHUP:
                if self._terminal_gone():
                    self.stopping = True  # a hang-up of our terminal, not `kill -HUP`
                else:
                    self.reload_config()
            elif signo == signal.SIGTSTP:
                self._suspend()
            elif signo == signal.SIGCONT:
                # Back from Ctrl-Z: the actors were stopped too; their silence was not a hang.
                now = time.monotonic()
                for child in self.children.values():
                    child.judged_from = now
            else:
                self.stopping = True

    def _suspend(self) -> None:
        """Ctrl-Z. The shell takes the terminal back as soon as this process (its job) stops,
        so stop only once the render process has restored the terminal and stopped itself:
        done from the background, its terminal writes would stop it half-way (SIGTTOU)."""
        owners = [
            c.process.pid
            for c in self.children.values()
            if c.spec.owns_terminal and c.process is not None and c.process.pid
        ]
        deadline = time.monotonic() + 1.0
        while owners and not all(_stopped(pid) for pid in owners):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here until SIGCONT (`fg`)
        signal.signal(signal.SIGTSTP, self._on_signal)

    def reload_config(self) -> None:
        """SIGHUP: reload; a bad file keeps the running config and the render process says why."""
        try:
            new = load_config(self.config_path, overrides=self.overrides)
        except ConfigError as exc:
            self._post_all(ConfigUpdate(self.config, error=str(exc), source=self.config_path or ""))
            return
        # The shared memory was sized from the running values; a new size waits for a restart.
        new, note = keep_restart_only(self.config, new)
        self.config = new
        self._post_all(ConfigUpdate(new, source=new.source, note=note))

    def _post_all(self, message: object) -> None:
        for child in self.children.values():
            child.inbox.post(message)

    def _read_log(self, final: bool = False) -> None:
        """Take what the actors wrote; tell the render process the newest line."""
        data = b""
        while True:
            try:
                chunk = os.read(self._log_r, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        if not data and not (final and self._log_partial):
            return
        data = self._log_partial + data
        *lines, self._log_partial = data.split(b"\n")
        if final and self._log_partial:
            lines.append(self._log_partial)
            self._log_partial = b""
        texts = [ln.decode("utf-8", "replace").rstrip() for ln in lines]
        texts = [t for t in texts if t]
        if not texts:
            return
        self.logged += len(texts)
        if not any(c.spec.owns_terminal for c in self.children.values()):
            # Headless (the exporter): no screen to keep them off; say them as they come.
            for text in texts:
                print(text, file=sys.stderr, flush=True)
            return
        self.log.extend(texts)
        if not final:
            from vramtop.sanitize import clean

            for child in self.children.values():
                if child.spec.owns_terminal:
                    child.inbox.post(LogLine(clean(texts[-1]), self.logged))

    def _print_log(self) -> None:
        """After the terminal is restored: everything the actors wrote meanwhile (htop's
        dumpStderr)."""
        self._read_log(final=True)
        if not self.log or not any(c.spec.owns_terminal for c in self.children.values()):
            for line in self.log:
                print(line, file=sys.stderr)
            return
        kept = len(self.log)
        more = f" (the last {kept} of {self.logged})" if self.logged > kept else ""
        print(f"vramtop: the actors wrote{more}:", file=sys.stderr)
        for line in self.log:
            print(f"  {line}", file=sys.stderr)

    def _handle_inbox(self) -> None:
        for message in self.inbox.drain():
            if isinstance(message, ActorError):
                child = self.children.get(message.actor)
                if child is not None:
                    child.last_error = message.error
            elif isinstance(message, Quit):
                self.stopping = True

    def _reap(self) -> None:
        for child in self.children.values():
            proc = child.process
            if proc is None or proc.is_alive():
                continue
            proc.join(0)
            code = proc.exitcode
            child.process = None
            if child.spec.owns_terminal:
                self.restore_terminal()
            if self.stopping:
                continue
            if child.spec.owns_terminal and (code == 0 or self._terminal_gone()):
                self.stopping = True  # the user quit, or the terminal went away
                continue
            if not child.last_error:
                child.last_error = f"exited with {_describe_exit(code)}"
            self._on_crash(child)

    def _on_crash(self, child: _Child) -> None:
        now = time.monotonic()
        child.recent.append(now)
        while child.recent and now - child.recent[0] > child.spec.period:
            child.recent.popleft()
        if len(child.recent) > child.spec.max_restarts:
            child.failed = True
            child.start_at = None
            if child.spec.essential:
                self.exit_code = 1
                self.exit_message = f"vramtop: {child.spec.name} keeps failing: {child.last_error}"
                self.stopping = True
        else:
            child.restarts += 1
            backoff = min(5.0, 0.1 * 2 ** (len(child.recent) - 1))
            child.start_at = now + backoff
        self._publish_health()

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            proc = child.process
            busy = child.busy_since.value  # 0 while the actor waits for work: not hanging
            judged = max(busy, child.judged_from)  # a stretch from before a SIGCONT is forgiven
            if proc is not None and busy > 0.0 and now - judged > child.spec.heartbeat_timeout:
                if _stopped(proc.pid or 0):
                    # Stopped (SIGSTOP, a debugger), not hung: it beats again once continued.
                    child.judged_from = now
                    continue
                if child.writing_since.value > 0.0:
                    # Blocked writing to a terminal whose output is stopped (Ctrl-S, XOFF, a
                    # frozen ssh link): killing it would only block its successor the same way.
                    child.judged_from = now
                    child.stalled = True
                    continue
                child.last_error = f"no heartbeat for {child.spec.heartbeat_timeout:.0f} s"
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid or 0, signal.SIGKILL)

    def health(self) -> ActorHealth:
        return ActorHealth(
            tuple(
                ActorState(
                    name=name,
                    alive=c.process is not None and c.process.is_alive(),
                    restarts=c.restarts,
                    failed=c.failed,
                    last_error=c.last_error,
                )
                for name, c in self.children.items()
            )
        )

    def _publish_health(self) -> None:
        health = self.health()
        for child in self.children.values():
            if child.spec.owns_terminal:
                child.inbox.post(health)

    # -- shutdown -------------------------------------------------------------------------
    def _shutdown(self) -> None:
        # Stop the terminal owner first so the user gets the shell back at once.
        order = sorted(self.children.values(), key=lambda c: not c.spec.owns_terminal)
        for child in order:
            if child.process is not None:
                child.inbox.post(Stop("shutdown"))
        deadline = time.monotonic() + 1.5
        for child in order:
            if child.process is not None:
                child.process.join(max(0.0, deadline - time.monotonic()))
        for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 1.0)):
            alive = [c.process for c in order if c.process is not None and c.process.is_alive()]
            for proc in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid or 0, sig)
            for proc in alive:
                proc.join(grace)
        self.restore_terminal()
        with contextlib.suppress(OSError):
            os.close(self._log_w)  # every writer has exited: what is left can be read to EOF
        self._print_log()
        for child in self.children.values():
            child.inbox.close()
        self.inbox.close()
        if self.segment is not None:
            self.segment.close()
            self.segment.unlink()
            self.segment = None
        if self.exit_message:
            print(self.exit_message, file=sys.stderr)


def _write_with_timeout(fd: int, data: bytes, seconds: float) -> None:
    """Write from a daemon thread and stop waiting after ``seconds`` (the thread is left to
    finish, or to be dropped at exit, when the terminal never takes the bytes)."""
    import threading

    def write() -> None:
        with contextlib.suppress(OSError):
            os.write(fd, data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(seconds)


def _stopped(pid: int) -> bool:
    """Whether the process is stopped (or gone): state T in /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"T", b"t", b"Z", b"X")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"code {code}"
