"""The analyzer's functional core: histories in, :class:`AnalysisResult` out, once per tick.

Where it sits: the analyzer actor (``actors/analyzer.py``) copies histories out of shared memory
into :class:`GpuHistory` / :class:`ProcessHistories` and calls :meth:`Analyzer.step`; ``--once``,
``replay``, the evaluation (``scripts/eval_analysis.py``) and the benchmarks call the same method
with arrays they built themselves. The only state kept between steps is the phase hysteresis,
keyed by (process identity, GPU) and by GPU index, and what finds those keys again quickly.

Cost (8 GPUs x 1024 processes must stay a few percent of a core at 1 Hz, see
``scripts/bench_analyzer.py``): phases and spikes of all processes come from one pass over one
2-D array (``rows.py``); the hysteresis is a handful of array operations over all processes, its
keys looked up only when the process list changed; the verdicts are numpy masks, with each reason
formatted only from the figures it shows (``verdict.judge_rows``), and only the few processes with
an ETA, a pre-allocated pool or PELT segments go through :func:`verdict.judge` one by one. PELT
runs for the process whose detail panel is open, and per GPU when ``oom_prediction.algorithm =
"pelt"``, through the segmenter (``segmenter.py``: in this process, or in the live analyzer a
short-lived helper process, so ruptures never stays in the analyzer).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from vramtop.analysis import growth, pelt
from vramtop.analysis import oom as oom_mod
from vramtop.analysis.alerts import AlertLatch
from vramtop.analysis.lineage import LineageTracker, Owner
from vramtop.analysis.model import (
    NO_LINEAGE,
    AnalysisResult,
    GpuAnalysis,
    Lineage,
    OomPrediction,
    ProcessAnalysis,
    Segment,
    Trend,
)
from vramtop.analysis.rows import analyze_rows
from vramtop.analysis.segmenter import InProcess, Segmenter
from vramtop.analysis.spikes import SpikeBatch
from vramtop.analysis.trend import (
    MIB,
    P_GROWING,
    P_SHRINKING,
    P_STABLE,
    P_UNKNOWN,
    P_VOLATILE,
    PHASES,
    BoolArray,
    FloatArray,
    IntArray,
    PhaseBatch,
    PhaseParams,
    PhaseTracker,
    classify_batch,
    urgent_moves,
)
from vramtop.analysis.verdict import VerdictInput, judge, judge_rows
from vramtop.config import AlertsConfig, Config
from vramtop.messages import ProcessIdentity

DRIVER_SHARE = 0.25  # a driver's own rate must be at least this share of the GPU's growth
# A process that vanishes with its GPU predicted full this soon died of it (lineage.likely_oom).
RISK_AT_DEATH_S = 30.0
_PHASE_NAMES = np.asarray(PHASES, dtype=object)


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
    # From the scraper: requests an inference server has queued, and whether the queue grew.
    waiting: Mapping[ProcessIdentity, int | None] = field(default_factory=dict)
    queue_growing: Mapping[ProcessIdentity, bool] = field(default_factory=dict)
    selected: ProcessIdentity | None = None  # PELT segments are computed for this one
    # Deep mode: how often PyTorch's allocator retried in the last minute (only those > 0).
    alloc_retries: Mapping[ProcessIdentity, int] = field(default_factory=dict)
    # (user, command line) per process, from the sampler's rows: what links a restart to the
    # run before it (lineage.py). Without it no lineage is kept.
    owners: Mapping[ProcessIdentity, Owner] = field(default_factory=dict)


@dataclass(slots=True)
class _Predictions:
    """This tick's per-process predictions, before the alert latch."""

    eta: dict[int, OomPrediction] = field(default_factory=dict)
    together: dict[int, int] = field(default_factory=dict)  # row -> processes growing with it
    fatal: dict[int, tuple[float, int]] = field(default_factory=dict)  # row -> (bytes, deaths)


