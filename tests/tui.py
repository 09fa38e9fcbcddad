"""Drive vramtop in a real pseudo-terminal (pexpect) and read the screen back (pyte)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pexpect
import psutil
import pyte
from wcwidth import wcwidth

VRAMTOP = [sys.executable, "-m", "vramtop"]


class _AnsweringScreen(pyte.Screen):  # type: ignore[misc]
    """A screen that answers status queries (cursor position) as real terminals do; blessed
    waits for that answer at start-up."""

    answer: Callable[[str], object] | None = None

    def write_process_input(self, data: str) -> None:
        if self.answer is not None:
            self.answer(data)

    @property
    def display(self) -> list[str]:
        """The screen as lines, a wide glyph's second cell skipped. pyte's own version fails on
        the second half of a wide glyph whose first half was overwritten (what a writer that
        mismeasures widths leaves behind); such a cell reads as the blank a terminal shows."""
        out = []
        for y in range(self.lines):
            line = self.buffer[y]
            chars: list[str] = []
            after_wide = False
            for x in range(self.columns):
                data = line[x].data
                if after_wide and data == "":
                    after_wide = False
                    continue
                data = data or " "
                after_wide = wcwidth(data[0]) == 2
                chars.append(data)
            out.append("".join(chars))
        return out


class Tui:
    def __init__(
        self,
        args: Sequence[str],
        cols: int = 120,
        rows: int = 40,
        env: dict[str, str] | None = None,
        home: Path | None = None,
        shell: str | None = None,
    ) -> None:
        """Run ``vramtop ARGS``, or with ``shell`` a bash command line (``{vramtop}`` in it is
        replaced by the command that starts vramtop)."""
        full_env = dict(os.environ)
        full_env.update({"TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)})
        full_env.pop("NO_COLOR", None)
        if home is not None:
            full_env["HOME"] = str(home)
            full_env["XDG_CONFIG_HOME"] = str(home / ".config")
        full_env.update(env or {})
        self.screen = _AnsweringScreen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        if shell is None:
            program, argv = VRAMTOP[0], [*VRAMTOP[1:], *args]
        else:
            program, argv = "bash", ["-c", shell.replace("{vramtop}", " ".join(VRAMTOP))]
        self.child = pexpect.spawn(program, argv, env=full_env, dimensions=(rows, cols), timeout=5)
        self.screen.answer = self.child.send

    @property
    def pid(self) -> int:
        return int(self.child.pid)

    def pump(self, seconds: float = 0.1) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                data = self.child.read_nonblocking(
                    65536, timeout=max(0.01, deadline - time.monotonic())
                )
            except pexpect.TIMEOUT:
                data = b""
            except pexpect.EOF:
                return
            if data:
                self.raw.extend(data)
                self.stream.feed(data)
            if time.monotonic() >= deadline:
                return

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, what: str | Callable[[str], bool], timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        check = (lambda s: what in s) if isinstance(what, str) else what
        while time.monotonic() < deadline:
            self.pump(0.1)
            screen = self.text()
            if check(screen):
                return screen
            if not self.child.isalive():
                self.pump(0.05)
                break
        raise AssertionError(f"timed out waiting for {what!r}; screen was:\n{self.text()}")

    def send(self, keys: str) -> None:
        self.child.send(keys)
        if keys == "\x1b":
            # A lone Esc followed at once by a key reads as Alt+key (blessed waits 0.35 s to
            # tell them apart); a person never types that fast, so pause as they would.
            self.pump(0.5)

    def resize(self, cols: int, rows: int) -> None:
        self.screen.resize(rows, cols)
        self.child.setwinsize(rows, cols)

    def wait_exit(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.child.isalive() and time.monotonic() < deadline:
            self.pump(0.1)
        self.pump(0.05)
        self.child.close()
        status = self.child.exitstatus
        return -1 if status is None else int(status)

    def actors(self) -> dict[str, int]:
        """Process title -> pid for the supervisor's children."""
        out: dict[str, int] = {}
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return out
        for proc in kids:
            try:
                title = " ".join(proc.cmdline()).strip()
            except psutil.Error:
                continue
            if title.startswith("vramtop: "):
                out[title] = proc.pid
        return out

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()


def shm_segments(pid: int | None = None) -> list[str]:
    uid = os.geteuid()
    prefix = f"vramtop_{uid}_" + (f"{pid}_" if pid is not None else "")
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except FileNotFoundError:
        return []
