#!/usr/bin/env python3
"""Soak: leave the whole program running on busy simulated GPUs and check that nothing grows.

Where it sits: outside the data flow, as a user who leaves vramtop open for weeks. It writes a
scenario of 8 GPUs and 256 GPU processes with churn (192 that stay for the whole run, 8 of them
real child processes with their own command lines, and 64 "seats" through which short-lived
processes come and go, each a new PID, so identities, shm process slots, enrichment caches and
the analyzer's per-process state keep turning over), starts the monitor on it in a 160x45
pseudo-terminal, and every few seconds measures every vramtop process (the supervisor and each
``vramtop: NAME`` actor): RSS, anonymous RSS (the heap, where a leak shows; RSS also counts the
shared-memory pages each process has touched), open fds and threads; and for the program as a
whole the supervisor's child processes and the /dev/shm entries its processes map or created.
After a warm-up (the rings filling to ``history_length``, every process slot taken once, Python's
allocator settling) it fits a straight line to each series and prints its slope per 1000 samples
and per hour of simulated time. It exits 1 when a slope exceeds the stated threshold, when an
actor restarted (its numbers would start over), or when the program does not end cleanly on
``q`` (exit 0, no vramtop process left, no segment left in /dev/shm).

Why the whole program, and how a day fits: the program's sampler ticks at ``--refresh-rate``,
which a user may set no lower than 0.5 s, so a day of 1 Hz samples (86400) would take 12 hours
through the command line. Driving the cores in-process would be faster per sample only by the
pacing, and would miss what a soak is for: the mailboxes, state channels, shm rings, pickling
between processes, the supervisor's housekeeping, the terminal writer and the child pool, all
in their real processes. So the full run starts the same ``run_monitor`` the command line ends
in (same config loading, same actors, same supervisor, same pty), with one difference: the
refresh rate is set below the user-facing floor (0.05 s by default), and ``--speed`` is its
inverse, so each sample is one simulated second exactly as at 1 Hz. A sampler that cannot keep
up just ticks later; the sample count is read from the shared-memory ring, the simulated time
from the scenario clock, and both slopes are given. With ``--refresh-rate 0.5`` or more it runs
the literal command line, ``python -m vramtop --demo SCENARIO --refresh-rate R --speed 1/R``;
``--quick`` (the CI version, ``tests/test_soak.py``) does that for two minutes.

Thresholds, on the slope of a least-squares line after warm-up through the *floor* of each
series (the lowest value of every run of 10 measurements: a leak raises it, while buffers that
are allocated and freed again between measurements, such as the analyzer's numpy temporaries,
do not), so it is noise-tolerant, yet a leak of a few bytes per sample adds up to a clear
slope:

* full run: RSS and anonymous RSS of any one process <= 32 KiB per 1000 samples (under 3 MiB
  a day), of all processes together <= 96 KiB; fds, threads, children and /dev/shm entries
  <= 0.1 per 1000 samples (fewer than 9 a day: one per sample, or one per churned process,
  is 1000 or ~40).
* ``--quick`` (two minutes, ~140 samples after warm-up): RSS <= 6 MiB per 1000 samples per
  process (a 1 MiB arena step inside so short a window stays under it, with the scatter of a
  loaded machine; a leak of 8 KiB per sample does not), all eight processes together
  <= 24 MiB; counts <= 10 per 1000 samples (one per sample is 1000).

Usage: ``.venv/bin/python scripts/soak.py [--quick] [--samples N] [--max-minutes M]
[--refresh-rate SEC] [--json FILE] [--reanalyze FILE]``; the full run ends at 86400 samples or
after 90 minutes, whichever comes first (on two busy cores: the minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

ROWS, COLS = 45, 160
GPUS = 8
GPU_MIB = 81559
STABLE, REAL, SEATS = 184, 8, 64  # 184 + 8 + 64 = 256 processes at any moment
KIB = 1024
MIB = 1024 * KIB
CURSOR_QUERY, CURSOR_REPLY = b"\x1b[6n", b"\x1b[1;1R"


@dataclass(frozen=True)
class Plan:
    name: str
    samples: int  # stop after this many samples ...
    max_minutes: float  # ... or after this long, whichever comes first
    refresh: float  # seconds between samples (speed = 1 / refresh)
    probe_s: float  # seconds between measurements
    warmup: float  # fraction of the run discarded at the start
    min_warmup_samples: int
    lifetime_s: tuple[float, float]  # churned processes live this long (simulated s)
    history_length: int
    process_slots: int
    rss_per_proc: float  # bytes per 1000 samples
    rss_total: float
    count_slope: float  # fds, threads, children, shm entries per 1000 samples


FULL = Plan(
    name="full",
    samples=86_400,
    max_minutes=90.0,
    refresh=0.05,
    probe_s=5.0,
    warmup=0.1,
    min_warmup_samples=1500,
    lifetime_s=(600.0, 3000.0),
    history_length=300,
    process_slots=384,
    rss_per_proc=32 * KIB,
    rss_total=96 * KIB,
    count_slope=0.1,
)
QUICK = Plan(
    name="quick",
    samples=10**9,
    max_minutes=2.0,
    refresh=0.5,
    probe_s=1.0,
    warmup=0.4,
    min_warmup_samples=60,
    lifetime_s=(10.0, 40.0),
    history_length=30,
    process_slots=384,
    rss_per_proc=6 * MIB,
    rss_total=24 * MIB,
    count_slope=10.0,
)


# -- the scenario ----------------------------------------------------------------------------------


def _unit(i: int, salt: int) -> float:
    """A deterministic number in [0, 1) (a small hash: the same scenario on every run)."""
    x = (i * 2654435761 + salt * 40503 + 12345) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 2246822519) & 0xFFFFFFFF
    x ^= x >> 13
    return x / 2**32


def _churn_curve(i: int, size: float) -> str:
    kind = i % 4
    if kind == 0:
        return f'{{ curve = "warmup", plateau_mib = {size:.0f}, warmup_s = 5, noise_mib = 2 }}'
    if kind == 1:
        return (
            f'{{ curve = "staircase", base_mib = {size / 4:.0f}, step_mib = {size / 4:.0f}, '
            "every_s = 3, steps = 3, noise_mib = 2 }"
        )
    if kind == 2:
        return (
            f'{{ curve = "spike", base_mib = {size / 2:.0f}, height_mib = {size / 2:.0f}, '
            "at_s = 4, duration_s = 2, repeat_every_s = 20 }"
        )
    return (
        f'{{ curve = "linear", base_mib = {size / 2:.0f}, rate_mib_s = 2, '
        f"max_mib = {size:.0f}, noise_mib = 1 }}"
    )


def scenario_toml(duration_s: float, lifetime: tuple[float, float]) -> str:
    """8 H100s; 256 processes at every moment: 184 synthetic and 8 real ones for the whole run,
    and 64 seats whose occupants live ``lifetime`` simulated seconds, then the next one starts.
    Sizes keep every GPU far from OOM (an OOM kill would change the process count)."""
    lines = ['name = "soak"', 'description = "8 GPUs, 256 processes, churn"', "seed = 11", ""]
    gpu = f'[[gpu]]\nname = "NVIDIA H100 80GB HBM3"\nmemory_mib = {GPU_MIB}\npower_limit_w = 700\n'
    lines += [gpu] * GPUS
    for i in range(REAL):
        lines += [
            "[[process]]",
            f'name = "job-{i}"',
            f"gpu = {i % GPUS}",
            f'argv = ["python", "train_{i}.py", "--rank", "{i}"]',
            "sm_util = 30",
            f'memory = {{ curve = "sawtooth", base_mib = 2000, amplitude_mib = 800, '
            f"period_s = {30 + 7 * i} }}",
            "",
        ]
    n = 0
    lo, hi = lifetime
    for seat in range(SEATS):
        t = 0.0
        while t < duration_s:
            life = lo + (hi - lo) * _unit(n, 1)
            size = 128 + 768 * _unit(n, 2)
            lines += [
                "[[process]]",
                f'name = "churn-{n}"',
                f"gpu = {seat % GPUS}",
                f"start = {t:.1f}",
                f"stop = {t + life:.1f}",
                f"sm_util = {5 + 20 * _unit(n, 3):.0f}",
                f"memory = {_churn_curve(n, size)}",
                "",
            ]
            n += 1
            t += life
    lines += [
        "[[process_group]]",
        f"count = {STABLE}",
        'name = "worker"',
        f"gpu = {list(range(GPUS))}",
        "sm_util = 8",
        "size_mib = [128, 1024]",
        "noise_mib = 2",
        "",
    ]
    return "\n".join(lines)


def config_toml(plan: Plan) -> str:
    return (
        f"[general]\nhistory_length = {plan.history_length}\nprocess_slots = {plan.process_slots}\n"
    )


# -- the program -----------------------------------------------------------------------------------


def run_monitor_child(scenario: str, config_path: str, refresh: float, export: str) -> int:
    """``soak.py --monitor``: what ``vramtop --demo SCENARIO --config PATH --export-csv FILE``
    runs, with the refresh rate below the command line's 0.5 s floor (see the docstring)."""
    from vramtop.config import load_config
    from vramtop.gpu.factory import BackendSpec
    from vramtop.gpu.scenario import load_scenario
    from vramtop.modes.monitor import run_monitor

    config = load_config(config_path)
    config = dataclasses.replace(
        config, general=dataclasses.replace(config.general, refresh_rate=refresh)
    )
    spec = BackendSpec("simulated", scenario=scenario, speed=1.0 / refresh)
    gpu_count = len(load_scenario(scenario).gpus)
    code: int = run_monitor(config, spec, gpu_count, config_path, {}, export_csv=export or None)
    return code


