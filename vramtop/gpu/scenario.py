"""Scenario files for the simulated backend: the format, its parser and the memory curves.

Data flow: ``vramtop --demo [SCENARIO]`` -> :func:`load_scenario` -> :class:`Scenario` (immutable,
picklable) -> :class:`~vramtop.gpu.simulated.SimulatedBackend` (numbers at a simulated time t) and
:func:`~vramtop.gpu.simulated.child_specs` (the real child processes the supervisor starts).

A bad file raises :class:`ScenarioError` whose message is one line naming the file, the key and
the reason, e.g. ``scenario x.toml: process[2].memory.curve: unknown curve 'leaky' (known: ...)``.

Format reference (TOML; sizes in MiB unless the key says GiB, times in simulated seconds)
------------------------------------------------------------------------------------------

Top level::

    name = "demo"            # shown in the status line (default: the file name)
    description = "..."      # one line (default "")
    speed = 1.0              # simulated seconds per real second (> 0, default 1.0)
    seed = 0                 # varies every jitter and generated value (integer, default 0)

``[[gpu]]`` (one table per GPU, index = order in the file)::

    name = "NVIDIA H100 80GB HBM3"      # required
    memory_gib = 80 | memory_mib = 81559  # exactly one of the two, required
    reserved_mib = 489        # driver-reserved memory (default 0.6 % of the total)
    uuid = "GPU-..."          # default: derived from the scenario name, seed and index
    base_used_mib = 0         # used memory that belongs to no process (contexts, default 0)
    lost_at = 5.0             # the GPU falls off the bus at this time (optional)
    recover_at = 20.0         # ... and comes back (optional, needs lost_at)
    na = ["fan", ...]         # fields the driver cannot report: util, temperature, power,
                              # power_limit, clocks, fan, pstate, mig_mode, reserved (NVML v1
                              # memory info: used then includes reserved), process_memory (no
                              # per-process usedGpuMemory), process_util (no per-process util)
    util = 50                 # fixed utilisation percent (default: follows the processes' sm_util)
    temperature_c = 60        # fixed (default: follows utilisation, with a lag, between
    idle_temp_c = 30          #   idle_temp_c and max_temp_c)
    max_temp_c = 80
    power_limit_w = 300       # power limit (default 300)
    power_w = 120             # fixed draw (default: idle_power_w .. power_limit_w by utilisation)
    idle_power_w = 30         # default 10 % of the limit
    clock_sm_mhz = 1410       # fixed SM clock (default: idle .. max clock by utilisation)
    idle_clock_sm_mhz = 210
    max_clock_sm_mhz = 1410
    clock_mem_mhz = 1215      # memory clock (constant)
    fan_percent = 40          # fixed (default: follows temperature)
    pstate = 0                # fixed (default: P0 with processes, P8 without)
    mig_mode = false          # default false

``[[process]]`` (index = order in the file; processes of ``[[process_group]]`` follow)::

    name = "train"            # unique label, required
    gpu = 0 | [0, 1]          # GPU index, or a list for a process on several GPUs (the curve
                              # applies on each); required
    argv = ["python", "train.py"]  # optional: the process then is a real child process whose
                              # command line reads as argv; without argv the PID is synthetic
                              # (above any PID Linux can hand out, like a process in another
                              # PID namespace) and /proc knows nothing of it
    ignore_sigterm = false    # the child ignores SIGTERM (kill escalation to SIGKILL)
    serve = "vllm"            # with argv: the child is the GPU process of a fake inference
                              # server whose API process (its parent) answers real HTTP on
                              # 127.0.0.1 with metrics that change over time (only "vllm")
    serve_argv = ["vllm", "serve", "m", "--port", "{port}"]  # the API process's command line
    serve_ports = [8000, 30000]  # ports tried in order (default: the scraper's default ports)
    type = "compute"          # compute | graphics | mps | compute+graphics
    start = 0.0               # appears on the GPU at this time (its child runs from the start)
    stop = 600.0              # exits at this time (optional; its child is ended then)
    sm_util = 40              # mean SM utilisation percent (default 0), jittered
    mem_util = 20             # mean memory-bandwidth percent (default 40 % of sm_util)
    memory = { curve = "linear", base_mib = 2000, rate_mib_s = 5 }  # required

Memory curves (times relative to the process's ``start``; every curve also takes ``noise_mib``,
a deterministic jitter amplitude, default 0, and ``max_mib``, a cap)::

    constant      mib
    linear        base_mib, rate_mib_s                       # a leak when rate > 0
    staircase     base_mib, step_mib, every_s, [steps]       # flat after `steps` steps
    sawtooth      base_mib, amplitude_mib, period_s          # ramp up, drop, repeat
    spike         base_mib, height_mib, at_s, duration_s, [repeat_every_s]
    shrink        from_mib, to_mib, duration_s               # linear decrease, then flat
    preallocated  fraction, [ramp_s = 5]                     # fraction of the GPU total
    warmup        plateau_mib, warmup_s, [start_mib = 0]     # eases into a plateau

When the memory of a GPU's processes plus ``base_used_mib`` plus ``reserved_mib`` would exceed
its total, the process that is growing is OOM-killed: it leaves the process list (and its child
process is ended). The kill time follows from the curves alone, so it is the same on every run.

``[[process_group]]`` (a compact form for many synthetic processes, e.g. benchmarks)::

    count = 1024              # required
    name = "worker"           # names worker-0000, worker-0001, ... (default "proc")
    gpu = [0, 1, 2, 3]        # GPUs, assigned round-robin (required)
    type = "compute"
    sm_util = 10              # mean of the members' sm_util (each varies around it)
    start = 0.0               # first start ...
    start_spread_s = 30.0     # ... members start spread over this many seconds (default 0)
    curves = ["constant", "sawtooth"]  # curve kinds, cycled (default: all bounded kinds)
    size_mib = [64, 512]      # each member's size is drawn from this range
    noise_mib = 2
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from vramtop.gpu.backend import BackendUnavailable
from vramtop.gpu.children import ChildSpec
from vramtop.gpu.snapshot import ProcessType

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_SCENARIO = "default"
RESERVED_FRACTION = 0.006
NA_FIELDS = frozenset(
    {
        "util",
        "temperature",
        "power",
        "power_limit",
        "clocks",
        "fan",
        "pstate",
        "mig_mode",
        "reserved",
        "process_memory",
        "process_util",
    }
)
_TYPES = {
    "compute": (ProcessType.COMPUTE,),
    "graphics": (ProcessType.GRAPHICS,),
    "mps": (ProcessType.MPS,),
    "compute+graphics": (ProcessType.COMPUTE, ProcessType.GRAPHICS),
}


class ScenarioError(BackendUnavailable):
    """A scenario cannot be loaded; ``str(exc)`` is one line: file, key, reason."""


# ---------------------------------------------------------------------------------------------
# Deterministic noise: hashes of integers, never Python's randomised hash(), so that every process
# (and every restart of the sampler) computes the same jitter for the same time.

_M64 = (1 << 64) - 1


def mix(*parts: int) -> int:
    """A 64-bit hash of integers (splitmix64 steps)."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = ((h ^ (part & _M64)) * 0xBF58476D1CE4E5B9) & _M64
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & _M64
        h ^= h >> 29
    return h


