"""Lineage and concurrent growth: a restarted job is warned about the second time too, and
processes that grow together on one GPU are judged together."""

from __future__ import annotations

import math

import numpy as np

from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
from vramtop.analysis.lineage import LineageTracker, describe
from vramtop.analysis.model import OK, OOM_RISK, AnalysisResult
from vramtop.config import Config
from vramtop.export.document import lineage_json
from vramtop.messages import ProcessIdentity

MiB = float(1 << 20)
GiB = float(1 << 30)
T0 = 1_700_000_000.0
CMD = ("alice", "python train.py --config big.yaml")


Owners = dict[ProcessIdentity, tuple[str, str]]


def _track(
    tracker: LineageTracker,
    now: float,
    rows: list[tuple[ProcessIdentity, float]],
    owners: Owners,
    free_share: float,
) -> list[int]:
    keys = [(ident, 0) for ident, _ in rows]
    levels = np.asarray([lvl for _, lvl in rows])
    out = tracker.update(now, keys, owners, levels, np.full(len(rows), free_share),
                         np.zeros(len(rows), dtype=np.bool_))  # fmt: skip
    return [lin.restarts for lin in out]


def test_a_restart_is_linked_and_a_stranger_is_not() -> None:
    tracker = LineageTracker(window_s=600.0)
    a, b, c = ProcessIdentity(10, T0), ProcessIdentity(11, T0 + 50), ProcessIdentity(12, T0 + 60)
    owners = {a: CMD, b: CMD, c: ("alice", "python eval.py")}
    for k in range(5):
        _track(tracker, T0 + k, [(a, (10 + k) * GiB)], owners, 0.01)
    assert _track(tracker, T0 + 50, [(b, 1 * GiB), (c, 1 * GiB)], owners, 0.5) == [1, 0]
    share, risk = np.array([0.5, 0.5]), np.zeros(2, dtype=np.bool_)
    lin = tracker.update(
        T0 + 51, [(b, 0), (c, 0)], owners, np.array([GiB, GiB]), share, risk, same_keys=True
    )[0]
    (before,) = lin.previous
    assert before.pid == 10 and before.start_time == T0
    assert before.peak_bytes == 14 * GiB and before.likely_oom and before.ended_at == T0 + 4
    assert "restarted once" in describe(lin, T0 + 60) and "14.0G" in describe(lin, T0 + 60)
    doc = lineage_json(lin)
    assert doc["restarts"] == 1 and doc["previous"][0]["peak_bytes"] == int(14 * GiB)


def test_no_link_after_the_window_nor_without_a_command_line() -> None:
    tracker = LineageTracker(window_s=60.0)
    a, b = ProcessIdentity(10, T0), ProcessIdentity(11, T0 + 200)
    _track(tracker, T0, [(a, GiB)], {a: CMD, b: CMD}, 0.5)
    _track(tracker, T0 + 1, [], {}, 0.5)
    assert _track(tracker, T0 + 200, [(b, GiB)], {a: CMD, b: CMD}, 0.5) == [0]
    anon = LineageTracker()
    x, y = ProcessIdentity(20, T0), ProcessIdentity(21, T0 + 5)
    _track(anon, T0, [(x, GiB)], {x: ("bob", "")}, 0.5)
    _track(anon, T0 + 1, [], {}, 0.5)
    assert _track(anon, T0 + 5, [(y, GiB)], {y: ("bob", "")}, 0.5) == [0]


def test_ranks_restarted_together_are_one_lineage_each() -> None:
    tracker = LineageTracker()
    old = [ProcessIdentity(100 + i, T0) for i in range(4)]
    new = [ProcessIdentity(200 + i, T0 + 30) for i in range(4)]
    owners = {p: CMD for p in old + new}
    _track(tracker, T0, [(p, GiB) for p in old], owners, 0.5)
    _track(tracker, T0 + 1, [], owners, 0.5)
    assert _track(tracker, T0 + 30, [(p, GiB) for p in new], owners, 0.5) == [1, 1, 1, 1]


