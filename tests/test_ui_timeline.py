"""The memory timeline in a real pseudo-terminal (``vramtop --demo``, read back with pyte): the
chart a user sees at 160x45 with one GPU and with eight, at 100x24 and after resizes, the road
to OOM agreeing with the ETA in the process table, Tab, --accessible with NO_COLOR, and the SVG
screenshot holding the same chart."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from tui import Tui

from vramtop.render.svg import CELL_H, CELL_W

FAST = ["--refresh-rate", "0.5"]
BRAILLE = re.compile("[\u2801-\u28ff]")
SGR = re.compile(rb"\x1b\[([0-9;:]*)m")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".config").mkdir()
    return tmp_path


def _env(home: Path) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(home / ".local" / "share")}


def quiet_screen(tui: Tui, quiet: float = 0.2, limit: float = 5.0) -> list[str]:
    """The screen once a frame has been written completely (nothing arrives for ``quiet`` s)."""
    for _ in range(int(limit / quiet)):
        before = len(tui.raw)
        tui.pump(quiet)
        if len(tui.raw) == before:
            break
    return tui.text().splitlines()


def chart_rows(lines: list[str]) -> tuple[int, int]:
    """(ceiling row, time-axis row) of the first timeline on the screen."""
    ceiling = next(i for i, ln in enumerate(lines) if re.match(r"^ *[0-9.]+G┤╌", ln))
    axis = next(i for i in range(ceiling, len(lines)) if re.match(r"^ +0└", lines[i]))
    return ceiling, axis


def has_chart(screen: str) -> bool:
    lines = screen.splitlines()
    try:
        ceiling, axis = chart_rows(lines)
    except StopIteration:
        return False
    body = "".join(lines[ceiling + 1 : axis])
    return len(BRAILLE.findall(body)) >= 3 and "┴now" in lines[axis]


def seconds(text: str) -> float:
    """A duration as vramtop writes it (``9s``, ``1m05s``, ``12m``, ``1h05m``) in seconds."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    assert m and any(m.groups()), text
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def seconds_per_column(axis: str) -> tuple[int, float]:
    """(column of "now", seconds per column) from the time axis's clock-time ticks."""
    ticks = [(m.start(), m.group(1)) for m in re.finditer(r"┴(\d\d:\d\d(?::\d\d)?)", axis)]
    assert len(ticks) >= 2, axis

    def clock(label: str) -> int:
        parts = [int(p) for p in label.split(":")] + [0]
        return parts[0] * 3600 + parts[1] * 60 + parts[2]

    (c0, a), (c1, b) = ticks[0], ticks[-1]
    span = (clock(b) - clock(a)) % 86400  # a page may straddle midnight
    return axis.index("┴now"), span / (c1 - c0)


def test_one_gpu_timeline_and_the_road_to_oom_agree_with_the_table(home: Path) -> None:
    tui = Tui(["--demo", "leak", *FAST], cols=160, rows=45, home=home, env=_env(home))
    try:
        screen = tui.wait_for(has_chart, timeout=20)
        lines = screen.splitlines()
        ceiling, axis = chart_rows(lines)
        assert lines[ceiling].lstrip().startswith("24.0G┤")  # the card's total is the ceiling
        assert "GPU 0 memory, GPU total" in lines[ceiling - 1]
        assert re.search(r"\b\d+G│", "\n".join(lines[ceiling:axis]))  # a GiB scale on the y axis
        assert axis - ceiling - 1 >= 15  # one GPU on a big terminal: a big chart
        assert not any("hist " in ln for ln in lines)  # the chart replaces the sparkline

        def road(s: str) -> bool:
            rows = [ln for ln in s.splitlines() if "leaky.py" in ln]
            return "✕" in s and any("TIGHT" in r or "OOM risk" in r for r in rows)

        tui.wait_for(road, timeout=20)
        checked = 0
        for _ in range(6):  # a few frames: the prediction moves, the agreement must hold
            lines = quiet_screen(tui)
            ceiling, axis = chart_rows(lines)
            header = next(ln for ln in lines if "COMMAND" in ln and "ETA" in ln)
            row = next((ln for ln in lines if "leaky.py" in ln), "")
            end = header.index("ETA") + 3
            eta_text = row[end - 6 : end].strip()
            if "✕" not in lines[ceiling] or not re.fullmatch(r"[0-9hms]+", eta_text):
                tui.pump(0.3)
                continue  # OOM-killed meanwhile, or between predictions
            now, per_col = seconds_per_column(lines[axis])
            mark = lines[ceiling].index("✕")
            expected = now + seconds(eta_text) / per_col
            # Within one column; the quarter on top is the scale read back from the axis's
            # clock labels (whole columns), not the chart's.
            assert abs(mark - expected) <= 1.25, (eta_text, mark, expected, per_col)
            assert f"OOM ~{eta_text}" in lines[ceiling]
            checked += 1
            if checked >= 2:
                break
        assert checked >= 1

        tui.send("\t")
        stacked = tui.wait_for("stacked by top processes")
        legend = next(ln for ln in stacked.splitlines() if "stacked by top processes" in ln)
        assert "python leaky.py" in legend and "other" in legend

        before = quiet_screen(tui)
        tui.send("s")
        tui.wait_for("screenshot saved:")
        after = quiet_screen(tui)
        shots = list((home / ".local/share/vramtop/screenshots").glob("*.svg"))
        assert len(shots) == 1
        svg = svg_lines(shots[0], 160, 45)
        c, a = chart_rows(svg)
        assert len(BRAILLE.findall("".join(svg[c + 1 : a]))) >= 3
        # The screenshot is the frame on screen: the chart region matches the screen read just
        # before or just after (a sample may land between them: one column apart at most).
        diffs = []
        for screen_lines in (before, after):
            cols = {x for y in range(c - 1, a + 1) for x in range(160)
                    if svg[y][x] != screen_lines[y][x]}  # fmt: skip
            diffs.append(cols)
        best = min(diffs, key=len)
        assert not best or max(best) - min(best) <= 2, sorted(best)
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def svg_lines(path: Path, cols: int, rows: int) -> list[str]:
    """The text cells of an SVG screenshot, row by row."""
    grid = [[" "] * cols for _ in range(rows)]
    for el in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text"):
        if el.get("x") is None or not el.text:
            continue
        x = round(float(el.get("x", "0")) / CELL_W)
        y = round(float(el.get("y", "0")) / CELL_H - 0.78)
        for i, ch in enumerate(el.text):
            if 0 <= y < rows and 0 <= x + i < cols:
                grid[y][x + i] = ch
    return ["".join(r) for r in grid]


