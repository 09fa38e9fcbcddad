"""The real-GPU check behind ``scripts/gpu_check.sh``: vramtop beside CUDA workloads it can predict.

Where it sits: outside vramtop, as a user on a machine with an NVIDIA GPU. It starts three torch
workloads with known memory patterns (``gpu_check_worker.py``: steps to a plateau then a
release, a spike, and one that calls ``vramtop.report()`` when that exists), runs
``vramtop record`` for the whole time, ``vramtop --once --json`` on the plateau and the live
monitor in a pseudo-terminal for a few seconds beside them, and times every NVML call vramtop
makes, per function, with pynvml in this process. Then it checks:

* VRAM: for every state a worker holds, the median of what vramtop recorded for that PID is
  torch's ``memory_reserved()`` plus the worker's CUDA context (measured in its baseline state)
  within ``TOLERANCE_MIB`` (128 MiB: the context grows a little as kernels' modules load
  lazily, and NVML counts in 2 MiB pages); and vramtop's number is NVML's own (read here) within
  ``NVML_MATCH_MIB``.
* phases, as vramtop's analysis names them in the recording: "growing" while the steps
  climb, "stable" on the plateau, the release and the spike seen in the numbers, no "growing"
  after the release.
* ``--once --json``: every worker listed with its memory, GPU used >= the sum of processes.
* the monitor: the GPU's name and a worker's PID on screen, exit 0 on ``q``.

Everything is printed as one table (NVML latencies are rows of it: median, 99th percentile
and worst call, microseconds), and written under ``$OUT`` when set (summary.txt, record.ndjson,
once.json, screen.txt, workers.log, check.log), else under a fresh temporary directory.
It finishes within 3 minutes.

Without an NVIDIA driver or GPU (or with ``--dry``) it runs a dry mode and says so: the CUDA
workloads, NVML latencies and VRAM-vs-torch rows are skipped, and the same recording, phase,
``--once`` and monitor checks run on simulated GPUs whose processes follow the same patterns
(``vramtop --demo``, faster than real time), so the check's own logic is exercised anywhere.

Only the standard library is imported before the dependency check: a Python without vramtop's
dependencies gets one line naming what is missing (exit 2), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1 << 20
GIB = 1 << 30
TOLERANCE_MIB = 128
NVML_MATCH_MIB = 64
LATENCY_LIMIT_US = 50_000  # a call slower than 50 ms at the median would stall a 1 s tick
REFRESH = 0.5
# Dry mode runs the workers' timeline in real time: vramtop's phase windows are in wall seconds
# (a 60 s slope window, a 15 s "still moving" window), so a faster scenario would end the
# plateau before the climb has left the window, and the plateau would never read "stable".
DRY_SPEED = float(os.environ.get("GPU_CHECK_DRY_SPEED", "1"))
START_DELAY_S = 20.0  # torch import and CUDA init in the workers, before their schedules start
END_S = 70.0
ONCE_AT_S, TUI_AT_S, TUI_FOR_S = 40.0, 43.0, 6.0
ROWS, COLS = 45, 160

# module -> distribution, for the message and for pip
RUNTIME = {
    "numpy": "numpy",
    "psutil": "psutil",
    "requests": "requests",
    "pynvml": "nvidia-ml-py",
    "blessed": "blessed",
    "wcwidth": "wcwidth",
    "setproctitle": "setproctitle",
}
if sys.version_info < (3, 11):
    RUNTIME["tomli"] = "tomli"
TOOLS = {"pexpect": "pexpect", "ptyprocess": "ptyprocess", "pyte": "pyte"}
CUDA = {"torch": "torch"}

# (state, from, until, MiB above the context) per worker, offsets in seconds from the start
PATTERNS: dict[str, list[tuple[str, float, float, int]]] = {
    "steps": [
        ("baseline", 0.0, 8.0, 0),
        *((f"step {i + 1}", 8.0 + 3.0 * i, 11.0 + 3.0 * i, 1024 * (i + 1)) for i in range(6)),
        ("plateau", 26.0, 56.0, 6144),
        ("released", 56.0, END_S, 0),
    ],
    "spike": [
        ("base", 0.0, 30.0, 2048),
        ("spike", 30.0, 33.0, 10240),
        ("after", 33.0, END_S, 2048),
    ],
    "report": [("reporting", 0.0, END_S, 1024)],
}
SIM_CONTEXT_MIB = 500  # the simulated workers' "context"


def missing_modules(with_cuda: bool) -> dict[str, str]:
    wanted = {**RUNTIME, **TOOLS, **(CUDA if with_cuda else {})}
    missing = {}
    for module, dist in wanted.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing[module] = dist
    return missing


def missing_line(missing: dict[str, str]) -> str:
    return (
        f"gpu_check: missing Python modules for {sys.executable} "
        f"({sys.version.split()[0]}): {' '.join(missing)}; install them "
        f"(pip install {' '.join(sorted(set(missing.values())))}) or pass --wheels DIR "
        "prepared by scripts/gpu_check_wheels.sh"
    )


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    measured: str
    expected: str
    status: str  # ok, FAIL, skipped


@dataclass
class Ctx:
    root: Path
    out: Path
    env: dict[str, str]
    dry: bool
    checks: list[Check] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def add(self, name: str, measured: str, expected: str, ok: bool | None) -> None:
        status = "skipped" if ok is None else ("ok" if ok else "FAIL")
        self.checks.append(Check(name, measured, expected, status))

    def note(self, text: str) -> None:
        self.log.append(text)
        print(f"gpu_check: {text}", file=sys.stderr, flush=True)


def table(checks: Sequence[Check]) -> str:
    headers = ("check", "measured", "expected", "result")
    rows = [(c.name, c.measured, c.expected, c.status) for c in checks]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


# -- NVML latencies, and NVML's own per-process figures --------------------------------------------


class NvmlProbe(threading.Thread):
    """Times NVML calls per function until stopped: vramtop's own, when its backend keeps them
    in one table (``NvmlBackend._api``, the choke point of design principle 5), by wrapping each
    entry and sampling the way the sampler does; otherwise every function the backend is known
    to use, called round-robin through pynvml. Also keeps NVML's own per-process used memory of
    GPU 0 (read directly, not through vramtop) with the time it was read."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="nvml-probe")
        self.stop = threading.Event()
        self.times: dict[str, list[float]] = {}
        self.errors: dict[str, dict[str, int]] = {}  # function -> error text -> count
        self.used: dict[int, list[tuple[float, int]]] = {}
        self.failure = ""
        self.source = ""
        self.tick_cpu: list[float] = []  # CPU seconds per NvmlBackend.sample()
        self.strides: list[tuple[str, int | None, int, int]] = []
        self.own_stats: list[str] = []  # vramtop's call_stats(), when it keeps them
        self._originals: dict[str, Any] = {}

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        import pynvml as nv

        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except nv.NVMLError as exc:
                seen = self.errors.setdefault(name, {})
                seen[str(exc)] = seen.get(str(exc), 0) + 1
                raise
            finally:
                self.times.setdefault(name, []).append(time.perf_counter() - started)

        return call

    def _vramtop_backend(self) -> Any:
        from vramtop.gpu.nvml import NvmlBackend

        backend = NvmlBackend()
        api = getattr(backend, "_api", None)
        if not isinstance(api, dict):
            return None
        self._originals = dict(api)
        for name, fn in list(api.items()):
            api[name] = self._timed(name, fn)
        return backend

    def _after(self, backend: Any) -> None:
        """What only the real driver can say: the process-record stride it writes (against what
        its exports imply and the binding's v3 struct), and vramtop's own call statistics."""
        with contextlib.suppress(ImportError, AttributeError):
            import ctypes

            import pynvml as nv

            from vramtop.gpu.nvml import ProcessGetter, expected_record_size

            binding = ctypes.sizeof(nv.c_nvmlProcessInfo_v3_t)
            for api, fn in sorted(self._originals.items()):
                if isinstance(fn, ProcessGetter) and api in self.times:  # the ones in use
                    self.strides.append((api, fn.record_size, expected_record_size(api), binding))
        stats = getattr(backend, "call_stats", None)
        if callable(stats):
            self.own_stats = [
                f"{c.function} {c.mean_ms:.3f}/{c.max_ms:.3f} ms ({c.calls})" for c in stats()[:3]
            ]

    def calls(self, nv: Any, handle: Any) -> list[tuple[str, Callable[[], Any]]]:
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("nvmlDeviceGetHandleByIndex", lambda: nv.nvmlDeviceGetHandleByIndex(0)),
            (
                "nvmlDeviceGetMemoryInfo(v2)",
                lambda: nv.nvmlDeviceGetMemoryInfo(handle, version=nv.nvmlMemory_v2),
            ),
            ("nvmlDeviceGetMemoryInfo(v1)", lambda: nv.nvmlDeviceGetMemoryInfo(handle)),
            ("nvmlDeviceGetUtilizationRates", lambda: nv.nvmlDeviceGetUtilizationRates(handle)),
            (
                "nvmlDeviceGetTemperature",
                lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU),
            ),
            ("nvmlDeviceGetPowerUsage", lambda: nv.nvmlDeviceGetPowerUsage(handle)),
            (
                "nvmlDeviceGetEnforcedPowerLimit",
                lambda: nv.nvmlDeviceGetEnforcedPowerLimit(handle),
            ),
            (
                "nvmlDeviceGetClockInfo(SM)",
                lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM),
            ),
            ("nvmlDeviceGetFanSpeed", lambda: nv.nvmlDeviceGetFanSpeed(handle)),
            ("nvmlDeviceGetPerformanceState", lambda: nv.nvmlDeviceGetPerformanceState(handle)),
            (
                "nvmlDeviceGetComputeRunningProcesses",
                lambda: nv.nvmlDeviceGetComputeRunningProcesses(handle),
            ),
            (
                "nvmlDeviceGetGraphicsRunningProcesses",
                lambda: nv.nvmlDeviceGetGraphicsRunningProcesses(handle),
            ),
        ]
        if hasattr(nv, "nvmlDeviceGetMPSComputeRunningProcesses"):
            calls.append(
                (
                    "nvmlDeviceGetMPSComputeRunningProcesses",
                    lambda: nv.nvmlDeviceGetMPSComputeRunningProcesses(handle),
                )
            )
        calls.append(
            (
                "nvmlDeviceGetProcessUtilization",
                lambda: nv.nvmlDeviceGetProcessUtilization(handle, 0),
            )
        )
        return calls

    def run(self) -> None:
        try:
            import pynvml as nv

            nv.nvmlInit()
            handle = nv.nvmlDeviceGetHandleByIndex(0)
            backend = self._vramtop_backend()
            calls = []
            if backend is not None:
                self.source = "vramtop's NvmlBackend, per tick"
                backend.open()
            else:
                self.source = "pynvml, round-robin"
                calls = [(name, self._timed(name, fn)) for name, fn in self.calls(nv, handle)]
            while not self.stop.is_set():
                if backend is not None:
                    cpu = time.process_time()
                    backend.sample()
                    self.tick_cpu.append(time.process_time() - cpu)
                for _, call in calls:
                    with contextlib.suppress(nv.NVMLError):
                        call()
                with contextlib.suppress(nv.NVMLError):
                    now = time.time()
                    for p in nv.nvmlDeviceGetComputeRunningProcesses(handle):
                        used = getattr(p, "usedGpuMemory", None)
                        if isinstance(used, int):
                            self.used.setdefault(int(p.pid), []).append((now, used))
                self.stop.wait(0.1)
            if backend is not None:
                self._after(backend)
                backend.close()
            nv.nvmlShutdown()
        except Exception as exc:  # shown as a failed row, never a traceback
            self.failure = f"{type(exc).__name__}: {exc}"


