"""Where the full layout puts the GPU timelines, and the glue that draws one from the view state.

Where it sits: ``screen.py`` calls :func:`plan_charts` before drawing the cards (the charts get
the rows the process table does not need) and :func:`draw_gpu_chart` under a card (one chart per
GPU when they all fit) or after the cards (one chart, for the selected process's GPU, when they
do not, e.g. eight GPUs on 45 rows). The timeline itself is ``timeline.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from vramtop.gpu.snapshot import GpuSample
from vramtop.render.cards import card_rows
from vramtop.render.command import short_command
from vramtop.render.grid import Grid
from vramtop.render.history import History
from vramtop.render.state import ViewState
from vramtop.render.timeline import (
    MIN_PLOT_ROWS,
    draw_timeline,
    gpu_prediction,
    plan_timeline,
    rows_for,
)

MAX_PLOT_ROWS = 40
MIN_TABLE_ROWS = 3  # rows kept for processes even when fewer are listed (a new one fits)
SINGLE_TABLE_ROWS = 7  # the single chart never squeezes the table below this
SINGLE_MIN_PLOT_ROWS = 6


@dataclass(frozen=True)
class ChartPlacement:
    rows: dict[int, int] = field(default_factory=dict)  # GPU index -> chart rows
    single: bool = False  # one chart after the cards instead of one under each
    gaps: bool = True  # a blank line after each card


def table_need(state: ViewState) -> int:
    """Rows the process table wants: header, its rows (at least a few), other users' lines."""
    return 1 + max(MIN_TABLE_ROWS, len(state.items)) + len(state.others)


def focus_gpu(state: ViewState, gpus: Sequence[GpuSample]) -> GpuSample | None:
    """The GPU of the single chart: the selected process's, else the one closest to OOM."""
    shown = {g.index: g for g in gpus if not g.lost}
    view = state.selected_view()
    if view is not None and view.row.gpu_index in shown:
        return shown[view.row.gpu_index]
    etas = [(p.eta_s, i) for i in shown if (p := gpu_prediction(i, state.knowledge)) is not None]
    if etas:
        return shown[min(etas)[1]]
    return next(iter(shown.values()), None)


def plan_charts(state: ViewState, gpus: Sequence[GpuSample], y: int, height: int) -> ChartPlacement:
    """Chart rows per GPU for the full layout whose cards start on line ``y``."""
    live = [g for g in gpus if not g.lost]
    if not live:
        return ChartPlacement()
    cards = sum(card_rows(g, state.knowledge.gpus.get(g.index), state.config) for g in gpus)
    need = table_need(state)
    # Lines below the cards: the table starts one line after them and ends above the footer.
    left = height - 2 - y - cards
    each = (left - len(gpus) - need) // len(live)
    if each >= rows_for(MIN_PLOT_ROWS):
        rows = min(rows_for(MAX_PLOT_ROWS), each)
        return ChartPlacement({g.index: rows for g in live})
    focus = focus_gpu(state, gpus)
    most = left - min(need, SINGLE_TABLE_ROWS)
    if focus is None or most < rows_for(MIN_PLOT_ROWS):
        return ChartPlacement()
    rows = min(rows_for(MAX_PLOT_ROWS), most, max(rows_for(SINGLE_MIN_PLOT_ROWS), left - need))
    return ChartPlacement({focus.index: rows}, single=True, gaps=False)


def stack_slots(state: ViewState, gpu_index: int) -> list[tuple[int, str]]:
    """(shm slot, label) of the GPU's processes with a history, largest first."""
    sample = state.sample
    if sample is None:
        return []
    used = {p.pid: p.used_bytes for p in sample.snapshot.processes if p.gpu_index == gpu_index}
    rows = [r for r in sample.rows if r.gpu_index == gpu_index and r.slot >= 0]

    def size_of(pid: int) -> float:
        v = used.get(pid)
        return float(v) if isinstance(v, int | float) else -1.0

    rows.sort(key=lambda r: (-size_of(r.identity.pid), r.identity.pid))
    out = []
    for r in rows:
        name = short_command(r.command, 18) if r.command else "?"
        out.append((r.slot, f"{r.identity.pid} {name}"))
    return out


def draw_gpu_chart(
    grid: Grid,
    y: int,
    gpu: GpuSample,
    rows: int,
    state: ViewState,
    history: History,
    single: bool = False,
) -> int:
    """Draw the timeline of ``gpu`` on ``rows`` lines from ``y``; return the line after it.
    ``single``: the one chart for the selected process's GPU (the title says so).

    Frames come with every message (analysis, enrichment, keys), samples far less often: the drawn
    chart is kept and copied again until something it shows has changed."""
    general = state.config.general
    width = grid.width - 1
    slots = stack_slots(state, gpu.index) if state.chart_stacked else []
    events = state.events.for_gpu(gpu.index)
    newest, _ = history.gpu_series(gpu.index, "used", 1)
    key = (
        tuple(newest), state.knowledge.analysis_at, len(events), events[-1] if events else None,
        width, rows, state.chart_stacked, tuple(slots), state.accessible, single,
        gpu.memory_total, gpu.memory_reserved, general.refresh_rate, general.history_length,
    )  # fmt: skip
    cached = state.chart_cache.get(gpu.index)
    if cached is None or cached[0] != key:
        plan = plan_timeline(
            gpu, history, state.knowledge, width, rows,
            dt=general.refresh_rate, history_length=general.history_length,
            stacked=state.chart_stacked, slots=slots, events=events,
            accessible=state.accessible,
        )  # fmt: skip
        if single and plan.title:
            plan = dataclasses.replace(plan, title=plan.title + " (selected process's GPU)")
        drawn = Grid(width, rows)
        draw_timeline(drawn, 0, 0, plan, state.accessible)
        cached = (key, drawn)
        state.chart_cache[gpu.index] = cached
    drawn = cached[1]
    for r in range(min(rows, grid.height - y)):
        grid.chars[y + r][:width] = drawn.chars[r]
        grid.styles[y + r][:width] = drawn.styles[r]
    return y + rows