class Analyzer:
    """Stateful only for hysteresis; everything else is recomputed from the histories."""

    def __init__(
        self,
        config: Config | None = None,
        params: PhaseParams | None = None,
        segmenter: Segmenter | None = None,
    ) -> None:
        self.config = config or Config()
        # PELT runs here (tests, replay) or, in the live analyzer, in a helper process.
        self.segmenter: Segmenter = segmenter or InProcess()
        self.params = params or PhaseParams()
        self._proc_phase = PhaseTracker(confirm=self.params.confirm)
        self._gpu_phase = PhaseTracker(confirm=self.params.confirm)
        # The last step's predictions per GPU before the alert thresholds (for the detail view,
        # the evaluation and anyone asking "what would it say at a lower confidence?").
        self.raw_predictions: dict[int, OomPrediction] = {}
        self._last_rows: tuple[IntArray, FloatArray, IntArray] | None = None
        self._latch = AlertLatch()
        # Per GPU: when a process holding memory last left it (its history before is not the
        # envelope of what runs now), and the last tick's rows to notice who left.
        self._departed: dict[int, float] = {}
        self._prev_keys: list[tuple[ProcessIdentity, int]] = []
        self._prev_held: BoolArray = np.zeros(0, dtype=np.bool_)
        self.lineage = LineageTracker(self.config.oom_prediction.restart_window_seconds)

    def configure(self, config: Config) -> None:
        """New thresholds (SIGHUP reload); the phase and lineage memory is kept, the standing
        warnings are judged afresh against the new thresholds."""
        self.config = config
        self._latch = AlertLatch()
        self.lineage.window_s = config.oom_prediction.restart_window_seconds

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
        identities = procs.identities
        gpu_arr = np.asarray(procs.gpu_index, dtype=np.int64).ravel()[:p]
        gpu_of: list[int] = gpu_arr.tolist()
        row_total = _per_row(gpu_arr, totals)
        pid_arr = np.fromiter((i.pid for i in identities), dtype=np.int64, count=p)
        same_rows = self._same_rows(identities, pid_arr, gpu_arr)
        if p:
            batch, spikes = analyze_rows(procs.ts, procs.used, row_total, self.params)
            shown = self._proc_phase.update_array(
                _KeysOf(identities, gpu_of), batch.phase, same_keys=same_rows,
                urgent=urgent_moves(batch, self.params.short_window_s),
            )  # fmt: skip
            rate_arr = batch.rate_mib_s
            shown, shown_rate, step = _shown_rates(shown, batch, self.params.short_window_s)
        else:
            shown_rate, step = np.zeros(0), np.zeros(0)
            shown = np.zeros(0, dtype=np.int64)
            rate_arr = np.zeros(0)

        stamp0 = context.timestamp
        if stamp0 is None or not math.isfinite(stamp0):
            stamp0 = _latest(procs.ts, [g.ts for g in gpu_histories])
        # --- per-process predictions (growth.py) -------------------------------------------
        alerts = self.config.alerts
        cfg = self.config.oom_prediction
        self._latch.begin_tick()
        level = batch.level_mib * MIB if p else np.zeros(0)
        row_free = _per_row(gpu_arr, free)
        fits: list[growth.ProcessFit] = []
        if p:
            grows = ((batch.phase == P_GROWING) | (shown == P_GROWING)) & (
                rate_arr >= max(cfg.min_rate_mb_per_sec, 1e-9)
            )
            candidates = np.flatnonzero(grows).tolist()
            if candidates and context.preallocates:
                # A pre-allocator fills its pool up to a configured share by design.
                candidates = [i for i in candidates
                              if not context.preallocates.get(identities[i], False)]  # fmt: skip
            if candidates:
                # The free memory a process competes for: what its neighbours' recent peaks
                # will take back (a swinging neighbour returns to its peak) is not free.
                need = np.nan_to_num(spikes.need_mib) * MIB
                per_gpu_need = {g: float(need[gpu_arr == g].sum()) for g in set(gpu_of)}
                competing = row_free - (_per_row(gpu_arr, per_gpu_need) - need)
                fits = growth.process_fits(
                    procs.ts, procs.used, candidates, rate_arr, identities, gpu_of, level,
                    np.maximum(competing, 0.0), cfg,
                )  # fmt: skip
        shared = {index: growth.concurrent(index, fits, free.get(index, math.nan))
                  for index in sorted(gpus)}  # fmt: skip
        for f in fits:
            # A growing row with a prediction shows the rate that prediction stands on (its
            # growth run's), not the phase window's, which a rise younger than the window
            # dilutes: "1 of 4 growing, +511M/s", not "+73M/s" beside a 3 s ETA.
            if shown[f.row] == P_GROWING and f.fit.slope_mib_s > 0:
                shown_rate[f.row] = f.fit.slope_mib_s
        own = _Predictions()
        for sp in shared.values():
            if sp is not None:
                for i in sp.rows:
                    own.eta[i] = sp.prediction
                    own.together[i] = len(sp.rows)

        if p:
            with np.errstate(over="ignore", invalid="ignore"):
                thr_bytes = batch.threshold_mib * MIB
            self._note_departures(identities, gpu_of, level, thr_bytes, stamp0, same_rows)
        # --- lineage (lineage.py) ------------------------------------------------------------
        stamp = stamp0
        lineages: list[Lineage] = []
        if p and context.owners:
            row_total = _per_row(gpu_arr, totals)
            with np.errstate(invalid="ignore", divide="ignore"):
                share = row_free / row_total
            risk = np.zeros(p, dtype=np.bool_)
            interval = oom_mod.sample_interval(procs.ts)
            for i, pred in own.eta.items():
                risk[i] = pred.eta_low_s <= max(RISK_AT_DEATH_S, 5.0 * interval)
            lineages = self.lineage.update(
                stamp, _KeysOf(identities, gpu_of), context.owners, level, share, risk,
                same_keys=same_rows,
            )  # fmt: skip
            for i, lin in enumerate(lineages):
                if lin.restarts and lin.previous:
                    self._lineage_prediction(i, lin, procs, batch, identities, level, own)

        # --- GPUs ------------------------------------------------------------------------------
        gpu_results: list[GpuAnalysis] = []
        raw_eta: dict[int, tuple[OomPrediction, ProcessIdentity | None]] = {}
        intervals: dict[int, float] = {}
        for index in sorted(gpus):
            g = gpus[index]
            gb = classify_batch(g.ts, g.used, totals[index], self.params)
            phase = self._gpu_phase.update(
                [index], gb.phase, urgent_moves(gb, self.params.short_window_s)
            )[0]
            g_phase, g_rate, g_step = _shown_rates(
                np.asarray([phase], dtype=np.int64), gb, self.params.short_window_s
            )
            trend = Trend(
                PHASES[int(g_phase[0])], float(g_rate[0]), float(gb.stderr_mib_s[0]),
                float(g_step[0]),
            )  # fmt: skip
            interval = oom_mod.sample_interval(g.ts)
            intervals[index] = interval
            options: list[OomPrediction] = []
            fit = self._predict(g, totals[index], self._departed.get(index))
            if fit is not None:
                driver = _driver(index, gpu_arr, rate_arr, identities, fit.slope_mib_s)
                if driver is not None and context.preallocates.get(driver, False):
                    fit = None  # the GPU grows because a pool is being filled, by design
            if fit is not None:
                gpu_pred = dataclasses.replace(fit.prediction, driver=driver)
                raw_eta[index] = (gpu_pred, driver)
                options.append(gpu_pred)
                if trend.phase == PHASES[P_GROWING] and fit.slope_mib_s > 0:
                    # As for a process: the rate its prediction stands on.
                    trend = dataclasses.replace(trend, rate_mib_s=fit.slope_mib_s)
            # The processes' own predictions (shared growth, restarts) as they stand after the
            # lineage has added its evidence.
            seen_ids: set[int] = set()
            for i, pred in own.eta.items():
                if gpu_of[i] == index and id(pred) not in seen_ids:
                    seen_ids.add(id(pred))
                    options.append(pred)
            chosen = _choose(options, alerts, interval)
            if chosen is not None:
                self.raw_predictions[index] = chosen
            else:
                self.raw_predictions.pop(index, None)
            passes = oom_mod.alert_passes(chosen, alerts, interval)
            used_now = _last_finite(g.used)
            shown_oom = self._latch.update(
                ("gpu", index), stamp, chosen, passes, used_now,
                float(gb.threshold_mib[0]) * MIB, alerts,
            )  # fmt: skip
            temp = _finite(g.temperature_c)
            gpu_results.append(
                GpuAnalysis(
                    gpu_index=index,
                    trend=trend,
                    oom=shown_oom,
                    temp_warning=math.isfinite(temp) and temp >= alerts.temp_warning_celsius,
                )
            )
        for index in [i for i in self.raw_predictions if i not in gpus]:
            del self.raw_predictions[index]

        # --- verdicts --------------------------------------------------------------------------
        results: list[ProcessAnalysis] = []
        if p:
            results = self._verdicts(
                procs, context, gpu_arr, gpu_of, pid_arr, shown, batch, spikes, free, raw_eta,
                intervals, own, stamp, shown_rate, step,
            )  # fmt: skip
            if lineages:
                for i, lin in enumerate(lineages):
                    if lin is not NO_LINEAGE:
                        results[i] = dataclasses.replace(results[i], lineage=lin)

        return AnalysisResult(timestamp=stamp, gpus=tuple(gpu_results), processes=tuple(results))

    def _same_rows(
        self, identities: tuple[ProcessIdentity, ...], pids: IntArray, gpus: IntArray
    ) -> bool:
        """Are the rows the same processes, in the same order, as last step? (Compared by their
        figures: the live monitor unpickles new identity objects every tick.)"""
        starts = np.fromiter((i.start_time for i in identities), dtype=np.float64, count=pids.size)
        last = self._last_rows
        self._last_rows = (pids, starts, gpus)
        return (
            last is not None
            and last[0].size == pids.size
            and bool(np.array_equal(last[0], pids))
            and bool(np.array_equal(last[1], starts))
            and bool(np.array_equal(last[2], gpus))
        )

    def _verdicts(
        self,
        procs: ProcessHistories,
        context: AnalysisContext,
        gpu_arr: IntArray,
        gpu_of: list[int],
        pid_arr: IntArray,
        shown: IntArray,
        batch: PhaseBatch,
        spikes: SpikeBatch,
        free: dict[int, float],
        raw_eta: dict[int, tuple[OomPrediction, ProcessIdentity | None]],
        intervals: dict[int, float],
        own: _Predictions,
        now: float,
        shown_rate: FloatArray,
        step: FloatArray,
    ) -> list[ProcessAnalysis]:
        """Every process's verdict: all at once by masks, then the few with an ETA, a
        pre-allocated pool or PELT segments one by one, exactly as :func:`judge` rules."""
        identities = procs.identities
        level = batch.level_mib * MIB
        row_free = _per_row(gpu_arr, free)
        verdicts, reasons = judge_rows(
            shown, shown_rate, level, batch.n_valid, row_free,
            spikes.amplitude_mib, spikes.need_mib, step,
        )  # fmt: skip
        names: list[str] = _PHASE_NAMES[shown].tolist()
        rates: list[float] = shown_rate.tolist()
        stderrs: list[float] = batch.stderr_mib_s.tolist()
        steps: list[float] = step.tolist()
        results = _process_analyses(
            identities, gpu_of, names, rates, stderrs, steps, verdicts.tolist(), reasons.tolist()
        )

        alerts = self.config.alerts
        prealloc = context.preallocates
        kv = context.kv_cache_usage
        special: dict[int, OomPrediction | None] = dict(own.eta)
        for index, (prediction, driver) in raw_eta.items():
            if driver is not None:
                for i in _rows_of(driver, pid_arr, identities, gpu_arr == index):
                    special.setdefault(i, prediction)
        for key in self._latch.held():
            if isinstance(key, tuple) and isinstance(key[0], ProcessIdentity):
                for i in _rows_of(key[0], pid_arr, identities, gpu_arr == key[1]):
                    special.setdefault(i, None)
        if prealloc:
            wanted = [k for k, v in prealloc.items() if v]
            if wanted:
                for k in wanted:
                    for i in _rows_of(k, pid_arr, identities):
                        special.setdefault(i, None)
        retries = context.alloc_retries
        for k in retries:
            for i in _rows_of(k, pid_arr, identities):
                special.setdefault(i, None)
        for i, eta in special.items():
            identity = identities[i]
            g_index = gpu_of[i]
            passes = eta is not None and oom_mod.alert_passes(
                eta, alerts, intervals.get(g_index, 0.0)
            )
            warned = self._latch.update(
                (identity, g_index), now, eta, passes, float(level[i]),
                float(batch.threshold_mib[i]) * MIB, alerts,
            )  # fmt: skip
            shown_eta = warned if warned is not None else eta
            fatal, deaths = math.nan, 0
            if shown_eta is not None and shown_eta.rule.startswith(growth.LINEAGE_RULE):
                fatal, deaths = own.fatal.get(i, (math.nan, 0))
            verdict, reason = judge(
                VerdictInput(
                    phase=names[i],
                    rate_mib_s=rates[i],
                    level_bytes=float(level[i]),
                    n_valid=int(batch.n_valid[i]),
                    gpu_free_bytes=free.get(g_index, math.nan),
                    spike_amplitude_mib=float(spikes.amplitude_mib[i]),
                    spike_need_mib=float(spikes.need_mib[i]),
                    preallocates=bool(prealloc.get(identity, False)) if prealloc else False,
                    kv_cache_usage=kv.get(identity) if kv else None,
                    waiting=context.waiting.get(identity) if context.waiting else None,
                    queue_growing=bool(context.queue_growing.get(identity, False)),
                    eta=shown_eta,
                    alerting=warned is not None,
                    warning_s=alerts.oom_warning_seconds,
                    alloc_retries_last_minute=retries.get(identity, 0) if retries else 0,
                    growing_together=own.together.get(i, 1),
                    step_mib=steps[i],
                    fatal_bytes=fatal,
                    deaths=deaths,
                )
            )
            results[i] = dataclasses.replace(
                results[i], verdict=verdict, reason=reason, eta=shown_eta
            )
        if context.selected is None and self.config.oom_prediction.algorithm != "pelt":
            self.segmenter.idle()
        if context.selected is not None:
            for i in _rows_of(context.selected, pid_arr, identities):
                segments, note = self._segments(procs, i)
                results[i] = dataclasses.replace(results[i], segments=segments, segments_note=note)
        return results

    def _lineage_prediction(
        self,
        i: int,
        lin: Lineage,
        procs: ProcessHistories,
        batch: PhaseBatch,
        identities: tuple[ProcessIdentity, ...],
        level: FloatArray,
        own: _Predictions,
    ) -> None:
        """A restarted job growing towards where its earlier runs died (growth.py)."""
        if not batch.rate_mib_s[i] > 0:
            return
        got = growth.lineage_prediction(
            identities[i], lin, procs.ts, procs.used[i], float(level[i]),
            self.config.oom_prediction,
        )  # fmt: skip
        if got is None:
            return
        prediction, fatal, deaths = got
        current = own.eta.get(i)
        if current is not None and current.eta_s <= prediction.eta_s:
            # The shared free memory runs out first; the restarts still add evidence.
            prediction = dataclasses.replace(
                current, confidence=max(current.confidence, prediction.confidence)
            )
            own.eta[i] = prediction
            return
        if current is not None:
            prediction = dataclasses.replace(
                prediction, confidence=max(current.confidence, prediction.confidence)
            )
        own.eta[i] = prediction
        own.fatal[i] = (fatal, deaths)
        own.together.pop(i, None)

    def _note_departures(
        self,
        identities: tuple[ProcessIdentity, ...],
        gpu_of: list[int],
        level: FloatArray,
        threshold: FloatArray,
        now: float,
        same_rows: bool,
    ) -> None:
        """Remember when a process that held more than its change threshold left a GPU."""
        if not same_rows:
            current = set(zip(identities, gpu_of, strict=True))
            for key, held in zip(self._prev_keys, self._prev_held.tolist(), strict=False):
                if held and key not in current:
                    self._departed[key[1]] = now
            self._prev_keys = list(zip(identities, gpu_of, strict=True))
        with np.errstate(invalid="ignore"):
            self._prev_held = np.nan_to_num(level) > threshold

    def _predict(
        self, g: GpuHistory, total: float, since: float | None = None
    ) -> oom_mod.OomFit | None:
        cfg = self.config.oom_prediction
        segment_start: float | None = None
        fallback = ""
        if cfg.algorithm == "pelt":
            if self.segmenter.installed():
                ts = np.asarray(g.ts, dtype=np.float64)
                lo = max(0, ts.size - int(oom_mod.FIT_WINDOW_S + oom_mod.ENVELOPE_S) * 2)
                segment_start = self.segmenter.segment_start(ts[lo:], np.asarray(g.used)[lo:])
                if segment_start is None:
                    segment_start = -math.inf  # one segment: the whole window
            else:
                fallback = f" (pelt unavailable: {pelt.PELT_MISSING_HINT})"
        if segment_start == -math.inf:
            segment_start = float(np.nanmin(g.ts)) if np.isfinite(g.ts).any() else None
        fit = oom_mod.fit_oom(
            g.ts, g.used, total, cfg, segment_start_ts=segment_start, since_ts=since
        )
        if fit is not None and fallback:
            labelled = dataclasses.replace(fit.prediction, rule=fit.prediction.rule + fallback)
            fit = dataclasses.replace(fit, prediction=labelled)
        return fit

    def _segments(self, procs: ProcessHistories, i: int) -> tuple[tuple[Segment, ...], str]:
        if not self.segmenter.installed():
            return (), pelt.PELT_MISSING_HINT
        row = procs.used[i]
        valid = np.isfinite(row)
        # The first sample of the process is in the window when the row starts with n/a.
        starts_here = bool(valid.any() and not valid[0])
        return self.segmenter.segments(procs.ts, row, starts_here)


