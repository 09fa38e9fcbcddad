"""The shared loop that runs one actor core in its own OS process.

An actor core is a plain object (the functional core, design principle 1): ``start`` once in the
child, ``handle`` for each inbox message, ``tick`` when its deadline comes, ``stop`` at the end.
:func:`run_actor` is the thin shell around it: process title, signals, inbox waits, heartbeats,
and let-it-crash — an exception is reported to the supervisor in one line and the process exits
non-zero; the supervisor decides what happens next.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import Protocol

from vramtop.actors.mailbox import Mailbox, Packed
from vramtop.config import Config
from vramtop.messages import ActorError, ConfigUpdate, Heartbeat, Stop

HEARTBEAT_SECONDS = 1.0


@dataclass
class ActorContext:
    """What an actor is given by the supervisor when it (re)starts."""

    name: str
    config: Config
    inbox: Mailbox
    supervisor: Mailbox
    outboxes: Mapping[str, Mailbox]
    shm_name: str
    extra: dict[str, object] = field(default_factory=dict)

    def send(self, actor: str, message: object) -> None:
        box = self.outboxes.get(actor)
        if box is not None:
            box.post(message)

    def broadcast(self, actors: Iterable[str], message: object) -> None:
        """Send one message to several actors, pickled once."""
        boxes = [self.outboxes[a] for a in actors if a in self.outboxes]
        if len(boxes) == 1:
            boxes[0].post(message)
        elif boxes:
            packed = Packed.of(message)
            for box in boxes:
                box.post(packed)


class ActorCore(Protocol):
    def start(self, ctx: ActorContext) -> None: ...

    def handle(self, message: object) -> None: ...

    def tick(self, now: float) -> float:
        """Do one step; return the monotonic time of the next wanted tick."""
        ...

    def fds(self) -> list[int]:
        """Extra file descriptors to wait on (the render process's keyboard)."""
        ...

    def on_fd(self, fd: int) -> None: ...

    def stop(self) -> None: ...

    @property
    def done(self) -> bool:
        """True when the core wants its process to end (exit code 0)."""
        ...


class _StopRequested(Exception):
    pass


def set_title(name: str | None) -> None:
    """``vramtop: NAME`` for an actor, plain ``vramtop`` for the supervisor (name None)."""
    try:
        import setproctitle

        setproctitle.setproctitle("vramtop" if name is None else f"vramtop: {name}")
    except Exception:  # a missing title is cosmetic, never fatal
        pass


def run_actor(core: ActorCore, ctx: ActorContext) -> None:
    """Body of an actor process. Never returns: exits with 0 (stopped) or 1 (crashed)."""
    set_title(ctx.name)
    # Ctrl-C reaches the whole foreground group; only the supervisor acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _term(_signo: int, _frame: object) -> None:
        raise _StopRequested

    signal.signal(signal.SIGTERM, _term)
    code = 0
    try:
        _injected_fault(ctx.name)
        core.start(ctx)
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
            core.stop()
    sys.stdout.flush()
    # Give the mailbox feeder thread a moment to flush the last message, then leave without
    # running inherited atexit handlers (they belong to the supervisor).
    for box in (ctx.supervisor, *ctx.outboxes.values()):
        with contextlib.suppress(Exception):
            box._q.close()
            box._q.join_thread()
    os._exit(code)


def _injected_fault(name: str) -> None:
    """``VRAMTOP_FAULT=sampler`` makes that actor crash at every start: how the supervisor's
    restart intensity is exercised end to end (tests, and anyone checking a deployment)."""
    if name in os.environ.get("VRAMTOP_FAULT", "").split(","):
        raise RuntimeError(f"injected fault in {name} (VRAMTOP_FAULT)")


def _loop(core: ActorCore, ctx: ActorContext) -> None:
    inbox_fd = ctx.inbox.fileno()
    next_tick = time.monotonic()
    next_beat = 0.0
    pid = os.getpid()
    while not core.done:
        now = time.monotonic()
        if now >= next_beat:
            ctx.supervisor.post(Heartbeat(ctx.name, pid, now))
            next_beat = now + HEARTBEAT_SECONDS
        if now >= next_tick:
            next_tick = core.tick(now)
            continue
        timeout = max(0.0, min(next_tick, next_beat) - now)
        ready = connection.wait([inbox_fd, *core.fds()], timeout)
        for fd in ready:
            if fd == inbox_fd:
                for message in ctx.inbox.drain(64):
                    if isinstance(message, Stop):
                        return
                    if isinstance(message, ConfigUpdate) and not message.error:
                        ctx.config = message.config
                    core.handle(message)
            else:
                core.on_fd(int(fd))  # type: ignore[arg-type]