def gpu_present() -> tuple[bool, str]:
    """Whether NVML initialises and shows a GPU (in this process; vramtop is not running)."""
    try:
        import pynvml as nv

        nv.nvmlInit()
        try:
            count = nv.nvmlDeviceGetCount()
            name = nv.nvmlDeviceGetName(nv.nvmlDeviceGetHandleByIndex(0)) if count else ""
        finally:
            nv.nvmlShutdown()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}".splitlines()[0]
    if not count:
        return False, "NVML sees no GPU"
    return True, name.decode() if isinstance(name, bytes) else str(name)


# -- workloads -------------------------------------------------------------------------------------


@dataclass
class Worker:
    pattern: str
    proc: subprocess.Popen[str] | None = None
    pid: int = 0
    states: list[dict[str, Any]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    nvml_pid: int = 0  # the PID NVML reports: another one inside a PID namespace (container)


def resolve_pids(
    ctx: Ctx, workers: Sequence[Worker], docs: Sequence[dict[str, Any]], at: float
) -> None:
    """Find each worker in the recording. In a container NVML reports host PIDs, which are
    not the workers' own: then each unknown PID is matched to the worker whose pattern holds
    the nearest amount of memory at ``at`` (6, 2 and 1 GiB above the context: far apart)."""
    seen = {p.get("pid") for d in docs for g in d.get("gpus", []) for p in g.get("processes", [])}
    for w in workers:
        w.nvml_pid = w.pid
    lost = [w for w in workers if w.pid not in seen]
    if not lost or not docs:
        return
    doc = min(docs, key=lambda d: abs(float(d["timestamp"]) - at))
    ours = {w.pid for w in workers}
    others = [
        p
        for g in doc.get("gpus", [])
        for p in g.get("processes", [])
        if p.get("pid") not in ours and isinstance(p.get("used_bytes"), int)
    ]
    offset = at - doc["timestamp"]
    for w in lost:
        want = next((mib for s, a, b, mib in PATTERNS[w.pattern] if a <= ONCE_AT_S < b), 0)
        if not others:
            break
        best = min(others, key=lambda p: abs(p["used_bytes"] - want * MIB - 600 * MIB))
        others.remove(best)
        w.nvml_pid = int(best["pid"])
        ctx.note(
            f"worker {w.pattern} (pid {w.pid}) is NVML pid {w.nvml_pid}: matched by its "
            f"memory {offset:+.1f} s from the plateau (a PID namespace)"
        )


def start_workers(ctx: Ctx, start_at: float) -> list[Worker]:
    script = ctx.root / "scripts" / "gpu_check_worker.py"
    workers = []
    for pattern in PATTERNS:
        w = Worker(pattern)
        with open(ctx.out / "check.log", "a") as err:  # torch's warnings, a traceback
            w.proc = subprocess.Popen(
                [sys.executable, str(script), pattern, f"{start_at:.3f}"],
                env=ctx.env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        w.pid = w.proc.pid
        threading.Thread(target=_read_worker, args=(w,), daemon=True).start()
        workers.append(w)
    return workers


def _read_worker(w: Worker) -> None:
    assert w.proc is not None and w.proc.stdout is not None
    for line in w.proc.stdout:
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            w.states.append(doc)
            if doc.get("state") == "ready":
                w.ready.set()
    w.ready.set()


def simulated_states(start: float, speed: float) -> dict[str, list[dict[str, Any]]]:
    """The states the simulated workers go through, in wall time (dry mode)."""
    return {
        pattern: [
            {
                "state": s,
                "t": start + a / speed,
                "until": start + b / speed,
                "reserved": mib * MIB,
            }
            for s, a, b, mib in states
        ]
        for pattern, states in PATTERNS.items()
    }


def scenario_toml() -> str:
    """Simulated GPUs whose processes follow the workers' patterns (dry mode). The steps
    process appears at 5 s (a staircase starts stepping at its own start) and leaves at the
    release, which a scenario cannot express otherwise."""
    c = SIM_CONTEXT_MIB
    return f"""name = "gpu-check"
seed = 3

[[gpu]]
name = "NVIDIA H200"
memory_mib = 143771
power_limit_w = 700

[[process]]
name = "steps"
gpu = 0
argv = ["python", "gpu_check_worker.py", "steps"]
start = 5
stop = 56
memory = {{ curve = "staircase", base_mib = {c}, step_mib = 1024, every_s = 3, steps = 6 }}

[[process]]
name = "spike"
gpu = 0
argv = ["python", "gpu_check_worker.py", "spike"]
memory = {{ curve = "spike", base_mib = {c + 2048}, height_mib = 8192, at_s = 30, duration_s = 3 }}

[[process]]
name = "report"
gpu = 0
argv = ["python", "gpu_check_worker.py", "report"]
memory = {{ curve = "constant", mib = {c + 1024} }}
"""


# -- vramtop beside them ---------------------------------------------------------------------------


def vramtop(ctx: Ctx, *args: str) -> list[str]:
    return [sys.executable, "-m", "vramtop", *args]


def demo_args(ctx: Ctx, scenario: Path | None, speed: float | None = None) -> list[str]:
    if scenario is None:
        return []
    out = ["--demo", str(scenario)]
    return out + (["--speed", f"{speed:g}"] if speed else [])


def run_once(ctx: Ctx, scenario: Path | None) -> dict[str, Any] | None:
    path = ctx.out / "once.json"
    with open(path, "w") as out, open(ctx.out / "check.log", "a") as err:
        done = subprocess.run(
            vramtop(ctx, "--once", "--json", *demo_args(ctx, scenario)),
            env=ctx.env,
            stdout=out,
            stderr=err,
            timeout=60,
            check=False,
        )
    if done.returncode != 0:
        ctx.add("vramtop --once --json", f"exit {done.returncode}", "exit 0", False)
        return None
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        ctx.add("vramtop --once --json", f"not JSON: {exc}", "one JSON document", False)
        return None
    return doc


def run_tui(ctx: Ctx, scenario: Path | None, seconds: float) -> tuple[str, int | None]:
    """The monitor in a pty for ``seconds``, then q: (screen text, exit status)."""
    import pexpect
    import pyte

    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    env = dict(ctx.env, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS))
    argv = vramtop(ctx, *demo_args(ctx, scenario, DRY_SPEED if scenario else None))
    child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(ROWS, COLS), timeout=5)

    def pump(until: float) -> None:
        while time.monotonic() < until and child.isalive():
            try:
                data = child.read_nonblocking(1 << 16, timeout=0.2)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return
            if b"\x1b[6n" in data:
                child.send(b"\x1b[1;1R")  # answer the cursor query as a terminal does
            stream.feed(data)

    pump(time.monotonic() + seconds)
    text = "\n".join(screen.display)
    with contextlib.suppress(OSError):
        child.send("q")
    pump(time.monotonic() + 10)
    if child.isalive():
        child.kill(signal.SIGKILL)
    child.close(force=True)
    (ctx.out / "screen.txt").write_text(text + "\n")
    status: int | None = child.exitstatus
    return text, status


