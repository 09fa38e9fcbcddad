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
  true OOM;
* false alarms: warnings on traces whose GPU never runs out.

``tests/test_analysis_eval.py`` asserts the thresholds on the same figures.

Usage: ``.venv/bin/python scripts/eval_analysis.py [--algorithm variance|pelt] [--quick]``
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

    @property
    def lead_s(self) -> float | None:
        if self.trace.oom_ts is None or self.trace.oom_beyond or self.first_alarm_ts is None:
            return None
        return self.trace.oom_ts - self.first_alarm_ts

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
    context = AnalysisContext(preallocates={i: True for i in trace.preallocates})
    gpu_of = np.zeros(len(trace.identities), dtype=np.int64)
    pending = list(ETA_AT) if trace.growth_ts is not None and trace.oom_ts is not None else []
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
        procs = ProcessHistories(ts, trace.used[:, lo : k + 1], tuple(trace.identities), gpu_of)
        out = analyzer.step([gpu], procs, context)
        now = float(trace.ts[k])

        main = out.processes[0]
        truth = trace.phase[k]
        if truth is not None:
            result.labelled += 1
            result.correct += main.trend.phase == truth
            result.confusion[(truth, main.trend.phase)] += 1

        alarm = out.gpus[0].oom is not None or any(p.verdict == OOM_RISK for p in out.processes)
        if alarm:
            result.alarms += 1
            if result.first_alarm_ts is None:
                result.first_alarm_ts = now
        while pending and trace.growth_ts is not None and now >= trace.growth_ts + pending[0]:
            at = pending.pop(0)
            raw = analyzer.raw_predictions.get(0)
            true = (trace.oom_ts or math.nan) - now
            result.eta_error[at] = abs(raw.eta_s - true) / true if raw and true > 0 else math.nan
    return result


def evaluate(traces: list[Trace], config: Config) -> list[TraceResult]:
    return [run_trace(t, config) for t in traces]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def summary(results: list[TraceResult]) -> dict[str, object]:
    """The figures the table shows, as plain data (the test asserts on these)."""
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
    leads = [
        (r.trace.name, r.lead_s, r.lead_required)
        for r in results
        if r.trace.oom_ts is not None and not r.trace.oom_beyond
    ]
    false_alarms = [(r.trace.name, r.alarms) for r in results if r.trace.oom_ts is None]
    return {"accuracy": accuracy, "eta": eta, "leads": leads, "false_alarms": false_alarms}


def _fmt(value: float, unit: str = "") -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.0f}{unit}"


def table(results: list[TraceResult], algorithm: str) -> str:
    s = summary(results)
    lines = [f"vramtop analysis evaluation ({len(results)} traces, algorithm={algorithm})", ""]
    lines += ["| measure | value |", "|---|---|"]
    accuracy = s["accuracy"]
    assert isinstance(accuracy, dict)
    for cls in sorted(accuracy):
        acc, n = accuracy[cls]
        lines.append(f"| phase accuracy: {cls} | {acc:.1%} of {n} samples |")
    eta = s["eta"]
    assert isinstance(eta, dict)
    for at, (med, p90, got, total) in eta.items():
        lines.append(
            f"| ETA error {at:.0f}s after growth starts | median {_pct_s(med)}, "
            f"p90 {_pct_s(p90)} ({got}/{total} predicted) |"
        )
    leads = s["leads"]
    assert isinstance(leads, list)
    warn = Config().alerts.oom_warning_seconds
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
    return "\n".join(lines)


def _pct_s(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=("variance", "pelt"), default="variance")
    parser.add_argument("--quick", action="store_true", help="one or two traces per class")
    parser.add_argument("--confusion", action="store_true", help="also print per-trace detail")
    args = parser.parse_args(argv)
    config = Config()
    config = dataclasses.replace(
        config, oom_prediction=OomPredictionConfig(algorithm=args.algorithm)
    )
    results = evaluate(suite(full=not args.quick), config)
    print(table(results, args.algorithm))
    if args.confusion:
        for r in results:
            wrong = {k: v for k, v in r.confusion.items() if k[0] != k[1]}
            print(
                f"{r.trace.name}: {r.correct}/{r.labelled} alarms={r.alarms} "
                f"eta={r.eta_error} wrong={wrong}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
