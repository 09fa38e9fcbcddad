"""PELT off the hot path: the helper process computes segments and the analyzer never imports
ruptures or SciPy; the helper goes away when nobody asks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from vramtop.analysis.segmenter import installed

pytestmark = pytest.mark.skipif(not installed(), reason="needs the pelt extra (ruptures)")

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
    from vramtop.analysis.segmenter import PeltHelper
    from vramtop.messages import ProcessIdentity

    GiB, MiB = float(1 << 30), float(1 << 20)
    t = 1.7e9 + np.arange(300.0)
    rng = np.random.default_rng(0)
    ramp = 4 * GiB + np.arange(300.0) * 50 * MiB + rng.normal(0, 2 * MiB, 300)
    flat = 2 * GiB + rng.normal(0, 2 * MiB, 300)
    ids = (ProcessIdentity(10, 1.0), ProcessIdentity(11, 2.0))
    procs = ProcessHistories(t, np.vstack([ramp, flat]), ids, np.zeros(2, dtype=np.int64))
    gpu = GpuHistory(0, t, ramp + flat, total=80 * GiB, free=80 * GiB - ramp[-1] - flat[-1])
    helper = PeltHelper(idle_s=1.0)
    analyzer = Analyzer(segmenter=helper)
    for k in range(100):  # 100 selection changes
        out = analyzer.step([gpu], procs, AnalysisContext(selected=ids[k % 2]))
    out = analyzer.step([gpu], procs, AnalysisContext(selected=ids[0]))
    segs = out.processes[0].segments
    print("segments", len(segs), segs[0].label if segs else "-", out.processes[0].segments_note)
    print("loaded", "ruptures" in sys.modules, "scipy" in sys.modules)
    print("helpers", helper.started, helper.alive())
    time.sleep(2.5)
    print("after idle", helper.alive())
    out = analyzer.step([gpu], procs, AnalysisContext(selected=None))
    print("unselected", out.processes[0].segments, helper.alive())
    """
)


def test_the_helper_computes_segments_and_the_analyzer_never_imports_ruptures() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    assert out[0].startswith("segments 1 leak"), out  # a steady ramp is one segment
    assert out[1] == "loaded False False", out  # neither ruptures nor SciPy in the analyzer
    assert out[2] == "helpers 1 True", out  # one helper served all 101 requests
    assert out[3] == "after idle False", out  # and left once nobody asked
    assert out[4] == "unselected () False", out  # no detail panel open: no helper at all
