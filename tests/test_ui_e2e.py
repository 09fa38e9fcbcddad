"""The terminal UI end to end: ``vramtop --demo`` in a real pseudo-terminal, read back with pyte.

What a user would notice: the layout at each terminal size and after resizes, every theme's
colours in the byte stream, NO_COLOR (no colour codes at all), --accessible (no symbol or block
glyph carries meaning), the selection staying on its process while rows re-sort, screenshots,
--no-kill, and a UI that answers keys again after its render process was SIGKILLed.
"""

from __future__ import annotations

import os
import re
import signal
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from tui import Tui

from vramtop.render.theme import THEMES

FAST = ["--refresh-rate", "0.5"]
GLYPHS = set("▲▼◆●█▒░▁▂▃▄▅▆▇⚠")
SGR = re.compile(rb"\x1b\[([0-9;:]*)m")


def colour_codes(raw: bytes) -> list[bytes]:
    """SGR sequences that set a colour (30-49, 90-107); cursor moves never match."""
    found = []
    for m in SGR.finditer(raw):
        params = [int(p) for p in re.split(rb"[;:]", m[1]) if p]
        if any(30 <= p <= 49 or 90 <= p <= 107 for p in params):
            found.append(m[0])
    return found


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".config").mkdir()
    return tmp_path


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(home / ".local" / "share"), "COLORTERM": "truecolor", **extra}


def test_layouts_at_every_size_and_after_resizes(home: Path) -> None:
    tui = Tui(["--demo", "small", *FAST], cols=160, rows=45, home=home, env=_env(home))
    try:
        full = tui.wait_for("python train_small.py")
        assert "GPU 0  NVIDIA A10" in full and "hist " in full
        header = next(ln for ln in full.splitlines() if "COMMAND" in ln)
        for column in ("GPU", "PID", "USER", "VRAM", "%MEM", "PHASE", "RATE", "VERDICT", "ETA",
                       "FRAMEWORK", "CONTAINER"):  # fmt: skip
            assert column in header, column
        tui.resize(100, 24)
        compact = tui.wait_for(lambda s: "PHASE" not in s and "python serve.py" in s)
        assert "mem [" in compact and "total" in compact and "hist " not in compact
        tui.resize(50, 12)
        mini = tui.wait_for(lambda s: s.splitlines()[2].startswith("0 ["))
        assert "GPU 0  NVIDIA" not in mini
        tui.resize(30, 8)
        tui.wait_for("too small (needs 40x10)")
        tui.resize(160, 45)
        tui.wait_for(lambda s: "PHASE" in s and "hist " in s)
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_chosen_layout_holds_from_the_first_frame(home: Path) -> None:
    tui = Tui(["--demo", "small"], cols=50, rows=12, home=home, env=_env(home))
    try:
        first = tui.wait_for(lambda s: "vramtop" in s)
        assert "GPU 0  NVIDIA" not in first and "PHASE" not in first
        tui.wait_for(lambda s: s.splitlines()[2].startswith("0 ["))
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def _rgb(theme: str, name: str = "text") -> bytes:
    r, g, b = THEMES[theme].rgb(name)
    return f"38;2;{r};{g};{b}m".encode()


def test_every_theme_paints_with_its_palette_and_screenshots_are_svg(home: Path) -> None:
    args = ["--demo", "small", "--no-kill"]
    tui = Tui(args, cols=120, rows=30, home=home, env=_env(home))
    try:
        tui.wait_for("python train_small.py")
        assert _rgb("dark") in tui.raw
        order = list(THEMES)
        for name in order[1:] + order[:1]:
            mark = len(tui.raw)
            tui.send("t")
            tui.wait_for(f"theme {name}")
            tui.pump(0.2)
            assert _rgb(name) in tui.raw[mark:], name
            assert _rgb(name, "accent") in tui.raw[mark:] or name == "dark"
        # --no-kill: k only says so.
        tui.send("k")
        tui.wait_for("kill is disabled")
        tui.send("s")
        tui.wait_for("screenshot saved:")
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()
    shots = list((home / ".local/share/vramtop/screenshots").glob("*.svg"))
    assert len(shots) == 1
    root = ET.parse(shots[0]).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    texts = "".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert "NVIDIA A10" in texts and "python train_small.py" in texts
    fills = {el.get("fill") for el in root.iter() if el.get("fill")}
    dark = THEMES["dark"].colors
    assert {dark["background"], dark["text"], dark["accent"]} <= fills


