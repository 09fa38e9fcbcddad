"""scripts/soak.py: the whole program left running on churning simulated GPUs stays flat.

The CI version (``--quick``): two minutes of ``vramtop --demo`` at 8 GPUs x 256 processes with
churn, every vramtop process measured. Tolerances are the quick plan's, stated here again:
RSS (and anonymous RSS) of any one process may move by at most 4 MiB per 1000 samples (a
1 MiB allocator arena step inside the short window stays under it, a leak of 4 KiB per
sample does not), fds, threads, children and /dev/shm entries by 10 per 1000 samples (a leak
of one per sample is 1000). The fitting itself is checked on synthetic series, so a leak is
seen for what it is.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "scripts" / "soak.py"
KIB, MIB = 1024, 1024 * 1024
RSS_LIMIT = 6 * MIB  # per process, per 1000 samples (as soak.py --quick; reason there)
COUNT_LIMIT = 10.0  # fds, threads, children, /dev/shm entries per 1000 samples
ACTORS = {"supervisor", "sampler", "analyzer", "enricher", "exporter", "render"}


def _soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module
    spec.loader.exec_module(module)
    return module


def test_two_minutes_of_churn_leave_every_process_flat(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(SOAK), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(out.read_text())
    # 2 minutes at 2 Hz is 240 samples; a loaded machine may fall behind, never this far.
    assert doc["samples"] >= 120, doc["samples"]
    slopes = doc["slopes"]
    assert {s["who"] for s in slopes} >= ACTORS | {"all"}, "every vramtop process was measured"
    for s in slopes:
        if s["who"] == "all":
            continue
        limit = RSS_LIMIT if s["metric"] in ("rss", "anon") else COUNT_LIMIT
        assert s["per_1000"] <= limit, s
    assert doc["exit_status"] == 0 and not doc["leftover_procs"] and not doc["leftover_shm"]
    assert "verdict: flat" in done.stdout


def _run(soak: ModuleType, leak_per_sample: float, fd_every: int) -> object:
    plan = soak.QUICK
    run = soak.Run(plan)
    for i in range(100):
        samples = 10 * i
        noise = (i * 7919 % 13 - 6) * 64 * KIB  # allocator jitter, bounded
        procs = {
            role: {"pid": 1.0, "rss": 40 * MIB + noise, "anon": 30 * MIB + noise, "fds": 20.0,
                   "threads": 3.0}
            for role in ACTORS
        }  # fmt: skip
        procs["analyzer"]["anon"] += leak_per_sample * samples
        procs["render"]["fds"] += samples // fd_every if fd_every else 0
        run.probes.append(soak.Probe(float(i), samples, samples * 1.0, procs, 13, 19))
    run.exit_status = 0
    return run


def test_a_leak_is_reported_and_jitter_is_not() -> None:
    soak = _soak()
    flat = _run(soak, 0.0, 0)
    assert soak.problems(flat, soak.slopes(flat)) == []
    leaky = _run(soak, 8 * KIB, 1)  # 8 KiB of heap and one fd per sample
    found = soak.problems(leaky, soak.slopes(leaky))
    assert any(p.startswith("anon of analyzer grows") for p in found), found
    assert any(p.startswith("fds of render grows") for p in found), found
    assert not any("sampler" in p for p in found), "only the leaking processes are named"
