"""The shared loop that runs one actor core in its own OS process.

An actor core is a plain object (the functional core, design principle 1) whose methods return
the messages it sends, as ``[(destination, message)]``: ``start`` once in the child, ``handle``
with every batch drained from its mailbox (the newest of each state kind, then the commands, in
order), ``tick`` when its deadline comes (it returns the next deadline too), ``stop`` at the end.
Tests call cores directly and look at what they return. :func:`run_actor` is the thin shell
around it: process title, signal dispositions, inbox waits, heartbeats, delivery, and
let-it-crash — an exception is reported to the supervisor in one line and the process exits
non-zero; the supervisor decides what happens next.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import Any, Protocol

from vramtop.actors.mailbox import Mailbox, Packed, StateChannel
from vramtop.config import Config
from vramtop.messages import ActorError, ConfigUpdate, Stop, state_kind

# The heartbeat is a number in shared memory, not a message: the monotonic time this actor
# last left its wait (0 while it waits). An idle actor costs the supervisor no wake-up, and
# one stuck in a step shows as busy for longer than its spec's heartbeat timeout.
IDLE_WAKE_SECONDS = 5.0  # the longest wait: the parent check, where PR_SET_PDEATHSIG is not

Out = list[tuple[str, object]]
"""What a core sends: (destination actor, or "supervisor"; message)."""


class _RawSeconds:
    """A stand-in for the shared value where an actor core is run without a supervisor."""

    value = 0.0


@dataclass
class ActorContext:
    """What an actor is given by the supervisor when it (re)starts."""

    name: str
    config: Config
    inbox: Mailbox
    supervisor: Mailbox
    outboxes: Mapping[str, Mailbox]
    shm_name: str
    channels: Mapping[str, StateChannel] = field(default_factory=dict)
    log_fd: int = -1  # the supervisor's log pipe: this actor's stderr (and stdout) go there
    owns_terminal: bool = False  # keeps fd 1 (the render process draws on it)
    # Shared with the supervisor: the monotonic time a blocking terminal write began, 0 when
    # none is in progress (a render process stuck in write() is stalled, not hung).
    writing_since: Any = None
    # Shared with the supervisor: the heartbeat (see IDLE_WAKE_SECONDS).
    busy_since: Any = field(default_factory=_RawSeconds)
    extra: dict[str, object] = field(default_factory=dict)

    def deliver(self, out: Out) -> None:
        """Send a core's messages. One message object sent to several actors is pickled once:
        state goes into its channel and rings each subscriber; commands are queued."""
        groups: dict[int, tuple[object, list[Mailbox]]] = {}
        for dest, message in out:
            box = self.supervisor if dest == "supervisor" else self.outboxes.get(dest)
            if box is not None:
                groups.setdefault(id(message), (message, []))[1].append(box)
        for message, boxes in groups.values():
            _deliver_one(message, boxes, self.channels)


def _deliver_one(
    message: object, boxes: list[Mailbox], channels: Mapping[str, StateChannel]
) -> None:
    kind = state_kind(message)
    channel = channels.get(kind) if kind is not None else None
    data: bytes | None = None
    if channel is not None:
        subscribers = [b for b in boxes if channel.kind in b.channels]
        if subscribers:
            data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            if channel.publish(data):
                for box in subscribers:
                    box.ring(channel)
                boxes = [b for b in boxes if channel.kind not in b.channels]
    if len(boxes) == 1 and data is None:
        boxes[0].post(message)
    elif boxes:
        packed = Packed(data) if data is not None else Packed.of(message)
        for box in boxes:
            box.post(packed)


class ActorCore(Protocol):
    """What the shell needs of a core. ``fds()``/``on_fd(fd) -> Out`` are optional: only the
    render process has a keyboard to wait on."""

    done: bool  # True when the core wants its process to end (exit code 0)

    def start(self, ctx: ActorContext) -> Out: ...

    def handle(self, batch: Sequence[object], now: float) -> Out: ...

    def tick(self, now: float) -> tuple[float, Out]:
        """Do one step; return the monotonic time of the next wanted tick, and messages."""
        ...

    def stop(self) -> None: ...


class _StopRequested(Exception):
    pass


def set_title(name: str | None) -> None:
    """``vramtop: NAME`` for an actor, plain ``vramtop`` for the supervisor (name None)."""
    try:
        import setproctitle

        setproctitle.setproctitle("vramtop" if name is None else f"vramtop: {name}")
    except Exception:  # a missing title is cosmetic, never fatal
        pass


def run_actor(make: Callable[[], ActorCore], ctx: ActorContext) -> None:
    """Body of an actor process. Never returns: exits with 0 (stopped) or 1 (crashed).

    The core is made here, after the fork: what only this actor imports (the terminal library,
    the statistics, the HTTP client) is imported once, in the one process that uses it, and
    the actors import theirs side by side instead of the supervisor importing them in turn."""
    set_title(ctx.name)
    # Every disposition this process relies on is set here: a fork inherits the supervisor's
    # handlers (htop's CRT_installSignalHandlers does the same). Ctrl-C and a hang-up reach the
    # whole foreground group; only the supervisor acts on them. Ctrl-Z stops every actor by the
    # default action (the render process installs its own handler to give the terminal back).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTSTP, signal.SIG_DFL)
    signal.signal(signal.SIGCONT, signal.SIG_DFL)
    signal.signal(signal.SIGWINCH, signal.SIG_IGN)

    def _term(_signo: int, _frame: object) -> None:
        raise _StopRequested

    signal.signal(signal.SIGTERM, _term)
    _die_with_parent()
    _redirect_output(ctx)
    code = 0
    core: ActorCore | None = None
    try:
        _injected_fault(ctx.name)
        core = make()
        ctx.deliver(core.start(ctx))
        _loop(core, ctx)
    except _StopRequested:
        code = 0
    except Exception as exc:  # let it crash: report one line, exit non-zero
        code = 1
        line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        ctx.supervisor.post(
            ActorError(ctx.name, line, details=tuple(traceback.format_exc().splitlines()[-8:]))
        )
    finally:
        with contextlib.suppress(Exception, _StopRequested):
            if core is not None:
                core.stop()
    sys.stdout.flush()
    # Give the mailbox feeder thread a moment to flush the last message, then leave without
    # running inherited atexit handlers (they belong to the supervisor).
    for box in (ctx.supervisor, *ctx.outboxes.values()):
        box.flush()
    os._exit(code)


def _die_with_parent() -> None:
    """An actor never outlives its supervisor (a SIGKILLed supervisor leaves no orphans):
    the kernel sends SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``); the loop also
    checks its parent at every heartbeat, for where that is not available."""
    import ctypes

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


def _redirect_output(ctx: ActorContext) -> None:
    """While the render process owns the screen nothing else may write on it: stderr (and,
    but for the render process, stdout) goes to the supervisor's log pipe, which shows the
    newest line in the status line and prints them all once the terminal is restored.
    Logging is configured here too: unconfigured, Python writes WARNING records to stderr
    bare, and a driver's warning would be one more anonymous line."""
    import logging

    if ctx.log_fd >= 0:
        with contextlib.suppress(OSError):
            os.dup2(ctx.log_fd, 2)
            if not ctx.owns_terminal:
                os.dup2(ctx.log_fd, 1)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{ctx.name}: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def _injected_fault(name: str) -> None:
    """``VRAMTOP_FAULT=sampler`` makes that actor crash at every start: how the supervisor's
    restart intensity is exercised end to end (tests, and anyone checking a deployment)."""
    if name in os.environ.get("VRAMTOP_FAULT", "").split(","):
        raise RuntimeError(f"injected fault in {name} (VRAMTOP_FAULT)")


