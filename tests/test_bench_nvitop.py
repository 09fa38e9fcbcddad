"""scripts/bench_nvitop.py: vramtop and nvitop on the same simulated driver, as ratios.

nvitop comes from PyPI into a throwaway venv; where it cannot be installed the script says so in
one line and exits 0. The figures themselves are not judged (a noisy machine): only that both
monitors ran, every metric was measured for both, and the ratio is theirs.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

MARK = "VRAMTOP_BENCH_NVITOP_TEST_RUN"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_nvitop.py"
METRICS = ("CPU %", "PSS MiB", "first frame s", "tty B/s", "NVML calls/s", "processes")


def _marked(mark: str) -> list[int]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARK) == mark:
                found.append(proc.pid)
    return found


def test_quick_peer_bench_measures_both_monitors() -> None:
    mark = uuid.uuid4().hex
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,  # the first run installs nvitop from PyPI
        stdin=subprocess.DEVNULL,
        env={**os.environ, MARK: mark},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _marked(mark) == []  # both monitors and the sleeper processes are gone
    if done.stdout.startswith("nvitop comparison skipped:"):
        assert done.stdout.count("\n") == 1
        return
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 1 GPU / 16 procs")]
    assert [r.split("|")[2].strip() for r in rows] == list(METRICS)
    for row in rows:
        ours, theirs, ratio = (float(c) for c in row.strip("|").split("|")[2:])
        assert ours > 0 and theirs > 0, row
        assert math.isclose(ratio, ours / theirs, rel_tol=0.02, abs_tol=0.002), row
    processes = next(r for r in rows if "processes" in r)
    ours, theirs = (float(c) for c in processes.strip("|").split("|")[2:4])
    assert ours >= 4 and theirs >= 1  # vramtop's actors were all counted, not just the first
