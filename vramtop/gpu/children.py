"""Real child processes that stand in for the GPU processes of a simulated scenario.

Data flow: scenario ``[[process]]`` entries with ``argv`` -> :class:`ChildSpec` ->
:class:`ChildPool` (owned by the long-lived supervisor, or by a simulated backend used on its
own) -> real PIDs that the simulated backend reports, so that /proc enrichment, the kill
flow and ``ps`` all see ordinary processes.

Each child is a tiny ``python -c`` program that:

* asks the kernel to signal it when its parent dies (``PR_SET_PDEATHSIG``), then re-checks that the
  parent is still the one that started it (the parent may have died before the ``prctl``);
* rewrites its command line to the scenario's argv with setproctitle, and makes the kernel report it
  as one string so that ``psutil.Process(pid).cmdline()`` gives back the argv tokens (see
  ``_CHILD_CODE``; an argv token that contains a space comes back split, as for any process that
  sets its title); its ``comm`` becomes the basename of ``argv[0]``;
* lives in its own session, so Ctrl-C / Ctrl-Z at the terminal do not reach it;
* reports "ok" on a pipe and sleeps until a signal ends it (``ignore_sigterm`` children survive
  SIGTERM, so the kill flow's escalation to SIGKILL can be exercised).

``start()`` waits for every child's "ok" before returning: until then the child's command line is
still ``python -c ...``, and an enricher would otherwise cache that for the (pid, start time).

``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, so the pool must be
started from a long-lived thread (the main thread of the supervisor), never from a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

# The child program. Kept to the standard library plus setproctitle so that it starts fast and
# stays small; sys.argv = ["-c", parent_pid, ignore_sigterm, *argv].
_CHILD_CODE = r"""
import ctypes, os, signal, sys
def main():
    parent = int(sys.argv[1])
    ignore_term = sys.argv[2] == "1"
    argv = sys.argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    # PR_SET_PDEATHSIG = 1: die with the parent, even when the parent is SIGKILLed.
    libc.prctl(1, signal.SIGKILL if ignore_term else signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import setproctitle
    title = " ".join(argv)
    setproctitle.setproctitle(title)
    # setproctitle pads the argv area with NULs, so the kernel reports the whole area and psutil
    # sees empty trailing arguments. A non-NUL last byte makes the kernel report the title up to
    # its first NUL instead (the documented setproctitle convention), which psutil splits on
    # spaces back into the argv tokens.
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    arg_start, arg_end = int(fields[45]), int(fields[46])
    encoded = title.encode()
    # setproctitle leaves a title it finds too long (above about 64 KiB) unset: the process then
    # keeps its real NUL-separated command line, which must stay as the kernel wrote it.
    if (
        len(encoded) < arg_end - arg_start - 1
        and ctypes.string_at(arg_start, len(encoded)) == encoded
        and ctypes.string_at(arg_end - 1, 1) == b"\0"
    ):
        ctypes.memmove(arg_end - 1, b" ", 1)
    # PR_SET_NAME = 15: comm as the real program would have it.
    libc.prctl(15, os.path.basename(argv[0]).encode()[:15], 0, 0, 0)
    os.write(1, b"ok\n")
    os.close(1)
    while True:
        signal.pause()
try:
    main()
except BaseException as exc:
    try:
        os.write(1, ("error: %s: %s\n" % (type(exc).__name__, exc)).encode()[:400])
    finally:
        os._exit(1)
"""

READY_TIMEOUT_S = 15.0
CLOSE_GRACE_S = 1.0


class ChildStartError(RuntimeError):
    """One or more children did not come up; the message is one line naming them."""


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What one child should look like: its scenario name, command line and SIGTERM behaviour."""

    name: str
    argv: tuple[str, ...]
    ignore_sigterm: bool = False
    # "vllm": the child is started under a fake inference server (``gpu/fakeserver.py``): the
    # PID reported is the GPU process's, whose parent answers HTTP on one of ``serve_ports``.
    serve: str = ""
    serve_argv: tuple[str, ...] = ()
    serve_ports: tuple[int, ...] = ()


def read_start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/PID/stat), or None
    when the process is gone or a zombie. Together with the PID it identifies a process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X", b"x"):
        return None
    return int(fields[19])


