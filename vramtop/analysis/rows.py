"""Phases and spikes of every process in one pass over one 2-D history block.

Where it sits: :class:`vramtop.analysis.analyzer.Analyzer` calls :func:`analyze_rows` once per
tick with all process histories; it returns exactly what :func:`trend.classify_batch` and
:func:`spikes.spike_batch` return for the same rows (``tests/test_analysis_rows.py`` holds the
two to the same figures), at a fraction of the cost:

* the windows are found once from the 1-D timestamps, and the bytes are converted to MiB and
  checked for n/a once, over the union of both windows;
* missing samples are forward-filled once, touching only the missing positions (NVML n/a is
  rare, so this costs next to nothing), and each window is fixed up only in the rows where it
  starts on a gap;
* medians of a few columns are taken with a partition, not a sort.

Inputs it does not handle this way (NaN timestamps, a single series, nothing to analyse) go to
the reference functions unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from vramtop.analysis.spikes import SPIKE_WINDOW_S, SpikeBatch, spike_batch
from vramtop.analysis.trend import (
    MIB,
    BoolArray,
    FloatArray,
    PhaseBatch,
    PhaseParams,
    classify_batch,
    decide_phases,
    forward_fill,
    least_squares_batch,
    median3,
    noise_mib,
    row_median,
    window_start,
)


def analyze_rows(
    ts: object,
    values_bytes: object,
    gpu_total_bytes: object = math.nan,
    params: PhaseParams | None = None,
    spike_window_s: float = SPIKE_WINDOW_S,
) -> tuple[PhaseBatch, SpikeBatch]:
    """``(classify_batch(...), spike_batch(..., threshold=its thresholds))`` for rows [P, n]."""
    params = params or PhaseParams()
    t_all = np.asarray(ts, dtype=np.float64).ravel()
    v_all = np.asarray(values_bytes, dtype=np.float64)
    n = min(t_all.size, v_all.shape[-1]) if v_all.ndim == 2 else 0
    if n == 0 or v_all.shape[0] == 0 or not np.isfinite(t_all[t_all.size - n :]).all():
        return _reference(ts, values_bytes, gpu_total_bytes, params, spike_window_s)
    t = t_all[t_all.size - n :]
    v = v_all[:, v_all.shape[-1] - n :]
    p = v.shape[0]

    # The windows exactly as classify_batch and spike_batch find them.
    c1 = window_start(t, params.long_window_s * 1.5, params.min_samples * 2)
    c0 = c1 + window_start(t[c1:], params.long_window_s, params.min_samples)
    s1 = window_start(t, spike_window_s * 1.2, 6)
    spikes_possible = n - s1 >= 3
    s0 = s1 + window_start(t[s1:], spike_window_s, 3) if spikes_possible else c0
    u0 = min(c0, s0)

    with np.errstate(over="ignore", invalid="ignore"):
        x = v[:, u0:] / MIB
    valid = np.isfinite(x)
    all_valid = bool(valid.all())
    if all_valid:
        filled = x
    else:
        x[~valid] = np.nan  # infinities are n/a too
        filled = _forward_fill_sparse(x, valid)

    phases = _classify(t[c0:], x, valid, filled, c0 - u0, all_valid, gpu_total_bytes, p, params)
    if not spikes_possible:
        spikes = SpikeBatch(np.zeros(p), np.zeros(p), np.full(p, np.nan))
    else:
        spikes = _spikes(x, valid, filled, s0 - u0, all_valid, phases.threshold_mib)
    return phases, spikes


def _reference(
    ts: object,
    values_bytes: object,
    gpu_total_bytes: object,
    params: PhaseParams,
    spike_window_s: float,
) -> tuple[PhaseBatch, SpikeBatch]:
    phases = classify_batch(ts, values_bytes, gpu_total_bytes, params)
    return phases, spike_batch(ts, values_bytes, phases.threshold_mib, spike_window_s)


def _forward_fill_sparse(x: FloatArray, valid: BoolArray) -> FloatArray:
    """:func:`trend.forward_fill` of ``x``, visiting only the missing positions."""
    out: FloatArray = x.copy()
    m = x.shape[1]
    flat = out.reshape(-1)
    bad = np.flatnonzero(~valid.reshape(-1))
    k = bad.size
    col = bad % m
    # Runs of consecutive gaps, never crossing into the next row.
    start = np.ones(k, dtype=np.bool_)
    start[1:] = (np.diff(bad) != 1) | (col[1:] == 0)
    end = np.ones(k, dtype=np.bool_)
    end[:-1] = start[1:]
    pos = np.arange(k)
    run_first = bad[np.maximum.accumulate(np.where(start, pos, 0))]
    run_last = bad[np.minimum.accumulate(np.where(end, pos, k)[::-1])[::-1]]
    leading = run_first % m == 0
    # A gap takes the last value before its run; a leading gap the first value after it; a row
    # with no value at all becomes 0.
    src = np.where(leading, run_last + 1, run_first - 1)
    empty_row = leading & ((run_last + 1) % m == 0)
    src = np.where(empty_row, bad, src)
    values = flat[src]
    values[empty_row] = 0.0
    flat[bad] = values
    return out


def _window_fill(
    x: FloatArray, valid: BoolArray, filled: FloatArray, lo: int, all_valid: bool
) -> FloatArray:
    """The forward fill of columns ``lo:`` alone (its leading gaps take the window's own first
    value, not one from before the window)."""
    w: FloatArray = filled[:, lo:]
    if all_valid or lo == 0:
        return w
    fix = np.flatnonzero(~valid[:, lo])
    if fix.size == 0:
        return w
    w = w.copy()
    w[fix] = forward_fill(x[fix, lo:])
    return w


def _classify(
    t: FloatArray,
    x_u: FloatArray,
    valid_u: BoolArray,
    filled_u: FloatArray,
    lo: int,
    all_valid: bool,
    gpu_total_bytes: object,
    p: int,
    params: PhaseParams,
) -> PhaseBatch:
    """classify_batch's rules on columns ``lo:`` (see there for the why of each figure)."""
    x = x_u[:, lo:]
    n_valid = valid_u[:, lo:].sum(axis=1).astype(np.int64)
    filled = _window_fill(x_u, valid_u, filled_u, lo, all_valid)
    slope, se = _slopes(t, x, valid_u[:, lo:], all_valid, n_valid, filled[:, -1])
    smooth = median3(filled)
    sigma = noise_mib(filled)
    level = np.where(n_valid > 0, smooth[:, -1], np.nan)
    total = np.broadcast_to(np.asarray(gpu_total_bytes, dtype=np.float64), (p,)) / MIB
    total = np.where(np.isfinite(total) & (total > 0), total, 0.0)
    thr = np.maximum.reduce(
        [
            np.full(p, params.abs_floor_mib),
            params.noise_k * sigma,
            params.rel_level * np.abs(np.nan_to_num(level)),
            params.rel_gpu * total,
        ]
    )
    span = float(t[-1] - t[0]) if t.size > 1 else 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        net = slope * span
        drawdown, drawup = _excursions(smooth)
        s0 = window_start(t, params.short_window_s, 4)
        head = row_median(smooth[:, s0 : s0 + 3])
        tail = row_median(smooth[:, -3:])
        recent = tail - head
        short_span = float(t[-1] - t[s0])
        expected = np.abs(slope) * short_span
        still = np.maximum(np.maximum(3.0 * sigma, params.abs_floor_mib / 2), 0.3 * expected)

        moved = tail - row_median(smooth[:, :3])
    return decide_phases(
        net, drawdown, drawup, recent, still, thr, slope, se, level, n_valid, params.min_samples,
        short_span, moved,
    )  # fmt: skip


