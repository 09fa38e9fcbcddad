"""The one-pass phases and spikes say exactly what the reference functions say, row for row."""

from __future__ import annotations

import numpy as np
import pytest

from vramtop.analysis.rows import analyze_rows
from vramtop.analysis.spikes import spike_batch
from vramtop.analysis.trend import PhaseParams, classify_batch, noise_mib, row_median

MiB = float(1 << 20)
GiB = float(1 << 30)


def _rows(rng: np.random.Generator, p: int, n: int, gap_share: float) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    kind = np.arange(p) % 5
    base = rng.uniform(0.1, 40.0, p)[:, None] * GiB
    leak = (kind == 1)[:, None] * rng.uniform(1, 80, p)[:, None] * MiB * t[None, :]
    saw = (kind == 2)[:, None] * 0.5 * GiB * ((t[None, :] % 12) / 12)
    spike = (kind == 3)[:, None] * np.where((t % 40) < 3, GiB, 0.0)[None, :]
    step = (kind == 4)[:, None] * np.where(t > n * 0.7, 2 * GiB, 0.0)[None, :]
    used = base + leak + saw + spike + step + rng.normal(0, 2 * MiB, (p, n))
    used[rng.random((p, n)) < gap_share] = np.nan
    used[0] = np.nan  # a process with no figure at all
    used[1, : n // 2] = np.nan  # one that started inside the window
    used[2, -n // 3 :] = np.nan  # one whose figures stopped
    used[3, ::2] = np.inf  # a driver returning garbage
    return used


def _same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("n", [1, 3, 7, 20, 61, 146, 300])
@pytest.mark.parametrize("gap_share", [0.0, 0.01, 0.3])
@pytest.mark.parametrize("interval", [1.0, 0.5, 7.0])
def test_one_pass_matches_the_reference(n: int, gap_share: float, interval: float) -> None:
    rng = np.random.default_rng(n * 100 + int(gap_share * 10) + int(interval * 7))
    used = _rows(rng, 40, n, gap_share)
    ts = 1_700_000_000.0 + interval * np.arange(n) + rng.uniform(-0.1, 0.1, n) * interval
    totals = np.where(np.arange(40) % 3 == 0, np.nan, 80 * GiB)
    params = PhaseParams()
    phases, spikes = analyze_rows(ts, used, totals, params)
    ref = classify_batch(ts, used, totals, params)
    ref_spikes = spike_batch(ts, used, ref.threshold_mib)
    for name in ("phase", "threshold_mib", "level_mib", "n_valid"):
        _same(getattr(phases, name), getattr(ref, name))
    # The slope comes from one-pass sums: equal to rounding, never a different conclusion.
    np.testing.assert_allclose(phases.rate_mib_s, ref.rate_mib_s, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(phases.stderr_mib_s, ref.stderr_mib_s, rtol=1e-6, atol=1e-9)
    for name in ("amplitude_mib", "need_mib", "peak_mib"):
        _same(getattr(spikes, name), getattr(ref_spikes, name))


def test_odd_inputs_take_the_reference_path() -> None:
    ts = np.arange(50, dtype=np.float64)
    ts[10] = np.nan  # a sample without a time
    used = np.vstack([np.full(50, GiB), np.linspace(GiB, 2 * GiB, 50)])
    phases, spikes = analyze_rows(ts, used, 24 * GiB)
    ref = classify_batch(ts, used, 24 * GiB)
    _same(phases.phase, ref.phase)
    _same(spikes.amplitude_mib, spike_batch(ts, used, ref.threshold_mib).amplitude_mib)
    empty, no_spikes = analyze_rows(ts, np.zeros((0, 50)))
    assert empty.phase.size == 0 and no_spikes.amplitude_mib.size == 0


def test_row_median_is_the_median() -> None:
    rng = np.random.default_rng(5)
    for m in (1, 2, 3, 4, 59, 60):
        a = rng.normal(size=(30, m)).round(1)  # ties included
        _same(row_median(a), np.median(a, axis=-1))
    assert np.all(noise_mib(rng.normal(0, 4.0, (20, 200))) > 2.0)


# --- verdicts of all rows at once --------------------------------------------------------------


def test_judge_rows_says_what_judge_says() -> None:
    from vramtop.analysis.trend import PHASES
    from vramtop.analysis.verdict import VerdictInput, judge, judge_rows, sizes
    from vramtop.fmt import size

    rng = np.random.default_rng(11)
    p = 3000
    phase = rng.integers(0, 5, p)
    rate = rng.normal(0, 30, p)
    level = rng.choice([np.nan, 0.0, 512.0, 3 * MiB, 5 * GiB, 150 * GiB], p) * rng.uniform(
        0.5, 1.5, p
    )
    n_valid = rng.integers(0, 300, p)
    free = rng.choice([np.nan, 0.0, 1 * GiB, 6 * GiB, 200 * GiB], p)
    amp = rng.choice([0.0, 0.0, 300.0, 5000.0, np.nan], p)
    need = rng.choice([0.0, 200.0, 900.0, 5500.0, 300000.0, np.nan], p)
    verdicts, reasons = judge_rows(phase, rate, level, n_valid, free, amp, need)
    for i in range(p):
        expected = judge(
            VerdictInput(
                PHASES[phase[i]], float(rate[i]), float(level[i]), int(n_valid[i]),
                float(free[i]), float(amp[i]), float(need[i]),
            )
        )  # fmt: skip
        assert (verdicts[i], reasons[i]) == expected
    values = np.concatenate([level, [100 * GiB, GiB, MiB, 1024.0, -5.0, np.inf, 0.05]])
    assert sizes(values).tolist() == [size(float(v)) for v in values]


# --- hysteresis over many keys -----------------------------------------------------------------


class _ScalarTracker:
    """The hysteresis rule, one key at a time, as written in PhaseTracker's docstring."""

    def __init__(self, confirm: int = 3, forget_after: int = 5) -> None:
        self.confirm, self.forget_after, self.tick = confirm, forget_after, 0
        self.held: dict[object, list[int]] = {}

    def update(self, keys: list[object], raw: list[int]) -> list[int]:
        self.tick += 1
        out = []
        for key, code in zip(keys, raw, strict=False):
            h = self.held.setdefault(key, [code, code, 0, 0])  # shown, candidate, streak, seen
            h[3] = self.tick
            if code == h[0]:
                h[2] = 0
            elif h[0] == 0:
                h[0], h[2] = code, 0
            else:
                h[1:3] = [code, h[2] + 1] if code == h[1] else [code, 1]
                if h[2] >= self.confirm:
                    h[0], h[2] = code, 0
            out.append(h[0])
        if self.tick % 16 == 0:
            for k in [k for k, h in self.held.items() if self.tick - h[3] > self.forget_after]:
                del self.held[k]
        return out


def test_vectorised_hysteresis_matches_the_rule_one_key_at_a_time() -> None:
    from vramtop.analysis.trend import PhaseTracker

    rng = np.random.default_rng(2)
    tracker, scalar = PhaseTracker(confirm=3), _ScalarTracker(confirm=3)
    keys: list[object] = [f"p{i}" for i in range(50)]
    for tick in range(200):
        same = True
        if tick % 7 == 0:  # processes come and go, and the order changes
            keys = [k for k in keys if rng.random() > 0.1] + [f"q{tick}-{i}" for i in range(3)]
            rng.shuffle(keys)
            same = False
        if tick % 23 == 0:  # a key twice in one tick
            keys = keys + keys[:1]
            same = False
        raw = rng.choice([0, 1, 1, 1, 2, 3, 4], len(keys))
        if tick % 2:  # long stretches of the same phase, so confirmations happen
            raw[: len(keys) // 2] = 2
        got = tracker.update_array(keys, raw, same_keys=same).tolist()
        assert got == scalar.update(keys, raw.tolist()), tick
        if tick % 23 == 0:
            keys = keys[:-1]
    assert len(tracker) == len(scalar.held)


def test_phase_memory_follows_the_process_when_rows_reorder() -> None:
    from vramtop.analysis.analyzer import Analyzer, GpuHistory, ProcessHistories
    from vramtop.messages import ProcessIdentity

    t = 1_700_000_000.0 + np.arange(120, dtype=np.float64)
    flat = np.full(120, 4 * GiB) + np.random.default_rng(0).normal(0, 2 * MiB, 120)
    grow = 2 * GiB + np.arange(120) * 30 * MiB
    a, b = ProcessIdentity(1, 1.0), ProcessIdentity(2, 2.0)
    analyzer = Analyzer()
    gpu = GpuHistory(0, t, flat + grow, total=80 * GiB)
    zero = np.zeros(2, dtype=np.int64)
    for k in range(60, 120):
        forward = k % 2 == 0  # the sampler lists the rows in a different order every tick
        ids, rows = ((a, b), [flat, grow]) if forward else ((b, a), [grow, flat])
        used = np.vstack([r[: k + 1] for r in rows])
        gpu = GpuHistory(0, t[: k + 1], (flat + grow)[: k + 1], total=80 * GiB)
        out = analyzer.step([gpu], ProcessHistories(t[: k + 1], used, ids, zero))
        phases = {p.identity: p.trend.phase for p in out.processes}
        assert phases == {a: "stable", b: "growing"}
