"""The analyzer's functional core: histories in, :class:`AnalysisResult` out, once per tick.

Where it sits: the analyzer actor (``actors/analyzer.py``) copies histories out of shared memory
into :class:`GpuHistory` / :class:`ProcessHistories` and calls :meth:`Analyzer.step`; ``--once``,
``replay``, the evaluation (``scripts/eval_analysis.py``) and the benchmarks call the same method
with arrays they built themselves. The only state kept between steps is the phase hysteresis,
keyed by (process identity, GPU) and by GPU index.

Cost: phases and spikes of all processes are computed at once on one 2-D array (least squares,
running minima and maxima; no Python loop per sample); the per-process Python work is building the
verdict line. PELT runs for the selected process only, and per GPU when
``oom_prediction.algorithm = "pelt"``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vramtop.analysis import oom as oom_mod
from vramtop.analysis import pelt
from vramtop.analysis.model import (
    AnalysisResult,
    GpuAnalysis,
    OomPrediction,
    ProcessAnalysis,
    Segment,
    Trend,
)
from vramtop.analysis.spikes import spike_batch
from vramtop.analysis.trend import (
    MIB,
    PHASES,
    FloatArray,
    IntArray,
    PhaseParams,
    PhaseTracker,
    classify_batch,
)
from vramtop.analysis.verdict import VerdictInput, judge
from vramtop.config import Config
from vramtop.messages import ProcessIdentity

DRIVER_SHARE = 0.25  # a driver's own rate must be at least this share of the GPU's growth


@dataclass(frozen=True, slots=True)
class GpuHistory:
    """One GPU's used-memory history (bytes, NaN = n/a) and its latest figures."""

    index: int
    ts: FloatArray
    used: FloatArray
    total: float = math.nan
    free: float = math.nan  # NaN: total minus the latest used
    temperature_c: float = math.nan


@dataclass(frozen=True, slots=True)
class ProcessHistories:
    """Every process's history on one clock: ``used[i]`` (bytes, NaN = n/a) against ``ts``."""

    ts: FloatArray
    used: FloatArray  # [P, n]
    identities: tuple[ProcessIdentity, ...]
    gpu_index: IntArray  # [P]

    @classmethod
    def empty(cls) -> ProcessHistories:
        return cls(np.zeros(0), np.zeros((0, 0)), (), np.zeros(0, dtype=np.int64))

    @classmethod
    def build(
        cls,
        ts: object,
        rows: Sequence[tuple[ProcessIdentity, int, object]],
    ) -> ProcessHistories:
        """From (identity, gpu index, used bytes[n]) rows sharing the timestamps ``ts``."""
        t = np.asarray(ts, dtype=np.float64).ravel()
        used = np.full((len(rows), t.size), np.nan)
        for i, (_, _, values) in enumerate(rows):
            v = np.asarray(values, dtype=np.float64).ravel()[: t.size]
            used[i, t.size - v.size :] = v
        return cls(
            t,
            used,
            tuple(r[0] for r in rows),
            np.asarray([r[1] for r in rows], dtype=np.int64).reshape(-1),
        )


@dataclass(frozen=True, slots=True)
class AnalysisContext:
    """Per-tick hints from outside the histories."""

    timestamp: float | None = None
    preallocates: Mapping[ProcessIdentity, bool] = field(default_factory=dict)
    kv_cache_usage: Mapping[ProcessIdentity, float | None] = field(default_factory=dict)
    selected: ProcessIdentity | None = None  # PELT segments are computed for this one


