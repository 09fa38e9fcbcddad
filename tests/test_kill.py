"""The kill mechanism against real child processes: who may be signalled, when, and the log."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from vramtop import kill
from vramtop.kill import KillSession, KillState, KillTarget, default_audit_path, refusal
from vramtop.sanitize import clean

NOBODY = 65534
OTHER_UID = 1000  # a non-root UID that owns none of the test's children

# Exits on SIGTERM (default action).
POLITE = "import time\nprint('ready', flush=True)\nwhile True:\n    time.sleep(0.05)\n"
# Ignores SIGTERM but reports when it got one (CLOCK_MONOTONIC is shared by all processes).
STUBBORN = (
    "import signal, time\n"
    "def on_term(signum, frame):\n"
    "    print('term', time.monotonic(), flush=True)\n"
    "signal.signal(signal.SIGTERM, on_term)\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    time.sleep(0.05)\n"
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


Spawn = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start children and always reap them, so no test leaves a zombie or a runaway loop."""
    procs: list[subprocess.Popen[str]] = []

    def _spawn(script: str = POLITE, argv: list[str] | None = None, uid: int | None = None) -> Any:
        def drop() -> None:
            assert uid is not None
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

        proc = subprocess.Popen(
            argv or [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",
            preexec_fn=drop if uid is not None else None,
        )
        procs.append(proc)
        if argv is None:
            # Wait until the loop (and any SIGTERM handler) is in place.
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        return proc

    yield _spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def target_of(pid: int) -> KillTarget:
    p = psutil.Process(pid)
    return KillTarget(
        pid=pid,
        start_time=p.create_time(),
        uid=p.uids().real,
        user=p.username(),
        command=clean(" ".join(p.cmdline())),  # as the process table shows it
        vram_bytes=1 << 30,
    )


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def poll_until_final(session: KillSession, timeout: float = 20.0) -> list[KillState]:
    states = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = session.poll()
        states.append(state)
        if state.phase in kill.FINAL_PHASES:
            return states
        time.sleep(0.02)
    raise AssertionError(f"kill session still {states[-1]} after {timeout} s")


def alive(proc: subprocess.Popen[str]) -> bool:
    time.sleep(0.1)  # give a wrongly sent signal time to land
    return proc.poll() is None


# -- SIGTERM, SIGKILL, the grace period ------------------------------------------------------


def test_sigterm_ends_a_polite_process_and_is_logged(spawn: Spawn, tmp_path: Path) -> None:
    proc = spawn(POLITE)
    target = target_of(proc.pid)
    audit = tmp_path / "data" / "vramtop" / "kill-audit.jsonl"
    old_umask = os.umask(0)  # the modes must not depend on the user's umask
    try:
        session = KillSession(target, os.geteuid(), True, audit_path=audit, grace_s=5.0)
        assert session.poll().phase == "idle"
        assert session.start() is None
    finally:
        os.umask(old_umask)
    first = session.poll()
    assert first.phase in ("terminating", "exited")
    # Not reaped yet: the child is a zombie, which must count as exited.
    states = poll_until_final(session)
    assert states[-1].phase == "exited"
    assert states[-1].message.startswith(f"PID {proc.pid} exited after SIGTERM (")
    assert proc.wait(timeout=10) == -signal.SIGTERM

    assert stat.S_IMODE(audit.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    [entry] = audit_lines(audit)
    assert entry["signal"] == "SIGTERM" and entry["result"] == "sent"
    assert (entry["pid"], entry["start_time"]) == (target.pid, target.start_time)
    assert (entry["uid"], entry["user"]) == (target.uid, target.user)
    assert entry["command"] == target.command
    assert entry["by_uid"] == os.geteuid()
    assert isinstance(entry["reason"], str)
    stamp = datetime.fromisoformat(entry["time"])
    assert stamp.utcoffset() == timedelta(0)


def test_sigkill_only_after_the_grace_period(spawn: Spawn, tmp_path: Path) -> None:
    proc = spawn(STUBBORN)
    audit = tmp_path / "audit.jsonl"
    clock = FakeClock()
    session = KillSession(target_of(proc.pid), os.geteuid(), True, audit, 5.0, clock)
    assert session.start() is None
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("term ")  # it got SIGTERM and shrugged it off

    clock.t += 4.9
    state = session.poll()
    assert state.phase == "terminating"
    assert 0.05 < state.seconds_left < 0.15
    assert alive(proc)
    assert [e["signal"] for e in audit_lines(audit)] == ["SIGTERM"]

    clock.t += 0.1
    session.poll()
    assert proc.wait(timeout=10) == -signal.SIGKILL
    state = session.poll()
    assert state.phase == "killed"
    assert state.message == f"PID {proc.pid} did not exit within 5 s; sent SIGKILL"
    assert state.seconds_left == 0.0
    entries = audit_lines(audit)
    assert [(e["signal"], e["result"]) for e in entries] == [
        ("SIGTERM", "sent"),
        ("SIGKILL", "sent"),
    ]


def test_real_time_escalation_waits_the_default_five_seconds(
    spawn: Spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = spawn(STUBBORN)
    sent: list[tuple[signal.Signals, float]] = []
    real_send = kill._send

    def recording_send(pid: int, pidfd: int | None, sig: signal.Signals) -> None:
        sent.append((sig, time.monotonic()))
        real_send(pid, pidfd, sig)

    monkeypatch.setattr(kill, "_send", recording_send)
    session = KillSession(target_of(proc.pid), os.geteuid(), True, tmp_path / "a.jsonl")
    assert session.start() is None
    states = poll_until_final(session, timeout=30)

    assert states[-1].phase == "killed"
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert [sig for sig, _ in sent] == [signal.SIGTERM, signal.SIGKILL]
    assert sent[1][1] - sent[0][1] >= 5.0
    # The countdown the dialog shows runs down from the full grace period to zero.
    countdown = [s.seconds_left for s in states if s.phase == "terminating"]
    assert countdown[0] > 3.0 and min(countdown) < 1.0
    assert countdown == sorted(countdown, reverse=True)


def test_identity_change_before_sigkill_sends_nothing(
    spawn: Spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = spawn(STUBBORN)
    audit = tmp_path / "audit.jsonl"
    clock = FakeClock()
    session = KillSession(target_of(proc.pid), os.geteuid(), True, audit, 0.5, clock)
    assert session.start() is None

    # Reusing a real PID needs pid_max forks; the PID's start time changing is the same event.
    real_create_time = psutil.Process.create_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: real_create_time(self) + 60)
    clock.t += 0.5
    state = session.poll()
    monkeypatch.undo()

    assert state.phase == "refused"
    assert "reused" in state.message
    assert alive(proc)
    entries = audit_lines(audit)
    assert [(e["signal"], e["result"]) for e in entries] == [("SIGTERM", "sent"), (None, "refused")]
    clock.t += 10
    assert session.poll().phase == "refused" and alive(proc)


def test_a_failed_send_is_reported_and_logged(
    spawn: Spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = spawn(POLITE)
    audit = tmp_path / "audit.jsonl"

    def refused_by_kernel(pid: int, pidfd: int | None, sig: signal.Signals) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(kill, "_send", refused_by_kernel)
    session = KillSession(target_of(proc.pid), os.geteuid(), True, audit)
    reason = session.start()
    assert reason is not None and "Operation not permitted" in reason
    assert session.poll().phase == "failed"
    assert alive(proc)
    [entry] = audit_lines(audit)
    assert (entry["signal"], entry["result"]) == ("SIGTERM", "failed")


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to nobody needs root")
def test_other_users_process_is_refused_unless_root(spawn: Spawn, tmp_path: Path) -> None:
    proc = spawn(argv=["sleep", "60"], uid=NOBODY)
    target = target_of(proc.pid)
    assert target.uid == NOBODY
    expected = f"PID {proc.pid} belongs to nobody; you can only kill your own processes"
    assert refusal(target, OTHER_UID, True) == expected

    audit = tmp_path / "audit.jsonl"
    session = KillSession(target, OTHER_UID, True, audit, grace_s=0.5)
    assert session.start() == expected
    assert session.poll() == KillState("refused", 0.0, expected)
    assert alive(proc)
    [entry] = audit_lines(audit)
    assert (entry["signal"], entry["result"], entry["reason"]) == (None, "refused", expected)

    assert refusal(target, 0, True) is None
    root_session = KillSession(target, 0, True, audit, grace_s=5.0)
    assert root_session.start() is None
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert root_session.poll().phase == "exited"


def test_a_stale_row_claiming_my_uid_is_checked_against_the_live_owner(spawn: Spawn) -> None:
    proc = spawn(POLITE)
    live = target_of(proc.pid)
    me = live.uid + 1  # the row says the process is mine; the kernel says it is not
    stale = KillTarget(live.pid, live.start_time, me, "me", live.command, None)
    reason = refusal(stale, me, True)
    assert reason == (
        f"PID {proc.pid} belongs to {live.user}; you can only kill your own processes"
    )


def test_reused_pid_is_refused(spawn: Spawn, tmp_path: Path) -> None:
    proc = spawn(POLITE)
    live = target_of(proc.pid)
    earlier = KillTarget(live.pid, live.start_time - 30.0, live.uid, live.user, "old job", None)
    expected = f"PID {proc.pid} was reused by another process; not killing it"
    assert refusal(earlier, os.geteuid(), True) == expected
    # An existing, too-open log is appended to (never truncated) and made private.
    audit = tmp_path / "audit.jsonl"
    audit.write_text('{"earlier": true}\n')
    audit.chmod(0o644)
    session = KillSession(earlier, os.geteuid(), True, audit)
    assert session.start() == expected
    assert session.poll().phase == "refused"
    assert alive(proc)
    entries = audit_lines(audit)
    assert entries[0] == {"earlier": True}
    assert (entries[1]["result"], entries[1]["reason"]) == ("refused", expected)
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    # The boot time stepping by a second (NTP) moves create_time: the same process, not a reuse.
    for step in (0.05, 0.9, -0.9):
        jitter = KillTarget(live.pid, live.start_time + step, live.uid, live.user, "", None)
        assert refusal(jitter, os.geteuid(), True) is None


def test_vanished_and_zombie_processes_count_as_exited(spawn: Spawn, tmp_path: Path) -> None:
    proc = spawn(POLITE)
    target = target_of(proc.pid)
    proc.kill()
    proc.wait(timeout=10)
    assert refusal(target, os.geteuid(), True) == f"PID {proc.pid} has exited"
    session = KillSession(target, os.geteuid(), True, tmp_path / "audit.jsonl")
    assert session.start() == f"PID {proc.pid} has exited"
    assert session.poll().phase == "refused"

    zombie = spawn(argv=[sys.executable, "-c", "pass"])
    ztarget = target_of(zombie.pid)
    deadline = time.monotonic() + 10
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert refusal(ztarget, os.geteuid(), True) == f"PID {zombie.pid} has exited"


def test_no_kill_sends_nothing_and_logs_nothing(spawn: Spawn, tmp_path: Path) -> None:
    proc = spawn(STUBBORN)
    target = target_of(proc.pid)
    assert refusal(target, os.geteuid(), False) == "kill is disabled (--no-kill)"
    audit = tmp_path / "vramtop" / "kill-audit.jsonl"
    clock = FakeClock()
    session = KillSession(target, os.geteuid(), False, audit, 0.5, clock)
    assert session.start() == "kill is disabled (--no-kill)"
    clock.t += 60
    assert session.poll().phase == "refused"
    assert session.start() == "kill is disabled (--no-kill)"
    assert alive(proc)
    assert not audit.parent.exists()
    # A STUBBORN child prints on SIGTERM: nothing arrived.
    proc.kill()
    assert proc.stdout is not None and proc.stdout.read() == ""


@pytest.mark.parametrize("pid", [0, -1])
def test_pids_that_would_signal_groups_are_refused(pid: int) -> None:
    target = KillTarget(pid, 1.0, os.geteuid(), "me", "", None)
    reason = refusal(target, os.geteuid(), True)
    assert reason is not None and "not a process" in reason


def test_vramtop_never_kills_itself() -> None:
    me = target_of(os.getpid())
    reason = refusal(me, os.geteuid(), True)
    assert reason is not None and "vramtop itself" in reason


# -- the audit log ---------------------------------------------------------------------------


def test_unwritable_audit_log_does_not_stop_the_kill(spawn: Spawn, tmp_path: Path) -> None:
    proc = spawn(POLITE)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    session = KillSession(target_of(proc.pid), os.geteuid(), True, blocker / "kill-audit.jsonl")
    assert session.start() is None
    assert "audit log not written" in session.poll().message
    assert proc.wait(timeout=10) == -signal.SIGTERM
    final = session.poll()
    assert final.phase == "exited"
    assert final.message.startswith(f"PID {proc.pid} exited after SIGTERM")
    assert "audit log not written" in final.message  # still visible when the dialog closes


def test_default_audit_path_follows_xdg() -> None:
    assert default_audit_path({"XDG_DATA_HOME": "/data", "HOME": "/home/a"}) == Path(
        "/data/vramtop/kill-audit.jsonl"
    )
    home_default = Path("/home/a/.local/share/vramtop/kill-audit.jsonl")
    assert default_audit_path({"HOME": "/home/a"}) == home_default
    # Relative XDG values are invalid per the spec and ignored.
    assert default_audit_path({"XDG_DATA_HOME": "rel", "HOME": "/home/a"}) == home_default
