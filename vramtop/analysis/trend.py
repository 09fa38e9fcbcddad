"""Robust slopes and memory phases, for many series at once.

Where it sits: the analyzer (``analysis/analyzer.py``) hands this module the memory histories of
every process (a 2-D array: one row per process, one column per sample, NaN = n/a) and of every
GPU; it returns a raw phase, a signed rate and the rate's uncertainty per row. A
:class:`PhaseTracker` then adds hysteresis, so a badge does not flicker from one tick to the next.

How a phase is decided (all sizes in MiB, windows in seconds of the samples' own clock):

* The *change threshold* scales with the series: the largest of an absolute floor, a multiple of
  the sample-to-sample noise (robust: median absolute difference), a fraction of the series' own
  level and a fraction of its GPU's total memory.
* ``volatile``: over the long window the (lightly smoothed) series both rose from a trough and fell
  from a peak by more than the threshold — a sawtooth or repeated spikes.
* ``growing``: the least-squares slope over the long window carries more than the threshold, the
  series rose by no less than its noise over the short window (so a staircase — steps separated
  by flats — stays growing while a single step followed by a flat turns stable once the step has
  left the short window), and it did not fall back by more than the threshold.
* ``shrinking``: the mirror image.
* ``stable``: everything else, including ± jitter of any size below the threshold.

The slope is least squares over the long window (vectorised over all rows); its standard error
comes from the residuals. :func:`theil_sen` is there for single series where outliers matter
more than speed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vramtop.analysis.model import GROWING, SHRINKING, STABLE, UNKNOWN, VOLATILE

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MIB = float(1 << 20)

# Phase codes used inside the vectorised code; PHASES maps them to the model's names.
P_UNKNOWN, P_STABLE, P_GROWING, P_SHRINKING, P_VOLATILE = 0, 1, 2, 3, 4
PHASES: tuple[str, ...] = (UNKNOWN, STABLE, GROWING, SHRINKING, VOLATILE)


@dataclass(frozen=True, slots=True)
class PhaseParams:
    """Tuning of the phase rules; the defaults are what the evaluation suite measures."""

    long_window_s: float = 60.0  # slope, drawdown and drawup window
    short_window_s: float = 15.0  # "is it still moving" window (longer than a staircase's flats)
    min_samples: int = 8  # fewer valid samples in the long window: unknown
    abs_floor_mib: float = 8.0  # nothing smaller is ever a change (NVML granularity is 2 MiB)
    noise_k: float = 6.0  # threshold in units of the sample-to-sample noise
    rel_level: float = 0.005  # threshold as a fraction of the series' own level
    rel_gpu: float = 0.0005  # ... and of the GPU's total memory
    confirm: int = 3  # consecutive ticks a new phase needs before it is shown


@dataclass(frozen=True, slots=True)
class SlopeFit:
    """Least-squares fit of one series: MiB per second and its standard error."""

    slope: float
    stderr: float
    intercept_at_end: float  # fitted value at the last timestamp
    n: int
    r2: float


@dataclass(frozen=True, slots=True)
class PhaseBatch:
    """Raw (pre-hysteresis) phases of many rows, with the figures that decided them."""

    phase: IntArray  # P_* codes
    rate_mib_s: FloatArray  # least-squares slope over the long window (0 when unknown)
    stderr_mib_s: FloatArray
    threshold_mib: FloatArray  # change threshold used per row
    level_mib: FloatArray  # recent level (NaN when unknown)
    n_valid: IntArray
    # Over the short window: the rate (MiB/s), and the long window's change from its first
    # samples to its last (MiB): what a
    # stable row shows, so its rate never contradicts its phase and a step is named as one.
    recent_mib_s: FloatArray | None = None
    net_mib: FloatArray | None = None


def _as_float(a: object) -> FloatArray:
    arr = np.asarray(a, dtype=np.float64)
    return arr


def tail_window(
    ts: object, values: object, seconds: float, min_samples: int
) -> tuple[object, object]:
    """The last ``seconds`` of a series (or of every row), before any copy is made.

    Columns older than the window are dropped first, so the cost of what follows does not grow
    with the history length.
    """
    t: FloatArray = _as_float(ts).ravel()
    v = _as_float(values)
    n = min(t.size, v.shape[-1]) if v.ndim else 0
    if n == 0:
        return t, v
    t = t[t.size - n :]
    lo = window_start(np.where(np.isfinite(t), t, np.nan), seconds, min_samples)
    return t[lo:], v[..., v.shape[-1] - n + lo :]


def sanitize(ts: object, values: object) -> tuple[FloatArray, FloatArray]:
    """Finite float arrays of the same length; infinities become NaN (n/a)."""
    t: FloatArray = _as_float(ts).ravel()
    v = _as_float(values)
    if v.ndim == 1:
        n = min(t.size, v.size)
        t, v = t[:n], v[:n]
    else:
        n = min(t.size, v.shape[-1])
        t, v = t[:n], v[..., :n]
    t = np.where(np.isfinite(t), t, np.nan)
    v = np.where(np.isfinite(v), v, np.nan)
    return t, v


def least_squares(ts: object, values: object) -> SlopeFit:
    """Slope (per second) and its standard error for one series; NaN samples are skipped."""
    t, v = sanitize(ts, values)
    slope, se, end, n, r2 = least_squares_batch(t, v.reshape(1, -1))
    return SlopeFit(float(slope[0]), float(se[0]), float(end[0]), int(n[0]), float(r2[0]))


def least_squares_batch(
    ts: FloatArray, values: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, IntArray, FloatArray]:
    """Least squares of every row of ``values`` [P, n] against ``ts`` [n], NaN-aware.

    Returns (slope, stderr, fitted value at the last timestamp, valid count, R²) per row; rows
    with fewer than 3 valid samples or no time spread get slope 0, stderr inf, R² 0.
    """
    p = values.shape[0]
    finite_t = np.isfinite(ts)
    if not finite_t.any():
        zeros = np.zeros(p)
        return zeros, np.full(p, np.inf), np.full(p, np.nan), np.zeros(p, np.int64), zeros
    t_end = float(np.nanmax(ts))
    # Centre time on the window's end so large epoch timestamps do not cost precision.
    tc = np.where(finite_t, ts - t_end, 0.0)
    w = (np.isfinite(values) & finite_t).astype(np.float64)
    x = np.where(w > 0, values, 0.0)
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        safe_n = np.maximum(n, 1.0)
        mt = (w @ tc) / safe_n
        mx = x.sum(axis=1) / safe_n
        dt = (tc[None, :] - mt[:, None]) * w
        dx = (x - mx[:, None]) * w
        sxx = (dt * dt).sum(axis=1)
        sxy = (dt * dx).sum(axis=1)
        syy = (dx * dx).sum(axis=1)
        ok = (n >= 3) & (sxx > 1e-12) & np.isfinite(sxy) & np.isfinite(syy)
        slope = np.where(ok, sxy / np.where(ok, sxx, 1.0), 0.0)
        resid = np.maximum(syy - slope * sxy, 0.0)
        dof = np.maximum(n - 2.0, 1.0)
        se = np.where(ok, np.sqrt(resid / dof / np.where(ok, sxx, 1.0)), np.inf)
        end = np.where(n > 0, mx + slope * (0.0 - mt), np.nan)
        r2 = np.where(ok & (syy > 0), 1.0 - resid / np.where(syy > 0, syy, 1.0), 0.0)
    slope = np.where(np.isfinite(slope), slope, 0.0)
    r2 = np.clip(np.where(np.isfinite(r2), r2, 0.0), 0.0, 1.0)
    return slope, se, end, n.astype(np.int64), r2


def theil_sen(ts: object, values: object, max_points: int = 64) -> float:
    """Median of pairwise slopes of one series (robust to outliers); 0.0 when undefined.

    Long series are subsampled evenly to ``max_points`` so the cost stays O(max_points²).
    """
    t, v = sanitize(ts, values)
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    if t.size < 2:
        return 0.0
    if t.size > max_points:
        idx = np.linspace(0, t.size - 1, max_points).round().astype(np.int64)
        t, v = t[idx], v[idx]
    i, j = np.triu_indices(t.size, k=1)
    dt = t[j] - t[i]
    keep = dt > 0
    if not keep.any():
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        slopes = (v[j][keep] - v[i][keep]) / dt[keep]
    slopes = slopes[np.isfinite(slopes)]
    return float(np.median(slopes)) if slopes.size else 0.0


def forward_fill(values: FloatArray) -> FloatArray:
    """Each NaN takes the last valid value before it in its row; leading NaNs take the first."""
    v = np.array(values, dtype=np.float64, copy=True)
    if v.size == 0:
        return v
    valid = np.isfinite(v)
    if valid.all():
        return v
    idx = np.where(valid, np.arange(v.shape[-1])[None, :], 0)
    np.maximum.accumulate(idx, axis=-1, out=idx)
    filled = np.take_along_axis(v, idx, axis=-1)
    first = np.argmax(valid, axis=-1)
    first_val = np.take_along_axis(v, first[:, None], axis=-1)
    lead = ~np.logical_or.accumulate(valid, axis=-1)
    filled = np.where(lead, first_val, filled)
    return np.where(np.isfinite(filled), filled, 0.0)


def median3(values: FloatArray) -> FloatArray:
    """Running median of three along the last axis (edges kept): one outlier never moves it."""
    if values.shape[-1] < 3:
        same: FloatArray = values.copy()
        return same
    a, b, c = values[:, :-2], values[:, 1:-1], values[:, 2:]
    mid = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    out: FloatArray = values.copy()
    out[:, 1:-1] = mid
    return out


def row_median(values: FloatArray) -> FloatArray:
    """``np.median(values, axis=-1)``, the same figures, by a partition instead of a full median
    (several times cheaper on thousands of short rows)."""
    m = values.shape[-1]
    if m == 0 or np.isnan(values).any():
        out: FloatArray = np.median(values, axis=-1)
        return out
    k = m // 2
    if m % 2:
        odd: FloatArray = np.partition(values, k, axis=-1)[..., k]
        return odd
    part = np.partition(values, (k - 1, k), axis=-1)
    even: FloatArray = (part[..., k - 1] + part[..., k]) / 2.0
    return even


def noise_mib(values: FloatArray) -> FloatArray:
    """Robust sample-to-sample noise per row (σ of the jitter).

    From the median absolute *second* difference, which a straight line (a leak, the rising
    edge of a sawtooth) leaves at zero and a step touches only twice: only jitter remains.
    """
    if values.shape[-1] < 4:
        return np.zeros(values.shape[0])
    with np.errstate(all="ignore"):
        d = np.abs(np.diff(values, n=2, axis=-1))
        if np.isnan(d).any():
            # nanmedian warns on all-NaN rows; those rows get 0 below.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(d, axis=-1)
        else:
            med = row_median(d)
    # For Gaussian jitter σ, a second difference has σ·√6 and median |.| = 0.6745·√6·σ.
    return np.where(np.isfinite(med), med / 1.652, 0.0)


def window_start(ts: FloatArray, seconds: float, min_samples: int) -> int:
    """Index of the first column inside the last ``seconds`` (at least ``min_samples`` columns)."""
    n = ts.size
    if n == 0:
        return 0
    finite = np.isfinite(ts)
    if not finite.any():
        return max(0, n - min_samples)
    t_end = float(np.nanmax(ts))
    inside = np.flatnonzero(finite & (ts >= t_end - seconds))
    start = int(inside[0]) if inside.size else n - 1
    return max(0, min(start, n - min_samples))


def classify_batch(
    ts: object,
    values_bytes: object,
    gpu_total_bytes: object = math.nan,
    params: PhaseParams | None = None,
) -> PhaseBatch:
    """Raw phase of every row of ``values_bytes`` [P, n] (or one series [n]) against ``ts`` [n].

    ``gpu_total_bytes``: a scalar or one value per row (the GPU each row lives on), NaN if
    unknown. Never raises on finite, empty, constant, NaN-only or huge inputs.
    """
    params = params or PhaseParams()
    # Keep a margin beyond the long window: samples at NaN timestamps are dropped below.
    ts, values_bytes = tail_window(
        ts, values_bytes, params.long_window_s * 1.5, params.min_samples * 2
    )
    t, v = sanitize(ts, values_bytes)
    if v.ndim == 1:
        v = v.reshape(1, -1)
    p = v.shape[0]
    if p == 0 or t.size == 0:
        return _empty_batch(p)
    with np.errstate(over="ignore", invalid="ignore"):
        x = v / MIB
    x = np.where(np.isfinite(x), x, np.nan)
    # Samples at NaN timestamps carry no time: drop them from every row.
    keep = np.isfinite(t)
    if not keep.all():
        t, x = t[keep], x[:, keep]
    if t.size == 0:
        return _empty_batch(p)
    lo = window_start(t, params.long_window_s, params.min_samples)
    t, x = t[lo:], x[:, lo:]
    n_valid = np.isfinite(x).sum(axis=1).astype(np.int64)

    slope, se, _, _, _ = least_squares_batch(t, x)
    filled = forward_fill(x)
    smooth = median3(filled)
    # On the filled series: a plain median is several times cheaper than nanmedian on
    # thousands of rows, and a filled gap adds at most a few zero differences.
    sigma = noise_mib(filled)
    level = np.where(n_valid > 0, smooth[:, -1], np.nan)
    total = np.broadcast_to(_as_float(gpu_total_bytes), (p,)) / MIB
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
        drawdown = np.max(np.maximum.accumulate(smooth, axis=1) - smooth, axis=1)
        drawup = np.max(smooth - np.minimum.accumulate(smooth, axis=1), axis=1)
        s0 = window_start(t, params.short_window_s, 4)
        head = np.median(smooth[:, s0 : s0 + 3], axis=1)
        tail = np.median(smooth[:, -3:], axis=1)
        recent = tail - head
        short_span = float(t[-1] - t[s0])
        expected = np.abs(slope) * short_span
        still = np.maximum(np.maximum(3.0 * sigma, params.abs_floor_mib / 2), 0.3 * expected)

        moved = tail - np.median(smooth[:, :3], axis=1)
    return decide_phases(
        net, drawdown, drawup, recent, still, thr, slope, se, level, n_valid, params.min_samples,
        short_span, moved,
    )  # fmt: skip


def decide_phases(
    net: FloatArray,
    drawdown: FloatArray,
    drawup: FloatArray,
    recent: FloatArray,
    still: FloatArray,
    thr: FloatArray,
    slope: FloatArray,
    se: FloatArray,
    level: FloatArray,
    n_valid: npt.NDArray[np.int64],
    min_samples: int,
    short_span: float = 0.0,
    moved: FloatArray | None = None,
) -> PhaseBatch:
    """The phase rule, shared by :func:`classify_batch` and the one-pass ``rows.analyze_rows``:
    a bounded swing both ways is volatile; a net move past the threshold that is still going on
    (the recent move beats the noise) is growing or shrinking; everything else is stable."""
    phase = np.full(len(net), P_STABLE, dtype=np.int64)
    volatile = (drawdown > thr) & (drawup > thr)
    # Still moving: beyond the noise and the tail of a past step, or beyond the change
    # threshold itself within the short window (a release that slows down but goes on).
    up = (recent > still) | (recent > thr)
    down = (-recent > still) | (-recent > thr)
    growing = (net > thr) & up & (drawdown <= thr)
    shrinking = (net < -thr) & down & (drawup <= thr)
    phase[growing] = P_GROWING
    phase[shrinking] = P_SHRINKING
    phase[volatile] = P_VOLATILE
    unknown = n_valid < min_samples
    phase[unknown] = P_UNKNOWN
    slope = np.where(unknown | ~np.isfinite(slope), 0.0, slope)
    se = np.where(unknown | ~np.isfinite(se), 0.0, se)
    with np.errstate(invalid="ignore", divide="ignore"):
        recent_rate = np.where(short_span > 0, recent / max(short_span, 1e-9), 0.0)
    recent_rate = np.where(unknown | ~np.isfinite(recent_rate), 0.0, recent_rate)
    change = net if moved is None else moved
    net_mib = np.where(unknown | ~np.isfinite(change), 0.0, change)
    return PhaseBatch(phase, slope, se, thr, level, n_valid, recent_rate, net_mib)


def _empty_batch(p: int) -> PhaseBatch:
    return PhaseBatch(
        np.full(p, P_UNKNOWN, dtype=np.int64),
        np.zeros(p),
        np.zeros(p),
        np.zeros(p),
        np.full(p, np.nan),
        np.zeros(p, dtype=np.int64),
    )


def urgent_moves(batch: PhaseBatch, short_window_s: float) -> BoolArray:
    """Rows whose raw phase is growing or shrinking by more than twice the change threshold
    over the short window: shown at once (see :meth:`PhaseTracker.update_array`)."""
    recent = batch.recent_mib_s
    if recent is None:
        return np.zeros(batch.phase.size, dtype=np.bool_)
    moving = (batch.phase == P_GROWING) | (batch.phase == P_SHRINKING)
    with np.errstate(invalid="ignore", over="ignore"):
        big = np.abs(recent) * short_window_s > 2.0 * batch.threshold_mib
    out: BoolArray = moving & big
    return out


class PhaseTracker:
    """Hysteresis: a new raw phase is shown only after ``confirm`` consecutive ticks.

    Keyed by any hashable identity (a ProcessIdentity, a GPU index). The first known phase is
    shown at once; identities not updated for ``forget_after`` ticks are dropped.

    The state lives in arrays indexed through a dict, so the rule runs as a few vectorised
    operations over all keys; when the caller knows the keys are the same, in the same order, as
    last time (``same_keys``), not even the dict is consulted.
    """

    def __init__(self, confirm: int = 3, forget_after: int = 5) -> None:
        self.confirm = confirm
        self.forget_after = forget_after
        self._index: dict[object, int] = {}
        self._shown: IntArray = np.zeros(0, dtype=np.int64)
        self._candidate: IntArray = np.zeros(0, dtype=np.int64)
        self._streak: IntArray = np.zeros(0, dtype=np.int64)
        # The tick of the last update, to forget leavers.
        self._seen: IntArray = np.zeros(0, dtype=np.int64)
        self._tick = 0
        self._last: IntArray | None = None  # state positions of the last call's keys

    def update(
        self, keys: Sequence[object], raw: IntArray, urgent: BoolArray | None = None
    ) -> list[int]:
        shown: list[int] = self.update_array(keys, raw, urgent=urgent).tolist()
        return shown

    def update_array(
        self,
        keys: Sequence[object],
        raw: object,
        same_keys: bool = False,
        urgent: BoolArray | None = None,
    ) -> IntArray:
        """The phase to show per key (P_* codes), after this tick's raw phases.

        ``urgent``: rows whose raw phase is shown at once (a move past the change threshold is
        not noise to ride out: the rate beside the phase already shows it)."""
        self._tick += 1
        tick = self._tick
        codes: IntArray = np.asarray(raw, dtype=np.int64).ravel()
        m = min(len(keys), codes.size)
        codes = codes[:m]
        last = self._last
        if same_keys and last is not None and last.size == m:
            idx = last
        else:
            found = self._positions(keys[:m] if len(keys) > m else keys, codes)
            if found is None:  # a key twice in one tick: apply the rule in order
                return self._sequential(keys[:m], codes, tick, urgent)
            idx = found
        self._last = idx
        confirm = max(1, self.confirm)
        s, c, k = self._shown[idx], self._candidate[idx], self._streak[idx]
        same = codes == s
        adopt = ~same & (s == P_UNKNOWN)
        other = ~(same | adopt)
        cont = other & (codes == c)
        k = np.where(other, np.where(cont, k + 1, 1), 0)
        c = np.where(other & ~cont, codes, c)
        flip = other & (k >= confirm)
        if urgent is not None and urgent.size == m:
            flip |= other & urgent
        s = np.where(adopt | flip, codes, s)
        k[flip] = 0
        self._shown[idx], self._candidate[idx], self._streak[idx] = s, c, k
        self._seen[idx] = tick
        if tick % 16 == 0:
            self._forget(tick)
        return s

    def _positions(self, keys: Sequence[object], codes: IntArray) -> IntArray | None:
        index = self._index
        base = self._shown.size
        pos: list[int] = []
        fresh: list[int] = []
        for j, key in enumerate(keys):
            i = index.get(key)
            if i is None:
                i = index[key] = base + len(fresh)
                fresh.append(j)
            pos.append(i)
        if fresh:
            new = codes[np.asarray(fresh, dtype=np.intp)]
            self._shown = np.concatenate([self._shown, new])
            self._candidate = np.concatenate([self._candidate, new])
            self._streak = np.concatenate([self._streak, np.zeros(new.size, dtype=np.int64)])
            self._seen = np.concatenate([self._seen, np.zeros(new.size, dtype=np.int64)])
        idx = np.asarray(pos, dtype=np.intp)
        if np.unique(idx).size != idx.size:
            return None
        return idx

    def _sequential(
        self,
        keys: Sequence[object],
        codes: IntArray,
        tick: int,
        urgent: BoolArray | None = None,
    ) -> IntArray:
        confirm = max(1, self.confirm)
        out = np.empty(codes.size, dtype=np.int64)
        for j, (key, code) in enumerate(zip(keys, codes.tolist(), strict=False)):
            i = self._index[key]
            s, c, k = int(self._shown[i]), int(self._candidate[i]), int(self._streak[i])
            if code == s:
                k = 0
            elif s == P_UNKNOWN:
                s, k = code, 0
            else:
                if code == c:
                    k += 1
                else:
                    c, k = code, 1
                if k >= confirm or (urgent is not None and j < urgent.size and urgent[j]):
                    s, k = code, 0
            self._shown[i], self._candidate[i], self._streak[i], self._seen[i] = s, c, k, tick
            out[j] = s
        self._last = None
        if tick % 16 == 0:
            self._forget(tick)
        return out

    def _forget(self, tick: int) -> None:
        keep = tick - self._seen <= self.forget_after
        if keep.all():
            return
        moved = np.cumsum(keep) - 1
        self._index = {k: int(moved[i]) for k, i in self._index.items() if keep[i]}
        if self._last is not None:
            self._last = moved[self._last]
        self._shown = self._shown[keep]
        self._candidate = self._candidate[keep]
        self._streak = self._streak[keep]
        self._seen = self._seen[keep]

    def __len__(self) -> int:
        return len(self._index)

    def reset(self) -> None:
        self._index = {}
        self._shown = self._shown[:0]
        self._candidate = self._candidate[:0]
        self._streak = self._streak[:0]
        self._seen = self._seen[:0]
        self._last = None
