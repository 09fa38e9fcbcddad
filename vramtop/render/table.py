"""The process table: one row per process per GPU, columns shown as the width allows.

Where it sits: ``screen.py`` hands it the rows built by ``model.py`` (already filtered, sorted
and, in tree view, nested). Columns whose data comes from other actors (PHASE, RATE, VERDICT,
ETA from the analyzer; FRAMEWORK, CONTAINER from the enricher; KV from the scraper, shown only
while it reports a server) show ``—`` until that data arrives. Narrow terminals drop the least
important columns first; COMMAND always stays. A process that reports in deep mode carries a
``DEEP`` badge before its command.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from vramtop.analysis.model import OK, UNKNOWN
from vramtop.analysis.verdict import KV_TIGHT
from vramtop.fmt import size
from vramtop.render.grid import Grid, Style, fit
from vramtop.render.model import GroupLine, ProcView
from vramtop.render.state import ViewState, resolve_selection
from vramtop.render.widgets import MUTED, NONE, duration, phase_badge, rate, verdict_style

HEAD = Style(fg="header", bold=True, underline=True)
SELECTED = Style(fg="header", bg="selection", bold=True)
SELECTED_NO_COLOR = Style(reverse=True, bold=True)

DEEP_BADGE = "DEEP"
DEEP_STYLE = Style(fg="accent", bold=True)

Cell = tuple[str, Style]


@dataclass(frozen=True)
class Column:
    name: str
    width: int
    right: bool  # right-aligned (numbers)
    drop: int  # drop order when narrow: higher goes first; 0 = never
    cell: Callable[[ProcView, bool], Cell]
    full_only: bool = False  # analysis columns: the full layout's (and the wide compact's)
    help: str = ""  # what the column means, for the help overlay


def _plain(text: str) -> Cell:
    return text, Style()


def _vram(v: ProcView, _a: bool) -> Cell:
    return ("N/A", MUTED) if math.isnan(v.vram) else _plain(size(v.vram))


def _gpu_pct(v: ProcView, _a: bool) -> Cell:
    f = v.gpu_fraction
    return ("N/A", MUTED) if math.isnan(f) else _plain(f"{f * 100:.1f}")


def _sm(v: ProcView, _a: bool) -> Cell:
    return ("N/A", MUTED) if math.isnan(v.sm) else _plain(f"{v.sm:.0f}")


def _phase(v: ProcView, accessible: bool) -> Cell:
    if v.analysis is None:
        return NONE, MUTED
    return phase_badge(v.analysis.trend.phase, accessible)


def _rate(v: ProcView, _a: bool) -> Cell:
    # No rate while the phase is unknown (too few samples, or memory N/A): 0M/s would be a guess.
    if v.analysis is None or v.analysis.trend.phase == UNKNOWN:
        return NONE, MUTED
    return _plain(rate(v.analysis.trend.rate_mib_s))


def _verdict(v: ProcView, _a: bool) -> Cell:
    if v.analysis is None:
        return NONE, MUTED
    return v.analysis.verdict, verdict_style(v.analysis.verdict)


def _eta(v: ProcView, _a: bool) -> Cell:
    # An ETA beside "OK" would contradict the verdict (e.g. a server filling its pre-allocated
    # pool): the column speaks only for processes at risk.
    if v.analysis is None or v.analysis.eta is None or v.analysis.verdict == OK:
        return NONE, MUTED
    return duration(v.analysis.eta.eta_s), Style(fg="crit", bold=True)


def _gpu_label(v: ProcView) -> str:
    # A process in a MIG instance reads GPU:instance, as nvidia-smi's GI column pairs them.
    g = v.gpu
    if g is not None and g.parent_index is not None:
        return f"{g.parent_index}:{g.gpu_instance_id}"
    return str(v.row.gpu_index)


def _framework(v: ProcView, _a: bool) -> Cell:
    e = v.enrichment
    return (e.framework, Style(fg="accent")) if e and e.framework else (NONE, MUTED)


def kv_text(kv: float | None, waiting: int | None) -> str:
    """ "42%", or "97% q12" when 12 requests wait (the detail panel spells it out)."""
    text = "?" if kv is None else f"{kv:.0%}"
    return f"{text} q{waiting}" if waiting else text


def _kv(v: ProcView, _a: bool) -> Cell:
    s = v.server
    if s is None or (s.kv_cache_usage is None and not s.waiting):
        return NONE, MUTED
    kv = s.kv_cache_usage
    style = (
        Style(fg="crit", bold=True)
        if kv is not None and kv >= KV_TIGHT
        else Style(fg="warn")
        if kv is not None and kv >= KV_WARN
        else Style()
    )
    return kv_text(kv, s.waiting), style


def _container(v: ProcView, _a: bool) -> Cell:
    c = v.enrichment.container if v.enrichment else None
    if c is None:
        return NONE, MUTED
    return _plain(c.short_id or (c.pod_uid[:12] if c.pod_uid else c.runtime))


COLUMNS: tuple[Column, ...] = (
    Column("GPU", 3, True, 0, lambda v, a: _plain(_gpu_label(v)),
           help="GPU index (GPU:instance for a MIG instance)"),
    Column("PID", 7, True, 0, lambda v, a: _plain(str(v.pid)), help="process ID"),
    Column("USER", 9, False, 6, lambda v, a: _plain(v.user), help="who runs it"),
    Column("TYPE", 4, True, 7, lambda v, a: _plain(v.proc.type_label if v.proc else "?"),
           help="C compute, G graphics, M MPS (as nvidia-smi)"),
    Column("VRAM", 7, True, 0, _vram, help="GPU memory the process holds"),
    # Named for what it is: nearly everyone reads "%GPU" as utilisation.
    Column("%MEM", 5, True, 5, _gpu_pct,
           help="that memory as a share of the GPU's memory (not utilisation)"),
    Column("SM%", 4, True, 8, _sm, help="the process's share of the GPU's compute (SM) time"),
    Column("PHASE", 11, False, 4, _phase, True,
           help="memory trend: growing, stable, shrinking, volatile, unknown"),
    Column("RATE", 8, True, 3, _rate, True, help="memory growth per second"),
    Column("VERDICT", 8, False, 2, _verdict, help="OK, TIGHT or OOM risk, and why in d"),
    Column("ETA", 6, True, 1, _eta,
           help="predicted time until the GPU runs out of memory (processes at risk)"),
    Column("KV", 8, True, 9, _kv, help="an inference server's KV cache in use (scraped)"),
    Column("FRAMEWORK", 9, False, 10, _framework, help="PyTorch, vLLM, ... from /proc"),
    Column("CONTAINER", 12, False, 11, _container, help="container ID (docker, k8s pod...)"),
)  # fmt: skip
KV_WARN = 0.8
COMMAND_HELP = "the command line"


def column_help() -> list[tuple[str, str]]:
    """(column, what it means) for the help overlay, in table order."""
    return [(c.name, c.help) for c in COLUMNS] + [("COMMAND", COMMAND_HELP)]


MIN_COMMAND = 40  # enough for "python train.py --flag value" at 120 columns


def columns_for(width: int, full: bool, kv: bool = False, phases: bool = True) -> list[Column]:
    """The columns that fit ``width`` with room for COMMAND, least important dropped first.

    KV (an inference server's cache use) is there only while the scraper reports a server.
    ``phases`` is ``display.phase_indicator``: false leaves the PHASE column out.
    """
    cols = [
        c
        for c in COLUMNS
        if (full or not c.full_only) and (kv or c.name != "KV") and (phases or c.name != "PHASE")
    ]
    for drop in sorted({c.drop for c in cols if c.drop}, reverse=True):
        if sum(c.width + 1 for c in cols) + 1 + MIN_COMMAND <= width:
            break
        cols = [c for c in cols if c.drop != drop]
    return cols


def _fit(text: str, width: int, right: bool) -> str:
    return fit(text, width, right)  # in cells: a CJK user or container name keeps its column


def sort_label(state: ViewState) -> str:
    if state.accessible:
        return f"sort {state.sort} {'descending' if state.descending else 'ascending'}"
    return f"sort {state.sort} {'▼' if state.descending else '▲'}"


def draw_table(grid: Grid, y: int, bottom: int, state: ViewState, full: bool) -> None:
    """Header on line ``y``, rows until ``bottom`` (exclusive)."""
    w = grid.width
    kv = any(v.server is not None for v in state.views)
    cols = columns_for(w, full, kv, state.config.display.phase_indicator)
    # What the sort keys may cycle through: the columns this frame shows.
    state.sortable = [c.name for c in cols] + ["COMMAND"]
    x = 1
    grid.put(0, y, " " * w, HEAD)
    for c in cols:
        title = c.name
        if c.name == state.sort:
            title = c.name + ("*" if state.accessible else "▼" if state.descending else "▲")
        grid.put(x, y, _fit(title, c.width, c.right), HEAD)
        x += c.width + 1
    command_x = x
    cmd_title = "COMMAND" + ("*" if state.sort == "COMMAND" else "")
    grid.put(command_x, y, cmd_title, HEAD)
    extras = []
    if state.tree:
        extras.append("tree")
    if state.filter_text or state.filter_editing:
        cursor = "_" if state.filter_editing else ""
        extras.append(f"/{state.filter_text}{cursor}")
    extras.append(sort_label(state))
    y += 1
    others = [state.others[g].label + f" on GPU {g}" for g in sorted(state.others)]
    if others:
        # One line per GPU for the hidden processes of other users, below the table.
        bottom -= len(others)
        for i, text in enumerate(others):
            grid.put(1, bottom + i, text + " (hidden; show_other_users = true lists them)", MUTED)
    items = state.items
    state.row_at = {}
    visible = max(1, bottom - y)
    state.page = visible
    sel = resolve_selection(state)
    sel_item = None
    if sel is not None:
        key = state.views[sel].key
        sel_item = next(
            (i for i, it in enumerate(items) if isinstance(it, ProcView) and it.key == key), None
        )
    if sel_item is not None:
        if sel_item < state.offset:
            state.offset = sel_item
        elif sel_item >= state.offset + visible:
            state.offset = sel_item - visible + 1
    state.offset = max(0, min(state.offset, max(0, len(items) - visible)))
    if len(items) > visible:
        extras.append(
            f"{state.offset + 1}-{min(len(items), state.offset + visible)} of {len(items)}"
        )
    info = "  ".join(extras) + " "
    if w - len(info) <= command_x + 9:
        info = sort_label(state) + " "  # the active sort is always named, whatever the width
    grid.put(max(command_x + 9, w - len(info)), y - 1, info,
             Style(fg="muted", bold=True, underline=True))  # fmt: skip
    if not items:
        if state.sample is None:
            grid.put(1, y, "waiting for the first sample…", MUTED)
        elif state.filter_text or state.filters.active:
            grid.put(1, y, "no process matches the filter (Esc clears the text filter)", MUTED)
        else:
            grid.put(1, y, "no processes on any GPU", MUTED)
        return
    for i, item in enumerate(items[state.offset : state.offset + visible]):
        yy = y + i
        if isinstance(item, GroupLine):
            label = f"  {item.pid} {item.name}  ({item.children} GPU processes)"
            grid.put(command_x, yy, label, MUTED)
            continue
        state.row_at[yy] = item.key
        base = Style() if item.row.same_user else MUTED
        x = 1
        for c in cols:
            text, style = c.cell(item, state.accessible)
            if style == Style():
                style = base
            grid.put(x, yy, _fit(text, c.width, c.right), style)
            x += c.width + 1
        if item.deep is not None and item.deep.report is not None:
            # Deep mode: the process reports its allocator figures (detail panel).
            x += grid.put(x, yy, DEEP_BADGE, DEEP_STYLE if item.row.same_user else base) + 1
        grid.put(x, yy, item.tree_prefix + item.command, base)
        if state.offset + i == sel_item:
            grid.style_row(yy, SELECTED_NO_COLOR if state.no_color else SELECTED)
            if state.accessible:
                grid.put(0, yy, ">", SELECTED_NO_COLOR if state.no_color else SELECTED)