def process_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether ``pid`` runs and is not a zombie; with ``start_ticks``, also that it is the same
    process (not a reused PID)."""
    ticks = read_start_ticks(pid)
    if ticks is None:
        return False
    return start_ticks is None or ticks == start_ticks


class ChildPool:
    """Starts, watches and stops the demo's real child processes."""

    def __init__(self, ready_timeout: float = READY_TIMEOUT_S) -> None:
        self._ready_timeout = ready_timeout
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._served: set[str] = set()
        self._gpu_pids: dict[str, int] = {}

    @property
    def pids(self) -> dict[str, int]:
        """Name -> PID of every child started (alive or not); for a served child, its GPU
        process's (the fake server's child)."""
        return {name: self._gpu_pids.get(name, p.pid) for name, p in self._procs.items()}

    def start(self, specs: Iterable[ChildSpec]) -> dict[str, int]:
        """Start all children at once, wait until each has taken its title; name -> PID.

        Raises :class:`ChildStartError` (after stopping the ones that did start) when a child
        fails or does not report in time.
        """
        specs = list(specs)
        for spec in specs:
            if spec.name in self._procs:
                raise ValueError(f"child {spec.name!r} already started")
            if not spec.argv:
                raise ValueError(f"child {spec.name!r} has an empty argv")
        env = dict(os.environ, SPT_NOENV="1")  # keep /proc/PID/environ intact
        env["VRAMTOP_FAKESERVER_PARENT"] = str(os.getpid())
        started: dict[str, subprocess.Popen[bytes]] = {}
        self._served = {s.name for s in specs if s.serve}
        try:
            for spec in specs:
                started[spec.name] = subprocess.Popen(
                    self._command(spec),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                )
            failures, gpu_pids = self._await_ready(started)
        except BaseException:
            self._procs.update(started)
            for name in started:
                self.terminate(name, signal.SIGKILL)
            self.reap()
            raise
        self._procs.update(started)
        if failures:
            for name in started:
                self.terminate(name, signal.SIGKILL)
            self.reap()
            raise ChildStartError("demo child processes failed to start: " + "; ".join(failures))
        self._gpu_pids.update(gpu_pids)
        return {name: gpu_pids.get(name, p.pid) for name, p in started.items()}

    @staticmethod
    def _command(spec: ChildSpec) -> list[str]:
        if spec.serve:
            from vramtop.gpu.fakeserver import demo_tree

            tree = demo_tree(spec.serve, spec.name, spec.argv, spec.serve_argv, spec.serve_ports)
            return [sys.executable, "-m", "vramtop.gpu.fakeserver", json.dumps(tree)]
        return [
            sys.executable,
            "-c",
            _CHILD_CODE,
            str(os.getpid()),
            "1" if spec.ignore_sigterm else "0",
            *spec.argv,
        ]

    def _await_ready(
        self, procs: dict[str, subprocess.Popen[bytes]]
    ) -> tuple[list[str], dict[str, int]]:
        """Read every child's report in parallel: the failures as 'name: reason', and the GPU
        process's PID of each served child (a fake server reports one JSON line per process)."""
        lines = {name: 2 if name in self._served else 1 for name in procs}
        replies: dict[str, bytes] = {name: b"" for name in procs}
        sel = selectors.DefaultSelector()
        try:
            for name, proc in procs.items():
                assert proc.stdout is not None
                sel.register(proc.stdout, selectors.EVENT_READ, name)
            deadline = time.monotonic() + self._ready_timeout
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for key, _ in sel.select(left):
                    name = key.data
                    chunk = os.read(key.fd, 512)
                    replies[name] += chunk
                    if not chunk or replies[name].count(b"\n") >= lines[name]:
                        sel.unregister(key.fileobj)
        finally:
            sel.close()
            for proc in procs.values():
                if proc.stdout is not None:
                    proc.stdout.close()
        failures = []
        gpu_pids: dict[str, int] = {}
        for name, reply in replies.items():
            text = reply.decode("utf-8", "replace").strip()
            if name in self._served:
                pid = _served_pid(name, text)
                if pid is None:
                    failures.append(f"{name}: {text[:200] or 'no answer'}")
                else:
                    gpu_pids[name] = pid
            elif text != "ok":
                failures.append(f"{name}: {text or 'no answer'}")
        return failures, gpu_pids

    def pid(self, name: str) -> int | None:
        return self.pids.get(name)

    def terminate(self, name: str, sig: int = signal.SIGTERM) -> bool:
        """Send ``sig`` to the named child if it still runs; whether a signal was sent."""
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            return False
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def reap(self) -> list[int]:
        """Collect exited children (waitpid WNOHANG) so none stays a zombie; their PIDs."""
        reaped = []
        for proc in self._procs.values():
            if proc.returncode is None and proc.poll() is not None:
                reaped.append(proc.pid)
        return reaped

    def alive(self, pid: int) -> bool:
        """Whether ``pid`` runs (a pool child that exited is reaped first)."""
        self.reap()
        for proc in self._procs.values():
            if proc.pid == pid and proc.returncode is not None:
                return False
        return process_alive(pid)

    def close(self, grace: float = CLOSE_GRACE_S) -> None:
        """SIGTERM every child, SIGKILL those still there after ``grace`` seconds, reap all.
        Safe to call twice."""
        for name in self._procs:
            self.terminate(name, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.reap()
            if all(p.returncode is not None for p in self._procs.values()):
                break
            time.sleep(0.02)
        for name in self._procs:
            self.terminate(name, signal.SIGKILL)
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def _served_pid(name: str, text: str) -> int | None:
    """The PID of the node called ``name`` in a fake server's report lines, or None."""
    for line in text.splitlines():
        try:
            got = json.loads(line)
        except ValueError:
            return None
        if isinstance(got, dict) and got.get("name") == name and isinstance(got.get("pid"), int):
            return int(got["pid"])
    return None
