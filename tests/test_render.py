"""Cell grid, diff writer and the first screen, without a terminal (a blessed Terminal that
writes to a pipe with styling forced, so the escape sequences are real)."""

from __future__ import annotations

import io
import re

import blessed

from vramtop.gpu.snapshot import GpuSample, GpuState, ProcessSample, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow, SampleMessage
from vramtop.na import NA
from vramtop.render.grid import Grid, Style
from vramtop.render.screen import ViewState, draw, memory_bar, move_selection
from vramtop.render.theme import THEMES, next_theme
from vramtop.render.writer import TerminalWriter

GiB = 1024**3
COLOR = re.compile(r"\x1b\[(?:3|4)8;")


def term() -> blessed.Terminal:
    return blessed.Terminal(kind="xterm-256color", stream=io.StringIO(), force_styling=True)


def sample(used: list[int], lost: bool = False) -> SampleMessage:
    gpus = (
        GpuSample(0, "GPU-0", "NVIDIA H100", memory_total=80 * GiB, memory_used=sum(used),
                  memory_reserved=GiB // 2, memory_free=80 * GiB - sum(used) - GiB // 2,
                  util_gpu=50, temperature_c=60, power_w=300.0, power_limit_w=700.0),
        GpuSample(1, "GPU-1", "NVIDIA H100", state=GpuState.LOST if lost else GpuState.OK,
                  note="GPU is lost" if lost else ""),
    )  # fmt: skip
    procs = tuple(ProcessSample(100 + i, 0, used_bytes=u) for i, u in enumerate(used))
    rows = tuple(
        ProcessRow(ProcessIdentity(100 + i, 1000.0 + i), 0, i, "alice", f"python job{i}.py", True)
        for i in range(len(used))
    )
    return SampleMessage(1, Snapshot(0.0, "simulated", gpus, procs), rows)


def test_writer_sends_only_changed_cells() -> None:
    writer = TerminalWriter(term(), THEMES["dark"])
    grid = Grid(40, 5)
    grid.put(0, 0, "hello world")
    first = writer.render(grid)
    assert "hello world" in first
    grid2 = Grid(40, 5)
    grid2.put(0, 0, "hello there")
    second = writer.render(grid2)
    assert "there" in second and "hello" not in second
    assert len(second) < len(first) / 2
    assert writer.render(grid2) == "", "an unchanged frame writes nothing"


def test_no_color_writes_no_colour_sequences_but_keeps_emphasis() -> None:
    t = term()
    grid = Grid(30, 3)
    grid.put(0, 0, "warn", Style(fg="warn", bold=True))
    grid.put(0, 1, "selected", Style(reverse=True))
    coloured = TerminalWriter(t, THEMES["dark"]).render(grid)
    plain = TerminalWriter(t, THEMES["dark"], no_color=True).render(grid)
    assert COLOR.search(coloured)
    assert not COLOR.search(plain)
    assert t.bold in plain and t.reverse in plain


def test_theme_switch_redraws_in_the_new_palette() -> None:
    t = term()
    writer = TerminalWriter(t, THEMES["dark"])
    grid = Grid(20, 2)
    grid.put(0, 0, "x", Style(fg="crit"))
    writer.render(grid)
    writer.set_theme(THEMES["light"])
    out = writer.render(grid)
    assert t.color_rgb(*THEMES["light"].rgb("crit")) in out
    assert next_theme("solarized") == "dark"


def test_memory_bar_shows_used_reserved_free() -> None:
    gpu = sample([40 * GiB]).snapshot.gpus[0]
    runs = memory_bar(gpu, 80, accessible=False)
    text = "".join(t for t, _ in runs)
    assert len(text) == 80
    assert text.count("█") == 40 and text.count("▒") == 1
    ascii_runs = memory_bar(gpu, 80, accessible=True)
    assert set("".join(t for t, _ in ascii_runs)) <= set("#+.")
    unknown = GpuSample(0, "u", "x", memory_total=NA)
    assert "".join(t for t, _ in memory_bar(unknown, 5, accessible=True)) == "?????"


def test_screen_lists_processes_biggest_first_and_marks_lost_gpu() -> None:
    state = ViewState(sample=sample([1 * GiB, 30 * GiB, 5 * GiB], lost=True))
    grid = Grid(120, 30)
    draw(grid, state)
    lines = grid.text()
    table = [ln for ln in lines if "python job" in ln]
    assert [ln.split()[-1] for ln in table] == ["job1.py", "job2.py", "job0.py"]
    assert any("LOST" in ln and "GPU is lost" in ln for ln in lines)
    assert any("GPU 1 lost" in ln for ln in lines)


def test_selection_follows_the_process_and_moves_to_a_neighbour_when_it_exits() -> None:
    state = ViewState(sample=sample([1 * GiB, 30 * GiB, 5 * GiB]))
    draw(Grid(120, 30), state)
    move_selection(state, 1)  # from job1 (biggest) to job2
    assert state.selected is not None and state.selected[0] == 102
    # job2 grows past job1: the table reorders, the selection stays on pid 102.
    state.sample = sample([1 * GiB, 30 * GiB, 50 * GiB])
    draw(Grid(120, 30), state)
    assert state.selected[0] == 102
    # pid 102 exits: the selection moves to the row now in its place.
    state.sample = sample([1 * GiB, 30 * GiB])
    draw(Grid(120, 30), state)
    assert state.selected[0] in (100, 101)


def test_small_sizes() -> None:
    state = ViewState(sample=sample([GiB]))
    tiny = Grid(30, 8)
    draw(tiny, state)
    assert "too small (needs 40x10)" in tiny.line(0)
    narrow = Grid(39, 30)
    draw(narrow, state)
    assert narrow.line(0).startswith("terminal too small (needs 40x10)")
    mini = Grid(50, 12)
    draw(mini, state)
    assert any(ln.startswith("0 [") for ln in mini.text())