def program_argv(plan: Plan, scenario: Path, config: Path, export: str) -> list[str]:
    speed = f"{1.0 / plan.refresh:g}"
    if plan.refresh >= 0.5:
        argv = ["-m", "vramtop", "--demo", str(scenario), "--refresh-rate", f"{plan.refresh:g}"]
        argv += ["--speed", speed, "--config", str(config)]
        return argv + (["--export-csv", export] if export else [])
    argv = [str(Path(__file__).resolve()), "--monitor", str(scenario), str(config)]
    return [*argv, f"{plan.refresh:g}", export]


# -- measuring -------------------------------------------------------------------------------------


@dataclass
class Probe:
    wall: float  # seconds since spawn
    samples: int
    sim_s: float  # simulated seconds since the scenario start
    procs: dict[str, dict[str, float]]  # role -> metric -> value
    children: int
    shm: int


@dataclass
class Run:
    plan: Plan
    probes: list[Probe] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    exit_status: int | None = None
    leftover_procs: list[int] = field(default_factory=list)
    leftover_shm: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def _role(proc: psutil.Process, supervisor: int) -> str | None:
    if proc.pid == supervisor:
        return "supervisor"
    title = " ".join(proc.cmdline())
    return title[len("vramtop: ") :].strip() if title.startswith("vramtop: ") else None


