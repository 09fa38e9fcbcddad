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

A call that never returns (it happens on real machines, with a GPU falling off the bus) must
not freeze the other GPUs: each physical GPU is read in a worker thread of its own, and a tick
waits at most ``hang_after`` seconds for it. A GPU whose worker is still inside a call is shown
as not responding (the function and for how long, in its note) while the others keep updating;
nothing more is asked of it until that call returns, and then it is read as usual again. So a
tick always ends in bounded time, the sampler keeps its heartbeat, and no restart loop starts.

``pynvml`` is imported here but NVML is only initialised in :meth:`NvmlBackend.open`, which the
sampler calls after fork: a handle inherited across fork is not usable.
"""

from __future__ import annotations

import ctypes
import logging
import math
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import psutil
import pynvml

from vramtop.gpu.backend import BackendUnavailable
from vramtop.gpu.snapshot import (
    GpuSample,
    GpuState,
    NvmlCall,
    ProcessSample,
    ProcessType,
    Snapshot,
)
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

SLOW_CALL_S = 0.1  # an NVML call this slow is shown in its GPU's card
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

# pid, used bytes (NVML_VALUE_NOT_AVAILABLE possible), GPU instance ID (None outside MIG)
ProcessRow = tuple[int, int, "int | None"]


class _GpuLost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# Process records as the driver writes them (nvml.h): v1 ``nvmlProcessInfo_v1_t`` (16 bytes),
# v2 ``nvmlProcessInfo_v2_t`` (24: + GPU and compute instance IDs) and R535's first
# ``nvmlProcessInfo_v3_t`` (32: + usedGpuCcProtectedMemory). Later drivers went back to the
# 24-byte record for the same ``_v3`` symbols, so the symbol's name does not tell the layout, and
# neither does the installed binding (12.535.77 carries the 32-byte record, later ones 24).
_RECORDS = {
    16: struct.Struct("<I4xQ"),
    24: struct.Struct("<I4xQII"),
    32: struct.Struct("<I4xQIIQ"),
}
_FILL = 0xA5  # no record's last byte can plausibly be 0xA5: it is the top byte of a size or ID
_WIDEST = max(_RECORDS)
_NO_INSTANCE = 0xFFFFFFFF


def _has_symbol(name: str) -> bool:
    try:
        pynvml._nvmlGetFunctionPointer(name)
    except pynvml.NVMLError:
        return False
    return True


def expected_record_size(symbol: str, has: Callable[[str], bool] = _has_symbol) -> int:
    """The record size the driver's exports imply for a process getter.

    ``_v3`` writes the 32-byte record only on the drivers that export the confidential-compute
    memory query but not yet ``nvmlDeviceGetRunningProcessDetailList`` (R535's first releases);
    every other ``_v3`` and every ``_v2`` write 24 bytes, the unversioned symbol 16.
    """
    if symbol.endswith("_v3"):
        legacy = has("nvmlDeviceGetConfComputeMemSizeInfo") and not has(
            "nvmlDeviceGetRunningProcessDetailList"
        )
        return 32 if legacy else 24
    return 24 if symbol.endswith("_v2") else 16


def measured_record_size(raw: bytes, count: int) -> int | None:
    """How many bytes per record the driver wrote into a buffer pre-filled with ``_FILL``."""
    if count <= 0:
        return None
    extent = len(raw.rstrip(bytes((_FILL,))))
    for size in _RECORDS:
        if extent == size * count:
            return size
    return None


class ProcessGetter:
    """One of the driver's ``nvmlDeviceGet*RunningProcesses*`` symbols, read without trusting
    the binding's struct: records go into a buffer wide enough for any layout, pre-filled with a
    marker, and the stride is what the driver actually wrote (the exports' answer when the
    measure is ambiguous). The layout found is kept and logged once when it is not the one the
    exports imply."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.record_size: int | None = None  # the layout last seen
        self._expected: int | None = None
        # Records the next buffer holds, from the largest answer so far (any GPU's): with a
        # buffer that fits, a tick costs one call instead of a sizing call and a data call.
        self._capacity = 0

    def __call__(self, handle: Any) -> list[ProcessRow]:
        fn = pynvml._nvmlGetFunctionPointer(self.symbol)
        if self._expected is None:
            self._expected = expected_record_size(self.symbol)
        if self._capacity:
            count, buf = self._buffer(self._capacity)
            ret = fn(handle, ctypes.byref(count), buf)
        else:
            count, buf = ctypes.c_uint(0), None
            ret = fn(handle, ctypes.byref(count), None)
        if ret == _SUCCESS:
            return [] if buf is None else self._decode(buf.raw, min(count.value, self._capacity))
        # Two more tries: processes may start between the sizing call and the data call; the
        # slack absorbs a few, a second round with the driver's new count absorbs a burst.
        for _ in range(2):
            if ret != _INSUFFICIENT_SIZE:
                break
            self._capacity = count.value * 2 + 5
            count, buf = self._buffer(self._capacity)
            ret = fn(handle, ctypes.byref(count), buf)
            if ret == _SUCCESS:
                return self._decode(buf.raw, min(count.value, self._capacity))
        raise pynvml.NVMLError(ret)

    @staticmethod
    def _buffer(capacity: int) -> tuple[ctypes.c_uint, Any]:
        buf = ctypes.create_string_buffer(capacity * _WIDEST)
        ctypes.memset(buf, _FILL, capacity * _WIDEST)
        return ctypes.c_uint(capacity), buf

    def _decode(self, raw: bytes, count: int) -> list[ProcessRow]:
        size = measured_record_size(raw, count) or self.record_size or self._expected or 24
        if size != self.record_size:
            if size != self._expected:
                log.warning(
                    "%s writes %d-byte process records (its exports imply %d); reading %d",
                    self.symbol,
                    size,
                    self._expected,
                    size,
                )
            self.record_size = size
        record = _RECORDS[size]
        rows: list[ProcessRow] = []
        for i in range(count):
            fields = record.unpack_from(raw, i * size)
            gi = fields[2] if size >= 24 and fields[2] != _NO_INSTANCE else None
            rows.append((int(fields[0]), int(fields[1]), gi))
        return rows


class ProcessUtilGetter:
    """``nvmlDeviceGetProcessUtilization`` in one call a tick: the sample buffer is sized from
    the previous answer (any GPU's), so the sizing call is made only when the samples outgrow
    it. The binding's own function always makes both calls."""

    symbol = "nvmlDeviceGetProcessUtilization"

    def __init__(self) -> None:
        self._capacity = 0

    def __call__(self, handle: Any, since: int) -> list[Any]:
        fn = pynvml._nvmlGetFunctionPointer(self.symbol)
        stamp = ctypes.c_ulonglong(since)
        capacity = self._capacity
        for _ in range(3):  # the samples may grow between a sizing call and the data call
            samples = (pynvml.c_nvmlProcessUtilizationSample_t * max(capacity, 1))()
            count = ctypes.c_uint(capacity)
            ret = fn(handle, samples if capacity else None, ctypes.byref(count), stamp)
            if ret == _SUCCESS:
                return list(samples[: min(count.value, capacity)])
            if ret != _INSUFFICIENT_SIZE:
                break
            capacity = self._capacity = count.value * 2 + 5
        raise pynvml.NVMLError(ret)


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
            "nvmlDeviceGetMaxMigDeviceCount",
            "nvmlDeviceGetMigDeviceHandleByIndex",
            "nvmlDeviceGetGpuInstanceId",
        )
    }
    if callable(getattr(pynvml, "c_nvmlProcessUtilizationSample_t", None)):
        table["nvmlDeviceGetProcessUtilization"] = ProcessUtilGetter()
    else:
        table["nvmlDeviceGetProcessUtilization"] = _missing
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
    for _kind, _label, symbols in _PROCESS_KINDS:
        for symbol in symbols:
            table[symbol] = ProcessGetter(symbol)
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
        "calling",
        "clock_mem",
        "clock_sm",
        "denied_until",
        "fan",
        "gi",
        "handle",
        "index",
        "lost_reason",
        "memory_source",
        "mig_mode",
        "mig_slot",
        "migs",
        "na",
        "name",
        "note",
        "parent",
        "power_limit",
        "processes_note",
        "processes_unknown",
        "pstate",
        "quiet_until",
        "retry_at",
        "slow",
        "slow_at",
        "temperature",
        "unsupported",
        "uuid",
    )

    def __init__(self, index: int, parent: _Gpu | None = None, mig_slot: int = -1) -> None:
        self.index = index  # a MIG instance's index is a slot after the physical GPUs
        self.parent = parent
        self.mig_slot = mig_slot  # the instance's place in nvmlDeviceGetMigDeviceHandleByIndex
        self.gi: int | None = None
        self.migs: list[_Gpu] = []
        self.memory_source = "device"
        self.processes_note = ""
        self.processes_unknown = False  # the driver failed the compute-process query
        self.slow: dict[str, float] = {}  # function -> milliseconds of its last slow run
        self.handle: Any = None
        self.uuid = ""
        self.name = "unknown"
        self.mig_mode: bool | NaType = NA
        self.lost_reason = ""  # empty while the GPU answers
        self.retry_at = 0.0
        self.slow_at = 0.0
        self.quiet_until: dict[ProcessType, float] = {}  # process kind -> next ask, when none
        self.temperature: int | NaType = NA
        self.fan: int | NaType = NA
        self.power_limit: float | NaType = NA
        self.clock_sm: int | NaType = NA
        self.clock_mem: int | NaType = NA
        self.pstate: int | NaType = NA
        self.unsupported: set[str] = set()  # calls never to be made again on this GPU
        self.denied_until: dict[str, float] = {}  # NO_PERMISSION calls -> next try (monotonic)
        self.na: dict[str, str] = {}  # field label -> why it is n/a
        self.note = ""
        self.calling = ""  # the NVML function being called right now (for a hung call's note)


