"""A simulated NVIDIA driver for the NVML backend's contract tests.

Where it sits: tests -> ``NvmlBackend`` -> the real ``pynvml`` ctypes code -> *this driver*,
installed as ``pynvml.nvmlLib``. Every exported symbol is a ctypes ``CFUNCTYPE`` callback with the
C signature of libnvidia-ml, so pynvml builds its real structs, passes real pointers and checks
real return codes; only the library underneath is ours. A symbol the driver does not export is
simply absent (``AttributeError``), which pynvml reports as FUNCTION_NOT_FOUND.

The structs below are written from the C headers, not borrowed from pynvml, so a layout mistake on
either side shows up as wrong numbers in the tests.

It stays beside the compiled driver of ``tests/simdriver`` because it does what a shared library
cannot: any symbol can be absent for one test (a library's exports are fixed when it is built),
every call is counted exactly per test, a callback's own failure is caught and reported, and it
runs in-process in milliseconds. The whole program, other monitors and the benchmarks use the
compiled driver.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pynvml

SUCCESS = 0
ERROR_INVALID_ARGUMENT = 2
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_NOT_FOUND = 6
ERROR_INSUFFICIENT_SIZE = 7
ERROR_DRIVER_NOT_LOADED = 9
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
ERROR_LIB_RM_VERSION_MISMATCH = 18
ERROR_ARGUMENT_VERSION_MISMATCH = 25
ERROR_UNKNOWN = 999

VALUE_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF
MEMORY_V2 = 0x02000028  # sizeof(nvmlMemory_v2_t) | 2 << 24
TEMPERATURE_V1 = 0x0100000C
GIB = 1 << 30
MIB = 1 << 20

KINDS = ("compute", "graphics", "mps")
_PROCESS_SYMBOLS = {
    "compute": "nvmlDeviceGetComputeRunningProcesses",
    "graphics": "nvmlDeviceGetGraphicsRunningProcesses",
    "mps": "nvmlDeviceGetMPSComputeRunningProcesses",
}
MEMORY_V2_SYMBOL = "nvmlDeviceGetMemoryInfo_v2"


def process_symbols(kind: str) -> dict[str, str]:
    """{"v3": ..., "v2": ..., "v1": ...} C symbol names of one process getter."""
    base = _PROCESS_SYMBOLS[kind]
    return {"v3": base + "_v3", "v2": base + "_v2", "v1": base}


def all_process_symbols() -> set[str]:
    return {s for kind in KINDS for s in process_symbols(kind).values()}


# -- C structs (nvml.h) ---------------------------------------------------------------------------


class Memory(ctypes.Structure):
    _fields_ = (
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    )


class MemoryV2(ctypes.Structure):
    _fields_ = (
        ("version", ctypes.c_uint),
        ("total", ctypes.c_ulonglong),
        ("reserved", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    )


class ProcessInfoV1(ctypes.Structure):
    _fields_ = (("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong))


class ProcessInfoV2(ctypes.Structure):  # _v3 has the same layout
    _fields_ = (
        ("pid", ctypes.c_uint),
        ("usedGpuMemory", ctypes.c_ulonglong),
        ("gpuInstanceId", ctypes.c_uint),
        ("computeInstanceId", ctypes.c_uint),
    )


class Utilization(ctypes.Structure):
    _fields_ = (("gpu", ctypes.c_uint), ("memory", ctypes.c_uint))


class ProcessUtilizationSample(ctypes.Structure):
    _fields_ = (
        ("pid", ctypes.c_uint),
        ("timeStamp", ctypes.c_ulonglong),
        ("smUtil", ctypes.c_uint),
        ("memUtil", ctypes.c_uint),
        ("encUtil", ctypes.c_uint),
        ("decUtil", ctypes.c_uint),
    )


class TemperatureV1(ctypes.Structure):
    _fields_ = (
        ("version", ctypes.c_uint),
        ("sensorType", ctypes.c_uint),
        ("temperature", ctypes.c_int),
    )


# -- configuration --------------------------------------------------------------------------------


@dataclass
class SimProcess:
    pid: int
    used: int  # bytes, or VALUE_NOT_AVAILABLE


@dataclass
class UtilSample:
    pid: int
    timestamp: int  # microseconds, like NVML
    sm: int
    mem: int


@dataclass
class SimGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    total: int = 80 * GIB
    reserved: int = 512 * MIB
    used: int = 20 * GIB
    free: int | None = None  # None: total - reserved - used
    util_gpu: int = 47
    util_memory: int = 21
    temperature: int = 61
    fan: int = 38
    power_mw: int = 312_500
    power_limit_mw: int = 700_000
    clock_sm: int = 1980
    clock_mem: int = 2619
    pstate: int = 0
    mig_current: int = 0
    mig_pending: int = 0
    processes: dict[str, list[SimProcess]] = field(
        default_factory=lambda: {kind: [] for kind in KINDS}
    )
    # Processes added to a kind's list right after its sizing call (a process starting between
    # the two calls pynvml makes).
    appear_after_sizing: dict[str, list[SimProcess]] = field(default_factory=dict)
    util_samples: list[UtilSample] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # symbol -> NVML error returned
    handle_error: int = SUCCESS  # returned by nvmlDeviceGetHandleByIndex_v2
    lost: bool = False  # every call answers GPU_IS_LOST (handle lookup too)
    lost_after_calls: int | None = None  # becomes lost once this many device calls were made
    # What the driver saw and answered (for assertions).
    device_calls: int = 0
    util_last_seen: list[int] = field(default_factory=list)

    @property
    def memory_free(self) -> int:
        return self.total - self.reserved - self.used if self.free is None else self.free


class SimDriver:
    """A configurable libnvidia-ml. ``missing`` names symbols the library does not export."""

    def __init__(
        self,
        gpus: list[SimGpu] | None = None,
        *,
        missing: set[str] | frozenset[str] = frozenset(),
        init_error: int = SUCCESS,
        driver_version: str = "550.54.15",
        cuda_version: int = 12040,
        nvml_version: str = "12.550.54.15",
    ) -> None:
        self.gpus = [SimGpu()] if gpus is None else gpus
        self.missing = set(missing)
        self.init_error = init_error
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.nvml_version = nvml_version
        self.calls: Counter[str] = Counter()  # symbol -> calls that reached the driver
        self.lookups_of_missing: Counter[str] = Counter()
        self.callback_failures: list[str] = []  # exceptions inside the simulated driver
        self._handles = {0x7E570000 + 0x100 * i: i for i in range(64)}
        self._strings: dict[int, ctypes.Array[ctypes.c_char]] = {}

    # -- the library object --------------------------------------------------------------------

    def library(self) -> Any:
        """A fresh object exporting this driver's symbols (what pynvml.nvmlLib becomes)."""
        driver = self
        exports: dict[str, Any] = {}
        for symbol, (restype, argtypes, impl) in self._symbols().items():
            if symbol not in self.missing:
                exports[symbol] = self._export(symbol, restype, argtypes, impl)

        class Library:
            def __getattr__(self, name: str) -> Any:
                if name.startswith("__"):
                    raise AttributeError(name)
                driver.lookups_of_missing[name] += 1
                raise AttributeError(name)

        lib = Library()
        lib.__dict__.update(exports)
        return lib

    def _export(
        self, symbol: str, restype: Any, argtypes: tuple[Any, ...], impl: Callable[..., int]
    ) -> Any:
        def entry(*args: Any) -> int:
            self.calls[symbol] += 1
            try:
                return impl(*args)
            except Exception as exc:  # an exception must not vanish inside a C callback
                self.callback_failures.append(f"{symbol}: {exc!r}")
                return ERROR_UNKNOWN

        return ctypes.CFUNCTYPE(restype, *argtypes)(entry)

    def _symbols(self) -> dict[str, tuple[Any, tuple[Any, ...], Callable[..., int]]]:
        P, U, INT, ULL = ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulonglong
        dev = self._device
        table: dict[str, tuple[Any, tuple[Any, ...], Callable[..., int]]] = {
            "nvmlInitWithFlags": (INT, (U,), lambda flags: self.init_error),
            "nvmlInit_v2": (INT, (), lambda: self.init_error),
            "nvmlShutdown": (INT, (), lambda: SUCCESS),
            "nvmlErrorString": (P, (INT,), self._error_string),
            "nvmlSystemGetDriverVersion": (
                INT,
                (P, U),
                lambda b, n: _put(b, n, self.driver_version),
            ),
            "nvmlSystemGetNVMLVersion": (INT, (P, U), lambda b, n: _put(b, n, self.nvml_version)),
            "nvmlSystemGetCudaDriverVersion": (INT, (P,), self._cuda),
            "nvmlSystemGetCudaDriverVersion_v2": (INT, (P,), self._cuda),
            "nvmlDeviceGetCount_v2": (
                INT,
                (P,),
                lambda out: _set(ctypes.c_uint, out, len(self.gpus)),
            ),
            "nvmlDeviceGetHandleByIndex_v2": (INT, (U, P), self._handle_by_index),
            "nvmlDeviceGetName": (
                INT,
                (P, P, U),
                dev("nvmlDeviceGetName", lambda g, b, n: _put(b, n, g.name)),
            ),
            "nvmlDeviceGetUUID": (
                INT,
                (P, P, U),
                dev("nvmlDeviceGetUUID", lambda g, b, n: _put(b, n, g.uuid)),
            ),
            "nvmlDeviceGetMemoryInfo": (INT, (P, P), dev("nvmlDeviceGetMemoryInfo", _memory_v1)),
            MEMORY_V2_SYMBOL: (INT, (P, P), dev(MEMORY_V2_SYMBOL, _memory_v2)),
            "nvmlDeviceGetUtilizationRates": (
                INT,
                (P, P),
                dev("nvmlDeviceGetUtilizationRates", _utilization),
            ),
            "nvmlDeviceGetTemperature": (
                INT,
                (P, U, P),
                dev("nvmlDeviceGetTemperature", _temperature),
            ),
            "nvmlDeviceGetTemperatureV": (
                INT,
                (P, P),
                dev("nvmlDeviceGetTemperatureV", _temperature_v),
            ),
            "nvmlDeviceGetPowerUsage": (
                INT,
                (P, P),
                dev("nvmlDeviceGetPowerUsage", lambda g, o: _set(U, o, g.power_mw)),
            ),
            "nvmlDeviceGetEnforcedPowerLimit": (
                INT,
                (P, P),
                dev("nvmlDeviceGetEnforcedPowerLimit", lambda g, o: _set(U, o, g.power_limit_mw)),
            ),
            "nvmlDeviceGetClockInfo": (INT, (P, U, P), dev("nvmlDeviceGetClockInfo", _clock)),
            "nvmlDeviceGetFanSpeed": (
                INT,
                (P, P),
                dev("nvmlDeviceGetFanSpeed", lambda g, o: _set(U, o, g.fan)),
            ),
            "nvmlDeviceGetPerformanceState": (
                INT,
                (P, P),
                dev("nvmlDeviceGetPerformanceState", lambda g, o: _set(U, o, g.pstate)),
            ),
            "nvmlDeviceGetMigMode": (INT, (P, P, P), dev("nvmlDeviceGetMigMode", _mig_mode)),
            "nvmlDeviceGetProcessUtilization": (
                INT,
                (P, P, P, ULL),
                dev("nvmlDeviceGetProcessUtilization", _process_utilization),
            ),
        }
        for kind in KINDS:
            for version, symbol in process_symbols(kind).items():
                struct = ProcessInfoV1 if version == "v1" else ProcessInfoV2
                table[symbol] = (INT, (P, P, P), dev(symbol, _process_getter(kind, struct)))
        return table

    # -- system calls ----------------------------------------------------------------------------

    def _error_string(self, code: int) -> int:
        if code not in self._strings:
            self._strings[code] = ctypes.create_string_buffer(
                f"Simulated NVML error {code}".encode()
            )
        return ctypes.addressof(self._strings[code])

    def _cuda(self, out: int) -> int:
        return _set(ctypes.c_int, out, self.cuda_version)

    def _handle_by_index(self, index: int, out: int) -> int:
        if index >= len(self.gpus):
            return ERROR_INVALID_ARGUMENT
        gpu = self.gpus[index]
        if gpu.lost:
            return ERROR_GPU_IS_LOST
        if gpu.handle_error != SUCCESS:
            return gpu.handle_error
        return _set(ctypes.c_void_p, out, 0x7E570000 + 0x100 * index)

    def _device(self, symbol: str, impl: Callable[..., int]) -> Callable[..., int]:
        """Common part of every device call: handle check, lost GPU, configured error."""

        def call(handle: int | None, *args: Any) -> int:
            index = self._handles.get(handle or 0)
            if index is None or index >= len(self.gpus):
                return ERROR_INVALID_ARGUMENT
            gpu = self.gpus[index]
            gpu.device_calls += 1
            if gpu.lost_after_calls is not None and gpu.device_calls > gpu.lost_after_calls:
                gpu.lost, gpu.lost_after_calls = True, None
            if gpu.lost:
                return ERROR_GPU_IS_LOST
            error = gpu.errors.get(symbol, SUCCESS)
            if error != SUCCESS:
                return error
            return impl(gpu, *args)

        return call


