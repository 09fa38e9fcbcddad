#!/usr/bin/env python3
"""The analyzer's memory across 100 selection changes with the detail panel open: PELT in a
helper process (as the live analyzer runs it) against PELT in the analyzer itself.

Where it sits: outside the data flow. Each variant runs in a fresh process that steps
:class:`vramtop.analysis.analyzer.Analyzer` over 64 processes (a leak, flats, sawtooths) the way
the analyzer actor does: 20 ticks with no panel open, then 100 ticks whose selected process
changes every tick (segments are computed each time). It prints that process's PSS (proportional
set size, psutil) before and after, and the ratio; the helper's own memory is not the
analyzer's (it leaves 10 s after the last request). Compare the two rows with each other.

Usage: ``.venv/bin/python scripts/bench_pelt.py``
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import sys
import numpy as np
import psutil
sys.path.insert(0, {root!r})
from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
from vramtop.analysis.segmenter import InProcess, PeltHelper
from vramtop.messages import ProcessIdentity

GiB, MiB = float(1 << 30), float(1 << 20)
n, p = 300, 64
t = 1.7e9 + np.arange(n, dtype=np.float64)
rng = np.random.default_rng(0)
g = np.arange(n, dtype=np.float64)
rows = [2 * GiB + g * 20 * MiB] + [
    (1 + i % 4) * GiB + (i % 3 == 1) * (g % 30) * 30 * MiB for i in range(1, p)
]
used = np.vstack(rows) + rng.normal(0, 2 * MiB, (p, n))
ids = tuple(ProcessIdentity(1000 + i, 1.0 + i) for i in range(p))
procs = ProcessHistories(t, used, ids, np.zeros(p, dtype=np.int64))
total = 80 * GiB
gpu_used = used.sum(axis=0) + 0.5 * GiB
gpu = GpuHistory(0, t, gpu_used, total=total, free=total - gpu_used[-1])
segmenter = PeltHelper() if {helper!r} else InProcess()
analyzer = Analyzer(segmenter=segmenter)
me = psutil.Process()
for _ in range(20):
    analyzer.step([gpu], procs, AnalysisContext())
before = me.memory_full_info().pss
got = 0
for k in range(100):
    out = analyzer.step([gpu], procs, AnalysisContext(selected=ids[k % p]))
    got += sum(1 for r in out.processes if r.segments)
after = me.memory_full_info().pss
print(before, after, got, "ruptures" in sys.modules)
segmenter.close()
"""


def run(helper: bool) -> tuple[int, int, int, bool]:
    code = CHILD.format(root=str(ROOT), helper=helper)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    ).stdout.split()
    return int(out[0]), int(out[1]), int(out[2]), out[3] == "True"


def main() -> int:
    print("| PELT runs | analyzer PSS before | after 100 selection changes | ratio | "
          "ticks with segments | ruptures in the analyzer |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for helper in (True, False):
        before, after, got, loaded = run(helper)
        where = "in a helper process" if helper else "in the analyzer"
        print(
            f"| {where} | {before / 2**20:.1f} MiB | {after / 2**20:.1f} MiB | "
            f"{after / before:.2f} | {got}/100 | {'yes' if loaded else 'no'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