class _Worker:
    """One daemon thread that reads one GPU; a tick hands it a job and waits a bounded time.
    A job still running when the wait ends keeps the worker busy until it returns."""

    def __init__(self, name: str) -> None:
        self._lock = threading.Lock()
        self._job: Callable[[], Any] | None = None
        self._result: Any = None
        self._ready = threading.Event()
        self._wake = threading.Event()
        self.busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            job = self._job
            try:
                result: Any = job() if job is not None else None
            except BaseException as exc:  # handed back to the tick that asked
                result = exc
            with self._lock:
                self._result = result
                self.busy_since = None
                self._ready.set()

    def run(self, job: Callable[[], Any], timeout: float) -> tuple[bool, Any]:
        """(True, result) when ``job`` finished within ``timeout``; (False, None) when it is
        still running (it goes on; the next call finds the worker busy)."""
        with self._lock:
            if self.busy_since is not None:
                return False, None
            self._job = job
            self._ready.clear()
            self.busy_since = time.monotonic()
        self._wake.set()
        if not self._ready.wait(timeout):
            return False, None
        with self._lock:
            return True, self._result


class NvmlBackend:
    """:class:`~vramtop.gpu.backend.GpuBackend` over the NVIDIA driver."""

    name = "nvml"

    def __init__(
        self,
        slow_interval: float = 5.0,
        retry_interval: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        util_window: float = 1.0,
        retries: bool = True,
        hang_after: float = 2.0,
    ) -> None:
        """``retries``: a lost GPU is tried again every ``retry_interval`` s and its note says
        so; false for one-shot use (``--once``), where nothing will be tried again.
        ``hang_after``: seconds a tick waits for one GPU before showing it as not responding
        (0: read the GPUs in this thread, without a bound)."""
        self._retries = retries
        self._hang_after = hang_after
        self._workers: dict[int, _Worker] = {}
        self._hung: set[int] = set()
        self._slow_interval = slow_interval
        self._wall = wall
        self._util_window = util_window
        self._retry_interval = retry_interval
        self._clock = clock
        self._now = 0.0
        self._api = _api_table()
        self._initialised = False
        self._initialised_devices = False
        self._gpus: list[_Gpu] = []
        self._driver_version: str | NaType = NA
        self._cuda_version: str | NaType = NA
        self._nvml_version: str | NaType = NA
        self._system_na: dict[str, str] = {}
        self._logged: set[tuple[str, int]] = set()
        self._notes: tuple[str, ...] = ()
        self._notes_dirty = True
        # function -> [calls, errors, total seconds, max seconds, last seconds]
        self._stats: dict[str, list[float]] = {}
        self._calls_view: tuple[NvmlCall, ...] = ()
        self._calls_at = -math.inf

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
        # MIG instances found now get the slots after the physical GPUs, for the whole run:
        # shared memory is sized once from the number of cards.
        slot = count
        for gpu in self._gpus:
            for mig in gpu.migs:
                mig.index = slot
                slot += 1
        self._initialised_devices = True

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
        started = time.perf_counter()
        if gpu is not None:
            gpu.calling = api
        try:
            value = self._api[api](*args)
        except pynvml.NVMLError as exc:
            self._timed(gpu, api, started, failed=True)
            if fatal:
                raise
            return self._failed(gpu, api, field, exc.value, exc)
        except Exception as exc:  # a malformed answer from the driver must not stop sampling
            self._timed(gpu, api, started, failed=True)
            if fatal:
                raise
            return self._failed(gpu, api, field, -1, exc)
        self._timed(gpu, api, started, failed=False)
        if gpu is not None:
            gpu.calling = ""
            if gpu.denied_until:
                gpu.denied_until.pop(api, None)
            if field in gpu.na:
                self._clear_na(gpu, field)
        elif field in self._system_na:
            del self._system_na[field]
            self._notes_dirty = True
        return value

    def _timed(self, gpu: _Gpu | None, api: str, started: float, *, failed: bool) -> None:
        """Cheap per-function counters; a slow call is remembered on its GPU for the card."""
        if gpu is not None:
            gpu.calling = ""
        took = time.perf_counter() - started
        stat = self._stats.get(api)
        if stat is None:
            stat = self._stats[api] = [0, 0, 0.0, 0.0, 0.0]
        stat[0] += 1
        stat[1] += failed
        stat[2] += took
        stat[4] = took
        if took > stat[3]:
            stat[3] = took
        if gpu is not None:
            if took >= SLOW_CALL_S:
                gpu.slow[api] = round(took * 1000.0, 1)
            elif gpu.slow:
                gpu.slow.pop(api, None)

    def call_stats(self) -> tuple[NvmlCall, ...]:
        """Every NVML function called so far, slowest mean first."""
        out = [
            NvmlCall(
                function=api,
                calls=int(calls),
                errors=int(errors),
                mean_ms=round(total / calls * 1000.0, 3) if calls else 0.0,
                max_ms=round(worst * 1000.0, 3),
                last_ms=round(last * 1000.0, 3),
            )
            for api, (calls, errors, total, worst, last) in self._stats.items()
        ]
        out.sort(key=lambda c: (-c.mean_ms, c.function))
        return tuple(out)

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
            log.warning("GPU %d %s", gpu.index, self._lost_note(reason))
        gpu.lost_reason = reason
        gpu.retry_at = self._now + self._retry_interval
        self._notes_dirty = True

    def _refresh_notes(self) -> None:
        lines = [f"{field} n/a ({why})" for field, why in self._system_na.items()]
        for gpu in self._cards():
            label = _label(gpu)
            if gpu.lost_reason:
                gpu.note = self._lost_note(gpu.lost_reason)
                lines.append(f"{label}: {gpu.note}")
                continue
            fields = sorted(gpu.na.items(), key=lambda item: _FIELD_ORDER.get(item[0], 99))
            gpu.note = ", ".join(f"{field} n/a ({why})" for field, why in fields)
            lines.extend(f"{label}: {field} n/a ({why})" for field, why in fields)
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
        if gpu.parent is not None:
            gpu.slow_at = math.inf  # temperature, fan, power, clocks belong to the parent
            return
        mig = self._call(gpu, "nvmlDeviceGetMigMode", h, field="MIG mode")
        if mig is not NA:
            gpu.mig_mode = int(mig[0]) == 1
        elif "nvmlDeviceGetMigMode" in gpu.unsupported:
            # A GPU that cannot do MIG is simply not in MIG mode: no remark on every old card.
            gpu.mig_mode = False
            self._clear_na(gpu, "MIG mode")
        if gpu.mig_mode is True:
            self._acquire_migs(gpu)
        gpu.slow_at = self._now

    def _acquire_migs(self, gpu: _Gpu) -> None:
        """The GPU instances of a MIG-mode GPU, as sub-cards. Found at open only (their slots
        are fixed then); on a later re-acquire, the known ones get fresh handles."""
        known = {m.mig_slot: m for m in gpu.migs}
        first = not self._initialised_devices
        if first:
            count = self._call(gpu, "nvmlDeviceGetMaxMigDeviceCount", gpu.handle, field="MIG")
            slots = range(int(count)) if count is not NA else range(0)
        else:
            slots = range(0)
        for slot in (*slots, *(s for s in known if s not in slots)):
            handle = self._call(
                gpu, "nvmlDeviceGetMigDeviceHandleByIndex", gpu.handle, slot, field="MIG"
            )
            mig = known.get(slot)
            if handle is NA:  # NOT_FOUND: no instance in that slot
                if mig is not None:
                    mig.handle = None
                continue
            if mig is None:
                if not first:
                    continue
                mig = _Gpu(-1, parent=gpu, mig_slot=slot)
                gpu.migs.append(mig)
            mig.handle = handle
            name = self._call(mig, "nvmlDeviceGetName", handle, field="name")
            mig.name = "MIG instance" if name is NA else clean(name, 96)
            uuid = self._call(mig, "nvmlDeviceGetUUID", handle, field="UUID")
            mig.uuid = "" if uuid is NA else clean(uuid, 96)
            gi = self._call(mig, "nvmlDeviceGetGpuInstanceId", handle, field="MIG")
            mig.gi = None if gi is NA else int(gi)
            mig.mig_mode = True
            mig.slow_at = math.inf

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

    def _read_processes(self, gpu: _Gpu) -> list[ProcessSample]:
        if gpu.migs:
            return []  # listed per MIG instance, each under its own sub-card
        merged: dict[int, tuple[int | NaType, tuple[ProcessType, ...]]] = {}
        denied = False
        gpu.processes_unknown = False
        for kind, field, apis in _PROCESS_KINDS:
            if gpu.quiet_until.get(kind, 0.0) > self._now:
                continue
            # In a MIG instance a refusal is the card's one-line note, not a status remark.
            rows = self._first(gpu, apis, gpu.handle, field="" if gpu.parent else field)
            if kind is not ProcessType.COMPUTE:
                # Graphics and MPS lists are empty on most compute servers: an empty one is
                # asked again with the slow fields, a listed one every tick (NVML budget).
                gpu.quiet_until[kind] = self._now + self._slow_interval if rows == [] else 0.0
            if rows is NA:
                refused = any(api in gpu.denied_until for api in apis)
                denied = denied or refused
                # A failed compute query (a reason recorded, not "no data"): unknown, not none.
                if kind is ProcessType.COMPUTE and (refused or field in gpu.na):
                    gpu.processes_unknown = True
                continue
            for pid, raw, _gi in rows:
                used = _used(raw)
                seen = merged.get(pid)
                if seen is None:
                    merged[pid] = (used, (kind,))
                    continue
                before, types = seen
                if isinstance(before, int) and (not isinstance(used, int) or before > used):
                    used = before
                merged[pid] = (used, types if kind in types else (*types, kind))
        gpu.processes_note = _denied_note(gpu) if denied else ""
        if not merged:
            return []
        # NVML has no per-process utilisation inside a MIG instance: n/a there.
        utils = None if gpu.parent is not None else self._read_process_util(gpu)
        out = []
        for pid, (used, types) in merged.items():
            # A listed process without a sample in the window was idle: 0%, not n/a.
            sm, mem = (NA, NA) if utils is None else utils.get(pid, (0, 0))
            out.append(ProcessSample(pid, gpu.index, used, types, sm, mem))
        return out

    def _read_process_util(self, gpu: _Gpu) -> dict[int, tuple[int, int]] | None:
        """Mean SM and memory utilisation per PID over the last ``util_window`` seconds.

        Asking only for samples newer than the previous call would leave every idle process
        (and, on a tick without a new sample, every process) without a figure; a window gives
        each busy process its recent samples every tick. None: the call itself is unavailable.
        """
        since = max(0, int((self._wall() - self._util_window) * 1_000_000))
        samples = self._call(
            gpu, "nvmlDeviceGetProcessUtilization", gpu.handle, since, field="process utilisation"
        )
        if samples is NA:
            # NOT_FOUND (no sample in the window) is NA without a remark: every process idle.
            return None if "process utilisation" in gpu.na else {}
        sums: dict[int, list[int]] = {}
        for s in samples:
            acc = sums.setdefault(int(s.pid), [0, 0, 0])
            acc[0] += int(s.smUtil)
            acc[1] += int(s.memUtil)
            acc[2] += 1
        return {pid: (round(sm / n), round(mem / n)) for pid, (sm, mem, n) in sums.items()}

    def _sample_gpu(self, gpu: _Gpu, processes: list[ProcessSample]) -> list[GpuSample]:
        """The GPU's card, then its MIG instances' sub-cards."""
        now = self._now
        try:
            if gpu.lost_reason:
                if now < gpu.retry_at:
                    return self._lost_samples(gpu)
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
            subs = [self._sample_mig(mig, processes) for mig in gpu.migs]
        except _GpuLost as lost:
            self._mark_lost(gpu, lost.reason)
            return self._lost_samples(gpu)
        total, used, reserved, free = self._memory(gpu, mem)
        processes.extend(procs)
        denied = [m.processes_note for m in gpu.migs if m.processes_note]
        card = GpuSample(
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
            memory_source=gpu.memory_source,
            processes_note=denied[0] if denied else gpu.processes_note,
            slow_calls=_slow(gpu, *gpu.migs),
            processes_known=not gpu.processes_unknown,
        )
        return [card, *subs]

    def _sample_mig(self, mig: _Gpu, processes: list[ProcessSample]) -> GpuSample:
        """One MIG instance: memory and processes (the rest is the parent's). Raises
        :class:`_GpuLost` with the parent."""
        if mig.handle is None:
            return GpuSample(
                mig.index,
                mig.uuid,
                mig.name,
                state=GpuState.LOST,
                note="MIG instance gone (reconfigured?)",
                parent_index=_parent_index(mig),
                gpu_instance_id=mig.gi,
            )
        mem = self._first(mig, _MEMORY_APIS, mig.handle, field="memory")
        total, used, reserved, free = self._memory(mig, mem)
        processes.extend(self._read_processes(mig))
        return GpuSample(
            index=mig.index,
            uuid=mig.uuid,
            name=mig.name,
            memory_total=total,
            memory_used=used,
            memory_reserved=reserved,
            memory_free=free,
            mig_mode=True,
            note=mig.note,
            parent_index=_parent_index(mig),
            gpu_instance_id=mig.gi,
            processes_known=not mig.processes_unknown,
        )

    def _memory(self, gpu: _Gpu, mem: Any) -> tuple[Any, Any, Any, Any]:
        """total, used, reserved, free; the host's on a unified-memory GPU."""
        if mem is not NA and int(mem.total) > 0:
            gpu.memory_source = "device"
            reserved = getattr(mem, "reserved", None)
            if reserved is None:
                self._set_na(gpu, "reserved memory", "driver has only the v1 memory call")
            return (
                int(mem.total),
                int(mem.used),
                NA if reserved is None else int(reserved),
                int(mem.free),
            )
        unsupported = all(api in gpu.unsupported for api in _MEMORY_APIS)
        if gpu.parent is None and (unsupported or mem is not NA):
            # GB10 / Jetson class: one memory for CPU and GPU, and NVML reports none of it
            # (NOT_SUPPORTED, or a total of 0). The host's figures are the GPU's memory there.
            if gpu.memory_source != "host":
                gpu.memory_source = "host"
                self._clear_na(gpu, "memory")
                log.info("GPU %d: no device memory figures; showing host memory", gpu.index)
            vm = psutil.virtual_memory()
            return int(vm.total), int(vm.total - vm.available), NA, int(vm.available)
        return NA, NA, NA, NA

    def _lost_note(self, reason: str) -> str:
        note = f"lost: NVML says {reason}"
        return note + (f"; retrying every {self._retry_interval:g} s" if self._retries else "")

    def _lost_samples(self, gpu: _Gpu) -> list[GpuSample]:
        return _down(gpu, self._lost_note(gpu.lost_reason), f"GPU {gpu.index} lost")

    def _sample_bounded(self, gpu: _Gpu, processes: list[ProcessSample]) -> list[GpuSample]:
        """``_sample_gpu`` in the GPU's worker, waiting at most ``hang_after`` seconds."""
        if self._hang_after <= 0:
            return self._sample_gpu(gpu, processes)
        worker = self._workers.get(gpu.index)
        if worker is None:
            worker = self._workers[gpu.index] = _Worker(f"nvml-gpu{gpu.index}")
        mine: list[ProcessSample] = []
        done, result = worker.run(lambda: self._sample_gpu(gpu, mine), self._hang_after)
        if not done:
            return self._hung_samples(gpu, worker)
        if isinstance(result, BaseException):
            raise result
        if gpu.index in self._hung:
            self._hung.discard(gpu.index)
            log.warning("GPU %d responds again", gpu.index)
            self._notes_dirty = True
        processes.extend(mine)
        cards: list[GpuSample] = result
        return cards

    def _hung_samples(self, gpu: _Gpu, worker: _Worker) -> list[GpuSample]:
        since = worker.busy_since
        waited = 0.0 if since is None else time.monotonic() - since
        call = gpu.calling or "a driver call"
        note = f"not responding: {call} has not returned for {waited:.0f} s"
        if gpu.index not in self._hung:
            self._hung.add(gpu.index)
            log.warning("GPU %d %s; the other GPUs keep updating", gpu.index, note)
            self._notes_dirty = True
        return _down(gpu, note, f"GPU {gpu.index} not responding")

    def _cards(self) -> list[_Gpu]:
        """Every card in slot order: the physical GPUs, then the MIG instances."""
        return [*self._gpus, *(m for g in self._gpus for m in g.migs)]

    def sample(self) -> Snapshot:
        if not self._initialised:
            raise RuntimeError("NvmlBackend.sample() called before open()")
        self._now = self._clock()
        processes: list[ProcessSample] = []
        # Each GPU's card is followed by its MIG instances' sub-cards.
        gpus = [card for gpu in self._gpus for card in self._sample_bounded(gpu, processes)]
        if self._notes_dirty:
            # Notes changed during this tick: rebuild them and the per-GPU note fields.
            self._refresh_notes()
            notes = {c.index: c.note for c in self._cards()}
            gpus = [g if g.lost else _with_note(g, notes.get(g.index, "")) for g in gpus]
        if self._now - self._calls_at >= self._slow_interval:
            # Rebuilt on the slow interval: the counters are cheap, their snapshot less so.
            self._calls_view = self.call_stats()
            self._calls_at = self._now
        return Snapshot(
            timestamp=time.time(),
            backend=self.name,
            gpus=tuple(gpus),
            processes=tuple(processes),
            driver_version=self._driver_version,
            cuda_version=self._cuda_version,
            nvml_version=self._nvml_version,
            notes=self._notes,
            nvml_calls=self._calls_view,
        )


