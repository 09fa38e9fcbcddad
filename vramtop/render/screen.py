"""What the screen shows, drawn into a :class:`Grid` from a :class:`ViewState` (no I/O here).

Where it sits: ``controller.py`` calls :func:`draw` for every frame; the writer then sends the
difference to the terminal, and ``svg.py`` can turn the same grid into a screenshot.

Layouts (``display.layout = "auto"`` picks by size): full >= 120x30 (cards with clocks, a memory
timeline per GPU in the rows the table does not need, or one for the selected process's GPU when
they do not all fit, a table with phase, rate, verdict and ETA), compact >= 80x20 (cards, bars
and sparklines, table), mini >= 40x10 (one line per GPU and a short table, no history), smaller:
a one-line notice. A forced layout
holds at any size from 40x10 up. Overlays (detail, help, kill dialog) draw over the layout.
"""

from __future__ import annotations

import time

from vramtop import __version__
from vramtop.render.cards import gpu_card, gpu_line_mini, oom_alert
from vramtop.render.charts import MIN_TABLE_ROWS, ChartPlacement, draw_gpu_chart, plan_charts
from vramtop.render.detail import draw_detail
from vramtop.render.footer import draw_footer, notes
from vramtop.render.grid import Grid, Style
from vramtop.render.history import History, NoHistory
from vramtop.render.keys import help_lines
from vramtop.render.state import ViewState, move_selection
from vramtop.render.table import column_help, draw_table
from vramtop.render.widgets import MUTED, box, memory_bar

__all__ = ["ViewState", "draw", "memory_bar", "move_selection", "pick_layout"]

MIN_W, MIN_H = 40, 10
COMPACT_W, COMPACT_H = 80, 20
FULL_W, FULL_H = 120, 30
TABLE_KEEP = 5  # process rows the GPU cards always leave the table
ACCENT = Style(fg="accent", bold=True)


def pick_layout(width: int, height: int, forced: str = "auto") -> str:
    if width < MIN_W or height < MIN_H:
        return "tiny"
    if forced != "auto":
        return forced
    if width >= FULL_W and height >= FULL_H:
        return "full"
    if width >= COMPACT_W and height >= COMPACT_H:
        return "compact"
    return "mini"