class Analyzer:
    """Stateful only for hysteresis; everything else is recomputed from the histories."""

    def __init__(self, config: Config | None = None, params: PhaseParams | None = None) -> None:
        self.config = config or Config()
        self.params = params or PhaseParams()
        self._proc_phase = PhaseTracker(confirm=self.params.confirm)
        self._gpu_phase = PhaseTracker(confirm=self.params.confirm)
        # The last step's predictions per GPU before the alert thresholds (for the detail view,
        # the evaluation and anyone asking "what would it say at a lower confidence?").
        self.raw_predictions: dict[int, OomPrediction] = {}

    def configure(self, config: Config) -> None:
        """New thresholds (SIGHUP reload); the phase memory is kept."""
        self.config = config

    def step(
        self,
        gpu_histories: Sequence[GpuHistory],
        process_histories: ProcessHistories | None = None,
        context: AnalysisContext | None = None,
    ) -> AnalysisResult:
        context = context or AnalysisContext()
        procs = process_histories if process_histories is not None else ProcessHistories.empty()
        gpus = {g.index: g for g in gpu_histories}
        totals = {i: _finite(g.total) for i, g in gpus.items()}
        free = {i: _free(g) for i, g in gpus.items()}

        # --- processes, vectorised -----------------------------------------------------------
        p = len(procs.identities)
        gpu_of = [int(i) for i in np.asarray(procs.gpu_index).ravel()[:p].tolist()]
        row_total = np.asarray([totals.get(g, math.nan) for g in gpu_of], dtype=np.float64)
        if p:
            batch = classify_batch(procs.ts, procs.used, row_total, self.params)
            keys: list[object] = [(procs.identities[i], gpu_of[i]) for i in range(p)]
            shown = self._proc_phase.update(keys, batch.phase)
            spikes = spike_batch(procs.ts, procs.used, batch.threshold_mib)
            rates = batch.rate_mib_s.tolist()
            stderrs = batch.stderr_mib_s.tolist()
            levels = (batch.level_mib * MIB).tolist()
            n_valid = batch.n_valid.tolist()
            amp = spikes.amplitude_mib.tolist()
            need = spikes.need_mib.tolist()
        else:
            shown, rates, stderrs, levels, n_valid, amp, need = [], [], [], [], [], [], []

        # --- GPUs ------------------------------------------------------------------------------
        alerts = self.config.alerts
        gpu_results: list[GpuAnalysis] = []
        raw_eta: dict[int, tuple[OomPrediction, ProcessIdentity | None]] = {}
        intervals: dict[int, float] = {}
        for index in sorted(gpus):
            g = gpus[index]
            gb = classify_batch(g.ts, g.used, totals[index], self.params)
            phase = self._gpu_phase.update([index], gb.phase)[0]
            trend = Trend(PHASES[phase], float(gb.rate_mib_s[0]), float(gb.stderr_mib_s[0]))
            fit = self._predict(g, totals[index])
            prediction: OomPrediction | None = None
            if fit is not None:
                driver = _driver(index, gpu_of, rates, procs.identities, fit.slope_mib_s)
                prediction = dataclasses.replace(fit.prediction, driver=driver)
                raw_eta[index] = (prediction, driver)
            interval = oom_mod.sample_interval(g.ts)
            intervals[index] = interval
            temp = _finite(g.temperature_c)
            gpu_results.append(
                GpuAnalysis(
                    gpu_index=index,
                    trend=trend,
                    oom=prediction if oom_mod.alert_passes(prediction, alerts, interval) else None,
                    temp_warning=math.isfinite(temp) and temp >= alerts.temp_warning_celsius,
                )
            )

        self.raw_predictions = {i: pred for i, (pred, _) in raw_eta.items()}

        # --- verdicts --------------------------------------------------------------------------
        results: list[ProcessAnalysis] = []
        prealloc = context.preallocates
        kv = context.kv_cache_usage
        warning_s = alerts.oom_warning_seconds
        for i in range(p):
            identity = procs.identities[i]
            g_index = gpu_of[i]
            phase_name = PHASES[shown[i]]
            eta: OomPrediction | None = None
            found = raw_eta.get(g_index)
            if found is not None and found[1] == identity:
                eta = found[0]
            verdict, reason = judge(
                VerdictInput(
                    phase=phase_name,
                    rate_mib_s=rates[i],
                    level_bytes=levels[i],
                    n_valid=n_valid[i],
                    gpu_free_bytes=free.get(g_index, math.nan),
                    spike_amplitude_mib=amp[i],
                    spike_need_mib=need[i],
                    preallocates=bool(prealloc.get(identity, False)) if prealloc else False,
                    kv_cache_usage=kv.get(identity) if kv else None,
                    eta=eta,
                    alerting=eta is not None
                    and oom_mod.alert_passes(eta, alerts, intervals.get(g_index, 0.0)),
                    warning_s=warning_s,
                )
            )
            segments: tuple[Segment, ...] = ()
            note = ""
            if context.selected is not None and identity == context.selected:
                segments, note = self._segments(procs, i)
            results.append(
                ProcessAnalysis(
                    identity=identity,
                    gpu_index=g_index,
                    trend=Trend(phase_name, rates[i], stderrs[i]),
                    verdict=verdict,
                    reason=reason,
                    eta=eta,
                    segments=segments,
                    segments_note=note,
                )
            )

        stamp = context.timestamp
        if stamp is None or not math.isfinite(stamp):
            stamp = _latest(procs.ts, [g.ts for g in gpu_histories])
        return AnalysisResult(timestamp=stamp, gpus=tuple(gpu_results), processes=tuple(results))

    def _predict(self, g: GpuHistory, total: float) -> oom_mod.OomFit | None:
        cfg = self.config.oom_prediction
        segment_start: float | None = None
        fallback = ""
        if cfg.algorithm == "pelt":
            if pelt.available():
                ts = np.asarray(g.ts, dtype=np.float64)
                lo = max(0, ts.size - int(oom_mod.FIT_WINDOW_S + oom_mod.ENVELOPE_S) * 2)
                segment_start = pelt.current_segment_start(ts[lo:], np.asarray(g.used)[lo:])
                if segment_start is None:
                    segment_start = -math.inf  # one segment: the whole window
            else:
                fallback = f" (pelt unavailable: {pelt.PELT_MISSING_HINT})"
        if segment_start == -math.inf:
            segment_start = float(np.nanmin(g.ts)) if np.isfinite(g.ts).any() else None
        fit = oom_mod.fit_oom(g.ts, g.used, total, cfg, segment_start_ts=segment_start)
        if fit is not None and fallback:
            labelled = dataclasses.replace(fit.prediction, rule=fit.prediction.rule + fallback)
            fit = dataclasses.replace(fit, prediction=labelled)
        return fit

    def _segments(self, procs: ProcessHistories, i: int) -> tuple[tuple[Segment, ...], str]:
        if not pelt.available():
            return (), pelt.PELT_MISSING_HINT
        row = procs.used[i]
        valid = np.isfinite(row)
        # The first sample of the process is in the window when the row starts with n/a.
        starts_here = bool(valid.any() and not valid[0])
        return tuple(pelt.segments(procs.ts, row, starts_in_window=starts_here)), ""


