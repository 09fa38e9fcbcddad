"""OOM prediction: when vramtop predicts, what it predicts, and when it keeps quiet."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vramtop.analysis import pelt
from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
from vramtop.analysis.oom import alert_passes, predict_oom
from vramtop.config import AlertsConfig, Config, OomPredictionConfig
from vramtop.messages import ProcessIdentity

MiB = float(1 << 20)
GiB = float(1 << 30)


def leak(seconds: int, rate_mib_s: float, base: float, seed: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    t = 1_700_000_000.0 + np.arange(seconds, dtype=np.float64)
    used = base + np.arange(seconds) * rate_mib_s * MiB + rng.normal(0, 2 * MiB, seconds)
    return t, used


def test_eta_counts_from_total_minus_used_with_a_range() -> None:
    t, used = leak(120, 20.0, 10 * GiB)
    p = predict_oom(t, used, 24 * GiB)
    assert p is not None
    left_mib = (24 * GiB - used[-1]) / MiB
    assert p.eta_s == pytest.approx(left_mib / 20.0, rel=0.05)
    assert p.eta_low_s <= p.eta_s <= p.eta_high_s
    # Another tenant's 8 GiB on the same GPU brings the OOM closer by 8 GiB / 20 MiB/s.
    q = predict_oom(t, used + 8 * GiB, 24 * GiB)
    assert q is not None
    assert p.eta_s - q.eta_s == pytest.approx(8 * 1024 / 20.0, rel=0.05)


def test_min_sustained_samples_is_honoured() -> None:
    _, used = leak(60, 50.0, 10 * GiB)
    flat = np.full(40, 10 * GiB)
    ts = 1_700_000_000.0 + np.arange(52, dtype=np.float64)
    series = np.concatenate([flat, used[:12]])
    strict = OomPredictionConfig(min_sustained_samples=20)
    loose = OomPredictionConfig(min_sustained_samples=8)
    assert predict_oom(ts, series, 24 * GiB, strict) is None
    assert predict_oom(ts, series, 24 * GiB, loose) is not None


def test_min_rate_is_honoured() -> None:
    t, used = leak(200, 2.0, 10 * GiB)
    assert predict_oom(t, used, 24 * GiB, OomPredictionConfig(min_rate_mb_per_sec=1.0))
    assert predict_oom(t, used, 24 * GiB, OomPredictionConfig(min_rate_mb_per_sec=5.0)) is None


def test_no_prediction_once_growth_stopped() -> None:
    t = 1_700_000_000.0 + np.arange(150, dtype=np.float64)
    used = 4 * GiB + np.clip(np.arange(150) - 20, 0, 60) * 100 * MiB
    assert predict_oom(t[:70], used[:70], 24 * GiB) is not None  # while it grows
    assert predict_oom(t, used, 24 * GiB) is None  # a plateau since 70 s


def test_one_big_allocation_is_not_a_trend() -> None:
    # An inference server grabs its KV pool in one go up to 92%.
    t = 1_700_000_000.0 + np.arange(120, dtype=np.float64)
    used = np.where(np.arange(120) < 60, 14 * GiB, 73.6 * GiB)
    assert predict_oom(t, used, 80 * GiB) is None


def test_alert_thresholds() -> None:
    t, used = leak(200, 20.0, 16 * GiB)
    p = predict_oom(t, used, 24 * GiB)
    assert p is not None and p.eta_low_s < 300
    assert alert_passes(p, AlertsConfig())
    assert not alert_passes(p, AlertsConfig(oom_warning_seconds=p.eta_low_s / 2))
    assert not alert_passes(p, AlertsConfig(oom_min_confidence=min(1.0, p.confidence + 0.01)))


def test_young_growth_is_not_alarming() -> None:
    # 15 s of a model loading at 1 GiB/s with 60 GiB free: a forecast, not an alarm.
    t = 1_700_000_000.0 + np.arange(40, dtype=np.float64)
    used = 4 * GiB + np.clip(np.arange(40) - 25, 0, None) * GiB
    p = predict_oom(t, used, 80 * GiB)
    assert p is None or not alert_passes(p, AlertsConfig())


def _analyze(config: Config, seconds: int = 200) -> Analyzer:
    t, grower = leak(seconds, 30.0, 4 * GiB)
    steady = np.full(seconds, 6 * GiB)
    a = Analyzer(config)
    ids = (ProcessIdentity(10, 1.0), ProcessIdentity(11, 2.0))
    procs = ProcessHistories(t, np.vstack([grower, steady]), ids, np.zeros(2, dtype=np.int64))
    gpu = GpuHistory(0, t, grower + steady + 0.5 * GiB, total=24 * GiB)
    for k in range(60, seconds + 1, 20):  # a few ticks, with the hysteresis in play
        sub = ProcessHistories(t[:k], procs.used[:, :k], ids, procs.gpu_index)
        result = a.step([GpuHistory(0, t[:k], gpu.used[:k], total=24 * GiB)], sub)
    a.last = result  # type: ignore[attr-defined]
    return a


@pytest.mark.parametrize("algorithm", ["variance", "pelt"])
def test_gpu_alert_names_the_driver_and_rule(algorithm: str) -> None:
    config = dataclasses.replace(Config(), oom_prediction=OomPredictionConfig(algorithm=algorithm))
    result = _analyze(config).last  # type: ignore[attr-defined]
    oom = result.gpus[0].oom
    assert oom is not None
    assert oom.driver == ProcessIdentity(10, 1.0)
    assert oom.rule.startswith(algorithm)
    grower = result.processes[0]
    assert grower.verdict == "OOM risk" and grower.eta is not None
    assert result.processes[1].verdict == "OK"


def test_pelt_without_ruptures_falls_back_to_variance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pelt, "_ruptures", None)
    monkeypatch.setattr(pelt, "_missing", True)
    config = dataclasses.replace(Config(), oom_prediction=OomPredictionConfig(algorithm="pelt"))
    oom = _analyze(config).last.gpus[0].oom  # type: ignore[attr-defined]
    assert oom is not None and oom.rule.startswith("variance")
    assert pelt.PELT_MISSING_HINT in oom.rule


def test_temperature_warning() -> None:
    t = np.arange(20, dtype=np.float64)
    hot = GpuHistory(0, t, np.full(20, GiB), total=24 * GiB, temperature_c=90.0)
    cool = GpuHistory(1, t, np.full(20, GiB), total=24 * GiB, temperature_c=60.0)
    result = Analyzer(Config()).step([hot, cool], None, AnalysisContext())
    assert [g.temp_warning for g in result.gpus] == [True, False]
