"""The simulated libnvidia-ml.so.1 keeps the driver's contract, called directly through ctypes
(no pynvml in between): the two-call sizing protocol, struct versions, error codes, lost GPUs,
the scenario's growth and its reload, and the per-process call counters."""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from simdriver.build import STATS_ENV, write_scenario
from simdriver.harness import loaded

GIB = 1 << 30
SUCCESS, INVALID, NOT_SUPPORTED, NOT_FOUND, INSUFFICIENT, LOST = 0, 2, 3, 6, 7, 15
MISMATCH, UNINITIALIZED = 25, 1


class Record(ctypes.Structure):  # nvmlProcessInfo_v2_t
    _fields_ = (
        ("pid", ctypes.c_uint),
        ("used", ctypes.c_ulonglong),
        ("gi", ctypes.c_uint),
        ("ci", ctypes.c_uint),
    )


class MemoryV2(ctypes.Structure):
    _fields_ = (
        ("version", ctypes.c_uint),
        ("total", ctypes.c_ulonglong),
        ("reserved", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    )


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "gpus.scenario"
    write_scenario(path, "gpus 2\n")
    return path


@pytest.fixture
def lib(scenario: Path) -> Iterator[ctypes.CDLL]:
    with loaded("current", scenario) as lib:
        assert lib.nvmlInit_v2() == SUCCESS
        try:
            yield lib
        finally:
            lib.nvmlShutdown()


def handle(lib: ctypes.CDLL, index: int) -> ctypes.c_void_p:
    out = ctypes.c_void_p()
    assert lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(out)) == SUCCESS
    return out


def processes(lib: ctypes.CDLL, h: ctypes.c_void_p) -> list[tuple[int, int, int]]:
    count = ctypes.c_uint(0)
    fn = lib.nvmlDeviceGetComputeRunningProcesses_v3
    ret = fn(h, ctypes.byref(count), None)
    if ret == SUCCESS:
        return []
    assert ret == INSUFFICIENT
    buf = (Record * count.value)()
    assert fn(h, ctypes.byref(count), buf) == SUCCESS
    return [(r.pid, r.used, r.gi) for r in buf[: count.value]]


def test_two_call_sizing_protocol(lib: ctypes.CDLL, scenario: Path) -> None:
    write_scenario(
        scenario, "gpus 2\nproc 0 11 compute 1G\nproc 0 12 compute 2G\nproc 0 13 graphics 3G\n"
    )
    h = handle(lib, 0)
    fn = lib.nvmlDeviceGetComputeRunningProcesses_v3
    count = ctypes.c_uint(0)
    assert fn(h, ctypes.byref(count), None) == INSUFFICIENT and count.value == 2
    small = (Record * 1)()
    count = ctypes.c_uint(1)
    assert fn(h, ctypes.byref(count), small) == INSUFFICIENT and count.value == 2
    assert processes(lib, h) == [(11, GIB, 0xFFFFFFFF), (12, 2 * GIB, 0xFFFFFFFF)]
    empty = ctypes.c_uint(5)
    assert fn(handle(lib, 1), ctypes.byref(empty), None) == SUCCESS and empty.value == 0


def test_memory_v2_checks_the_struct_version(lib: ctypes.CDLL, scenario: Path) -> None:
    write_scenario(scenario, "gpu 0 memory 80G 512M\ngpu 0 used 10G\n")
    mem = MemoryV2(version=0x02000028)
    assert lib.nvmlDeviceGetMemoryInfo_v2(handle(lib, 0), ctypes.byref(mem)) == SUCCESS
    assert (mem.total, mem.reserved, mem.used) == (80 * GIB, 512 << 20, 10 * GIB)
    assert mem.free == mem.total - mem.reserved - mem.used
    wrong = MemoryV2(version=2)  # the number the documentation seems to ask for
    assert lib.nvmlDeviceGetMemoryInfo_v2(handle(lib, 0), ctypes.byref(wrong)) == MISMATCH