# -- device call bodies ----------------------------------------------------------------------------


def _set(ctype: Any, address: int, value: int) -> int:
    ctype.from_address(address).value = value
    return SUCCESS


def _put(buffer: int, size: int, text: str) -> int:
    data = text.encode() + b"\0"
    if len(data) > size:
        return ERROR_INSUFFICIENT_SIZE
    ctypes.memmove(buffer, data, len(data))
    return SUCCESS


def _memory_v1(gpu: SimGpu, out: int) -> int:
    mem = Memory.from_address(out)
    mem.total, mem.free, mem.used = gpu.total, gpu.memory_free, gpu.used + gpu.reserved
    return SUCCESS


def _memory_v2(gpu: SimGpu, out: int) -> int:
    mem = MemoryV2.from_address(out)
    if mem.version != MEMORY_V2:
        return ERROR_ARGUMENT_VERSION_MISMATCH
    mem.total, mem.reserved, mem.free, mem.used = (
        gpu.total,
        gpu.reserved,
        gpu.memory_free,
        gpu.used,
    )
    return SUCCESS


def _utilization(gpu: SimGpu, out: int) -> int:
    util = Utilization.from_address(out)
    util.gpu, util.memory = gpu.util_gpu, gpu.util_memory
    return SUCCESS


def _temperature(gpu: SimGpu, sensor: int, out: int) -> int:
    if sensor != 0:  # NVML_TEMPERATURE_GPU
        return ERROR_INVALID_ARGUMENT
    return _set(ctypes.c_uint, out, gpu.temperature)


