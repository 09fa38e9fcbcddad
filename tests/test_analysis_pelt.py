"""PELT segments: labelled change points for the detail view, and the missing-extra path."""

from __future__ import annotations

import numpy as np
import pytest

from vramtop.analysis import pelt
from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
from vramtop.config import Config
from vramtop.messages import ProcessIdentity

MiB = float(1 << 20)
GiB = float(1 << 30)
RNG = np.random.default_rng(11)


def labels(curve: np.ndarray, starts: bool = False) -> list[str]:
    t = np.arange(curve.size, dtype=np.float64)
    noisy = curve + RNG.normal(0, 2 * MiB, curve.size)
    return [s.label for s in pelt.segments(t, noisy, starts_in_window=starts)]


def test_warm_up_then_plateau() -> None:
    t = np.arange(200)
    curve = np.minimum(t, 40) * 200 * MiB + GiB
    assert labels(curve, starts=True) == ["warm-up", "plateau"]


def test_plateau_then_leak() -> None:
    t = np.arange(240)
    curve = 8 * GiB + np.clip(t - 100, 0, None) * 20 * MiB
    found = labels(curve)
    assert found[0] == "plateau" and found[-1] == "leak"


def test_cache_fill_then_release() -> None:
    t = np.arange(300)
    fill = np.clip(t - 60, 0, 60) * 50 * MiB
    release = np.where(t >= 220, 3 * GiB, 0.0)
    found = labels(4 * GiB + fill - release)
    assert "cache fill" in found and "release" in found
    assert found.index("cache fill") < found.index("release")


def test_spike_and_segment_deltas() -> None:
    t = np.arange(200)
    curve = 6 * GiB + np.where((t >= 100) & (t < 110), 4 * GiB, 0.0)
    segs = pelt.segments(t.astype(float), curve + RNG.normal(0, 2 * MiB, 200))
    kinds = [s.label for s in segs]
    assert "spike" in kinds
    spike = segs[kinds.index("spike")]
    assert spike.delta_mib == pytest.approx(4096, rel=0.35)
    assert all(s.end_ts >= s.start_ts for s in segs)


def test_long_history_is_bounded() -> None:
    t = np.arange(3600, dtype=np.float64)
    tt, _, ends = pelt.breakpoints(t, 4 * GiB + t * MiB)
    assert tt.size <= pelt.MAX_POINTS and ends[-1] == tt.size


def _selected_analysis() -> tuple[str, tuple[object, ...]]:
    t = np.arange(120, dtype=np.float64)
    used = np.where(t < 60, 2 * GiB, 2 * GiB + (t - 60) * 30 * MiB).reshape(1, -1)
    ident = ProcessIdentity(5, 1.0)
    procs = ProcessHistories(t, used, (ident,), np.zeros(1, dtype=np.int64))
    gpu = GpuHistory(0, t, used[0] + GiB, total=80 * GiB)
    out = Analyzer(Config()).step([gpu], procs, AnalysisContext(selected=ident))
    p = out.processes[0]
    return p.segments_note, p.segments


def test_selected_process_gets_segments() -> None:
    note, segments = _selected_analysis()
    assert note == "" and len(segments) >= 2


def test_without_ruptures_the_panel_gets_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pelt, "_ruptures", None)
    monkeypatch.setattr(pelt, "_missing", True)
    assert not pelt.available()
    assert pelt.segments(np.arange(50.0), np.arange(50.0)) == []
    note, segments = _selected_analysis()
    assert note == "pip install 'vramtop[pelt]'" and segments == ()