def test_injected_errors_and_lost_gpus_then_reload(lib: ctypes.CDLL, scenario: Path) -> None:
    write_scenario(scenario, "gpus 2\nerror 0 nvmlDeviceGetFanSpeed 3\ngpu 1 lost 1\n")
    speed = ctypes.c_uint()
    assert lib.nvmlDeviceGetFanSpeed(handle(lib, 0), ctypes.byref(speed)) == NOT_SUPPORTED
    temp = ctypes.c_uint()
    assert lib.nvmlDeviceGetTemperature(handle(lib, 0), 0, ctypes.byref(temp)) == SUCCESS
    out = ctypes.c_void_p()
    assert lib.nvmlDeviceGetHandleByIndex_v2(1, ctypes.byref(out)) == LOST
    write_scenario(scenario, "gpus 2\n")  # the next call sees the new file
    assert lib.nvmlDeviceGetFanSpeed(handle(lib, 0), ctypes.byref(speed)) == SUCCESS
    assert lib.nvmlDeviceGetHandleByIndex_v2(1, ctypes.byref(out)) == SUCCESS
    assert lib.nvmlDeviceGetHandleByIndex_v2(2, ctypes.byref(out)) == INVALID


def test_memory_grows_at_its_rate_up_to_its_cap(lib: ctypes.CDLL, scenario: Path) -> None:
    write_scenario(scenario, "proc 0 21 compute 1G rate=1G max=1.5G\nproc 0 22 compute na\n")
    h = handle(lib, 0)
    first = dict((pid, used) for pid, used, _ in processes(lib, h))
    time.sleep(0.2)
    second = dict((pid, used) for pid, used, _ in processes(lib, h))
    assert GIB <= first[21] < second[21] <= 1.5 * GIB
    assert first[22] == second[22] == 0xFFFFFFFFFFFFFFFF  # NVML_VALUE_NOT_AVAILABLE
    time.sleep(0.4)
    assert dict((p, u) for p, u, _ in processes(lib, h))[21] == int(1.5 * GIB)


def test_mig_instances_and_their_processes(lib: ctypes.CDLL, scenario: Path) -> None:
    write_scenario(
        scenario,
        "gpu 0 mig 1\ngpu 0:3 memory 20G 64M\ngpu 0:3 instance 5 0\nproc 0:3 31 compute 4G\n"
        "proc 0 32 compute 1G\n",
    )
    parent = handle(lib, 0)
    count = ctypes.c_uint()
    assert lib.nvmlDeviceGetMaxMigDeviceCount(parent, ctypes.byref(count)) == SUCCESS
    assert count.value == 7
    mig = ctypes.c_void_p()
    assert lib.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0, ctypes.byref(mig)) == NOT_FOUND
    assert lib.nvmlDeviceGetMigDeviceHandleByIndex(parent, 3, ctypes.byref(mig)) == SUCCESS
    gi = ctypes.c_uint()
    assert lib.nvmlDeviceGetGpuInstanceId(mig, ctypes.byref(gi)) == SUCCESS and gi.value == 5
    assert processes(lib, mig) == [(31, 4 * GIB, 5)]
    assert sorted(p for p, _, _ in processes(lib, parent)) == [31, 32]
    util = ctypes.c_uint * 2
    assert lib.nvmlDeviceGetUtilizationRates(mig, ctypes.byref(util())) == NOT_SUPPORTED


def test_calls_before_init_and_call_counters(scenario: Path, tmp_path: Path) -> None:
    stats = tmp_path / "stats"
    stats.mkdir()
    os.environ[STATS_ENV] = str(stats)
    try:
        with loaded("current", scenario) as lib:
            count = ctypes.c_uint()
            before = lib.nvmlDeviceGetCount_v2(ctypes.byref(count))
            assert lib.nvmlInit_v2() == SUCCESS
            for _ in range(3):
                assert lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == SUCCESS
            assert lib.nvmlShutdown() == SUCCESS  # writes the counters
    finally:
        del os.environ[STATS_ENV]
    assert before == UNINITIALIZED
    lines = dict(line.split() for line in (stats / f"calls.{os.getpid()}").read_text().splitlines())
    # Counted per process since the library was loaded (other tests of this process count too).
    assert int(lines["nvmlDeviceGetCount_v2"]) >= 4
    assert int(lines["nvmlShutdown"]) >= 1
