"""The status line: notes deduplicated, ranked, cut at a word, and every one whole behind ``?``.

Driven through the UI controller without a terminal (the same grid the terminal gets).
"""

from __future__ import annotations

import dataclasses

from vramtop.gpu.snapshot import GpuSample, GpuState, ProcessSample, Snapshot
from vramtop.messages import (
    ActorHealth,
    ActorState,
    ConfigUpdate,
    Notice,
    ProcessIdentity,
    ProcessRow,
    SampleMessage,
)
from vramtop.render.controller import Ui
from vramtop.render.filters import ProcessFilter
from vramtop.render.footer import cut_at_word

GiB = 1024**3
FAN = "fan n/a (not supported)"


def _sample(
    n_gpus: int, lost: frozenset[int] = frozenset(), notes: tuple[str, ...] = ()
) -> SampleMessage:
    gpus = tuple(
        GpuSample(i, f"GPU-{i}", "NVIDIA H100", memory_total=80 * GiB, memory_used=GiB,
                  state=GpuState.LOST if i in lost else GpuState.OK,
                  note="lost: NVML says GPU is lost (nvmlDeviceGetMemoryInfo); retrying every 5 s"
                  if i in lost else FAN)
        for i in range(n_gpus)
    )  # fmt: skip
    procs = (ProcessSample(100, 0, used_bytes=GiB),)
    rows = (ProcessRow(ProcessIdentity(100, 1.0), 0, 0, "alice", "python job.py", True),)
    return SampleMessage(1, Snapshot(0.0, "nvml", gpus, procs, notes=notes), rows)


def _footer(ui: Ui, width: int = 200) -> str:
    return ui.draw(width, 45).text()[-1]


def test_a_note_the_backend_gives_twice_is_shown_once() -> None:
    # The NVML backend gives each remark in the GPU's note and again in the snapshot's notes.
    ui = Ui()
    ui.handle(_sample(2, notes=("GPU 0: " + FAN, "GPU 1: " + FAN)))
    footer = _footer(ui)
    assert footer.count(FAN) == 1, footer
    assert "GPU 0,1: " + FAN in footer


def test_eight_gpus_with_one_remark_share_one_note() -> None:
    ui = Ui()
    ui.handle(_sample(8, notes=tuple(f"GPU {i}: {FAN}" for i in range(8))))
    footer = _footer(ui)
    assert "GPU 0-7: " + FAN in footer and footer.count("n/a") == 1, footer


def test_errors_come_before_what_the_user_did_and_driver_remarks() -> None:
    ui = Ui()
    ui.handle(_sample(2, lost=frozenset({1}), notes=("GPU 0: " + FAN,)))
    ui.key("t")  # what the user just did: "theme light"
    ui.handle(ActorHealth((ActorState("enricher", True, 0, True, "exited with code 1"),)))
    footer = _footer(ui, 260)
    order = [footer.index(t) for t in ("enricher FAILED", "GPU 1 lost", "theme ", FAN)]
    assert order == sorted(order), footer
    assert "GPU 1 lost: NVML says GPU is lost (nvmlDeviceGetMemoryInfo)" in footer


def test_a_long_note_is_cut_at_a_word_and_whole_behind_help() -> None:
    ui = Ui()
    ui.handle(_sample(1, notes=("GPU 0: " + FAN,)))
    error = (
        "~/.config/vramtop/config.toml: invalid TOML: Expected '=' after a key in a key/value "
        "pair (at line 12, column 9)"
    )
    ui.handle(ConfigUpdate(ui.state.config, error=error, source="config.toml"))
    footer = _footer(ui, 120).rstrip()
    assert "config not reloaded: ~/.config" in footer, "the error comes first"
    assert footer.endswith("(? lists all)"), footer
    cut = footer.split("config not reloaded: ", 1)[1].split("  (? lists all)")[0]
    assert cut.endswith("…") and error.startswith(cut[:-1]), cut
    assert error[len(cut) - 1] in " ,;:-", "cut at a word"
    assert "Expected '=' after" in cut, "the keys hint gave the error its room"
    assert FAN not in footer, "what does not fit is left for ?"
    ui.key("?")
    overlay = " ".join(" ".join(ui.draw(120, 45).text()).split())
    assert "(at line 12, column 9)" in overlay and FAN in overlay


def test_cut_at_word() -> None:
    assert cut_at_word("short", 10) == "short"
    assert cut_at_word("screenshot saved: /home/alice/shots/vramtop-1.svg", 30) == (
        "screenshot saved…"
    )
    assert len(cut_at_word("x" * 50, 20)) == 20


def test_a_paused_recording_stands_in_the_status_line_until_it_resumes() -> None:
    ui = Ui()
    ui.handle(_sample(1))
    ui.handle(Notice("export /tmp/a.csv", "recording paused: disk full (3 samples skipped)"))
    assert "recording paused: disk full (3 samples skipped)" in _footer(ui)
    ui.handle(
        Notice(
            "export /tmp/a.csv",
            "",
            said="/tmp/a.csv: recording resumed (3 samples skipped: disk full)",
        )
    )
    footer = _footer(ui)
    assert "recording paused" not in footer and "recording resumed" in footer


def test_a_gpu_filter_naming_a_missing_gpu_is_said() -> None:
    ui = Ui(filters=ProcessFilter(gpus=frozenset({7})))
    ui.handle(_sample(2))
    assert "no GPU 7 on this machine (it has GPUs 0-1)" in _footer(ui)


def test_footer_keeps_per_gpu_notes_of_a_backend_without_snapshot_notes() -> None:
    ui = Ui()
    sample = _sample(2)
    gpus = (sample.snapshot.gpus[0], dataclasses.replace(sample.snapshot.gpus[1], note=""))
    ui.handle(dataclasses.replace(sample, snapshot=dataclasses.replace(sample.snapshot, gpus=gpus)))
    assert "GPU 0: " + FAN in _footer(ui)


def test_what_the_user_just_did_comes_before_restart_counts() -> None:
    ui = Ui()
    ui.handle(_sample(1))
    restarts = tuple(ActorState(n, True, 1, False) for n in ("sampler", "render", "analyzer"))
    ui.handle(ActorHealth(restarts))
    ui.handle(ConfigUpdate(ui.state.config, source="/tmp/some/long/directory/vramtop.toml"))
    footer = _footer(ui, 200)
    assert footer.index("config reloaded from /tmp/some") < footer.index("restarted 1x"), footer
