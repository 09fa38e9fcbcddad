"""Survival verdicts: OK / TIGHT / OOM risk per process, always with a one-line reason.

Where it sits: the analyzer gathers, per process, its phase and rate (``trend.py``), its recent
spike (``spikes.py``), its GPU's free memory and OOM prediction (``oom.py``) and the enricher's
hints, and calls :func:`judge`. The reason is shown as is in the UI, ``--once`` and the CSV.

Rules, first match wins:

1. No figure, or too few samples: OK, with why.
2. The GPU's OOM alert (it passed ``[alerts]``) is driven by this process: OOM risk.
3. A repeat of the recent peak would not fit in the free memory: OOM risk; would take more
   than ``TIGHT_SHARE`` of it: TIGHT. (A process that never came down has no peak to repeat,
   so a lone stable process is never TIGHT because of itself.)
4. A process that pre-allocates by design (vLLM, SGLang, TGI, JAX) is judged by its own headroom
   signal — KV-cache usage when a scraper provides it — never by how full the GPU is.
5. Growth is judged by the trend's ETA, not by a multiple of current usage: TIGHT when this
   process drives a (not yet alerting) prediction within ``TIGHT_HORIZON`` × the warning time.
6. Everything else is OK, with the phase in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    eta: OomPrediction | None = None  # the GPU's raw prediction when this process drives it
    alerting: bool = False  # ... and it passed the alert thresholds
    warning_s: float = 300.0


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


def eta_range(p: OomPrediction) -> str:
    """ "~4m (3m-6m)" as the UI shows an ETA with its range."""
    return f"~{_eta(p.eta_s)} ({_eta(p.eta_low_s)}-{_eta(p.eta_high_s)})"


def judge(v: VerdictInput) -> tuple[str, str]:
    """(verdict, one-line reason) for one process."""
    free_mib = v.gpu_free_bytes / MIB if math.isfinite(v.gpu_free_bytes) else math.nan
    if not math.isfinite(v.level_bytes):
        return OK, "no memory figure from the driver (n/a)"
    if v.phase == UNKNOWN:
        return OK, f"watching: {v.n_valid} samples so far"
    if v.eta is not None and v.alerting:
        return OOM_RISK, f"grows {v.rate_mib_s:+.1f} MiB/s: GPU full in {eta_range(v.eta)}"
    if v.spike_need_mib > 0 and math.isfinite(free_mib):
        peak = f"peaks of +{_mib(v.spike_amplitude_mib)}"
        if v.spike_need_mib > free_mib:
            return OOM_RISK, f"{peak} would not fit: {_mib(free_mib)} free"
        if v.spike_need_mib > TIGHT_SHARE * free_mib:
            return TIGHT, f"{peak} nearly fill the {_mib(free_mib)} free"
    if v.preallocates:
        kv = v.kv_cache_usage
        if kv is None or not math.isfinite(kv):
            return OK, "pre-allocates its pool by design; KV cache usage n/a"
        if kv >= KV_TIGHT:
            return TIGHT, f"pre-allocated pool, KV cache {kv:.0%} full"
        return OK, f"pre-allocated pool, KV cache {kv:.0%} used"
    if v.eta is not None and v.eta.eta_s <= TIGHT_HORIZON * v.warning_s:
        return TIGHT, f"grows {v.rate_mib_s:+.1f} MiB/s: GPU full in {eta_range(v.eta)}"
    if v.phase == STABLE:  # the common case first: one format call
        return OK, f"stable at {bytes_h(v.level_bytes)}"
    free = f", {_mib(free_mib)} free" if math.isfinite(free_mib) else ""
    if v.phase == GROWING:
        return OK, f"grows {v.rate_mib_s:+.1f} MiB/s{free}"
    if v.phase == SHRINKING:
        return OK, f"releasing {v.rate_mib_s:+.1f} MiB/s"
    if v.phase == VOLATILE:
        swing = f" by {_mib(v.spike_amplitude_mib)}" if v.spike_amplitude_mib > 0 else ""
        return OK, f"swings{swing}, fits{free}"
    return OK, f"{v.phase} at {bytes_h(v.level_bytes)}"
