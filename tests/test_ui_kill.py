"""The kill dialog around ``vramtop.kill``, against real child processes.

End to end (``vramtop --demo killtest`` in a pseudo-terminal): a process that exits on SIGTERM,
one that ignores it and is SIGKILLed after 5 s, each with its audit record. At the controller
level: another user's process (simulated with a different UID for vramtop), a reused PID, and
--no-kill, where the signal-sending module is never even imported.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from tui import Tui

from vramtop.config import Config
from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow, SampleMessage
from vramtop.render.controller import Ui
from vramtop.render.killflow import KillFlow

GiB = 1024**3


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".config").mkdir()
    return tmp_path


def _select(tui: Tui, command: str) -> int:
    tui.send("\x1b[H")  # Home
    for _ in range(10):
        tui.pump(0.15)
        marked = [ln for ln in tui.text().splitlines() if ln.startswith(">")]
        if marked and command in marked[0]:
            return int(marked[0].split()[2])
        tui.send("\x1b[B")
    raise AssertionError(f"could not select {command}:\n{tui.text()}")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _killtest(home: Path) -> tuple[Tui, Path]:
    """The killtest demo with its audit log under ``home``: (the terminal, the log)."""
    data = home / ".local" / "share"
    env = {"XDG_DATA_HOME": str(data)}
    args = ["--demo", "killtest", "--accessible", "--refresh-rate", "0.5"]
    return Tui(args, cols=160, rows=45, home=home, env=env), data / "vramtop/kill-audit.jsonl"


def _audit(path: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def _kill_stubborn(tui: Tui) -> int:
    """Confirm a kill of the process that ignores SIGTERM; returns its PID mid-countdown."""
    stubborn = _select(tui, "ignores_term.py")
    tui.send("k")
    tui.wait_for("kill process")
    tui.send("\r")
    tui.wait_for("SIGKILL in", timeout=5)
    return stubborn


def test_kill_sigterm_then_sigkill_with_countdown_and_audit(home: Path) -> None:
    tui, audit = _killtest(home)
    try:
        tui.wait_for("ignores_term.py")
        polite = _select(tui, "exits_on_term.py")
        tui.send("k")
        dialog = tui.wait_for("kill process")
        assert (
            str(polite) in dialog and "[y / Enter] kill" in dialog and "[n / Esc] cancel" in dialog
        )
        tui.send("y")
        tui.wait_for("EXITED: PID", timeout=8)
        assert _gone(polite)
        tui.send("\x1b")
        tui.wait_for(lambda s: "exits_on_term.py" not in s, timeout=8)

        stubborn = _kill_stubborn(tui)
        assert not _gone(stubborn), "SIGTERM is ignored: still alive during the countdown"
        tui.wait_for("KILLED: PID", timeout=12)
        assert _gone(stubborn)
        tui.send("\x1b")
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()
    records = _audit(audit)
    sent = [(r["pid"], r["signal"]) for r in records if r["result"] == "sent"]
    assert sent == [(polite, "SIGTERM"), (stubborn, "SIGTERM"), (stubborn, "SIGKILL")]


def _child() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


def _ui_for(proc: subprocess.Popen[bytes], start_time: float, kill: KillFlow) -> Ui:
    snap = Snapshot(
        time.time(), "simulated",
        (GpuSample(0, "GPU-0", "NVIDIA L4", memory_total=24 * GiB, memory_used=GiB),),
        (ProcessSample(proc.pid, 0, used_bytes=GiB),),
    )  # fmt: skip
    row = ProcessRow(ProcessIdentity(proc.pid, start_time), 0, 0, "bob", "python sleeper", True)
    ui = Ui(Config(), kill=kill)
    ui.handle(SampleMessage(1, snap, (row,)))
    return ui


def test_other_users_process_is_refused(tmp_path: Path) -> None:
    proc = _child()
    try:
        start = psutil.Process(proc.pid).create_time()
        # vramtop running as UID 54321 (not root) looks at a process of ours: another user's.
        ui = _ui_for(proc, start, KillFlow(True, my_uid=54321, audit_path=tmp_path / "a.jsonl"))
        ui.key("k")
        ui.key("y")
        screen = "\n".join(ui.draw(120, 30).text())
        assert "kill refused" in screen and "you can only kill your own processes" in screen
        assert "[y / Enter] kill" not in screen
        time.sleep(0.2)
        assert proc.poll() is None, "no signal was sent"
    finally:
        proc.kill()
        proc.wait()


def test_reused_pid_is_refused(tmp_path: Path) -> None:
    proc = _child()
    try:
        start = psutil.Process(proc.pid).create_time()
        # The row was taken for an older process with the same PID.
        ui = _ui_for(proc, start - 100.0, KillFlow(True, audit_path=tmp_path / "a.jsonl"))
        ui.key("k")
        screen = "\n".join(ui.draw(120, 30).text())
        assert "reused by another process" in screen
        ui.key("y")
        time.sleep(0.2)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_process_reused_between_dialog_and_confirm_is_refused(tmp_path: Path) -> None:
    proc = _child()
    try:
        start = psutil.Process(proc.pid).create_time()
        ui = _ui_for(proc, start, KillFlow(True, audit_path=tmp_path / "a.jsonl"))
        ui.key("k")
        assert "[y / Enter] kill" in "\n".join(ui.draw(120, 30).text())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ui.key("y")
        screen = "\n".join(ui.draw(120, 30).text())
        assert "REFUSED" in screen and "has exited" in screen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_no_kill_never_imports_the_signal_path() -> None:
    code = (
        "import sys, dataclasses\n"
        "from vramtop.actors.render import RenderCore\n"
        "from vramtop.render.controller import Ui\n"
        "from vramtop.render.killflow import KillFlow\n"
        "from vramtop.config import Config\n"
        "c = Config(); c = dataclasses.replace(c, display=dataclasses.replace(c.display,"
        " enable_kill=False))\n"
        "ui = Ui(c, kill=KillFlow(c.display.enable_kill)); ui.key('k')\n"
        "print(ui.state.status); print('vramtop.kill' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, imported = out.stdout.splitlines()
    assert status.startswith("kill is disabled")
    assert imported == "False"


def test_a_render_restart_during_the_countdown_does_not_lose_the_sigkill(home: Path) -> None:
    import os

    tui, audit = _killtest(home)
    try:
        tui.wait_for("ignores_term.py")
        stubborn = _kill_stubborn(tui)
        render = tui.actors()["vramtop: render"]
        os.kill(render, signal.SIGKILL)  # the render process dies mid-countdown
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _gone(stubborn):
            tui.pump(0.2)
        assert _gone(stubborn), "the SIGKILL that was due never came"
        assert tui.actors()["vramtop: render"] != render, "a new render process took over"
        tui.wait_for(lambda s: "KILLED: PID" in s or "kill killed: PID" in s, timeout=10)
        tui.send("\x1b")
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()
    records = _audit(audit)
    story = [(r["signal"], r["result"]) for r in records if r["pid"] == stubborn]
    assert story == [("SIGTERM", "sent"), (None, "resumed"), ("SIGKILL", "sent")], story
    assert len({(r["monitor_pid"], r["monitor_start"]) for r in records}) == 1


# -- a second, explicit confirmation for what is not the user's own job ----------------------


def test_pid_1_as_root_asks_twice_naming_the_risk_and_enter_never_kills_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vramtop import kill

    sent: list[tuple[int, signal.Signals]] = []
    # Whatever happens here, PID 1 is never signalled for real.
    monkeypatch.setattr(kill, "_send", lambda pid, fd, sig: sent.append((pid, sig)))
    init = psutil.Process(1)
    snap = Snapshot(
        time.time(), "simulated",
        (GpuSample(0, "GPU-0", "NVIDIA L4", memory_total=24 * GiB, memory_used=GiB),),
        (ProcessSample(1, 0, used_bytes=GiB),),
    )  # fmt: skip
    row = ProcessRow(ProcessIdentity(1, init.create_time()), 0, 0, "root", "init", True)
    ui = Ui(Config(), kill=KillFlow(True, my_uid=0, audit_path=tmp_path / "a.jsonl"))
    ui.handle(SampleMessage(1, snap, (row,)))
    ui.key("k")
    first = "\n".join(ui.draw(120, 30).text())
    assert "warning: PID 1 is init" in first and "[y / Enter] kill" in first
    ui.key("y")
    second = "\n".join(ui.draw(120, 30).text())
    assert "This is not your own job" in second and "[Y] (shift-y) kill it anyway" in second
    for key in ("y", "KEY_ENTER", "k"):
        ui.key(key)  # a second y or Enter (a double press) is not the answer
    assert "This is not your own job" in "\n".join(ui.draw(120, 30).text())
    ui.key("n")
    assert "kill process" not in "\n".join(ui.draw(120, 30).text())
    assert sent == []


def test_another_users_process_as_root_is_killed_only_after_shift_y(tmp_path: Path) -> None:
    import dataclasses

    from vramtop.enrich.model import Enrichment
    from vramtop.messages import EnrichmentMessage

    proc = _child()
    try:
        start = psutil.Process(proc.pid).create_time()
        config = Config()
        config = dataclasses.replace(
            config, display=dataclasses.replace(config.display, show_other_users=True)
        )
        ui = _ui_for(proc, start, KillFlow(True, my_uid=0, audit_path=tmp_path / "a.jsonl"))
        ui._apply_config(config)
        ident = ProcessIdentity(proc.pid, start)
        # The enricher says the process belongs to UID 4242; vramtop runs as root.
        ui.handle(EnrichmentMessage((Enrichment(ident, 4242, "carol", False),)))
        ui.key("k")
        assert "belongs to bob, not to you" in "\n".join(ui.draw(120, 30).text())
        ui.key("KEY_ENTER")
        time.sleep(0.2)
        assert proc.poll() is None, "the first confirmation only asks again"
        ui.key("Y")
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_own_job_is_killed_after_one_confirmation(tmp_path: Path) -> None:
    proc = _child()
    try:
        start = psutil.Process(proc.pid).create_time()
        me = psutil.Process().uids().real
        ui = _ui_for(proc, start, KillFlow(True, my_uid=me, audit_path=tmp_path / "a.jsonl"))
        ui.key("k")
        assert "warning:" not in "\n".join(ui.draw(120, 30).text())
        ui.key("y")
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
