"""The simulated GPU backend: scripted GPUs and processes for ``vramtop --demo``, tests, benchmarks.

Data flow: :class:`~vramtop.gpu.scenario.Scenario` -> :class:`Timeline` (every number as a pure
function of the simulated time t) -> :class:`SimulatedBackend` (t from the wall clock, liveness of
the real child processes) -> :class:`~vramtop.gpu.snapshot.Snapshot` -> the sampler actor, exactly
as the NVML backend would deliver it.

Simulated time is ``t = (clock() - t0) * speed``. The scenario start ``t0`` is chosen once (by the
supervisor, which also owns the child processes) and handed to every sampler it starts, so a
sampler restarted after a crash continues the same curves: nothing depends on how often
``sample()`` was called. OOM kills are decided by :class:`Timeline` on a fixed time grid from t=0,
so they too fall at the same moment whichever process computes them. The one input that is not a
function of t is the real world: a child process killed from outside (the kill flow, ``kill``)
leaves the process list for good; the scripted OOM model does not notice the memory it freed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vramtop.gpu.backend import BackendUnavailable, GpuBackend
from vramtop.gpu.children import (
    ChildPool,
    ChildSpec,
    ChildStartError,
    process_alive,
    read_start_ticks,
)
from vramtop.gpu.scenario import (
    GpuSpec,
    ProcessSpec,
    Scenario,
    load_scenario,
    mix,
    smooth_noise,
)
from vramtop.gpu.snapshot import GpuSample, GpuState, IntNA, ProcessSample, Snapshot
from vramtop.na import NA

log = logging.getLogger("vramtop.simulated")

MIB = 1 << 20
# Linux never hands out PIDs above 4194304 (PID_MAX_LIMIT), so synthetic PIDs can never name a
# real process; /proc has nothing for them, as for a process in another PID namespace.
SYNTHETIC_PID_BASE = 4_200_000
OOM_STEP_S = 0.5  # grid on which OOM is checked; the kill time is then refined by bisection
GROWTH_WINDOW_S = 60.0  # "the process that is growing": its trend over the last minute
HEAT_TAU_S = 40.0  # how slowly temperature follows utilisation
DRIVER_VERSION = "simulated"
CUDA_VERSION = "12.4"


def child_specs(scenario: Scenario) -> list[ChildSpec]:
    """The real child processes a scenario asks for (what the supervisor starts for --demo)."""
    return scenario.child_specs()


def synthetic_pid(spec: ProcessSpec) -> int:
    return SYNTHETIC_PID_BASE + spec.index


class Timeline:
    """A scenario's memory curves, schedule and OOM kills as functions of simulated time.

    ``advance(t)`` extends the OOM model up to ``t`` (memoised, always on the same grid from 0, so
    the answer for a given t never depends on the order or number of calls).
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._by_gpu: list[list[ProcessSpec]] = [[] for _ in scenario.gpus]
        for p in scenario.processes:
            for g in p.gpus:
                self._by_gpu[g].append(p)
        self._capacity = [g.total_mib - g.reserved_mib - g.base_used_mib for g in scenario.gpus]
        self._kills: dict[int, float] = {}
        self._k = -1  # last grid index checked
        self._stops = sorted({p.stop for p in scenario.processes if p.stop is not None})
        self._risky: set[int] = set()
        # When each process starts: its scripted start, or for a restart (``follows``) the end
        # of the run before it plus its delay, once that end is known.
        self._starts: dict[int, float] = {
            p.index: p.start for p in scenario.processes if p.follows is None
        }
        self._followers = [p for p in scenario.processes if p.follows is not None]
        self._link()
        self._update_risky(range(len(scenario.gpus)), 0.0)

    def start_of(self, p: ProcessSpec) -> float | None:
        """When ``p`` starts (None: a restart whose previous run has not ended yet)."""
        return self._starts.get(p.index)

    def _end_of(self, index: int) -> float | None:
        spec = self.scenario.processes[index]
        kill = self._kills.get(index)
        stop = spec.stop
        ends = [x for x in (kill, stop) if x is not None]
        return min(ends) if ends else None

    def _link(self) -> None:
        """Start the restarts whose previous run has ended (in order: chains resolve)."""
        for p in self._followers:
            if p.index in self._starts or p.follows is None:
                continue
            end = self._end_of(p.follows)
            if end is not None and p.follows in self._starts:
                self._starts[p.index] = end + p.restart_delay_s

    # -- curves and schedule ---------------------------------------------------------------

    def memory_mib(self, p: ProcessSpec, gpu: int, t: float) -> int:
        """Whole MiB the process holds on ``gpu`` at ``t`` per its curve (0 before its start)."""
        start = self._starts.get(p.index)
        if start is None:
            return 0
        local = t - start
        if local < 0:
            return 0
        curve = p.memory
        jitter = smooth_noise(mix(p.key, gpu), local) if curve.noise_mib else 0.0
        return round(curve.value(local, self.scenario.gpus[gpu].total_mib, jitter))

    def kill_time(self, p: ProcessSpec) -> float | None:
        """When the OOM model killed ``p`` (known up to the last ``advance``)."""
        return self._kills.get(p.index)

    def running(self, p: ProcessSpec, t: float) -> bool:
        """Started, not stopped, not OOM-killed at ``t`` (call ``advance(t)`` first)."""
        start = self._starts.get(p.index)
        if start is None or t < start or (p.stop is not None and t >= p.stop):
            return False
        kill = self._kills.get(p.index)
        return kill is None or t < kill

    def ended(self, p: ProcessSpec, t: float) -> bool:
        """Stopped or OOM-killed by ``t``: its child process should be gone."""
        if p.stop is not None and t >= p.stop:
            return True
        kill = self._kills.get(p.index)
        return kill is not None and t >= kill

    def warmth(self, gpu: int, t: float, tau: float = HEAT_TAU_S) -> float:
        """The running processes' sm_util, exponentially smoothed with time constant ``tau``
        (capped at 100): what temperature follows. Closed form over start and end times, so it
        costs one term per process whatever t is."""
        total = 0.0
        for p in self._by_gpu[gpu]:
            start = self._starts.get(p.index)
            if start is None or t < start or p.sm_util <= 0:
                continue
            rise = 1.0 - math.exp(-(t - start) / tau)
            end = p.stop
            kill = self._kills.get(p.index)
            if kill is not None and (end is None or kill < end):
                end = kill
            fall = 1.0 - math.exp(-(t - end) / tau) if end is not None and t >= end else 0.0
            total += p.sm_util * (rise - fall)
        return min(100.0, total)

    def processes_on(self, gpu: int) -> list[ProcessSpec]:
        return self._by_gpu[gpu]

    # -- OOM model -------------------------------------------------------------------------

    def advance(self, t: float) -> None:
        target = math.ceil(t / OOM_STEP_S)
        while self._k < target:
            if not self._risky:
                self._k = target
                break
            self._k += 1
            g = self._k * OOM_STEP_S
            if self._stops and self._stops[0] <= g:
                while self._stops and self._stops[0] <= g:
                    self._stops.pop(0)
                self._link()
                self._update_risky(list(self._risky), g)
            self._check(g)

    def _update_risky(self, gpus: Iterable[int], t: float) -> None:
        """A GPU needs checking only while its processes' upper bounds could exceed capacity."""
        for gi in gpus:
            total = self.scenario.gpus[gi].total_mib
            bound = sum(
                p.memory.bound(total)
                for p in self._by_gpu[gi]
                if p.index not in self._kills and (p.stop is None or p.stop > t)
            )
            if bound > self._capacity[gi]:
                self._risky.add(gi)
            else:
                self._risky.discard(gi)

    def _used(self, gpu: int, t: float) -> int:
        return sum(self.memory_mib(p, gpu, t) for p in self._by_gpu[gpu] if self.running(p, t))

    def _over(self, gpu: int, t: float) -> bool:
        return self._used(gpu, t) > self._capacity[gpu]

    def _check(self, g: float) -> None:
        # Each pass kills one process or gives up on one GPU, so this ends.
        while True:
            crossings = []
            for gi in sorted(self._risky):
                if self._over(gi, g):
                    crossings.append((self._crossing(gi, g), gi))
            if not crossings:
                return
            tc, gi = min(crossings)
            victim = self._growing(gi, tc)
            if victim is None:
                self._risky.discard(gi)  # over capacity with nothing to kill
                continue
            self._kills[victim.index] = tc
            self._link()
            self._update_risky(victim.gpus, g)

    def _crossing(self, gpu: int, g: float) -> float:
        lo, hi = g - OOM_STEP_S, g
        if lo < 0 or self._over(gpu, lo):
            return max(lo, 0.0) if lo >= 0 else g
        for _ in range(14):
            mid = (lo + hi) / 2
            if self._over(gpu, mid):
                hi = mid
            else:
                lo = mid
        return hi

    def _growing(self, gpu: int, t: float) -> ProcessSpec | None:
        """The process that allocated its way over the top: the largest noise-free growth over
        the last minute, so a steady leak outranks a sawtooth's ramp (a process that just started
        grew from nothing), then the largest size."""
        total = self.scenario.gpus[gpu].total_mib
        best: tuple[float, int, int] | None = None
        victim = None
        for p in self._by_gpu[gpu]:
            if not self.running(p, t):
                continue
            local = t - (self._starts.get(p.index) or 0.0)
            now = p.memory.trend(local, total)
            before = (
                p.memory.trend(local - GROWTH_WINDOW_S, total) if local >= GROWTH_WINDOW_S else 0
            )
            score = (now - before, self.memory_mib(p, gpu, t), p.index)
            if best is None or score > best:
                best, victim = score, p
        return victim