def _temperature_v(gpu: SimGpu, out: int) -> int:
    temp = TemperatureV1.from_address(out)
    if temp.version != TEMPERATURE_V1:
        return ERROR_ARGUMENT_VERSION_MISMATCH
    if temp.sensorType != 0:
        return ERROR_INVALID_ARGUMENT
    temp.temperature = gpu.temperature
    return SUCCESS


def _clock(gpu: SimGpu, clock_type: int, out: int) -> int:
    values = {1: gpu.clock_sm, 2: gpu.clock_mem}  # NVML_CLOCK_SM, NVML_CLOCK_MEM
    if clock_type not in values:
        return ERROR_INVALID_ARGUMENT
    return _set(ctypes.c_uint, out, values[clock_type])


def _mig_mode(gpu: SimGpu, current: int, pending: int) -> int:
    _set(ctypes.c_uint, current, gpu.mig_current)
    return _set(ctypes.c_uint, pending, gpu.mig_pending)


def _process_getter(kind: str, struct: type[ctypes.Structure]) -> Callable[..., int]:
    """nvmlDeviceGet*RunningProcesses: size with a NULL array, then fill."""

    def call(gpu: SimGpu, count_ptr: int, infos: int | None) -> int:
        count = ctypes.c_uint.from_address(count_ptr)
        procs = gpu.processes.setdefault(kind, [])
        if not infos:
            count.value = len(procs)
            result = SUCCESS if not procs else ERROR_INSUFFICIENT_SIZE
            procs.extend(gpu.appear_after_sizing.pop(kind, []))
            return result
        if count.value < len(procs):
            count.value = len(procs)
            return ERROR_INSUFFICIENT_SIZE
        array = (struct * len(procs)).from_address(infos) if procs else ()
        for slot, proc in zip(array, procs, strict=True):
            slot.pid = proc.pid
            slot.usedGpuMemory = proc.used
            if isinstance(slot, ProcessInfoV2):
                slot.gpuInstanceId = slot.computeInstanceId = 0xFFFFFFFF
        count.value = len(procs)
        return SUCCESS

    return call


