"""Survival verdicts: OK / TIGHT / OOM risk per process, always with a one-line reason.

Where it sits: the analyzer gathers, per process, its phase and rate (``trend.py``), its recent
spike (``spikes.py``), its GPU's free memory and OOM prediction (``oom.py``) and the enricher's
hints, and calls :func:`judge_rows` for all processes at once and :func:`judge` for the few with an
ETA or a pre-allocated pool. The reason is shown as is in the UI, ``--once`` and the CSV.

Rules, first match wins:

1. No figure, or too few samples: OK, with why.
2. This process's own OOM warning (``growth.py``: its own trend, the free memory it shares with
   the other growing processes, or the level where its earlier incarnations died; held by
   ``alerts.py``) is raised: OOM risk, naming who shares the blame or what the lineage says.
3. A repeat of the recent peak would not fit in the free memory: OOM risk; would take more
   than ``TIGHT_SHARE`` of it: TIGHT. (A process that never came down has no peak to repeat,
   so a lone stable process is never TIGHT because of itself.)
   Deep mode: PyTorch's allocator had to retry (free its cache and call cudaMalloc again) in the
   last minute: TIGHT — the process is already living at the edge, whatever its trend says.
4. A process that pre-allocates by design (vLLM, SGLang, TGI, JAX) is judged by its own headroom
   signal — KV-cache usage when a scraper provides it — never by how full the GPU is.
5. Growth is judged by the trend's ETA, not by a multiple of current usage: TIGHT when this
   process has a (not yet alerting) prediction within ``TIGHT_HORIZON`` × the warning time.
6. Everything else is OK, with the phase in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vramtop.analysis.model import (
    GROWING,
    OK,
    OOM_RISK,
    SHRINKING,
    STABLE,
    TIGHT,
    UNKNOWN,
    VOLATILE,
    OomPrediction,
)
from vramtop.analysis.trend import (
    P_GROWING,
    P_SHRINKING,
    P_STABLE,
    P_UNKNOWN,
    P_VOLATILE,
    PHASES,
    FloatArray,
)
from vramtop.fmt import size as bytes_h

TIGHT_SHARE = 0.8  # a repeat of the peak would take more than this share of the free memory
TIGHT_HORIZON = 3.0  # TIGHT when the ETA is within this many warning periods
KV_TIGHT = 0.95

MIB = float(1 << 20)


@dataclass(frozen=True, slots=True)
class VerdictInput:
    phase: str
    rate_mib_s: float
    level_bytes: float  # current usage (NaN = n/a)
    n_valid: int
    gpu_free_bytes: float  # NaN = unknown
    spike_amplitude_mib: float = 0.0
    spike_need_mib: float = 0.0
    preallocates: bool = False
    kv_cache_usage: float | None = None  # 0..1
    waiting: int | None = None  # requests the server has queued (None: it does not say)
    queue_growing: bool = False  # ... and more than at its previous read
    eta: OomPrediction | None = None  # the GPU's raw prediction when this process drives it
    alerting: bool = False  # ... and it passed the alert thresholds
    warning_s: float = 300.0
    alloc_retries_last_minute: int = 0  # deep mode: rise of num_alloc_retries over 60 s
    growing_together: int = 1  # processes on this GPU whose growth the ETA adds up
    fatal_bytes: float = math.nan  # where earlier incarnations died, when the ETA says "same point"
    deaths: int = 0  # ... how many of them
    step_mib: float = 0.0  # a stable phase after a step: the step


def _mib(value_mib: float) -> str:
    return bytes_h(max(value_mib, 0.0) * MIB)


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "never"
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


eta_text = _eta


def eta_range(p: OomPrediction) -> str:
    """ "~4m (3m-6m)" as the UI shows an ETA with its range."""
    return f"~{_eta(p.eta_s)} ({_eta(p.eta_low_s)}-{_eta(p.eta_high_s)})"


def _retrying(n: int) -> str:
    return f"allocator retrying: {n} {'retry' if n == 1 else 'retries'} in the last minute"


def times(k: int) -> str:
    return {1: "once", 2: "twice"}.get(k, f"{k}x")


def _growth_reason(v: VerdictInput, eta: OomPrediction) -> str:
    # The reason names the row's own phase and rate: a warning held across a staircase's flat
    # or a sawtooth's trough says "stepped +2.0G" or "swings", never "grows +0.0 MiB/s".
    rising = v.phase == GROWING and v.rate_mib_s > 0
    if math.isfinite(v.fatal_bytes) and v.deaths > 0:
        now = f"{rate_text(v.rate_mib_s)}" if rising else _not_rising(v)
        return (
            f"died at {bytes_h(v.fatal_bytes)} {times(v.deaths)}; now {bytes_h(v.level_bytes)}, "
            f"{now}: same point in {eta_range(eta)}"
        )
    if v.growing_together > 1:
        now = f"{rate_text(v.rate_mib_s)}" if rising else _not_rising(v)
        return f"1 of {v.growing_together} growing, {now}: GPU full in {eta_range(eta)}"
    if not rising:
        return f"{_not_rising(v)}: GPU full in {eta_range(eta)}"
    return f"grows {v.rate_mib_s:+.1f} MiB/s: GPU full in {eta_range(eta)}"


def _not_rising(v: VerdictInput) -> str:
    """What a row under a standing warning does this moment, in its phase's words."""
    if v.phase == STABLE:
        stepped = _stepped(v.step_mib)
        return f"stable{stepped}" if stepped else "stable for now"
    if v.phase == VOLATILE:
        return "swings"
    if v.phase == SHRINKING:
        return f"shrinking {rate_text(v.rate_mib_s)} for now"
    return f"{v.phase} for now"


