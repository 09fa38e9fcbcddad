"""Contract tests of the NVML backend: the real pynvml ctypes code against a simulated driver."""

from __future__ import annotations

import ctypes
import dataclasses
import logging

import pytest
from nvml_sim import (
    ERROR_ARGUMENT_VERSION_MISMATCH,
    ERROR_DRIVER_NOT_LOADED,
    ERROR_GPU_IS_LOST,
    ERROR_LIB_RM_VERSION_MISMATCH,
    ERROR_NO_PERMISSION,
    ERROR_NOT_FOUND,
    ERROR_NOT_SUPPORTED,
    ERROR_UNKNOWN,
    GIB,
    MEMORY_V2_SYMBOL,
    MIB,
    VALUE_NOT_AVAILABLE,
    SimDriver,
    SimGpu,
    SimProcess,
    UtilSample,
    all_process_symbols,
    install,
    no_library,
    process_symbols,
    unloaded,
)

from vramtop.gpu.backend import BackendUnavailable, GpuBackend
from vramtop.gpu.nvml import NvmlBackend
from vramtop.gpu.snapshot import GpuSample, GpuState, ProcessType, Snapshot
from vramtop.na import NA

C, G, M = ProcessType.COMPUTE, ProcessType.GRAPHICS, ProcessType.MPS
TEMPERATURE_SYMBOLS = ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def run(driver: SimDriver, ticks: int = 1) -> tuple[list[Snapshot], NvmlBackend]:
    """Open a backend on ``driver``, take ``ticks`` samples (slow fields every tick), close it."""
    with install(driver):
        backend = NvmlBackend(slow_interval=0)
        backend.open()
        try:
            snaps = [backend.sample() for _ in range(ticks)]
        finally:
            backend.close()
    assert driver.callback_failures == []
    return snaps, backend


def one(driver: SimDriver) -> Snapshot:
    return run(driver)[0][0]


def fields(gpu: GpuSample, *skip: str) -> dict[str, object]:
    data = dataclasses.asdict(gpu)
    for name in (*skip, "note"):
        data.pop(name)
    return data


def only_missing(kind_version: dict[str, str], keep: str) -> set[str]:
    return {symbol for version, symbol in kind_version.items() if version != keep}


# -- lifecycle ------------------------------------------------------------------------------------


def test_is_a_gpu_backend_and_does_not_touch_nvml_before_open() -> None:
    driver = SimDriver()
    with install(driver):
        backend: GpuBackend = NvmlBackend()
        assert backend.name == "nvml"
        assert driver.calls["nvmlInitWithFlags"] == 0
        backend.open()
        assert driver.calls["nvmlInitWithFlags"] == 1
        backend.close()
        backend.close()
    assert driver.calls["nvmlShutdown"] == 1


def test_sample_before_open_is_a_programming_error() -> None:
    with install(SimDriver()), pytest.raises(RuntimeError):
        NvmlBackend().sample()


def test_system_versions() -> None:
    snap = one(SimDriver(driver_version="535.183.01", cuda_version=12020))
    assert snap.backend == "nvml"
    assert snap.driver_version == "535.183.01"
    assert snap.cuda_version == "12.2"
    assert snap.nvml_version == "12.550.54.15"


def test_cuda_version_from_the_older_call_when_v2_is_missing() -> None:
    snap = one(SimDriver(cuda_version=11080, missing={"nvmlSystemGetCudaDriverVersion_v2"}))
    assert snap.cuda_version == "11.8"
    assert snap.notes == ()  # the older call answered: nothing is n/a


@pytest.mark.parametrize(
    ("init_error", "words"),
    [
        (ERROR_DRIVER_NOT_LOADED, "driver not loaded"),
        (ERROR_LIB_RM_VERSION_MISMATCH, "version mismatch"),
        (ERROR_NO_PERMISSION, "no permission"),
        (ERROR_UNKNOWN, "NVML could not start"),
    ],
)
def test_init_failure_is_one_clear_line(init_error: int, words: str) -> None:
    driver = SimDriver(init_error=init_error)
    with install(driver), pytest.raises(BackendUnavailable) as info:
        NvmlBackend().open()
    message = str(info.value)
    assert words.lower() in message.lower()
    assert "vramtop --demo" in message
    assert "\n" not in message


