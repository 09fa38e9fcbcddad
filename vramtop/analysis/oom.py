"""Time to out-of-memory for one GPU, from the trend of its used memory.

Where it sits: the analyzer calls :func:`predict_oom` once per GPU and tick with that GPU's used
history (everything on the card, other tenants included) and its total; the result goes into
``GpuAnalysis.oom`` when :func:`alert_passes` says it meets ``[alerts]`` thresholds, and into the
driving process's ``ProcessAnalysis.eta`` either way.

The rules, in order (each refusal means "no prediction", never a guess):

1. Peaks, not averages, run out of memory: the series is replaced by its upper envelope (the
   highest value over the last ``ENVELOPE_S`` seconds), so a sawtooth riding a leak is predicted
   from its rising peaks and a bounded sawtooth is flat.
2. The *growth run* is the stretch since the envelope last fell by more than the noise threshold
   (``variance``), or the current PELT segment (``pelt``). It must hold at least
   ``min_sustained_samples`` samples.
3. A level the GPU has already reached and come back from inside the window is not new growth.
4. A run whose rise is mostly one or two jumps (a KV pool allocated, a second job arriving)
   is an allocation, not growth. The envelope must still be rising over the last ``STILL_S``
   seconds (growth that stopped is not sustained), at ``min_rate_mb_per_sec`` or more (MiB/s,
   like every rate vramtop shows), with a slope at least three standard errors above zero.
5. ETA = (total - envelope now) / slope. The range comes from the rate's uncertainty: the fit's
   standard error, but never less than ``REL_RATE`` of the rate (a leak that has been perfectly
   straight so far still speeds up or slows down), at ``Z`` of it either side.
6. Confidence is meant to be read as a probability: of the predictions made at confidence c or
   more, a share of at least c comes true within their ETA range (``scripts/eval_analysis.py``
   prints the reliability table). It is the fit's quality (R² × how far the run exceeds the
   minimum length) times the chance that growth watched for T seconds lasts the ETA more:
   ``T / (T + ETA)`` (the "Lindy" estimate: with no other knowledge, a trend is as likely to be
   half-way through its life as at any other point). A rise watched for less than ``YOUNG_S``
   (it may be the first tooth of a slow sawtooth, or a warm-up about to stop) is discounted
   further by ``(T / YOUNG_S)²``, with two exceptions. A young rise that broke a flat stretch
   seen before it (a change of behaviour: a leak starting, ranks starting to grow together)
   and whose ETA is within its own length is trusted that far, undiscounted. A young rise
   that has been rising since the first sample there is (the process's start-up, a pattern
   watched from its middle) is never extrapolated beyond its own length: an ETA longer than T
   gets no confidence. So four ranks that fill the card in 3 s after 9 s of growth warn, a
   model loading at 1 GiB/s for 15 s is not "OOM in 60 s", and a sawtooth's first rise, fast
   or slow, is a forecast (TIGHT), not an alarm.
7. A run that has just come back down is over: when the latest value lies below the envelope
   by more than the noise threshold and nothing in the run before the last ``ENVELOPE_S``
   seconds fell that far below it (a first drop, not the teeth of a sawtooth riding a leak),
   the envelope's peak is history, not growth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vramtop.analysis.model import OomPrediction
from vramtop.analysis.trend import (
    MIB,
    FloatArray,
    least_squares_batch,
    median3,
    noise_mib,
    sanitize,
    window_start,
)
from vramtop.config import AlertsConfig, OomPredictionConfig

ENVELOPE_S = 30.0  # longer than the sawtooth periods a training loop makes
FIT_WINDOW_S = 180.0  # the slope comes from at most this much of the run
# The run is looked for over at most this much history: a staircase whose steps come a minute
# or two apart (epoch boundaries) needs several of them before its rate is evidence.
RUN_WINDOW_S = 600.0
STILL_S = 15.0
Z = 2.0  # range = slope ± Z standard errors
MIN_T = 3.0  # slope / stderr needed to call it growth
ABS_FLOOR_MIB = 8.0
NOISE_K = 6.0
YOUNG_S = 60.0  # a rise watched for less than this may be one tooth of a slow sawtooth
REL_RATE = 0.05  # the least relative uncertainty a rate is given (see rule 5)
STEP_SHARE = 0.7  # a run whose rise is mostly one or two jumps is an allocation or two


@dataclass(frozen=True, slots=True)
class OomFit:
    """A prediction with the fit behind it (the analyzer uses the slope to find the driver)."""

    prediction: OomPrediction
    slope_mib_s: float
    stderr_mib_s: float
    observed_s: float  # how long the growth run has been watched
    samples: int
    quality: float = 1.0  # confidence before the look-ahead discount (see rule 6)
    began_seen: bool = True  # a flat stretch (or a fall) was seen before the run (rule 6)


def rate_uncertainty(slope: float, stderr: float) -> float:
    """One "standard error" of a rate, floored at ``REL_RATE`` of the rate (rule 5)."""
    se = stderr if math.isfinite(stderr) else 0.0
    return math.hypot(se, REL_RATE * abs(slope))


def eta_range(headroom_mib: float, slope: float, u: float) -> tuple[float, float, float]:
    """(best, soonest, latest) seconds to fill ``headroom_mib`` at ``slope`` ± ``Z`` × ``u``."""
    eta = headroom_mib / slope
    low = headroom_mib / (slope + Z * u)
    slow = slope - Z * u
    high = headroom_mib / slow if slow > 0 else math.inf
    return eta, low, high


def foresight(
    observed_s: float, eta_s: float, young_s: float = YOUNG_S, began_seen: bool = True
) -> float:
    """The look-ahead discount of rule 6: ``T / (T + ETA)``, and for a run shorter than
    ``young_s`` also ``(T / young_s)²`` — except for a run whose beginning was seen (it broke a
    flat stretch) and whose ETA is within its own length, which is trusted that far; and 0 for a
    run rising since the first sample whose ETA is beyond its own length."""
    t = max(observed_s, 0.0)
    ahead = max(eta_s, 0.0)
    lindy = t / (t + ahead) if t + ahead > 0 else 1.0
    if t >= young_s:
        return lindy
    within = ahead <= t
    if began_seen and within:
        return lindy
    if not began_seen and not within:
        return 0.0
    return lindy * (t / young_s) ** 2


def envelope(ts: FloatArray, x: FloatArray, seconds: float = ENVELOPE_S) -> FloatArray:
    """Running maximum of ``x`` over the trailing ``seconds`` (NaN-free input)."""
    n = x.size
    if n == 0:
        empty: FloatArray = x.copy()
        return empty
    dt = np.diff(ts)
    dt = dt[np.isfinite(dt) & (dt > 0)]
    step = float(np.median(dt)) if dt.size else 1.0
    k = int(max(1, min(n, round(seconds / step))))
    out = np.maximum.accumulate(x)
    if k < n:
        windows = np.lib.stride_tricks.sliding_window_view(x, k)
        out[k - 1 :] = windows.max(axis=1)
    return out


def variance_run_start(e: FloatArray, threshold_mib: float) -> int:
    """First index after the envelope's last fall of more than ``threshold_mib``."""
    if e.size < 2:
        return 0
    suffix_min = np.minimum.accumulate(e[::-1])[::-1]
    falls = np.flatnonzero(e[:-1] - suffix_min[1:] > threshold_mib)
    return int(falls[-1]) + 1 if falls.size else 0


