"""Per-process OOM predictions: each process from its own trend and the free memory it competes
for, processes that grow together on one GPU judged together, and a restarted job judged by
where its earlier incarnations died.

Where it sits: the analyzer core (``analysis/analyzer.py``) calls :func:`process_fits` with the
rows whose phase says they grow, then :func:`concurrent` per GPU and :func:`lineage_prediction`
per restarted process; the verdicts (``verdict.py``) and the GPU's alert take the results. None
of it depends on how the GPU's own used-memory history is classified: a GPU whose history holds
the drop of an earlier crash (so its own series looks volatile) still gets the warning its
growing processes call for.

* A process's own fit is :func:`oom.fit_oom` over its row, with "full" at its current level plus
  the GPU's free memory: the same rules (sustained, not one allocation, still rising) and the same
  calibrated confidence as the GPU's prediction.
* Free memory is shared: with k processes growing at sustained rates r_i, the GPU is full in
  ``free / sum(r_i)``, sooner than any of them alone says. Each contributor carries that shared
  prediction ("1 of 4 growing: GPU full in ~2s"); its confidence is the contributors' evidence
  (fit quality, rate-weighted) discounted by how far ahead the shared ETA looks.
* A restarted job (``lineage.py``) whose earlier incarnations likely ended in an OOM at some peak,
  growing again towards it: ETA = (that peak - level now) / rate, fitted by the usual rules. Each
  such death is evidence that the same point is fatal again: confidence 1 - 0.5^k for k deaths,
  times the look-ahead discount over this run's growth plus a typical earlier run's life.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vramtop.analysis import oom as oom_mod
from vramtop.analysis.model import Lineage, OomPrediction
from vramtop.analysis.trend import MIB, FloatArray
from vramtop.config import OomPredictionConfig
from vramtop.messages import ProcessIdentity

LINEAGE_RULE = "lineage:"
MAX_FITS = 64  # per tick: the fastest-growing candidates first (a few are ever growing)


@dataclass(frozen=True, slots=True)
class ProcessFit:
    row: int
    identity: ProcessIdentity
    gpu: int
    fit: oom_mod.OomFit


@dataclass(frozen=True, slots=True)
class SharedPrediction:
    """The GPU's time to full from its growing processes together."""

    prediction: OomPrediction
    rows: tuple[int, ...]  # the contributors
    slope_mib_s: float


def process_fits(
    ts: FloatArray,
    used: FloatArray,
    candidates: Sequence[int],
    rates: FloatArray,
    identities: Sequence[ProcessIdentity],
    gpus: Sequence[int],
    levels_bytes: FloatArray,
    free_of_row: FloatArray,
    config: OomPredictionConfig,
) -> list[ProcessFit]:
    """Own-trend fits of the candidate rows; rows whose fit refuses are left out."""
    picked = sorted(candidates, key=lambda i: -float(rates[i]))[:MAX_FITS]
    out: list[ProcessFit] = []
    for i in picked:
        free = float(free_of_row[i])
        level = float(levels_bytes[i])
        if not (math.isfinite(free) and math.isfinite(level)):
            continue
        row = used[i]
        fit = oom_mod.fit_oom(ts, row, _ceiling(row, level, free), config)
        if fit is not None:
            out.append(ProcessFit(i, identities[i], gpus[i], fit))
    return out


def _ceiling(row: FloatArray, level: float, free: float) -> float:
    """Bytes at which this process would fill its GPU: its recent high plus the free memory
    (free was measured with the process at its current level, so the recent high counts once)."""
    finite = row[np.isfinite(row)]
    recent = float(finite[-1]) if finite.size else level
    return max(recent, level) + free


def concurrent(gpu: int, fits: Sequence[ProcessFit], free_bytes: float) -> SharedPrediction | None:
    """The shared prediction of one GPU's growing processes (None when none grows)."""
    mine = [f for f in fits if f.gpu == gpu]
    if not mine or not math.isfinite(free_bytes):
        return None
    slopes = np.asarray([f.fit.slope_mib_s for f in mine])
    errs = np.asarray([oom_mod.rate_uncertainty(f.fit.slope_mib_s, f.fit.stderr_mib_s)
                       for f in mine])  # fmt: skip
    total = float(slopes.sum())
    if not total > 0:
        return None
    u = float(np.sqrt((errs**2).sum()))
    headroom = max(free_bytes / MIB, 0.0)
    weights = slopes / total
    quality = float(sum(w * f.fit.quality for w, f in zip(weights.tolist(), mine, strict=True)))
    watched = float(sum(w * f.fit.observed_s for w, f in zip(weights.tolist(), mine, strict=True)))
    eta, low, high = oom_mod.eta_range(headroom, total, u)
    began = all(f.fit.began_seen for f in mine)
    confidence = quality * oom_mod.foresight(watched, eta, began_seen=began)
    driver = mine[int(np.argmax(slopes))]
    if len(mine) == 1:
        rule = driver.fit.prediction.rule
    else:
        rule = (
            f"{len(mine)} processes growing together at {total:.1f} MiB/s, {headroom:.0f} MiB free"
        )
    prediction = OomPrediction(eta, low, high, float(np.clip(confidence, 0.0, 1.0)),
                               driver.identity, rule)  # fmt: skip
    return SharedPrediction(prediction, tuple(f.row for f in mine), total)


def fatal_level(lineage: Lineage) -> tuple[float, int, float] | None:
    """(bytes where earlier incarnations likely died, how many, how long each was watched)."""
    died = [p for p in lineage.previous if p.likely_oom and math.isfinite(p.peak_bytes)]
    if not died:
        return None
    fatal = float(np.median([p.peak_bytes for p in died]))
    return fatal, len(died), float(np.median([p.seen_s for p in died]))


def lineage_prediction(
    identity: ProcessIdentity,
    lineage: Lineage,
    ts: FloatArray,
    row: FloatArray,
    level_bytes: float,
    config: OomPredictionConfig,
) -> tuple[OomPrediction, float, int] | None:
    """(prediction, the fatal level in bytes, deaths) for a restarted job growing again towards
    the level where its earlier incarnations likely ran out of memory; None otherwise.

    The growth is fitted by the same rules as any OOM prediction (:func:`oom.fit_oom`, with
    "full" at the fatal level); the confidence is the larger of that fit's own and the lineage's
    evidence: 1 - 0.5^k for k such deaths, discounted by how far ahead the ETA looks against how
    long this run plus a typical earlier one has been watched growing this way."""
    fatal_info = fatal_level(lineage)
    if fatal_info is None or not math.isfinite(level_bytes):
        return None
    fatal, deaths, seen = fatal_info
    if fatal <= level_bytes:
        return None  # past the old peak: the free-memory prediction is the one that matters
    fit = oom_mod.fit_oom(ts, row, fatal, config)
    if fit is None:
        return None
    p = fit.prediction
    evidence = (1.0 - 0.5**deaths) * oom_mod.foresight(fit.observed_s + seen, p.eta_s, 0.0)
    confidence = float(np.clip(max(p.confidence, evidence), 0.0, 1.0))
    rule = (
        f"{LINEAGE_RULE} {deaths} earlier run(s) ended near {level_text(fatal)}, "
        f"growing {fit.slope_mib_s:.1f} MiB/s from {level_text(level_bytes)}"
    )
    prediction = OomPrediction(p.eta_s, p.eta_low_s, p.eta_high_s, confidence, identity, rule)
    return prediction, fatal, deaths


def level_text(value_bytes: float) -> str:
    from vramtop.fmt import size

    return size(value_bytes)