def _down(gpu: _Gpu, note: str, mig_note: str) -> list[GpuSample]:
    """A GPU that cannot be read (lost, or not responding), and its MIG instances' sub-cards."""
    out = [GpuSample(gpu.index, gpu.uuid, gpu.name, state=GpuState.LOST, note=note)]
    for mig in gpu.migs:
        out.append(
            GpuSample(
                mig.index,
                mig.uuid,
                mig.name,
                state=GpuState.LOST,
                note=mig_note,
                parent_index=gpu.index,
                gpu_instance_id=mig.gi,
            )
        )
    return out


def _label(gpu: _Gpu) -> str:
    if gpu.parent is None:
        return f"GPU {gpu.index}"
    return f"GPU {gpu.parent.index} MIG {gpu.gi}"


def _parent_index(mig: _Gpu) -> int | None:
    return None if mig.parent is None else mig.parent.index


def _denied_note(gpu: _Gpu) -> str:
    if gpu.parent is not None:
        return "processes hidden: NVML lists the processes in MIG instances to root only"
    return "processes hidden: no permission to list them (NVML)"


def _slow(*gpus: _Gpu) -> tuple[tuple[str, float], ...]:
    if not any(g.slow for g in gpus):
        return ()
    worst: dict[str, float] = {}
    for g in gpus:
        for api, ms in g.slow.items():
            worst[api] = max(ms, worst.get(api, 0.0))
    return tuple(sorted(worst.items(), key=lambda item: -item[1]))


def _with_note(sample: GpuSample, note: str) -> GpuSample:
    return sample if sample.note == note else replace(sample, note=note)


def _init_failure(exc: pynvml.NVMLError) -> str:
    """One user-facing line for an nvmlInit failure."""
    code = getattr(exc, "value", None)
    cause = _INIT_FAILURES.get(code) if isinstance(code, int) else None
    if cause is None:
        cause = f"NVML could not start ({clean(str(exc), 80)})."
    return f"{cause} {DEMO_HINT}"