def test_library_not_found_simulated() -> None:
    with no_library(), pytest.raises(BackendUnavailable) as info:
        NvmlBackend().open()
    assert str(info.value) == (
        "NVIDIA driver library libnvidia-ml.so.1 not found; is the NVIDIA driver installed? "
        "Try `vramtop --demo` to see vramtop on simulated GPUs."
    )


def test_library_not_found_on_this_machine() -> None:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        pass
    else:
        pytest.skip("this machine has a real NVIDIA driver library")
    with unloaded(), pytest.raises(BackendUnavailable) as info:
        NvmlBackend().open()
    assert "libnvidia-ml.so.1 not found" in str(info.value)


def test_no_devices() -> None:
    driver = SimDriver(gpus=[])
    with install(driver), pytest.raises(BackendUnavailable) as info:
        NvmlBackend().open()
    assert "no NVIDIA GPU" in str(info.value)
    assert "vramtop --demo" in str(info.value)
    assert driver.calls["nvmlShutdown"] == 1  # what was initialised is released


# -- memory ---------------------------------------------------------------------------------------


def test_memory_v2_with_reserved_exactly_as_the_driver_reports() -> None:
    gpu = SimGpu(total=80 * GIB, reserved=700 * MIB, used=31 * GIB, free=48 * GIB)
    driver = SimDriver([gpu])
    snap = one(driver)
    sample = snap.gpus[0]
    assert sample.memory_total == 80 * GIB
    assert sample.memory_reserved == 700 * MIB
    assert sample.memory_used == 31 * GIB
    assert sample.memory_free == 48 * GIB  # not recomputed from the other figures
    # The v2 call really reached the driver; v1 was never needed.
    assert driver.calls[MEMORY_V2_SYMBOL] == 1
    assert driver.calls["nvmlDeviceGetMemoryInfo"] == 0
    assert snap.notes == ()


@pytest.mark.parametrize("how", ["missing", "not supported", "version mismatch"])
def test_memory_falls_back_to_v1_once(how: str) -> None:
    gpu = SimGpu(total=24 * GIB, reserved=300 * MIB, used=5 * GIB)
    missing: set[str] = set()
    if how == "missing":
        missing.add(MEMORY_V2_SYMBOL)
    else:
        code = ERROR_NOT_SUPPORTED if how == "not supported" else ERROR_ARGUMENT_VERSION_MISMATCH
        gpu.errors[MEMORY_V2_SYMBOL] = code
    driver = SimDriver([gpu], missing=missing)
    snaps, _ = run(driver, ticks=3)
    for snap in snaps:
        sample = snap.gpus[0]
        assert sample.memory_total == 24 * GIB
        # v1 "used" includes what the driver reserves; it is shown as reported.
        assert sample.memory_used == 5 * GIB + 300 * MIB
        assert sample.memory_free == 24 * GIB - 5 * GIB - 300 * MIB
        assert sample.memory_reserved is NA
        assert sample.util_gpu == 47
    assert snaps[0].notes == snaps[2].notes
    assert any("reserved" in note for note in snaps[0].notes)
    # The choice is remembered: v2 is asked (or looked up) once, v1 every tick.
    assert driver.calls[MEMORY_V2_SYMBOL] + driver.lookups_of_missing[MEMORY_V2_SYMBOL] == 1
    assert driver.calls["nvmlDeviceGetMemoryInfo"] == 3


