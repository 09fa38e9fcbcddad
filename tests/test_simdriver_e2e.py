"""The whole program on the real NVML path: vramtop's processes load the simulated
``libnvidia-ml.so.1`` (tests/simdriver) through ``LD_LIBRARY_PATH`` and nvidia-ml-py's own
ctypes code, with real child processes on the simulated GPUs. One test per mode: monitor (in a
pty), ``--once --json``, ``record``, and ``replay`` of a recording made through the driver."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from simdriver.harness import VRAMTOP, Children, Driver
from tui import Tui

GIB = 1 << 30


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.close()


def two_gpus(train: int, serve: int, train_used: str = "10G", *extra: str) -> str:
    return "\n".join(
        [
            "driver 550.54.15",
            "cuda 12040",
            "gpu 0 name NVIDIA H100 80GB HBM3",
            "gpu 0 memory 80G 512M",
            "gpu 0 util 40 20",
            "gpu 0 temp 61",
            "gpu 1 name NVIDIA A100-SXM4-40GB",
            "gpu 1 memory 40G 256M",
            f"proc 0 {train} compute {train_used} sm=30 mem=5",
            f"proc 1 {serve} compute,graphics 2G",
            *extra,
            "",
        ]
    )


def test_once_json_reads_the_driver_through_nvml(tmp_path: Path, children: Children) -> None:
    train, serve = children.start("train_sim.py"), children.start("serve_sim.py")
    driver = Driver(tmp_path, scenario=two_gpus(train, serve))
    out = driver.run("--once", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["backend"] == "nvml"
    assert (doc["driver_version"], doc["cuda_version"]) == ("550.54.15", "12.4")
    g0, g1 = doc["gpus"]
    assert (g0["name"], g1["name"]) == ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB")
    assert g0["memory"]["total_bytes"] == 80 * GIB
    assert g0["memory"]["reserved_bytes"] == 512 * (1 << 20)  # the v2 memory call was used
    assert g0["memory"]["used_bytes"] == 10 * GIB
    assert g0["utilization"] == {"gpu_percent": 40, "memory_percent": 20}
    (p0,) = g0["processes"]
    (p1,) = g1["processes"]
    # PIDs and sizes survive the struct layout; /proc enrichment finds the real children.
    assert (p0["pid"], p0["used_bytes"], p0["command"]) == (train, 10 * GIB, "train_sim.py 600")
    assert (p0["sm_util_percent"], p0["mem_util_percent"]) == (30, 5)
    assert (p1["pid"], p1["types"], p1["command"]) == (
        serve,
        ["compute", "graphics"],
        "serve_sim.py 600",
    )
    assert (p1["sm_util_percent"], p1["mem_util_percent"]) == (0, 0)  # listed, idle: 0%


def test_injected_failures_are_one_field_and_one_gpu(tmp_path: Path, children: Children) -> None:
    train, serve = children.start("train_sim.py"), children.start("serve_sim.py")
    scenario = two_gpus(train, serve, "10G", "error 0 nvmlDeviceGetFanSpeed 3", "gpu 1 lost 1")
    out = Driver(tmp_path, scenario=scenario).run("--once", "--json")
    assert out.returncode == 0, out.stderr
    g0, g1 = json.loads(out.stdout)["gpus"]
    assert g0["fan_percent"] is None and g0["temperature_c"] == 61
    assert "fan n/a (not supported)" in g0["note"]
    assert g1["state"] == "lost" and "GPU is lost" in g1["note"]
    assert [p["pid"] for p in g0["processes"]] == [train]


def test_driver_not_loaded_is_one_line_and_exit_1(tmp_path: Path) -> None:
    out = Driver(tmp_path, scenario="error * nvmlInitWithFlags 9\n").run("--once")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "driver not loaded" in out.stderr.lower() and "--demo" in out.stderr


def ndjson(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_docs(path: Path, check: object, timeout: float = 30.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        docs = ndjson(path)
        if callable(check) and check(docs):
            return docs
        time.sleep(0.1)
    raise AssertionError(f"timed out; recording has {len(ndjson(path))} samples")


def used_of(doc: dict[str, object], pid: int) -> int | None:
    for gpu in doc["gpus"]:  # type: ignore[attr-defined]
        for proc in gpu["processes"]:
            if proc["pid"] == pid:
                return int(proc["used_bytes"])
    return None


def test_record_follows_the_driver_and_replay_gives_it_back(
    tmp_path: Path, children: Children
) -> None:
    """record on the NVML backend while the scenario moves a real child's memory, stopped by
    SIGTERM; then replay --json of that recording: the same samples, in order."""
    train, serve = children.start("train_sim.py"), children.start("serve_sim.py")
    driver = Driver(tmp_path, scenario=two_gpus(train, serve, "4G"))
    path = tmp_path / "night.ndjson"
    rec = subprocess.Popen(
        [*VRAMTOP, "record", str(path), "--refresh-rate", "0.5"],
        env=driver.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_docs(path, lambda docs: len(docs) >= 2)
        driver.write(two_gpus(train, serve, "6G"))
        wait_docs(path, lambda docs: any(used_of(d, train) == 6 * GIB for d in docs))
        rec.send_signal(signal.SIGTERM)
        _, err = rec.communicate(timeout=20)
        assert rec.returncode == 0, err
    finally:
        if rec.poll() is None:
            rec.kill()
            rec.communicate()
    recorded = ndjson(path)
    assert all(d["backend"] == "nvml" for d in recorded)
    trail = [used_of(d, train) for d in recorded]
    assert trail[0] == 4 * GIB and trail[-1] == 6 * GIB
    assert trail == sorted(trail), "the recording follows the driver in order"
    assert {used_of(d, serve) for d in recorded} == {2 * GIB}

    out = driver.run("replay", str(path), "--json")
    assert out.returncode == 0, out.stderr
    replayed = [json.loads(line) for line in out.stdout.splitlines()]
    assert [d["timestamp"] for d in replayed] == [d["timestamp"] for d in recorded]
    assert [used_of(d, train) for d in replayed] == trail
    commands = {p["command"] for d in replayed for g in d["gpus"] for p in g["processes"]}
    assert commands == {"train_sim.py 600", "serve_sim.py 600"}


def test_monitor_runs_on_the_driver_and_follows_it(tmp_path: Path, children: Children) -> None:
    """The TUI, all actors, on the NVML backend: the real child's command from /proc, then a
    GPU lost and back while the other keeps updating."""
    train, serve = children.start("train_sim.py"), children.start("serve_sim.py")
    driver = Driver(tmp_path, scenario=two_gpus(train, serve, "10G"))
    tui = Tui(["--refresh-rate", "0.5"], cols=140, rows=40, env=driver.env, home=driver.home)
    try:
        screen = tui.wait_for(lambda s: "train_sim.py" in s and "serve_sim.py" in s)
        assert "NVIDIA H100 80GB HBM3" in screen and "NVIDIA A100-SXM4-40GB" in screen
        assert str(train) in screen
        driver.write(two_gpus(train, serve, "30G", "gpu 1 lost 1"))
        screen = tui.wait_for(lambda s: "lost" in s.lower() and "30.0G" in s)
        assert "serve_sim.py" not in screen  # a lost GPU lists nothing
        driver.write(two_gpus(train, serve, "30G"))
        tui.wait_for("serve_sim.py", timeout=30)  # retried every 5 s, then back
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_a_call_that_hangs_on_one_gpu_does_not_stall_the_others(
    tmp_path: Path, children: Children
) -> None:
    """A driver call that does not return (a GPU falling off the bus) on GPU 1: GPU 0 keeps
    updating, GPU 1 says which call hangs, the sampler is not restarted, and GPU 1 is read
    again once the call returns."""
    train, serve = children.start("train_sim.py"), children.start("serve_sim.py")
    hang = "delay 1 nvmlDeviceGetMemoryInfo_v2 25000000"  # 25 s
    driver = Driver(tmp_path, scenario=two_gpus(train, serve, "10G", hang))
    # --once answers in bounded time (the default wait for one GPU is 2 s).
    out = driver.run("--once", "--json", timeout=30)
    assert out.returncode == 0, out.stderr
    g0, g1 = json.loads(out.stdout)["gpus"]
    assert g0["state"] == "ok" and g0["memory"]["used_bytes"] == 10 * GIB
    assert g1["state"] == "lost" and "not responding" in g1["note"]
    assert "nvmlDeviceGetMemoryInfo" in g1["note"]
    tui = Tui(["--refresh-rate", "0.5"], cols=140, rows=40, env=driver.env, home=driver.home)
    try:
        tui.wait_for(lambda s: "train_sim.py" in s and "not responding" in s, timeout=30)
        sampler = tui.actors()["vramtop: sampler"]
        driver.write(two_gpus(train, serve, "30G", hang))
        tui.wait_for("30.0G", timeout=15)  # GPU 0 still follows the driver
        # Past the heartbeat timeout (15 s) with the call still hanging: no restart.
        deadline = time.monotonic() + 17
        while time.monotonic() < deadline:
            tui.pump(0.5)
        assert tui.actors()["vramtop: sampler"] == sampler, "the sampler was restarted"
        driver.write(two_gpus(train, serve, "30G"))
        tui.wait_for("serve_sim.py", timeout=40)  # the call returned: GPU 1 is read again
        tui.send("q")
        assert tui.wait_exit() == 0
        assert "GPU 1 responds again" in tui.text()
    finally:
        tui.close()


def test_driver_faults_mid_run_leave_the_monitor_drawing(
    tmp_path: Path, children: Children
) -> None:
    """Mid-run, on the real NVML path: calls start failing with UNKNOWN and TIMEOUT, the process
    list names PIDs that do not exist, then thousands of processes. The monitor keeps drawing
    GPU 0, says what failed, and no actor is restarted."""
    train, serve = children.start("train_sim.py"), children.start("serve_sim.py")
    driver = Driver(tmp_path, scenario=two_gpus(train, serve, "10G"))
    tui = Tui(["--refresh-rate", "0.5"], cols=140, rows=40, env=driver.env, home=driver.home)
    try:
        tui.wait_for(lambda s: "train_sim.py" in s and "serve_sim.py" in s)
        actors = tui.actors()
        failing = (
            "error 1 nvmlDeviceGetMemoryInfo_v2 999",
            "error 1 nvmlDeviceGetUtilizationRates 10",
        )
        driver.write(two_gpus(train, serve, "20G", *failing))
        screen = tui.wait_for("20.0G", timeout=15)  # GPU 0 goes on while GPU 1's calls fail
        gpu1 = screen[screen.index("GPU 1") :].splitlines()
        assert "util N/A" in gpu1[0] and "N/A used" in gpu1[1], "the failed fields alone are n/a"
        ghosts = [f"proc 1 {4_000_000 + i} compute 64M" for i in range(3)]
        driver.write(two_gpus(train, serve, "21G", *ghosts))
        tui.wait_for("21.0G", timeout=15)
        crowd = [f"proc {i % 2} {3_000_000 + i} compute 4M" for i in range(3000)]
        driver.write(two_gpus(train, serve, "22G", *crowd))
        tui.wait_for(lambda s: "22.0G" in s and " of 300" in s, timeout=30)
        assert tui.actors() == actors, "an actor was restarted"
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_a_screen_where_nothing_changes_sends_nothing(tmp_path: Path, children: Children) -> None:
    # Constant figures, the clock at minute resolution and a layout without a time axis: once
    # the history sparkline has filled, a second with nothing new on screen costs 0 bytes.
    serve = children.start("serve_sim.py")
    scenario = "\n".join(
        ["gpus 1", "gpu 0 name NVIDIA H100 80GB HBM3", "gpu 0 memory 80G 512M",
         "gpu 0 util 35 12", f"proc 0 {serve} compute 9G sm=20 mem=5", ""]
    )  # fmt: skip
    driver = Driver(tmp_path, scenario=scenario)
    config = driver.home / ".config" / "vramtop" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[display]\nclock = "minutes"\nlayout = "compact"\n')
    tui = Tui(["--refresh-rate", "0.5"], cols=140, rows=40, env=driver.env, home=driver.home)
    try:
        tui.wait_for("serve_sim.py")
        tui.pump(10.0)  # 20 samples: the 16-cell sparkline is full, the young-process re-reads done
        quiet: list[int] = []
        for _ in range(3):
            minute, mark = time.localtime().tm_min, len(tui.raw)
            tui.pump(3.0)
            if time.localtime().tm_min != minute:
                continue  # the clock turned: that is a change on screen
            quiet.append(len(tui.raw) - mark)
            break
        assert quiet == [0], f"{quiet} bytes in 3 s of an unchanging screen"
        assert "serve_sim.py" in tui.text()
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()