@dataclass(slots=True)
class _Child:
    pid: int
    ticks: int | None  # start time: (pid, ticks) is the identity; None = not running
    dead: bool = False


class SimulatedBackend:
    """Scripted GPUs behind the :class:`~vramtop.gpu.backend.GpuBackend` protocol.

    ``t0``: scenario start (``clock()`` value; default: when ``open()`` runs). ``pids``: scenario
    process name -> PID of its real child, when the caller (the supervisor) owns the children;
    without it, ``open()`` starts a :class:`ChildPool` of its own and ``close()`` stops it.
    ``real_children=False`` gives argv processes synthetic PIDs and starts nothing (fast tests,
    benchmarks).
    """

    name = "simulated"

    def __init__(
        self,
        scenario: Scenario | str | None = None,
        t0: float | None = None,
        pids: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.time,
        real_children: bool = True,
    ) -> None:
        if not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        self.scenario = scenario
        self.t0 = t0
        self._given_pids = dict(pids) if pids is not None else None
        self._clock = clock
        self._real = real_children
        self._timeline = Timeline(scenario)
        self._pool: ChildPool | None = None
        self._children: dict[str, _Child] = {}
        self._opened = False
        self._lost: set[int] = set()  # GPUs last seen lost, to log each change once

    @property
    def pids(self) -> dict[str, int]:
        """Scenario process name -> PID of its real child."""
        return {name: c.pid for name, c in self._children.items()}

    def time_at(self, now: float) -> float:
        """Simulated seconds since the scenario start at wall time ``now``."""
        t0 = self.t0 if self.t0 is not None else now
        return max(0.0, (now - t0) * self.scenario.speed)

    def open(self) -> None:
        if self._opened:
            return
        if self.t0 is None:
            self.t0 = self._clock()
        real = self.scenario.real_processes if self._real else ()
        pids = self._given_pids
        if real and pids is None:
            self._pool = ChildPool()
            try:
                pids = self._pool.start(child_specs(self.scenario))
            except (ChildStartError, OSError) as exc:
                self._pool = None
                raise BackendUnavailable(str(exc).replace("\n", " ")) from None
        for p in real:
            pid = (pids or {}).get(p.name)
            if pid is not None:
                self._children[p.name] = _Child(pid, read_start_ticks(pid))
        self._opened = True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._opened = False

    def __enter__(self) -> SimulatedBackend:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- sampling ----------------------------------------------------------------------------

    def sample(self) -> Snapshot:
        if not self._opened:
            self.open()
        now = self._clock()
        t = self.time_at(now)
        tl = self._timeline
        tl.advance(t)
        if self._pool is not None:
            self._pool.reap()
        gpus = self.scenario.gpus
        per_gpu: list[list[tuple[ProcessSpec, int, float, float]]] = [[] for _ in gpus]
        processes: list[ProcessSample] = []
        for p in self.scenario.processes:
            pid = self._pid_if_running(p, t)
            if pid is None or not tl.running(p, t):
                continue
            sm, mem = self._utils(p, t)
            for gi in p.gpus:
                gpu = gpus[gi]
                if gpu.lost(t):
                    continue
                used = tl.memory_mib(p, gi, t)
                per_gpu[gi].append((p, used, sm, mem))
                no_util = "process_util" in gpu.na
                processes.append(
                    ProcessSample(
                        pid=pid,
                        gpu_index=gi,
                        used_bytes=NA if "process_memory" in gpu.na else used * MIB,
                        types=p.types,
                        sm_util=NA if no_util else round(sm),
                        mem_util=NA if no_util else round(mem),
                    )
                )
        self._log_changes(t)
        return Snapshot(
            timestamp=now,
            backend=self.name,
            gpus=tuple(self._gpu_sample(g, t, per_gpu[g.index]) for g in gpus),
            processes=tuple(processes),
            driver_version=DRIVER_VERSION,
            cuda_version=CUDA_VERSION,
            nvml_version=DRIVER_VERSION,
        )

    def _log_changes(self, t: float) -> None:
        """Say when a GPU is lost or back, as the NVML backend does (a warning an operator
        wants in a log, which the monitor must keep off its screen)."""
        for g in self.scenario.gpus:
            lost = g.lost(t)
            if lost and g.index not in self._lost:
                self._lost.add(g.index)
                log.warning("GPU %d lost (simulated: fell off the bus); retrying", g.index)
            elif not lost and g.index in self._lost:
                self._lost.discard(g.index)
                log.warning("GPU %d is back", g.index)

    def _pid_if_running(self, p: ProcessSpec, t: float) -> int | None:
        """The PID to report, or None when the process's real child is gone."""
        if p.argv is None or not self._real:
            return synthetic_pid(p)
        child = self._children.get(p.name)
        if child is None or child.dead:
            return None
        if self._timeline.ended(p, t):
            self._end_child(p.name, child)
            return None
        if child.ticks is None or not process_alive(child.pid, child.ticks):
            child.dead = True
            return None
        return child.pid

    def _end_child(self, name: str, child: _Child) -> None:
        """The scripted process exited or was OOM-killed: its real child goes too."""
        child.dead = True
        if self._pool is not None:
            self._pool.terminate(name, signal.SIGKILL)
        elif child.ticks is not None and process_alive(child.pid, child.ticks):
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGKILL)

    def _utils(self, p: ProcessSpec, t: float) -> tuple[float, float]:
        """(sm_util, mem_util) percent: the means, wobbling slowly."""
        if p.sm_util <= 0 and not p.mem_util:
            return 0.0, 0.0
        wobble = 1.0 + 0.25 * smooth_noise(mix(p.key, 0x5D), t, 3.0)
        mem_mean = p.mem_util if p.mem_util is not None else 0.4 * p.sm_util
        return min(100.0, p.sm_util * wobble), min(100.0, mem_mean * wobble)

    def _gpu_sample(
        self, g: GpuSpec, t: float, procs: list[tuple[ProcessSpec, int, float, float]]
    ) -> GpuSample:
        if g.lost(t):
            back = f", back at {g.recover_at:g} s" if g.recover_at is not None else ""
            return GpuSample(
                index=g.index,
                uuid=g.uuid,
                name=g.name,
                state=GpuState.LOST,
                note=f"GPU lost (simulated: fell off the bus at {g.lost_at:g} s{back})",
            )
        na = g.na
        total = g.total_mib
        used_mib = sum(used for _, used, _, _ in procs) + round(g.base_used_mib)
        if "reserved" in na:
            # NVML v1 memory info: no reserved figure, and used includes it.
            used_mib += g.reserved_mib
            reserved: IntNA = NA
            free_mib = total - used_mib
        else:
            reserved = g.reserved_mib * MIB
            free_mib = total - g.reserved_mib - used_mib

        key = mix(self.scenario.seed, 0x6770, g.index)
        if g.util is not None:
            util = g.util
            lagged = g.util
        else:
            util = min(100.0, sum(sm for _, _, sm, _ in procs))
            lagged = self._timeline.warmth(g.index, t)
        mem_util = min(100.0, sum(m for _, _, _, m in procs))
        if g.temperature_c is not None:
            temp = g.temperature_c
        else:
            temp = g.idle_temp_c + (g.max_temp_c - g.idle_temp_c) * lagged / 100.0
            temp += 0.6 * smooth_noise(mix(key, 1), t, 7.0)
        if g.power_w is not None:
            power = g.power_w
        else:
            load = (util / 100.0) ** 1.3
            power = g.idle_power_w + (g.power_limit_w - g.idle_power_w) * load
            power *= 0.97 + 0.03 * smooth_noise(mix(key, 2), t, 2.0)
            power = min(power, g.power_limit_w)
        if g.clock_sm_mhz is not None:
            clock = g.clock_sm_mhz
        elif util < 1.0:
            clock = g.idle_clock_sm_mhz
        else:
            span = g.max_clock_sm_mhz - g.idle_clock_sm_mhz
            clock = g.idle_clock_sm_mhz + span * min(1.0, 0.35 + util / 60.0)
            clock = round(clock / 15.0) * 15.0
        fan = (
            g.fan_percent
            if g.fan_percent is not None
            else min(100.0, max(30.0, 30 + (temp - 40) * 1.5))
        )
        pstate = g.pstate if g.pstate is not None else (0 if procs else 8)

        return GpuSample(
            index=g.index,
            uuid=g.uuid,
            name=g.name,
            memory_total=total * MIB,
            memory_used=used_mib * MIB,
            memory_reserved=reserved,
            memory_free=max(0, free_mib) * MIB,
            util_gpu=NA if "util" in na else round(util),
            util_memory=NA if "util" in na else round(mem_util),
            temperature_c=NA if "temperature" in na else round(temp),
            power_w=NA if "power" in na else round(power, 1),
            power_limit_w=NA if "power_limit" in na else float(g.power_limit_w),
            clock_sm_mhz=NA if "clocks" in na else round(clock),
            clock_mem_mhz=NA if "clocks" in na else round(g.clock_mem_mhz),
            fan_percent=NA if "fan" in na else round(fan),
            pstate=NA if "pstate" in na else pstate,
            mig_mode=NA if "mig_mode" in na else g.mig_mode,
            note=f"n/a: {', '.join(sorted(na))} (not supported)" if na else "",
        )


__all__ = [
    "SYNTHETIC_PID_BASE",
    "SimulatedBackend",
    "Timeline",
    "child_specs",
    "synthetic_pid",
]


if TYPE_CHECKING:  # the simulated backend keeps the protocol's promises
    _conforms: GpuBackend = SimulatedBackend()