# -- processes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v3", "v2", "v1"])
@pytest.mark.parametrize("kind", ["compute", "graphics", "mps"])
def test_each_process_getter_alone(kind: str, version: str) -> None:
    gpu = SimGpu()
    gpu.processes[kind] = [SimProcess(4242, 3 * GIB + 5), SimProcess(77, 123 * MIB)]
    missing = set()
    for other in ("compute", "graphics", "mps"):
        missing |= only_missing(process_symbols(other), version)
    driver = SimDriver([gpu], missing=missing)
    snaps, _ = run(driver, ticks=2)
    expected_type = {"compute": C, "graphics": G, "mps": M}[kind]
    for snap in snaps:
        got = {(p.pid, p.used_bytes, p.types) for p in snap.processes}
        assert got == {(4242, 3 * GIB + 5, (expected_type,)), (77, 123 * MIB, (expected_type,))}
        assert all(p.gpu_index == 0 for p in snap.processes)
    # Newer getters that are missing are looked up once, not every tick.
    for symbol in only_missing(process_symbols(kind), version):
        assert driver.lookups_of_missing[symbol] <= 1


@pytest.mark.parametrize("version", ["v3", "v2", "v1"])
def test_process_starting_between_sizing_and_data_call_is_listed(version: str) -> None:
    gpu = SimGpu()
    gpu.processes["compute"] = [SimProcess(10, 1 * GIB)]
    gpu.appear_after_sizing["compute"] = [SimProcess(11, 2 * GIB)]
    driver = SimDriver([gpu], missing=only_missing(process_symbols("compute"), version))
    snap = one(driver)
    assert {p.pid: p.used_bytes for p in snap.processes} == {10: 1 * GIB, 11: 2 * GIB}
    # The slack in the data call's buffer absorbed it: no third call was needed.
    assert driver.calls[process_symbols("compute")[version]] == 2


@pytest.mark.parametrize("version", ["v3", "v2", "v1"])
def test_burst_of_processes_beyond_the_slack_is_listed(version: str) -> None:
    gpu = SimGpu()
    gpu.processes["compute"] = [SimProcess(10, 1 * GIB)]
    gpu.appear_after_sizing["compute"] = [SimProcess(100 + i, i * MIB) for i in range(20)]
    driver = SimDriver([gpu], missing=only_missing(process_symbols("compute"), version))
    snap = one(driver)
    assert {p.pid for p in snap.processes} == {10} | {100 + i for i in range(20)}


@pytest.mark.parametrize("version", ["v3", "v1"])
def test_used_memory_not_available_is_na(version: str) -> None:
    gpu = SimGpu()
    gpu.processes["compute"] = [SimProcess(5, VALUE_NOT_AVAILABLE), SimProcess(6, 4 * GIB)]
    driver = SimDriver([gpu], missing=only_missing(process_symbols("compute"), version))
    snap = one(driver)
    used = {p.pid: p.used_bytes for p in snap.processes}
    assert used[5] is NA
    assert used[6] == 4 * GIB
    assert snap.process_memory_sum(0) == 4 * GIB


def test_compute_graphics_and_mps_merge_by_pid() -> None:
    gpu0 = SimGpu()
    gpu0.processes = {
        "compute": [SimProcess(100, 1 * GIB), SimProcess(300, VALUE_NOT_AVAILABLE)],
        "graphics": [SimProcess(100, 2 * GIB), SimProcess(200, 64 * MIB)],
        "mps": [SimProcess(400, 5 * GIB), SimProcess(300, 3 * GIB)],
    }
    gpu1 = SimGpu(uuid="GPU-second")
    gpu1.processes["compute"] = [SimProcess(100, 7 * GIB)]  # the same process on another GPU
    snap = one(SimDriver([gpu0, gpu1]))
    on0 = {p.pid: (p.types, p.used_bytes) for p in snap.processes_on(0)}
    assert on0 == {
        100: ((C, G), 2 * GIB),
        200: ((G,), 64 * MIB),
        300: ((C, M), 3 * GIB),
        400: ((M,), 5 * GIB),
    }
    assert [p.type_label for p in snap.processes_on(0) if p.pid == 100] == ["C+G"]
    assert {(p.pid, p.used_bytes) for p in snap.processes_on(1)} == {(100, 7 * GIB)}


