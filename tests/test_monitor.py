"""The live monitor end to end: a real pseudo-terminal, real actor processes, real shared memory.

Each test starts ``vramtop --demo`` under pexpect, reads the screen through pyte, and checks what a
user would notice: the screen, the exit, the terminal state, the processes in ``ps`` and what is
left in /dev/shm.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from itertools import pairwise
from pathlib import Path

import psutil
import pytest
from tui import Tui, shm_segments

from vramtop.shm import HistoryReader, ShmSegment

FAST = ["--refresh-rate", "0.5"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".config").mkdir()
    return tmp_path


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still alive")


def test_demo_shows_gpus_and_processes_and_q_restores_the_terminal(home: Path) -> None:
    # pyte keeps no alternate screen, so the last frame would stay under what the shell prints
    # next (and the cursor where the frame left it): the shell clears it first, as leaving the
    # alternate screen does on a real terminal.
    tui = Tui(
        [],
        home=home,
        shell="{vramtop} --demo small; s=$?; printf '\\033[2J\\033[H'; echo EXIT=$s; stty -a; "
        "sleep 5",
    )
    try:
        tui.wait_for("python train_small.py --epochs 3")
        tui.send("q")
        # stty -a, printed by the shell after vramtop exited: line editing and echo are back.
        after = tui.wait_for(lambda s: "EXIT=0" in s and "icanon" in s)
    finally:
        tui.close()
    words = after.split()
    assert "icanon" in words and "echo" in words, after
    assert "-icanon" not in words and "-echo" not in words


def test_screen_content_and_live_updates(home: Path) -> None:
    tui = Tui(["--demo", "small", *FAST], cols=120, rows=40, home=home)
    try:
        first = tui.wait_for("python train_small.py --epochs 3")
        assert "GPU 0  NVIDIA A10" in first
        assert "python serve.py --port 8080" in first
        assert "mem [" in first and "total" in first
        # The sawtooth process changes size: the table is redrawn from new samples.
        tui.wait_for(lambda s: s != first and "python serve.py" in s, timeout=10)
        tui.send("q")
        assert tui.wait_exit() == 0
        raw = bytes(tui.raw)
        assert raw.rfind(b"\x1b[?1049l") > raw.rfind(b"NVIDIA A10"), "left the alternate screen"
        assert b"\x1b[?25h" in raw[raw.rfind(b"NVIDIA A10") :], "cursor shown again"
    finally:
        tui.close()
    assert shm_segments(tui.pid) == []


def test_process_titles_sampler_restart_and_history_continuity(home: Path) -> None:
    tui = Tui(["--demo", "small", *FAST], home=home)
    try:
        tui.wait_for("python train_small.py")
        assert psutil.Process(tui.pid).cmdline()[0] == "vramtop"
        actors = tui.actors()
        assert {"vramtop: sampler", "vramtop: render"} <= actors.keys()
        old = actors["vramtop: sampler"]
        time.sleep(1.5)
        killed_at = time.monotonic()
        os.kill(old, signal.SIGKILL)
        new = None
        # The first restart waits a 0.1 s back-off and the supervisor's next turn (0.5 s at most).
        # 10 s is far above that on a loaded machine yet below the 15 s heartbeat timeout: it
        # fails only when the death itself went unnoticed.
        while time.monotonic() - killed_at < 10:
            new = tui.actors().get("vramtop: sampler")
            if new and new != old:
                break
            time.sleep(0.02)
        back_after = time.monotonic() - killed_at
        assert new and new != old, "sampler was not restarted"
        # The status line says what happened, and the UI keeps drawing.
        tui.wait_for("sampler restarted 1x", timeout=5)
        time.sleep(2.0)
        names = shm_segments(tui.pid)
        assert len(names) == 1
        segment = ShmSegment.attach(names[0])
        try:
            ts, _ = HistoryReader(segment).gpu_history(0)
        finally:
            segment.close()
        gaps = [b - a for a, b in pairwise(ts)]
        assert len(ts) >= 8
        # One history across the restart: time only moves forward, and the longest gap spans
        # the downtime (measured here, so a slow machine widens both sides alike) plus the tick
        # in flight and the new sampler's first one.
        assert min(gaps) > 0, gaps
        assert max(gaps) < back_after + 2 * 0.5 + 0.5, gaps
        # The new sampler keeps the --refresh-rate 0.5 it was started with: most gaps are one
        # tick. The bounds are generous (a loaded machine delays some ticks) but tell 0.5 from
        # the 1 s default and from samples written twice.
        median = sorted(gaps)[len(gaps) // 2]
        assert 0.25 < median < 0.75, gaps
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_actor_crashing_at_every_start_is_given_up_and_shown(home: Path) -> None:
    tui = Tui(["--demo", "small"], home=home, env={"VRAMTOP_FAULT": "sampler"})
    try:
        screen = tui.wait_for("sampler FAILED", timeout=20)
        assert "injected fault" in screen
        assert tui.child.isalive(), "the program keeps running without the sampler"
        assert "vramtop: render" in tui.actors()
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_killed_render_process_restores_terminal_and_comes_back(home: Path) -> None:
    tui = Tui(["--demo", "small"], home=home)
    try:
        tui.wait_for("python train_small.py")
        render = tui.actors()["vramtop: render"]
        mark = len(tui.raw)
        os.kill(render, signal.SIGKILL)
        tui.wait_for(lambda s: "render restarted 1x" in s, timeout=10)
        after = bytes(tui.raw[mark:])
        # The supervisor left the alternate screen and showed the cursor before the restart.
        assert b"\x1b[?1049l" in after and b"\x1b[?25h" in after
        assert tui.actors()["vramtop: render"] != render
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_sigterm_stops_everything_and_unlinks_shared_memory(home: Path) -> None:
    tui = Tui(["--demo", "small"], home=home)
    try:
        tui.wait_for("python train_small.py")
        assert len(shm_segments(tui.pid)) == 1
        pids = list(tui.actors().values())
        os.kill(tui.pid, signal.SIGTERM)
        tui.wait_exit()
        for pid in pids:
            _wait_gone(pid)
    finally:
        tui.close()
    assert shm_segments(tui.pid) == []


def test_sigkill_of_the_whole_group_is_cleaned_by_the_next_start(home: Path) -> None:
    tui = Tui(["--demo", "small"], home=home)
    try:
        tui.wait_for("python train_small.py")
        assert len(shm_segments(tui.pid)) == 1
        children = [p.pid for p in psutil.Process(tui.pid).children(recursive=True)]
        os.killpg(os.getpgid(tui.pid), signal.SIGKILL)
        tui.wait_exit()
        for pid in children:  # actors and the demo's child processes die with it
            _wait_gone(pid)
    finally:
        tui.close()
    assert len(shm_segments(tui.pid)) == 1, "a SIGKILLed run cannot clean up after itself"
    second = Tui(["--demo", "small"], home=home)
    try:
        second.wait_for("python train_small.py")
        assert shm_segments(tui.pid) == [], "the next start removes the dead run's segment"
        second.send("q")
        assert second.wait_exit() == 0
    finally:
        second.close()


def test_sighup_reloads_config_and_keeps_it_when_bad(home: Path) -> None:
    cfg = home / "vramtop.toml"
    cfg.write_text('[display]\ntheme = "dark"\n')
    tui = Tui(["--demo", "small", "--config", str(cfg)], home=home)
    try:
        tui.wait_for("python train_small.py")
        cfg.write_text('[display]\ntheme = "neon"\n')
        os.kill(tui.pid, signal.SIGHUP)
        screen = tui.wait_for("config not reloaded", timeout=10)
        assert "display.theme" in screen
        assert tui.child.isalive()
        cfg.write_text('[display]\ntheme = "light"\n')
        os.kill(tui.pid, signal.SIGHUP)
        tui.wait_for("config reloaded", timeout=10)
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_sighup_keeps_restart_only_keys_and_says_so(home: Path) -> None:
    cfg = home / "vramtop.toml"
    cfg.write_text("[general]\nhistory_length = 300\n")
    tui = Tui(["--demo", "small", *FAST, "--config", str(cfg)], cols=200, home=home)
    try:
        tui.wait_for("python train_small.py")
        sampler = tui.actors()["vramtop: sampler"]
        cfg.write_text('[general]\nhistory_length = 600\n[display]\ntheme = "light"\n')
        os.kill(tui.pid, signal.SIGHUP)
        screen = tui.wait_for("history_length takes effect at the next start", timeout=10)
        assert "config reloaded" in screen
        # The running shared memory keeps its size and the sampler its process: nothing was
        # resized under the readers.
        names = shm_segments(tui.pid)
        assert len(names) == 1
        segment = ShmSegment.attach(names[0])
        try:
            assert segment.layout.history_length == 300
        finally:
            segment.close()
        assert tui.actors()["vramtop: sampler"] == sampler
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_too_small_terminal_says_so(home: Path) -> None:
    tui = Tui(["--demo", "small"], cols=30, rows=8, home=home)
    try:
        tui.wait_for("too small (needs 40x10)")
        tui.resize(100, 30)
        tui.wait_for("python train_small.py", timeout=10)
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_ctrl_c_quits_cleanly(home: Path) -> None:
    tui = Tui([], home=home, shell="{vramtop} --demo small; echo EXIT=$?; sleep 5")
    try:
        tui.wait_for("python train_small.py")
        pids = [p.pid for p in psutil.Process(tui.pid).children(recursive=True)]
        tui.send("\x03")
        screen = tui.wait_for("EXIT=", timeout=10)
        assert "Traceback" not in screen
        assert "EXIT=0" in screen
        for pid in pids:
            if pid != tui.pid:
                _wait_gone(pid)
    finally:
        tui.close()


def test_ctrl_z_gives_the_shell_a_normal_terminal_and_fg_takes_it_back(home: Path) -> None:
    # A job-control shell, as users have: Ctrl-Z stops vramtop, the script says so, `fg`
    # brings it back.
    script = "set -m; {vramtop} --demo small; echo SUSPENDED=$?; sleep 1; fg; echo EXIT=$?; sleep 5"
    tui = Tui([], home=home, shell=script)
    try:
        tui.wait_for("python train_small.py")
        render = tui.actors()["vramtop: render"]
        everyone = list(tui.actors().values())
        supervisor = psutil.Process(render).ppid()
        everyone.append(supervisor)
        assert len(everyone) >= 5  # supervisor, sampler, render, analyzer, enricher
        mark = len(tui.raw)
        tui.send("\x1a")  # Ctrl-Z
        # (On the bytes: pyte has no alternate screen, so the shell's line may wrap anywhere.)
        tui.wait_for(lambda _: b"SUSPENDED=148" in tui.raw, timeout=10)  # 128 + SIGTSTP
        # (pyte keeps one buffer, so the check is on the bytes: alternate screen left, cursor
        # shown, mouse off, before the shell printed anything.)
        suspended = bytes(tui.raw[mark:])
        assert b"\x1b[?1049l" in suspended and b"\x1b[?25h" in suspended
        assert b"\x1b[?1000l" in suspended, "mouse reporting off while the shell has the tty"
        # Every vramtop process is stopped, not only the ones that own the terminal: nothing
        # keeps polling the driver while the job is suspended.
        states = {pid: psutil.Process(pid).status() for pid in everyone}
        assert set(states.values()) == {psutil.STATUS_STOPPED}, states
        mark = len(tui.raw)
        tui.wait_for(lambda _: b"train_small.py" in bytes(tui.raw[mark:]), timeout=10)  # `fg`
        assert tui.actors()["vramtop: render"] == render, "resumed, not restarted"
        states = {pid: psutil.Process(pid).status() for pid in everyone}
        assert psutil.STATUS_STOPPED not in states.values(), states
        tui.send("q")
        tui.wait_for(lambda _: b"EXIT=0" in tui.raw, timeout=10)
    finally:
        tui.close()


def test_detail_panel_shows_pelt_segments_of_the_selected_process(home: Path) -> None:
    # The render process tells the analyzer which process is selected; only that one gets
    # change-point segments, and they reach the detail panel.
    tui = Tui(["--demo", "small", "--refresh-rate", "0.5"], cols=160, rows=45, home=home)
    try:
        tui.wait_for("python train_small.py")
        tui.send("/train_small\r")
        tui.send("d")
        screen = tui.wait_for(
            lambda s: "PELT segments" in s and " MiB" in s.split("PELT segments", 1)[1],
            timeout=60,
        )
        assert "PID" in screen and "train_small.py" in screen
        tui.send("\x1b")
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def _frames(log: Path) -> list[tuple[int, float]]:
    """(sample seq, monotonic time) of every frame the render process drew."""
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()  # frame N sample S analysis A at T
        out.append((int(parts[3]), float(parts[7])))
    return out


def test_a_stalled_render_process_loses_no_command_and_wakes_to_the_newest_sample(
    home: Path,
) -> None:
    # A render process that cannot run (Ctrl-S on a slow link, SIGSTOP) must come back with
    # every command it was sent and the newest sample, not a backlog of stale ones.
    cfg = home / "vramtop.toml"
    cfg.write_text('[display]\ntheme = "dark"\n')
    log = home / "frames.log"
    tui = Tui(
        ["--demo", "small", "--refresh-rate", "0.5", "--config", str(cfg)],
        cols=160,
        rows=45,
        home=home,
        env={"VRAMTOP_FRAME_LOG": str(log)},
    )
    try:
        tui.wait_for("python train_small.py")
        render = tui.actors()["vramtop: render"]
        tui.send("/train_small\r")
        tui.send("d")  # the detail panel: the analyzer is sent the selection
        tui.wait_for("PID")
        os.kill(render, signal.SIGSTOP)
        stopped_at = time.monotonic()
        before = [seq for seq, at in _frames(log) if at < stopped_at]
        time.sleep(2)
        cfg.write_text('[display]\ntheme = "light"\n')
        os.kill(tui.pid, signal.SIGHUP)  # a command sent while the render process is stopped
        deadline = stopped_at + 30
        while time.monotonic() < deadline:
            tui.pump(0.5)
        assert tui.actors().get("vramtop: render") == render, "a stopped render is not killed"
        resumed_at = time.monotonic()
        mark = len(tui.raw)
        os.kill(render, signal.SIGCONT)
        # The reload sent during the stall took effect (the theme) and was said (on the bytes:
        # a later status line may have replaced it on screen by the time it is read).
        tui.wait_for("theme light", timeout=15)
        tui.wait_for(lambda _: b"config reloaded" in bytes(tui.raw[mark:]), timeout=15)
        screen = tui.wait_for(
            lambda s: "PELT segments" in s and " MiB" in s.split("PELT segments", 1)[1],
            timeout=30,
        )
        assert "train_small.py" in screen, "the selection made before the stall held"
        after = [seq for seq, at in _frames(log) if at >= resumed_at]
        # 30 s at 0.5 s per sample: about 60 samples were taken while it was stopped. The first
        # frame after the resume shows one of the newest, and no older one is drawn after it.
        assert after and after[0] >= before[-1] + 50, (before[-3:], after[:5])
        assert min(after) == after[0]
        tui.send("\x1b")
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_driver_warnings_stay_off_the_screen_and_are_printed_after_the_exit(home: Path) -> None:
    # A GPU falls off the bus and comes back: the sampler logs both. Nothing an actor writes
    # may land on the frame; the status line shows the newest line, the exit prints them all.
    tui = Tui(["--demo", "lost", "--speed", "4"], cols=160, rows=45, home=home)
    try:
        screen = tui.wait_for("GPU 1 is back", timeout=30)
        body = screen.splitlines()[:-1]  # everything but the status line
        assert not [ln for ln in body if "retrying" in ln or "is back" in ln], screen
        assert "sampler: GPU 1 is back" in screen.splitlines()[-1]
        tui.send("q")
        assert tui.wait_exit() == 0
        # pyte keeps no alternate screen: the log lands where the last frame left the cursor
        # and may wrap at the edge, so the words are compared, not the lines.
        after = " ".join(tui.text().split())
        assert "the actors wrote" in after
        assert "sampler: GPU 1 lost" in after and "sampler: GPU 1 is back" in after
    finally:
        tui.close()


def test_closing_the_terminal_ends_everything_at_once_without_restarts(home: Path) -> None:
    # The terminal goes away (tmux kill-session, a dropped ssh link): the pty master closes,
    # the foreground group gets SIGHUP, reads see end-of-file and writes fail. That is the end
    # of the program, not a config reload nor a render crash to restart.
    tui = Tui(["--demo", "small"], home=home)
    try:
        tui.wait_for("python train_small.py")
        actors = tui.actors()
        everyone = [tui.pid, *actors.values()]
        render = actors["vramtop: render"]
        os.close(tui.child.child_fd)  # hang up
        tui.child.child_fd = -1
        seen_renders = {render}
        deadline = time.monotonic() + 15  # generous: a 2-core machine under load
        while time.monotonic() < deadline:
            with contextlib.suppress(psutil.Error):
                for proc in psutil.Process(tui.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if " ".join(proc.cmdline()).strip() == "vramtop: render":
                            seen_renders.add(proc.pid)
            alive = [
                p
                for p in everyone
                if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
            ]
            if not alive:
                break
            time.sleep(0.05)
        assert not alive, f"still running after the hang-up: {alive}"
        assert seen_renders == {render}, "the render process was restarted after the hang-up"
        assert shm_segments(tui.pid) == []
    finally:
        with contextlib.suppress(Exception):
            tui.child.close(force=True)


def _blocked_in_write(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
    except OSError:
        return False
    # x86-64 write is 1, aarch64 64; the first argument is fd 1 (the terminal).
    return len(fields) > 1 and fields[0] in ("1", "64") and int(fields[1], 16) == 1


def test_a_terminal_with_output_stopped_is_not_a_dead_render_process(home: Path) -> None:
    # Ctrl-S (XOFF) stops the terminal's output: the render process blocks in write() and
    # sends no heartbeat. Killing it would only block its successor the same way; Ctrl-Q
    # must find the same process drawing again.
    tui = Tui(["--demo", "small"], cols=120, rows=40, home=home)
    try:
        tui.wait_for("python train_small.py")
        render = tui.actors()["vramtop: render"]
        tui.send("\x13")  # Ctrl-S
        for i in range(60):  # full redraws until the terminal's buffer is full
            if _blocked_in_write(render):
                break
            tui.resize(120 + (i % 2) * 20, 40)
            time.sleep(0.2)
        assert _blocked_in_write(render), "the stall never happened"
        # The heartbeat timeout is 15 s; stay stalled well past it.
        stalled_until = time.monotonic() + 20
        while time.monotonic() < stalled_until:
            time.sleep(0.5)
            assert tui.actors().get("vramtop: render") == render, "killed while stalled"
        tui.send("\x11")  # Ctrl-Q
        tui.resize(120, 40)
        tui.wait_for("python train_small.py", timeout=15)
        assert tui.actors().get("vramtop: render") == render
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_a_sigkilled_supervisor_leaves_no_orphan_actor(home: Path) -> None:
    tui = Tui(["--demo", "small"], home=home)
    try:
        tui.wait_for("python train_small.py")
        actors = list(tui.actors().values())
        assert len(actors) >= 4
        os.kill(tui.pid, signal.SIGKILL)
        for pid in actors:
            _wait_gone(pid)
    finally:
        tui.close()