def read_recording(path: Path) -> list[dict[str, Any]]:
    docs = []
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            with contextlib.suppress(ValueError):
                docs.append(json.loads(line))
    return docs


Series = list[tuple[float, int | None, str]]


def series(docs: Sequence[dict[str, Any]], match: Callable[[dict[str, Any]], bool]) -> Series:
    """(timestamp, used bytes, phase) of the processes ``match`` picks, over the recording."""
    out = []
    for doc in docs:
        for gpu in doc.get("gpus", []):
            for p in gpu.get("processes", []):
                if match(p):
                    used = p.get("used_bytes")
                    phase = (p.get("analysis") or {}).get("phase", "")
                    out.append((float(doc["timestamp"]), used, str(phase)))
    return out


def _mib(value: float) -> str:
    return f"{value / MIB:.0f} MiB"


# -- the checks ------------------------------------------------------------------------------------


def check_vram(
    ctx: Ctx,
    name: str,
    states: Sequence[dict[str, Any]],
    rec: Sequence[tuple[float, int | None, str]],
    nvml: Sequence[tuple[float, int]] | None,
) -> None:
    holds = [s for s in states if s.get("state") not in ("ready", "done", "error")]
    context: float | None = None
    for s in holds:
        window = [u for t, u, _ in rec if s["t"] + 1.0 <= t <= s["until"] - 0.25 and u is not None]
        if not window:
            ctx.add(f"VRAM {name}: {s['state']}", "no samples", "samples while held", False)
            continue
        used = statistics.median(window)
        if context is None:
            context = used - s["reserved"]
            ctx.add(
                f"VRAM {name}: CUDA context",
                _mib(context),
                "NVML used - torch reserved, 100-2048 MiB",
                100 * MIB <= context <= 2048 * MIB,
            )
            continue
        want = s["reserved"] + context
        ctx.add(
            f"VRAM {name}: {s['state']}",
            f"{_mib(used)} (torch reserved {_mib(s['reserved'])})",
            f"reserved + context = {_mib(want)} ± {TOLERANCE_MIB} MiB",
            abs(used - want) <= TOLERANCE_MIB * MIB,
        )
        if nvml:
            direct = [u for t, u in nvml if s["t"] + 1.0 <= t <= s["until"] - 0.25]
            if direct:
                diff = abs(used - statistics.median(direct))
                ctx.add(
                    f"VRAM {name}: {s['state']} vs NVML",
                    f"differs by {_mib(diff)}",
                    f"<= {NVML_MATCH_MIB} MiB",
                    diff <= NVML_MATCH_MIB * MIB,
                )