def test_per_process_utilisation_is_a_window_idle_is_zero_unsupported_is_na() -> None:
    """Each tick asks for the last second (NVML timestamps are wall-clock microseconds), so a
    busy process keeps its figure on a tick without a new sample, and a listed process with no
    sample in the window reads 0%, not n/a."""
    wall = [100.0]  # seconds
    gpu = SimGpu()
    gpu.processes["compute"] = [SimProcess(100, GIB), SimProcess(200, GIB), SimProcess(300, GIB)]
    gpu.util_samples = [
        UtilSample(100, 99_200_000, sm=40, mem=10),
        UtilSample(100, 99_800_000, sm=60, mem=14),
        UtilSample(200, 98_000_000, sm=90, mem=50),  # older than the window
    ]
    driver = SimDriver([gpu])
    with install(driver):
        backend = NvmlBackend(slow_interval=0, wall=lambda: wall[0])
        backend.open()
        first = {p.pid: (p.sm_util, p.mem_util) for p in backend.sample().processes}
        second = {p.pid: (p.sm_util, p.mem_util) for p in backend.sample().processes}
        wall[0] = 105.0  # nothing in the last second: NOT_FOUND, every process idle
        third = {p.pid: (p.sm_util, p.mem_util) for p in backend.sample().processes}
        backend.close()
    assert first == second == {100: (50, 12), 200: (0, 0), 300: (0, 0)}  # mean over the window
    assert third == {100: (0, 0), 200: (0, 0), 300: (0, 0)}
    assert set(gpu.util_last_seen) == {99_000_000, 104_000_000}
    assert driver.callback_failures == []

    gpu.errors["nvmlDeviceGetProcessUtilization"] = ERROR_NOT_SUPPORTED
    snap = one(driver)
    assert {(p.sm_util, p.mem_util) for p in snap.processes} == {(NA, NA)}
    assert "process utilisation n/a (not supported)" in snap.gpus[0].note


# -- n/a fields -----------------------------------------------------------------------------------

NA_CASES = {
    "power": (("nvmlDeviceGetPowerUsage",), ("power_w",), "power"),
    "temperature": (TEMPERATURE_SYMBOLS, ("temperature_c",), "temperature"),
    "fan": (("nvmlDeviceGetFanSpeed",), ("fan_percent",), "fan"),
    "utilisation": (("nvmlDeviceGetUtilizationRates",), ("util_gpu", "util_memory"), "utilisation"),
    "power limit": (("nvmlDeviceGetEnforcedPowerLimit",), ("power_limit_w",), "power limit"),
}


def two_gpus() -> list[SimGpu]:
    second = SimGpu(name="NVIDIA A100-SXM4-40GB", uuid="GPU-a100", total=40 * GIB, fan=0)
    second.processes["compute"] = [SimProcess(321, 9 * GIB)]
    return [SimGpu(), second]


@pytest.mark.parametrize("case", sorted(NA_CASES))
def test_not_supported_makes_only_that_field_na(case: str) -> None:
    symbols, attrs, label = NA_CASES[case]
    baseline = run(SimDriver(two_gpus()), ticks=1)[0][0]
    gpus = two_gpus()
    for symbol in symbols:
        gpus[1].errors[symbol] = ERROR_NOT_SUPPORTED
    snaps, _ = run(SimDriver(gpus), ticks=3)
    for snap in snaps:
        broken = snap.gpus[1]
        for attr in attrs:
            assert getattr(broken, attr) is NA
            assert getattr(baseline.gpus[1], attr) is not NA
        assert fields(broken, *attrs) == fields(baseline.gpus[1], *attrs)
        assert fields(snap.gpus[0]) == fields(baseline.gpus[0])
        assert snap.processes == baseline.processes
        assert snap.notes == (f"GPU 1: {label} n/a (not supported)",)
        assert broken.note == f"{label} n/a (not supported)"
        assert snap.gpus[0].note == ""


