"""PELT change-point segments of one memory history, each labelled in words.

Where it sits: the analyzer calls :func:`segments` for the process the user has selected (on
demand, so the cost is one series per tick, at most ``MAX_POINTS`` points) and
:func:`current_segment_start` per GPU when ``oom_prediction.algorithm = "pelt"``. ruptures is an
optional dependency (the ``pelt`` extra) imported on first use: without it :func:`available` is
False, :func:`segments` returns nothing, the detail panel shows :data:`PELT_MISSING_HINT`, and the
OOM predictor falls back to the variance rule.

The cost model is piecewise linear (least squares per segment): memory that leaks at a steady
rate is one segment, not a staircase of means. Samples are first put on an even time grid
(missing samples and late ticks would look like kinks), and the penalty is a BIC-like
``k σ² log n`` with σ the sample-to-sample noise, so jitter never splits a plateau.

Labels, from each segment's Δ: its fitted end minus the previous segment's fitted end (a jump
at the boundary belongs to the segment it opens; the first segment starts from its own fit):

* ``plateau``: |Δ| within the noise threshold;
* ``release``: Δ negative;
* ``spike``: a rise the next segment takes back by at least half within ``SPIKE_S`` seconds;
* ``warm-up``: the rise that opens the process's life (its first sample is in the window);
* ``cache fill``: a rise followed by a plateau (an allocator cache or a KV pool filling up);
* ``leak``: any other rise (it is still going, or it keeps going with no plateau after it).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

from vramtop.analysis.model import Segment
from vramtop.analysis.trend import MIB, FloatArray, noise_mib, sanitize

PELT_MISSING_HINT = "pip install 'vramtop[pelt]'"
MAX_POINTS = 300  # longer histories are averaged down to this many points
OOM_POINTS = 120  # per GPU and tick for algorithm = "pelt": keeps 8 GPUs at a few ms
MIN_SIZE = 5
JUMP = 5  # change points are searched every JUMP samples: 5x cheaper, 5 s resolution at 1 Hz
PENALTY_K = 6.0
ABS_FLOOR_MIB = 8.0
SPIKE_S = 30.0

_ruptures: Any = None
_missing = False


def _load() -> Any:
    global _ruptures, _missing
    if _ruptures is None and not _missing:
        try:
            _ruptures = importlib.import_module("ruptures")
        except Exception:  # ImportError, or a broken install: both mean "not available"
            _missing = True
    return _ruptures


def available() -> bool:
    """True when ruptures can be imported."""
    return _load() is not None


def _prepare(
    ts: object, values_bytes: object, max_points: int = MAX_POINTS
) -> tuple[FloatArray, FloatArray]:
    """The valid samples resampled onto an even time grid (MiB), at most ``max_points`` long.

    PELT's linear cost assumes evenly spaced samples: a missing sample or a late tick would
    otherwise look like a kink in a steady leak.
    """
    t, v = sanitize(ts, values_bytes)
    if v.ndim != 1:
        v = v.reshape(-1)[: t.size]
    ok = np.isfinite(t) & np.isfinite(v)
    t, x = t[ok], v[ok] / MIB
    if t.size < 2:
        return t, np.where(np.isfinite(x), x, 0.0)
    order = np.argsort(t, kind="stable")
    t, x = t[order], x[order]
    span = float(t[-1] - t[0])
    steps = np.diff(t)
    step = float(np.median(steps[steps > 0])) if np.any(steps > 0) else 1.0
    count = int(min(max_points, max(2, round(span / step) + 1))) if span > 0 else 1
    grid = np.linspace(float(t[0]), float(t[-1]), count)
    with np.errstate(all="ignore"):
        xs = np.interp(grid, t, x)
    resampled: FloatArray = np.where(np.isfinite(xs), xs, 0.0)
    return grid.astype(np.float64), resampled


def breakpoints(
    ts: object, values_bytes: object, max_points: int = MAX_POINTS
) -> tuple[FloatArray, FloatArray, list[int]]:
    """(t, x MiB, end indices of each segment) — one segment when ruptures is missing."""
    t, x = _prepare(ts, values_bytes, max_points)
    n = t.size
    rpt = _load()
    if rpt is None or n < 2 * MIN_SIZE:
        return t, x, [n] if n else []
    sigma = float(noise_mib(x.reshape(1, -1))[0])
    scale = max(float(np.max(np.abs(x))), 1.0)
    sigma = max(sigma, 1.0, 1e-9 * scale)
    try:
        # Centre and scale so the cost stays well conditioned for huge values; the regressors
        # (time, 1) make each segment a least-squares line.
        y = (x - float(np.mean(x))) / sigma
        span = max(float(t[-1] - t[0]), 1e-9)
        signal = np.column_stack([y, (t - float(t[0])) / span, np.ones(n)])
        algo = rpt.Pelt(model="linear", min_size=MIN_SIZE, jump=JUMP).fit(signal)
        ends = [int(b) for b in algo.predict(pen=PENALTY_K * math.log(n))]
    except Exception:  # a degenerate series must not take the analyzer down
        ends = [n]
    if not ends or ends[-1] != n:
        ends.append(n)
    return t, x, ends


def _fit_ends(t: FloatArray, x: FloatArray, lo: int, hi: int) -> tuple[float, float, float]:
    """Fitted values at the first and last sample of x[lo:hi], and the slope (least squares)."""
    tt, xx = t[lo:hi], x[lo:hi]
    if tt.size < 2 or float(tt[-1] - tt[0]) <= 0:
        return float(xx[0]), float(xx[-1]), 0.0
    tc = tt - tt.mean()
    slope = float((tc * (xx - xx.mean())).sum() / (tc * tc).sum())
    mid = float(xx.mean())
    return mid + slope * float(tc[0]), mid + slope * float(tc[-1]), slope


def segments(ts: object, values_bytes: object, *, starts_in_window: bool = False) -> list[Segment]:
    """Labelled segments of one history (oldest first); [] without ruptures or data.

    ``starts_in_window``: the process's first sample is in this history, so a first rise is
    its warm-up.
    """
    if not available():
        return []
    t, x, ends = breakpoints(ts, values_bytes)
    if t.size == 0:
        return []
    sigma = float(noise_mib(x.reshape(1, -1))[0])
    thr = max(ABS_FLOOR_MIB, 6.0 * sigma, 0.005 * float(np.max(np.abs(x))))
    spans: list[tuple[int, int, float]] = []
    lo = 0
    previous: tuple[float, float] | None = None  # (fitted end, slope) of the segment before
    for hi in ends:
        if hi <= lo:
            continue
        a, b, slope = _fit_ends(t, x, lo, hi)
        start = a
        if previous is not None:
            # A jump at the boundary belongs to the segment it opens; a gap no larger than one
            # more sample of the previous slope is no jump.
            gap = abs(a - previous[0])
            dt = float(t[lo] - t[lo - 1])
            if gap > thr + 1.5 * abs(previous[1]) * dt:
                start = previous[0]
        spans.append((lo, hi, b - start))
        previous = (b, slope)
        lo = hi
    out: list[Segment] = []
    for i, (lo, hi, delta) in enumerate(spans):
        nxt = spans[i + 1] if i + 1 < len(spans) else None
        if abs(delta) <= thr:
            label = "plateau"
        elif delta < 0:
            label = "release"
        elif (
            nxt is not None
            and nxt[2] <= -0.5 * delta
            and float(t[min(hi, t.size - 1)] - t[lo]) <= SPIKE_S
        ):
            label = "spike"
        elif i == 0 and starts_in_window:
            label = "warm-up"
        elif nxt is not None and abs(nxt[2]) <= thr:
            label = "cache fill"
        else:
            label = "leak"
        end_ts = float(t[hi]) if hi < t.size else float(t[-1])
        out.append(Segment(float(t[lo]), end_ts, float(delta), label))
    return out


def current_segment_start(
    ts: object, values_bytes: object, max_points: int = OOM_POINTS
) -> float | None:
    """Start time of the last PELT segment of a series, None when ruptures is missing."""
    if not available():
        return None
    t, _, ends = breakpoints(ts, values_bytes, max_points)
    if t.size == 0:
        return None
    start = ends[-2] if len(ends) >= 2 else 0
    return float(t[min(start, t.size - 1)])