def _process_utilization(gpu: SimGpu, samples: int | None, count_ptr: int, last_seen: int) -> int:
    """nvmlDeviceGetProcessUtilization: samples newer than ``last_seen`` only."""
    gpu.util_last_seen.append(last_seen)
    fresh = [s for s in gpu.util_samples if s.timestamp > last_seen]
    count = ctypes.c_uint.from_address(count_ptr)
    if not fresh:
        return ERROR_NOT_FOUND
    if not samples or count.value < len(fresh):
        count.value = len(fresh)
        return ERROR_INSUFFICIENT_SIZE
    array = (ProcessUtilizationSample * len(fresh)).from_address(samples)
    for slot, s in zip(array, fresh, strict=True):
        slot.pid, slot.timeStamp, slot.smUtil, slot.memUtil = s.pid, s.timestamp, s.sm, s.mem
        slot.encUtil = slot.decUtil = 0
    count.value = len(fresh)
    return SUCCESS


# -- installing ------------------------------------------------------------------------------------


@contextmanager
def install(driver: SimDriver) -> Iterator[SimDriver]:
    """Make pynvml talk to ``driver`` for the duration of the block; restores pynvml after."""
    saved = _save()
    pynvml.nvmlLib = driver.library()
    pynvml._nvmlGetFunctionPointer_cache.clear()
    try:
        yield driver
    finally:
        _restore(saved)


