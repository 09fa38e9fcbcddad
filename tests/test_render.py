"""Cell grid, diff writer, layouts and the UI controller, without a terminal (a blessed Terminal
that writes to a pipe with styling forced, so the escape sequences are real)."""

from __future__ import annotations

import io
import re
import time

import blessed
import pytest

from vramtop.analysis.model import (
    GROWING,
    OK,
    OOM_RISK,
    AnalysisResult,
    GpuAnalysis,
    OomPrediction,
    ProcessAnalysis,
    Trend,
)
from vramtop.config import load_config
from vramtop.enrich.model import Container, Enrichment, ModelFile
from vramtop.gpu.snapshot import GpuSample, GpuState, ProcessSample, Snapshot
from vramtop.messages import (
    AnalysisMessage,
    EnrichmentMessage,
    ProcessIdentity,
    ProcessRow,
    SampleMessage,
    Selected,
)
from vramtop.na import NA
from vramtop.render.controller import Ui
from vramtop.render.grid import Grid, Style
from vramtop.render.keys import BINDINGS
from vramtop.render.screen import draw, memory_bar
from vramtop.render.state import ViewState
from vramtop.render.theme import THEMES, next_theme
from vramtop.render.widgets import sparkline
from vramtop.render.writer import TerminalWriter

GiB = 1024**3
COLOR = re.compile(r"\x1b\[(?:3|4)8;")


def term() -> blessed.Terminal:
    return blessed.Terminal(kind="xterm-256color", stream=io.StringIO(), force_styling=True)


def sample(used: list[int], lost: bool = False, seq: int = 1) -> SampleMessage:
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
    return SampleMessage(seq, Snapshot(0.0, "simulated", gpus, procs), rows)


def ui_with(used: list[int], **kw: object) -> Ui:
    ui = Ui(**kw)  # type: ignore[arg-type]
    ui.handle(sample(used))
    return ui


def selected_pid(ui: Ui) -> int:
    assert ui.state.selected is not None
    return ui.state.selected[0]


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


def test_every_colour_on_screen_comes_from_the_palette() -> None:
    ui = ui_with([GiB, 30 * GiB])
    grid = ui.draw(160, 45)
    names = {s.fg for row in grid.styles for s in row} | {s.bg for row in grid.styles for s in row}
    for theme in THEMES.values():
        assert names - {""} <= theme.colors.keys(), theme.name


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


def test_sparkline_scales_to_the_total_and_leaves_gaps_for_na() -> None:
    line = sparkline([0.0, 50.0, float("nan"), 100.0], 6, accessible=False, top=100.0)
    assert line == "  ▁▅ █"
    assert set(sparkline([1.0, 2.0, 3.0], 3, accessible=True)) <= set("_.-~=*#")


def test_screen_lists_processes_biggest_first_and_marks_lost_gpu() -> None:
    ui = Ui()
    ui.handle(sample([1 * GiB, 30 * GiB, 5 * GiB], lost=True))
    lines = ui.draw(120, 30).text()
    table = [ln for ln in lines if "python job" in ln]
    assert [ln.split()[-1] for ln in table] == ["job1.py", "job2.py", "job0.py"]
    assert any("LOST" in ln and "GPU is lost" in ln for ln in lines)
    assert any("GPU 1 lost" in ln for ln in lines)


def test_sorting_by_column_and_reversing() -> None:
    ui = ui_with([1 * GiB, 30 * GiB, 5 * GiB])
    ui.key(">")  # VRAM -> %MEM
    ui.key(">")  # -> SM%
    ui.key(">")  # -> RATE
    ui.key(">")  # -> ETA
    ui.key(">")  # -> COMMAND (ascending first)
    assert ui.state.sort == "COMMAND"
    order = [ln.split()[-1] for ln in ui.draw(120, 30).text() if "python job" in ln]
    assert order == ["job0.py", "job1.py", "job2.py"]
    ui.key("r")
    order = [ln.split()[-1] for ln in ui.draw(120, 30).text() if "python job" in ln]
    assert order == ["job2.py", "job1.py", "job0.py"]