def test_missing_optional_function_is_na_for_that_field_only() -> None:
    baseline = one(SimDriver())
    snap = one(SimDriver(missing={"nvmlDeviceGetFanSpeed"}))
    assert snap.gpus[0].fan_percent is NA
    assert fields(snap.gpus[0], "fan_percent") == fields(baseline.gpus[0], "fan_percent")
    assert snap.notes == ("GPU 0: fan n/a (not in this driver)",)


def test_temperature_uses_the_older_call_when_the_newer_is_missing() -> None:
    snap = one(SimDriver([SimGpu(temperature=77)], missing={"nvmlDeviceGetTemperatureV"}))
    assert snap.gpus[0].temperature_c == 77
    assert snap.notes == ()


def test_unsupported_function_is_logged_once_and_not_called_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gpus = two_gpus()
    gpus[0].errors["nvmlDeviceGetFanSpeed"] = ERROR_NOT_SUPPORTED
    gpus[1].errors["nvmlDeviceGetFanSpeed"] = ERROR_NOT_SUPPORTED
    driver = SimDriver(gpus)
    with caplog.at_level(logging.DEBUG, logger="vramtop.nvml"):
        snaps, _ = run(driver, ticks=6)
    fan_logs = [r for r in caplog.records if "nvmlDeviceGetFanSpeed" in r.getMessage()]
    assert len(fan_logs) == 1
    assert all(r.name == "vramtop.nvml" for r in caplog.records)
    assert driver.calls["nvmlDeviceGetFanSpeed"] == 2  # once per GPU, then remembered
    assert driver.calls["nvmlDeviceGetTemperatureV"] == 12  # slow_interval=0: every tick
    assert all(s.gpus[0].fan_percent is NA for s in snaps)
    assert (
        snaps[0].notes
        == snaps[-1].notes
        == (
            "GPU 0: fan n/a (not supported)",
            "GPU 1: fan n/a (not supported)",
        )
    )


def test_no_permission_is_retried_on_the_slow_interval(clock: Clock) -> None:
    gpu = SimGpu(power_mw=123_000)
    gpu.errors["nvmlDeviceGetPowerUsage"] = ERROR_NO_PERMISSION  # a fast, every-tick field
    driver = SimDriver([gpu])
    with install(driver):
        backend = NvmlBackend(slow_interval=5, clock=clock)
        backend.open()
        seen = []
        for step in range(12):
            if step == 7:
                del gpu.errors["nvmlDeviceGetPowerUsage"]
            seen.append(backend.sample().gpus[0].power_w)
            clock.now += 1
        backend.close()
    # Denied at t=0 and t=5, allowed from t=10 on; not asked in between.
    assert driver.calls["nvmlDeviceGetPowerUsage"] == 4
    assert seen[:10] == [NA] * 10
    assert seen[10:] == [123.0, 123.0]


def test_static_fields_once_slow_fields_on_their_interval(clock: Clock) -> None:
    driver = SimDriver(two_gpus())
    with install(driver):
        backend = NvmlBackend(slow_interval=5, clock=clock)
        backend.open()
        temps = []
        for step in range(11):
            driver.gpus[0].temperature = 60 + step
            temps.append(backend.sample().gpus[0].temperature_c)
            clock.now += 1
        backend.close()
    for symbol in ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetMigMode"):
        assert driver.calls[symbol] == 2  # once per GPU
    for symbol in ("nvmlSystemGetDriverVersion", "nvmlSystemGetNVMLVersion"):
        assert driver.calls[symbol] == 1
    assert driver.calls["nvmlDeviceGetHandleByIndex_v2"] == 2
    # Slow fields at t=0, 5 and 10 on each of the two GPUs.
    for symbol in ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetFanSpeed"):
        assert driver.calls[symbol] == 6
    assert driver.calls["nvmlDeviceGetEnforcedPowerLimit"] == 6
    assert driver.calls["nvmlDeviceGetClockInfo"] == 12  # SM and memory clock
    # Fast fields every tick.
    assert driver.calls[MEMORY_V2_SYMBOL] == 22
    assert driver.calls["nvmlDeviceGetPowerUsage"] == 22
    assert temps == [60] * 5 + [65] * 5 + [70]