def _in(rec: Series, a: float, b: float) -> Series:
    return [r for r in rec if a <= r[0] <= b]


def _phases(rows: Sequence[tuple[float, int | None, str]]) -> str:
    seen: list[str] = []
    for _, _, phase in rows:
        if not seen or seen[-1] != phase:
            seen.append(phase)
    return " > ".join(seen) or "none"


def check_phases(
    ctx: Ctx,
    states: dict[str, list[dict[str, Any]]],
    recs: dict[str, list[tuple[float, int | None, str]]],
    dry: bool,
) -> None:
    def at(pattern: str, state: str) -> dict[str, Any]:
        return next(s for s in states[pattern] if s["state"] == state)

    steps = recs["steps"]
    first, plateau, released = (
        at("steps", "step 1"),
        at("steps", "plateau"),
        at("steps", "released"),
    )
    climb = _in(steps, first["t"], plateau["t"] + 0.5 * (plateau["until"] - plateau["t"]))
    ctx.add(
        "phase steps: climbing",
        _phases(climb),
        "growing",
        any(p == "growing" for _, _, p in climb),
    )
    late = _in(steps, plateau["t"] + 0.6 * (plateau["until"] - plateau["t"]), plateau["until"])
    ctx.add("phase steps: plateau", _phases(late), "stable", any(p == "stable" for *_, p in late))
    after = _in(steps, released["t"] + 1.0, released["until"])
    if dry:
        ctx.add(
            "phase steps: released",
            f"{len(after)} samples after its exit",
            "gone from the list (the simulated release is an exit)",
            not after,
        )
    else:
        low = [u for _, u, _ in after if u is not None]
        peak = max((u or 0 for _, u, _ in late), default=0)
        ctx.add(
            "phase steps: released",
            f"{_mib(min(low))} after {_mib(peak)}; phases {_phases(after)}" if low else "none",
            "back near the context, never 'growing'",
            bool(low) and min(low) < peak - 5 * GIB and all(p != "growing" for *_, p in after),
        )
    spike_rec = recs["spike"]
    base, spike, back = at("spike", "base"), at("spike", "spike"), at("spike", "after")
    during = [u or 0 for _, u, _ in _in(spike_rec, spike["t"], spike["until"])]
    before = [u or 0 for _, u, _ in _in(spike_rec, base["t"] + 1.0, base["until"])]
    if during and before:
        rise = max(during) - statistics.median(before)
        ctx.add(
            "phase spike: the spike",
            f"+{_mib(rise)} for {len(during)} samples",
            "+8192 MiB ± 128",
            abs(rise - 8192 * MIB) <= TOLERANCE_MIB * MIB,
        )
    else:
        ctx.add("phase spike: the spike", "no samples", "samples before and during", False)
    tail = _in(spike_rec, back["t"] + 0.5 * (back["until"] - back["t"]), back["until"])
    ctx.add(
        "phase spike: after",
        _phases(tail),
        "settles, never 'growing'",
        bool(tail) and all(p != "growing" for *_, p in tail),
    )


