"""scripts/gpu_check.sh, the one prepared check for a machine with a real GPU, runs to its end on
the simulated driver: time on a lent GPU is too scarce to find a broken script there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from simdriver.harness import Driver

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"


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
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = (out / "summary.txt").read_text()
    assert "schema: valid" in summary
    assert "0 NVIDIA H100 80GB HBM3 ok total 85899345920" in summary
    assert "nvmlDeviceGetComputeRunningProcesses_v3: measured 24 bytes" in summary
    assert "slowest NVML calls" in summary
    assert "exit status 0" in summary  # the monitor quit on q
    assert "NVIDIA H100 80GB HBM3" in (out / "screen.txt").read_text()
