"""Real-driver behaviours on the simulated libnvidia-ml.so.1: MIG sub-cards (as root, and as a
user the driver refuses process lists), a unified-memory GPU, slow calls, and per-process
utilisation with idle processes; through ``--once --json`` (the whole CLI path, real child
processes) and, where a clock matters, the backend in-process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import psutil
import pytest
from simdriver.harness import Children, Driver, loaded, write_scenario
from tui import Tui

from vramtop.export.document import schema_text
from vramtop.gpu.nvml import SLOW_CALL_S, NvmlBackend
from vramtop.na import NA

GIB = 1 << 30
SCHEMA = json.loads(schema_text())


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.close()


def mig_scenario(a: int, b: int, c: int, *extra: str) -> str:
    return "\n".join(
        [
            "gpu 0 name NVIDIA A100-SXM4-80GB",
            "gpu 0 memory 80G 512M",
            "gpu 0 mig 1",
            "gpu 0:0 name NVIDIA A100-SXM4-80GB MIG 3g.40gb",
            "gpu 0:0 memory 40G 128M",
            "gpu 0:0 instance 1 0",
            "gpu 0:2 name NVIDIA A100-SXM4-80GB MIG 1g.10gb",
            "gpu 0:2 memory 10G 32M",
            "gpu 0:2 instance 9 0",
            "gpu 1 name NVIDIA H100 80GB HBM3",
            f"proc 0:0 {a} compute 12G",
            f"proc 0:2 {b} compute 3G",
            f"proc 1 {c} compute 5G sm=20",
            *extra,
            "",
        ]
    )


def once(driver: Driver) -> dict[str, object]:
    out = driver.run("--once", "--json")
    assert out.returncode == 0, out.stderr
    doc: dict[str, object] = json.loads(out.stdout)
    jsonschema.validate(doc, SCHEMA)
    return doc


def test_mig_instances_are_sub_cards_with_their_processes(
    tmp_path: Path, children: Children
) -> None:
    a, b, c = (children.start(n) for n in ("big_job.py", "small_job.py", "plain_job.py"))
    driver = Driver(tmp_path, scenario=mig_scenario(a, b, c))
    doc = once(driver)
    gpus = doc["gpus"]
    assert isinstance(gpus, list)
    # Card order: GPU 0, its instances, then GPU 1; instance cards take slots after the GPUs.
    assert [(g["index"], g["mig_parent_index"], g["gpu_instance_id"]) for g in gpus] == [
        (0, None, None),
        (2, 0, 1),
        (3, 0, 9),
        (1, None, None),
    ]
    phys, big, small, plain = gpus
    assert phys["mig_mode"] is True and phys["processes"] == []
    assert phys["memory"]["used_bytes"] == 15 * GIB  # the physical GPU's own figure
    assert big["name"].endswith("MIG 3g.40gb")
    assert (big["memory"]["total_bytes"], big["memory"]["used_bytes"]) == (40 * GIB, 12 * GIB)
    assert [(p["pid"], p["command"]) for p in big["processes"]] == [(a, "big_job.py 600")]
    assert [(p["pid"], p["used_bytes"]) for p in small["processes"]] == [(b, 3 * GIB)]
    # No per-process utilisation inside a MIG instance: n/a there, a figure elsewhere.
    assert big["processes"][0]["sm_util_percent"] is None
    assert plain["processes"][0]["sm_util_percent"] == 20
    assert all(g["processes_note"] == "" for g in gpus)

    tui = Tui(["--refresh-rate", "0.5"], cols=140, rows=40, env=driver.env, home=driver.home)
    try:
        screen = tui.wait_for(lambda s: "big_job.py" in s and "small_job.py" in s)
        lines = screen.splitlines()
        sub = [ln for ln in lines if ln.startswith(" └ GPU 0 MIG 1 ")]
        assert len(sub) == 1 and "util" not in sub[0]  # its GPU's figures are not repeated
        # Each process row names its GPU and instance.
        assert any(ln.startswith(" 0:1 ") and "big_job.py" in ln for ln in lines)
        assert any(ln.startswith(" 0:9 ") and "small_job.py" in ln for ln in lines)
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_mig_without_permission_shows_bars_and_says_why(tmp_path: Path, children: Children) -> None:
    """As a non-root user: the driver answers NO_PERMISSION to process lists in MIG instances.
    The memory bars stay, and one line says why no process is listed."""
    a, b, c = (children.start(n) for n in ("big_job.py", "small_job.py", "plain_job.py"))
    denied = [
        f"error 0:{slot} nvmlDeviceGet{kind}RunningProcesses{v} 4"
        for slot in (0, 2)
        for kind in ("Compute", "Graphics", "MPSCompute")
        for v in ("_v3", "_v2", "")
    ]
    driver = Driver(tmp_path, scenario=mig_scenario(a, b, c, *denied))
    doc = once(driver)
    phys, big, small, plain = doc["gpus"]  # type: ignore[misc]
    assert big["memory"]["used_bytes"] == 12 * GIB and small["memory"]["used_bytes"] == 3 * GIB
    # Refused is not "none": null, and the note says why.
    assert big["processes"] is None and small["processes"] is None
    assert "MIG instances to root only" in phys["processes_note"]
    assert [p["pid"] for p in plain["processes"]] == [c]  # the other GPU is not affected

    tui = Tui(["--refresh-rate", "0.5"], cols=140, rows=40, env=driver.env, home=driver.home)
    try:
        screen = tui.wait_for("plain_job.py")
        assert "MIG instances to root only" in screen
        assert "GPU 0 MIG 1" in screen and "GPU 0 MIG 9" in screen
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_unified_memory_gpu_shows_host_memory_labelled(tmp_path: Path) -> None:
    scenario = "\n".join(
        [
            "gpu 0 name NVIDIA GB10",
            "error 0 nvmlDeviceGetMemoryInfo_v2 3",
            "error 0 nvmlDeviceGetMemoryInfo 3",
            "gpu 1 name NVIDIA H100 80GB HBM3",
            "gpu 1 memory 80G 512M",
            "gpu 1 used 1G",
            "",
        ]
    )
    driver = Driver(tmp_path, scenario=scenario)
    doc = once(driver)
    gb10, h100 = doc["gpus"]  # type: ignore[misc]
    host = psutil.virtual_memory()
    assert gb10["memory"]["source"] == "host" and h100["memory"]["source"] == "device"
    assert gb10["memory"]["total_bytes"] == host.total
    assert gb10["memory"]["reserved_bytes"] is None
    assert 0 < gb10["memory"]["used_bytes"] < host.total
    assert "memory n/a" not in gb10["note"]
    assert h100["memory"]["total_bytes"] == 80 * GIB

    tui = Tui(["--refresh-rate", "0.5"], cols=140, rows=40, env=driver.env, home=driver.home)
    try:
        screen = tui.wait_for("NVIDIA GB10")
        tui.wait_for("(host memory)")
        assert screen.count("(host memory)") <= 1  # the H100's card is not labelled
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_total_of_zero_is_unified_memory_too(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_scenario(path, "gpu 0 name NVIDIA Jetson\ngpu 0 memory 0 0\n")
    with loaded("current", path):
        backend = NvmlBackend(slow_interval=0)
        backend.open()
        try:
            gpu = backend.sample().gpus[0]
        finally:
            backend.close()
    assert gpu.memory_source == "host" and gpu.memory_total == psutil.virtual_memory().total


def test_slow_calls_are_counted_shown_and_in_the_json(tmp_path: Path) -> None:
    slow_us = int(SLOW_CALL_S * 1.5 * 1_000_000)
    driver = Driver(tmp_path, scenario=f"gpus 2\ndelay 1 nvmlDeviceGetPowerUsage {slow_us}\n")
    doc = once(driver)
    calls = doc["nvml_calls"]
    assert isinstance(calls, dict)
    power = calls["nvmlDeviceGetPowerUsage"]
    assert power["calls"] == 2 and power["errors"] == 0  # one per GPU: one sample
    assert power["max_ms"] >= SLOW_CALL_S * 1000  # the delayed GPU's call
    assert calls["nvmlDeviceGetName"]["mean_ms"] < power["mean_ms"]
    order = list(calls)  # slowest mean first
    assert order.index("nvmlDeviceGetPowerUsage") < order.index("nvmlDeviceGetMemoryInfo_v2")
    g0, g1 = doc["gpus"]  # type: ignore[misc]
    assert g0["slow_nvml_calls"] == {}
    assert list(g1["slow_nvml_calls"]) == ["nvmlDeviceGetPowerUsage"]
    assert g1["slow_nvml_calls"]["nvmlDeviceGetPowerUsage"] >= SLOW_CALL_S * 1000

    # In the monitor: GPU 1's call becomes slow while it runs, then fast again.
    driver.write("gpus 2\n")
    tui = Tui(["--refresh-rate", "0.5"], cols=140, rows=40, env=driver.env, home=driver.home)
    try:
        tui.wait_for("GPU 1")
        tui.pump(1.0)
        assert "slow NVML calls" not in tui.text()
        driver.write(f"gpus 2\ndelay 1 nvmlDeviceGetPowerUsage {slow_us}\n")
        screen = tui.wait_for("slow NVML calls: nvmlDeviceGetPowerUsage")
        assert screen.count("slow NVML calls") == 1
        lines = screen.splitlines()
        at = next(i for i, ln in enumerate(lines) if "slow NVML calls" in ln)
        assert any(ln.startswith(" GPU 1 ") for ln in lines[max(0, at - 3) : at])  # its card
        driver.write("gpus 2\n")
        tui.wait_for(lambda text: "slow NVML calls" not in text)
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_idle_processes_read_zero_on_every_tick_and_na_only_when_unsupported(
    tmp_path: Path,
) -> None:
    """The driver samples every 200 ms; ticks come faster than that here, so a "newer than the
    last call" question would get NOT_FOUND on most of them. A window does not."""
    path = tmp_path / "s"
    write_scenario(path, "proc 0 41 compute 1G sm=35 mem=7\nproc 0 42 compute 1G\n")
    with loaded("current", path):
        backend = NvmlBackend(slow_interval=0)
        backend.open()
        try:
            ticks = []
            for _ in range(6):
                ticks.append({p.pid: (p.sm_util, p.mem_util) for p in backend.sample().processes})
                time.sleep(0.02)
            write_scenario(path, path.read_text() + "error 0 nvmlDeviceGetProcessUtilization 3\n")
            unsupported = {p.pid: p.sm_util for p in backend.sample().processes}
        finally:
            backend.close()
    assert ticks == [{41: (35, 7), 42: (0, 0)}] * 6
    assert unsupported == {41: NA, 42: NA}


def test_gpu_filter_keeps_a_gpus_mig_instances(tmp_path: Path, children: Children) -> None:
    """``--gpu 0`` is GPU 0 with its MIG sub-cards and their processes, not slot 0 alone."""
    a, b, c = (children.start(n) for n in ("big_job.py", "small_job.py", "plain_job.py"))
    driver = Driver(tmp_path, scenario=mig_scenario(a, b, c))
    out = driver.run("--once", "--json", "--gpu", "0")
    assert out.returncode == 0, out.stderr
    gpus = json.loads(out.stdout)["gpus"]
    assert [(g["index"], g["mig_parent_index"]) for g in gpus] == [(0, None), (2, 0), (3, 0)]
    assert sorted(p["pid"] for g in gpus for p in g["processes"]) == sorted([a, b])
    out = driver.run("--once", "--json", "--gpu", "1")
    assert [g["index"] for g in json.loads(out.stdout)["gpus"]] == [1]
