"""Render actor: the blessed terminal. Forwards messages, keys and mouse to the UI controller and
writes each frame's changed cells.

Keyboard input is read from fd 0 (or /dev/tty) explicitly: ``multiprocessing`` replaces
``sys.stdin`` in children with /dev/null, and blessed would otherwise read no keys. Only this
process acts on SIGWINCH (through a self-pipe, so a resize re-lays out at once). A frame is drawn
on every new sample, every key and every resize, plus once a second for the clock (the diff makes
that a few bytes), never in a busy loop. Mouse reports (SGR, mode 1006) are parsed here, since
blessed only decodes them after querying the terminal, which can stall start-up.

One frame per batch: every message drained in one turn is applied, then at most one frame is
drawn. A frame pairs the rows of sample N with the analysis of sample N: a new sample is held
until its analysis arrives (normally milliseconds later), for at most :func:`pairing_wait`, and
shown without it only when the analyzer is late or down. ``VRAMTOP_FRAME_LOG=FILE`` appends one
line per frame drawn (``frame N sample S analysis A at MONOTONIC``): a diagnostics switch that
tests use to see which sample each frame showed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from vramtop.actors.base import ActorContext, Out
from vramtop.messages import (
    AnalysisMessage,
    DeepStateMessage,
    EnrichmentMessage,
    ProcessIdentity,
    ProcessRows,
    Quit,
    SampleJoiner,
    SampleMessage,
    ScrapeMessage,
    Selected,
    SnapshotMessage,
)
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
CLOCK_S = 1.0  # redraw cadence for the clock and expiring status lines
BACKGROUND = (EnrichmentMessage, ScrapeMessage, DeepStateMessage)


def pairing_wait(refresh_rate: float) -> float:
    """How long a new sample waits for its analysis before it is shown without it."""
    return min(1.0, max(0.1, 0.5 * refresh_rate))


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

    class Terminal(blessed.Terminal):  # type: ignore[misc]
        def detect_term_program(self, *_: Any, **__: Any) -> Any:
            # blessed asks the terminal its name (XTVERSION) at start-up and waits for the
            # answer: a round trip (50 ms measured in a pty), up to its 5 s query timeout where
            # the terminal answers nothing; it is for blessed's own width tables, and vramtop
            # measures text with wcwidth itself.
            return True

    try:
        term = Terminal(**kwargs)
    except TypeError:
        term = Terminal()
    # blessed reads the rest of a key sequence itself, with a strict decoder: a byte that is not
    # UTF-8 there (line noise, a latin-1 paste after Esc) raised inside inkey and killed this
    # process. Such bytes read as U+FFFD instead, as they do in _read_input.
    decoder = getattr(term, "_keyboard_decoder", None)
    if decoder is not None:
        with contextlib.suppress(AttributeError):
            decoder.errors = "replace"
    return term


class RenderCore:
    def __init__(self, no_color: bool | None = None, filters: ProcessFilter | None = None) -> None:
        self.no_color = bool(os.environ.get("NO_COLOR")) if no_color is None else no_color
        self.filters = filters
        self.ui = Ui(no_color=self.no_color, filters=filters, kill=KillFlow(False))
        self.term: Any = None
        self.writer: TerminalWriter | None = None
        self.size: tuple[int, int] | None = None  # fixed (width, height) instead of the tty's
        self.emit: Callable[[str], None] = _stdout_write
        self.done = False
        self._wake_r = -1
        self._wake_w = -1
        self._stack: contextlib.ExitStack | None = None
        self.frames = 0
        self.frame_seqs: tuple[int, int] = (-1, -1)  # (sample, analysis) of the last frame
        self._joiner = SampleJoiner()
        self._held: SampleMessage | None = None  # the newest sample, waiting for its analysis
        self._held_until = 0.0
        self._analysis: AnalysisMessage | None = None  # not applied yet
        self._shown_seq = -1  # the sample on screen
        self._analysis_seq = -1  # the analysis on screen
        self._told: ProcessIdentity | None = None  # the selection the analyzer last heard of
        self._out: Out = []
        self._frame_log = os.environ.get("VRAMTOP_FRAME_LOG", "")
        self._news = False  # a background message changed what the next frame shows
        self._drawn_at = 0.0  # monotonic time of the last frame

    @property
    def state(self) -> Any:
        return self.ui.state

    # -- actor protocol -------------------------------------------------------------------
    def start(self, ctx: ActorContext) -> Out:
        cfg = ctx.config
        if ctx.writing_since is not None:
            self.emit = _marked_writer(ctx.writing_since)
        history = ShmHistory(ctx.shm_name)
        # Kill is wired only when enabled: with --no-kill vramtop.kill is never imported.
        self.ui = Ui(cfg, no_color=self.no_color, filters=self.filters, history=history,
                     kill=KillFlow(cfg.display.enable_kill))  # fmt: skip
        # A kill countdown outlives a render restart: take over the one left running.
        if self.ui.kill.resume_pending(_monitor_identity()):
            self.ui.state.say("a kill in progress was resumed after a restart", 8, "warn")
        self.attach(make_terminal(self.no_color))
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        signal.signal(signal.SIGWINCH, self._on_winch)
        signal.signal(signal.SIGTSTP, self._on_suspend)
        self._enter_terminal()
        self.redraw()
        return self._take_out()

    def attach(self, term: Any) -> None:
        """Draw on ``term`` (a blessed Terminal; tests give one writing to a buffer)."""
        self.term = term
        self.writer = TerminalWriter(term, THEMES[self.ui.state.theme], self.no_color)

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
        (The other actors stop by the default action; only this process owns the tty.)"""
        self._leave_terminal()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here until SIGCONT
        signal.signal(signal.SIGTSTP, self._on_suspend)
        self._enter_terminal()
        if self.writer is not None:
            self.writer.invalidate()
        self.redraw()

    def handle(self, batch: Sequence[object], now: float) -> Out:
        with self.ui.batch():  # the rows are rebuilt once, for the frame (or key) that needs them
            dirty = self._take(batch, now)
        if dirty:
            self.redraw()
        return self._take_out()

    def _take(self, batch: Sequence[object], now: float) -> bool:
        dirty = False
        for message in batch:
            if isinstance(message, BACKGROUND):
                # What other actors learnt in the background waits for the next frame (the
                # next sample's, at most CLOCK_S away): one frame a refresh, not one a message.
                self._news = self.ui.handle(message) or self._news
                continue
            if isinstance(message, SnapshotMessage | ProcessRows):
                message = self._joiner.add(message)
                if message is None:
                    continue
            if isinstance(message, SampleMessage):
                if self._held is None:
                    # The very first sample is shown at once: processes on an empty screen
                    # beat a complete frame half a second later.
                    wait = self._pairing_wait() if self._shown_seq >= 0 else 0.0
                    self._held_until = now + wait
                self._held = message
            elif isinstance(message, AnalysisMessage):
                self._analysis = message
            else:
                dirty = self.ui.handle(message) or dirty
        return self._pair(now) or dirty

    def _pairing_wait(self) -> float:
        for actor in self.ui.state.health:
            if actor.name == "analyzer" and (actor.failed or not actor.alive):
                return 0.0  # nothing will come: show samples as they arrive
        return pairing_wait(self.ui.state.config.general.refresh_rate)

    def _pair(self, now: float) -> bool:
        """Apply what can be shown: the held sample with its own analysis, or without it once
        it has waited long enough; an analysis of the sample on screen. True if changed."""
        sample, analysis = self._held, self._analysis
        if sample is not None and analysis is not None and analysis.seq == sample.seq:
            self._apply_sample(sample)
            self._apply_analysis(analysis)
            return True
        if analysis is not None and analysis.seq == self._shown_seq:
            self._apply_analysis(analysis)  # the late analysis of what is on screen
            changed = True
        else:
            changed = False
            if analysis is not None and analysis.seq < max(self._shown_seq, -1):
                self._analysis = None  # of a sample that was superseded: never shown
        if sample is not None and now >= self._held_until:
            self._apply_sample(sample)
            return True
        return changed

    def _apply_sample(self, sample: SampleMessage) -> None:
        self._held = None
        self._shown_seq = sample.seq
        self.ui.handle(sample)

    def _apply_analysis(self, analysis: AnalysisMessage) -> None:
        self._analysis = None
        self._analysis_seq = analysis.seq
        self.ui.handle(analysis)

    def tick(self, now: float) -> tuple[float, Out]:
        # The clock and expiring status lines (the diff keeps this cheap); faster while a kill
        # counts down; sooner when a held sample's wait for its analysis runs out.
        with self.ui.batch():
            shown = self._pair(now)
        changed = self.ui.tick()
        # A sample frame redraws the clock too: while samples arrive at least once a second,
        # the tick draws only what they have not (a held sample, a countdown, news waiting).
        quiet = time.monotonic() - self._drawn_at  # redraw() stamps real time
        if shown or changed or self._news or quiet >= CLOCK_S - 0.05:
            self.redraw()
        nxt = now + (COUNTDOWN_S if self.ui.kill.running else CLOCK_S)
        if self._held is not None:
            nxt = min(nxt, self._held_until)
        return nxt, self._take_out()

    def fds(self) -> list[int]:
        return [0, self._wake_r]

    def on_fd(self, fd: int) -> Out:
        if fd == self._wake_r:
            with contextlib.suppress(BlockingIOError, OSError):
                os.read(self._wake_r, 64)
            if self.writer is not None:
                self.writer.invalidate()
            self.redraw()
            return self._take_out()
        self._read_input()
        if not self.done:
            self.redraw()
        return self._take_out()

    def stop(self) -> None:
        self._leave_terminal()
        close = getattr(self.ui.history, "close", None)
        if close is not None:
            close()

    def _take_out(self) -> Out:
        out, self._out = self._out, []
        return out

    # -- input ----------------------------------------------------------------------------
    def _read_input(self) -> None:
        """Mouse reports are cut out of the raw input; the rest goes to blessed as keys."""
        try:
            data = os.read(0, 4096)
        except (BlockingIOError, InterruptedError):
            return  # nothing after all; not the end of the input
        except OSError:
            data = b""
        if not data:
            # End of input: the terminal is gone (hang-up). Nothing more to read or draw.
            self._quit("hangup")
            return
        raw = data.decode("utf-8", "replace")
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

    def _quit(self, reason: str = "user") -> None:
        if not self.done:
            self.done = True
            self._out.append(("supervisor", Quit(reason)))

    def _on_winch(self, _signo: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")

    def _write(self, text: str) -> None:
        with contextlib.suppress(Exception):
            self.emit(text)

    def _tell_selection(self) -> None:
        """The analyzer computes PELT segments only for the process whose detail panel is
        open (segments are shown nowhere else): keep it told, None while no panel is open."""
        key = self.ui.state.selected if self.ui.state.overlay == "detail" else None
        identity = None if key is None else ProcessIdentity(key[0], key[1])
        if identity != self._told:
            self._out.append(("analyzer", Selected(identity)))
            self._told = identity

    def redraw(self) -> None:
        if self.term is None or self.writer is None:
            return
        self.ui.fresh()
        self._tell_selection()
        width, height = self.size or (self.term.width, self.term.height)
        self.writer.set_theme(THEMES.get(self.ui.state.theme, THEMES["dark"]))
        grid = self.ui.draw(width, height)
        out = self.writer.render(grid)
        if out:
            try:
                self.emit(out)
            except OSError:
                # EIO: the terminal hung up. Quit cleanly rather than crash into a restart.
                self._quit("hangup")
                return
        self.frames += 1
        self._news = False
        self._drawn_at = time.monotonic()
        self.frame_seqs = (self._shown_seq, self._analysis_seq)
        if self._frame_log:
            self._log_frame()

    def _log_frame(self) -> None:
        line = (
            f"frame {self.frames} sample {self._shown_seq} analysis {self._analysis_seq} "
            f"at {time.monotonic():.3f}\n"
        )
        with contextlib.suppress(OSError), open(self._frame_log, "a") as f:
            f.write(line)

    def grid(self, width: int, height: int) -> Grid:
        """The frame as it would be drawn now (tests, screenshots without a terminal)."""
        return self.ui.draw(width, height)


def _monitor_identity() -> tuple[int, float]:
    """(pid, start time) of the supervisor: the monitor a kill belongs to."""
    import psutil

    parent = os.getppid()
    try:
        return parent, float(psutil.Process(parent).create_time())
    except psutil.Error:
        return parent, 0.0


def _stdout_write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _marked_writer(writing_since: Any) -> Callable[[str], None]:
    """``_stdout_write`` that tells the supervisor when it is blocked in a write (a terminal
    with its output stopped), so the heartbeat check does not take the stall for a hang."""

    def write(text: str) -> None:
        writing_since.value = time.monotonic()
        try:
            _stdout_write(text)
        finally:
            writing_since.value = 0.0

    return write
