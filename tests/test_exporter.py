"""``vramtop exporter``: two real instances on loopback ports, read back with prometheus_client's
own parser, as Prometheus would read them."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vramtop.actors.metrics import is_loopback, parse_listen

SCENARIO = """
name = "exporter-test"
description = "2 GPUs; a process that leaves after 6 s"
seed = 5

[[gpu]]
name = "NVIDIA H100 80GB HBM3"
memory_mib = 81559
power_limit_w = 700

[[gpu]]
name = "NVIDIA L4"
memory_mib = 23034
power_limit_w = 72

[[process]]
name = "trainer"
gpu = 0
argv = ["python", "train.py", "--epochs", "3"]
memory = { curve = "linear", base_mib = 4000, rate_mib_s = 40 }

[[process]]
name = "server"
gpu = 1
argv = ["python", "serve.py"]
memory = { curve = "constant", mib = 9000 }

[[process]]
name = "leaver"
gpu = 1
argv = ["python", "leaver.py"]
stop = 6
memory = { curve = "constant", mib = 1200 }
"""


Scrape = dict[str, list[tuple[dict[str, str], float]]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Exporter:
    def __init__(self, tmp: Path, hostname: str, config: str = "") -> None:
        self.port = _free_port()
        scenario = tmp / "exporter.toml"
        scenario.write_text(SCENARIO)
        cfg = tmp / f"{hostname}.toml"
        cfg.write_text(config)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vramtop", "exporter", "--demo", str(scenario),
             "--listen", f"127.0.0.1:{self.port}", "--hostname", hostname,
             "--refresh-rate", "0.5", "--config", str(cfg)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def scrape(self) -> Scrape:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        out: Scrape = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.setdefault(s.name, []).append((dict(s.labels), s.value))
        return out

    def wait(self, check: object, timeout: float = 30.0) -> Scrape:
        deadline = time.monotonic() + timeout
        last: Scrape = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            try:
                last = self.scrape()
            except OSError:
                time.sleep(0.2)
                continue
            if check(last):  # type: ignore[operator]
                return last
            time.sleep(0.2)
        raise AssertionError(f"timed out; last scrape had {sorted(last)}")

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture
def exporters(tmp_path: Path) -> Iterator[tuple[Exporter, Exporter]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Exporter(tmp_path / "a", "host-a")
    b = Exporter(tmp_path / "b", "host-b", "[exporter]\nmax_process_series = 1\n")
    try:
        yield a, b
    finally:
        for e in (a, b):
            if e.proc.poll() is None:
                e.stop()


def _pids(metrics: Scrape) -> set[str]:
    return {labels["pid"] for labels, _ in metrics.get("vramtop_process_memory_bytes", [])}


def test_two_exporters_expose_named_labelled_series_in_base_units(
    exporters: tuple[Exporter, Exporter],
) -> None:
    a, b = exporters
    m = a.wait(lambda m: len(_pids(m)) == 3 and "vramtop_process_phase" in m)
    # Names: the vramtop_ prefix and a unit suffix on everything that has a unit.
    for name in m:
        assert name.startswith("vramtop_"), name
    for name in ("total", "used", "reserved", "free"):
        assert f"vramtop_gpu_memory_{name}_bytes" in m
    gpu = {labels["gpu"]: value for labels, value in m["vramtop_gpu_memory_total_bytes"]}
    assert gpu == {"0": 81559 * 2**20, "1": 23034 * 2**20}
    (labels, _), *_ = m["vramtop_gpu_memory_used_bytes"]
    assert {"hostname", "gpu", "uuid", "model"} <= labels.keys()
    assert labels["hostname"] == "host-a" and labels["uuid"].startswith("GPU-")
    assert all(0.0 <= v <= 1.0 for _, v in m["vramtop_gpu_utilization_ratio"])
    # Processes: their own labels, memory in bytes, phase and verdict as labels.
    procs = {lab["command"]: (lab, v) for lab, v in m["vramtop_process_memory_bytes"]}
    lab, used = procs["python serve.py"]
    assert used == 9000 * 2**20
    for key in ("hostname", "gpu", "uuid", "pid", "user", "command", "framework", "container"):
        assert key in lab, key
    assert lab["gpu"] == "1" and lab["hostname"] == "host-a"
    verdicts = {lab["command"]: lab["verdict"] for lab, v in m["vramtop_process_verdict"] if v}
    assert set(verdicts) == set(procs) and all(verdicts.values())
    # The leak gets a growth rate in bytes per second once its phase is known.
    m = a.wait(
        lambda m: any(
            lab["command"].startswith("python train.py") and lab["phase"] == "growing"
            for lab, _ in m.get("vramtop_process_phase", [])
        )
    )
    rates = {lab["command"]: v for lab, v in m["vramtop_process_memory_growth_bytes_per_second"]}
    assert 30 * 2**20 < rates["python train.py --epochs 3"] < 50 * 2**20
    # The other instance is another host.
    other = b.wait(lambda m: "vramtop_gpu_info" in m)
    assert {lab["hostname"] for lab, _ in other["vramtop_gpu_info"]} == {"host-b"}


def test_an_exited_process_disappears_and_the_cap_keeps_the_largest(
    exporters: tuple[Exporter, Exporter],
) -> None:
    a, b = exporters
    m = a.wait(lambda m: len(_pids(m)) == 3)
    leaver = {lab["pid"] for lab, _ in m["vramtop_process_memory_bytes"]
              if lab["command"] == "python leaver.py"}  # fmt: skip
    assert len(leaver) == 1
    m = a.wait(lambda m: len(_pids(m)) == 2, timeout=30)
    assert not leaver & _pids(m), "the exited process still has series"
    for name, samples in m.items():
        if name.startswith("vramtop_process_") and name != "vramtop_process_series_dropped":
            assert not any(lab.get("pid") in leaver for lab, _ in samples), name
    # max_process_series = 1: only the largest process has series; the rest are counted.
    capped = b.wait(lambda m: m.get("vramtop_process_series_dropped", [({}, 0)])[0][1] >= 1)
    (lab, used), = capped["vramtop_process_memory_bytes"]  # fmt: skip
    assert lab["command"] == "python serve.py" and used == 9000 * 2**20
    total = sum(v for _, v in capped["vramtop_gpu_processes"])
    assert capped["vramtop_process_series_dropped"][0][1] == total - 1
    code, err = a.stop()
    assert code == 0 and "Traceback" not in err


def test_listen_is_checked_and_loopback_is_the_default(tmp_path: Path) -> None:
    assert parse_listen("127.0.0.1:9400") == ("127.0.0.1", 9400)
    assert parse_listen("[::1]:9400") == ("::1", 9400)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    for bad in ("nonsense", "127.0.0.1:0", "127.0.0.1:99999"):
        out = subprocess.run(
            [sys.executable, "-m", "vramtop", "exporter", "--demo", "--listen", bad],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert "--listen" in out.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "vramtop", "exporter", "--demo", "--listen",
             f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 2 and "cannot listen on" in out.stderr
    assert out.stderr.count("\n") == 1


def test_restarts_kv_cache_and_allocator_figures_become_series_where_the_document_has_them() -> (
    None
):
    from prometheus_client.parser import text_string_to_metric_families

    from vramtop.export.prometheus import exposition, families

    process = {
        "pid": 7, "start_time": 1.5, "user": "u", "command": "python serve.py", "same_user": True,
        "used_bytes": 2**30, "framework": "vLLM", "container": None,
        "analysis": {"phase": "stable", "rate_mib_s": 0.0, "verdict": "TIGHT",
                     "eta": {"eta_s": 90.0, "eta_low_s": 60.0, "eta_high_s": 150.0,
                             "confidence": 0.8}},
        "lineage": {"restarts": 2, "previous": []},
        "server": {"kind": "vllm", "kv_cache_usage": 0.97, "running": 3, "waiting": 12},
        "deep": {"devices": [{"allocated_bytes": 5, "reserved_bytes": 9,
                              "num_alloc_retries": 4}]},
    }  # fmt: skip
    gpu = {"index": 0, "uuid": "GPU-x", "name": "H100", "memory": {"total_bytes": 2**34},
           "processes": [process], "analysis": None}  # fmt: skip
    text = exposition(families({"gpus": [gpu]}, "h", 10)).decode()
    got = {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("vramtop_process_")
    }
    assert got["vramtop_process_restarts"] == 2
    assert got["vramtop_process_kv_cache_usage_ratio"] == 0.97
    assert got["vramtop_process_requests_waiting"] == 12
    assert got["vramtop_process_torch_allocated_bytes"] == 5
    assert got["vramtop_process_torch_reserved_bytes"] == 9
    assert got["vramtop_process_torch_alloc_retries_total"] == 4
    assert got["vramtop_process_oom_eta_seconds"] == 90
    assert got["vramtop_process_oom_eta_low_seconds"] == 60
    assert got["vramtop_process_oom_confidence_ratio"] == 0.8