def test_selection_follows_the_process_and_moves_to_a_neighbour_when_it_exits() -> None:
    ui = ui_with([1 * GiB, 30 * GiB, 5 * GiB])
    ui.key("KEY_DOWN")  # from job1 (biggest) to job2
    assert selected_pid(ui) == 102
    # job2 grows past job1: the table reorders, the selection stays on pid 102.
    ui.handle(sample([1 * GiB, 30 * GiB, 50 * GiB], seq=2))
    assert ui.state.views[0].pid == 102
    assert selected_pid(ui) == 102
    # pid 102 exits: the selection moves to the row now in its place.
    ui.handle(sample([1 * GiB, 30 * GiB], seq=3))
    assert selected_pid(ui) in (100, 101)
    ui.key("KEY_END")
    assert selected_pid(ui) == 100
    ui.key("KEY_HOME")
    assert selected_pid(ui) == 101


def test_mouse_click_selects_and_wheel_scrolls() -> None:
    ui = ui_with([1 * GiB, 30 * GiB, 5 * GiB])
    grid = ui.draw(120, 30)
    y = next(i for i, ln in enumerate(grid.text()) if "job0.py" in ln)
    assert ui.mouse(10, y, 0, True)
    assert selected_pid(ui) == 100
    ui.mouse(10, y, 64, True)  # wheel up
    assert selected_pid(ui) == 101


def test_text_filter_and_escape() -> None:
    ui = ui_with([1 * GiB, 30 * GiB, 5 * GiB])
    for k in "/job2":
        ui.key(k)
    ui.key("KEY_ENTER")
    lines = ui.draw(120, 30).text()
    assert sum("python job" in ln for ln in lines) == 1
    ui.key("KEY_ESCAPE")
    assert sum("python job" in ln for ln in ui.draw(120, 30).text()) == 3


def test_small_sizes() -> None:
    ui = ui_with([GiB])
    assert "too small (needs 40x10)" in ui.draw(30, 8).line(0)
    assert ui.draw(39, 30).line(0).startswith("terminal too small (needs 40x10)")
    assert any(ln.startswith("0 [") for ln in ui.draw(50, 12).text())
    compact = "\n".join(ui.draw(100, 24).text())
    assert "mem [" in compact and "PHASE" not in compact
    full = "\n".join(ui.draw(160, 45).text())
    assert all(c in full for c in ("PHASE", "RATE", "VERDICT", "ETA", "FRAMEWORK", "CONTAINER"))


def test_forced_layout_holds_at_any_size() -> None:
    ui = ui_with([GiB])
    ui.state.layout = "mini"
    assert any(ln.startswith("0 [") for ln in ui.draw(160, 45).text())


def _enrichment(pid: int) -> Enrichment:
    return Enrichment(
        identity=ProcessIdentity(pid, 1000.0 + pid - 100),
        uid=1000,
        user="alice",
        same_user=True,
        framework="PyTorch",
        framework_evidence="maps: libtorch_cuda.so",
        model_files=(ModelFile("/models/llama.safetensors", 16 * GiB, "safetensors", "mmap"),),
        container=Container("docker", "0123456789abcdef0123"),
    )


def _analysis(pid: int) -> AnalysisResult:
    ident = ProcessIdentity(pid, 1000.0 + pid - 100)
    eta = OomPrediction(240.0, 180.0, 400.0, 0.8, ident, "variance: sustained linear growth")
    return AnalysisResult(
        timestamp=0.0,
        gpus=(GpuAnalysis(0, Trend(GROWING, 30.0), oom=eta),),
        processes=(
            ProcessAnalysis(ident, 0, Trend(GROWING, 30.0), OOM_RISK, "grows 30 MiB/s", eta),
        ),
    )