def predict_oom(
    ts: object,
    used_bytes: object,
    total_bytes: float,
    config: OomPredictionConfig | None = None,
    *,
    segment_start_ts: float | None = None,
) -> OomPrediction | None:
    """The raw prediction for one GPU (before the alert thresholds), or None.

    ``segment_start_ts``: with ``algorithm = "pelt"``, the start of the current PELT segment
    (from :func:`vramtop.analysis.pelt.current_segment_start`); None uses the variance rule.
    """
    fit = fit_oom(ts, used_bytes, total_bytes, config, segment_start_ts=segment_start_ts)
    return None if fit is None else fit.prediction


def fit_oom(
    ts: object,
    used_bytes: object,
    total_bytes: float,
    config: OomPredictionConfig | None = None,
    *,
    segment_start_ts: float | None = None,
    since_ts: float | None = None,
) -> OomFit | None:
    """:func:`predict_oom` with the fit behind the prediction.

    ``since_ts``: ignore the samples before it (a process holding memory left the GPU then: what
    came before is another workload's history, and its peak is not this one's envelope).
    """
    config = config or OomPredictionConfig()
    t, v = sanitize(ts, used_bytes)
    if v.ndim != 1 or not math.isfinite(total_bytes) or total_bytes <= 0:
        return None
    ok = np.isfinite(t) & np.isfinite(v)
    if since_ts is not None and math.isfinite(since_ts):
        ok &= t >= since_ts
    t, v = t[ok], v[ok]
    min_n = max(2, int(config.min_sustained_samples))
    if t.size < max(min_n, 3):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        x = v / MIB
    total = total_bytes / MIB
    lo = window_start(t, RUN_WINDOW_S, min_n)
    t, x = t[lo:], x[lo:]
    if not np.all(np.isfinite(x)):
        return None
    smooth = median3(x.reshape(1, -1))[0]
    e = envelope(t, smooth)
    sigma = float(noise_mib(x.reshape(1, -1))[0])
    thr = max(ABS_FLOOR_MIB, NOISE_K * sigma)

    if segment_start_ts is not None and math.isfinite(segment_start_ts):
        start = int(np.searchsorted(t, segment_start_ts, side="left"))
        rule = "pelt: current segment"
    else:
        start = variance_run_start(e, thr)
        rule = "variance: sustained growth"
    start = min(max(start, 0), t.size - 1)
    # The growth began where the envelope last sat at the run's floor: a flat stretch before it
    # is not "watched growth".
    floor = float(np.min(e[start:]))
    start = max(start, int(np.flatnonzero(e[start:] <= floor + thr)[-1]) + start)
    e_now = float(e[-1])
    # Rule 3: memory has been this high before inside the window and came back.
    if start > 0 and float(np.max(smooth[:start])) + thr >= e_now:
        return None
    if _came_down(t, e, smooth, start, thr):
        return None  # rule 7
    fit_lo = max(start, window_start(t, FIT_WINDOW_S, min_n))
    tr, er = t[fit_lo:], e[fit_lo:]
    n_run = int(t.size - start)
    if n_run < min_n or tr.size < 3:
        return None
    observed_s = float(t[-1] - t[start])
    slope_a, se_a, _, _, r2_a = least_squares_batch(tr, er.reshape(1, -1))
    slope, se, r2 = float(slope_a[0]), float(se_a[0]), float(r2_a[0])
    if not (math.isfinite(slope) and math.isfinite(se)):
        return None
    if slope < max(config.min_rate_mb_per_sec, 1e-9) or slope < MIN_T * se:
        return None
    rise = e_now - float(e[start])
    jumps = np.sort(np.diff(e[start:]))[-2:]
    if rise <= 0 or float(jumps.sum()) > STEP_SHARE * rise:
        return None  # one or two allocations, not a trend
    still, needs = _still_s(t, e, smooth, start, thr)
    if float(t[-1] - t[start]) < needs:
        return None  # rule 4: too short a run to tell its rhythm from growth that goes on
    s0 = window_start(t, still, 4)
    if e_now - float(e[s0]) < max(0.5 * slope * float(t[-1] - t[s0]), thr / 2):
        return None  # rule 4: the growth has stopped

    headroom = max(total - e_now, 0.0)
    eta, low, high = eta_range(headroom, slope, rate_uncertainty(slope, se))
    # Growth in steps of size J crosses the limit up to J / slope earlier than the line says.
    step = float(np.max(np.diff(e[fit_lo:]))) if e.size - fit_lo > 1 else 0.0
    if step > 2 * thr:
        low = max(0.0, low - step / slope)
    sustain = min(1.0, 0.5 + 0.5 * n_run / (3.0 * min_n))
    quality = float(np.clip(r2, 0.0, 1.0)) * sustain
    began_seen = start >= min_n
    confidence = float(
        np.clip(quality * foresight(observed_s, eta, began_seen=began_seen), 0.0, 1.0)
    )
    text = (
        f"{rule} {n_run} samples over {observed_s:.0f}s at {slope:.1f} MiB/s, "
        f"{headroom:.0f} MiB left"
    )
    prediction = OomPrediction(
        eta_s=eta,
        eta_low_s=low,
        eta_high_s=high,
        confidence=confidence,
        driver=None,
        rule=text,
    )
    return OomFit(prediction, slope, se, observed_s, n_run, quality, began_seen)