def stable_key(*parts: object) -> int:
    """A 64-bit key from any printable parts (scenario name, seed, indices...)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def unit(h: int) -> float:
    """Map a hash to [-1, 1)."""
    return (h >> 11) * (2.0 / (1 << 53)) - 1.0


def smooth_noise(key: int, t: float, period: float = 1.0) -> float:
    """Value noise in [-1, 1]: random at multiples of ``period``, smoothly interpolated."""
    x = t / period
    i = math.floor(x)
    f = x - i
    a = unit(mix(key, i))
    b = unit(mix(key, i + 1))
    w = f * f * (3.0 - 2.0 * f)
    return a + (b - a) * w


# ---------------------------------------------------------------------------------------------
# Memory curves. ``trend`` is the noise-free shape in MiB at a time relative to the process start;
# ``peak`` bounds it from above (inf for unbounded growth), which lets the OOM model skip GPUs
# that can never fill up.


@dataclass(frozen=True, slots=True, kw_only=True)
class Curve:
    kind: ClassVar[str] = ""
    noise_mib: float = 0.0
    max_mib: float | None = None

    def trend(self, t: float, total_mib: float) -> float:
        raise NotImplementedError

    def peak(self, total_mib: float) -> float:
        raise NotImplementedError

    def check(self) -> tuple[str, str] | None:
        """(key, reason) of the first invalid parameter, or None."""
        return None

    def value(self, t: float, total_mib: float, jitter: float = 0.0) -> float:
        """MiB at local time ``t`` with ``jitter`` in [-1, 1] scaled by ``noise_mib``."""
        v = self.trend(t, total_mib) + jitter * self.noise_mib
        if self.max_mib is not None and v > self.max_mib:
            v = self.max_mib
        return v if v > 0.0 else 0.0

    def bound(self, total_mib: float) -> float:
        b = self.peak(total_mib) + abs(self.noise_mib)
        return b if self.max_mib is None else min(b, self.max_mib)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConstantCurve(Curve):
    kind: ClassVar[str] = "constant"
    mib: float

    def trend(self, t: float, total_mib: float) -> float:
        return self.mib

    def peak(self, total_mib: float) -> float:
        return self.mib


@dataclass(frozen=True, slots=True, kw_only=True)
class LinearCurve(Curve):
    kind: ClassVar[str] = "linear"
    base_mib: float
    rate_mib_s: float

    def trend(self, t: float, total_mib: float) -> float:
        return self.base_mib + self.rate_mib_s * t

    def peak(self, total_mib: float) -> float:
        return math.inf if self.rate_mib_s > 0 else self.base_mib


@dataclass(frozen=True, slots=True, kw_only=True)
class StaircaseCurve(Curve):
    kind: ClassVar[str] = "staircase"
    base_mib: float
    step_mib: float
    every_s: float
    steps: int | None = None

    def check(self) -> tuple[str, str] | None:
        if self.every_s <= 0:
            return "every_s", "must be > 0"
        if self.steps is not None and self.steps < 0:
            return "steps", "must be >= 0"
        return None

    def trend(self, t: float, total_mib: float) -> float:
        n = math.floor(t / self.every_s) if t > 0 else 0
        if self.steps is not None and n > self.steps:
            n = self.steps
        return self.base_mib + self.step_mib * n

    def peak(self, total_mib: float) -> float:
        if self.step_mib <= 0:
            return self.base_mib
        if self.steps is None:
            return math.inf
        return self.base_mib + self.step_mib * self.steps


@dataclass(frozen=True, slots=True, kw_only=True)
class SawtoothCurve(Curve):
    kind: ClassVar[str] = "sawtooth"
    base_mib: float
    amplitude_mib: float
    period_s: float

    def check(self) -> tuple[str, str] | None:
        return ("period_s", "must be > 0") if self.period_s <= 0 else None

    def trend(self, t: float, total_mib: float) -> float:
        phase = (t / self.period_s) % 1.0 if t > 0 else 0.0
        return self.base_mib + self.amplitude_mib * phase

    def peak(self, total_mib: float) -> float:
        return self.base_mib + max(self.amplitude_mib, 0.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpikeCurve(Curve):
    kind: ClassVar[str] = "spike"
    base_mib: float
    height_mib: float
    at_s: float
    duration_s: float
    repeat_every_s: float | None = None

    def check(self) -> tuple[str, str] | None:
        if self.duration_s <= 0:
            return "duration_s", "must be > 0"
        if self.repeat_every_s is not None and self.repeat_every_s <= self.duration_s:
            return "repeat_every_s", "must be longer than duration_s"
        return None

    def trend(self, t: float, total_mib: float) -> float:
        since = t - self.at_s
        if since < 0:
            return self.base_mib
        if self.repeat_every_s is not None:
            since %= self.repeat_every_s
        return self.base_mib + (self.height_mib if since < self.duration_s else 0.0)

    def peak(self, total_mib: float) -> float:
        return self.base_mib + max(self.height_mib, 0.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShrinkCurve(Curve):
    kind: ClassVar[str] = "shrink"
    from_mib: float
    to_mib: float
    duration_s: float

    def check(self) -> tuple[str, str] | None:
        return ("duration_s", "must be > 0") if self.duration_s <= 0 else None

    def trend(self, t: float, total_mib: float) -> float:
        x = min(max(t / self.duration_s, 0.0), 1.0)
        return self.from_mib + (self.to_mib - self.from_mib) * x

    def peak(self, total_mib: float) -> float:
        return max(self.from_mib, self.to_mib)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreallocatedCurve(Curve):
    """An inference server that grabs a fraction of the GPU at start-up (vLLM, TGI, SGLang)."""

    kind: ClassVar[str] = "preallocated"
    fraction: float
    ramp_s: float = 5.0

    def check(self) -> tuple[str, str] | None:
        if not 0.0 < self.fraction <= 1.0:
            return "fraction", "must be in (0, 1]"
        if self.ramp_s < 0:
            return "ramp_s", "must be >= 0"
        return None

    def trend(self, t: float, total_mib: float) -> float:
        full = self.fraction * total_mib
        if self.ramp_s <= 0 or t >= self.ramp_s:
            return full
        return full * max(t, 0.0) / self.ramp_s

    def peak(self, total_mib: float) -> float:
        return self.fraction * total_mib


@dataclass(frozen=True, slots=True, kw_only=True)
class WarmupCurve(Curve):
    """Model loading / first batches: eases out from ``start_mib`` into ``plateau_mib``."""

    kind: ClassVar[str] = "warmup"
    plateau_mib: float
    warmup_s: float
    start_mib: float = 0.0

    def check(self) -> tuple[str, str] | None:
        return ("warmup_s", "must be > 0") if self.warmup_s <= 0 else None

    def trend(self, t: float, total_mib: float) -> float:
        x = min(max(t / self.warmup_s, 0.0), 1.0)
        return self.start_mib + (self.plateau_mib - self.start_mib) * (1.0 - (1.0 - x) ** 2)

    def peak(self, total_mib: float) -> float:
        return max(self.start_mib, self.plateau_mib)


CURVES: dict[str, type[Curve]] = {
    c.kind: c
    for c in (
        ConstantCurve,
        LinearCurve,
        StaircaseCurve,
        SawtoothCurve,
        SpikeCurve,
        ShrinkCurve,
        PreallocatedCurve,
        WarmupCurve,
    )
}


# ---------------------------------------------------------------------------------------------
# The model.


@dataclass(frozen=True, slots=True)
class GpuSpec:
    index: int
    name: str
    total_mib: int
    reserved_mib: int
    uuid: str
    base_used_mib: float = 0.0
    lost_at: float | None = None
    recover_at: float | None = None
    na: frozenset[str] = frozenset()
    util: float | None = None
    temperature_c: float | None = None
    idle_temp_c: float = 30.0
    max_temp_c: float = 80.0
    power_w: float | None = None
    idle_power_w: float = 30.0
    power_limit_w: float = 300.0
    clock_sm_mhz: float | None = None
    idle_clock_sm_mhz: float = 210.0
    max_clock_sm_mhz: float = 1410.0
    clock_mem_mhz: float = 1215.0
    fan_percent: float | None = None
    pstate: int | None = None
    mig_mode: bool = False

    def lost(self, t: float) -> bool:
        if self.lost_at is None or t < self.lost_at:
            return False
        return self.recover_at is None or t < self.recover_at


SERVE_KINDS = ("", "vllm")
DEFAULT_SERVE_ARGV = ("vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--port", "{port}")
DEFAULT_SERVE_PORTS = (8000, 30000, 3000, 8080, 9931)


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    index: int
    name: str
    gpus: tuple[int, ...]
    memory: Curve
    types: tuple[ProcessType, ...] = (ProcessType.COMPUTE,)
    argv: tuple[str, ...] | None = None
    ignore_sigterm: bool = False
    serve: str = ""
    serve_argv: tuple[str, ...] = ()
    serve_ports: tuple[int, ...] = ()
    start: float = 0.0
    stop: float | None = None
    sm_util: float = 0.0
    mem_util: float | None = None
    key: int = 0  # noise key, derived from the scenario seed and the process index


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    gpus: tuple[GpuSpec, ...]
    processes: tuple[ProcessSpec, ...]
    speed: float = 1.0
    seed: int = 0
    source: str = "<string>"

    @property
    def real_processes(self) -> tuple[ProcessSpec, ...]:
        """Processes that run as real child processes (those with an argv)."""
        return tuple(p for p in self.processes if p.argv is not None)

    def child_specs(self) -> list[ChildSpec]:
        """The real child processes to start for this scenario (what the supervisor owns)."""
        return [
            ChildSpec(
                name=p.name,
                argv=p.argv,
                ignore_sigterm=p.ignore_sigterm,
                serve=p.serve,
                serve_argv=p.serve_argv,
                serve_ports=p.serve_ports,
            )
            for p in self.processes
            if p.argv is not None
        ]

    def with_speed(self, speed: float) -> Scenario:
        """The same scenario run faster or slower (``vramtop --demo --speed``)."""
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        return dataclasses.replace(self, speed=float(speed))


# ---------------------------------------------------------------------------------------------
# Parsing.

_MISSING: Any = object()


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Table:
    """Typed, path-aware access to one TOML table; every failure is a one-line ScenarioError."""

    def __init__(self, data: Mapping[str, Any], where: str, source: str) -> None:
        self.data = data
        self.where = where
        self.source = source
        self.used: set[str] = set()

    def error(self, key: str, reason: str) -> ScenarioError:
        path = f"{self.where}.{key}" if self.where else key
        return ScenarioError(f"scenario {self.source}: {path}: {reason}".replace("\n", " "))

    def _raw(self, key: str, default: Any) -> Any:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise self.error(key, "missing (required)")
        return default

    def has(self, key: str) -> bool:
        return key in self.data

    def str_(self, key: str, default: Any = _MISSING) -> Any:
        v = self._raw(key, default)
        if v is not default and not isinstance(v, str):
            raise self.error(key, f"expected a string, got {_show(v)}")
        return v

    def num(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        lo: float | None = None,
        positive: bool = False,
    ) -> Any:
        v = self._raw(key, default)
        if v is default:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.error(key, f"expected a number, got {_show(v)}")
        if positive and v <= 0:
            raise self.error(key, f"must be > 0, got {_show(v)}")
        if lo is not None and v < lo:
            raise self.error(key, f"must be >= {lo:g}, got {_show(v)}")
        return float(v)

    def int_(self, key: str, default: Any = _MISSING, *, lo: int | None = None) -> Any:
        v = self._raw(key, default)
        if v is default:
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(key, f"expected an integer, got {_show(v)}")
        if lo is not None and v < lo:
            raise self.error(key, f"must be >= {lo}, got {v}")
        return v

    def bool_(self, key: str, default: Any = _MISSING) -> Any:
        v = self._raw(key, default)
        if v is not default and not isinstance(v, bool):
            raise self.error(key, f"expected true or false, got {_show(v)}")
        return v

    def str_list(self, key: str, default: Any = _MISSING) -> Any:
        v = self._raw(key, default)
        if v is default:
            return v
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.error(key, f"expected a list of strings, got {_show(v)}")
        return v

    def gpu_list(self, key: str, n_gpus: int) -> tuple[int, ...]:
        v = self._raw(key, _MISSING)
        items = v if isinstance(v, list) else [v]
        if not items or any(isinstance(x, bool) or not isinstance(x, int) for x in items):
            raise self.error(key, f"expected a GPU index or a list of them, got {_show(v)}")
        for x in items:
            if not 0 <= x < n_gpus:
                raise self.error(key, f"no GPU {x} (the scenario has {n_gpus})")
        if len(set(items)) != len(items):
            raise self.error(key, "a GPU is listed twice")
        return tuple(items)

    def table(self, key: str) -> _Table:
        v = self._raw(key, _MISSING)
        if not isinstance(v, dict):
            raise self.error(key, f"expected a table, e.g. {{ curve = ... }}, got {_show(v)}")
        return _Table(v, f"{self.where}.{key}" if self.where else key, self.source)

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise self.error(key, "unknown key")


def _parse_curve(t: _Table) -> Curve:
    kind = t.str_("curve")
    cls = CURVES.get(kind)
    if cls is None:
        raise t.error("curve", f"unknown curve {_show(kind)} (known: {', '.join(CURVES)})")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "kind":
            continue
        default = _MISSING if f.default is dataclasses.MISSING else f.default
        if "int" in str(f.type):
            kwargs[f.name] = t.int_(f.name, default)
        else:
            kwargs[f.name] = t.num(f.name, default)
    t.finish()
    curve = cls(**kwargs)
    problem = curve.check()
    if problem is not None:
        raise t.error(*problem)
    if curve.noise_mib < 0:
        raise t.error("noise_mib", "must be >= 0")
    return curve


def _parse_gpu(t: _Table, index: int, scenario_name: str, seed: int) -> GpuSpec:
    name = t.str_("name")
    if t.has("memory_gib") and t.has("memory_mib"):
        raise t.error("memory_mib", "give memory_gib or memory_mib, not both")
    if t.has("memory_gib"):
        total = round(t.num("memory_gib", positive=True) * 1024)
    elif t.has("memory_mib"):
        total = round(t.num("memory_mib", positive=True))
    else:
        raise t.error("memory_gib", "missing (required: memory_gib or memory_mib)")
    reserved = round(t.num("reserved_mib", total * RESERVED_FRACTION, lo=0))
    if reserved >= total:
        raise t.error("reserved_mib", "must be smaller than the total memory")
    default_uuid = stable_key("uuid", scenario_name, seed, index, name)
    uuid = t.str_("uuid", _format_uuid(default_uuid))
    na = t.str_list("na", [])
    for field in na:
        if field not in NA_FIELDS:
            raise t.error(
                "na", f"unknown field {_show(field)} (known: {', '.join(sorted(NA_FIELDS))})"
            )
    lost_at = t.num("lost_at", None, lo=0)
    recover_at = t.num("recover_at", None, lo=0)
    if recover_at is not None and (lost_at is None or recover_at <= lost_at):
        raise t.error("recover_at", "needs lost_at, and must be later than it")
    limit = t.num("power_limit_w", 300.0, positive=True)
    pstate = t.int_("pstate", None, lo=0)
    if pstate is not None and pstate > 15:
        raise t.error("pstate", "must be 0..15")
    util = t.num("util", None, lo=0)
    if util is not None and util > 100:
        raise t.error("util", "must be 0..100")
    spec = GpuSpec(
        index=index,
        name=name,
        total_mib=total,
        reserved_mib=reserved,
        uuid=uuid,
        base_used_mib=t.num("base_used_mib", 0.0, lo=0),
        lost_at=lost_at,
        recover_at=recover_at,
        na=frozenset(na),
        util=util,
        temperature_c=t.num("temperature_c", None),
        idle_temp_c=t.num("idle_temp_c", 30.0),
        max_temp_c=t.num("max_temp_c", 80.0),
        power_w=t.num("power_w", None, lo=0),
        idle_power_w=t.num("idle_power_w", round(limit * 0.1, 1), lo=0),
        power_limit_w=limit,
        clock_sm_mhz=t.num("clock_sm_mhz", None, lo=0),
        idle_clock_sm_mhz=t.num("idle_clock_sm_mhz", 210.0, lo=0),
        max_clock_sm_mhz=t.num("max_clock_sm_mhz", 1410.0, lo=0),
        clock_mem_mhz=t.num("clock_mem_mhz", 1215.0, lo=0),
        fan_percent=t.num("fan_percent", None, lo=0),
        pstate=pstate,
        mig_mode=t.bool_("mig_mode", False),
    )
    t.finish()
    return spec


def _format_uuid(key: int) -> str:
    h = f"{key:016x}{mix(key):016x}"
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _parse_process(t: _Table, index: int, n_gpus: int, seed: int) -> ProcessSpec:
    name = t.str_("name")
    if not name.strip():
        raise t.error("name", "must not be empty")
    gpus = t.gpu_list("gpu", n_gpus)
    argv = t.str_list("argv", None)
    if argv is not None and (not argv or any(not a or "\0" in a for a in argv)):
        raise t.error("argv", "must be a non-empty list of non-empty strings without NUL")
    kind = t.str_("type", "compute")
    if kind not in _TYPES:
        raise t.error("type", f"unknown type {_show(kind)} (known: {', '.join(_TYPES)})")
    start = t.num("start", 0.0, lo=0)
    stop = t.num("stop", None, lo=0)
    if stop is not None and stop <= start:
        raise t.error("stop", "must be later than start")
    serve = t.str_("serve", "")
    if serve not in SERVE_KINDS:
        known = ", ".join(k for k in SERVE_KINDS if k)
        raise t.error("serve", f"unknown server {_show(serve)} (known: {known})")
    if serve and argv is None:
        raise t.error("serve", "needs argv (the GPU process's command line)")
    serve_argv = t.str_list("serve_argv", list(DEFAULT_SERVE_ARGV))
    ports = t._raw("serve_ports", list(DEFAULT_SERVE_PORTS))
    if (
        not isinstance(ports, list)
        or not ports
        or not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports)
    ):
        raise t.error("serve_ports", f"expected a list of ports 1..65535, got {_show(ports)}")
    sm_util = t.num("sm_util", 0.0, lo=0)
    mem_util = t.num("mem_util", None, lo=0)
    if sm_util > 100 or (mem_util is not None and mem_util > 100):
        raise t.error("sm_util" if sm_util > 100 else "mem_util", "must be 0..100")
    spec = ProcessSpec(
        index=index,
        name=name,
        gpus=gpus,
        memory=_parse_curve(t.table("memory")),
        types=_TYPES[kind],
        argv=tuple(argv) if argv is not None else None,
        ignore_sigterm=t.bool_("ignore_sigterm", False),
        serve=serve,
        serve_argv=tuple(serve_argv) if serve else (),
        serve_ports=tuple(ports) if serve else (),
        start=start,
        stop=stop,
        sm_util=sm_util,
        mem_util=mem_util,
        key=stable_key("process", seed, index),
    )
    t.finish()
    return spec


_GROUP_CURVES = ("constant", "sawtooth", "warmup", "staircase", "spike", "shrink")


def _group_curve(kind: str, size: float, h: int, noise: float) -> Curve:
    """A bounded curve of ``kind`` around ``size`` MiB, its shape varied by the hash ``h``."""
    r = (unit(mix(h, 7)) + 1.0) / 2.0  # 0..1
    if kind == "constant":
        return ConstantCurve(mib=size, noise_mib=noise)
    if kind == "sawtooth":
        return SawtoothCurve(
            base_mib=size / 2, amplitude_mib=size / 2, period_s=20 + 40 * r, noise_mib=noise
        )
    if kind == "warmup":
        return WarmupCurve(plateau_mib=size, warmup_s=10 + 30 * r, noise_mib=noise)
    if kind == "staircase":
        return StaircaseCurve(
            base_mib=size / 4, step_mib=size / 4, every_s=15 + 30 * r, steps=3, noise_mib=noise
        )
    if kind == "spike":
        return SpikeCurve(
            base_mib=size / 2,
            height_mib=size / 2,
            at_s=5 + 20 * r,
            duration_s=3 + 5 * r,
            repeat_every_s=30 + 60 * r,
            noise_mib=noise,
        )
    if kind == "shrink":
        return ShrinkCurve(from_mib=size, to_mib=size / 3, duration_s=30 + 90 * r, noise_mib=noise)
    if kind == "linear":
        return LinearCurve(base_mib=size / 2, rate_mib_s=1 + 4 * r, max_mib=size, noise_mib=noise)
    if kind == "preallocated":
        return ConstantCurve(mib=size, noise_mib=noise)
    raise KeyError(kind)


def _parse_group(
    t: _Table, first_index: int, n_gpus: int, seed: int, group_no: int
) -> list[ProcessSpec]:
    count = t.int_("count", lo=0)
    prefix = t.str_("name", "proc")
    gpus = t.gpu_list("gpu", n_gpus)
    kind = t.str_("type", "compute")
    if kind not in _TYPES:
        raise t.error("type", f"unknown type {_show(kind)} (known: {', '.join(_TYPES)})")
    sm_util = t.num("sm_util", 0.0, lo=0)
    if sm_util > 100:
        raise t.error("sm_util", "must be 0..100")
    start = t.num("start", 0.0, lo=0)
    spread = t.num("start_spread_s", 0.0, lo=0)
    curves = t.str_list("curves", list(_GROUP_CURVES))
    allowed = (*_GROUP_CURVES, "linear")
    if not curves or any(c not in allowed for c in curves):
        raise t.error("curves", f"expected a list of curve kinds from: {', '.join(allowed)}")
    size = t._raw("size_mib", [64, 512])
    if (
        not isinstance(size, list)
        or len(size) != 2
        or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in size)
        or not 0 < size[0] <= size[1]
    ):
        raise t.error("size_mib", f"expected [min, max] with 0 < min <= max, got {_show(size)}")
    noise = t.num("noise_mib", 2.0, lo=0)
    t.finish()
    width = max(4, len(str(count - 1)))
    members = []
    for i in range(count):
        index = first_index + i
        h = mix(stable_key("group", seed, group_no), i)
        r = (unit(h) + 1.0) / 2.0
        members.append(
            ProcessSpec(
                index=index,
                name=f"{prefix}-{i:0{width}d}",
                gpus=(gpus[i % len(gpus)],),
                memory=_group_curve(
                    curves[i % len(curves)], size[0] + (size[1] - size[0]) * r, h, noise
                ),
                types=_TYPES[kind],
                start=start + (spread * i / count if count else 0.0),
                sm_util=min(100.0, sm_util * (0.5 + r)),
                key=stable_key("process", seed, index),
            )
        )
    return members


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Parse scenario TOML ``text``; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {source}: invalid TOML: {exc}".replace("\n", " ")) from None
    top = _Table(data, "", source)
    name = top.str_("name", Path(source).stem if source != "<string>" else "scenario")
    description = top.str_("description", "")
    speed = top.num("speed", 1.0, positive=True)
    seed = top.int_("seed", 0)

    gpu_tables = top._raw("gpu", [])
    if not isinstance(gpu_tables, list) or not all(isinstance(g, dict) for g in gpu_tables):
        raise top.error("gpu", "expected [[gpu]] tables")
    if not gpu_tables:
        raise top.error("gpu", "missing (at least one [[gpu]] table is required)")
    gpus = tuple(
        _parse_gpu(_Table(g, f"gpu[{i}]", source), i, name, seed) for i, g in enumerate(gpu_tables)
    )

    processes: list[ProcessSpec] = []
    proc_tables = top._raw("process", [])
    if not isinstance(proc_tables, list) or not all(isinstance(p, dict) for p in proc_tables):
        raise top.error("process", "expected [[process]] tables")
    for i, p in enumerate(proc_tables):
        processes.append(_parse_process(_Table(p, f"process[{i}]", source), i, len(gpus), seed))
    group_tables = top._raw("process_group", [])
    if not isinstance(group_tables, list) or not all(isinstance(g, dict) for g in group_tables):
        raise top.error("process_group", "expected [[process_group]] tables")
    for i, g in enumerate(group_tables):
        table = _Table(g, f"process_group[{i}]", source)
        processes.extend(_parse_group(table, len(processes), len(gpus), seed, i))
    top.finish()

    seen: set[str] = set()
    for p in processes:
        if p.name in seen:
            where = f"process[{p.index}]" if p.index < len(proc_tables) else "process_group"
            raise ScenarioError(f"scenario {source}: {where}.name: duplicate name {p.name!r}")
        seen.add(p.name)
    return Scenario(
        name=name,
        description=description,
        gpus=gpus,
        processes=tuple(processes),
        speed=speed,
        seed=seed,
        source=source,
    )


def _shipped_dir() -> Any:
    return resources.files("vramtop.gpu").joinpath("scenarios")


def list_scenarios() -> list[str]:
    """Names of the scenarios shipped with vramtop."""
    return sorted(
        entry.name[: -len(".toml")]
        for entry in _shipped_dir().iterdir()
        if entry.name.endswith(".toml")
    )


def load_scenario(name_or_path: str | None = None) -> Scenario:
    """None -> the default scenario; a bare name -> a shipped one; anything else -> a file."""
    name_or_path = name_or_path or DEFAULT_SCENARIO
    is_path = "/" in name_or_path or name_or_path.endswith(".toml") or name_or_path[0] in ".~"
    if not is_path:
        entry = _shipped_dir().joinpath(f"{name_or_path}.toml")
        if not entry.is_file():
            shipped = ", ".join(list_scenarios())
            raise ScenarioError(
                f"scenario {name_or_path!r}: no such shipped scenario (shipped: {shipped}); "
                "give a path to use a file"
            )
        return parse_scenario(entry.read_text(encoding="utf-8"), f"{name_or_path}.toml")
    path = Path(name_or_path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"scenario {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ScenarioError(f"scenario {path}: cannot read: {reason}") from None
    return parse_scenario(text, str(path))
