"""Phase rules: what the phase badge says for the memory shapes users actually see."""

from __future__ import annotations

import numpy as np

from vramtop.analysis.model import GROWING, SHRINKING, STABLE, UNKNOWN, VOLATILE
from vramtop.analysis.trend import (
    PHASES,
    PhaseTracker,
    classify_batch,
    least_squares,
    theil_sen,
)

MiB = float(1 << 20)
GiB = float(1 << 30)
RNG = np.random.default_rng(7)


def phase_of(values: np.ndarray, total: float = 24 * GiB) -> str:
    ts = np.arange(values.size, dtype=np.float64)
    return PHASES[int(classify_batch(ts, values, total).phase[0])]


def noisy(curve: np.ndarray, sigma_mib: float = 2.0) -> np.ndarray:
    return curve + RNG.normal(0.0, sigma_mib * MiB, curve.size)


def test_linear_leak_is_growing_with_its_rate() -> None:
    t = np.arange(120, dtype=np.float64)
    values = noisy(4 * GiB + t * 20 * MiB)
    batch = classify_batch(t, values, 24 * GiB)
    assert PHASES[int(batch.phase[0])] == GROWING
    assert abs(batch.rate_mib_s[0] - 20.0) < 1.0
    assert 0 < batch.stderr_mib_s[0] < 1.0


def test_staircase_is_growing_even_on_its_flats() -> None:
    t = np.arange(200, dtype=np.float64)
    steps = np.floor(t / 8)
    values = noisy(6 * GiB + steps * 128 * MiB)
    # Sample right after a step and in the middle of a flat.
    for end in (121, 126, 199):
        assert phase_of(values[: end + 1]) == GROWING


def test_bounded_sawtooth_is_volatile() -> None:
    t = np.arange(150, dtype=np.float64)
    values = noisy(10 * GiB + 2 * GiB * ((t % 12) / 12))
    assert phase_of(values) == VOLATILE


def test_one_step_then_flat_is_stable_soon_after_the_step() -> None:
    t = np.arange(200, dtype=np.float64)
    values = noisy(np.where(t < 100, 4 * GiB, 6 * GiB))
    assert phase_of(values[:103]) == GROWING  # the step itself is growth
    assert phase_of(values[:120]) == STABLE  # 20 s later it is over


def test_jitter_on_a_flat_process_is_stable() -> None:
    values = noisy(np.full(120, 10 * GiB), sigma_mib=12.0)
    assert phase_of(values) == STABLE


def test_shrink_is_shrinking_with_a_negative_rate() -> None:
    t = np.arange(100, dtype=np.float64)
    values = noisy(20 * GiB - t * 50 * MiB)
    batch = classify_batch(t, values, 80 * GiB)
    assert PHASES[int(batch.phase[0])] == SHRINKING
    assert batch.rate_mib_s[0] < -45


def test_threshold_scales_with_process_size() -> None:
    # 3 MiB/s is real growth for a 1 GiB process, noise-level drift for a 60 GiB one.
    t = np.arange(90, dtype=np.float64)
    small = noisy(1 * GiB + t * 3 * MiB)
    large = noisy(60 * GiB + t * 3 * MiB)
    assert phase_of(small, 80 * GiB) == GROWING
    assert phase_of(large, 80 * GiB) == STABLE


def test_too_few_samples_or_no_data_is_unknown() -> None:
    assert phase_of(np.full(5, GiB)) == UNKNOWN
    assert phase_of(np.full(60, np.nan)) == UNKNOWN


def test_missing_samples_do_not_change_the_phase() -> None:
    t = np.arange(120, dtype=np.float64)
    values = noisy(4 * GiB + t * 20 * MiB)
    values[::7] = np.nan
    assert phase_of(values) == GROWING


def test_many_rows_are_classified_at_once() -> None:
    t = np.arange(100, dtype=np.float64)
    rows = np.vstack(
        [noisy(np.full(100, 5 * GiB)), noisy(2 * GiB + t * 30 * MiB), noisy(9 * GiB - t * 30 * MiB)]
    )
    phases = [PHASES[int(p)] for p in classify_batch(t, rows, 80 * GiB).phase]
    assert phases == [STABLE, GROWING, SHRINKING]


def test_hysteresis_needs_consecutive_ticks() -> None:
    tracker = PhaseTracker(confirm=3)
    seq = [1, 1, 2, 1, 2, 2, 2, 2]  # stable, one odd growing tick, then growing for good
    shown = [tracker.update(["p"], np.array([code]))[0] for code in seq]
    assert shown[:5] == [1, 1, 1, 1, 1]  # the lone tick does not flip the badge
    assert shown[6] == 2  # three in a row do


def test_least_squares_and_theil_sen() -> None:
    t = np.arange(50, dtype=np.float64)
    v = 3.0 * t + 7.0
    fit = least_squares(t, v)
    assert abs(fit.slope - 3.0) < 1e-9 and fit.r2 > 0.999
    v_out = v.copy()
    v_out[10] = 1e6  # one wild sample
    assert abs(theil_sen(t, v_out) - 3.0) < 1e-6
    assert abs(least_squares(t, v_out).slope - 3.0) > 1.0