def test_enrichment_and_analysis_fill_columns_alert_and_detail() -> None:
    ui = ui_with([1 * GiB, 30 * GiB])
    before = "\n".join(ui.draw(160, 45).text())
    assert "PyTorch" not in before and "OOM risk" not in before
    row = next(ln for ln in before.splitlines() if "job1.py" in ln)
    assert "—" in row, "absent data shows a placeholder"
    ui.handle(EnrichmentMessage(items=(_enrichment(101),), notes=()))
    ui.handle(AnalysisMessage(seq=1, result=_analysis(101)))
    screen = "\n".join(ui.draw(160, 45).text())
    row = next(ln for ln in screen.splitlines() if "job1.py" in ln)
    for text in ("PyTorch", "0123456789ab", "growing", "+30M/s", "OOM risk", "4m00s"):
        assert text in row, text
    assert "OOM WARNING GPU 0: out of memory in ~4m00s" in screen
    assert "driven by PID 101" in screen
    ui.key("d")
    detail = "\n".join(ui.draw(160, 45).text())
    for text in ("PyTorch", "maps: libtorch_cuda.so", "docker 0123456789ab", "llama.safetensors",
                 "grows 30 MiB/s", "OOM ETA", "growing"):  # fmt: skip
        assert text in detail, text


def test_detail_says_why_sections_are_empty() -> None:
    ui = ui_with([GiB])
    ui.key("KEY_ENTER")
    detail = "\n".join(ui.draw(160, 45).text())
    assert "enricher: not reported" in detail
    assert "analyzer: not reporting" in detail
    # Deep mode exists: the panel says how a process turns it on.
    assert "deep mode: not reporting" in detail
    assert "vramtop.report()" in detail and "vramtop wrap" in detail
    ui.key("KEY_ESCAPE")
    assert "analyzer: not reporting" not in "\n".join(ui.draw(160, 45).text())


def test_oom_alert_respects_live_thresholds() -> None:
    import dataclasses

    from vramtop.config import Config
    from vramtop.messages import ConfigUpdate

    ui = ui_with([30 * GiB])
    ui.handle(AnalysisMessage(seq=1, result=_analysis(100)))
    assert "OOM WARNING" in "\n".join(ui.draw(160, 45).text())
    cfg = Config()
    cfg = dataclasses.replace(cfg, alerts=dataclasses.replace(cfg.alerts, oom_warning_seconds=120))
    ui.handle(ConfigUpdate(cfg, source="test.toml"))
    screen = "\n".join(ui.draw(160, 45).text())
    assert "OOM WARNING" not in screen and "config reloaded from test.toml" in screen


def test_accessible_uses_words_and_ascii_only() -> None:
    import dataclasses

    from vramtop.config import Config

    cfg = Config()
    cfg = dataclasses.replace(cfg, display=dataclasses.replace(cfg.display, accessible=True))
    ui = Ui(cfg)
    ui.handle(sample([GiB, 30 * GiB]))
    ui.handle(AnalysisMessage(seq=1, result=_analysis(101)))
    screen = "\n".join(ui.draw(160, 45).text())
    assert "GROWING" in screen and "sort VRAM descending" in screen
    assert not set(screen) & set("▲▼◆●█▒░▁▂▃▄▅▆▇⚠")
    assert any(ln.startswith(">") for ln in screen.splitlines()), "selection marked by text"


def test_help_lists_every_key() -> None:
    ui = ui_with([GiB])
    ui.key("?")
    screen = "\n".join(ui.draw(160, 45).text())
    for b in BINDINGS:
        if b.help:
            assert b.help in screen, b.help
    ui.key("KEY_ESCAPE")
    assert "this help" not in "\n".join(ui.draw(160, 45).text())


def test_theme_key_cycles_every_theme() -> None:
    ui = ui_with([GiB])
    seen = [ui.state.theme]
    for _ in THEMES:
        ui.key("t")
        seen.append(ui.state.theme)
    assert set(seen) == set(THEMES) and seen[0] == seen[-1]


def test_draw_without_sample_shows_waiting() -> None:
    grid = Grid(100, 24)
    draw(grid, ViewState())
    assert "waiting for the first sample" in "\n".join(grid.text())


