"""Spikes: how far a process's memory rose above a trough and came back, recently.

Where it sits: the analyzer runs :func:`spike_batch` over the same 2-D process histories as the
phase code; the verdicts (``verdict.py``) compare what a repeat of the recent peak would need now
with the GPU's free memory.

A peak counts by its *prominence*: the smaller of its rise above the lowest point before it and
its fall to the lowest point after it, inside a window that forgets old peaks. Monotone growth
(a leak, a staircase) has no prominence, since it never comes back down; a release after a long
plateau has none either, since nothing rose before it inside the window. What a repeat needs now
is the peak's level minus the current level: compared with the free memory this is the same
whether the process is at a trough or half-way up its next rise, so the verdict does not flicker
with the sawtooth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vramtop.analysis.trend import (
    MIB,
    FloatArray,
    forward_fill,
    sanitize,
    tail_window,
    window_start,
)

SPIKE_WINDOW_S = 120.0


@dataclass(frozen=True, slots=True)
class SpikeBatch:
    amplitude_mib: FloatArray  # prominence of the most prominent recent peak, 0 when none
    need_mib: FloatArray  # that peak's level minus the current level, >= 0
    peak_mib: FloatArray  # that peak's level (NaN when none)


def spike_batch(
    ts: object,
    values_bytes: object,
    threshold_mib: object = 8.0,
    window_s: float = SPIKE_WINDOW_S,
) -> SpikeBatch:
    """Recent spikes of every row of ``values_bytes`` [P, n]; below ``threshold_mib`` is none."""
    ts, values_bytes = tail_window(ts, values_bytes, window_s * 1.2, 6)
    t, v = sanitize(ts, values_bytes)
    if v.ndim == 1:
        v = v.reshape(1, -1)
    p = v.shape[0]
    keep = np.isfinite(t)
    if not keep.all():
        t, v = t[keep], v[:, keep]
    if p == 0 or t.size < 3:
        return SpikeBatch(np.zeros(p), np.zeros(p), np.full(p, np.nan))
    lo = window_start(t, window_s, 3)
    with np.errstate(over="ignore", invalid="ignore"):
        x = v[:, lo:] / MIB
    x = np.where(np.isfinite(x), x, np.nan)
    known = np.isfinite(x).any(axis=1)
    s = forward_fill(x)
    with np.errstate(over="ignore", invalid="ignore"):
        before = np.minimum.accumulate(s, axis=1)
        after = np.minimum.accumulate(s[:, ::-1], axis=1)[:, ::-1]
        prominence = np.minimum(s - before, s - after)
        k = np.argmax(prominence, axis=1)
        rows = np.arange(p)
        amplitude = prominence[rows, k]
        peak = s[rows, k]
        need = np.maximum(peak - s[:, -1], 0.0)
    thr = np.broadcast_to(np.asarray(threshold_mib, dtype=np.float64), (p,))
    real = known & np.isfinite(amplitude) & (amplitude > thr)
    return SpikeBatch(
        np.where(real, amplitude, 0.0),
        np.where(real & np.isfinite(need), need, 0.0),
        np.where(real, peak, np.nan),
    )
