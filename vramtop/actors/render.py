"""Render actor: the blessed terminal. Draws frames from the newest sample and handles keys.

Keyboard input is read from fd 0 (or /dev/tty) explicitly: ``multiprocessing`` replaces
``sys.stdin`` in children with /dev/null, and blessed would otherwise read no keys. Only this
process acts on SIGWINCH (through a self-pipe, so a resize redraws at once). A frame is drawn on
every new sample, every key and every resize, never in a busy loop; the terminal writer sends
only the cells that changed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import Any

from vramtop.actors.base import ActorContext
from vramtop.messages import ActorHealth, ConfigUpdate, Quit, SampleMessage
from vramtop.render.grid import Grid
from vramtop.render.screen import ViewState, draw, move_selection
from vramtop.render.theme import THEMES
from vramtop.render.writer import TerminalWriter

ALT_SCREEN_OFF = "\x1b[?1049l\x1b[?25h\x1b[0m"


def make_terminal(no_color: bool) -> Any:
    """A blessed Terminal bound to the real keyboard, without terminal queries at start-up."""
    import blessed

    if not os.isatty(0):
        with contextlib.suppress(OSError):
            fd = os.open("/dev/tty", os.O_RDONLY)
            os.dup2(fd, 0)
            os.close(fd)
    # blessed takes its keyboard from sys.__stdin__, which multiprocessing closed in children.
    setattr(sys, "__stdin__", open(0, closefd=False))  # noqa: B010, SIM115
    # blessed disables every sequence (cursor moves too) under NO_COLOR; vramtop honours
    # NO_COLOR itself in the writer (no colour, emphasis kept), so hide it from blessed.
    os.environ.pop("NO_COLOR", None)
    kwargs: dict[str, Any] = {}
    try:
        from blessed._capabilities import TermcapResponse

        # Skip the XTGETTCAP probe: it waits up to 5 s on terminals that do not answer.
        kwargs["_xtgettcap_data"] = TermcapResponse(supported=False)
    except ImportError:
        pass
    try:
        return blessed.Terminal(**kwargs)
    except TypeError:
        return blessed.Terminal()


class RenderCore:
    def __init__(self, no_color: bool | None = None) -> None:
        self.no_color = bool(os.environ.get("NO_COLOR")) if no_color is None else no_color
        self.state = ViewState(no_color=self.no_color)
        self.term: Any = None
        self.writer: TerminalWriter | None = None
        self.ctx: ActorContext | None = None
        self.done = False
        self._wake_r = -1
        self._wake_w = -1
        self._stack: contextlib.ExitStack | None = None
        self.dirty = True
        self.frames = 0

    # -- actor protocol -------------------------------------------------------------------
    def start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self.state.theme = cfg.display.theme
        self.state.layout = cfg.display.layout
        self.state.accessible = cfg.display.accessible
        self.term = make_terminal(self.no_color)
        self.writer = TerminalWriter(self.term, THEMES[self.state.theme], self.no_color)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        signal.signal(signal.SIGWINCH, self._on_winch)
        stack = contextlib.ExitStack()
        stack.enter_context(self.term.fullscreen())
        stack.enter_context(self.term.hidden_cursor())
        stack.enter_context(self.term.cbreak())
        self._stack = stack
        self.redraw()

    def handle(self, message: object) -> None:
        if isinstance(message, SampleMessage):
            self.state.sample = message
            self.dirty = True
        elif isinstance(message, ActorHealth):
            self.state.health = message.actors
            self.dirty = True
        elif isinstance(message, ConfigUpdate):
            if message.error:
                self._status(f"config not reloaded: {message.error}", 15)
            else:
                self.state.theme = message.config.display.theme
                self.state.layout = message.config.display.layout
                self.state.accessible = message.config.display.accessible
                self._status(f"config reloaded from {message.source or 'defaults'}", 8)
        if self.dirty:
            self.redraw()

    def tick(self, now: float) -> float:
        # Once a second: the clock and expiring status lines. The diff keeps this cheap.
        self.redraw()
        return now + 1.0

    def fds(self) -> list[int]:
        return [0, self._wake_r]

    def on_fd(self, fd: int) -> None:
        if fd == self._wake_r:
            with contextlib.suppress(BlockingIOError, OSError):
                os.read(self._wake_r, 64)
            if self.writer is not None:
                self.writer.invalidate()
            self.redraw()
            return
        key = self.term.inkey(timeout=0)
        while key:
            self.on_key(key)
            if self.done:
                return
            key = self.term.inkey(timeout=0)
        self.redraw()

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        with contextlib.suppress(Exception):
            sys.stdout.write(ALT_SCREEN_OFF)
            sys.stdout.flush()

    # -- behaviour ------------------------------------------------------------------------
    def on_key(self, key: Any) -> None:
        name = getattr(key, "name", None) or ""
        text = str(key)
        if text in ("q", "Q"):
            self.done = True
            if self.ctx is not None:
                self.ctx.supervisor.post(Quit())
            return
        moves = {
            "KEY_UP": -1, "KEY_DOWN": 1, "KEY_PGUP": -10, "KEY_PGDOWN": 10,
            "KEY_HOME": -(10**9), "KEY_END": 10**9,
        }  # fmt: skip
        if name in moves:
            move_selection(self.state, moves[name])

    def _status(self, text: str, seconds: float) -> None:
        self.state.status = text
        self.state.status_until = time.monotonic() + seconds
        self.dirty = True

    def _on_winch(self, _signo: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")

    def redraw(self) -> None:
        if self.term is None or self.writer is None:
            return
        width, height = self.term.width, self.term.height
        grid = Grid(width, height)
        warn_c = 85.0 if self.ctx is None else self.ctx.config.alerts.temp_warning_celsius
        self.writer.set_theme(THEMES.get(self.state.theme, THEMES["dark"]))
        draw(grid, self.state, warn_c)
        out = self.writer.render(grid)
        if out:
            sys.stdout.write(out)
            sys.stdout.flush()
        self.frames += 1
        self.dirty = False