def _finite(value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _free(g: GpuHistory) -> float:
    free = _finite(g.free)
    if math.isfinite(free):
        return free
    used = np.asarray(g.used, dtype=np.float64)
    finite = used[np.isfinite(used)]
    total = _finite(g.total)
    if finite.size and math.isfinite(total):
        return max(total - float(finite[-1]), 0.0)
    return math.nan


def _driver(
    gpu: int,
    gpu_of: list[int],
    rates: list[float],
    identities: tuple[ProcessIdentity, ...],
    gpu_rate: float,
) -> ProcessIdentity | None:
    """The process on ``gpu`` growing fastest, if it carries a real share of the growth."""
    best, best_rate = None, 0.0
    for i, g in enumerate(gpu_of):
        if g == gpu and rates[i] > best_rate:
            best, best_rate = i, rates[i]
    if best is None:
        return None
    if best_rate < DRIVER_SHARE * gpu_rate:
        return None
    return identities[best]


def _latest(ts: FloatArray, others: list[FloatArray]) -> float:
    best = math.nan
    for arr in [ts, *others]:
        a = np.asarray(arr, dtype=np.float64)
        finite = a[np.isfinite(a)]
        if finite.size:
            best = float(finite.max()) if math.isnan(best) else max(best, float(finite.max()))
    return best if math.isfinite(best) else 0.0