def _run_crash_loop(rate_mib_s: float = 1024.0) -> list[tuple[float, AnalysisResult]]:
    """A job leaking ``rate_mib_s`` from 4 GiB on a 24 GiB card (2 GiB held by a neighbour):
    OOM-killed at the top, restarted 5 s later with a new PID, leaking again."""
    total, base, other = 24 * GiB, 4 * GiB, 2 * GiB
    life = 10 + (total - base - other - 0.5 * GiB) / (rate_mib_s * MiB)
    analyzer = Analyzer(Config())
    rng = np.random.default_rng(1)
    ts: list[float] = []
    rows: dict[ProcessIdentity, list[float]] = {}
    gpu_used: list[float] = []
    out = []
    ids = [ProcessIdentity(500, T0), ProcessIdentity(777, T0 + life + 5)]
    neighbour = ProcessIdentity(42, T0 - 100)
    owners = {ids[0]: CMD, ids[1]: CMD, neighbour: ("bob", "python serve.py")}
    for k in range(int(2 * life + 5)):
        t = T0 + k
        run = 0 if k < life else 1
        local = k - (0 if run == 0 else life + 5)
        alive = local >= 0 and local < life
        level = base + max(local - 10, 0.0) * rate_mib_s * MiB if alive else math.nan
        ts.append(t)
        for ident in (*ids, neighbour):
            rows.setdefault(ident, [])
        rows[ids[0]].append(level if run == 0 else math.nan)
        rows[ids[1]].append(level if run == 1 else math.nan)
        rows[neighbour].append(other + rng.normal(0, 2 * MiB))
        gpu_used.append(0.5 * GiB + other + (0.0 if math.isnan(level) else level))
        present = [i for i in (*ids, neighbour) if not math.isnan(rows[i][-1])]
        lo = max(0, len(ts) - 300)
        t_arr = np.asarray(ts[lo:])
        procs = ProcessHistories(
            t_arr,
            np.vstack([rows[i][lo:] for i in present]),
            tuple(present),
            np.zeros(len(present), dtype=np.int64),
        )
        used = np.asarray(gpu_used[lo:])
        gpu = GpuHistory(0, t_arr, used, total=total, free=total - used[-1])
        result = analyzer.step([gpu], procs, AnalysisContext(timestamp=t, owners=owners))
        out.append((t, result))
    return out


def test_a_restarted_leaker_is_warned_again_before_the_card_is_full() -> None:
    ticks = _run_crash_loop()
    second = [(t, r) for t, r in ticks if any(p.identity.pid == 777 for p in r.processes)]
    assert second
    end = second[-1][0]
    warned = [
        (t, p) for t, r in second for p in r.processes
        if p.identity.pid == 777 and p.verdict == OOM_RISK
    ]  # fmt: skip
    assert warned, "the second incarnation was never at OOM risk"
    t_first, first = warned[0]
    assert end - t_first >= 3.0, "warned too late to act"
    assert first.lineage.restarts == 1 and first.lineage.previous[0].pid == 500
    assert first.lineage.previous[0].likely_oom
    assert first.eta is not None
    # The GPU's own history holds the first crash's drop; its warning comes all the same.
    t_gpu = next(t for t, r in second if r.gpus[0].oom is not None)
    assert end - t_gpu >= 3.0


def test_ranks_growing_together_share_the_blame() -> None:
    """Four ranks at 511 MiB/s each with 3 GiB free: the card is full in ~1.5 s, not 6 s."""
    total = 40 * GiB
    n = 120
    t = T0 + np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(2)
    start = 60
    ranks = [ProcessIdentity(300 + i, T0 - 10) for i in range(4)]
    level_end = (total - 0.5 * GiB - 3 * GiB) / 4  # 3 GiB free at the last sample
    slope = 511 * MiB
    base = level_end - (n - 1 - start) * slope
    grid = np.arange(n, dtype=np.float64)
    rows = np.vstack(
        [base + np.maximum(grid - start, 0.0) * slope + rng.normal(0, 2 * MiB, n) for _ in ranks]
    )
    used = 0.5 * GiB + rows.sum(axis=0)
    analyzer = Analyzer(Config())
    result = None
    for k in range(start + 20, n + 1):
        procs = ProcessHistories(t[:k], rows[:, :k], tuple(ranks), np.zeros(4, dtype=np.int64))
        gpu = GpuHistory(0, t[:k], used[:k], total=total, free=total - used[k - 1])
        result = analyzer.step([gpu], procs)
    assert result is not None
    for p in result.processes:
        assert p.verdict != OK, p.reason
        assert "1 of 4 growing" in p.reason, p.reason
        assert p.eta is not None and p.eta.eta_s < 3.0
