"""The memory timeline, the detail chart, the COMMAND column and the event marks, without a
terminal: histories in, a drawn grid out, read back as a user would read the screen."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET

from vramtop.analysis.model import (
    OOM_RISK,
    TIGHT,
    AnalysisResult,
    GpuAnalysis,
    OomPrediction,
    ProcessAnalysis,
    Segment,
    Trend,
)
from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow, SampleMessage
from vramtop.render.braille import Canvas
from vramtop.render.command import short_command
from vramtop.render.events import EventLog
from vramtop.render.grid import Grid, Style
from vramtop.render.history import Series
from vramtop.render.model import Knowledge, ProcView
from vramtop.render.procchart import draw_process_chart, plan_process_chart
from vramtop.render.svg import CELL_W, grid_to_svg
from vramtop.render.theme import THEMES
from vramtop.render.timeline import GUTTER, draw_timeline, plan_timeline

G = 1 << 30
BRAILLE = re.compile("[\u2801-\u28ff]")
T0 = 1_764_570_000.37  # a wall-clock start that is not aligned to anything


class FakeHistory:
    """Rings as the sampler fills them: one sample per ``dt`` seconds, a little jitter."""

    def __init__(self, used: list[float], dt: float = 1.0, reserved: float = 0.5 * G,
                 procs: dict[int, list[float]] | None = None) -> None:  # fmt: skip
        self.ts = [T0 + i * dt + (0.013 * (i % 3)) for i in range(len(used))]
        self.used = used
        self.reserved = reserved
        self.procs = procs or {}

    def gpu_used(self, gpu: int, n: int) -> list[float]:
        return self.used[-n:]

    def process_used(self, slot: int, n: int) -> list[float]:
        return self.procs.get(slot, [])[-n:]

    def gpu_series(self, gpu: int, field: str, n: int) -> Series:
        values = self.used if field == "used" else [self.reserved] * len(self.used)
        return self.ts[-n:], values[-n:]

    def process_series(self, slot: int, n: int) -> Series:
        values = self.procs.get(slot, [])
        return self.ts[-n:][-len(values) :] if values else [], values[-n:]


def gpu(used: float, total: float = 24 * G) -> GpuSample:
    return GpuSample(0, "GPU-0", "NVIDIA GeForce RTX 4090", memory_total=int(total),
                     memory_used=int(used), memory_reserved=G // 2,
                     memory_free=int(total - used - G // 2))  # fmt: skip


def prediction(eta: float, low: float | None = None, high: float | None = None) -> OomPrediction:
    return OomPrediction(eta, low if low is not None else eta * 0.8,
                         high if high is not None else eta * 1.25, 0.8, None, "test")  # fmt: skip


def knowledge_with(eta: float | None) -> Knowledge:
    k = Knowledge()
    oom = prediction(eta) if eta is not None else None
    k.gpus = {0: GpuAnalysis(0, Trend("growing", 800.0), oom=oom)}
    return k


def chart(h: FakeHistory, k: Knowledge | None = None, *, dt: float = 1.0, width: int = 150,
          height: int = 24, accessible: bool = False, **extra: object) -> Grid:  # fmt: skip
    """The timeline of GPU 0 as drawn, for the history ``h`` and the analysis ``k``."""
    used = h.used[-1] if h.used else G
    plan = plan_timeline(gpu(used), h, k or Knowledge(), width, height, dt=dt, history_length=300,
                         accessible=accessible, **extra)  # type: ignore[arg-type]  # fmt: skip
    grid = Grid(width, height)
    draw_timeline(grid, 0, 0, plan, accessible)
    return grid


def leak(n: int) -> list[float]:
    return [4 * G + i * 0.1 * G for i in range(n)]


def test_canvas_fills_dots_bottom_up_and_keeps_the_last_layers_style() -> None:
    c = Canvas(2, 1)
    c.area([4, 2, 0, 1], Style(fg="used"), "#")
    # left column full (4 dots), right column two dots from the bottom
    assert c.cell(0, 0, False) == (chr(0x2800 + 0x47 + 0xA0), Style(fg="used"))
    assert c.cell(1, 0, False)[0] == chr(0x2800 + 0x80)  # one dot, bottom right
    c.line(0, 3, 3, 3, Style(fg="crit"), "/")
    assert c.cell(1, 0, False)[1] == Style(fg="crit")
    assert c.cell(0, 0, True)[0] == "/"


def test_full_chart_has_gib_axis_ceiling_at_total_braille_and_time_labels() -> None:
    h = FakeHistory(leak(120))
    grid = chart(h, knowledge_with(None))
    lines = grid.text()
    assert "GPU 0 memory, GPU total" in lines[0]
    assert lines[1].startswith(" 24.0G┤") and "╌╌╌╌" in lines[1]
    assert any(re.search(r"\b(4|8|12|16|20)G│", ln) for ln in lines)
    assert sum(len(BRAILLE.findall(ln)) for ln in lines[2:-1]) > 100
    axis = lines[-1]
    assert axis.startswith("     0└") and "┴now" in axis
    # clock times at round steps (30 s here: a tick every 15 cells at one sample per dot)
    clocks = [(m.start(), m.group(1)) for m in re.finditer(r"┴(\d\d:\d\d:\d\d)", axis)]
    assert len(clocks) >= 3 and all(label.endswith(("00", "30")) for _, label in clocks)
    cols = [c for c, _ in clocks]
    # "now" may cover one of them
    assert {b - a for a, b in itertools.pairwise(cols)} <= {15, 30}
    assert "reserved 512M" in lines[0]


def test_projection_meets_the_ceiling_at_now_plus_eta() -> None:
    h = FakeHistory(leak(90), dt=0.5)
    for eta in (6.0, 19.0, 33.0):
        grid = chart(h, knowledge_with(eta), dt=0.5)
        ceiling = grid.line(1)
        col = ceiling.index("✕") - GUTTER
        now = grid.line(grid.height - 1).index("┴now") - GUTTER
        assert abs(col - (now + eta / (2 * 0.5))) <= 1, (eta, col, now)
        assert f"OOM ~{int(eta)}s" in ceiling
        # the solid line reaches the top plot row near the mark
        top_row = grid.line(2)
        assert any(BRAILLE.match(top_row[GUTTER + c]) for c in range(col - 1, col + 2))


def test_a_far_prediction_points_past_the_right_edge() -> None:
    h = FakeHistory(leak(60))
    grid = chart(h, knowledge_with(3600.0))
    assert "✕" not in grid.line(1)
    assert grid.line(1).rstrip().endswith("OOM ~1h00m →")


def test_a_row_eta_below_the_alert_threshold_draws_the_same_road() -> None:
    k = Knowledge()
    k.gpus = {0: GpuAnalysis(0, Trend("growing", 800.0))}
    ident = ProcessIdentity(42, 1.0)
    k.processes = {(ident, 0): ProcessAnalysis(ident, 0, Trend("growing", 800.0), TIGHT, "grows",
                                               eta=prediction(20.0))}  # fmt: skip
    h = FakeHistory(leak(60))
    grid = chart(h, k)
    assert "OOM ~20s" in grid.line(1)


def test_a_new_sample_changes_one_column_except_when_the_page_turns() -> None:
    """What keeps the terminal bytes down: the plot does not scroll with every sample."""
    used = [4 * G + 3 * G * math.sin(i / 7) ** 2 for i in range(200)]
    prev = None
    flips = 0
    for n in range(100, 200):
        h = FakeHistory(used[:n])
        grid = chart(h, knowledge_with(None))
        body = grid.text()[2:-1]  # plot rows (the axis row's labels move with "now")
        if prev is not None:
            cols = {
                x for a, b in zip(prev, body, strict=True) for x in range(len(a)) if a[x] != b[x]
            }
            if len(cols) > 2:
                flips += 1
            else:
                assert not cols or max(cols) - min(cols) <= 1
        prev = body
    page = (150 - GUTTER) * 2 // 4  # samples per page
    assert 1 <= flips <= 100 // page + 1


def test_accessible_chart_uses_ascii_marks_and_words() -> None:
    h = FakeHistory(leak(80))
    grid = chart(h, knowledge_with(12.0), accessible=True)
    text = "\n".join(grid.text())
    assert not BRAILLE.search(text) and "╌" not in text and "✕" not in text
    assert "# used" in text and "/ projection" in text and "+ reserved" in text
    assert "X OOM ~12s" in text and "|now" in text and "=====" in grid.line(1)
    assert "#" in "".join(grid.text()[2:-1])


def test_stacked_view_draws_the_top_processes_in_their_own_colours() -> None:
    a = [2 * G + i * 0.05 * G for i in range(80)]
    b = [3 * G] * 80
    h = FakeHistory([x + y + 0.2 * G for x, y in zip(a, b, strict=True)], procs={3: a, 5: b})
    grid = chart(
        h,
        knowledge_with(None),
        stacked=True,
        slots=[(5, "11 python serve.py"), (3, "12 python train.py")],
    )
    assert "stacked by top processes" in grid.line(0)
    assert "11 python serve.py" in grid.line(0) and "12 python train.py" in grid.line(0)
    colours = {s.fg for row in grid.styles[2:-1] for s in row}
    assert {"series1", "series2"} <= colours


def test_every_chart_colour_comes_from_the_theme() -> None:
    h = FakeHistory(leak(80), procs={1: leak(80)})
    for stacked in (False, True):
        grid = chart(h, knowledge_with(9.0), stacked=stacked, slots=[(1, "1 a")])
        used = {s.fg for row in grid.styles for s in row} | {
            s.bg for row in grid.styles for s in row
        }
        for theme in THEMES.values():
            assert used - {""} <= theme.colors.keys()


def test_svg_screenshot_holds_the_chart_cell_for_cell() -> None:
    h = FakeHistory(leak(80))
    grid = chart(h, knowledge_with(15.0))
    root = ET.fromstring(grid_to_svg(grid, THEMES["dark"]))
    rows = [[" "] * grid.width for _ in range(grid.height)]
    for el in root.iter("{http://www.w3.org/2000/svg}text"):
        if el.get("x") is None or not el.text:
            continue
        x = round(float(el.get("x", 0)) / CELL_W)
        y = round(float(el.get("y", 0)) / 17.0 - 0.78)
        for i, ch in enumerate(el.text):
            rows[y][x + i] = ch
    assert ["".join(r) for r in rows] == grid.text()


def test_no_history_yet_says_so() -> None:
    grid = chart(FakeHistory([]))
    assert "collecting samples" in "\n".join(grid.text())


# -- the detail panel's chart ------------------------------------------------------------------


def _view(analysis: ProcessAnalysis | None, used: float) -> ProcView:
    ident = ProcessIdentity(77, 5.0)
    row = ProcessRow(ident, 0, 4, "root", "python leaky.py", True)
    proc = ProcessSample(pid=77, gpu_index=0, used_bytes=int(used))
    return ProcView(row, proc, gpu(used + 2 * G), None, analysis)


def test_detail_chart_colours_pelt_segments_and_projects_to_gpu_full() -> None:
    values = [1 * G] * 40 + [1 * G + i * 0.1 * G for i in range(40)]
    h = FakeHistory(values, procs={4: values})
    ts = h.ts
    segs = (Segment(ts[0], ts[39], 0.0, "plateau"), Segment(ts[40], ts[-1], 4000.0, "leak"))
    ident = ProcessIdentity(77, 5.0)
    a = ProcessAnalysis(ident, 0, Trend("growing", 100.0), OOM_RISK, "grows",
                        eta=prediction(10.0), segments=segs)  # fmt: skip
    view = _view(a, values[-1])
    plan = plan_process_chart(view, h, 140, 20, dt=1.0, history_length=300, accessible=False)
    grid = Grid(140, 20)
    draw_process_chart(grid, 0, 0, plan, False)
    text = grid.text()
    assert "PELT segments" in text[0] and "plateau" in text[0] and "leak" in text[0]
    assert "GPU full" in text[1] and "OOM ~10s" in text[1]
    labels = text[-1]
    assert "├plateau" in labels and "├leak" in labels
    assert labels.index("├plateau") < labels.index("├leak")
    colours = {s.fg for row in grid.styles[2:-2] for s in row}
    assert {"used", "crit"} <= colours  # plateau in "used", the leak in "crit"
    now = text[-2].index("┴now")
    assert abs(text[1].index("✕") - (now + 10.0 / 2)) <= 1


def test_detail_chart_without_prediction_scales_to_the_peak() -> None:
    values = [3 * G + (i % 5) * 0.01 * G for i in range(50)]
    h = FakeHistory(values, procs={4: values})
    ident = ProcessIdentity(77, 5.0)
    a = ProcessAnalysis(ident, 0, Trend("stable", 0.0), "OK", "flat")
    plan = plan_process_chart(_view(a, values[-1]), h, 100, 12, dt=1.0, history_length=300,
                              accessible=True)  # fmt: skip
    grid = Grid(100, 12)
    draw_process_chart(grid, 0, 0, plan, True)
    text = "\n".join(grid.text())
    assert "GPU full" not in text and "OOM" not in text and not BRAILLE.search(text)
    assert 3 * G < plan.top <= 4 * G


# -- COMMAND ----------------------------------------------------------------------------------


def test_command_column_puts_the_informative_part_first() -> None:
    cmd = "/root/.pyenv/versions/3.11.7/bin/python3.11 /tmp/job-42/src/train.py --lr 3e-4"
    assert short_command(cmd) == "python3.11 /tmp/job-42/src/train.py --lr 3e-4"
    assert short_command(cmd, 40) == "python3.11 …/src/train.py --lr 3e-4"
    assert short_command(cmd, 31) == "python3.11 …/train.py --lr 3e-4"
    assert (
        short_command(cmd, 20).startswith("python3.11 …/train")
        and len(short_command(cmd, 20)) == 20
    )
    assert short_command("/usr/bin/python3 -m vllm.entrypoints.api --port 8000", 60) == (
        "python3 -m vllm.entrypoints.api --port 8000"
    )
    assert short_command("/opt/bin/ollama serve", 60) == "ollama serve"
    assert short_command("[kworker/0:1]", 60) == "[kworker/0:1]"
    argv = ("/usr/bin/python3", "/srv/my jobs/run.py", "--x")
    assert short_command("ignored", 60, argv) == "python3 /srv/my jobs/run.py --x"
    # a process that set its own title has one argv entry holding the whole line
    titled = ("/opt/conda/bin/python3.11 /srv/a/b/serve.py --port 8000",)
    assert short_command("ignored", 60, titled) == "python3.11 /srv/a/b/serve.py --port 8000"


# -- events -----------------------------------------------------------------------------------


def _sample(ts: float, rows: list[tuple[int, str]]) -> SampleMessage:
    snap = Snapshot(ts, "simulated", (gpu(G),))
    return SampleMessage(0, snap, tuple(
        ProcessRow(ProcessIdentity(pid, float(pid)), 0, 0, "u", cmd, True) for pid, cmd in rows
    ))  # fmt: skip


def test_event_log_marks_starts_exits_restarts_and_phase_changes() -> None:
    log = EventLog()
    log.observe_sample(_sample(100.0, [(1, "python a.py")]))
    assert log.for_gpu(0) == ()  # what was there at start-up is not news
    log.observe_sample(_sample(101.0, [(1, "python a.py"), (2, "python b.py")]))
    log.observe_sample(_sample(102.0, [(2, "python b.py")]))
    log.observe_sample(_sample(110.0, [(2, "python b.py"), (3, "python a.py")]))
    kinds = [(e.kind, e.label) for e in log.for_gpu(0)]
    assert kinds == [("start", "+2"), ("exit", "-1"), ("restart", "+3")]
    for phase, oom in (("stable", None), ("growing", None), ("growing", prediction(30.0))):
        log.observe_analysis(AnalysisResult(120.0, (GpuAnalysis(0, Trend(phase, 1.0), oom),)))
    assert [e.kind for e in log.for_gpu(0)][-2:] == ["phase", "oom"]


def test_tab_switches_the_timeline_and_the_help_says_so() -> None:
    from vramtop.render.controller import Ui
    from vramtop.render.keys import help_lines

    assert any(keys == "Tab" and "stacked" in what for keys, what in help_lines())
    ui = Ui()
    assert ui.key("KEY_TAB") and ui.state.chart_stacked
    ui.key("?")  # with the help open, Tab still switches
    assert ui.key("\t") and not ui.state.chart_stacked


def test_command_fits_in_cells_with_wide_glyphs() -> None:
    from vramtop.render.grid import text_width

    cmd = "/usr/bin/python3 /data/実験/モデル/学習.py --epochs 3"
    for width in (40, 24, 18):
        out = short_command(cmd, width)
        assert text_width(out) <= width and out.startswith("python3 ")
    assert short_command(cmd, 24) == "python3 …/学習.py --epo…"
