"""The NVML backend: real NVIDIA GPUs through nvidia-ml-py's ctypes bindings.

Data flow: libnvidia-ml.so.1 -> ``pynvml`` -> :class:`NvmlBackend` (this module) -> one
:class:`~vramtop.gpu.snapshot.Snapshot` per tick -> sampler actor -> shm rings / messages.

Every NVML call goes through :meth:`NvmlBackend._call`, the one place that turns driver errors
into behaviour:

* NOT_SUPPORTED, FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH: that field is n/a, the call is
  never made again for that GPU, and it is logged once per function;
* NO_PERMISSION: that field is n/a, retried on the slow interval (permissions can change);
* GPU_IS_LOST / RESET_REQUIRED / GPU_NOT_FOUND, or any failure to get a handle: the GPU is shown
  as lost while the others keep updating, and retried every ``retry_interval`` seconds;
* NOT_FOUND on a sampled counter: "no sample yet", n/a without a remark.

Fields are read in three tiers: static (names, versions, MIG mode) when a GPU is opened, slow
(temperature, fan, power limit, clocks, performance state) every ``slow_interval`` seconds,
fast (memory, utilisation, power, processes, per-process utilisation) every tick.

``pynvml`` is imported here but NVML is only initialised in :meth:`NvmlBackend.open`, which the
sampler calls after fork: a handle inherited across fork is not usable.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pynvml

from vramtop.gpu.backend import BackendUnavailable
from vramtop.gpu.snapshot import GpuSample, GpuState, ProcessSample, ProcessType, Snapshot
from vramtop.na import NA, NaType
from vramtop.sanitize import clean

log = logging.getLogger("vramtop.nvml")

DEMO_HINT = "Try `vramtop --demo` to see vramtop on simulated GPUs."


def _code(name: str, default: int) -> int:
    # Older nvidia-ml-py releases lack some of the newer error constants.
    value = getattr(pynvml, name, default)
    return value if isinstance(value, int) else default


_SUCCESS = 0
_NOT_SUPPORTED = _code("NVML_ERROR_NOT_SUPPORTED", 3)
_NO_PERMISSION = _code("NVML_ERROR_NO_PERMISSION", 4)
_NOT_FOUND = _code("NVML_ERROR_NOT_FOUND", 6)
_INSUFFICIENT_SIZE = _code("NVML_ERROR_INSUFFICIENT_SIZE", 7)
_DRIVER_NOT_LOADED = _code("NVML_ERROR_DRIVER_NOT_LOADED", 9)
_LIBRARY_NOT_FOUND = _code("NVML_ERROR_LIBRARY_NOT_FOUND", 12)
_FUNCTION_NOT_FOUND = _code("NVML_ERROR_FUNCTION_NOT_FOUND", 13)
_GPU_IS_LOST = _code("NVML_ERROR_GPU_IS_LOST", 15)
_RESET_REQUIRED = _code("NVML_ERROR_RESET_REQUIRED", 16)
_LIB_RM_VERSION_MISMATCH = _code("NVML_ERROR_LIB_RM_VERSION_MISMATCH", 18)
_ARGUMENT_VERSION_MISMATCH = _code("NVML_ERROR_ARGUMENT_VERSION_MISMATCH", 25)
_GPU_NOT_FOUND = _code("NVML_ERROR_GPU_NOT_FOUND", 28)

_UNSUPPORTED = frozenset({_NOT_SUPPORTED, _FUNCTION_NOT_FOUND, _ARGUMENT_VERSION_MISMATCH})
_LOST = frozenset({_GPU_IS_LOST, _RESET_REQUIRED, _GPU_NOT_FOUND})
# NVML answers NOT_FOUND when a sampled counter has nothing newer than the timestamp asked for;
# pynvml raises "SUCCESS" when a sizing call finds nothing to size.
_NO_DATA = frozenset({_SUCCESS, _NOT_FOUND})

_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF  # NVML_VALUE_NOT_AVAILABLE as unsigned long long
_PSTATE_UNKNOWN = 32
_MEMORY_V2 = int(getattr(pynvml, "nvmlMemory_v2", 0x02000028))

_HANDLE_API = "nvmlDeviceGetHandleByIndex_v2"
_MEMORY_APIS = ("nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetMemoryInfo")
_TEMPERATURE_APIS = ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature")
_CUDA_APIS = ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion")
# Newest layout first: _v3 and _v2 come from pynvml, the unversioned symbol is the v1 layout.
_PROCESS_KINDS: tuple[tuple[ProcessType, str, tuple[str, ...]], ...] = tuple(
    (
        kind,
        f"{label} processes",
        (f"nvmlDeviceGet{symbol}_v3", f"nvmlDeviceGet{symbol}_v2", f"nvmlDeviceGet{symbol}"),
    )
    for kind, label, symbol in (
        (ProcessType.COMPUTE, "compute", "ComputeRunningProcesses"),
        (ProcessType.GRAPHICS, "graphics", "GraphicsRunningProcesses"),
        (ProcessType.MPS, "MPS", "MPSComputeRunningProcesses"),
    )
)

# Order of the n/a remarks, so the status line does not shuffle between ticks.
_FIELD_ORDER = {
    label: rank
    for rank, label in enumerate(
        (
            "handle",
            "name",
            "UUID",
            "MIG mode",
            "memory",
            "reserved memory",
            "utilisation",
            "power",
            "power limit",
            "temperature",
            "fan",
            "SM clock",
            "memory clock",
            "performance state",
            "compute processes",
            "graphics processes",
            "MPS processes",
            "process utilisation",
        )
    )
}

_INIT_FAILURES = {
    _LIBRARY_NOT_FOUND: (
        "NVIDIA driver library libnvidia-ml.so.1 not found; is the NVIDIA driver installed?"
    ),
    _DRIVER_NOT_LOADED: (
        "NVIDIA driver not loaded (NVML: Driver Not Loaded); is the nvidia kernel module loaded?"
    ),
    _LIB_RM_VERSION_MISMATCH: (
        "NVIDIA driver/library version mismatch: libnvidia-ml.so.1 does not match the loaded"
        " kernel module (reboot or reload the nvidia module)."
    ),
    _NO_PERMISSION: "no permission to use the NVIDIA driver; check access to /dev/nvidia*.",
}

ProcessRow = tuple[int, "int | None"]


class _GpuLost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ProcessInfoV1(ctypes.Structure):
    """``nvmlProcessInfo_v1_t``: what the unversioned process getters fill in."""

    _fields_ = (("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong))


def _running_processes_v1(symbol: str, handle: Any) -> list[ProcessRow]:
    """Call an unversioned process getter with the v1 struct (pynvml only wraps _v2/_v3)."""
    fn = pynvml._nvmlGetFunctionPointer(symbol)
    count = ctypes.c_uint(0)
    ret = fn(handle, ctypes.byref(count), None)
    if ret == _SUCCESS:
        return []
    # Two tries: processes may start between the sizing call and the data call; the slack
    # absorbs a few, a second round with the driver's new count absorbs a burst.
    for _ in range(2):
        if ret != _INSUFFICIENT_SIZE:
            break
        size = count.value * 2 + 5
        infos = (_ProcessInfoV1 * size)()
        count = ctypes.c_uint(size)
        ret = fn(handle, ctypes.byref(count), infos)
        if ret == _SUCCESS:
            return [(infos[i].pid, infos[i].usedGpuMemory) for i in range(count.value)]
    raise pynvml.NVMLError(ret)


def _running_processes(symbol: str) -> Callable[[Any], list[ProcessRow]]:
    """pynvml's _v2/_v3 getter, retried once if the list outgrew its slack in between."""
    wrapper = getattr(pynvml, symbol, None)
    if wrapper is None:
        return _missing
    insufficient = pynvml.NVMLError_InsufficientSize

    def call(handle: Any) -> list[ProcessRow]:
        try:
            infos = wrapper(handle)
        except insufficient:
            infos = wrapper(handle)
        return [(p.pid, p.usedGpuMemory) for p in infos]

    return call


