"""Render actor: the blessed terminal. Forwards messages, keys and mouse to the UI controller and
writes each frame's changed cells.

Keyboard input is read from fd 0 (or /dev/tty) explicitly: ``multiprocessing`` replaces
``sys.stdin`` in children with /dev/null, and blessed would otherwise read no keys. Only this
process acts on SIGWINCH (through a self-pipe, so a resize re-lays out at once). A frame is drawn
on every new sample, every key and every resize, plus once a second for the clock (the diff makes
that a few bytes), never in a busy loop. Mouse reports (SGR, mode 1006) are parsed here, since
blessed only decodes them after querying the terminal, which can stall start-up.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from typing import Any

from vramtop.actors.base import ActorContext
from vramtop.messages import ProcessIdentity, Quit, Selected
from vramtop.render.controller import Ui
from vramtop.render.filters import ProcessFilter
from vramtop.render.grid import Grid
from vramtop.render.history import ShmHistory
from vramtop.render.keys import token
from vramtop.render.killflow import KillFlow
from vramtop.render.theme import THEMES
from vramtop.render.writer import TerminalWriter

MOUSE_ON = "\x1b[?1000h\x1b[?1006h"
MOUSE_OFF = "\x1b[?1006l\x1b[?1000l"
ALT_SCREEN_OFF = MOUSE_OFF + "\x1b[?1049l\x1b[?25h\x1b[0m"
SGR_MOUSE = re.compile(r"\x1b\[<(\d+);(\d+);(\d+)([Mm])")
COUNTDOWN_S = 0.25  # redraw cadence while a kill counts down


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
    def __init__(self, no_color: bool | None = None, filters: ProcessFilter | None = None) -> None:
        self.no_color = bool(os.environ.get("NO_COLOR")) if no_color is None else no_color
        self.filters = filters
        self.ui = Ui(no_color=self.no_color, filters=filters, kill=KillFlow(False))
        self.term: Any = None
        self.writer: TerminalWriter | None = None
        self.ctx: ActorContext | None = None
        self.done = False
        self._wake_r = -1
        self._wake_w = -1
        self._stack: contextlib.ExitStack | None = None
        self.frames = 0
        self._told: ProcessIdentity | None = None  # the selection the analyzer last heard of

    @property
    def state(self) -> Any:
        return self.ui.state

    # -- actor protocol -------------------------------------------------------------------
    def start(self, ctx: ActorContext) -> None:
        self.ctx = ctx
        cfg = ctx.config
        history = ShmHistory(ctx.shm_name)
        # Kill is wired only when enabled: with --no-kill vramtop.kill is never imported.
        self.ui = Ui(cfg, no_color=self.no_color, filters=self.filters, history=history,
                     kill=KillFlow(cfg.display.enable_kill))  # fmt: skip
        self.term = make_terminal(self.no_color)
        self.writer = TerminalWriter(self.term, THEMES[self.ui.state.theme], self.no_color)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        signal.signal(signal.SIGWINCH, self._on_winch)
        signal.signal(signal.SIGTSTP, self._on_suspend)
        self._enter_terminal()
        self.redraw()

    def _enter_terminal(self) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(self.term.fullscreen())
        stack.enter_context(self.term.hidden_cursor())
        stack.enter_context(self.term.cbreak())
        self._stack = stack
        self._write(MOUSE_ON)

    def _leave_terminal(self) -> None:
        self._write(MOUSE_OFF)
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self._write(ALT_SCREEN_OFF)

    def _on_suspend(self, _signo: int, _frame: object) -> None:
        """Ctrl-Z: give the shell a normal terminal, stop, and take the screen back on ``fg``.
        (The rest of vramtop stops by the default action; only this process owns the tty.)"""
        self._leave_terminal()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here until SIGCONT
        signal.signal(signal.SIGTSTP, self._on_suspend)
        self._enter_terminal()
        if self.writer is not None:
            self.writer.invalidate()
        self.redraw()

    def handle(self, message: object) -> None:
        if self.ui.handle(message):
            self.redraw()

    def tick(self, now: float) -> float:
        # Once a second: the clock and expiring status lines (the diff keeps this cheap);
        # faster while a kill counts down.
        self.ui.tick()
        self.redraw()
        return now + (COUNTDOWN_S if self.ui.kill.running else 1.0)

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
        self._read_input()
        if self.done:
            return
        self.redraw()

    def stop(self) -> None:
        self._leave_terminal()
        close = getattr(self.ui.history, "close", None)
        if close is not None:
            close()

    # -- input ----------------------------------------------------------------------------
    def _read_input(self) -> None:
        """Mouse reports are cut out of the raw input; the rest goes to blessed as keys."""
        try:
            raw = os.read(0, 4096).decode("utf-8", "replace")
        except (BlockingIOError, InterruptedError):
            raw = ""
        except OSError:
            # The terminal is gone (hang-up): nothing more to read or draw.
            self._quit()
            return
        rest = SGR_MOUSE.sub(lambda m: self._mouse(m) or "", raw)
        if rest:
            self.term.ungetch(rest)
        key = self.term.inkey(timeout=0)
        while key:
            self.on_key(key)
            if self.done:
                return
            key = self.term.inkey(timeout=0)

    def _mouse(self, match: re.Match[str]) -> str:
        button, x, y = int(match[1]), int(match[2]) - 1, int(match[3]) - 1
        self.ui.mouse(x, y, button & ~(4 | 8 | 16), match[4] == "M")
        return ""

    def on_key(self, key: Any) -> None:
        self.ui.key(token(key))
        if self.ui.quit:
            self._quit()

    def _quit(self) -> None:
        self.done = True
        if self.ctx is not None:
            self.ctx.supervisor.post(Quit())

    def _on_winch(self, _signo: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")

    def _write(self, text: str) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.write(text)
            sys.stdout.flush()

    def _tell_selection(self) -> None:
        """The analyzer computes PELT segments for the selected process only: keep it told."""
        key = self.ui.state.selected
        identity = None if key is None else ProcessIdentity(key[0], key[1])
        if identity != self._told and self.ctx is not None:
            self.ctx.send("analyzer", Selected(identity))
            self._told = identity

    def redraw(self) -> None:
        if self.term is None or self.writer is None:
            return
        self._tell_selection()
        width, height = self.term.width, self.term.height
        self.writer.set_theme(THEMES.get(self.ui.state.theme, THEMES["dark"]))
        grid = self.ui.draw(width, height)
        out = self.writer.render(grid)
        if out:
            sys.stdout.write(out)
            sys.stdout.flush()
        self.frames += 1

    def grid(self, width: int, height: int) -> Grid:
        """The frame as it would be drawn now (tests, screenshots without a terminal)."""
        return self.ui.draw(width, height)