def _choose(
    options: list[OomPrediction], alerts: AlertsConfig, interval: float
) -> OomPrediction | None:
    """The GPU's prediction among its own fit, its growing processes' shared one and its
    restarted jobs': the soonest of those that pass the alert thresholds, else the most
    confident."""
    if not options:
        return None
    passing = [o for o in options if oom_mod.alert_passes(o, alerts, interval)]
    if passing:
        return min(passing, key=lambda o: o.eta_low_s)
    return max(options, key=lambda o: o.confidence)


def _last_finite(values: object) -> float:
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]
    return float(finite[-1]) if finite.size else math.nan


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
    used = np.asarray(g.used, dtype=np.float64).ravel()
    total = _finite(g.total)
    # Only this tick's figure: free memory from an earlier sample, set beside the processes'
    # figures of now, would call a sawtooth's next peak unfitting the tick after it dropped.
    if used.size and math.isfinite(used[-1]) and math.isfinite(total):
        return max(total - float(used[-1]), 0.0)
    return math.nan


def _slot_setters(cls: type, given: tuple[str, ...]) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """Setters of ``cls``'s slots for the fields ``given``, and (setter, default) for the rest."""
    setters = {f.name: getattr(cls, f.name).__set__ for f in dataclasses.fields(cls)}
    rest = []
    for f in dataclasses.fields(cls):
        if f.name not in given:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            rest.append((setters[f.name], default))
    return [setters[name] for name in given], rest