def _stepped(step_mib: float) -> str:
    if not step_mib or not math.isfinite(step_mib):
        return ""
    sign = "+" if step_mib > 0 else "-"
    return f", stepped {sign}{_mib(abs(step_mib))}"


def rate_text(rate_mib_s: float) -> str:
    """ "+1.0G/s", "+511M/s": a rate as the table shows it."""
    sign = "+" if rate_mib_s >= 0 else "-"
    return f"{sign}{bytes_h(abs(rate_mib_s) * MIB)}/s"


def judge(v: VerdictInput) -> tuple[str, str]:
    """(verdict, one-line reason) for one process."""
    free_mib = v.gpu_free_bytes / MIB if math.isfinite(v.gpu_free_bytes) else math.nan
    if not math.isfinite(v.level_bytes):
        return OK, "no memory figure from the driver (n/a)"
    if v.phase == UNKNOWN:
        # Retries need no history to mean something: they are the allocator's own word.
        if v.alloc_retries_last_minute > 0:
            return TIGHT, _retrying(v.alloc_retries_last_minute)
        return OK, f"watching: {v.n_valid} samples so far"
    if v.eta is not None and v.alerting:
        return OOM_RISK, _growth_reason(v, v.eta)
    if v.spike_need_mib > 0 and math.isfinite(free_mib):
        peak = f"peaks of +{_mib(v.spike_amplitude_mib)}"
        if v.spike_need_mib > free_mib:
            return OOM_RISK, f"{peak} would not fit: {_mib(free_mib)} free"
        if v.spike_need_mib > TIGHT_SHARE * free_mib:
            return TIGHT, f"{peak} nearly fill the {_mib(free_mib)} free"
    if v.alloc_retries_last_minute > 0:
        n = v.alloc_retries_last_minute
        return (
            TIGHT,
            f"allocator retrying: {n} {'retry' if n == 1 else 'retries'} in the last minute",
        )
    if v.preallocates:
        kv = v.kv_cache_usage
        if kv is None or not math.isfinite(kv):
            return OK, "pre-allocates its pool by design; KV cache usage n/a"
        # A full cache is the pool doing its job; it is tight when requests queue up behind it
        # (or when the server does not say whether they do).
        if kv >= KV_TIGHT and v.waiting is None:
            return TIGHT, f"pre-allocated pool, KV {kv:.0%} full"
        if kv >= KV_TIGHT and (v.queue_growing or v.waiting):
            growing = " and growing" if v.queue_growing else ""
            return TIGHT, f"pre-allocated pool, KV {kv:.0%} full, {v.waiting} waiting{growing}"
        if v.waiting:
            return OK, f"pre-allocated pool, KV {kv:.0%}, {v.waiting} waiting"
        return OK, f"pre-allocated pool, KV {kv:.0%}"
    if v.eta is not None and v.eta.eta_s <= TIGHT_HORIZON * v.warning_s:
        return TIGHT, _growth_reason(v, v.eta)
    if v.phase == STABLE:  # the common case first: one format call
        return OK, f"stable at {bytes_h(v.level_bytes)}{_stepped(v.step_mib)}"
    free = f", {_mib(free_mib)} free" if math.isfinite(free_mib) else ""
    if v.phase == GROWING:
        return OK, f"grows {v.rate_mib_s:+.1f} MiB/s{free}"
    if v.phase == SHRINKING:
        return OK, f"releasing {v.rate_mib_s:+.1f} MiB/s"
    if v.phase == VOLATILE:
        swing = f" by {_mib(v.spike_amplitude_mib)}" if v.spike_amplitude_mib > 0 else ""
        return OK, f"swings{swing}, fits{free}"
    return OK, f"{v.phase} at {bytes_h(v.level_bytes)}"


# --- all plain processes at once ---------------------------------------------------------------

ObjArray = npt.NDArray[np.object_]

_GIB = float(1 << 30)


