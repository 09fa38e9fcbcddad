"""Small drawing helpers every layout uses: bars, sparklines, badges, boxes (the braille charts
live in ``braille.py``, ``timeline.py`` and ``procchart.py``).

Where it sits: called by ``cards.py``, ``table.py`` and the overlays while they draw into a
:class:`~vramtop.render.grid.Grid`. Each helper has an accessible form (``--accessible``): ASCII
instead of block glyphs and words instead of symbols, so no meaning rests on a glyph or a colour
alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from vramtop.analysis.model import GROWING, OK, OOM_RISK, SHRINKING, STABLE, TIGHT, VOLATILE
from vramtop.gpu.snapshot import GpuSample
from vramtop.na import NaType
from vramtop.render.grid import Grid, Style

MUTED = Style(fg="muted")
BORDER = Style(fg="border")
NONE = "—"  # a column whose data has not arrived (or cannot exist) for this row

SPARK = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-~=*#"

_PHASES: dict[str, tuple[str, str, str]] = {
    # phase: (symbol, accessible word, semantic colour)
    GROWING: ("▲", "GROWING", "warn"),
    SHRINKING: ("▼", "SHRINKING", "ok"),
    STABLE: ("●", "STABLE", "muted"),
    VOLATILE: ("◆", "VOLATILE", "accent"),
}
_VERDICTS = {OK: "ok", TIGHT: "warn", OOM_RISK: "crit"}


def memory_bar(gpu: GpuSample, width: int, accessible: bool) -> list[tuple[str, Style]]:
    """Segments of a memory bar: used, reserved, free (as text + style runs)."""
    total = gpu.memory_total
    if isinstance(total, NaType) or not total or width <= 0:
        return [("?" * width if accessible else "·" * width, MUTED)]
    used = 0 if isinstance(gpu.memory_used, NaType) else gpu.memory_used
    reserved = 0 if isinstance(gpu.memory_reserved, NaType) else gpu.memory_reserved
    n_used = min(width, round(width * used / total))
    n_res = min(width - n_used, round(width * reserved / total))
    if reserved and n_res == 0 and n_used < width:
        n_res = 1  # a reserved slice is always visible when NVML reports one
    n_free = width - n_used - n_res
    used_style = Style(fg=level_colour(used / total))
    if accessible:
        return [("#" * n_used, used_style), ("+" * n_res, Style(fg="reserved")),
                ("." * n_free, Style(fg="muted"))]  # fmt: skip
    return [("█" * n_used, used_style), ("▒" * n_res, Style(fg="reserved")),
            ("░" * n_free, Style(fg="free"))]  # fmt: skip


def level_colour(fraction: float) -> str:
    return "crit" if fraction >= 0.95 else "warn" if fraction >= 0.85 else "used"


def put_runs(grid: Grid, x: int, y: int, runs: Sequence[tuple[str, Style]]) -> int:
    for text, style in runs:
        x += grid.put(x, y, text, style)
    return x


def sparkline(values: Sequence[float], width: int, accessible: bool, top: float = 0.0) -> str:
    """The last ``width`` values as one line of level glyphs; NaN (n/a) shows as a blank.

    ``top`` fixes the scale (a GPU's total memory), else the line spans min..max of the data.
    """
    if width <= 0:
        return ""
    ramp = SPARK_ASCII if accessible else SPARK
    vals = list(values)[-width:]
    finite = [v for v in vals if not math.isnan(v)]
    if not finite:
        return " " * width
    lo = 0.0 if top > 0 else min(finite)
    hi = top if top > 0 else max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if math.isnan(v):
            out.append(" ")
        elif span <= 0:
            out.append(ramp[len(ramp) // 2])
        else:
            level = (min(max(v, lo), hi) - lo) / span
            out.append(ramp[min(len(ramp) - 1, int(level * (len(ramp) - 1) + 0.5))])
    return " " * (width - len(out)) + "".join(out)


def phase_badge(phase: str, accessible: bool) -> tuple[str, Style]:
    """The PHASE cell: a symbol and a word (a word alone when accessible), coloured."""
    symbol, word, colour = _PHASES.get(phase, ("?", "UNKNOWN", "muted"))
    if accessible:
        return word, Style(fg=colour)
    return f"{symbol} {word.lower()}", Style(fg=colour)


def verdict_style(verdict: str) -> Style:
    colour = _VERDICTS.get(verdict, "muted")
    return Style(fg=colour, bold=colour == "crit")


def rate(mib_s: float) -> str:
    """A signed rate, e.g. ``+30M/s``, ``-1.2G/s``, ``0M/s``."""
    if math.isnan(mib_s):
        return NONE
    sign = "+" if mib_s > 0 else "-" if mib_s < 0 else ""
    a = abs(mib_s)
    if a >= 1024:
        return f"{sign}{a / 1024:.1f}G/s"
    if a >= 10 or a == 0:
        return f"{sign}{a:.0f}M/s"
    return f"{sign}{a:.1f}M/s"


def duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d4h``: how far away an OOM is, or how old a process."""
    if math.isnan(seconds) or seconds < 0:
        return NONE
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def box(grid: Grid, x: int, y: int, w: int, h: int, title: str, accessible: bool) -> None:
    """An overlay frame, cleared inside, with a title in the top edge."""
    if w < 4 or h < 3:
        return
    grid.fill(x, y, w, h, Style(bg="panel"))
    hz, vt, corners = ("-", "|", "++++") if accessible else ("─", "│", "┌┐└┘")
    edge = Style(fg="border", bg="panel")
    grid.put(x, y, corners[0] + hz * (w - 2) + corners[1], edge)
    grid.put(x, y + h - 1, corners[2] + hz * (w - 2) + corners[3], edge)
    for yy in range(y + 1, y + h - 1):
        grid.put(x, yy, vt, edge)
        grid.put(x + w - 1, yy, vt, edge)
    if title:
        grid.put(x + 2, y, f" {title} ", Style(fg="accent", bg="panel", bold=True), w - 4)
