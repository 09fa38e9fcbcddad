"""Survival verdicts: OK / TIGHT / OOM risk and the one-line reason the UI shows."""

from __future__ import annotations

import numpy as np

from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
from vramtop.analysis.model import OK, OOM_RISK, TIGHT, ProcessAnalysis
from vramtop.analysis.verdict import VerdictInput, judge
from vramtop.config import Config
from vramtop.messages import ProcessIdentity

MiB = float(1 << 20)
GiB = float(1 << 30)
N = 200
T = 1_700_000_000.0 + np.arange(N, dtype=np.float64)
RNG = np.random.default_rng(3)
A, B = ProcessIdentity(100, 1.0), ProcessIdentity(200, 2.0)


def run(
    rows: list[np.ndarray], total: float, context: AnalysisContext | None = None
) -> list[ProcessAnalysis]:
    ids = (A, B)[: len(rows)]
    used = np.vstack(rows)
    procs = ProcessHistories(T, used, ids, np.zeros(len(rows), dtype=np.int64))
    gpu_used = np.nansum(used, axis=0) + 0.5 * GiB
    gpu = GpuHistory(0, T, gpu_used, total=total, free=total - gpu_used[-1])
    analyzer = Analyzer(Config())
    for k in range(150, N + 1, 10):
        sub = ProcessHistories(T[:k], used[:, :k], ids, procs.gpu_index)
        out = analyzer.step(
            [GpuHistory(0, T[:k], gpu_used[:k], total=total, free=gpu.free)], sub, context
        )
    for p in out.processes:
        assert p.reason and "\n" not in p.reason
    return list(out.processes)


def flat(level: float, sigma_mib: float = 2.0) -> np.ndarray:
    return level + RNG.normal(0, sigma_mib * MiB, N)


def test_lone_stable_process_on_a_full_gpu_is_ok() -> None:
    (p,) = run([flat(22.5 * GiB)], 24 * GiB)  # 96% full, by itself
    assert p.verdict == OK and p.trend.phase == "stable"
    assert "stable" in p.reason


def test_preallocating_server_at_92_percent_is_judged_by_its_kv_cache() -> None:
    server = flat(0.92 * 80 * GiB - 0.5 * GiB)
    (p,) = run([server], 80 * GiB, AnalysisContext(preallocates={A: True}))
    assert p.verdict == OK and "KV cache" in p.reason
    (q,) = run(
        [server], 80 * GiB, AnalysisContext(preallocates={A: True}, kv_cache_usage={A: 0.97})
    )
    assert q.verdict == TIGHT and "97%" in q.reason


def spiky(base: float, amplitude: float) -> np.ndarray:
    t = np.arange(N)
    return flat(base) + np.where((t % 40) < 4, amplitude, 0.0)


def test_spike_that_fits_is_ok_and_one_that_does_not_is_oom_risk() -> None:
    fits, _ = run([spiky(6 * GiB, 4 * GiB), flat(4 * GiB)], 24 * GiB)
    assert fits.verdict == OK
    assert fits.trend.phase == "volatile"
    # A second tenant leaves 5.5 GiB free; the next 6 GiB spike will not fit.
    late, _ = run([spiky(8 * GiB, 6 * GiB), flat(10 * GiB)], 24 * GiB)
    assert late.verdict == OOM_RISK and "would not fit" in late.reason


def test_growth_is_judged_by_the_trend_eta_not_by_size() -> None:
    t = np.arange(N)
    slow = flat(2 * GiB) + t * 5 * MiB  # small process, growing, but the GPU is empty
    (p,) = run([slow], 80 * GiB)
    assert p.trend.phase == "growing" and p.verdict == OK
    nearing = flat(2 * GiB) + t * 40 * MiB  # ~6 minutes left: worth a look, not an alarm
    (q,) = run([nearing], 24 * GiB)
    assert q.verdict == TIGHT and "GPU full in" in q.reason
    fast = flat(2 * GiB) + t * 60 * MiB  # under the 5-minute warning
    (r,) = run([fast], 24 * GiB)
    assert r.verdict == OOM_RISK and "GPU full in" in r.reason


def test_judge_reason_is_one_line_for_odd_inputs() -> None:
    for level in (float("nan"), 0.0, 1e300):
        verdict, reason = judge(VerdictInput("stable", 0.0, level, 50, float("nan")))
        assert verdict == OK and reason and "\n" not in reason


def test_full_kv_cache_with_a_growing_queue_is_tight_even_when_vram_is_flat() -> None:
    server = flat(0.92 * 80 * GiB - 0.5 * GiB)  # flat VRAM: the pool was allocated at start
    busy = AnalysisContext(
        preallocates={A: True}, kv_cache_usage={A: 0.97}, waiting={A: 12}, queue_growing={A: True}
    )
    (p,) = run([server], 80 * GiB, busy)
    assert p.trend.phase == "stable"
    assert (
        p.verdict == TIGHT and p.reason == "pre-allocated pool, KV 97% full, 12 waiting and growing"
    )
    # The same full cache with nobody waiting is the pool doing its job.
    idle = AnalysisContext(preallocates={A: True}, kv_cache_usage={A: 0.97}, waiting={A: 0})
    (q,) = run([server], 80 * GiB, idle)
    assert q.verdict == OK and q.reason == "pre-allocated pool, KV 97%"


def test_server_at_92_percent_vram_with_20_percent_kv_is_ok() -> None:
    server = flat(0.92 * 80 * GiB - 0.5 * GiB)
    ctx = AnalysisContext(preallocates={A: True}, kv_cache_usage={A: 0.2}, waiting={A: 0})
    (p,) = run([server], 80 * GiB, ctx)
    assert p.verdict == OK and p.reason == "pre-allocated pool, KV 20%"