def vramtop_processes(supervisor: int) -> dict[str, psutil.Process]:
    top = psutil.Process(supervisor)
    found: dict[str, psutil.Process] = {}
    for proc in [top, *top.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            role = _role(proc, supervisor)
            if role is not None:
                found[role] = proc
    return found


def _rss_anon(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return float(line.split()[1]) * KIB
    except OSError:
        pass
    return math.nan


def _shm_mapped(pid: int) -> set[str]:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return {line.split("/dev/shm/", 1)[1].strip() for line in f if "/dev/shm/" in line}
    except OSError:
        return set()


def run_segments(supervisor: int) -> list[str]:
    from vramtop.shm import parse_segment_name

    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/dev/shm"):
            parsed = parse_segment_name(name)
            if parsed is not None and parsed.pid == supervisor:
                found.append(name)
    return found


class SampleCounter:
    """Samples written so far, read from the run's own shared-memory ring."""

    def __init__(self) -> None:
        self.segment: Any = None
        self.reader: Any = None

    def count(self, supervisor: int) -> int:
        from vramtop.shm import HistoryReader, ShmSegment

        if self.reader is None:
            names = run_segments(supervisor)
            if not names:
                return 0
            self.segment = ShmSegment.attach(names[0])
            self.reader = HistoryReader(self.segment)
        return int(self.reader.count)

    def close(self) -> None:
        if self.segment is not None:
            with contextlib.suppress(Exception):
                self.segment.close()
        self.segment = self.reader = None


def probe(supervisor: int, started: float, speed: float, counter: SampleCounter) -> Probe:
    procs = vramtop_processes(supervisor)
    metrics: dict[str, dict[str, float]] = {}
    shm: set[str] = set(run_segments(supervisor))
    for role, proc in procs.items():
        try:
            with proc.oneshot():
                metrics[role] = {
                    "pid": float(proc.pid),
                    "rss": float(proc.memory_info().rss),
                    "anon": _rss_anon(proc.pid),
                    "fds": float(proc.num_fds()),
                    "threads": float(proc.num_threads()),
                }
            shm |= _shm_mapped(proc.pid)
        except psutil.Error:
            continue
    try:
        children = len(psutil.Process(supervisor).children(recursive=True))
    except psutil.Error:
        children = -1
    wall = time.monotonic() - started
    return Probe(wall, counter.count(supervisor), wall * speed, metrics, children, len(shm))


def _read(child: Any, seconds: float) -> bytes:
    import pexpect

    try:
        data: bytes = child.read_nonblocking(1 << 16, timeout=max(0.0, seconds))
    except pexpect.TIMEOUT:
        return b""
    if CURSOR_QUERY in data:
        child.send(CURSOR_REPLY)  # as a real terminal answers (see scripts/bench.py)
    return data


def soak(plan: Plan, export: bool, progress: bool) -> Run:
    import pexpect

    run = Run(plan)
    with tempfile.TemporaryDirectory(prefix="vramtop-soak-") as tmp:
        home = Path(tmp)
        duration = min(plan.samples, plan.max_minutes * 60 / plan.refresh) * 1.3 + 60
        scenario = home / "soak.toml"
        scenario.write_text(scenario_toml(duration, plan.lifetime_s))
        config = home / "config.toml"
        config.write_text(config_toml(plan))
        csv = str(home / "soak.csv") if export else ""
        if export:
            os.symlink(os.devnull, csv)  # the exporter's writes go nowhere, but all happen
        env = dict(os.environ)
        for name in ("NO_COLOR", "VRAMTOP_FAULT", "VRAMTOP_FRAME_LOG"):
            env.pop(name, None)
        env.update({"TERM": "xterm-256color", "XDG_CONFIG_HOME": str(home / "xdg")})
        env.update({"XDG_STATE_HOME": str(home / "state"), "HOME": str(home)})
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        started = time.monotonic()
        child = pexpect.spawn(
            sys.executable,
            program_argv(plan, scenario, config, csv),
            env=env,
            dimensions=(ROWS, COLS),
            timeout=5,
        )
        counter = SampleCounter()
        supervisor = child.pid
        deadline = started + plan.max_minutes * 60
        next_probe = started + plan.probe_s
        next_note = started + 60
        try:
            while time.monotonic() < deadline:
                if not child.isalive():
                    run.notes.append("the program ended by itself during the soak")
                    break
                with contextlib.suppress(pexpect.EOF):
                    _read(child, max(0.0, min(0.2, next_probe - time.monotonic())))
                now = time.monotonic()
                if now < next_probe:
                    continue
                next_probe = now + plan.probe_s
                p = probe(supervisor, started, 1.0 / plan.refresh, counter)
                run.probes.append(p)
                for role, m in p.procs.items():
                    pid = int(m["pid"])
                    if run.pids.setdefault(role, pid) != pid:
                        run.notes.append(f"{role} restarted (pid {run.pids[role]} -> {pid})")
                        run.pids[role] = pid
                if progress and now >= next_note:
                    next_note = now + 60
                    rate = p.samples / max(p.wall, 1e-9)
                    print(
                        f"  {p.wall / 60:5.1f} min: {p.samples} samples ({rate:.1f}/s), "
                        f"{p.sim_s / 3600:.2f} simulated h",
                        file=sys.stderr,
                        flush=True,
                    )
                if p.samples >= plan.samples:
                    break
        finally:
            run.wall_s = time.monotonic() - started
            counter.close()
            known = list(vramtop_processes(supervisor).values()) if child.isalive() else []
            run.exit_status = _quit(child, run)
            _, alive = psutil.wait_procs(known, timeout=5)
            run.leftover_procs = [p.pid for p in alive]
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            run.leftover_shm = run_segments(supervisor)
    return run


def _quit(child: Any, run: Run) -> int | None:
    import pexpect

    with contextlib.suppress(OSError):
        child.send("q")
    deadline = time.monotonic() + 15
    while child.isalive() and time.monotonic() < deadline:
        with contextlib.suppress(pexpect.EOF, OSError):
            _read(child, 0.1)
    if child.isalive():
        run.notes.append("did not quit on q within 15 s; killed")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    child.close(force=True)
    status: int | None = child.exitstatus
    return status


# -- the verdict -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slope:
    metric: str
    who: str
    first: float
    last: float
    per_1000: float  # per 1000 samples
    per_hour: float  # per simulated hour
    stderr_1000: float
    limit: float
    unit: str

    @property
    def ok(self) -> bool:
        return self.per_1000 <= self.limit


def fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope of y over x and its standard error (nan when undetermined)."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    if len(xa) < 3 or float(np.ptp(xa)) == 0.0:
        return math.nan, math.nan
    slope, intercept = np.polyfit(xa, ya, 1)
    resid = ya - (slope * xa + intercept)
    dof = len(xa) - 2
    spread = float(np.sum((xa - xa.mean()) ** 2))
    stderr = math.sqrt(float(np.sum(resid**2)) / dof / spread) if dof > 0 else math.nan
    return float(slope), stderr


FLOOR_RUN = 10  # measurements per run whose lowest value is the floor


def floor(x: Sequence[float], y: Sequence[float], k: int = FLOOR_RUN) -> tuple[
    list[float], list[float]
]:  # fmt: skip
    """The lowest value of each run of ``k`` measurements, at the run's mean position: the
    level a leak raises, while a buffer that is allocated and freed again between two
    measurements (numpy temporaries, a burst of messages) does not move it."""
    fx, fy = [], []
    for i in range(0, len(x) - k + 1, k):
        ys = [v for v in y[i : i + k] if math.isfinite(v)]
        if ys:
            fx.append(sum(x[i : i + k]) / k)
            fy.append(min(ys))
    return fx, fy


def measured(run: Run) -> list[Probe]:
    """The probes after warm-up."""
    if not run.probes:
        return []
    total = run.probes[-1].samples
    cut = max(run.plan.min_warmup_samples, run.plan.warmup * total)
    return [p for p in run.probes if p.samples >= cut]


def slopes(run: Run) -> list[Slope]:
    probes = measured(run)
    plan = run.plan
    out: list[Slope] = []
    if len(probes) < 3:
        return out
    k = [p.samples / 1000.0 for p in probes]
    h = [p.sim_s / 3600.0 for p in probes]

    def add(metric: str, who: str, ys: list[float], limit: float, unit: str) -> None:
        per_1000, err = fit(*floor(k, ys))
        per_hour, _ = fit(*floor(h, ys))
        out.append(Slope(metric, who, ys[0], ys[-1], per_1000, per_hour, err, limit, unit))

    roles = sorted({r for p in probes for r in p.procs}, key=_role_order)
    for metric, unit in (("rss", "B"), ("anon", "B")):
        for role in roles:
            ys = [p.procs.get(role, {}).get(metric, math.nan) for p in probes]
            add(metric, role, ys, plan.rss_per_proc, unit)
        totals = [sum(m[metric] for m in p.procs.values()) for p in probes]
        add(metric, "all", totals, plan.rss_total, unit)
    for metric in ("fds", "threads"):
        for role in roles:
            ys = [p.procs.get(role, {}).get(metric, math.nan) for p in probes]
            add(metric, role, ys, plan.count_slope, "")
    add("children", "supervisor", [float(p.children) for p in probes], plan.count_slope, "")
    add("/dev/shm", "all", [float(p.shm) for p in probes], plan.count_slope, "")
    return out


_ORDER = ("supervisor", "sampler", "analyzer", "enricher", "exporter", "render")


def _role_order(role: str) -> tuple[int, str]:
    return (_ORDER.index(role) if role in _ORDER else len(_ORDER), role)


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) < 1e-9:
        value = 0.0  # a flat series fits to rounding noise, not to a slope
    if unit == "B":
        if abs(value) >= MIB:
            return f"{value / MIB:.2f}M"
        return f"{value / KIB:.1f}K".replace("-0.0K", "0.0K")
    return f"{value:.3g}"


def problems(run: Run, table: Sequence[Slope]) -> list[str]:
    found = list(run.notes)
    found += [
        f"{s.metric} of {s.who} grows {_fmt(s.per_1000, s.unit)} per 1000 samples "
        f"(limit {_fmt(s.limit, s.unit)})"
        for s in table
        if not s.ok
    ]
    if not table:
        found.append(f"too few measurements after warm-up ({len(measured(run))})")
    if run.exit_status != 0:
        found.append(f"the program exited with {run.exit_status} on q (expected 0)")
    if run.leftover_procs:
        found.append(f"vramtop processes left after exit: {run.leftover_procs}")
    if run.leftover_shm:
        found.append(f"segments left in /dev/shm: {run.leftover_shm}")
    roles = set(run.probes[-1].procs) if run.probes else set()
    missing = {"supervisor", "sampler", "analyzer", "enricher", "render"} - roles
    if missing:
        found.append(f"actors not seen: {', '.join(sorted(missing))}")
    return found


def report(run: Run, table: Sequence[Slope]) -> str:
    probes = measured(run)
    last = run.probes[-1] if run.probes else None
    samples = last.samples if last else 0
    sim_h = last.sim_s / 3600 if last else 0.0
    lines = [
        f"vramtop soak ({run.plan.name}): {GPUS} GPUs x {STABLE + REAL + SEATS} processes "
        f"({SEATS} churning seats, lifetimes {run.plan.lifetime_s[0]:g}-"
        f"{run.plan.lifetime_s[1]:g} simulated s), refresh {run.plan.refresh:g} s, "
        f"speed {1 / run.plan.refresh:g}",
        f"{samples} samples = {sim_h:.2f} simulated hours in {run.wall_s / 60:.1f} min; "
        f"{len(run.probes)} measurements, {len(probes)} after warm-up "
        f"(from sample {probes[0].samples if probes else 0}); "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "",
    ]
    headers = ("metric", "process", "first", "last", "per 1000 samples", "± stderr",
               "per sim. hour", "limit /1000", "")  # fmt: skip
    rows = [
        (
            s.metric,
            s.who,
            _fmt(s.first, s.unit),
            _fmt(s.last, s.unit),
            _fmt(s.per_1000, s.unit),
            _fmt(s.stderr_1000, s.unit),
            _fmt(s.per_hour, s.unit),
            _fmt(s.limit, s.unit),
            "ok" if s.ok else "GROWS",
        )
        for s in table
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]  # fmt: skip

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                 strict=True))]  # fmt: skip
        return "| " + " | ".join(parts) + " |"

    lines.append(line(headers))
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [line(r) for r in rows]
    lines.append("")
    lines.append(f"exit status on q: {run.exit_status}; processes left: {len(run.leftover_procs)};"
                 f" segments left: {len(run.leftover_shm)}")  # fmt: skip
    found = problems(run, table)
    lines.append("verdict: flat" if not found else "verdict: FAILED")
    lines += [f"- {p}" for p in found]
    return "\n".join(lines)