@contextmanager
def no_library() -> Iterator[None]:
    """A machine without libnvidia-ml.so.1: pynvml's own CDLL load fails with OSError."""
    saved = _save()
    real_cdll = pynvml.CDLL

    def refuse(name: str, *args: Any, **kwargs: Any) -> Any:
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    pynvml.nvmlLib = None
    pynvml._nvmlGetFunctionPointer_cache.clear()
    pynvml.CDLL = refuse
    try:
        yield
    finally:
        pynvml.CDLL = real_cdll
        _restore(saved)


@contextmanager
def unloaded() -> Iterator[None]:
    """pynvml as on a fresh start: no library loaded yet, nothing cached (restored after)."""
    saved = _save()
    pynvml.nvmlLib = None
    pynvml._nvmlGetFunctionPointer_cache.clear()
    try:
        yield
    finally:
        _restore(saved)


def _save() -> tuple[Any, dict[str, Any], int]:
    return (
        pynvml.nvmlLib,
        dict(pynvml._nvmlGetFunctionPointer_cache),
        pynvml._nvmlLib_refcount,
    )


def _restore(saved: tuple[Any, dict[str, Any], int]) -> None:
    lib, cache, refcount = saved
    pynvml.nvmlLib = lib
    pynvml._nvmlGetFunctionPointer_cache.clear()
    pynvml._nvmlGetFunctionPointer_cache.update(cache)
    pynvml._nvmlLib_refcount = refcount
