"""Immutable samples a backend produces: one :class:`Snapshot` per tick.

Data flow: backend (NVML / simulated) -> ``Snapshot`` -> sampler actor -> shm rings (numbers) and
``SampleMessage`` (the process list) -> analyzer / render / ``--once``. Sizes are bytes, power is
watts, clocks MHz, temperatures degrees Celsius; a field the driver cannot give is :data:`NA`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from vramtop.na import NA, NaType
from vramtop.wire import compact

IntNA = int | NaType
FloatNA = float | NaType
StrNA = str | NaType
BoolNA = bool | NaType


class GpuState(str, Enum):
    OK = "ok"
    LOST = "lost"


class ProcessType(str, Enum):
    COMPUTE = "compute"
    GRAPHICS = "graphics"
    MPS = "mps"


@compact
@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one instant. Static fields (uuid, name, ...) are repeated in every sample."""

    index: int
    uuid: str
    name: str
    state: GpuState = GpuState.OK
    memory_total: IntNA = NA
    memory_used: IntNA = NA
    memory_reserved: IntNA = NA
    memory_free: IntNA = NA
    util_gpu: IntNA = NA  # percent
    util_memory: IntNA = NA  # percent (memory controller busy)
    temperature_c: IntNA = NA
    power_w: FloatNA = NA
    power_limit_w: FloatNA = NA
    clock_sm_mhz: IntNA = NA
    clock_mem_mhz: IntNA = NA
    fan_percent: IntNA = NA
    pstate: IntNA = NA  # 0 (max performance) .. 15
    mig_mode: BoolNA = NA
    # Why the GPU is lost, or which fields are n/a and why; shown in the status line.
    note: str = ""
    # "device": NVML's memory figures; "host": a unified-memory GPU (GB10, Jetson class) whose
    # driver has none, shown with the host's memory instead.
    memory_source: str = "device"
    # A MIG instance is a sub-card of its physical GPU: the parent's index and the GPU instance
    # ID (None for a physical GPU). Its index is a slot after the physical GPUs.
    parent_index: int | None = None
    gpu_instance_id: int | None = None
    # Why the process list is empty although processes may run (one line, shown in the card).
    processes_note: str = ""
    # NVML calls on this GPU whose last run was slow: (function, milliseconds).
    slow_calls: tuple[tuple[str, float], ...] = ()
    # False when the driver failed the process query: "no processes" would be a guess.
    processes_known: bool = True

    @property
    def lost(self) -> bool:
        return self.state is GpuState.LOST

    @property
    def label(self) -> str:
        """How the card names it: "GPU 1", or "GPU 0 MIG 2" for GPU instance 2 of GPU 0."""
        if self.parent_index is None:
            return f"GPU {self.index}"
        return f"GPU {self.parent_index} MIG {self.gpu_instance_id}"


@compact
@dataclass(frozen=True, slots=True)
class ProcessSample:
    """A process holding memory on one GPU (a process on two GPUs yields two samples)."""

    pid: int
    gpu_index: int
    used_bytes: IntNA = NA
    types: tuple[ProcessType, ...] = (ProcessType.COMPUTE,)
    sm_util: IntNA = NA  # percent, from nvmlDeviceGetProcessUtilization
    mem_util: IntNA = NA  # percent of memory bandwidth

    @property
    def type_label(self) -> str:
        """nvidia-smi style: C, G, C+G, M."""
        letters = {ProcessType.COMPUTE: "C", ProcessType.GRAPHICS: "G", ProcessType.MPS: "M"}
        return "+".join(letters[t] for t in self.types) or "?"


@compact
@dataclass(frozen=True, slots=True)
class NvmlCall:
    """Latency counters of one NVML function, summed over all GPUs since the backend opened."""

    function: str
    calls: int
    errors: int
    mean_ms: float
    max_ms: float
    last_ms: float


@compact
@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one backend tick knows."""

    timestamp: float  # wall-clock seconds (time.time())
    backend: str  # "nvml" | "simulated" | "replay"
    gpus: tuple[GpuSample, ...]
    processes: tuple[ProcessSample, ...] = ()
    driver_version: StrNA = NA
    cuda_version: StrNA = NA
    nvml_version: StrNA = NA
    # Driver-level remarks for the status line ("fan: not supported on GPU 1", ...).
    notes: tuple[str, ...] = field(default=())
    # NVML backend only: per function, how often it was called and how long it took.
    nvml_calls: tuple[NvmlCall, ...] = ()

    def processes_on(self, gpu_index: int) -> tuple[ProcessSample, ...]:
        return tuple(p for p in self.processes if p.gpu_index == gpu_index)

    def process_memory_sum(self, gpu_index: int) -> int:
        """Sum of per-process usage on a GPU: a separate figure, never a stand-in for used."""
        return sum(
            p.used_bytes
            for p in self.processes
            if p.gpu_index == gpu_index and isinstance(p.used_bytes, int)
        )