def summary(run: Run, table: Sequence[Slope]) -> str:
    """The same slopes, one row per process (what the README quotes)."""
    by = {(s.metric, s.who): s for s in table}
    roles = [who for (metric, who) in by if metric == "rss"]
    headers = ("process", "RSS", "RSS /1000 samples", "RSS /sim. hour", "heap /1000 samples",
               "fds /1000", "threads /1000")  # fmt: skip
    rows = []
    for who in roles:
        rss, anon = by[("rss", who)], by[("anon", who)]
        fds, threads = by.get(("fds", who)), by.get(("threads", who))
        rows.append((
            who, f"{_fmt(rss.first, 'B')} → {_fmt(rss.last, 'B')}", _fmt(rss.per_1000, "B"),
            _fmt(rss.per_hour, "B"), _fmt(anon.per_1000, "B"),
            _fmt(fds.per_1000, "") if fds else "", _fmt(threads.per_1000, "") if threads else "",
        ))  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = [c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs]
        return "| " + " | ".join(padded) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    counts = [by[k] for k in (("children", "supervisor"), ("/dev/shm", "all")) if k in by]
    out.append("")
    out.append("; ".join(f"{s.metric} {_fmt(s.first, '')} → {_fmt(s.last, '')} "
                         f"({_fmt(s.per_1000, '')} per 1000 samples)" for s in counts))  # fmt: skip
    return "\n".join(out)


