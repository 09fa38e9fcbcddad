"""The detail panel's history chart: one process's memory over time, its PELT segments coloured
and labelled, and the road to OOM when this process drives the GPU's prediction.

Where it sits: ``detail.py`` asks :func:`plan_process_chart` for a :class:`ProcChartPlan` (from
the process's shm ring, its :class:`~vramtop.analysis.model.ProcessAnalysis` and the GPU's
latest sample) and blits it with :func:`draw_process_chart` under the text. Time runs on the
same paged axis as the GPU timelines (``timeline.time_window``), so a sample moves one column.

Scale: when the process drives a prediction, the top of the chart is what it can reach before
the GPU is full (its memory now plus the GPU's free memory), and the projection meets it at the
ETA the table shows; otherwise the top is a round figure above the process's peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vramtop.analysis.model import OK
from vramtop.fmt import size
from vramtop.na import NaType
from vramtop.render.braille import Canvas
from vramtop.render.grid import Grid, Style
from vramtop.render.history import History
from vramtop.render.model import ProcView
from vramtop.render.timeline import (
    GUTTER,
    Road,
    clock_ticks,
    draw_axis,
    draw_road,
    sample_columns,
    time_window,
)
from vramtop.render.widgets import duration

SEGMENT_COLOURS = {
    "warm-up": "accent",
    "plateau": "used",
    "leak": "crit",
    "cache fill": "reserved",
    "release": "ok",
    "spike": "warn",
}
SEGMENT_MARKS = {"warm-up": "w", "plateau": "#", "leak": "L", "cache fill": "c", "release": "r",
                 "spike": "s"}  # fmt: skip


@dataclass(frozen=True)
class SegmentSpan:
    col: int  # first plot column
    end_col: int  # last plot column
    label: str
    style: Style


@dataclass(frozen=True)
class ProcChartPlan:
    width: int
    height: int
    top: float  # bytes at the top of the plot
    top_label: str
    dt: float
    now_x: int
    layers: tuple[tuple[list[float], Style, str], ...] = ()
    ticks: tuple[tuple[int, str], ...] = ()
    spans: tuple[SegmentSpan, ...] = ()
    road: Road | None = None
    note: str = ""
    title: str = ""

    @property
    def chrome(self) -> int:
        return 3 + (1 if self.spans else 0)

    @property
    def plot_w(self) -> int:
        return max(0, self.width - GUTTER)

    @property
    def plot_h(self) -> int:
        return max(0, self.height - self.chrome)


def _round_up(value: float) -> float:
    """A round figure (1, 2 or 5 times a power of two of MiB) at or above ``value`` bytes."""
    mib = max(1.0, value / (1 << 20))
    p = 2.0 ** math.floor(math.log2(mib))
    for m in (1.0, 1.25, 1.5, 2.0):
        if p * m >= mib:
            return float(p * m * (1 << 20))
    return float(2 * p * (1 << 20))


def plan_process_chart(
    view: ProcView,
    history: History,
    width: int,
    height: int,
    *,
    dt: float,
    history_length: int,
    accessible: bool,
) -> ProcChartPlan:
    dt = max(0.05, dt)
    base = ProcChartPlan(width, height, 0.0, "", dt, 0, title="memory history")
    plot_w = max(0, width - GUTTER)
    if plot_w < 4 or height < 5:
        return base
    a = view.analysis
    segments = a.segments if a is not None else ()
    chrome = 3 + (1 if segments else 0)
    plot_h = height - chrome
    dots_w, dots_h = 2 * plot_w, 4 * plot_h
    ts, values = history.process_series(view.row.slot, min(history_length, dots_w + 8))
    finite = [v for v in values if v == v]
    if len(finite) < 2:
        waiting = "no history yet (the sampler's rings fill once a tick)"
        return ProcChartPlan(width, height, 0.0, "", dt, 0, note=waiting, title=base.title)
    t0, now_x = time_window(max(t for t in ts if t == t), dots_w, dt)
    now_value = finite[-1]
    eta = a.eta if a is not None and a.verdict != OK else None
    gpu = view.gpu
    free = math.nan
    if gpu is not None and not isinstance(gpu.memory_free, NaType):
        free = float(gpu.memory_free)
    road = None
    if eta is not None and free == free and eta.eta_s == eta.eta_s:
        top = now_value + max(0.0, free)
        top_label = f"{size(top)} GPU full"
    else:
        top = _round_up(max(finite) * 1.1)
        top_label = size(top)
    scale = dots_h / top if top > 0 else 0.0
    cols = sample_columns(ts, values, t0, dt, dots_w, scale)
    layers: list[tuple[list[float], Style, str]] = [(cols, Style(fg="used"), "#")]
    spans = []
    for seg in segments:
        x_a = max(0, math.floor((seg.start_ts - t0) / dt))
        x_b = min(dots_w - 1, math.floor((seg.end_ts - t0) / dt))
        if x_b < 0 or x_a >= dots_w or x_b < x_a:
            continue
        style = Style(fg=SEGMENT_COLOURS.get(seg.label, "used"))
        part = [v if x_a <= x <= x_b else math.nan for x, v in enumerate(cols)]
        layers.append((part, style, SEGMENT_MARKS.get(seg.label, "#")))
        spans.append(SegmentSpan(x_a // 2, x_b // 2, seg.label, style))
    if eta is not None and top == now_value + max(0.0, free):
        now_dots = next((v for v in reversed(cols[: now_x + 1]) if v == v), now_value * scale)
        road = Road(
            x0=now_x, y0=now_dots, x_eta=now_x + eta.eta_s / dt,
            x_low=now_x + max(0.0, eta.eta_low_s) / dt,
            x_high=now_x + (eta.eta_high_s / dt if math.isfinite(eta.eta_high_s) else 4 * dots_w),
            eta_s=eta.eta_s, label=f"OOM ~{duration(eta.eta_s)}",
        )  # fmt: skip
    n = len(finite)
    title = f"memory history, last {n} samples" + (", PELT segments" if spans else "")
    return ProcChartPlan(
        width, height, top, top_label, dt, now_x, tuple(layers), clock_ticks(t0, dots_w, dt),
        tuple(spans), road, title=title,
    )  # fmt: skip


def draw_process_chart(
    grid: Grid, x: int, y: int, plan: ProcChartPlan, accessible: bool, bg: str = "panel"
) -> None:
    """Blit ``plan`` at (x, y) on the detail panel's background."""
    pw, ph = plan.plot_w, plan.plot_h
    head = Style(fg="accent", bg=bg, bold=True)
    muted = Style(fg="muted", bg=bg)
    axis = Style(fg="border", bg=bg)
    grid.put(x, y, plan.title, head, plan.width)
    if plan.note:
        grid.put(x + len(plan.title) + 2, y, plan.note, muted, plan.width - len(plan.title) - 2)
        return
    if pw < 4 or ph < 1:
        return
    lx = x + len(plan.title) + 2
    for seg_label, colour in SEGMENT_COLOURS.items():
        if not any(s.label == seg_label for s in plan.spans):
            continue
        mark = SEGMENT_MARKS[seg_label] if accessible else "⣿"
        text = f"{mark} {seg_label}"
        if lx + len(text) + 2 > x + plan.width:
            break
        lx += grid.put(lx, y, text, Style(fg=colour, bg=bg)) + 2
    px = x + GUTTER
    cy = y + 1
    ceiling = Style(fg="warn", bg=bg)
    grid.put(x, cy, f"{plan.top_label.split()[0]:>{GUTTER - 1}}", ceiling)
    grid.put(px - 1, cy, "+" if accessible else "┤", axis)
    grid.put(px, cy, ("=" if accessible else "╌") * pw, ceiling)
    if " " in plan.top_label:
        grid.put(px + 1, cy, f" {plan.top_label.split(' ', 1)[1]} ", ceiling)
    top = cy + 1
    for r in range(ph):
        label = size(plan.top / 2) if r == ph // 2 and ph >= 4 else ""
        grid.put(x, top + r, f"{label:>{GUTTER - 1}}", muted)
        grid.put(px - 1, top + r, "|" if accessible else "│", axis)
    ay = top + ph
    grid.put(x, ay, f"{'0':>{GUTTER - 1}}", muted)
    grid.put(px - 1, ay, "+" if accessible else "└", axis)
    draw_axis(grid, px, ay, pw, plan.ticks, plan.now_x // 2, accessible, bg)
    canvas = Canvas(pw, ph)
    for tops, style, mark in plan.layers:
        canvas.area(tops, style.but(bg=bg), mark)
    if plan.road is not None:
        draw_road(canvas, plan.road, bg)
    canvas.blit(grid, px, top, accessible, Style(bg=bg))
    if plan.road is not None:
        col = int(plan.road.x_eta // 2)
        oom = Style(fg="crit", bg=bg, bold=True)
        text = f" {plan.road.label} "
        if col < pw:
            grid.put(px + col, cy, "X" if accessible else "✕", oom)
            grid.put(px + col + 1 if col + 1 + len(text) <= pw else px + col - len(text), cy,
                     text, oom)  # fmt: skip
        else:
            grid.put(px + pw - len(text) - 1, cy, text + (">" if accessible else "→"), oom)
    if plan.spans:
        sy = ay + 1
        for span in plan.spans:
            room = max(1, span.end_col - span.col + 1)
            mark = "|" if accessible else "├"
            grid.put(px + span.col, sy, mark + span.label, span.style.but(bg=bg), room)
