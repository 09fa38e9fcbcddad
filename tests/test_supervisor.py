"""The supervisor's restart rules, with actor cores of the test's own in a real process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from vramtop.actors.supervisor import ChildSpec, Supervisor
    from vramtop.config import load_config

    class Hangs:
        # Starts fine, then never returns to its loop: no more heartbeats.
        done = False
        def start(self, ctx): return []
        def handle(self, batch, now): return []
        def tick(self, now):
            print("hang", flush=True)
            time.sleep(3600)
            return now, []
        def stop(self): pass

    class Steady(Hangs):
        def tick(self, now): return now + 0.2, []

    class Idle(Hangs):
        # Waits for messages that never come: idle, not hung, whatever its timeout.
        def tick(self, now): return now + 3600, []

    config = load_config(env={"XDG_CONFIG_HOME": "/nonexistent"})
    sup = Supervisor(
        config,
        [
            ChildSpec("hung", Hangs, heartbeat_timeout=1.0),
            ChildSpec("steady", Steady),
            ChildSpec("idle", Idle, heartbeat_timeout=1.0),
        ],
    )
    sys.exit(sup.run())
    """
)


def _titled(root: int, title: str) -> list[int]:
    out = []
    for proc in psutil.Process(root).children(recursive=True):
        try:
            if " ".join(proc.cmdline()).strip() == title:
                out.append(proc.pid)
        except psutil.Error:
            continue
    return out


def test_a_hung_actor_is_killed_after_its_heartbeat_timeout_and_restarted(tmp_path: Path) -> None:
    script = tmp_path / "sup.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    try:
        deadline = time.monotonic() + 10
        first: list[int] = []
        while not first and time.monotonic() < deadline:
            first = _titled(proc.pid, "vramtop: hung")
            time.sleep(0.05)
        assert first, "the hung actor never started"
        steady = _titled(proc.pid, "vramtop: steady")
        idle = _titled(proc.pid, "vramtop: idle")
        replaced: list[int] = []
        while time.monotonic() < deadline:
            replaced = [p for p in _titled(proc.pid, "vramtop: hung") if p not in first]
            if replaced:
                break
            time.sleep(0.05)
        assert replaced, "no restart after the heartbeat timeout"
        assert not psutil.pid_exists(first[0]) or psutil.Process(first[0]).status() == "zombie"
        # The healthy actors were left alone, the one idle for longer than its timeout too.
        assert _titled(proc.pid, "vramtop: steady") == steady
        assert idle and _titled(proc.pid, "vramtop: idle") == idle
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    for pid in first + replaced:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