def test_mig_mode_enabled() -> None:
    gpu = SimGpu(mig_current=1, mig_pending=1)
    gpu.processes["compute"] = [SimProcess(9, GIB)]
    gpu.errors["nvmlDeviceGetUtilizationRates"] = ERROR_NOT_SUPPORTED
    gpu.errors["nvmlDeviceGetProcessUtilization"] = ERROR_NOT_SUPPORTED
    for symbol in all_process_symbols():
        gpu.errors[symbol] = ERROR_NO_PERMISSION
    snaps, _ = run(SimDriver([gpu, SimGpu(uuid="GPU-plain")]), ticks=2)
    snap = snaps[-1]
    mig, plain = snap.gpus
    assert mig.mig_mode is True and plain.mig_mode is False
    assert mig.state is GpuState.OK
    assert mig.memory_used == 20 * GIB and mig.memory_reserved == 512 * MIB
    assert mig.util_gpu is NA and mig.temperature_c == 61
    assert snap.processes == ()
    assert "GPU 0: compute processes n/a (no permission)" in snap.notes
    assert "GPU 0: utilisation n/a (not supported)" in snap.notes
    assert not any(note.startswith("GPU 1") for note in snap.notes)


def test_mig_mode_not_supported_means_not_in_mig_mode() -> None:
    gpu = SimGpu()
    gpu.errors["nvmlDeviceGetMigMode"] = ERROR_NOT_SUPPORTED
    snap = one(SimDriver([gpu]))
    assert snap.gpus[0].mig_mode is False
    assert snap.notes == ()


def test_hostile_gpu_name_is_cleaned() -> None:
    snap = one(SimDriver([SimGpu(name="Evil\x1b[2J GPU\x07")]))
    assert snap.gpus[0].name == "Evil GPU"


# -- lost GPUs ------------------------------------------------------------------------------------


def test_lost_gpus_are_shown_lost_while_others_update_and_are_retried(clock: Clock) -> None:
    gpus = [SimGpu(uuid=f"GPU-{i}", name=f"Card {i}") for i in range(3)]
    gpus[1].lost = True  # lost before vramtop starts
    gpus[1].processes["compute"] = [SimProcess(11, GIB)]
    gpus[2].processes["compute"] = [SimProcess(22, GIB)]
    driver = SimDriver(gpus)
    with install(driver):
        backend = NvmlBackend(slow_interval=0, retry_interval=5, clock=clock)
        backend.open()

        def tick() -> Snapshot:
            clock.now += 1
            return backend.sample()

        snap = tick()
        assert [g.state for g in snap.gpus] == [GpuState.OK, GpuState.LOST, GpuState.OK]
        lost = snap.gpus[1]
        assert (lost.index, lost.uuid, lost.name) == (1, "", "unknown")
        assert "lost" in lost.note.lower()
        assert {p.pid for p in snap.processes} == {22}

        gpus[2].lost_after_calls = gpus[2].device_calls + 3  # falls off mid-tick
        gpus[0].used = 30 * GIB
        snap = tick()
        assert [g.state for g in snap.gpus] == [GpuState.OK, GpuState.LOST, GpuState.LOST]
        assert snap.gpus[0].memory_used == 30 * GIB  # the healthy GPU keeps updating
        assert (snap.gpus[2].uuid, snap.gpus[2].name) == ("GPU-2", "Card 2")  # known before
        assert {p.pid for p in snap.processes} == set()  # GPU 0 has none, GPU 2 is gone
        assert any(n.startswith("GPU 2: lost") for n in snap.notes)

        handle_calls = driver.calls["nvmlDeviceGetHandleByIndex_v2"]
        gpus[0].used = 31 * GIB
        snap = tick()
        assert snap.gpus[0].memory_used == 31 * GIB
        assert driver.calls["nvmlDeviceGetHandleByIndex_v2"] == handle_calls  # not yet retried

        gpus[1].lost = False  # the driver has it back
        for _ in range(4):
            snap = tick()
        back = snap.gpus[1]
        assert back.state is GpuState.OK
        assert (back.uuid, back.name, back.memory_used) == ("GPU-1", "Card 1", 20 * GIB)
        assert {p.pid for p in snap.processes} == {11}
        assert snap.gpus[2].state is GpuState.LOST  # still lost: retried, still failing
        assert not any(n.startswith("GPU 1") for n in snap.notes)

        gpus[2].lost = False
        for _ in range(5):
            snap = tick()
        assert [g.state for g in snap.gpus] == [GpuState.OK] * 3
        assert {p.pid for p in snap.processes} == {11, 22}
        assert snap.notes == ()
        backend.close()
    assert driver.callback_failures == []


