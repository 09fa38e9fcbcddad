#!/usr/bin/env python3
"""CPU cost of one analyzer tick at 8 GPUs x 1024 processes, with history 300 and 3600.

Where it sits: outside the data flow; ``scripts/bench.py`` calls :func:`analyzer_rows` and adds
the rows to its report. It builds a real shared-memory segment, fills every ring directly with
numpy (writing 3600 samples of 8192 processes through the sampler would take longer than the
measurement; the layout is the same), and times :meth:`AnalyzerCore.analyze` — the copy out of
shared memory under the seqlock plus the whole analysis — as the analyzer process runs it for each
sample message. The processes are a mix of flat, leaking, sawtooth and spiky series with noise
and gaps. CPU time (``time.process_time``), median over the ticks.

Compare the rows with each other (history 300 vs 3600), not with other machines.

Usage: ``.venv/bin/python scripts/bench_analyzer.py [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vramtop.actors.analyzer import AnalyzerCore
from vramtop.analysis.analyzer import Analyzer
from vramtop.config import Config
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow, SampleMessage
from vramtop.shm import FIELD_INDEX, HistoryReader, ShmSegment

GIB = float(1 << 30)
MIB = float(1 << 20)
GPUS = 8
PER_GPU = 1024


def _fill(segment: ShmSegment, history: int, seed: int = 0) -> tuple[ProcessRow, ...]:
    """Fill the rings as after ``history`` samples; return the rows a sample message carries."""
    rng = np.random.default_rng(seed)
    a = segment.arrays
    p = GPUS * PER_GPU
    count = history
    start = 1_700_000_000.0
    a.timestamps[:] = start + np.arange(history) + rng.uniform(-0.05, 0.05, history)
    t = np.arange(history, dtype=np.float64)
    kind = np.arange(p) % 4
    base = rng.uniform(0.2, 4.0, p)[:, None] * GIB
    leak = (kind == 1)[:, None] * rng.uniform(1, 50, p)[:, None] * MIB * t[None, :]
    saw = (kind == 2)[:, None] * 0.5 * GIB * ((t[None, :] % 12) / 12)
    spike = (kind == 3)[:, None] * np.where((t % 40) < 3, 1.0 * GIB, 0.0)[None, :]
    used = base + leak + saw + spike + rng.normal(0, 2 * MIB, (p, history))
    used[rng.random((p, history)) < 0.01] = np.nan
    a.process[:, :] = used
    a.slot_pid[:] = 10_000 + np.arange(p)
    a.slot_start_time[:] = start - 1000.0
    a.slot_gpu[:] = np.arange(p) // PER_GPU
    a.slot_first[:] = 0
    a.slot_last[:] = count - 1
    a.slot_generation[:] = 1
    per_gpu = np.nansum(used.reshape(GPUS, PER_GPU, history), axis=1)
    a.gpu[:, :, :] = np.nan
    a.gpu[:, :, FIELD_INDEX["total"]] = 8 * 1024 * GIB
    a.gpu[:, :, FIELD_INDEX["used"]] = per_gpu
    a.gpu[:, :, FIELD_INDEX["free"]] = 8 * 1024 * GIB - per_gpu
    a.gpu[:, :, FIELD_INDEX["temperature"]] = 65.0
    a.count[0] = count
    a.seq[0] = 2 * count
    return tuple(
        ProcessRow(ProcessIdentity(10_000 + i, start - 1000.0), i // PER_GPU, i, "u", "c", True)
        for i in range(p)
    )


def _measure(history: int, ticks: int) -> dict[str, object]:
    segment = ShmSegment.create(history, GPUS, GPUS * PER_GPU)
    try:
        rows = _fill(segment, history)
        core = AnalyzerCore()
        core.reader = HistoryReader(segment)
        core.analyzer = Analyzer(Config())
        snapshot = Snapshot(
            timestamp=float(segment.arrays.timestamps[-1]), backend="bench", gpus=()
        )
        message = SampleMessage(history, snapshot, rows)
        core.analyze(message)  # warm-up: imports, first allocations
        times = []
        for _ in range(ticks):
            t0 = time.process_time()
            result = core.analyze(message)
            times.append(time.process_time() - t0)
            assert result is not None and len(result.processes) == len(rows)
        return {
            "measure": "analyzer CPU per tick",
            "gpus": GPUS,
            "processes": GPUS * PER_GPU,
            "history": history,
            "window": core.window,
            "ms_per_tick": round(1000 * statistics.median(times), 1),
            "cpu_percent_at_1hz": round(100 * statistics.median(times), 1),
            "ticks": ticks,
        }
    finally:
        segment.close()
        segment.unlink()


def analyzer_rows(quick: bool) -> list[dict[str, object]]:
    """One row per history length: median CPU milliseconds per analyzer tick."""
    ticks = 3 if quick else 10
    return [_measure(history, ticks) for history in (300, 3600)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rows = analyzer_rows(args.quick)
    print("| GPUs x processes | history | window | CPU ms per tick | CPU % at 1 Hz |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['gpus']} x {r['processes'] // GPUS} | {r['history']} | {r['window']} | "  # type: ignore[operator]
            f"{r['ms_per_tick']} | {r['cpu_percent_at_1hz']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
