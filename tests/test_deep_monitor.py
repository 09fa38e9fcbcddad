"""The deep actor inside the running monitor: ``vramtop --demo`` in a real pty, with real
reporter processes around it. (The demo's GPU processes are scripted children that do not
report, so what is checked here is the actor's life in the program: its process title, a
rejected socket said in the status line, a stale socket removed.)"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from deepkit import make_env, start_reporter, stats, write_state
from tui import Tui


def test_the_monitor_runs_the_deep_actor_which_reports_and_cleans_up(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    (tmp_path / "tmp").mkdir()
    (tmp_path / ".config").mkdir()
    state = write_state(tmp_path / "t.json", [{"uuid": "GPU-x", "stats": stats(1, 2)}])
    liar = start_reporter(env, state)
    dead = start_reporter(env, state)
    tui: Tui | None = None
    try:
        assert liar.path is not None and dead.path is not None
        claimed = os.getpid()
        os.rename(liar.path, env.sockets / f"{claimed}.sock")
        dead.proc.send_signal(signal.SIGKILL)
        dead.stop()
        stale = Path(dead.path)
        assert stale.exists()
        tui = Tui(
            ["--demo", "small", "--refresh-rate", "0.5"],
            cols=200,
            home=tmp_path,
            env={"XDG_RUNTIME_DIR": str(env.runtime), "TMPDIR": str(tmp_path / "tmp")},
        )
        tui.wait_for("python train_small.py")
        assert "vramtop: deep" in tui.actors()
        tui.wait_for(f"{claimed}.sock is served by PID {liar.pid}", timeout=20)
        deadline = time.monotonic() + 10
        while stale.exists() and time.monotonic() < deadline:
            tui.pump(0.1)
        assert not stale.exists(), "the monitor removed the socket of the killed reporter"
        assert (env.sockets / f"{claimed}.sock").exists(), "a live socket is left alone"
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        if tui is not None and tui.child.isalive():
            tui.child.terminate(force=True)
        liar.stop()