@pytest.mark.parametrize("code", [ERROR_UNKNOWN, ERROR_NOT_FOUND, ERROR_GPU_IS_LOST])
def test_handle_failure_at_open_marks_only_that_gpu_lost(code: int) -> None:
    gpus = [SimGpu(uuid="GPU-a"), SimGpu(uuid="GPU-b")]
    gpus[0].handle_error = code
    snap = one(SimDriver(gpus))
    assert snap.gpus[0].state is GpuState.LOST
    assert snap.gpus[0].name == "unknown"
    assert snap.gpus[1].state is GpuState.OK and snap.gpus[1].uuid == "GPU-b"


# -- what a failed query and a lost GPU say ---------------------------------------------------


@pytest.mark.parametrize("code", [ERROR_NO_PERMISSION, ERROR_UNKNOWN])
def test_a_failed_process_query_is_unknown_not_empty(code: int) -> None:
    from vramtop.export.document import to_document

    gpu = SimGpu()
    gpu.processes["compute"] = [SimProcess(4242, 3 * GIB)]
    gpu.errors = {symbol: code for symbol in process_symbols("compute").values()}
    ok = SimGpu(uuid="GPU-ok")
    snap = one(SimDriver([gpu, ok]))
    assert snap.gpus[0].processes_known is False and snap.gpus[1].processes_known is True
    doc = to_document(snap)
    failed, fine = doc["gpus"]
    assert failed["processes"] is None, "null: the driver did not say, not 'no processes'"
    assert failed["memory"]["processes_sum_bytes"] is None
    assert "compute processes n/a (" in failed["note"]
    assert fine["processes"] == [] and fine["memory"]["processes_sum_bytes"] == 0


def test_once_names_a_lost_gpu_and_promises_no_retry() -> None:
    gpus = [SimGpu(uuid="GPU-a"), SimGpu(uuid="GPU-b")]
    gpus[1].lost = True
    for retries in (True, False):
        with install(SimDriver(gpus)):
            backend = NvmlBackend(slow_interval=0, retries=retries)
            backend.open()
            try:
                lost = backend.sample().gpus[1]
            finally:
                backend.close()
        assert lost.state is GpuState.LOST and lost.index == 1
        assert "NVML says GPU is lost" in lost.note, lost.note
        assert ("retrying every 5 s" in lost.note) is retries


def test_metrics_of_a_gpu_whose_process_query_failed_give_no_process_count() -> None:
    from vramtop.export.document import to_document
    from vramtop.export.prometheus import exposition, families

    gpu = SimGpu()
    gpu.errors = {symbol: ERROR_UNKNOWN for symbol in process_symbols("compute").values()}
    doc = to_document(one(SimDriver([gpu, SimGpu(uuid="GPU-ok")])))
    text = exposition(families(doc, "host", 100)).decode()
    counts = [ln for ln in text.splitlines() if ln.startswith("vramtop_gpu_processes{")]
    assert len(counts) == 1 and 'gpu="1"' in counts[0], counts  # GPU 0's count is unknown
