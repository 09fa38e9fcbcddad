"""``vramtop wrap -- CMD ARGS...``: run a command with deep mode switched on in its Python
processes, without touching its code.

Data flow: the command runs as a child with ``VRAMTOP_REPORT=1``, ``VRAMTOP_HOME`` (where this
``vramtop`` package lives) and ``deep/inject/`` first on ``PYTHONPATH``; that directory's
``sitecustomize`` calls :func:`vramtop.report` in every Python process started under it (ranks
of ``torchrun``, spawned DataLoader workers: those that never touch CUDA just say so) and then
runs any ``sitecustomize`` that was already on the path. A command that is not Python simply
runs. The monitor finds the reporters' sockets by itself.

Exit status, as a shell would give it: the child's own; 128+N when it died of signal N; 127 when
the command does not exist; 126 when it cannot be executed. SIGINT, SIGTERM and SIGHUP sent to
vramtop are passed on to the child (SIGINT from the terminal already reached the child, which
shares the foreground process group, so it is not sent twice).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import vramtop

EXIT_USAGE, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND = 2, 126, 127
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

USAGE = "usage: vramtop wrap [--] CMD [ARGS...]"
HELP = f"""{USAGE}

Run CMD with deep mode on: every Python process it starts reports its PyTorch allocator
figures (allocated, reserved, active, fragmentation, retries, OOMs) to vramtop monitors of the
same user. The same as adding `import vramtop; vramtop.report()` to the program.
Exit status: CMD's; 128+N if it died of signal N; 127 not found; 126 not executable."""


def inject_dir() -> str:
    return str(Path(__file__).resolve().parent.parent / "deep" / "inject")


def child_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ours, with deep mode on and the injection first on the path."""
    env = dict(os.environ if environ is None else environ)
    env["VRAMTOP_REPORT"] = "1"
    env["VRAMTOP_HOME"] = str(Path(vramtop.__file__).resolve().parent.parent)
    old = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = inject_dir() + (os.pathsep + old if old else "")
    return env


def _fail(message: str, code: int) -> int:
    print(f"vramtop wrap: {message}", file=sys.stderr)
    return code


def resolve(command: str, path: str | None = None) -> tuple[str | None, int, str]:
    """(what to execute, 0, "") or (None, exit code, reason), as a shell decides it."""
    if os.sep in command:
        if not os.path.exists(command):
            return None, EXIT_NOT_FOUND, f"no such file: {command}"
        if os.path.isdir(command) or not os.access(command, os.X_OK):
            return None, EXIT_CANNOT_EXECUTE, f"not executable: {command}"
        return command, 0, ""
    found = shutil.which(command, path=path)
    if found is None:
        return None, EXIT_NOT_FOUND, f"command not found: {command}"
    return found, 0, ""


def _from_terminal(signo: int) -> bool:
    """Did the terminal deliver this signal to our whole foreground group (the child too)?"""
    if signo != signal.SIGINT:
        return False
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
    return False


def run(argv: Sequence[str]) -> int:
    args = list(argv)
    if args and args[0] in ("-h", "--help"):
        print(HELP)
        return 0
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        return _fail(f"no command given ({USAGE})", EXIT_USAGE)
    env = child_env()
    executable, code, reason = resolve(args[0], env.get("PATH"))
    if executable is None:
        return _fail(reason, code)
    try:
        child = subprocess.Popen([args[0], *args[1:]], executable=executable, env=env)
    except FileNotFoundError:
        return _fail(f"command not found: {args[0]}", EXIT_NOT_FOUND)
    except OSError as exc:  # EACCES, ENOEXEC (no interpreter line), ...
        return _fail(f"cannot execute {args[0]}: {exc.strerror or exc}", EXIT_CANNOT_EXECUTE)

    def forward(signo: int, _frame: FrameType | None) -> None:
        if not _from_terminal(signo):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signo)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while True:
            try:
                rc = child.wait()
                break
            except KeyboardInterrupt:  # only if a handler was replaced under us; keep waiting
                continue
    finally:
        for s, handler in previous.items():
            with contextlib.suppress(Exception):
                signal.signal(s, handler)
    return 128 - rc if rc < 0 else rc
