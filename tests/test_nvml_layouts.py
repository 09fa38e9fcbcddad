"""Process-record layouts: vramtop reads the stride the driver writes, whatever the installed
nvidia-ml-py believes. Each driver generation is a build of the simulated library
(tests/simdriver), loaded in-process under pynvml."""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import pynvml
import pytest
from simdriver.build import VARIANTS
from simdriver.harness import loaded, write_scenario

from vramtop.gpu.nvml import NvmlBackend, expected_record_size, measured_record_size

GIB = 1 << 30
# PIDs and sizes whose bytes cannot be mistaken for one another when read at a wrong stride.
TRUTH = {4_000_001: 7 * GIB + 12_345, 4_000_002: 3 * GIB, 4_000_003: 123 * (1 << 20)}


def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "gpus.scenario"
    lines = [f"proc 0 {pid} compute,graphics,mps {used}" for pid, used in TRUTH.items()]
    write_scenario(path, "\n".join(["gpu 0 name NVIDIA H100 80GB HBM3", *lines, ""]))
    return path


def sample_rows(variant: str, path: Path) -> dict[int, object]:
    with loaded(variant, path):
        backend = NvmlBackend(slow_interval=0)
        backend.open()
        try:
            snap = backend.sample()
        finally:
            backend.close()
    assert [p.type_label for p in snap.processes] == ["C+G+M"] * len(TRUTH)
    return {p.pid: p.used_bytes for p in snap.processes}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_driver_generation_reads_true_pids_and_sizes(
    tmp_path: Path, variant: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="vramtop.nvml"):
        assert sample_rows(variant, scenario(tmp_path)) == TRUTH
    surprises = [r.getMessage() for r in caplog.records if "process records" in r.getMessage()]
    if variant == "stride16":
        # The exports imply 24 bytes; the measured stride wins, and says so once per getter.
        assert len(surprises) == 3 and all("16-byte" in m for m in surprises)
    else:
        assert surprises == []


def test_the_binding_alone_scrambles_a_driver_of_the_other_layout(tmp_path: Path) -> None:
    """The trap itself: pynvml's own wrapper reads its own struct size. On the driver build
    whose _v3 record differs from the binding's, its PIDs come back wrong; vramtop's do not."""
    binding = ctypes.sizeof(pynvml.c_nvmlProcessInfo_v3_t)
    variant = "r535" if binding == 24 else "current"
    path = scenario(tmp_path)
    with loaded(variant, path):
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            theirs = {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses_v3(handle)}
        finally:
            pynvml.nvmlShutdown()
    assert theirs != set(TRUTH)
    assert sample_rows(variant, path) == TRUTH


def test_older_driver_without_v3_uses_v2_then_v1(tmp_path: Path) -> None:
    path = scenario(tmp_path)
    with loaded("r470", path):
        backend = NvmlBackend(slow_interval=0)
        backend.open()
        try:
            snap = backend.sample()
        finally:
            backend.close()
        assert not hasattr(pynvml.nvmlLib, "nvmlDeviceGetComputeRunningProcesses_v3")
    assert {p.pid: p.used_bytes for p in snap.processes} == TRUTH
    assert "processes" not in snap.gpus[0].note  # a missing _v3 is not worth a remark


@pytest.mark.parametrize(
    ("symbol", "exports", "size"),
    [
        ("nvmlDeviceGetComputeRunningProcesses_v3", {"ConfCompute", "DetailList"}, 24),
        ("nvmlDeviceGetComputeRunningProcesses_v3", {"ConfCompute"}, 32),
        ("nvmlDeviceGetComputeRunningProcesses_v3", set(), 24),
        ("nvmlDeviceGetGraphicsRunningProcesses_v2", {"ConfCompute"}, 24),
        ("nvmlDeviceGetMPSComputeRunningProcesses", {"ConfCompute"}, 16),
    ],
)
def test_layout_the_exports_imply(symbol: str, exports: set[str], size: int) -> None:
    names = {
        "ConfCompute": "nvmlDeviceGetConfComputeMemSizeInfo",
        "DetailList": "nvmlDeviceGetRunningProcessDetailList",
    }
    present = {names[e] for e in exports}
    assert expected_record_size(symbol, present.__contains__) == size


def test_measured_stride_needs_an_exact_fit() -> None:
    fill = b"\xa5"
    for size in (16, 24, 32):
        raw = b"\x01" * (size * 3) + fill * 64
        assert measured_record_size(raw, 3) == size
    assert measured_record_size(b"\x01" * 50 + fill * 40, 3) is None  # fits no layout
    assert measured_record_size(fill * 96, 0) is None