def test_other_users_are_hidden_but_their_memory_is_accounted() -> None:
    import dataclasses

    from vramtop.config import Config, DisplayConfig

    base = sample([10 * GiB, 20 * GiB, 5 * GiB])
    theirs = dataclasses.replace(base.rows[1], user="bob", command="", same_user=False)
    message = dataclasses.replace(base, rows=(base.rows[0], theirs, base.rows[2]))
    ui = Ui()
    ui.handle(message)
    text = "\n".join(ui.draw(160, 45).text())
    assert "bob" not in text
    assert "other users: 1 process, 20.0 GiB on GPU 0" in text
    # What is listed plus what is accounted for adds up to the processes on the GPU.
    assert "python job0.py" in text and "python job2.py" in text
    shown = Ui(config=Config(display=DisplayConfig(show_other_users=True)))
    shown.handle(message)
    text = "\n".join(shown.draw(160, 45).text())
    assert "bob" in text and "other users:" not in text


def test_pid_namespace_note_is_shown_once_in_the_status_line() -> None:
    from vramtop.messages import EnrichmentMessage

    ui = ui_with([GiB])
    note = "processes from another PID namespace: run with --pid=host to see them"
    ui.handle(EnrichmentMessage((), (note,)))
    text = "\n".join(ui.draw(200, 45).text())
    assert text.count("processes from another PID namespace") == 1


def _no_phases() -> Ui:
    import dataclasses

    from vramtop.config import Config

    cfg = Config()
    display = dataclasses.replace(cfg.display, phase_indicator=False)
    ui = Ui(dataclasses.replace(cfg, display=display))
    ui.handle(sample([1 * GiB, 30 * GiB]))
    ui.handle(AnalysisMessage(seq=1, result=_analysis(101)))
    return ui


def test_phase_indicator_false_drops_the_phase_column_and_badges() -> None:
    on = ui_with([1 * GiB, 30 * GiB])
    on.handle(AnalysisMessage(seq=1, result=_analysis(101)))
    off = _no_phases()
    for ui, shown in ((on, True), (off, False)):
        screen = "\n".join(ui.draw(160, 45).text())
        row = next(ln for ln in screen.splitlines() if "job1.py" in ln)
        assert ("PHASE" in screen) is shown and ("growing" in row) is shown
        assert "+30M/s" in row and "OOM risk" in row, "the rest of the analysis stays"
        ui.key("d")
        detail = "\n".join(ui.draw(160, 45).text())
        assert ("growing" in detail) is shown, detail
        assert "+30M/s" in detail


def test_phase_indicator_takes_effect_on_reload() -> None:
    import dataclasses

    from vramtop.messages import ConfigUpdate

    ui = _no_phases()
    assert "PHASE" not in "\n".join(ui.draw(160, 45).text())
    cfg = ui.state.config
    ui.handle(ConfigUpdate(dataclasses.replace(cfg, display=dataclasses.replace(
        cfg.display, phase_indicator=True)), source="c.toml"))  # fmt: skip
    assert "PHASE" in "\n".join(ui.draw(160, 45).text())


def test_detail_shows_why_there_are_no_pelt_segments() -> None:
    import dataclasses

    ui = ui_with([1 * GiB, 30 * GiB])
    result = _analysis(101)
    hint = "pip install 'vramtop[pelt]'"
    proc = dataclasses.replace(result.processes[0], segments_note=hint)
    ui.handle(AnalysisMessage(seq=1, result=dataclasses.replace(result, processes=(proc,))))
    ui.key("d")
    assert f"PELT change points: {hint}" in "\n".join(ui.draw(160, 45).text())


def test_unknown_phase_shows_no_rate() -> None:
    ui = ui_with([1 * GiB, 30 * GiB])
    ident = ProcessIdentity(101, 1001.0)
    result = AnalysisResult(
        timestamp=0.0,
        processes=(ProcessAnalysis(ident, 0, Trend("unknown", 0.0), OK, "too few samples"),),
    )
    ui.handle(AnalysisMessage(seq=1, result=result))
    row = next(ln for ln in ui.draw(160, 45).text() if "job1.py" in ln)
    assert "unknown" in row and "M/s" not in row