def _missing(*_: Any) -> Any:
    raise pynvml.NVMLError(_FUNCTION_NOT_FOUND)


def _py(name: str) -> Callable[..., Any]:
    fn = getattr(pynvml, name, None)
    return fn if callable(fn) else _missing


def _api_table() -> dict[str, Callable[..., Any]]:
    """NVML C symbol (as logged and remembered) -> the Python call that reaches it."""
    n = pynvml
    temp_v = _py("nvmlDeviceGetTemperatureV")
    table: dict[str, Callable[..., Any]] = {
        name: _py(name)
        for name in (
            "nvmlInit",
            "nvmlShutdown",
            "nvmlDeviceGetCount",
            "nvmlSystemGetDriverVersion",
            "nvmlSystemGetNVMLVersion",
            "nvmlSystemGetCudaDriverVersion",
            "nvmlSystemGetCudaDriverVersion_v2",
            "nvmlDeviceGetName",
            "nvmlDeviceGetUUID",
            "nvmlDeviceGetMigMode",
            "nvmlDeviceGetUtilizationRates",
            "nvmlDeviceGetPowerUsage",
            "nvmlDeviceGetEnforcedPowerLimit",
            "nvmlDeviceGetFanSpeed",
            "nvmlDeviceGetPerformanceState",
            "nvmlDeviceGetProcessUtilization",
        )
    }
    table[_HANDLE_API] = n.nvmlDeviceGetHandleByIndex
    # pynvml has no nvmlDeviceGetMemoryInfo_v2 function: v2 is a version argument.
    table["nvmlDeviceGetMemoryInfo_v2"] = lambda h: n.nvmlDeviceGetMemoryInfo(h, version=_MEMORY_V2)
    table["nvmlDeviceGetMemoryInfo"] = lambda h: n.nvmlDeviceGetMemoryInfo(h)
    table["nvmlDeviceGetTemperatureV"] = lambda h: temp_v(h, n.NVML_TEMPERATURE_GPU)
    table["nvmlDeviceGetTemperature"] = lambda h: n.nvmlDeviceGetTemperature(
        h, n.NVML_TEMPERATURE_GPU
    )
    table["nvmlDeviceGetClockInfo(SM)"] = lambda h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)
    table["nvmlDeviceGetClockInfo(MEM)"] = lambda h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)
    for _kind, _label, (v3, v2, v1) in _PROCESS_KINDS:
        table[v3] = _running_processes(v3)
        table[v2] = _running_processes(v2)
        table[v1] = lambda h, symbol=v1: _running_processes_v1(symbol, h)
    return table


