"""Helpers for the deep-mode tests: real reporter processes with the stand-in torch, and a way
to run the deep actor's core until it has published a round."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vramtop.actors.routes import readers
from vramtop.deep.core import DeepCore
from vramtop.messages import DeepStateMessage

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
FAKE_TORCH = FIXTURES / "fake_torch"
GiB = 1024**3


def stats(allocated: int, reserved: int, retries: int = 0, **extra: int) -> dict[str, int]:
    """``torch.cuda.memory_stats()`` keys as the reporter reads them."""
    out = {
        "allocated_bytes.all.current": allocated,
        "allocated_bytes.all.peak": allocated + GiB,
        "reserved_bytes.all.current": reserved,
        "reserved_bytes.all.peak": reserved + GiB,
        "active_bytes.all.current": allocated + GiB // 8,
        "inactive_split_bytes.all.current": GiB // 16,
        "allocation.all.current": 42,
        "allocation.all.peak": 50,
        "segment.all.current": 7,
        "num_alloc_retries": retries,
        "num_ooms": 0,
    }
    out.update(extra)
    return out


@dataclass
class Env:
    """A private runtime directory and the environment a reporter child gets."""

    root: Path

    @property
    def runtime(self) -> Path:
        return self.root / "run"

    @property
    def sockets(self) -> Path:
        return self.runtime / "vramtop"

    def environ(self, state: Path | None = None, torch: bool = True) -> dict[str, str]:
        env = dict(os.environ)
        env["XDG_RUNTIME_DIR"] = str(self.runtime)
        path = [str(ROOT)]
        if torch:
            path.insert(0, str(FAKE_TORCH))
        env["PYTHONPATH"] = os.pathsep.join(path)
        if state is not None:
            env["FAKE_TORCH_STATE"] = str(state)
        env.pop("VRAMTOP_REPORT", None)
        return env

    def dirs(self) -> list[tuple[str, int]]:
        return [(str(self.sockets), os.geteuid())]


def make_env(tmp_path: Path) -> Env:
    env = Env(tmp_path)
    env.runtime.mkdir(mode=0o700)
    return env


def write_state(path: Path, devices: list[dict[str, Any]], initialized: bool = True) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"initialized": initialized, "devices": devices}))
    tmp.replace(path)  # the reporter never reads a half-written file
    return path


@dataclass
class Reporter:
    proc: subprocess.Popen[str]
    pid: int
    path: str | None
    lines: list[str] = field(default_factory=list)

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"

    def stop(self) -> int:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        return self.proc.wait(timeout=20)


def start_reporter(env: Env, state: Path | None, *args: str, torch: bool = True) -> Reporter:
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES / "reporter_prog.py"), *args],
        env=env.environ(state, torch=torch),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    return Reporter(proc, first["pid"], first["path"])


def start_server(
    mode: str, directory: Path, name: str = "", uid: int | None = None
) -> subprocess.Popen[str]:
    """A socket that is not vramtop's reporter (``fixtures/socket_server.py``), served by a
    process of ``uid`` (default: ours)."""
    args = [sys.executable, str(FIXTURES / "socket_server.py"), mode, str(directory)]
    env = dict(os.environ)
    if uid is not None:
        env["DROP_UID"] = str(uid)
    proc = subprocess.Popen(
        [*args, *([name] if name else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd="/",
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def one_round(core: DeepCore, limit_s: float = 30.0) -> tuple[DeepStateMessage, list[float]]:
    """Drive ``core`` as the actor shell does (``tick`` when due, ``on_fd`` when one of its
    ``fds`` is readable) until it publishes: the message, and how long each call took.
    ``limit_s`` only stops a broken core from hanging the suite."""
    durations: list[float] = []
    end = time.monotonic() + limit_s
    wake = time.monotonic()
    while time.monotonic() < end:
        out: list[tuple[str, object]] = []
        start = time.monotonic()
        if start >= wake:
            wake, out = core.tick(start)
            durations.append(time.monotonic() - start)
        else:
            fds = core.fds()
            ready, _, _ = select.select(fds, [], [], max(0.0, min(wake, end) - start))
            for fd in ready:
                began = time.monotonic()
                out += core.on_fd(fd)
                durations.append(time.monotonic() - began)
        if out:
            assert [dest for dest, _ in out] == list(readers("deep"))
            message = out[0][1]
            assert isinstance(message, DeepStateMessage)
            core.next_round = 0.0  # the next call starts the next round at once
            return message, durations
    raise AssertionError("the deep core published nothing")