_TREND_SET, _ = _slot_setters(Trend, ("phase", "rate_mib_s", "rate_stderr_mib_s", "step_mib"))
_PA_SET, _PA_DEFAULTS = _slot_setters(
    ProcessAnalysis, ("identity", "gpu_index", "trend", "verdict", "reason")
)


def _process_analyses(
    identities: Sequence[ProcessIdentity],
    gpus: list[int],
    phases: list[str],
    rates: list[float],
    stderrs: list[float],
    steps: list[float],
    verdicts: list[str],
    reasons: list[str],
) -> list[ProcessAnalysis]:
    """``ProcessAnalysis(identity, gpu, Trend(phase, rate, stderr), verdict, reason)`` for every
    row. The results are frozen dataclasses, whose generated ``__init__`` sets each field through
    ``object.__setattr__``; for thousands of them per tick the slots are filled directly, which
    halves the cost and builds the very same objects."""
    new = object.__new__
    t_phase, t_rate, t_err, t_step = _TREND_SET
    p_id, p_gpu, p_trend, p_verdict, p_reason = _PA_SET
    defaults = _PA_DEFAULTS
    out: list[ProcessAnalysis] = []
    append = out.append
    for identity, gpu, phase, rate, err, step, verdict, reason in zip(
        identities, gpus, phases, rates, stderrs, steps, verdicts, reasons, strict=True
    ):
        trend = new(Trend)
        t_phase(trend, phase)
        t_rate(trend, rate)
        t_err(trend, err)
        t_step(trend, step)
        pa = new(ProcessAnalysis)
        p_id(pa, identity)
        p_gpu(pa, gpu)
        p_trend(pa, trend)
        p_verdict(pa, verdict)
        p_reason(pa, reason)
        for setter, default in defaults:
            setter(pa, default)
        append(pa)
    return out