def test_no_eta_beside_an_ok_verdict() -> None:
    ui = ui_with([1 * GiB, 30 * GiB])
    ident = ProcessIdentity(101, 1001.0)
    eta = OomPrediction(1.0, 0.5, 2.0, 0.9, ident, "variance: sustained linear growth")
    result = AnalysisResult(
        timestamp=0.0,
        processes=(ProcessAnalysis(ident, 0, Trend(GROWING, 900.0), OK, "pre-allocating", eta),),
    )
    ui.handle(AnalysisMessage(seq=1, result=result))
    row = next(ln for ln in ui.draw(160, 45).text() if "job1.py" in ln)
    assert " OK " in row and "1s" not in row


# --- the render core: one frame per batch, rows paired with their own analysis --------------


def _core() -> tuple[object, list[str]]:
    from vramtop.actors.render import RenderCore

    core = RenderCore(no_color=False)
    written: list[str] = []
    core.attach(term())
    core.size = (160, 45)
    core.emit = written.append
    return core, written


def _tick(seq: int) -> tuple[SampleMessage, AnalysisMessage]:
    """Sample ``seq`` shows one process, PID 100 + seq, whose analysis says "grows seq MiB/s"."""
    used = [0] * seq + [(seq + 1) * GiB]
    message = sample(used, seq=seq)
    message = SampleMessage(seq, message.snapshot, message.rows[-1:])
    ident = message.rows[0].identity
    trend = Trend(GROWING, float(seq))
    result = AnalysisResult(
        timestamp=0.0,
        gpus=(GpuAnalysis(0, trend),),
        processes=(ProcessAnalysis(ident, 0, trend, OK, f"grows {seq} MiB/s"),),
    )
    return message, AnalysisMessage(seq, result)


def _row_of(core: object, pid: int) -> str:
    screen = "\n".join(core.grid(160, 45).text())  # type: ignore[attr-defined]
    return next((ln for ln in screen.splitlines() if f" {pid} " in ln), "")


def test_a_batch_of_three_samples_draws_one_frame_with_rows_and_analysis_of_one_seq() -> None:
    core, written = _core()
    batch: list[object] = []
    for seq in (1, 2, 3):
        batch += _tick(seq)
    before = core.frames  # type: ignore[attr-defined]
    out = core.handle(batch, now=100.0)  # type: ignore[attr-defined]
    assert core.frames == before + 1  # type: ignore[attr-defined]
    assert core.frame_seqs == (3, 3)  # type: ignore[attr-defined]
    row = _row_of(core, 103)
    assert "job3.py" in row and "+3.0M/s" in row, row
    assert not _row_of(core, 101) and not _row_of(core, 102), "older samples are not shown"
    # Segments are shown only in the detail panel: until it opens, none is asked for.
    assert not any(isinstance(m, Selected) for _, m in out)
    assert len(written) == 1
    core.ui.state.overlay = "detail"  # type: ignore[attr-defined]
    core.redraw()  # type: ignore[attr-defined]
    told = core._take_out()  # type: ignore[attr-defined]
    assert ("analyzer", Selected(ProcessIdentity(103, 1003.0))) in told, "the analyzer is told"


def test_a_sample_waits_for_its_analysis_then_is_shown_without_it_when_late() -> None:
    from vramtop.actors.render import pairing_wait

    core, _ = _core()
    s1, a1 = _tick(1)
    core.handle([s1, a1], now=100.0)  # type: ignore[attr-defined]
    frames = core.frames  # type: ignore[attr-defined]
    s2, a2 = _tick(2)
    core.handle([s2], now=100.5)  # type: ignore[attr-defined]
    assert core.frames == frames, "no frame pairs sample 2 with the analysis of sample 1"
    core.handle([a2], now=100.52)  # type: ignore[attr-defined]
    assert core.frames == frames + 1 and core.frame_seqs == (2, 2)  # type: ignore[attr-defined]
    # The analyzer is late: sample 3 is shown on its own once it has waited long enough.
    s3, a3 = _tick(3)
    core.handle([s3], now=101.0)  # type: ignore[attr-defined]
    wait = pairing_wait(1.0)
    nxt, _ = core.tick(101.0 + wait / 2)  # type: ignore[attr-defined]
    assert core.frame_seqs == (2, 2), "still waiting"  # type: ignore[attr-defined]
    assert nxt <= 101.0 + wait, "the core wakes when the wait runs out"
    core.tick(101.0 + wait)  # type: ignore[attr-defined]
    assert core.frame_seqs == (3, 2)  # type: ignore[attr-defined]
    assert "job3.py" in _row_of(core, 103)
    core.handle([a3], now=102.0)  # type: ignore[attr-defined]
    assert core.frame_seqs == (3, 3) and "+3.0M/s" in _row_of(core, 103)  # type: ignore[attr-defined]