def check_once(
    ctx: Ctx,
    doc: dict[str, Any] | None,
    pick: dict[str, Callable[..., bool]],
    gone: dict[str, str] | None = None,
) -> None:
    """Every worker listed with its memory; ``gone``: workers that have exited by then (why)."""
    if doc is None:
        return
    try:
        import jsonschema  # type: ignore[import-untyped]

        from vramtop.export.document import schema_text

        try:
            jsonschema.validate(doc, json.loads(schema_text()))
            ctx.add("--once --json: schema", "valid", "valid against schema.json", True)
        except jsonschema.ValidationError as exc:
            ctx.add("--once --json: schema", exc.message[:100], "valid against schema.json", False)
    except ImportError:
        ctx.add("--once --json: schema", "jsonschema not installed", "validated", None)
    for g in doc.get("gpus", []):
        m = g.get("memory", {})
        ctx.add(
            f"--once --json: GPU {g.get('index')}",
            f"{g.get('name')}, {g.get('state')}, total {m.get('total_bytes')} B, "
            f"{len(g.get('processes', []))} processes",
            "state ok",
            g.get("state") == "ok",
        )
    procs = [p for g in doc.get("gpus", []) for p in g.get("processes", [])]
    for pattern, match in pick.items():
        found = [p for p in procs if match(p)]
        used = found[0].get("used_bytes") if found else None
        if gone and pattern in gone:
            ctx.add(
                f"--once --json: {pattern}",
                "listed" if found else "not listed",
                f"not listed ({gone[pattern]})",
                not found,
            )
            continue
        ctx.add(
            f"--once --json: {pattern}",
            _mib(used) if isinstance(used, int) else "not listed",
            "listed with its memory",
            isinstance(used, int) and used > 0,
        )
    for g in doc.get("gpus", []):
        m = g.get("memory", {})
        used, total = m.get("used_bytes"), m.get("processes_sum_bytes")
        ok = isinstance(used, int) and isinstance(total, int) and used >= total
        ctx.add(
            f"--once --json: GPU {g.get('index')} used >= sum of processes",
            f"{_mib(used or 0)} vs {_mib(total or 0)}",
            "used >= sum",
            ok,
        )