def test_no_color_sends_no_colour_codes(home: Path) -> None:
    tui = Tui(["--demo", "small"], cols=120, rows=30, home=home, env=_env(home, NO_COLOR="1"))
    try:
        tui.wait_for("python train_small.py")
        tui.send("t?")
        tui.wait_for("this help")
        tui.send("\x1b")
        tui.pump(0.6)
        assert colour_codes(bytes(tui.raw)) == []
        assert b"\x1b[1m" in tui.raw, "emphasis is kept"
        assert b"\x1b[7m" in tui.raw, "the selection is shown in reverse video"
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def _table(screen: str) -> list[str]:
    return [ln for ln in screen.splitlines() if re.search(r"\bpython \w+\.py", ln)]


def test_accessible_selection_stays_on_its_process_while_rows_resort(home: Path) -> None:
    args = ["--demo", "killtest", "--speed", "2", "--accessible", *FAST]
    tui = Tui(args, cols=160, rows=45, home=home, env=_env(home))
    try:
        tui.wait_for("leaver.py")
        # Walk the selection (marked ">" in accessible mode) to steady.py.
        for _ in range(8):
            if any(ln.startswith(">") and "steady.py" in ln for ln in _table(tui.text())):
                break
            tui.send("\x1b[B")
            tui.pump(0.15)
        selected = [ln for ln in _table(tui.text()) if ln.startswith(">")]
        assert len(selected) == 1 and "steady.py" in selected[0], tui.text()
        pid = selected[0].split()[2]
        orders = set()
        # Up to eight refreshes at 0.5 s, until the table has re-sorted: flip.py changes places
        # every sample, but while the analyzer's first analyses lag (a few seconds after the
        # start) the render shows samples as their pairing wait ends, which can be every other
        # one, always in the same order.
        for _ in range(8):
            tui.pump(0.55)
            rows = _table(tui.text())
            orders.add(tuple(ln.split()[-1] for ln in rows))
            marked = [ln for ln in rows if ln.startswith(">")]
            assert len(marked) == 1 and marked[0].split()[2] == pid, rows
            if len(orders) > 1:
                break
        assert len(orders) > 1, "the table re-sorted meanwhile"
        screen = tui.text()
        assert not set(screen) & GLYPHS, "no glyph carries meaning in accessible mode"
        assert "[" in screen and "#" in screen, "ASCII bars"
        # leaver.py exits at t = 18 s (9 s at --speed 2): the selection on it moves to a neighbour.
        assert "leaver.py" in tui.text()
        tui.send("\x1b[H")  # Home
        for _ in range(12):
            if any(ln.startswith(">") and "leaver.py" in ln for ln in _table(tui.text())):
                break
            tui.send("\x1b[B")
            tui.pump(0.15)
        assert any(ln.startswith(">") and "leaver.py" in ln for ln in _table(tui.text()))
        tui.wait_for(lambda s: "leaver.py" not in s, timeout=15)
        marked = [ln for ln in _table(tui.text()) if ln.startswith(">")]
        assert len(marked) == 1, tui.text()
        assert not set(bytes(tui.raw).decode("utf-8", "replace")) & GLYPHS
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_render_process_killed_comes_back_and_answers_keys(home: Path) -> None:
    tui = Tui(["--demo", "small"], cols=120, rows=30, home=home, env=_env(home))
    try:
        tui.wait_for("python train_small.py")
        render = tui.actors()["vramtop: render"]
        mark = len(tui.raw)
        os.kill(render, signal.SIGKILL)
        tui.wait_for("render restarted 1x", timeout=10)
        after = bytes(tui.raw[mark:])
        assert b"\x1b[?1049l" in after and b"\x1b[?25h" in after
        time.sleep(0.2)
        tui.send("?")
        tui.wait_for("this help")
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()