def test_background_news_waits_for_the_next_frame_instead_of_drawing_one_of_its_own() -> None:
    from vramtop.actors.render import CLOCK_S
    from vramtop.enrich.model import Enrichment
    from vramtop.messages import EnrichmentMessage

    core, written = _core()
    s1, a1 = _tick(1)
    core.handle([s1, a1], now=100.0)  # type: ignore[attr-defined]
    frames = core.frames  # type: ignore[attr-defined]
    ident = s1.rows[0].identity
    news = Enrichment(ident, 0, "root", True, framework="vLLM", framework_evidence="argv")
    core.handle([EnrichmentMessage((news,))], now=100.2)  # type: ignore[attr-defined]
    assert core.frames == frames, "an enrichment alone draws no frame"  # type: ignore[attr-defined]
    # The next tick shows it (at most a clock period later), and the tick after draws nothing.
    core.tick(100.3)  # type: ignore[attr-defined]
    assert core.frames == frames + 1 and "vLLM" in _row_of(core, 101)  # type: ignore[attr-defined]
    core.tick(100.3 + CLOCK_S / 2)  # type: ignore[attr-defined]
    assert core.frames == frames + 1, "no frame while nothing changed and one was just drawn"  # type: ignore[attr-defined]
    assert len(written) >= 2


def test_a_batch_builds_the_rows_once_for_its_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    # With 8,192 processes building the rows is the render process's largest cost: a sample,
    # its analysis and an enrichment arriving together are one build, not three.
    import vramtop.render.controller as controller
    from vramtop.enrich.model import Enrichment
    from vramtop.messages import EnrichmentMessage

    builds: list[int] = []
    real = controller.build_views

    def counted(*args: object, **kwargs: object) -> object:
        builds.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(controller, "build_views", counted)
    core, _ = _core()
    s1, a1 = _tick(1)
    news = Enrichment(s1.rows[0].identity, 0, "root", True, framework="vLLM")
    core.handle([s1, a1, EnrichmentMessage((news,))], now=100.0)  # type: ignore[attr-defined]
    assert len(builds) == 1
    assert "vLLM" in _row_of(core, 101) and "+1.0M/s" in _row_of(core, 101)


def test_sixteen_gpus_leave_room_for_processes_at_45_rows() -> None:
    # A 16-GPU node in a 160x45 pane: the cards that fit, a line for the rest, and processes.
    gpus = tuple(
        GpuSample(
            i,
            f"GPU-{i}",
            "NVIDIA H100",
            memory_total=80 * GiB,
            memory_used=GiB,
            memory_reserved=GiB // 2,
            memory_free=78 * GiB,
        )
        for i in range(16)
    )
    procs = tuple(ProcessSample(100 + i, i % 16, used_bytes=(i + 1) << 20) for i in range(64))
    rows = tuple(
        ProcessRow(ProcessIdentity(100 + i, 1000.0), i % 16, i, "alice", f"python r{i}.py", True)
        for i in range(64)
    )
    ui = Ui()
    ui.handle(SampleMessage(1, Snapshot(0.0, "simulated", gpus, procs), rows))
    lines = ui.draw(160, 45).text()
    listed = [ln for ln in lines if "python r" in ln]
    assert len(listed) >= 5, "\n".join(lines)
    assert any(ln.strip().startswith("+") and "more GPUs" in ln for ln in lines)
    assert "q quit" in lines[-1] and "python r" not in lines[-1]


# --- papercuts: what the columns mean, sorting what is shown, saying the layout ------------


