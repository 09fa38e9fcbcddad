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
runs for the selected process only, and per GPU when ``oom_prediction.algorithm = "pelt"``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

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
from vramtop.analysis.rows import analyze_rows
from vramtop.analysis.spikes import SpikeBatch
from vramtop.analysis.trend import (
    MIB,
    PHASES,
    BoolArray,
    FloatArray,
    IntArray,
    PhaseBatch,
    PhaseParams,
    PhaseTracker,
    classify_batch,
)
from vramtop.analysis.verdict import VerdictInput, judge, judge_rows
from vramtop.config import Config
from vramtop.messages import ProcessIdentity

DRIVER_SHARE = 0.25  # a driver's own rate must be at least this share of the GPU's growth
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
        self._last_rows: tuple[IntArray, FloatArray, IntArray] | None = None

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
        identities = procs.identities
        gpu_arr = np.asarray(procs.gpu_index, dtype=np.int64).ravel()[:p]
        gpu_of: list[int] = gpu_arr.tolist()
        row_total = _per_row(gpu_arr, totals)
        pid_arr = np.fromiter((i.pid for i in identities), dtype=np.int64, count=p)
        if p:
            batch, spikes = analyze_rows(procs.ts, procs.used, row_total, self.params)
            shown = self._proc_phase.update_array(
                _KeysOf(identities, gpu_of),
                batch.phase,
                same_keys=self._same_rows(identities, pid_arr, gpu_arr),
            )
            rate_arr = batch.rate_mib_s
        else:
            shown = np.zeros(0, dtype=np.int64)
            rate_arr = np.zeros(0)

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
                driver = _driver(index, gpu_arr, rate_arr, identities, fit.slope_mib_s)
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
        if p:
            results = self._verdicts(
                procs, context, gpu_arr, gpu_of, pid_arr, shown, batch, spikes, free, raw_eta,
                intervals,
            )  # fmt: skip

        stamp = context.timestamp
        if stamp is None or not math.isfinite(stamp):
            stamp = _latest(procs.ts, [g.ts for g in gpu_histories])
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
    ) -> list[ProcessAnalysis]:
        """Every process's verdict: all at once by masks, then the few with an ETA, a
        pre-allocated pool or PELT segments one by one, exactly as :func:`judge` rules."""
        identities = procs.identities
        level = batch.level_mib * MIB
        row_free = _per_row(gpu_arr, free)
        verdicts, reasons = judge_rows(
            shown, batch.rate_mib_s, level, batch.n_valid, row_free,
            spikes.amplitude_mib, spikes.need_mib,
        )  # fmt: skip
        names: list[str] = _PHASE_NAMES[shown].tolist()
        rates: list[float] = batch.rate_mib_s.tolist()
        stderrs: list[float] = batch.stderr_mib_s.tolist()
        results = _process_analyses(
            identities, gpu_of, names, rates, stderrs, verdicts.tolist(), reasons.tolist()
        )

        alerts = self.config.alerts
        prealloc = context.preallocates
        kv = context.kv_cache_usage
        special: dict[int, OomPrediction | None] = {}
        for index, (prediction, driver) in raw_eta.items():
            if driver is not None:
                for i in _rows_of(driver, pid_arr, identities, gpu_arr == index):
                    special[i] = prediction
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
                    eta=eta,
                    alerting=eta is not None
                    and oom_mod.alert_passes(eta, alerts, intervals.get(g_index, 0.0)),
                    warning_s=alerts.oom_warning_seconds,
                    alloc_retries_last_minute=retries.get(identity, 0) if retries else 0,
                )
            )
            results[i] = dataclasses.replace(results[i], verdict=verdict, reason=reason, eta=eta)
        if context.selected is not None:
            for i in _rows_of(context.selected, pid_arr, identities):
                segments, note = self._segments(procs, i)
                results[i] = dataclasses.replace(results[i], segments=segments, segments_note=note)
        return results

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


def _slot_setters(cls: type, given: tuple[str, ...]) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """Setters of ``cls``'s slots for the fields ``given``, and (setter, default) for the rest."""
    setters = {f.name: getattr(cls, f.name).__set__ for f in dataclasses.fields(cls)}
    rest = []
    for f in dataclasses.fields(cls):
        if f.name not in given:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            rest.append((setters[f.name], default))
    return [setters[name] for name in given], rest


_TREND_SET, _ = _slot_setters(Trend, ("phase", "rate_mib_s", "rate_stderr_mib_s"))
_PA_SET, _PA_DEFAULTS = _slot_setters(
    ProcessAnalysis, ("identity", "gpu_index", "trend", "verdict", "reason")
)


def _process_analyses(
    identities: Sequence[ProcessIdentity],
    gpus: list[int],
    phases: list[str],
    rates: list[float],
    stderrs: list[float],
    verdicts: list[str],
    reasons: list[str],
) -> list[ProcessAnalysis]:
    """``ProcessAnalysis(identity, gpu, Trend(phase, rate, stderr), verdict, reason)`` for every
    row. The results are frozen dataclasses, whose generated ``__init__`` sets each field through
    ``object.__setattr__``; for thousands of them per tick the slots are filled directly, which
    halves the cost and builds the very same objects."""
    new = object.__new__
    t_phase, t_rate, t_err = _TREND_SET
    p_id, p_gpu, p_trend, p_verdict, p_reason = _PA_SET
    defaults = _PA_DEFAULTS
    out: list[ProcessAnalysis] = []
    append = out.append
    for identity, gpu, phase, rate, err, verdict, reason in zip(
        identities, gpus, phases, rates, stderrs, verdicts, reasons, strict=True
    ):
        trend = new(Trend)
        t_phase(trend, phase)
        t_rate(trend, rate)
        t_err(trend, err)
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
