"""A GPU's memory timeline: used memory over the history window, and the road ahead to OOM.

Where it sits: ``screen.py`` asks :func:`plan_timeline` for a :class:`TimelinePlan` (the widget's
whole state, computed from the shm history, the analysis and the event log, ratatui style: no
drawing), then :func:`draw_timeline` blits that plan into the grid. Tests read the plan (where the
ETA lands, which ticks exist) as well as the screen.

The picture, top to bottom: a legend row; the ceiling (the card's total) with the OOM mark and
event marks; the plot (braille area of used memory, or the top processes stacked, with the
driver-reserved memory as a band hanging from the ceiling and the projection as a fan of lines);
the time axis (clock times at round steps, and "now").

The time axis pages instead of scrolling: dot column ``x`` is the time ``t0 + x * dt`` with
``t0`` aligned to a quarter of the width, and "now" stays between the middle and three quarters
of the chart. A new sample changes one column; the whole chart moves only when "now" reaches the
three-quarter mark (every quarter width of samples). The right part is the road ahead: when the
analysis predicts an OOM, the projection runs from the newest sample to the ceiling at now + ETA
(the same ETA as in the process table), with the range of the prediction as a fan.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from vramtop.analysis.model import OK, OomPrediction
from vramtop.fmt import GiB, size
from vramtop.gpu.snapshot import GpuSample
from vramtop.na import NaType
from vramtop.render.braille import Canvas
from vramtop.render.grid import Grid, Style
from vramtop.render.history import History
from vramtop.render.model import Knowledge
from vramtop.render.widgets import duration

GUTTER = 7  # y labels ("80.0G") and the axis line
MIN_PLOT_ROWS = 3
CHROME_ROWS = 3  # legend, ceiling, time axis
STACK_TOP = 4  # processes drawn in their own colour in the stacked view; the rest is "other"
STACK_COLOURS = ("series1", "series2", "series3", "series4")
STACK_MARKS = ("A", "B", "C", "D")
TICK_STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
MIN_TICK_CELLS = 12
GIB_STEPS = (0.25, 0.5, 1, 2, 4, 5, 8, 10, 16, 20, 32, 40, 50, 64, 80, 100, 128, 160, 200, 256)

MUTED = Style(fg="muted")
AXIS = Style(fg="border")
CEILING = Style(fg="warn")
OOM_MARK = Style(fg="crit", bold=True)
USED = Style(fg="used")
RESERVED = Style(fg="reserved")
PROJECTION = Style(fg="crit")
FAN = Style(fg="warn")
OTHER = Style(fg="muted")
EVENT = Style(fg="accent", bold=True)


@dataclass(frozen=True)
class ChartEvent:
    """Something that happened on a GPU, marked on its timeline at ``ts``."""

    ts: float
    kind: str  # "start", "exit", "restart", "phase", "oom"
    label: str  # short text, e.g. "+1234", "growing"


EVENT_GLYPHS = {
    # kind: (glyph, accessible letter)
    "start": ("▴", "s"),
    "exit": ("▾", "x"),
    "restart": ("↻", "R"),
    "phase": ("◆", "p"),
    "oom": ("!", "!"),
}
EVENT_WORDS = {"start": "start", "exit": "exit", "restart": "restart", "phase": "phase",
               "oom": "OOM likely"}  # fmt: skip


@dataclass(frozen=True)
class Layer:
    label: str
    style: Style
    mark: str  # accessible ASCII mark
    tops: list[float]  # per dot column, in dots (NaN = nothing)
    bases: list[float] | None = None


@dataclass(frozen=True)
class Road:
    """The projection, in dot coordinates of the plot."""

    x0: float
    y0: float
    x_eta: float  # where the best estimate meets the ceiling
    x_low: float  # the range of the prediction
    x_high: float
    eta_s: float
    label: str  # e.g. "OOM ~23s"


@dataclass(frozen=True)
class TimelinePlan:
    """Everything :func:`draw_timeline` draws; positions are cells from the widget's left edge
    (``col``) or dots of the plot (``x``)."""

    gpu_index: int
    width: int
    height: int
    total: float  # bytes at the ceiling
    dt: float  # seconds per dot column (two per cell)
    t0: float  # time at dot column 0
    now_x: int  # the newest sample's dot column
    stacked: bool
    layers: tuple[Layer, ...] = ()
    reserved: tuple[float, ...] = ()  # per dot column, band depth in dots below the ceiling
    road: Road | None = None
    ticks: tuple[tuple[int, str], ...] = ()  # (plot column, label)
    y_labels: tuple[tuple[int, str], ...] = ()  # (plot row from the top, label)
    legend: tuple[tuple[str, Style], ...] = ()
    markers: tuple[tuple[int, str, str], ...] = ()  # (plot column, kind, label)
    note: str = ""  # said in the plot when there is nothing to draw yet
    title: str = ""

    @property
    def plot_w(self) -> int:
        return max(0, self.width - GUTTER)

    @property
    def plot_h(self) -> int:
        return max(0, self.height - CHROME_ROWS)

    @property
    def now_col(self) -> int:
        return self.now_x // 2

    @property
    def eta_col(self) -> int | None:
        """Plot column where the best estimate meets the ceiling (None: no prediction, or past
        the right edge)."""
        if self.road is None:
            return None
        col = int(self.road.x_eta // 2)
        return col if col < self.plot_w else None


def rows_for(plot_rows: int) -> int:
    return plot_rows + CHROME_ROWS


def gpu_prediction(gpu_index: int, knowledge: Knowledge) -> OomPrediction | None:
    """The prediction the UI shows for a GPU: the alert's, else the ETA a row of that GPU shows
    (the table shows an ETA for a process at risk even below the alert's confidence)."""
    g = knowledge.gpus.get(gpu_index)
    if g is not None and g.oom is not None:
        return g.oom
    best: OomPrediction | None = None
    for (_ident, index), pa in knowledge.processes.items():
        if index != gpu_index or pa.eta is None or pa.verdict == OK:
            continue
        if best is None or pa.eta.eta_s < best.eta_s:
            best = pa.eta
    return best


def _finite(value: object) -> float:
    if isinstance(value, NaType) or value is None:
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def sample_columns(ts: Sequence[float], values: Sequence[float], t0: float, dt: float, n: int,
             scale: float) -> list[float]:  # fmt: skip
    """Samples -> one value per dot column (the highest sample in it, in dots); a column a
    sample skipped (timer jitter) takes its left neighbour's value, a longer gap stays empty."""
    out = [math.nan] * n
    for t, v in zip(ts, values, strict=False):
        if not (t == t and v == v):
            continue
        x = math.floor((t - t0) / dt + 1e-9)
        if 0 <= x < n:
            d = v * scale
            if not out[x] >= d:
                out[x] = d
    newest = max((x for x in range(n) if out[x] == out[x]), default=-1)
    last, gap = math.nan, 0
    for x in range(newest):
        if out[x] == out[x]:
            last, gap = out[x], 0
        else:
            gap += 1
            if last == last and gap <= 2:
                out[x] = last
    return out


def clock_ticks(t0: float, dots: int, dt: float) -> tuple[tuple[int, str], ...]:
    """Clock-time ticks at round times (multiples of the step) in a page: they keep their columns
    until the page turns, so the axis costs no bytes while "now" walks along it."""
    step = next((s for s in TICK_STEPS if s / dt / 2 >= MIN_TICK_CELLS), TICK_STEPS[-1])
    fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    out: list[tuple[int, str]] = []
    tick = math.ceil(t0 / step) * step
    while (x := (tick - t0) / dt) < dots:
        out.append((int(x // 2), time.strftime(fmt, time.localtime(tick))))
        tick += step
    return tuple(out)


def draw_axis(grid: Grid, x: int, y: int, width: int, ticks: Sequence[tuple[int, str]],
              now_col: int, accessible: bool, bg: str = "") -> None:  # fmt: skip
    """The time axis: ticks with clock labels, and "now" (a label it would cover is left out)."""
    axis = Style(fg="border", bg=bg)
    muted = Style(fg="muted", bg=bg)
    tick_ch = "|" if accessible else "┴"
    grid.put(x, y, ("-" if accessible else "─") * width, axis)
    now_end = now_col + 4
    for col, label in ticks:
        end = col + 1 + len(label)
        if col == now_col:
            continue
        grid.put(x + col, y, tick_ch, axis)
        if end <= width and (end <= now_col or col >= now_end):
            grid.put(x + col + 1, y, label, muted)
    if 0 <= now_col < width:
        grid.put(x + now_col, y, tick_ch, axis)
        grid.put(
            x + now_col + 1, y, "now", Style(fg="accent", bg=bg, bold=True), width - now_col - 1
        )


def _y_labels(total: float, plot_h: int) -> tuple[tuple[int, str], ...]:
    """Labels at round GiB values, at least three rows apart, clear of the ceiling and zero."""
    if plot_h < 3 or total <= 0:
        return ()
    total_gib = total / GiB
    rows_per_gib = plot_h / total_gib
    step = next((s for s in GIB_STEPS if s * rows_per_gib >= 3), GIB_STEPS[-1])
    out = []
    v = step
    while v < total_gib - 1e-9:
        dots = v / total_gib * plot_h * 4
        row = plot_h - 1 - int(dots // 4)
        if 1 <= row <= plot_h - 2 and (total_gib - v) * rows_per_gib >= 1.5:
            text = f"{v:g}G"
            out.append((row, text))
        v += step
    return tuple(out)


def time_window(t_now: float, dots_w: int, dt: float) -> tuple[float, int]:
    """(time at dot column 0, dot column of ``t_now``): pages of a quarter width, "now" between
    the middle and three quarters, so a new sample changes one column, not the whole chart."""
    page = max(1, dots_w // 4)
    k = math.floor(t_now / (page * dt))
    t0 = (k - 2) * page * dt
    return t0, min(dots_w - 1, math.floor((t_now - t0) / dt + 1e-9))


def plan_timeline(
    gpu: GpuSample,
    history: History,
    knowledge: Knowledge,
    width: int,
    height: int,
    *,
    dt: float,
    history_length: int,
    stacked: bool = False,
    slots: Sequence[tuple[int, str]] = (),
    events: Sequence[ChartEvent] = (),
    accessible: bool = False,
) -> TimelinePlan:
    """The timeline of one GPU in ``width`` x ``height`` cells. ``slots`` are (shm slot, label)
    of the GPU's processes, largest first (the stacked view draws the first few)."""
    dt = max(0.05, dt)
    plot_w = max(0, width - GUTTER)
    plot_h = max(0, height - CHROME_ROWS)
    dots_w, dots_h = 2 * plot_w, 4 * plot_h
    total = _finite(gpu.memory_total)
    base = TimelinePlan(gpu.index, width, height, total, dt, 0.0, 0, stacked)
    if plot_w < 4 or plot_h < 1:
        return base
    mode = "stacked by top processes" if stacked else "GPU total"
    title = f"{gpu.label} memory, {mode}"
    if not total or total != total:
        note = "memory total n/a: nothing to scale the chart to"
        return dataclasses.replace(base, title=title, note=note)
    n = min(history_length, dots_w + 8)
    ts, used = history.gpu_series(gpu.index, "used", n)
    if not ts or not any(v == v for v in used):
        note = "collecting samples…" if not accessible else "collecting samples..."
        return dataclasses.replace(base, title=title, note=note)
    t0, now_x = time_window(max(t for t in ts if t == t), dots_w, dt)
    scale = dots_h / total

    layers: list[Layer] = []
    legend: list[tuple[str, Style]] = []
    used_cols = sample_columns(ts, used, t0, dt, dots_w, scale)
    if stacked and slots:
        bases = [0.0 if v == v else math.nan for v in used_cols]
        for i, (slot, label) in enumerate(slots[:STACK_TOP]):
            pts, pvals = history.process_series(slot, n)
            cols = sample_columns(pts, pvals, t0, dt, dots_w, scale)
            tops = [b + c if b == b and c == c else b for b, c in zip(bases, cols, strict=True)]
            style = Style(fg=STACK_COLOURS[i])
            layers.append(Layer(label, style, STACK_MARKS[i], tops, bases))
            legend.append((f"{STACK_MARKS[i] if accessible else '█'} {label}", style))
            bases = tops
        layers.append(Layer("other", OTHER, "o", used_cols, bases))
        legend.append(("o other" if accessible else "█ other", OTHER))
    else:
        layers.append(Layer("used", USED, "#", used_cols))
        legend.append(("# used" if accessible else "⣿ used", USED))

    reserved: tuple[float, ...] = ()
    rts, rvals = history.gpu_series(gpu.index, "reserved", n)
    res_cols = sample_columns(rts, rvals, t0, dt, dots_w, scale)
    latest = _finite(gpu.memory_reserved)
    if latest == latest and latest > 0:
        depth = max(1.0, latest * scale)  # always visible when NVML reports some
        res_cols = [depth if x > now_x else (max(1.0, c) if c == c and c > 0 else c)
                    for x, c in enumerate(res_cols)]  # fmt: skip
        reserved = tuple(res_cols)
        legend.append((f"{'+' if accessible else '⠉'} reserved {size(latest)}", RESERVED))

    road = None
    prediction = gpu_prediction(gpu.index, knowledge)
    now_used = next((v for v in reversed(used_cols[: now_x + 1]) if v == v), math.nan)
    if prediction is not None and now_used == now_used and prediction.eta_s == prediction.eta_s:
        road = Road(
            x0=now_x, y0=now_used,
            x_eta=now_x + prediction.eta_s / dt,
            x_low=now_x + max(0.0, prediction.eta_low_s) / dt,
            x_high=now_x + (prediction.eta_high_s / dt
                            if math.isfinite(prediction.eta_high_s) else dots_w * 4),
            eta_s=prediction.eta_s, label=f"OOM ~{duration(prediction.eta_s)}",
        )  # fmt: skip
        legend.append(("/ projection" if accessible else "⠔ projection", PROJECTION))

    markers = []
    for ev in events:
        x = (ev.ts - t0) / dt
        if 0 <= x < dots_w:
            markers.append((int(x // 2), ev.kind, ev.label))
    for kind in EVENT_GLYPHS:
        if any(m[1] == kind for m in markers):
            glyph, letter = EVENT_GLYPHS[kind]
            legend.append((f"{letter if accessible else glyph} {EVENT_WORDS[kind]}", EVENT))

    return TimelinePlan(
        gpu_index=gpu.index,
        width=width,
        height=height,
        total=total,
        dt=dt,
        t0=t0,
        now_x=now_x,
        stacked=stacked,
        layers=tuple(layers),
        reserved=reserved,
        road=road,
        ticks=clock_ticks(t0, dots_w, dt),
        y_labels=_y_labels(total, plot_h),
        legend=tuple(legend),
        markers=tuple(markers),
        title=title,
    )


def draw_road(canvas: Canvas, road: Road, bg: str = "") -> None:
    """The fan (the prediction's range, sparse dots) under the best estimate (a solid line)."""
    top = canvas.dots_h - 1
    for x_end in (road.x_low, road.x_high):
        if abs(x_end - road.x_eta) >= 4:  # a fan narrower than two cells would only blur the line
            canvas.line(road.x0, road.y0, x_end, top, FAN.but(bg=bg), ".", step=4)
    canvas.line(road.x0, road.y0, road.x_eta, top, PROJECTION.but(bg=bg), "/")


def draw_timeline(grid: Grid, x: int, y: int, plan: TimelinePlan, accessible: bool) -> None:
    """Blit ``plan`` with its top-left corner at (x, y)."""
    pw, ph = plan.plot_w, plan.plot_h
    if pw < 4 or ph < 1:
        return
    px = x + GUTTER
    # legend row
    grid.put(x, y, f"{'GiB':>{GUTTER - 1}}", MUTED)
    lx = px + grid.put(px, y, plan.title, Style(fg="header", bold=True))
    for text, style in plan.legend:
        if lx + len(text) + 2 > x + plan.width:
            break
        lx += grid.put(lx + 2, y, text, style) + 2
    hint = f"Tab: {'GPU total' if plan.stacked else 'stacked'}"
    if lx + len(hint) + 3 <= x + plan.width:
        grid.put(x + plan.width - len(hint) - 1, y, hint, MUTED)
    # ceiling row
    cy = y + 1
    total_label = size(plan.total) if plan.total == plan.total else "?"
    grid.put(x, cy, f"{total_label:>{GUTTER - 1}}", CEILING)
    grid.put(px - 1, cy, "+" if accessible else "┤", AXIS)
    grid.put(px, cy, ("=" if accessible else "╌") * pw, CEILING)
    # plot rows and their gutter
    top = cy + 1
    labels = dict(plan.y_labels)
    for r in range(ph):
        grid.put(x, top + r, f"{labels.get(r, ''):>{GUTTER - 1}}", MUTED)
        grid.put(px - 1, top + r, "|" if accessible else "│", AXIS)
    # time axis
    ay = top + ph
    grid.put(x, ay, f"{'0':>{GUTTER - 1}}", MUTED)
    grid.put(px - 1, ay, "+" if accessible else "└", AXIS)
    if not plan.note:
        draw_axis(grid, px, ay, pw, plan.ticks, plan.now_col, accessible)
    else:
        grid.put(px, ay, ("-" if accessible else "─") * pw, AXIS)
    if plan.note:
        grid.put(px + 2, top + ph // 2, plan.note, MUTED, pw - 2)
        return
    canvas = Canvas(pw, ph)
    for layer in plan.layers:
        canvas.area(layer.tops, layer.style, layer.mark, layer.bases)
    if plan.reserved:
        dots_h = canvas.dots_h
        canvas.area(
            [dots_h if d == d else math.nan for d in plan.reserved],
            RESERVED, "+",
            [dots_h - d if d == d else math.nan for d in plan.reserved],
        )  # fmt: skip
    road = plan.road
    if road is not None:
        draw_road(canvas, road)
    canvas.blit(grid, px, top, accessible, Style())
    # marks on the ceiling: events, then the OOM mark over them
    for col, kind, _label in plan.markers:
        glyph, letter = EVENT_GLYPHS.get(kind, ("•", "*"))
        grid.put(px + col, cy, letter if accessible else glyph, EVENT)
    if road is not None:
        eta_col = plan.eta_col
        if eta_col is not None:
            grid.put(px + eta_col, cy, "X" if accessible else "✕", OOM_MARK)
            text = f" {road.label} "
            fits = eta_col + 1 + len(text) <= pw
            lx = px + eta_col + 1 if fits else px + eta_col - len(text)
            grid.put(max(px, lx), cy, text, OOM_MARK)
        else:
            text = f" {road.label} " + (">" if accessible else "→")
            grid.put(px + pw - len(text), cy, text, OOM_MARK)