def test_memory_share_column_is_named_for_what_it_is_and_help_says_what_columns_mean() -> None:
    ui = ui_with([1 * GiB, 30 * GiB])
    header = next(ln for ln in ui.draw(160, 45).text() if "COMMAND" in ln)
    assert "%MEM" in header and "%GPU" not in header
    ui.key("?")
    overlay = "\n".join(ui.draw(160, 60).text())
    assert "%MEM" in overlay and "share of the GPU's memory (not utilisation)" in overlay
    for column in ("VRAM", "SM%", "PHASE", "VERDICT", "ETA", "COMMAND"):
        assert f" {column} " in overlay, column


def test_sort_keys_cycle_through_the_columns_on_screen_only() -> None:
    ui = ui_with([1 * GiB, 30 * GiB, 5 * GiB])
    ui.draw(100, 24)  # compact: no SM%, RATE or PHASE column
    header = next(ln for ln in ui.draw(100, 24).text() if "COMMAND" in ln)
    shown = [c for c in ("GPU", "PID", "USER", "VRAM", "%MEM", "SM%", "RATE", "ETA") if c in header]
    assert "SM%" not in shown and "RATE" not in shown
    seen = []
    for _ in range(12):
        ui.key(">")
        seen.append(ui.state.sort)
        ui.draw(100, 24)
    assert set(seen) == {*shown, "COMMAND"}, "every column on screen, none other"
    ui.draw(160, 45)  # full: every column, so every sort key
    for _ in range(12):
        ui.key("<")
        seen.append(ui.state.sort)
    assert "SM%" in seen and "RATE" in seen


def test_the_header_always_names_the_active_sort() -> None:
    ui = ui_with([1 * GiB, 30 * GiB])
    for width in (80, 100, 160):
        header = next(ln for ln in ui.draw(width, 30).text() if "COMMAND" in ln)
        assert "sort VRAM ▼" in header, (width, header)
    ui.key(">")
    header = next(ln for ln in ui.draw(80, 30).text() if "COMMAND" in ln)
    assert "sort %MEM ▼" in header


def test_layout_key_says_which_layout_and_what_auto_means() -> None:
    ui = ui_with([GiB])
    ui.draw(160, 45)
    ui.key("L")  # auto -> full: looks the same at this size, so the status line says so
    assert "layout full (what auto shows at 160x45)" in ui.draw(160, 45).text()[-1]
    ui.key("L")
    assert "layout compact" in ui.draw(160, 45).text()[-1]
    ui.key("L")
    ui.key("L")  # mini -> auto
    assert "layout auto (full at 160x45)" in ui.draw(160, 45).text()[-1]


def test_mini_layout_labels_utilisation_and_its_bars_have_one_length() -> None:
    ui = Ui()
    gpus = (
        GpuSample(0, "GPU-0", "NVIDIA H100", memory_total=80 * GiB, memory_used=71 * GiB,
                  util_gpu=100),
        GpuSample(1, "GPU-1", "NVIDIA H100", memory_total=80 * GiB, memory_used=2 * GiB,
                  util_gpu=5),
    )  # fmt: skip
    ui.handle(SampleMessage(1, Snapshot(0.0, "simulated", gpus, ()), ()))
    ui.state.layout = "mini"
    lines = [ln for ln in ui.draw(60, 14).text() if ln[:2] in ("0 ", "1 ")]
    assert len(lines) == 2
    assert "util 100%" in lines[0] and "util   5%" in lines[1]
    first, second = (ln.index("]") for ln in lines)
    assert first == second, lines


def test_the_header_clock_follows_display_clock() -> None:
    """seconds (default), minutes (an idle screen then changes once a minute), off."""
    stamp = time.mktime((2026, 12, 1, 9, 41, 27, 0, 0, -1))
    shown = {}
    for clock in ("seconds", "minutes", "off"):
        ui = Ui(load_config(overrides={"display.clock": clock}, env={"HOME": "/nonexistent"}))
        header = "".join(ui.draw(160, 45, now=stamp).chars[0])
        shown[clock] = header
    assert "09:41:27" in shown["seconds"]
    assert "09:41" in shown["minutes"] and "09:41:27" not in shown["minutes"]
    assert "09:41" not in shown["off"]