def draw(
    grid: Grid, state: ViewState, history: History | None = None, now: float | None = None
) -> str:
    """Draw one frame; return the layout used."""
    history = history or NoHistory()
    w, h = grid.width, grid.height
    layout = pick_layout(w, h, state.layout)
    if layout == "tiny":
        msg = f"terminal too small (needs {MIN_W}x{MIN_H})"
        if len(msg) > w:
            msg = f"too small (needs {MIN_W}x{MIN_H})"
        grid.put(0, 0, msg, Style(fg="warn", bold=True))
        return layout
    _header(grid, state, now)
    sample = state.sample
    gpus = [g for g in sample.snapshot.gpus if state.filters.gpu_shown(g)] if sample else []
    knowledge = state.knowledge
    y = 2
    if sample is None:
        grid.put(1, y, "waiting for the first sample…", MUTED)
        y += 2
    if layout == "mini":
        max_gpu_lines = max(1, (h - 4) // 2)
        for gpu in gpus[:max_gpu_lines]:
            alert = oom_alert(gpu, knowledge.gpus.get(gpu.index), state.config)
            gpu_line_mini(grid, y, gpu, alert, state.accessible)
            y += 1
        if len(gpus) > max_gpu_lines:
            grid.put(0, y, f"+{len(gpus) - max_gpu_lines} more GPUs", MUTED)
            y += 1
    else:
        full = layout == "full"
        charts = plan_charts(state, gpus, y, h) if full else ChartPlacement()
        # A card is drawn only where it leaves a line for the GPUs left out, the table's header,
        # up to five processes and the footer: 16 GPUs' cards must not push the processes off.
        keep = 6 + min(TABLE_KEEP, max(MIN_TABLE_ROWS, len(state.items)))
        for shown, gpu in enumerate(gpus):
            if y + keep > h:
                more = len(gpus) - shown
                plural = "s" if more > 1 else ""
                note = f"+{more} more GPU{plural} (a taller terminal shows them; the table lists"
                grid.put(1, y, note + " their processes)", MUTED)
                y += 1
                break
            rows = charts.rows.get(gpu.index, 0)
            y = gpu_card(
                grid, y, gpu, knowledge.gpus.get(gpu.index), state.config, history,
                full=full, accessible=state.accessible, sparkline=not rows,
            )  # fmt: skip
            if rows and not charts.single:
                y = draw_gpu_chart(grid, y, gpu, rows, state, history)
            if full and charts.gaps:
                y += 1
        if charts.single:
            focus = next((g for g in gpus if g.index in charts.rows), None)
            if focus is not None:
                y = draw_gpu_chart(grid, y, focus, charts.rows[focus.index], state, history, True)
    if sample is not None or layout != "mini":
        draw_table(grid, y + (0 if layout == "mini" else 1), h - 1, state, layout == "full")
    draw_footer(grid, state)
    if state.overlay == "detail":
        draw_detail(grid, state.selected_view(), knowledge, state.config, history,
                    state.accessible)  # fmt: skip
    elif state.overlay == "help":
        _help(grid, state)
    elif state.overlay == "kill" and state.kill is not None:
        _kill_dialog(grid, state)
    return layout


def _header(grid: Grid, state: ViewState, now: float | None) -> None:
    sample = state.sample
    left = f" vramtop {__version__}"
    grid.put(0, 0, left, ACCENT)
    x = len(left)
    if sample is not None:
        snap = sample.snapshot
        info = f"  {snap.backend}  driver {snap.driver_version}  CUDA {snap.cuda_version}"
        x += grid.put(x, 0, info, MUTED)
    right = f"theme {state.theme}  " if grid.width >= 100 else ""
    clock = state.config.display.clock
    if clock != "off":
        stamp = time.localtime(now if now is not None else time.time())
        right += time.strftime("%H:%M:%S" if clock == "seconds" else "%H:%M", stamp)
    if x + len(right) + 2 < grid.width:
        grid.put(grid.width - len(right) - 1, 0, right, MUTED)


def _help(grid: Grid, state: ViewState) -> None:
    # The notes first and whole (the status line cuts them), then the keys, then the columns.
    lines: list[tuple[str, str]] = []
    for note in notes(state):
        lines.append(("note", note.text))
    if lines:
        lines.append(("", ""))
    lines += help_lines()
    lines += [("", ""), *column_help()]
    w = min(grid.width - 4, 100)
    text_w = w - 18
    wrapped: list[tuple[str, str]] = []
    for keys, what in lines:
        while len(what) > text_w:
            cut = what.rfind(" ", 0, text_w)
            cut = cut if cut > text_w // 2 else text_w
            wrapped.append((keys, what[:cut]))
            keys, what = "", what[cut:].lstrip()
        wrapped.append((keys, what))
    h = min(grid.height - 2, len(wrapped) + 2)
    x0 = (grid.width - w) // 2
    y0 = max(1, (grid.height - h) // 2)
    box(grid, x0, y0, w, h, "help: notes, keys, columns  (Esc closes)", state.accessible)
    fits = h - 2 if len(wrapped) <= h - 2 else h - 3
    for i, (keys, what) in enumerate(wrapped[:fits]):
        grid.put(x0 + 2, y0 + 1 + i, f"{keys:<14}", Style(fg="accent", bg="panel", bold=True))
        grid.put(x0 + 16, y0 + 1 + i, what, Style(fg="text", bg="panel"), text_w)
    if len(wrapped) > fits:
        grid.put(x0 + 2, y0 + h - 2, "(a taller terminal shows the rest)", MUTED.but(bg="panel"))


def _kill_dialog(grid: Grid, state: ViewState) -> None:
    k = state.kill
    assert k is not None
    w = min(grid.width - 4, 84)
    h = 11
    x0 = (grid.width - w) // 2
    y0 = max(1, (grid.height - h) // 2)
    title = "kill process" if not k.refusal else "kill refused"
    box(grid, x0, y0, w, h, title, state.accessible)
    text = Style(fg="text", bg="panel")
    label = Style(fg="muted", bg="panel")
    rows = [
        ("PID", f"{k.pid}"),
        ("user", k.user),
        ("command", k.command),
        ("VRAM", k.vram),
        ("age", k.age),
    ]
    for i, (name, value) in enumerate(rows):
        grid.put(x0 + 2, y0 + 1 + i, f"{name:<9}", label)
        grid.put(x0 + 11, y0 + 1 + i, value, text, w - 13)
    y = y0 + 7
    if k.refusal:
        grid.put(x0 + 2, y, f"refused: {k.refusal}", Style(fg="crit", bg="panel", bold=True), w - 4)
        grid.put(x0 + 2, y + 2, "[Esc] close", Style(fg="accent", bg="panel", bold=True))
    elif k.phase == "confirm":
        crit = Style(fg="crit", bg="panel", bold=True)
        if k.risk:
            grid.put(x0 + 2, y - 1, f"warning: {k.risk}", crit, w - 4)
        if k.risk and k.risk_asked:
            grid.put(
                x0 + 2, y, "This is not your own job. Really send SIGTERM, then SIGKILL?", text
            )
            grid.put(x0 + 2, y + 2, "[Y] (shift-y) kill it anyway", crit)
            grid.put(x0 + 34, y + 2, "[n / Esc] cancel", Style(fg="accent", bg="panel", bold=True))
        else:
            grid.put(x0 + 2, y, "Send SIGTERM now, SIGKILL after 5 s if it is still alive?", text)
            grid.put(x0 + 2, y + 2, "[y / Enter] kill", crit)
            grid.put(x0 + 22, y + 2, "[n / Esc] cancel", Style(fg="accent", bg="panel", bold=True))
    else:
        style = Style(fg="warn" if k.phase == "terminating" else "ok", bg="panel", bold=True)
        if k.phase in ("refused", "failed"):
            style = style.but(fg="crit")
        line = k.message
        if k.phase == "terminating" and k.seconds_left > 0:
            line = f"SIGTERM sent; SIGKILL in {k.seconds_left:.0f} s if still alive"
        grid.put(x0 + 2, y, f"{k.phase.upper()}: {line}", style, w - 4)
        hint = "[Esc] close" if k.finished else "[Esc] hide (the kill goes on)"
        grid.put(x0 + 2, y + 2, hint, Style(fg="accent", bg="panel", bold=True))
