"""scripts/gpu_check.sh: what can be proven without a GPU (time on a lent GPU is too scarce to
find a broken script there).

The whole check runs through on the simulated driver (NVML without torch: the CUDA workloads
are skipped, everything else runs); dry mode passes on this machine (simulated GPUs following
the workers' patterns); an interpreter without vramtop's dependencies gets one line naming them,
never a traceback; the GPU-only parts that need no CUDA (timing vramtop's NVML calls, the
VRAM-versus-torch rule) run against the simulated driver and synthetic series.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from nvml_sim import ERROR_NOT_SUPPORTED, SimDriver, SimGpu, SimProcess, UtilSample, install
from simdriver.harness import Driver

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
MIB = 1 << 20


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with nothing but the standard library (no pip: nothing can be installed)."""
    where = tmp_path_factory.mktemp("bare")
    subprocess.run(
        [sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip", str(where / "venv")],
        check=True,
        timeout=120,
    )
    return where / "venv" / "bin" / "python"


@pytest.mark.parametrize("flags", ["", " -I"])
def test_an_interpreter_without_the_dependencies_gets_one_line(
    bare_python: Path, flags: str
) -> None:
    env = dict(os.environ, PYTHON=f"{bare_python}{flags}")
    done = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for module in ("numpy", "psutil", "pynvml", "blessed", "setproctitle", "pexpect", "pyte"):
        assert module in lines[0]
    assert "--wheels" in lines[0], "the way out is named"


def test_wheels_without_pip_is_one_line_too(bare_python: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON=str(bare_python))
    done = subprocess.run(
        [str(SCRIPT), "--wheels", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "pip" in done.stderr


def _results(summary: str) -> dict[str, tuple[str, str]]:
    """check -> (measured, result) from the summary's table."""
    rows = [ln.split("|") for ln in summary.splitlines() if ln.startswith("| ")]
    return {r[1].strip(): (r[2].strip(), r[4].strip()) for r in rows if r[4].strip() != "result"}


def test_gpu_check_runs_through_on_the_simulated_driver(tmp_path: Path) -> None:
    driver = Driver(tmp_path, scenario="gpu 0 name NVIDIA H100 80GB HBM3\nproc 0 4242 compute 3G\n")
    out = tmp_path / "out"
    run_env = {**driver.env, "PYTHON": sys.executable, "OUT": str(out)}
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=240,
        env=run_env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    results = _results((out / "summary.txt").read_text())
    assert results["--once --json: schema"] == ("valid", "ok")
    assert results["--once --json: GPU 0"][0].startswith(
        "NVIDIA H100 80GB HBM3, ok, total 85899345920"
    )
    stride = results["NVML nvmlDeviceGetComputeRunningProcesses_v3: record stride"]
    assert stride == ("measured 24 bytes", "ok")
    assert results["NVML nvmlDeviceGetMemoryInfo_v2"][1] == "ok"
    assert results["monitor: quit with q"] == ("exit 0", "ok")
    assert results["CUDA workloads"][1] == "skipped", "no torch here: said, not failed"
    assert "NVIDIA H100 80GB HBM3" in (out / "screen.txt").read_text()


def test_dry_mode_passes_and_says_so(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path))
    # The dry timeline is the GPU one, in real time (~75 s); gpu_check.sh cuts it at 175 s.
    done = subprocess.run(
        [str(SCRIPT), "--dry"], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dry mode" in done.stderr and "skipped" in done.stderr
    results = {k: v[1] for k, v in _results((tmp_path / "summary.txt").read_text()).items()}
    assert results["phase steps: climbing"] == "ok"
    assert results["phase steps: plateau"] == "ok"
    assert results["phase spike: the spike"] == "ok"
    assert results["monitor: quit with q"] == "ok"
    assert results["VRAM vs torch"] == "skipped"
    assert "FAIL" not in results.values()
    for name in ("record.ndjson", "once.json", "screen.txt", "summary.txt", "check.log"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_every_nvml_function_is_timed_against_the_simulated_driver() -> None:
    gc = _checker()
    gpu = SimGpu(
        processes={"compute": [SimProcess(4321, 6 * 1024 * MIB)], "graphics": [], "mps": []},
        util_samples=[UtilSample(4321, 1, 50, 20)],
        errors={"nvmlDeviceGetFanSpeed": ERROR_NOT_SUPPORTED},
    )
    with install(SimDriver([gpu])):
        probe = gc.NvmlProbe()
        probe.start()
        time.sleep(0.5)
        probe.stop.set()
        probe.join(5)
    assert not probe.failure
    assert probe.source.startswith("vramtop's NvmlBackend"), "vramtop's own calls are timed"
    ctx = gc.Ctx(ROOT, ROOT, {}, dry=False)
    gc.latency_rows(ctx, probe)
    rows = {c.name: c for c in ctx.checks}
    timed = ("nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetComputeRunningProcesses",
             "nvmlDeviceGetPowerUsage", "nvmlDeviceGetUtilizationRates")  # fmt: skip
    for name in timed:
        row = next(r for n, r in rows.items() if n.startswith(f"NVML {name}") and "stride" not in n)
        assert row.status == "ok" and "median" in row.measured, row
    assert rows["NVML nvmlDeviceGetFanSpeed"].status == "skipped", "not supported is not a failure"
    assert [u for _, u in probe.used[4321]][-1] == 6 * 1024 * MIB, "NVML's own figure is kept"


def _series(states: list[dict[str, Any]], extra_mib: dict[str, float]) -> list[Any]:
    """What vramtop would record at 2 Hz: reserved + a 500 MiB context (+ extra per state)."""
    rows = []
    for s in states:
        t = s["t"]
        while t < s["until"]:
            used = s["reserved"] + (500 + extra_mib.get(s["state"], 0.0)) * MIB
            rows.append((t, int(used), "stable"))
            t += 0.5
    return rows


def test_vram_rule_accepts_reserved_plus_context_and_flags_what_is_off() -> None:
    gc = _checker()
    states = gc.simulated_states(1000.0, 1.0)["steps"]
    ok = gc.Ctx(ROOT, ROOT, {}, dry=False)
    gc.check_vram(ok, "steps", states, _series(states, {}), None)
    assert ok.checks and all(c.status == "ok" for c in ok.checks), ok.checks
    assert ok.checks[0].measured == "500 MiB", "the context is measured in the baseline"
    off = gc.Ctx(ROOT, ROOT, {}, dry=False)
    gc.check_vram(off, "steps", states, _series(states, {"plateau": 300}), None)
    failed = [c.name for c in off.checks if c.status == "FAIL"]
    assert failed == ["VRAM steps: plateau"]