EIGHT_GPUS = "\n".join(
    ['name = "eight"', "seed = 5", ""]
    + ['[[gpu]]\nname = "NVIDIA H100 80GB HBM3"\nmemory_mib = 81559\n' for _ in range(8)]
    + [
        f'[[process]]\nname = "job{i}"\ngpu = {i}\nsm_util = 20\n'
        f'memory = {{ curve = "constant", mib = {2000 * (i + 1)}, noise_mib = 4 }}\n'
        for i in range(8)
    ]
)


def test_eight_gpus_get_one_chart_for_the_selected_process_gpu(home: Path, tmp_path: Path) -> None:
    scenario = tmp_path / "eight.toml"
    scenario.write_text(EIGHT_GPUS)
    tui = Tui(["--demo", str(scenario), *FAST], cols=160, rows=45, home=home, env=_env(home))
    try:
        screen = tui.wait_for(lambda s: has_chart(s) and "GPU 7  NVIDIA" in s, timeout=20)
        lines = screen.splitlines()
        assert all(f"GPU {i}  NVIDIA H100" in screen for i in range(8))  # every card still there
        ceiling, axis = chart_rows(lines)
        assert lines[ceiling].lstrip().startswith("79.6G┤")
        # the largest process (the first row, selected) is on GPU 7: its GPU is charted
        assert "GPU 7 memory, GPU total" in lines[ceiling - 1]
        assert axis - ceiling - 1 >= 6
        assert sum("G│" in ln or "  │" in ln for ln in lines[ceiling:axis]) == axis - ceiling - 1
        tui.send("\x1b[F")  # End: the last row, the smallest process, on GPU 0
        tui.wait_for("GPU 0 memory, GPU total")
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_compact_keeps_the_sparkline_and_resizes_bring_the_chart(home: Path) -> None:
    tui = Tui(["--demo", "small", *FAST], cols=100, rows=24, home=home, env=_env(home))
    try:
        compact = tui.wait_for(lambda s: "python serve.py" in s and "hist " in s, timeout=20)
        assert not has_chart(compact) and "PHASE" not in compact
        tui.resize(160, 45)
        full = tui.wait_for(has_chart)
        ceiling, _ = chart_rows(full.splitlines())
        assert full.splitlines()[ceiling].lstrip().startswith("22.5G┤")
        tui.resize(100, 24)
        again = tui.wait_for(lambda s: "hist " in s and "PHASE" not in s)
        assert not has_chart(again)
        tui.resize(50, 12)  # mini: a line per GPU, no history at all
        mini = tui.wait_for(lambda s: s.splitlines()[2].startswith("0 ["))
        assert "hist " not in mini and not BRAILLE.search(mini)
        tui.resize(100, 24)
        tui.wait_for(lambda s: "hist " in s and "PHASE" not in s)
        tui.send("d")  # the detail panel's history chart fills its width at 100x24 too
        detail = tui.wait_for(lambda s: "memory history, last" in s and "┴now" in s)
        rows = detail.splitlines()
        title = next(i for i, ln in enumerate(rows) if "memory history, last" in ln)
        assert BRAILLE.search("".join(rows[title + 1 :]))
        tui.send("\x1b")
        tui.send("L")  # layout: full, forced at 100x24
        forced = tui.wait_for(lambda s: has_chart(s) and "layout full" in s)
        assert "GPU 0 memory, GPU total" in forced
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_accessible_no_color_chart_reads_in_ascii(home: Path) -> None:
    env = {**_env(home), "NO_COLOR": "1"}
    tui = Tui(["--demo", "leak", "--accessible", *FAST], cols=160, rows=45, home=home, env=env)
    try:
        screen = tui.wait_for(lambda s: "# used" in s and "|now" in s and "###" in s, timeout=20)
        assert not BRAILLE.search(screen)
        lines = screen.splitlines()
        ceiling = next(i for i, ln in enumerate(lines) if re.match(r"^ *24\.0G\+====", ln))
        assert "+ reserved" in lines[ceiling - 1]
        screen = tui.wait_for("X OOM ~", timeout=20)
        assert "/ projection" in screen and not BRAILLE.search(screen)
        tui.send("q")
        assert tui.wait_exit() == 0
        for m in SGR.finditer(bytes(tui.raw)):
            params = [int(p) for p in re.split(rb"[;:]", m[1]) if p]
            assert not any(30 <= p <= 49 or 90 <= p <= 107 for p in params), m[0]
    finally:
        tui.close()