def check_tui(ctx: Ctx, text: str, status: int | None, gpu_name: str, pids: Sequence[int]) -> None:
    flat = " ".join(text.split())
    short = gpu_name.replace("NVIDIA", "").strip().split()[0] if gpu_name else ""
    ctx.add("monitor: GPU on screen", repr(short), "the GPU's name", bool(short) and short in flat)
    if pids:
        shown = [pid for pid in pids if str(pid) in flat]
        ctx.add("monitor: workers on screen", f"{len(shown)} of {len(pids)}", ">= 1", bool(shown))
    ctx.add("monitor: quit with q", f"exit {status}", "exit 0", status == 0)


def latency_rows(ctx: Ctx, probe: NvmlProbe) -> None:
    """One row per NVML function: median, 99th percentile and worst call. A function whose
    every call failed (not supported on this GPU, absent from this driver) is skipped, as
    vramtop shows n/a for it; occasional errors (e.g. no new process samples) are counted."""
    if probe.failure:
        ctx.add("NVML probe", probe.failure, "runs", False)
    elif probe.source:
        ctx.note(f"NVML latencies: {probe.source}")
    if probe.tick_cpu:
        cpu = sorted(probe.tick_cpu)
        ctx.add(
            "NVML backend tick (all GPUs)",
            f"CPU median {cpu[len(cpu) // 2] * 1e3:.2f} ms, max {cpu[-1] * 1e3:.2f} (n={len(cpu)})",
            "median < 50 ms",
            cpu[len(cpu) // 2] < LATENCY_LIMIT_US / 1e6,
        )
    for api, measured, implied, binding in probe.strides:
        ctx.add(
            f"NVML {api}: record stride",
            f"measured {measured} bytes" if measured else "not measured (no process listed)",
            f"exports imply {implied}, binding's v3 struct {binding}",
            True if measured else None,
        )
    if probe.own_stats:
        ctx.add("NVML slowest calls (vramtop's own stats)", "; ".join(probe.own_stats),
                "mean/max ms (calls)", True)  # fmt: skip
    for name, times in sorted(probe.times.items()):
        errors = probe.errors.get(name, {})
        failed = sum(errors.values())
        if failed == len(times):
            ctx.add(f"NVML {name}", ", ".join(errors), "a result, or n/a", None)
            continue
        us = sorted(t * 1e6 for t in times)
        median, p99, worst = us[len(us) // 2], us[min(len(us) - 1, int(0.99 * len(us)))], us[-1]
        note = f"; {failed} errors ({', '.join(errors)})" if failed else ""
        ctx.add(
            f"NVML {name}",
            f"median {median:.0f} µs, p99 {p99:.0f}, max {worst:.0f} (n={len(us)}){note}",
            f"median < {LATENCY_LIMIT_US // 1000} ms",
            median < LATENCY_LIMIT_US,
        )


# -- the two modes ---------------------------------------------------------------------------------


def recorder(ctx: Ctx, scenario: Path | None, speed: float | None) -> subprocess.Popen[bytes]:
    path = ctx.out / "record.ndjson"
    path.unlink(missing_ok=True)
    args = ["record", str(path), "--format", "ndjson", "--refresh-rate", f"{REFRESH:g}"]
    with open(ctx.out / "check.log", "a") as err:
        return subprocess.Popen(
            vramtop(ctx, *args, *demo_args(ctx, scenario, speed)),
            env=ctx.env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def stop(proc: subprocess.Popen[Any], name: str, ctx: Ctx) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        ctx.note(f"{name} did not stop on SIGINT within 15 s; killed")
        proc.kill()
        return proc.wait(5)


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def by_pid(pid: int) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p.get("pid") == pid


def log_nvidia_smi(ctx: Ctx) -> None:
    with open(ctx.out / "check.log", "a") as log, contextlib.suppress(OSError):
        query = "index,name,memory.total,memory.used,memory.reserved,driver_version"
        subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv"],
            stdout=log,
            stderr=log,
            timeout=30,
            check=False,
        )


def nvml_mode(ctx: Ctx, gpu_name: str, reason: str) -> None:
    """A GPU but no CUDA workloads (torch missing): vramtop on the driver alone."""
    ctx.note(
        f"NVML only ({reason}): the CUDA workloads, VRAM-vs-torch and phase checks are "
        "skipped; record, --once, the monitor and NVML latencies run on the driver"
    )
    ctx.add("CUDA workloads", reason, "torch", None)
    log_nvidia_smi(ctx)
    probe = NvmlProbe()
    probe.start()
    rec = recorder(ctx, None, None)
    try:
        time.sleep(3.0)
        doc = run_once(ctx, None)
        text, status = run_tui(ctx, None, TUI_FOR_S)
        time.sleep(2 * REFRESH)
    finally:
        code = stop(rec, "vramtop record", ctx)
        probe.stop.set()
        probe.join(5)
    docs = read_recording(ctx.out / "record.ndjson")
    ctx.add("vramtop record", f"{len(docs)} samples, exit {code}", "samples, exit 0",
            bool(docs) and code == 0)  # fmt: skip
    check_once(ctx, doc, {})
    check_tui(ctx, text, status, gpu_name, [])
    latency_rows(ctx, probe)


def gpu_mode(ctx: Ctx, gpu_name: str) -> None:
    log_nvidia_smi(ctx)
    probe = NvmlProbe()
    probe.start()
    rec = recorder(ctx, None, None)
    start_at = time.time() + START_DELAY_S
    workers = start_workers(ctx, start_at)
    try:
        for w in workers:  # one deadline for all: the check must end within 3 minutes
            if not w.ready.wait(max(0.0, start_at + 30 - time.time())):
                ctx.note(f"worker {w.pattern} not ready {START_DELAY_S + 30:.0f} s after its start")
        sleep_until(start_at + ONCE_AT_S)
        doc = run_once(ctx, None)
        sleep_until(start_at + TUI_AT_S)
        text, status = run_tui(ctx, None, TUI_FOR_S)
        for w in workers:
            if w.proc is not None:
                try:
                    w.proc.wait(max(5.0, start_at + END_S + 20 - time.time()))
                except subprocess.TimeoutExpired:
                    ctx.note(f"worker {w.pattern} still running at the end; killed")
                    w.proc.kill()
        time.sleep(2 * REFRESH)
    finally:
        code = stop(rec, "vramtop record", ctx)
        probe.stop.set()
        probe.join(5)
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.kill()
    with open(ctx.out / "workers.log", "w") as f:
        for w in workers:
            f.write(f"== {w.pattern} (pid {w.pid}, exit {w.proc.returncode if w.proc else '?'})\n")
            f.writelines(json.dumps(s) + "\n" for s in w.states)
    for w in workers:
        done = {s.get("state") for s in w.states}
        want = [s for s, *_ in PATTERNS[w.pattern]]
        exit_code = w.proc.returncode if w.proc else None
        ctx.add(
            f"worker {w.pattern} (torch)",
            f"{sum(s in done for s in want)} of {len(want)} states, exit {exit_code}",
            "every state, exit 0 (else see check.log)",
            exit_code == 0 and all(s in done for s in want),
        )
    docs = read_recording(ctx.out / "record.ndjson")
    ctx.add(
        "vramtop record",
        f"{len(docs)} samples, exit {code}",
        "samples, exit 0",
        bool(docs) and code == 0,
    )
    resolve_pids(ctx, workers, docs, start_at + ONCE_AT_S)
    recs = {w.pattern: series(docs, by_pid(w.nvml_pid)) for w in workers}
    states = {w.pattern: w.states for w in workers}
    for w in workers:
        check_vram(ctx, w.pattern, w.states, recs[w.pattern], probe.used.get(w.nvml_pid))
    complete = all(
        {s for s, *_ in PATTERNS[w.pattern]} <= {s.get("state") for s in w.states} for w in workers
    )
    if complete:
        check_phases(ctx, states, recs, dry=False)
    else:
        ctx.add("phases", "a worker did not go through its pattern", "all states", False)
    report = next((w for w in workers if w.pattern == "report"), None)
    note = next((s.get("note", "") for s in report.states if "note" in s), "") if report else ""
    if "does not exist" in note:
        ctx.add("vramtop.report()", note, "deep mode", None)
    else:
        ctx.add("vramtop.report()", note or "no answer", "returned", note.endswith("returned"))
    pids = {w.pattern: w.nvml_pid for w in workers}
    check_once(ctx, doc, {k: by_pid(pid) for k, pid in pids.items()})
    check_tui(ctx, text, status, gpu_name, list(pids.values()))
    latency_rows(ctx, probe)


def dry_mode(ctx: Ctx, reason: str) -> None:
    ctx.note(
        f"dry mode ({reason}): CUDA workloads, NVML latencies and VRAM-vs-torch checks are "
        f"skipped; the recording, phase, --once and monitor checks run on simulated GPUs "
        f"following the same patterns at {DRY_SPEED:g}x speed"
    )
    for name in ("VRAM vs torch", "NVML latencies", "vramtop.report()"):
        ctx.add(name, "dry mode", "a GPU", None)
    scenario = Path(tempfile.gettempdir()) / f"vramtop-gpu-check-{os.getpid()}.toml"
    scenario.write_text(scenario_toml())
    try:
        started = time.time()
        rec = recorder(ctx, scenario, DRY_SPEED)
        try:
            sleep_until(started + ONCE_AT_S / DRY_SPEED)
            doc = run_once(ctx, scenario)
            text, status = run_tui(ctx, scenario, TUI_FOR_S)
            sleep_until(started + (END_S + 4) / DRY_SPEED)
        finally:
            code = stop(rec, "vramtop record", ctx)
    finally:
        scenario.unlink(missing_ok=True)
    docs = read_recording(ctx.out / "record.ndjson")
    ctx.add(
        "vramtop record --demo",
        f"{len(docs)} samples, exit {code}",
        "samples, exit 0",
        bool(docs) and code == 0,
    )

    def by_command(pattern: str) -> Callable[[dict[str, Any]], bool]:
        return lambda p: str(p.get("command", "")).endswith(f"gpu_check_worker.py {pattern}")

    recs = {pattern: series(docs, by_command(pattern)) for pattern in PATTERNS}
    # The scenario clock starts when the recorder's backend opens, a moment after the spawn.
    first = min((t for rows in recs.values() for t, *_ in rows), default=started)
    check_phases(ctx, simulated_states(min(first, started + 2.0), DRY_SPEED), recs, dry=True)
    gone = {"steps": "it exits at 56 s; --once --demo shows the scenario at 60 s"}
    check_once(ctx, doc, {k: by_command(k) for k in PATTERNS}, gone)
    flat = " ".join(text.split())
    shown = sum(f"gpu_check_worker.py {k}" in flat for k in PATTERNS)
    ctx.add("monitor: GPU on screen", "'H200'", "the GPU's name", "H200" in flat)
    ctx.add("monitor: workers on screen", f"{shown} of {len(PATTERNS)}", ">= 1", shown >= 1)
    ctx.add("monitor: quit with q", f"exit {status}", "exit 0", status == 0)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="vramtop beside CUDA workloads (scripts/gpu_check.sh)")
    p.add_argument("--dry", action="store_true", help="simulated GPUs even when a GPU is there")
    p.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    p.add_argument("--site", action="append", default=[], help="extra import path (wheels)")
    p.add_argument("--missing", action="store_true", help="print what pip would install; exit")
    p.add_argument("--out", default=os.environ.get("OUT", ""), help="where logs go ($OUT)")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    paths = [*args.site, str(root)]
    for path in reversed(paths):
        sys.path.insert(0, path)
    if args.missing:
        print(" ".join(sorted(set(missing_modules(with_cuda=False).values()))))
        return 0
    missing = missing_modules(with_cuda=False)
    if missing:
        print(missing_line(missing), file=sys.stderr)
        return 2
    present, what = (False, "--dry given") if args.dry else gpu_present()
    no_torch = "torch not importable by this Python" if missing_modules(with_cuda=True) else ""
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vramtop-gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "check.log").write_text("")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    for name in ("NO_COLOR", "VRAMTOP_FAULT"):
        env.pop(name, None)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # torch's cuda:0 is then NVML's GPU 0
    ctx = Ctx(root, out, env, dry=not present)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vramtop-gpu-check-home-") as home:
        # The user's own config must not change what is checked.
        env.update({"XDG_CONFIG_HOME": f"{home}/config", "XDG_STATE_HOME": f"{home}/state"})
        if present and no_torch:
            nvml_mode(ctx, what, no_torch)
        elif present:
            ctx.note(f"GPU mode on {what}: workloads start in {START_DELAY_S:.0f} s, ~2 min in all")
            gpu_mode(ctx, what)
        else:
            dry_mode(ctx, what if args.dry else f"no GPU: {what}")
    mode = "dry mode, simulated GPUs" if ctx.dry else f"GPU: {what}{', NVML only' * bool(no_torch)}"
    title = f"vramtop gpu_check ({mode}), {time.monotonic() - started:.0f} s, logs in {out}"
    summary = "\n".join([title, "", table(ctx.checks), *ctx.log])
    print(summary)
    (out / "summary.txt").write_text(summary + "\n")
    failed = [c for c in ctx.checks if c.status == "FAIL"]
    print(f"gpu_check: {len(failed)} failed, {len(ctx.checks)} checks", file=sys.stderr)
    return 1 if failed else 0


def _on_term(_signo: int, _frame: object) -> None:
    raise KeyboardInterrupt  # the time limit in gpu_check.sh: stop the workloads on the way out


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_term)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("gpu_check: interrupted", file=sys.stderr)
        sys.exit(130)
