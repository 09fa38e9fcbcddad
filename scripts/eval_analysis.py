#!/usr/bin/env python3
"""Measure vramtop's analysis against labelled memory traces, and print one table.

Where it sits: outside the data flow. It replays every trace of ``tests/traces.py`` tick by tick
through :class:`vramtop.analysis.analyzer.Analyzer` — the same core the analyzer actor runs — with
a 300-sample history window, as the live monitor keeps by default, and compares what it says with
the ground truth:

* phase accuracy per class, over the samples that have a label (after the process's warm-up and
  outside the short grace period after each change of behaviour);
* OOM ETA relative error, |predicted - true| / true, 10, 30 and 60 s after the growth started
  (median and p90 over the traces that run out of memory; "n" counts those with a prediction);
* lead time of the first warning — the GPU's OOM alert or an "OOM risk" verdict — before the
  true OOM. A lead of ``oom_warning_seconds`` (W) is owed when the growth began more than W
  before the OOM. A trend watched for T seconds lasts W more with probability T / (T + W) (the
  Lindy estimate of ``oom.py`` rule 6), so a warning W ahead needs ``E = W * c / (1 - c)`` of
  growth before it passes c = ``oom_min_confidence`` (53 s at the defaults): the default bar is
  set where the suite's reliability table says such predictions still come true (more than 90%
  of them at c >= 0.1), so that growth that began W + E before the OOM can be warned W ahead;
* false alarms: warnings on traces whose GPU never runs out.

``tests/test_analysis_eval.py`` asserts the thresholds on the same figures.

Usage: ``.venv/bin/python scripts/eval_analysis.py [--algorithm variance|pelt] [--quick]
[--seed N]``
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from traces import Trace, suite  # noqa: E402

from vramtop.analysis.analyzer import (  # noqa: E402
    AnalysisContext,
    Analyzer,
    GpuHistory,
    ProcessHistories,
)
from vramtop.analysis.model import OOM_RISK  # noqa: E402
from vramtop.config import Config, OomPredictionConfig  # noqa: E402

HISTORY = 300
DEBUG = False
ETA_AT = (10.0, 30.0, 60.0)


@dataclass
class TraceResult:
    trace: Trace
    correct: int = 0
    labelled: int = 0
    eta_error: dict[float, float] = field(default_factory=dict)  # NaN: no prediction then
    first_alarm_ts: float | None = None
    alarms: int = 0
    confusion: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    # Per OOM event (growth start, OOM): the first warning in the run-up to it.
    event_alarm: list[float | None] = field(default_factory=list)
    toggles: int = 0  # a warning that went away and came back before its OOM
    contradictions: int = 0  # rows whose phase and the rate beside it tell different stories
    # (confidence, came true) of every raw GPU prediction
    predictions: list[tuple[float, bool]] = field(default_factory=list)

    @property
    def lead_s(self) -> float | None:
        if self.trace.oom_ts is None or self.trace.oom_beyond or self.first_alarm_ts is None:
            return None
        return self.trace.oom_ts - self.first_alarm_ts

    def leads(self, warn: float) -> list[tuple[str, float | None, bool]]:
        """(label, lead, required) per OOM event."""
        out = []
        many = len(self.trace.events) > 1
        for k, ((growth, oom), first) in enumerate(
            zip(self.trace.events, self.event_alarm, strict=False)
        ):
            label = self.trace.name + (f" (run {k + 1})" if many else "")
            lead = None if first is None else oom - first
            out.append((label, lead, oom - growth > warn))
        return out

    @property
    def lead_required(self) -> bool:
        """The growth started more than the warning time before the OOM."""
        t = self.trace
        return (
            t.oom_ts is not None
            and not t.oom_beyond
            and t.growth_ts is not None
            and t.oom_ts - t.growth_ts > Config().alerts.oom_warning_seconds
        )


def run_trace(trace: Trace, config: Config) -> TraceResult:
    analyzer = Analyzer(config)
    result = TraceResult(trace)
    result.event_alarm = [None] * len(trace.events)
    context = AnalysisContext(
        preallocates={i: True for i in trace.preallocates}, owners=trace.owners
    )
    n_rows = len(trace.identities)
    alive = trace.alive if trace.alive is not None else np.ones((n_rows, trace.ts.size), bool)
    main_row = trace.main_row if trace.main_row is not None else np.zeros(trace.ts.size, int)
    gpu_all = np.zeros(n_rows, dtype=np.int64)
    pending = list(ETA_AT) if trace.growth_ts is not None and trace.oom_ts is not None else []
    interval = 1.0
    was_on = False
    for k in range(trace.ts.size):
        lo = max(0, k + 1 - HISTORY)
        ts = trace.ts[lo : k + 1]
        used = trace.gpu_used[lo : k + 1]
        last = trace.gpu_used[k]
        gpu = GpuHistory(
            0,
            ts,
            used,
            total=trace.total,
            free=trace.total - last if math.isfinite(last) else math.nan,
        )
        rows = np.flatnonzero(alive[:, k])
        procs = ProcessHistories(
            ts,
            trace.used[rows, lo : k + 1],
            tuple(trace.identities[i] for i in rows),
            gpu_all[rows],
        )
        out = analyzer.step([gpu], procs, context)
        now = float(trace.ts[k])

        truth = trace.phase[k]
        main_at = np.flatnonzero(rows == main_row[k])
        if truth is not None and main_at.size:
            main = out.processes[int(main_at[0])]
            result.labelled += 1
            result.correct += main.trend.phase == truth
            result.confusion[(truth, main.trend.phase)] += 1

        result.contradictions += sum(p.trend.contradicted for p in out.processes)
        result.contradictions += out.gpus[0].trend.contradicted
        alarm = out.gpus[0].oom is not None or any(p.verdict == OOM_RISK for p in out.processes)
        event = next((j for j, (_, oom) in enumerate(trace.events) if now < oom), None)
        if alarm:
            result.alarms += 1
            if result.first_alarm_ts is None:
                result.first_alarm_ts = now
            if event is not None and result.event_alarm[event] is None:
                result.event_alarm[event] = now
        if was_on and not alarm and event is not None and result.event_alarm[event] is not None:
            result.toggles += 1  # it went quiet before the OOM it had warned about
        was_on = alarm
        raw = analyzer.raw_predictions.get(0)
        if raw is not None and not trace.oom_beyond:  # beyond the trace: outcome unknown
            hit = any(
                now + raw.eta_low_s - interval <= oom <= now + raw.eta_high_s + interval
                for _, oom in trace.events
                if oom > now
            )
            result.predictions.append((raw.confidence, hit))
            if DEBUG and raw.confidence >= 0.9 and not hit:
                nxt = [oom - now for _, oom in trace.events if oom > now]
                print(
                    f"  miss {trace.name} t={now - trace.ts[0]:.0f} conf={raw.confidence:.2f}"
                    f" eta={raw.eta_s:.1f} [{raw.eta_low_s:.1f}, {raw.eta_high_s:.1f}]"
                    f" true={nxt[:1]} {raw.rule}"
                )
        while pending and trace.growth_ts is not None and now >= trace.growth_ts + pending[0]:
            at = pending.pop(0)
            first_oom = trace.events[0][1] if trace.events else trace.oom_ts
            true = (first_oom or math.nan) - now
            result.eta_error[at] = abs(raw.eta_s - true) / true if raw and true > 0 else math.nan
    return result


def evaluate(traces: list[Trace], config: Config) -> list[TraceResult]:
    return [run_trace(t, config) for t in traces]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


RELIABILITY_AT = (0.1, 0.3, 0.5, 0.7, 0.9)


def reliability(results: list[TraceResult]) -> list[tuple[float, int, float]]:
    """(c, predictions made at confidence >= c, share of them that came true in range)."""
    pairs = [p for r in results for p in r.predictions]
    out = []
    for c in RELIABILITY_AT:
        picked = [hit for conf, hit in pairs if conf >= c]
        out.append((c, len(picked), sum(picked) / len(picked) if picked else math.nan))
    return out


def summary(results: list[TraceResult]) -> dict[str, object]:
    """The figures the table shows, as plain data (the test asserts on these)."""
    warn = Config().alerts.oom_warning_seconds
    classes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        classes[r.trace.cls][0] += r.correct
        classes[r.trace.cls][1] += r.labelled
    accuracy = {c: (ok / n if n else math.nan, n) for c, (ok, n) in classes.items()}
    eta: dict[float, tuple[float, float, int, int]] = {}
    for at in ETA_AT:
        errs = [r.eta_error[at] for r in results if at in r.eta_error]
        got = [e for e in errs if math.isfinite(e)]
        eta[at] = (_pct(got, 50), _pct(got, 90), len(got), len(errs))
    leads = [lead for r in results for lead in r.leads(warn)]
    false_alarms = [
        (r.trace.name, r.alarms) for r in results if not r.trace.events and not r.trace.oom_beyond
    ]
    toggles = {r.trace.name: r.toggles for r in results}
    contradictions = {r.trace.name: r.contradictions for r in results}
    per_class: dict[str, dict[str, object]] = {}
    for r in results:
        c = per_class.setdefault(
            r.trace.cls, {"false_alarms": 0, "toggles": 0, "leads": [], "eta30": []}
        )
        if not r.trace.events and not r.trace.oom_beyond:
            c["false_alarms"] = int(str(c["false_alarms"])) + r.alarms
        c["toggles"] = int(str(c["toggles"])) + r.toggles
        lst = c["leads"]
        assert isinstance(lst, list)
        lst += r.leads(warn)
        e30 = c["eta30"]
        assert isinstance(e30, list)
        if 30.0 in r.eta_error:
            e30.append(r.eta_error[30.0])
    return {
        "accuracy": accuracy,
        "eta": eta,
        "leads": leads,
        "false_alarms": false_alarms,
        "toggles": toggles,
        "contradictions": contradictions,
        "reliability": reliability(results),
        "per_class": per_class,
    }


def _fmt(value: float, unit: str = "") -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.0f}{unit}"


def table(results: list[TraceResult], algorithm: str) -> str:
    s = summary(results)
    warn = Config().alerts.oom_warning_seconds
    lines = [f"vramtop analysis evaluation ({len(results)} traces, algorithm={algorithm})", ""]
    lines += [
        "| class | phase accuracy | ETA error at 30 s | warned >= "
        f"{warn:.0f} s ahead (when growth began >= {warn:.0f} s before) "
        "| false alarms | alert toggles |",
        "|---|---|---|---|---|---|",
    ]
    accuracy = s["accuracy"]
    per_class = s["per_class"]
    assert isinstance(accuracy, dict) and isinstance(per_class, dict)
    for cls in sorted(accuracy):
        acc, n = accuracy[cls]
        c = per_class[cls]
        leads = c["leads"]
        needed = [x for x in leads if x[2]]
        ok = sum(1 for x in needed if x[1] is not None and x[1] >= warn)
        warned = f"{ok}/{len(needed)}" if needed else "-"
        if leads and not needed:
            shown = [f"{x[1]:.0f}s" if x[1] is not None else "none" for x in leads]
            warned = "- (leads " + ", ".join(shown) + ")"
        e30 = [e for e in c["eta30"] if math.isfinite(e)]
        eta30 = f"{_pct(e30, 50):.1%}" if e30 else "n/a"
        fa = (
            "-"
            if leads or any(r.trace.oom_beyond for r in results if r.trace.cls == cls)
            else c["false_alarms"]
        )
        acc_s = f"{acc:.1%} of {n}" if n else "n/a"
        lines.append(f"| {cls} | {acc_s} | {eta30} | {warned} | {fa} | {c['toggles']} |")
    lines += ["", "| measure | value |", "|---|---|"]
    eta = s["eta"]
    assert isinstance(eta, dict)
    for at, (med, p90, got, total) in eta.items():
        lines.append(
            f"| ETA error {at:.0f}s after growth starts | median {_pct_s(med)}, "
            f"p90 {_pct_s(p90)} ({got}/{total} predicted) |"
        )
    leads = s["leads"]
    assert isinstance(leads, list)
    for name, lead, required in leads:
        need = f" (needs >= {warn:.0f}s)" if required else ""
        shown = "none" if lead is None else f"{lead:.1f}s"
        lines.append(f"| warning lead: {name} | {shown}{need} |")
    false_alarms = s["false_alarms"]
    assert isinstance(false_alarms, list)
    total_false = sum(n for _, n in false_alarms)
    lines.append(
        f"| false alarms on never-OOM traces | {total_false} ticks "
        f"on {sum(1 for _, n in false_alarms if n)} of {len(false_alarms)} traces |"
    )
    toggles = s["toggles"]
    assert isinstance(toggles, dict)
    lines.append(f"| alert toggles before an OOM | {sum(toggles.values())} |")
    contradictions = s["contradictions"]
    assert isinstance(contradictions, dict)
    lines.append(
        f"| rows whose phase contradicts the rate beside it | {sum(contradictions.values())} |"
    )
    lines += ["", "| confidence >= | predictions | came true within their ETA range |",
              "|---|---|---|"]  # fmt: skip
    rel = s["reliability"]
    assert isinstance(rel, list)
    for c, count, share in rel:
        lines.append(f"| {c:.1f} | {count} | {_pct_s(share)} |")
    return "\n".join(lines)


def _pct_s(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=("variance", "pelt"), default="variance")
    parser.add_argument("--quick", action="store_true", help="one or two traces per class")
    parser.add_argument("--confusion", action="store_true", help="also print per-trace detail")
    parser.add_argument("--misses", action="store_true", help="print confident misses")
    parser.add_argument(
        "--seed", type=int, default=0,
        help="another realisation of every trace's noise, jitter and gaps (0: the README's)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    global DEBUG
    DEBUG = args.misses
    config = Config()
    config = dataclasses.replace(
        config, oom_prediction=OomPredictionConfig(algorithm=args.algorithm)
    )
    results = evaluate(suite(full=not args.quick, seed=args.seed), config)
    print(table(results, args.algorithm))
    if args.confusion:
        for r in results:
            wrong = {k: v for k, v in r.confusion.items() if k[0] != k[1]}
            missed = [sum(1 for c, hit in r.predictions if c >= q and not hit) for q in (0.5, 0.9)]
            print(
                f"{r.trace.name}: {r.correct}/{r.labelled} alarms={r.alarms} "
                f"toggles={r.toggles} untrue(>=0.5, >=0.9)={missed} "
                f"eta={r.eta_error} wrong={wrong}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
