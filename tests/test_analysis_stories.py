"""What a user sees on the patterns the evaluation found hard: ranks filling a card together, the
first rise of a sawtooth, an epoch-boundary staircase, and rows whose phase and rate must agree.

Each test replays a labelled trace (``tests/traces.py``) tick by tick through the analyzer core,
as ``scripts/eval_analysis.py`` does, over several noise seeds, and asserts on the verdicts,
reasons and alerts the UI and every output show.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from traces import (
    Trace,
    crash_loop,
    epoch_staircase,
    near_full_sawtooth,
    ranks,
    realise,
    slow_sawtooth,
)

from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
from vramtop.analysis.model import OOM_RISK, TIGHT, AnalysisResult
from vramtop.config import Config

HISTORY = 300  # samples, as the live monitor keeps


def replay(trace: Trace) -> Iterator[tuple[float, AnalysisResult]]:
    """(seconds since the trace began, the analysis) per tick."""
    analyzer = Analyzer(Config())
    context = AnalysisContext(
        preallocates={i: True for i in trace.preallocates}, owners=trace.owners
    )
    alive = trace.alive if trace.alive is not None else np.ones(trace.used.shape, bool)
    for k in range(trace.ts.size):
        lo = max(0, k + 1 - HISTORY)
        last = trace.gpu_used[k]
        gpu = GpuHistory(
            0, trace.ts[lo : k + 1], trace.gpu_used[lo : k + 1], total=trace.total,
            free=trace.total - last if math.isfinite(last) else math.nan,
        )  # fmt: skip
        rows = np.flatnonzero(alive[:, k])
        procs = ProcessHistories(
            trace.ts[lo : k + 1], trace.used[rows, lo : k + 1],
            tuple(trace.identities[i] for i in rows), np.zeros(rows.size, dtype=np.int64),
        )  # fmt: skip
        yield float(trace.ts[k] - trace.ts[0]), analyzer.step([gpu], procs, context)


def alarmed(result: AnalysisResult) -> bool:
    return result.gpus[0].oom is not None or any(p.verdict == OOM_RISK for p in result.processes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_four_ranks_filling_the_card_together_are_oom_risk(seed: int) -> None:
    # Four ranks at 511 MiB/s each: the card is full ~12 s after they start. Each alone would
    # take a while; together every row says it shares the blame, with the ETA, before the OOM.
    trace = realise(ranks(4, 511, 4, 40), seed, 3.0)
    warned = [
        (t, r) for t, r in replay(trace)
        if len(r.processes) == 4 and all(p.verdict == OOM_RISK for p in r.processes)
    ]  # fmt: skip
    assert warned, "the four ranks never showed OOM risk"
    t, result = warned[0]
    assert trace.oom_ts is not None and trace.ts[0] + t < trace.oom_ts
    for p in result.processes:
        assert p.reason.startswith("1 of 4 growing"), p.reason
        assert "GPU full in ~" in p.reason and p.eta is not None
    assert result.gpus[0].oom is not None


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize(
    "spec",
    [
        lambda: slow_sawtooth(3, 60, 0.85, 24),
        lambda: slow_sawtooth(6, 45, 0.88, 80),
        lambda: near_full_sawtooth(8, 18, 0.99, 80),
        lambda: near_full_sawtooth(2, 10, 0.97, 24),
    ],
    ids=["slow 3G/60s", "slow 6G/45s", "near full 8G/18s", "near full 2G/10s"],
)
def test_a_sawtooth_that_fits_never_alarms_first_rise_included(spec: object, seed: int) -> None:
    assert callable(spec)
    trace = realise(spec(), seed, 2.0)
    forecast = False
    for t, result in replay(trace):
        assert not alarmed(result), f"{trace.name}: OOM alarm at {t:.0f}s"
        forecast |= any(p.verdict == TIGHT and p.eta is not None for p in result.processes)
    if trace.name.startswith("slow"):
        # Its first rise is not hidden either: a forecast with its ETA, TIGHT at most.
        assert forecast


def test_an_epoch_staircase_is_warned_the_whole_warning_time_ahead() -> None:
    # 2 GiB every 90 s: with 300 samples of history only three steps are ever in view.
    trace = realise(epoch_staircase(2, 90, 20, 48), 34, 2.0)
    assert trace.oom_ts is not None
    first = next(t for t, r in replay(trace) if alarmed(r))
    assert trace.oom_ts - (trace.ts[0] + first) >= Config().alerts.oom_warning_seconds


def test_no_row_tells_a_phase_its_rate_contradicts() -> None:
    # A leak OOM-killed and restarted: the crash takes the memory back while the held phase
    # still says growing; a warning is held across it. Phase, rate and reason are one story.
    trace = realise(crash_loop(25, 6, 24, 2, 1, gap_s=15), 22, 2.0)
    rows = 0
    for t, result in replay(trace):
        assert not result.gpus[0].trend.contradicted, (t, result.gpus[0].trend)
        for p in result.processes:
            rows += 1
            assert not p.trend.contradicted, (t, p.trend)
            if p.trend.phase != "growing":
                assert "grows" not in p.reason, (t, p.trend, p.reason)
    assert rows > trace.ts.size