def as_json(run: Run, table: Sequence[Slope]) -> dict[str, Any]:
    return {
        "plan": dataclasses.asdict(run.plan),
        "wall_s": round(run.wall_s, 1),
        "samples": run.probes[-1].samples if run.probes else 0,
        "simulated_hours": run.probes[-1].sim_s / 3600 if run.probes else 0.0,
        "warmup_from_sample": measured(run)[0].samples if measured(run) else None,
        "slopes": [dataclasses.asdict(s) | {"ok": s.ok} for s in table],
        "problems": problems(run, table),
        "notes": run.notes,
        "exit_status": run.exit_status,
        "leftover_procs": run.leftover_procs,
        "leftover_shm": run.leftover_shm,
        "probes": [dataclasses.asdict(p) for p in run.probes],
    }


def load_run(path: Path) -> Run:
    """A run back from its ``--json`` file (the plan as written, thresholds included)."""
    doc = json.loads(path.read_text())
    plan_doc = dict(doc["plan"])
    plan_doc["lifetime_s"] = tuple(plan_doc["lifetime_s"])
    run = Run(Plan(**plan_doc))
    run.probes = [Probe(**p) for p in doc["probes"]]
    run.exit_status = doc["exit_status"]
    run.leftover_procs = doc["leftover_procs"]
    run.leftover_shm = doc["leftover_shm"]
    run.notes = doc.get("notes", [])
    run.wall_s = doc["wall_s"]
    return run


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--monitor"]:
        scenario, config, refresh, export = argv[1:5]
        return run_monitor_child(scenario, config, float(refresh), export)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 2-minute CI version")
    parser.add_argument("--samples", type=int, help="stop after N samples")
    parser.add_argument("--max-minutes", type=float, help="stop after M minutes at the latest")
    parser.add_argument("--refresh-rate", type=float, help="seconds between samples")
    parser.add_argument("--json", metavar="FILE", help="also write slopes and series as JSON")
    parser.add_argument("--no-export", action="store_true", help="without the exporter actor")
    parser.add_argument(
        "--reanalyze", metavar="FILE", help="print the table of an earlier run's --json FILE"
    )
    parser.add_argument("--summary", action="store_true", help="also one row per process")
    args = parser.parse_args(argv)
    if args.reanalyze:
        run = load_run(Path(args.reanalyze))
        table = slopes(run)
        print(report(run, table))
        if args.summary:
            print("\n" + summary(run, table))
        return 1 if problems(run, table) else 0
    plan = QUICK if args.quick else FULL
    if args.samples is not None:
        plan = dataclasses.replace(plan, samples=args.samples)
    if args.max_minutes is not None:
        plan = dataclasses.replace(plan, max_minutes=args.max_minutes)
    if args.refresh_rate is not None:
        if not 0.01 <= args.refresh_rate <= 10:
            print("soak: --refresh-rate must be in [0.01, 10]", file=sys.stderr)
            return 2
        plan = dataclasses.replace(plan, refresh=args.refresh_rate)
    run = soak(plan, export=not args.no_export, progress=True)
    table = slopes(run)
    print(report(run, table))
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(run, table), indent=1) + "\n")
    return 1 if problems(run, table) else 0


if __name__ == "__main__":
    sys.exit(main())