def _shown_rates(
    shown: IntArray, batch: PhaseBatch, short_window_s: float
) -> tuple[IntArray, FloatArray, FloatArray]:
    """The phase each row shows, the rate beside it, and the step a stable row names.

    The phase and its rate tell one story: growing and shrinking show the phase window's slope
    (the recent one if the slope still points the other way while the phase catches up);
    stable shows no rate, and when the phase window holds a net move past the change threshold
    (a step, then flat) the step, so "stable" never sits beside "+511M/s". A held phase that
    neither slope bears out any more (still "growing" the tick after a crash took the memory
    back) gives way to what the window says now: the raw phase, or volatile when that is the
    held one too."""
    slope = batch.rate_mib_s
    recent = batch.recent_mib_s if batch.recent_mib_s is not None else np.zeros_like(slope)
    net = batch.net_mib if batch.net_mib is not None else np.zeros_like(slope)
    rate = slope.copy()
    stable = shown == P_STABLE
    # Beside "stable" no rate: a drift within the change threshold, a swing within the noise
    # or a move the hysteresis has not confirmed yet is no move (its uncertainty still shows).
    rate[stable] = 0.0
    up = shown == P_GROWING
    rate[up] = np.where(slope[up] > 0, slope[up], np.maximum(recent[up], 0.0))
    down = shown == P_SHRINKING
    rate[down] = np.where(slope[down] < 0, slope[down], np.minimum(recent[down], 0.0))
    stale = (up & ~(rate > 0)) | (down & ~(rate < 0))
    if stale.any():
        shown = shown.copy()
        raw = batch.phase[stale]
        shown[stale] = np.where(raw == shown[stale], P_VOLATILE, raw)
        # The raw phase's own story: its slope beside growing/shrinking, none beside stable.
        redo = np.flatnonzero(stale)
        for i in redo.tolist():
            up_rate = max(float(slope[i]), float(recent[i]))
            down_rate = min(float(slope[i]), float(recent[i]))
            if shown[i] == P_GROWING and up_rate > 0:
                rate[i] = up_rate
            elif shown[i] == P_SHRINKING and down_rate < 0:
                rate[i] = down_rate
            elif shown[i] == P_STABLE:
                rate[i] = 0.0
            else:
                shown[i] = P_VOLATILE if shown[i] != P_UNKNOWN else P_UNKNOWN
                rate[i] = float(slope[i])
        stable = shown == P_STABLE
    step = np.where(stable & (np.abs(net) > batch.threshold_mib), net, 0.0)
    return shown, rate, step