def _still_s(
    t: FloatArray, e: FloatArray, smooth: FloatArray, start: int, thr: float
) -> tuple[float, float]:
    """(How far back rule 4 looks for the envelope's rise, how long the run must be for that
    look to stay inside it), in the run's own rhythm: 1.5 × the longest flat between the steps
    of a staircase (two flats seen at least), and two envelope windows for a run with teeth
    (its peaks, sampled a second apart, jitter by a tooth's slope; the envelope it is compared
    with must be a whole window of the run's own peaks, not the first tooth's rise), so that
    neither the flat of a staircase nor the sampled peaks of a bounded sawtooth decide whether
    the growth goes on."""
    still, needs = STILL_S, 0.0
    if bool(np.any(e[start:] - smooth[start:] > thr)):
        still = max(still, 2 * ENVELOPE_S)
        needs = still + ENVELOPE_S
    steps = np.flatnonzero(np.diff(e[start:]) > thr)
    if steps.size >= 3:
        stair = 1.5 * float(np.max(np.diff(t[start + 1 + steps])))
        if stair > still:
            still, needs = stair, max(needs, stair)
    return still, needs


def _came_down(t: FloatArray, e: FloatArray, smooth: FloatArray, start: int, thr: float) -> bool:
    """Rule 7: the latest value is well below the envelope, for the first time in the run."""
    if not e[-1] - smooth[-1] > thr:
        return False
    before = start + int(np.searchsorted(t[start:], t[-1] - ENVELOPE_S, side="right"))
    if before <= start:
        return True
    return not bool(np.any(e[start:before] - smooth[start:before] > thr))


def alert_passes(
    prediction: OomPrediction | None, alerts: AlertsConfig, interval_s: float = 0.0
) -> bool:
    """True when the prediction is confident enough and its soonest end is within the warning.

    The early end of the range (``eta_low_s``) is compared, so that an estimate that is a little
    optimistic still warns in time, and one sampling interval is added: the next tick would
    already be less than ``oom_warning_seconds`` ahead.
    """
    slack = interval_s if math.isfinite(interval_s) and interval_s > 0 else 0.0
    return (
        prediction is not None
        and prediction.confidence >= alerts.oom_min_confidence
        and prediction.eta_low_s <= alerts.oom_warning_seconds + slack
    )


def sample_interval(ts: object) -> float:
    """Median spacing of a series' timestamps (0.0 when unknown)."""
    t = np.asarray(ts, dtype=np.float64).ravel()
    with np.errstate(all="ignore"):
        d = np.diff(t[np.isfinite(t)])
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if d.size else 0.0
