"""What the screen shows, drawn into a :class:`Grid` from the latest sample (no I/O here).

Layouts by terminal size (``display.layout = "auto"``): full/compact (>= 80x20) show a card per
GPU with a memory bar (used / reserved / free) and a process table; mini (>= 40x10) one line per
GPU; below that a one-line notice. Everything that is unknown reads N/A; nothing is guessed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vramtop import __version__
from vramtop.fmt import pct, size, temp, watts
from vramtop.gpu.snapshot import GpuSample
from vramtop.messages import ActorState, ProcessRow, SampleMessage
from vramtop.na import NaType
from vramtop.render.grid import Grid, Style

MIN_W, MIN_H = 40, 10
COMPACT_W, COMPACT_H = 80, 20
FULL_W, FULL_H = 120, 30

TITLE = Style(fg="header", bold=True)
MUTED = Style(fg="muted")
ACCENT = Style(fg="accent", bold=True)
HEAD = Style(fg="header", bold=True, underline=True)
SELECTED = Style(fg="header", bg="selection", bold=True, reverse=False)
SELECTED_NO_COLOR = Style(reverse=True, bold=True)


@dataclass
class ViewState:
    """Everything the render process remembers between frames."""

    sample: SampleMessage | None = None
    health: tuple[ActorState, ...] = ()
    selected: tuple[int, float, int] | None = None  # (pid, start_time, gpu): identity-keyed
    offset: int = 0
    theme: str = "dark"
    layout: str = "auto"
    accessible: bool = False
    no_color: bool = False
    status: str = ""  # transient line (config reload, notices)
    status_until: float = 0.0
    rows_cache: list[ProcessRow] = field(default_factory=list)
    last_index: int = 0  # where the selection was, so it moves to a neighbour when it exits


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
    ratio_used = used / total
    used_style = Style(
        fg="crit" if ratio_used >= 0.95 else "warn" if ratio_used >= 0.85 else "used"
    )
    if accessible:
        return [("#" * n_used, used_style), ("+" * n_res, Style(fg="reserved")),
                ("." * n_free, Style(fg="muted"))]  # fmt: skip
    return [("█" * n_used, used_style), ("▒" * n_res, Style(fg="reserved")),
            ("░" * n_free, Style(fg="free"))]  # fmt: skip


def _put_runs(grid: Grid, x: int, y: int, runs: list[tuple[str, Style]]) -> int:
    for text, style in runs:
        x += grid.put(x, y, text, style)
    return x


def _temp_style(gpu: GpuSample, warn_c: float) -> Style:
    t = gpu.temperature_c
    if isinstance(t, NaType):
        return MUTED
    return Style(fg="crit", bold=True) if t >= warn_c else Style(fg="text")


def sorted_rows(sample: SampleMessage) -> list[ProcessRow]:
    by_key = {(p.pid, p.gpu_index): p for p in sample.snapshot.processes}

    def vram(row: ProcessRow) -> float:
        proc = by_key.get((row.identity.pid, row.gpu_index))
        used = proc.used_bytes if proc is not None else 0
        return -1.0 if isinstance(used, NaType) else float(used)

    return sorted(sample.rows, key=lambda r: (-vram(r), r.gpu_index, r.identity.pid))


def draw(grid: Grid, state: ViewState, warn_c: float = 85.0, now: float | None = None) -> None:
    w, h = grid.width, grid.height
    layout = pick_layout(w, h, state.layout)
    if layout == "tiny":
        msg = f"terminal too small (needs {MIN_W}x{MIN_H})"
        if len(msg) > w:
            msg = f"too small (needs {MIN_W}x{MIN_H})"
        grid.put(0, 0, msg, Style(fg="warn", bold=True))
        return
    sample = state.sample
    _header(grid, state, now)
    if sample is None:
        grid.put(1, 2, "waiting for the first sample…", MUTED)
        _footer(grid, state)
        return
    y = 2
    if layout == "mini":
        for gpu in sample.snapshot.gpus:
            if y >= h - 2:
                break
            _gpu_line_mini(grid, y, gpu, state)
            y += 1
        _footer(grid, state)
        return
    for gpu in sample.snapshot.gpus:
        if y >= h - 6:
            break
        y = _gpu_card(grid, y, gpu, state, warn_c, layout)
    y += 1
    _process_table(grid, y, h - 2, state, sample)
    _footer(grid, state)


def _header(grid: Grid, state: ViewState, now: float | None) -> None:
    sample = state.sample
    left = f" vramtop {__version__}"
    grid.put(0, 0, left, ACCENT)
    x = len(left)
    if sample is not None:
        snap = sample.snapshot
        info = f"  {snap.backend}  driver {snap.driver_version}  CUDA {snap.cuda_version}"
        x += grid.put(x, 0, info, MUTED)
    clock = time.strftime("%H:%M:%S", time.localtime(now if now is not None else time.time()))
    grid.put(grid.width - len(clock) - 1, 0, clock, MUTED)


def _gpu_line_mini(grid: Grid, y: int, gpu: GpuSample, state: ViewState) -> None:
    if gpu.lost:
        grid.put(0, y, f"{gpu.index} LOST {gpu.name}", Style(fg="crit", bold=True))
        return
    label = f"{gpu.index} "
    x = grid.put(0, y, label, ACCENT)
    tail = f" {size(gpu.memory_used)}/{size(gpu.memory_total)} {pct(gpu.util_gpu)}"
    bar_w = max(4, grid.width - x - len(tail) - 2)
    x += grid.put(x, y, "[", MUTED)
    x = _put_runs(grid, x, y, memory_bar(gpu, bar_w, state.accessible))
    x += grid.put(x, y, "]", MUTED)
    grid.put(x, y, tail)


def _gpu_card(
    grid: Grid, y: int, gpu: GpuSample, state: ViewState, warn_c: float, layout: str
) -> int:
    w = grid.width
    name = f" GPU {gpu.index}  {gpu.name}"
    grid.put(0, y, name, TITLE)
    if gpu.lost:
        grid.put(len(name) + 2, y, "LOST", Style(fg="crit", bold=True, reverse=True))
        note = gpu.note or "the driver lost this GPU; retrying"
        grid.put(len(name) + 8, y, note, Style(fg="crit"))
        return y + 3
    stats = [
        ("util ", pct(gpu.util_gpu), Style()),
        ("mem-bw ", pct(gpu.util_memory), Style()),
        ("temp ", temp(gpu.temperature_c), _temp_style(gpu, warn_c)),
        ("power ", f"{watts(gpu.power_w)}/{watts(gpu.power_limit_w)}", Style()),
    ]
    if layout == "full":
        stats.append(("fan ", pct(gpu.fan_percent), Style()))
        sm = "N/A" if isinstance(gpu.clock_sm_mhz, NaType) else f"{gpu.clock_sm_mhz}MHz"
        stats.append(("sm ", sm, Style()))
    x = max(len(name) + 3, 34)
    for label, value, style in stats:
        if x + len(label) + len(value) >= w - 1:
            break
        x += grid.put(x, y, label, MUTED)
        x += grid.put(x, y, value, style if style.fg else Style(fg="text"))
        x += grid.put(x, y, "  ")
    y += 1
    used, total, reserved = gpu.memory_used, gpu.memory_total, gpu.memory_reserved
    tail = f" {size(used)} used  {size(reserved)} reserved  {size(total)} total"
    bar_w = max(10, w - len(tail) - 8)
    x = grid.put(1, y, "mem [", MUTED) + 1
    x = _put_runs(grid, x, y, memory_bar(gpu, bar_w, state.accessible))
    x += grid.put(x, y, "]", MUTED)
    grid.put(x, y, tail)
    return y + 2


COLUMNS = (("GPU", 3), ("PID", 8), ("USER", 10), ("TYPE", 4), ("VRAM", 7))


def _process_table(
    grid: Grid, y: int, bottom: int, state: ViewState, sample: SampleMessage
) -> None:
    w = grid.width
    header = "".join(f"{name:>{width}} " if name != "USER" else f"{name:<{width}} "
                     for name, width in COLUMNS) + "COMMAND"  # fmt: skip
    grid.put(0, y, (" " + header).ljust(w), HEAD)
    y += 1
    rows = sorted_rows(sample)
    state.rows_cache = rows
    by_key = {(p.pid, p.gpu_index): p for p in sample.snapshot.processes}
    if not rows:
        grid.put(1, y, "no processes on any GPU", MUTED)
        return
    visible = max(1, bottom - y)
    sel_index = _selected_index(state, rows)
    if sel_index is not None:
        if sel_index < state.offset:
            state.offset = sel_index
        elif sel_index >= state.offset + visible:
            state.offset = sel_index - visible + 1
    state.offset = max(0, min(state.offset, max(0, len(rows) - visible)))
    for i, row in enumerate(rows[state.offset : state.offset + visible]):
        proc = by_key.get((row.identity.pid, row.gpu_index))
        vram = size(proc.used_bytes) if proc is not None else "N/A"
        kind = proc.type_label if proc is not None else "?"
        user = (row.user or "?")[:10]
        command = row.command or ("(other user)" if not row.same_user and row.user else "N/A")
        line = f" {row.gpu_index:>3} {row.identity.pid:>8} {user:<10} {kind:>4} {vram:>7} {command}"
        yy = y + i
        style = Style() if row.same_user else MUTED
        grid.put(0, yy, line, style)
        if state.offset + i == sel_index:
            grid.style_row(yy, SELECTED_NO_COLOR if state.no_color else SELECTED)
    if len(rows) > visible:
        more = f" {state.offset + 1}-{min(len(rows), state.offset + visible)} of {len(rows)} "
        grid.put(w - len(more) - 1, y - 1, more, MUTED)


def _selected_index(state: ViewState, rows: list[ProcessRow]) -> int | None:
    if not rows:
        return None
    if state.selected is not None:
        for i, row in enumerate(rows):
            if row_key(row) == state.selected:
                state.last_index = i
                return i
    # The selected process is gone (or nothing was selected): take its neighbour.
    i = min(state.last_index, len(rows) - 1)
    state.selected = row_key(rows[i])
    state.last_index = i
    return i


def row_key(row: ProcessRow) -> tuple[int, float, int]:
    return (row.identity.pid, row.identity.start_time, row.gpu_index)


def move_selection(state: ViewState, delta: int, page: int = 10) -> None:
    """Up/Down/PgUp/PgDn/Home/End on the identity-keyed selection."""
    rows = state.rows_cache
    if not rows:
        return
    i = _selected_index(state, rows) or 0
    i = max(0, min(len(rows) - 1, i + delta))
    state.selected = row_key(rows[i])
    state.last_index = i


def _footer(grid: Grid, state: ViewState) -> None:
    y = grid.height - 1
    keys = " q quit  ↑↓ select " if not state.accessible else " q quit  up/down select "
    x = grid.put(0, y, keys, Style(fg="muted", reverse=True))
    parts: list[tuple[str, Style]] = []
    for actor in state.health:
        if actor.failed:
            parts.append((f"{actor.name} FAILED: {actor.last_error}", Style(fg="crit", bold=True)))
        elif actor.restarts:
            parts.append((f"{actor.name} restarted {actor.restarts}x", Style(fg="warn")))
    if state.sample is not None:
        for gpu in state.sample.snapshot.gpus:
            if gpu.lost:
                parts.append((f"GPU {gpu.index} lost", Style(fg="crit", bold=True)))
    if state.status and time.monotonic() < state.status_until:
        parts.append((state.status, Style(fg="accent")))
    for text, style in parts:
        x += grid.put(x + 1, y, text, style) + 2