def _driver(
    gpu: int,
    gpu_arr: IntArray,
    rates: FloatArray,
    identities: tuple[ProcessIdentity, ...],
    gpu_rate: float,
) -> ProcessIdentity | None:
    """The process on ``gpu`` growing fastest, if it carries a real share of the growth."""
    on_gpu = np.flatnonzero(gpu_arr == gpu)
    if on_gpu.size == 0:
        return None
    best = int(on_gpu[np.argmax(rates[on_gpu])])  # the first of equals, as a scan would pick
    best_rate = float(rates[best])
    if not best_rate > 0.0 or best_rate < DRIVER_SHARE * gpu_rate:
        return None
    return identities[best]


def _per_row(gpu_arr: IntArray, per_gpu: Mapping[int, float]) -> FloatArray:
    """A per-GPU figure spread over the rows of each GPU (NaN for a GPU not in the map)."""
    out = np.full(gpu_arr.size, math.nan)
    for index, value in per_gpu.items():
        out[gpu_arr == index] = value
    return out


def _rows_of(
    identity: ProcessIdentity,
    pids: IntArray,
    identities: tuple[ProcessIdentity, ...],
    where: BoolArray | None = None,
) -> list[int]:
    """Rows holding ``identity`` (found by PID first: hashing every identity costs more)."""
    hit = pids == identity.pid
    if where is not None:
        hit &= where
    return [i for i in np.flatnonzero(hit).tolist() if identities[i] == identity]


class _KeysOf(Sequence[object]):
    """The hysteresis keys (identity, GPU), built only when the tracker has to look them up."""

    def __init__(self, identities: tuple[ProcessIdentity, ...], gpus: list[int]) -> None:
        self._identities = identities
        self._gpus = gpus

    def __len__(self) -> int:
        return min(len(self._identities), len(self._gpus))

    @overload
    def __getitem__(self, i: int) -> object: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[object]: ...
    def __getitem__(self, i: int | slice) -> object:
        if isinstance(i, slice):
            return list(zip(self._identities[i], self._gpus[i], strict=False))
        return (self._identities[i], self._gpus[i])

    def __iter__(self) -> Iterator[object]:
        return iter(zip(self._identities, self._gpus, strict=False))


def _latest(ts: FloatArray, others: list[FloatArray]) -> float:
    best = math.nan
    for arr in [ts, *others]:
        a = np.asarray(arr, dtype=np.float64)
        finite = a[np.isfinite(a)]
        if finite.size:
            best = float(finite.max()) if math.isnan(best) else max(best, float(finite.max()))
    return best if math.isfinite(best) else 0.0