def _slopes(
    t: FloatArray,
    x: FloatArray,
    valid: BoolArray,
    all_valid: bool,
    n_valid: npt.NDArray[np.int64],
    offset: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Slope and standard error of every row, as :func:`trend.least_squares_batch` gives them
    (equal to rounding), from sums taken in one pass each. (``einsum``, not ``@``: a threaded
    BLAS would spin a second core for a product this small.)

    Each row is first shifted by one of its own values, so a flat row has exactly no spread and
    the sums stay small enough for the one-pass formulas to keep their precision.
    """
    p = x.shape[0]
    tc = t - float(np.max(t))
    if all_valid:
        xr = x - offset[:, None]
        st = np.full(p, float(tc.sum()))
        stt = np.full(p, float(tc @ tc))
    else:
        xr = np.where(valid, x - offset[:, None], 0.0)
        w = valid.astype(np.float64)
        st = np.einsum("ij,j->i", w, tc)
        stt = np.einsum("ij,j->i", w, tc * tc)
    sx = xr.sum(axis=1)
    stx = np.einsum("ij,j->i", xr, tc)
    sxx = np.einsum("ij,ij->i", xr, xr)
    n = n_valid.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        safe_n = np.maximum(n, 1.0)
        tt = stt - st * st / safe_n
        sxy = stx - st * sx / safe_n
        syy = np.maximum(sxx - sx * sx / safe_n, 0.0)
        ok = (n >= 3) & (tt > 1e-12) & np.isfinite(sxy) & np.isfinite(syy)
        slope = np.where(ok, sxy / np.where(ok, tt, 1.0), 0.0)
        resid = np.maximum(syy - slope * sxy, 0.0)
        dof = np.maximum(n - 2.0, 1.0)
        se = np.where(ok, np.sqrt(resid / dof / np.where(ok, tt, 1.0)), np.inf)
    slope = np.where(np.isfinite(slope), slope, 0.0)
    # Swings no GPU has (beyond ~1e12 MiB): the two-pass reference, which keeps its precision.
    wild = np.flatnonzero(~(sxx < 1e24))
    if wild.size:
        slope[wild], se[wild], _, _, _ = least_squares_batch(t, x[wild])
    return slope, se


def _spikes(
    x_u: FloatArray,
    valid_u: BoolArray,
    filled_u: FloatArray,
    lo: int,
    all_valid: bool,
    threshold_mib: FloatArray,
) -> SpikeBatch:
    """spike_batch's rules on columns ``lo:`` (see there)."""
    known = valid_u[:, lo:].any(axis=1)
    s = _window_fill(x_u, valid_u, filled_u, lo, all_valid)
    with np.errstate(over="ignore", invalid="ignore"):
        amplitude, peak = _prominence(s)
        need = np.maximum(peak - s[:, -1], 0.0)
    real = known & np.isfinite(amplitude) & (amplitude > threshold_mib)
    return SpikeBatch(
        np.where(real, amplitude, 0.0),
        np.where(real & np.isfinite(need), need, 0.0),
        np.where(real, peak, np.nan),
    )


# The running minima and maxima below walk the columns of a time-major copy: one vectorised
# operation over all processes per sample, several times cheaper than ``ufunc.accumulate``
# along rows, and no [P, n] temporaries. The inputs are gap-filled, so they hold no NaN.


def _excursions(smooth: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per row: the deepest fall below its running maximum, the highest rise above its running
    minimum (``max(cummax - s)`` and ``max(s - cummin)``)."""
    cols = np.ascontiguousarray(smooth.T)
    p = cols.shape[1]
    high, low = cols[0].copy(), cols[0].copy()
    down, up, tmp = np.zeros(p), np.zeros(p), np.empty(p)
    for row in cols[1:]:
        np.maximum(high, row, out=high)
        np.subtract(high, row, out=tmp)
        np.maximum(down, tmp, out=down)
        np.minimum(low, row, out=low)
        np.subtract(row, low, out=tmp)
        np.maximum(up, tmp, out=up)
    return down, up


def _prominence(s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per row: the largest prominence ``min(s - min before, s - min after)`` and the level of
    the earliest sample that has it."""
    cols = np.ascontiguousarray(s.T)
    m, p = cols.shape
    rise = np.empty_like(cols)
    low = cols[0].copy()
    rise[0] = 0.0
    for j in range(1, m):
        np.minimum(low, cols[j], out=low)
        np.subtract(cols[j], low, out=rise[j])
    best, peak = np.full(p, -np.inf), np.zeros(p)
    low = cols[-1].copy()
    fall, prom = np.empty(p), np.empty(p)
    better = np.empty(p, dtype=np.bool_)
    for j in range(m - 1, -1, -1):
        row = cols[j]
        np.minimum(low, row, out=low)
        np.subtract(row, low, out=fall)
        np.minimum(rise[j], fall, out=prom)
        np.greater_equal(prom, best, out=better)  # going backwards: ties keep the earliest
        np.maximum(best, prom, out=best)
        hit = np.flatnonzero(better)  # few after the first columns: cheaper than a masked copy
        peak[hit] = row[hit]
    return best, peak