def sizes(values_bytes: object) -> ObjArray:
    """:func:`vramtop.fmt.size` of every value — the same strings, formatted band by band."""
    v = np.asarray(values_bytes, dtype=np.float64)
    out = np.full(v.shape, "0", dtype=object)
    with np.errstate(invalid="ignore"):
        huge = v >= 100 * _GIB
        gib = (v >= _GIB) & ~huge
        mib = (v >= MIB) & (v < _GIB)
        kib = (v > 0) & (v < MIB)
    for mask, scale, fmt in (
        (huge, _GIB, "{:.0f}G"),
        (gib, _GIB, "{:.1f}G"),
        (mib, MIB, "{:.0f}M"),
        (kib, 1024.0, "{:.0f}K"),
    ):
        if mask.any():
            out[mask] = list(map(fmt.format, (v[mask] / scale).tolist()))
    return out


def _mibs(values_mib: FloatArray) -> ObjArray:
    return sizes(np.maximum(values_mib, 0.0) * MIB)


def judge_rows(
    phase: npt.NDArray[np.int64],
    rate_mib_s: FloatArray,
    level_bytes: FloatArray,
    n_valid: npt.NDArray[np.int64],
    gpu_free_bytes: FloatArray,
    spike_amplitude_mib: FloatArray,
    spike_need_mib: FloatArray,
    step_mib: FloatArray | None = None,
) -> tuple[ObjArray, ObjArray]:
    """(verdicts, reasons) of many processes, each exactly what :func:`judge` says for it with no
    ETA and no pre-allocation (the analyzer judges those few one by one).

    ``phase`` holds the ``trend.P_*`` codes. The rules run as masks over all rows, and every
    figure is formatted only for the rows whose reason shows it.
    """
    p = phase.size
    verdicts = np.full(p, OK, dtype=object)
    reasons = np.empty(p, dtype=object)
    with np.errstate(invalid="ignore", over="ignore"):
        free_mib = np.where(np.isfinite(gpu_free_bytes), gpu_free_bytes / MIB, np.nan)
        has_free = np.isfinite(free_mib)
        left = np.ones(p, dtype=np.bool_)

        def take(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
            picked = left & mask
            left[picked] = False
            return picked

        m = take(~np.isfinite(level_bytes))
        reasons[m] = "no memory figure from the driver (n/a)"
        m = take(phase == P_UNKNOWN)
        if m.any():
            reasons[m] = [f"watching: {k} samples so far" for k in n_valid[m].tolist()]

        spiky = left & (spike_need_mib > 0) & has_free
        if spiky.any():
            risk = take(spiky & (spike_need_mib > free_mib))
            tight = take(spiky & ~risk & (spike_need_mib > TIGHT_SHARE * free_mib))
            if risk.any() or tight.any():
                peaks = _mibs(spike_amplitude_mib)
                frees = _mibs(free_mib)
                verdicts[risk] = OOM_RISK
                reasons[risk] = [
                    f"peaks of +{a} would not fit: {f} free"
                    for a, f in zip(peaks[risk], frees[risk], strict=True)
                ]
                verdicts[tight] = TIGHT
                reasons[tight] = [
                    f"peaks of +{a} nearly fill the {f} free"
                    for a, f in zip(peaks[tight], frees[tight], strict=True)
                ]

        m = take(phase == P_STABLE)
        if m.any():
            reasons[m] = ["stable at " + s for s in sizes(level_bytes[m]).tolist()]
            if step_mib is not None:
                for i in np.flatnonzero(m & (step_mib != 0)).tolist():
                    reasons[i] += _stepped(float(step_mib[i]))
        if not left.any():
            return verdicts, reasons
        free_txt = np.full(p, "", dtype=object)
        if has_free.any():
            free_txt[has_free] = [", " + f + " free" for f in _mibs(free_mib[has_free]).tolist()]
        m = take(phase == P_GROWING)
        if m.any():
            reasons[m] = [
                f"grows {r:+.1f} MiB/s{f}"
                for r, f in zip(rate_mib_s[m].tolist(), free_txt[m].tolist(), strict=True)
            ]
        m = take(phase == P_SHRINKING)
        if m.any():
            reasons[m] = [f"releasing {r:+.1f} MiB/s" for r in rate_mib_s[m].tolist()]
        m = take(phase == P_VOLATILE)
        if m.any():
            amp = spike_amplitude_mib[m]
            swing = np.where(amp > 0, " by " + _mibs(amp), "")
            reasons[m] = [
                f"swings{s}, fits{f}"
                for s, f in zip(swing.tolist(), free_txt[m].tolist(), strict=True)
            ]
        for i in np.flatnonzero(left).tolist():
            reasons[i] = f"{PHASES[int(phase[i])]} at {bytes_h(float(level_bytes[i]))}"
    return verdicts, reasons