def _reason(code: int, exc: BaseException) -> str:
    if code == _NOT_SUPPORTED:
        return "not supported"
    if code in (_FUNCTION_NOT_FOUND, _ARGUMENT_VERSION_MISMATCH):
        return "not in this driver"
    if code == _NO_PERMISSION:
        return "no permission"
    return f"driver error: {clean(str(exc), 80)}"


def _int(value: Any) -> int | NaType:
    return NA if value is NA else int(value)


def _used(value: Any) -> int | NaType:
    return NA if value is None or value == _NOT_AVAILABLE else int(value)


def _cuda_version(value: int) -> str:
    """NVML's 12040 -> "12.4" (major * 1000 + minor * 10)."""
    return f"{value // 1000}.{(value % 1000) // 10}"


class _Gpu:
    """Everything remembered about one GPU between ticks."""

    __slots__ = (
        "clock_mem",
        "clock_sm",
        "denied_until",
        "fan",
        "handle",
        "index",
        "lost_reason",
        "mig_mode",
        "na",
        "name",
        "note",
        "power_limit",
        "pstate",
        "retry_at",
        "slow_at",
        "temperature",
        "unsupported",
        "util_ts",
        "uuid",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.handle: Any = None
        self.uuid = ""
        self.name = "unknown"
        self.mig_mode: bool | NaType = NA
        self.lost_reason = ""  # empty while the GPU answers
        self.retry_at = 0.0
        self.slow_at = 0.0
        self.temperature: int | NaType = NA
        self.fan: int | NaType = NA
        self.power_limit: float | NaType = NA
        self.clock_sm: int | NaType = NA
        self.clock_mem: int | NaType = NA
        self.pstate: int | NaType = NA
        self.util_ts = 0  # newest per-process utilisation sample seen (NVML microseconds)
        self.unsupported: set[str] = set()  # calls never to be made again on this GPU
        self.denied_until: dict[str, float] = {}  # NO_PERMISSION calls -> next try (monotonic)
        self.na: dict[str, str] = {}  # field label -> why it is n/a
        self.note = ""


class NvmlBackend:
    """:class:`~vramtop.gpu.backend.GpuBackend` over the NVIDIA driver."""

    name = "nvml"

    def __init__(
        self,
        slow_interval: float = 5.0,
        retry_interval: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        retries: bool = True,
    ) -> None:
        """``retries``: a lost GPU is tried again every ``retry_interval`` s and its note says
        so; false for one-shot use (``--once``), where nothing will be tried again."""
        self._retries = retries
        self._slow_interval = slow_interval
        self._retry_interval = retry_interval
        self._clock = clock
        self._now = 0.0
        self._api = _api_table()
        self._initialised = False
        self._gpus: list[_Gpu] = []
        self._driver_version: str | NaType = NA
        self._cuda_version: str | NaType = NA
        self._nvml_version: str | NaType = NA
        self._system_na: dict[str, str] = {}
        self._logged: set[tuple[str, int]] = set()
        self._notes: tuple[str, ...] = ()
        self._notes_dirty = True

    # -- lifecycle ------------------------------------------------------------------------------

    def open(self) -> None:
        if self._initialised:
            return
        try:
            self._call(None, "nvmlInit", fatal=True)
        except pynvml.NVMLError as exc:
            raise BackendUnavailable(_init_failure(exc)) from None
        self._initialised = True
        try:
            self._open_devices()
        except BaseException:
            self.close()
            raise

    def _open_devices(self) -> None:
        try:
            count = int(self._call(None, "nvmlDeviceGetCount", fatal=True))
        except pynvml.NVMLError as exc:
            raise BackendUnavailable(
                f"NVML cannot count GPUs ({clean(str(exc), 80)}). {DEMO_HINT}"
            ) from None
        if count <= 0:
            raise BackendUnavailable(f"NVML found no NVIDIA GPU. {DEMO_HINT}")
        self._read_system()
        self._now = self._clock()
        self._gpus = [_Gpu(i) for i in range(count)]
        for gpu in self._gpus:
            try:
                self._acquire(gpu)
            except _GpuLost as lost:
                self._mark_lost(gpu, lost.reason)

    def close(self) -> None:
        if not self._initialised:
            return
        self._initialised = False
        self._call(None, "nvmlShutdown")

    # -- the choke point -----------------------------------------------------------------------

    def _call(
        self, gpu: _Gpu | None, api: str, *args: Any, field: str = "", fatal: bool = False
    ) -> Any:
        """Call NVML ``api``; NA when it fails for this field alone. Raises :class:`_GpuLost`."""
        if gpu is not None:
            if api in gpu.unsupported:
                return NA
            retry_at = gpu.denied_until.get(api)
            if retry_at is not None and self._now < retry_at:
                return NA
        try:
            value = self._api[api](*args)
        except pynvml.NVMLError as exc:
            if fatal:
                raise
            return self._failed(gpu, api, field, exc.value, exc)
        except Exception as exc:  # a malformed answer from the driver must not stop sampling
            if fatal:
                raise
            return self._failed(gpu, api, field, -1, exc)
        if gpu is not None:
            if gpu.denied_until:
                gpu.denied_until.pop(api, None)
            if field in gpu.na:
                self._clear_na(gpu, field)
        elif field in self._system_na:
            del self._system_na[field]
            self._notes_dirty = True
        return value

    def _failed(
        self, gpu: _Gpu | None, api: str, field: str, code: int, exc: BaseException
    ) -> NaType:
        where = "" if gpu is None else f" on GPU {gpu.index}"
        if gpu is not None and (code in _LOST or api == _HANDLE_API):
            raise _GpuLost(f"{clean(str(exc), 80)} ({api})")
        if code in _NO_DATA:
            return NA
        reason = _reason(code, exc)
        if gpu is not None:
            if code in _UNSUPPORTED:
                gpu.unsupported.add(api)
            elif code == _NO_PERMISSION:
                gpu.denied_until[api] = self._now + self._slow_interval
            if field:
                self._set_na(gpu, field, reason)
        elif field and self._system_na.get(field) != reason:
            self._system_na[field] = reason
            self._notes_dirty = True
        if (api, code) not in self._logged:
            self._logged.add((api, code))
            level = (
                logging.INFO if code in _UNSUPPORTED or code == _NO_PERMISSION else logging.WARNING
            )
            log.log(level, "%s%s: %s; %s shown as n/a", api, where, exc, field or "result")
        return NA

    def _first(self, gpu: _Gpu, apis: Sequence[str], *args: Any, field: str) -> Any:
        """The first of ``apis`` (newest first) that the driver has; NA if none answers."""
        for api in apis:
            if api in gpu.unsupported:
                continue
            value = self._call(gpu, api, *args, field=field)
            if value is not NA or api not in gpu.unsupported:
                return value
        return NA

    # -- n/a bookkeeping -----------------------------------------------------------------------

    def _set_na(self, gpu: _Gpu, field: str, reason: str) -> None:
        if gpu.na.get(field) != reason:
            gpu.na[field] = reason
            self._notes_dirty = True

    def _clear_na(self, gpu: _Gpu, field: str) -> None:
        if gpu.na.pop(field, None) is not None:
            self._notes_dirty = True

    def _mark_lost(self, gpu: _Gpu, reason: str) -> None:
        if not gpu.lost_reason:
            log.warning(
                "GPU %d lost: %s; retrying every %g s", gpu.index, reason, self._retry_interval
            )
        gpu.lost_reason = reason
        gpu.retry_at = self._now + self._retry_interval
        self._notes_dirty = True

    def _refresh_notes(self) -> None:
        lines = [f"{field} n/a ({why})" for field, why in self._system_na.items()]
        for gpu in self._gpus:
            if gpu.lost_reason:
                gpu.note = self._lost_note(gpu)
                lines.append(f"GPU {gpu.index}: {gpu.note}")
                continue
            fields = sorted(gpu.na.items(), key=lambda item: _FIELD_ORDER.get(item[0], 99))
            gpu.note = ", ".join(f"{field} n/a ({why})" for field, why in fields)
            lines.extend(f"GPU {gpu.index}: {field} n/a ({why})" for field, why in fields)
        self._notes = tuple(lines)
        self._notes_dirty = False

    # -- reading -------------------------------------------------------------------------------

    def _read_system(self) -> None:
        driver = self._call(None, "nvmlSystemGetDriverVersion", field="driver version")
        self._driver_version = NA if driver is NA else clean(driver, 64)
        nvml = self._call(None, "nvmlSystemGetNVMLVersion", field="NVML version")
        self._nvml_version = NA if nvml is NA else clean(nvml, 64)
        for api in _CUDA_APIS:
            cuda = self._call(None, api, field="CUDA version")
            if cuda is not NA:
                self._cuda_version = _cuda_version(int(cuda))
                break

    def _acquire(self, gpu: _Gpu) -> None:
        """Handle and static fields; raises :class:`_GpuLost`."""
        gpu.handle = self._call(gpu, _HANDLE_API, gpu.index, field="handle")
        h = gpu.handle
        name = self._call(gpu, "nvmlDeviceGetName", h, field="name")
        gpu.name = "unknown" if name is NA else clean(name, 96)
        uuid = self._call(gpu, "nvmlDeviceGetUUID", h, field="UUID")
        gpu.uuid = "" if uuid is NA else clean(uuid, 96)
        mig = self._call(gpu, "nvmlDeviceGetMigMode", h, field="MIG mode")
        if mig is not NA:
            gpu.mig_mode = int(mig[0]) == 1
        elif "nvmlDeviceGetMigMode" in gpu.unsupported:
            # A GPU that cannot do MIG is simply not in MIG mode: no remark on every old card.
            gpu.mig_mode = False
            self._clear_na(gpu, "MIG mode")
        gpu.slow_at = self._now
        gpu.util_ts = 0

    def _read_slow(self, gpu: _Gpu) -> None:
        h = gpu.handle
        gpu.temperature = _int(self._first(gpu, _TEMPERATURE_APIS, h, field="temperature"))
        gpu.fan = _int(self._call(gpu, "nvmlDeviceGetFanSpeed", h, field="fan"))
        limit = self._call(gpu, "nvmlDeviceGetEnforcedPowerLimit", h, field="power limit")
        gpu.power_limit = NA if limit is NA else limit / 1000.0
        gpu.clock_sm = _int(self._call(gpu, "nvmlDeviceGetClockInfo(SM)", h, field="SM clock"))
        gpu.clock_mem = _int(
            self._call(gpu, "nvmlDeviceGetClockInfo(MEM)", h, field="memory clock")
        )
        pstate = self._call(gpu, "nvmlDeviceGetPerformanceState", h, field="performance state")
        gpu.pstate = NA if pstate is NA or pstate == _PSTATE_UNKNOWN else int(pstate)

    def _read_processes(self, gpu: _Gpu) -> list[ProcessSample] | None:
        """The GPU's processes; None when the driver failed the compute-process query (the
        reason is in the GPU's n/a notes), so nobody reads "no processes" into it."""
        merged: dict[int, tuple[int | NaType, tuple[ProcessType, ...]]] = {}
        for kind, field, apis in _PROCESS_KINDS:
            rows = self._first(gpu, apis, gpu.handle, field=field)
            if rows is NA:
                if kind is ProcessType.COMPUTE and field in gpu.na:
                    return None
                continue
            for pid, raw in rows:
                used = _used(raw)
                seen = merged.get(pid)
                if seen is None:
                    merged[pid] = (used, (kind,))
                    continue
                before, types = seen
                if isinstance(before, int) and (not isinstance(used, int) or before > used):
                    used = before
                merged[pid] = (used, types if kind in types else (*types, kind))
        if not merged:
            return []
        utils = self._read_process_util(gpu)
        out = []
        for pid, (used, types) in merged.items():
            sm, mem = utils.get(pid, (NA, NA))
            out.append(ProcessSample(pid, gpu.index, used, types, sm, mem))
        return out

    def _read_process_util(self, gpu: _Gpu) -> dict[int, tuple[int, int]]:
        samples = self._call(
            gpu,
            "nvmlDeviceGetProcessUtilization",
            gpu.handle,
            gpu.util_ts,
            field="process utilisation",
        )
        if samples is NA:
            return {}
        newest: dict[int, tuple[int, int, int]] = {}
        last = gpu.util_ts
        for s in samples:
            ts = int(s.timeStamp)
            last = max(last, ts)
            seen = newest.get(s.pid)
            if seen is None or ts >= seen[0]:
                newest[s.pid] = (ts, int(s.smUtil), int(s.memUtil))
        gpu.util_ts = last
        return {pid: (sm, mem) for pid, (_, sm, mem) in newest.items()}

    def _sample_gpu(self, gpu: _Gpu, processes: list[ProcessSample]) -> GpuSample:
        now = self._now
        try:
            if gpu.lost_reason:
                if now < gpu.retry_at:
                    return self._lost_sample(gpu)
                self._acquire(gpu)
                log.warning("GPU %d is back", gpu.index)
                gpu.lost_reason = ""
                self._notes_dirty = True
            h = gpu.handle
            if now >= gpu.slow_at:
                self._read_slow(gpu)
                gpu.slow_at = now + self._slow_interval
            mem = self._first(gpu, _MEMORY_APIS, h, field="memory")
            util = self._call(gpu, "nvmlDeviceGetUtilizationRates", h, field="utilisation")
            power = self._call(gpu, "nvmlDeviceGetPowerUsage", h, field="power")
            procs = self._read_processes(gpu)
        except _GpuLost as lost:
            self._mark_lost(gpu, lost.reason)
            return self._lost_sample(gpu)
        if mem is NA:
            total = used = reserved = free = NA
        else:
            total, used, free = int(mem.total), int(mem.used), int(mem.free)
            reserved = getattr(mem, "reserved", None)
            if reserved is None:
                reserved = NA
                self._set_na(gpu, "reserved memory", "driver has only the v1 memory call")
            else:
                reserved = int(reserved)
        processes.extend(procs or ())
        return GpuSample(
            index=gpu.index,
            uuid=gpu.uuid,
            name=gpu.name,
            memory_total=total,
            memory_used=used,
            memory_reserved=reserved,
            memory_free=free,
            util_gpu=NA if util is NA else int(util.gpu),
            util_memory=NA if util is NA else int(util.memory),
            temperature_c=gpu.temperature,
            power_w=NA if power is NA else power / 1000.0,
            power_limit_w=gpu.power_limit,
            clock_sm_mhz=gpu.clock_sm,
            clock_mem_mhz=gpu.clock_mem,
            fan_percent=gpu.fan,
            pstate=gpu.pstate,
            mig_mode=gpu.mig_mode,
            note=gpu.note,
            processes_known=procs is not None,
        )

    def _lost_note(self, gpu: _Gpu) -> str:
        note = f"lost: NVML says {gpu.lost_reason}"
        return note + (f"; retrying every {self._retry_interval:g} s" if self._retries else "")

    def _lost_sample(self, gpu: _Gpu) -> GpuSample:
        note = self._lost_note(gpu)
        return GpuSample(gpu.index, gpu.uuid, gpu.name, state=GpuState.LOST, note=note)

    def sample(self) -> Snapshot:
        if not self._initialised:
            raise RuntimeError("NvmlBackend.sample() called before open()")
        self._now = self._clock()
        processes: list[ProcessSample] = []
        gpus = [self._sample_gpu(gpu, processes) for gpu in self._gpus]
        if self._notes_dirty:
            # Notes changed during this tick: rebuild them and the per-GPU note fields.
            self._refresh_notes()
            gpus = [g if g.lost else _with_note(g, self._gpus[i].note) for i, g in enumerate(gpus)]
        return Snapshot(
            timestamp=time.time(),
            backend=self.name,
            gpus=tuple(gpus),
            processes=tuple(processes),
            driver_version=self._driver_version,
            cuda_version=self._cuda_version,
            nvml_version=self._nvml_version,
            notes=self._notes,
        )


def _with_note(sample: GpuSample, note: str) -> GpuSample:
    return sample if sample.note == note else replace(sample, note=note)


def _init_failure(exc: pynvml.NVMLError) -> str:
    """One user-facing line for an nvmlInit failure."""
    code = getattr(exc, "value", None)
    cause = _INIT_FAILURES.get(code) if isinstance(code, int) else None
    if cause is None:
        cause = f"NVML could not start ({clean(str(exc), 80)})."
    return f"{cause} {DEMO_HINT}"
