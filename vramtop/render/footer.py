"""The status line at the bottom of the screen, and the full list of notes behind ``?``.

Where it sits: ``screen.py`` calls :func:`draw_footer` for every frame, and its help overlay
lists :func:`notes` whole. Notes come from actor health, what the controller just said (a key
pressed, a config reload), actors' notices (a recording paused on a full disk), the filters,
the sample (missing and lost GPUs, fields the driver cannot give, driver remarks) and the
enricher. They are deduplicated (a remark the backend gives per GPU and per snapshot is one
note, GPUs with the same remark share it: ``GPU 0-7: fan n/a``), ranked (errors, then what the
user just did or a reload said, then warnings such as restart counts, then filters, then static
driver remarks) and the last that does not fit is cut at a word with an ellipsis, with a
pointer to ``?`` where every note is whole.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from vramtop.render.grid import Grid, Style
from vramtop.render.state import ViewState

ERROR, ACTION, WARN, FILTER, REMARK = range(5)
MORE = "  (? lists all)"
_PER_GPU = re.compile(r"GPU (\d+): (.+)")
CRIT = Style(fg="crit", bold=True)
MUTED = Style(fg="muted")


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    style: Style
    rank: int


def _indexes(indexes: list[int]) -> str:
    """0,1,2,3 -> "0-3"; 0,2 -> "0,2"."""
    ix = sorted(set(indexes))
    if len(ix) > 2 and ix[-1] - ix[0] == len(ix) - 1:
        return f"{ix[0]}-{ix[-1]}"
    return ",".join(str(i) for i in ix)


def _driver_notes(state: ViewState) -> list[Note]:
    sample = state.sample
    if sample is None:
        return []
    snap = sample.snapshot
    shown = [g for g in snap.gpus if state.filters.gpu_shown(g)]
    out: list[Note] = []
    lost = {g.index for g in snap.gpus if g.lost}
    for gpu in shown:
        if gpu.lost:
            text = f"GPU {gpu.index} lost" + (f": {gpu.note}" if gpu.note else "")
            out.append(Note(text.replace(": lost: ", ": "), CRIT, ERROR))
    if missing := state.filters.missing_gpus(snap):
        out.append(Note(missing, CRIT, ERROR))
    visible = {g.index for g in shown}
    per: dict[str, list[int]] = {}
    covered: set[int] = set()
    system: list[str] = []
    for note in snap.notes:
        match = _PER_GPU.fullmatch(note)
        if match is None:
            system.append(note)
            continue
        index = int(match[1])
        covered.add(index)
        if index in visible and index not in lost:
            per.setdefault(match[2], []).append(index)
    # A GPU's own note repeats what the snapshot notes say about it; used only when they don't.
    for gpu in shown:
        if gpu.note and not gpu.lost and gpu.index not in covered:
            per.setdefault(gpu.note, []).append(gpu.index)
    out += [Note(f"GPU {_indexes(ix)}: {text}", MUTED, REMARK) for text, ix in per.items()]
    out += [Note(text, MUTED, REMARK) for text in system]
    return out


def notes(state: ViewState) -> list[Note]:
    """Every note for the status line, deduplicated and most important first."""
    out: list[Note] = []
    for actor in state.health:
        if actor.failed:
            out.append(Note(f"{actor.name} FAILED: {actor.last_error}", CRIT, ERROR))
        elif actor.restarts:
            out.append(Note(f"{actor.name} restarted {actor.restarts}x", Style(fg="warn"), WARN))
    if state.status and time.monotonic() < state.status_until:
        rank = ERROR if state.status_style == "crit" else ACTION
        out.append(Note(state.status, Style(fg=state.status_style, bold=True), rank))
    for text, level in state.notices.values():
        out.append(Note(text, Style(fg=level, bold=True), ERROR if level == "crit" else ACTION))
    for text in state.knowledge.enrich_notes:
        out.append(Note(text, Style(fg="warn", bold=True), WARN))
    for text in state.knowledge.deep_notes:  # deep mode: sockets ignored, and why
        out.append(Note(text, Style(fg="warn", bold=True), WARN))
    if state.filters.active:
        out.append(Note(state.filters.describe(), Style(fg="accent"), FILTER))
    out += _driver_notes(state)
    seen: set[str] = set()
    unique = []
    for note in out:
        if note.text not in seen:
            seen.add(note.text)
            unique.append(note)
    return sorted(unique, key=lambda n: n.rank)  # stable: the order above within a rank


def cut_at_word(text: str, width: int) -> str:
    """``text`` in ``width`` cells: whole, or cut at a word boundary and ended with "…"."""
    if len(text) <= width:
        return text
    if width < 2:
        return ""
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space >= width // 3:  # a word boundary, unless that would waste most of the room
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


def draw_footer(grid: Grid, state: ViewState) -> None:
    y = grid.height - 1
    parts = notes(state)
    kill = "  k kill" if state.config.display.enable_kill else ""
    keys = f" q quit  ? help  d detail{kill}  / filter "
    if grid.width < 100 or (parts and len(parts[0].text) > grid.width - len(keys) - 2):
        keys = " q quit  ? help "  # the most important note needs the room more
    x = grid.put(0, y, keys, Style(fg="muted", reverse=True)) + 1
    for i, note in enumerate(parts):
        room = grid.width - x - 1
        last = i == len(parts) - 1
        if len(note.text) <= room - (0 if last else len(MORE)):
            x += grid.put(x, y, note.text, note.style) + 2
            continue
        # The first note that does not fit: as much of it as reads well, then the pointer.
        shown = cut_at_word(note.text, room - len(MORE))
        if len(shown) >= 12:
            x += grid.put(x, y, shown, note.style)
        grid.put(x, y, MORE, MUTED, grid.width - x)
        return