def _loop(core: ActorCore, ctx: ActorContext) -> None:
    inbox_fd = ctx.inbox.fileno()
    fds = getattr(core, "fds", None)
    on_fd = getattr(core, "on_fd", None)
    next_tick = time.monotonic()
    parent = os.getppid()
    busy = ctx.busy_since
    busy.value = next_tick
    # A (re)started actor begins with the newest state, whatever its predecessor left unread.
    first = ctx.inbox.resync()
    if first:
        ctx.deliver(core.handle(first, time.monotonic()))
    while not core.done:
        now = time.monotonic()
        if os.getppid() != parent:
            return  # the supervisor is gone: nobody would restart or read us
        if now >= next_tick:
            # What is already queued comes first: a tick must not draw (or send) what a
            # waiting message has made stale, e.g. right after a SIGCONT.
            if connection.wait([inbox_fd], 0) and not _take_batch(core, ctx):
                return
            next_tick, out = core.tick(time.monotonic())
            ctx.deliver(out)
            continue
        timeout = min(max(0.0, next_tick - now), IDLE_WAKE_SECONDS)
        extra: list[int] = fds() if fds is not None else []
        busy.value = 0.0  # waiting is not hanging: the supervisor judges only busy stretches
        ready = connection.wait([inbox_fd, *extra], timeout)
        busy.value = time.monotonic()
        for fd in ready:
            if fd == inbox_fd:
                if not _take_batch(core, ctx):
                    return
            elif on_fd is not None:
                ctx.deliver(on_fd(int(fd)))  # type: ignore[arg-type]
            if core.done:
                return


def _take_batch(core: ActorCore, ctx: ActorContext) -> bool:
    """Hand everything queued to the core at once; False when a Stop arrived (what came
    before it is still handled)."""
    batch: list[object] = []
    stopped = False
    for message in ctx.inbox.drain():
        if isinstance(message, Stop):
            stopped = True
            break
        if isinstance(message, ConfigUpdate) and not message.error:
            ctx.config = message.config
        batch.append(message)
    if batch:
        ctx.deliver(core.handle(batch, time.monotonic()))
    return not stopped
