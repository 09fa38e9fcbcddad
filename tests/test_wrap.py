"""``vramtop wrap -- CMD``: real child and grandchild processes get the reporter, an existing
sitecustomize still runs, signals are passed on, exit codes are the shell's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from deepkit import FAKE_TORCH, ROOT, make_env, one_round

from vramtop.deep import protocol
from vramtop.deep.core import DeepCore

FAMILY = r"""
import json, os, subprocess, sys
import torch  # the stand-in: imported, CUDA never initialised (a DataLoader worker)

def me():
    reporter = sys.modules.get("vramtop.deep.reporter")
    serving = reporter.serving() if reporter else None
    return {"pid": os.getpid(), "path": serving.path if serving else None,
            "chained": os.environ.get("CHAINED_SITECUSTOMIZE", "")}

if sys.argv[1] == "child":
    grandchild = subprocess.Popen([sys.executable, __file__, "grandchild"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    print(json.dumps(me()), flush=True)
    print(grandchild.stdout.readline().strip(), flush=True)
    sys.stdin.read()
    grandchild.communicate("")
else:
    print(json.dumps(me()), flush=True)
    sys.stdin.read()
"""

HANDLERS = r"""
import os, signal, sys, time
def on(signo, _frame):
    print(f"got {signo}", flush=True)
    sys.exit(40 + signo)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, on)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def wrap(*cmd: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vramtop", "wrap", "--", *cmd],
        env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, **kw,  # type: ignore[call-overload]
    )  # fmt: skip


def test_wrap_injects_the_reporter_into_a_python_child_and_grandchild(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    chained = tmp_path / "site"
    chained.mkdir()
    (chained / "sitecustomize.py").write_text(
        "import os\nos.environ['CHAINED_SITECUSTOMIZE'] = 'ran'\n"
    )
    prog = tmp_path / "family.py"
    prog.write_text(FAMILY)
    environ = env.environ(torch=False)
    environ["PYTHONPATH"] = os.pathsep.join([str(FAKE_TORCH), str(chained)])
    proc = wrap(sys.executable, str(prog), "child", env=environ)
    try:
        assert proc.stdout is not None
        child, grandchild = (json.loads(proc.stdout.readline()) for _ in range(2))
        for who in (child, grandchild):
            assert who["path"] == str(env.sockets / f"{who['pid']}.sock"), who
            assert who["chained"] == "ran", "the sitecustomize that was there still runs"
        message, _ = one_round(DeepCore(dirs=env.dirs()))
        states = {p.identity.pid: p.report.state for p in message.processes if p.report}
        assert states == {
            child["pid"]: protocol.CUDA_NOT_INITIALIZED,
            grandchild["pid"]: protocol.CUDA_NOT_INITIALIZED,
        }
    finally:
        _out, err = proc.communicate("", timeout=30)
    assert proc.returncode == 0, err
    assert list(env.sockets.iterdir()) == [], "every reporter removed its socket at exit"


def test_wrap_runs_commands_that_are_not_python_and_returns_their_code(tmp_path: Path) -> None:
    proc = wrap("sh", "-c", 'echo "report=$VRAMTOP_REPORT"; exit 3')
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out.strip(), err) == (3, "report=1", "")


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_wrap_forwards_signals_to_the_child(signo: int) -> None:
    proc = wrap(sys.executable, "-c", HANDLERS)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signo)
    out, err = proc.communicate(timeout=30)
    assert out.strip() == f"got {signo}", err
    assert proc.returncode == 40 + signo, "the child's own exit code"


def test_wrap_exit_codes_of_a_killed_missing_or_unexecutable_command(tmp_path: Path) -> None:
    killed = wrap(sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    killed.communicate(timeout=30)
    assert killed.returncode == 128 + signal.SIGKILL

    missing = wrap("vramtop-no-such-command-here")
    _, err = missing.communicate(timeout=30)
    assert missing.returncode == 127
    assert err.strip().splitlines() == [
        "vramtop wrap: command not found: vramtop-no-such-command-here"
    ]

    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho never\n")
    script.chmod(0o644)
    denied = wrap(str(script))
    out, err = denied.communicate(timeout=30)
    assert denied.returncode == 126 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not executable" in err

    empty = subprocess.run([sys.executable, "-m", "vramtop", "wrap"], cwd=ROOT,
                           capture_output=True, text=True)  # fmt: skip
    assert empty.returncode == 2 and len(empty.stderr.strip().splitlines()) == 1
