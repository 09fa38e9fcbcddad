"""The analysis cores never raise, whatever finite, empty, constant, n/a or huge series arrive."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vramtop.analysis import pelt
from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
from vramtop.analysis.model import (
    GROWING,
    OK,
    OOM_RISK,
    SHRINKING,
    STABLE,
    TIGHT,
    UNKNOWN,
    VOLATILE,
)
from vramtop.analysis.oom import predict_oom
from vramtop.analysis.spikes import spike_batch
from vramtop.analysis.trend import PHASES, classify_batch, least_squares, theil_sen
from vramtop.config import Config
from vramtop.messages import ProcessIdentity

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=False, width=64),
    st.floats(min_value=0, max_value=2.0**40),
    st.just(math.nan),
)
series = st.lists(values, min_size=0, max_size=80)
SETTINGS = settings(max_examples=60, deadline=None)


def _ts(n: int, jitter: list[float] | None = None) -> np.ndarray:
    return 1_700_000_000.0 + np.arange(n, dtype=np.float64)


@SETTINGS
@given(series, st.floats(allow_nan=True, allow_infinity=False))
def test_trend_cores_never_raise(data: list[float], total: float) -> None:
    v = np.asarray(data, dtype=np.float64)
    t = _ts(v.size)
    batch = classify_batch(t, v, total)
    assert PHASES[int(batch.phase[0])] in (UNKNOWN, STABLE, GROWING, SHRINKING, VOLATILE)
    assert np.all(np.isfinite(batch.rate_mib_s)) or v.size == 0
    least_squares(t, v)
    theil_sen(t, v)
    spikes = spike_batch(t, v)
    assert np.all(spikes.need_mib >= 0)


@SETTINGS
@given(series, st.floats(allow_nan=True, allow_infinity=False))
def test_oom_never_raises_and_is_sane(data: list[float], total: float) -> None:
    v = np.asarray(data, dtype=np.float64)
    p = predict_oom(_ts(v.size), v, total)
    if p is not None:
        assert 0.0 <= p.confidence <= 1.0
        assert p.eta_low_s <= p.eta_s <= p.eta_high_s


@settings(max_examples=25, deadline=None)
@given(series)
def test_pelt_never_raises(data: list[float]) -> None:
    v = np.asarray(data, dtype=np.float64)
    for seg in pelt.segments(_ts(v.size), v, starts_in_window=True):
        assert seg.end_ts >= seg.start_ts
    pelt.current_segment_start(_ts(v.size), v)


@settings(max_examples=30, deadline=None)
@given(st.lists(series, min_size=0, max_size=4), st.sampled_from([0.0, 1e12, math.nan, 1e300]))
def test_analyzer_step_never_raises(rows: list[list[float]], total: float) -> None:
    n = max((len(r) for r in rows), default=0)
    t = _ts(n)
    ids = tuple(ProcessIdentity(i, 0.0) for i in range(len(rows)))
    used = np.full((len(rows), n), np.nan)
    for i, r in enumerate(rows):
        used[i, n - len(r) :] = r
    procs = ProcessHistories(t, used, ids, np.zeros(len(rows), dtype=np.int64))
    gpu_used = np.nansum(used, axis=0) if rows else np.zeros(n)
    gpu = GpuHistory(0, t, gpu_used, total=total)
    analyzer = Analyzer(Config())
    for _ in range(2):
        out = analyzer.step([gpu], procs, AnalysisContext(selected=ids[0] if ids else None))
    assert len(out.processes) == len(rows)
    for p in out.processes:
        assert p.verdict in (OK, TIGHT, OOM_RISK)
        assert p.reason and "\n" not in p.reason
