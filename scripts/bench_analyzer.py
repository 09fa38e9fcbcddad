#!/usr/bin/env python3
"""CPU cost of one analyzer tick at 8 GPUs x 1024 processes, with history 300 and 3600.

Where it sits: outside the data flow; ``scripts/bench.py`` calls :func:`analyzer_rows` and adds
the rows to its report. It builds a real shared-memory segment, fills every ring directly with
numpy (writing 3600 samples of 8192 processes through the sampler would take longer than the
measurement; the layout is the same), and times :meth:`AnalyzerCore.analyze` — the copy out of
shared memory under the seqlock plus the whole analysis — as the analyzer process runs it for each
sample message. Between ticks (outside the timing) every ring gets one new sample, as the sampler
would write it, so each tick analyses new data. The processes are a mix of flat, leaking,
sawtooth and spiky series with noise and gaps. CPU time (``time.process_time``, all threads),
median over the ticks.

Compare the rows with each other (history 300 vs 3600), not with other machines. To compare two
versions of vramtop on this noisy machine, give ``--baseline DIR`` (a source tree holding the other
``vramtop/`` package): both are measured in the same run, alternately, each in its own process.

Usage: ``.venv/bin/python scripts/bench_analyzer.py [--quick] [--baseline DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# The tree whose vramtop is measured: this one, or ``--root DIR`` (as --baseline runs it).
sys.path.insert(
    0,
    sys.argv[sys.argv.index("--root") + 1]
    if "--root" in sys.argv[:-1]
    else str(Path(__file__).resolve().parent.parent),
)

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
START = 1_700_000_000.0


def _fill(segment: ShmSegment, history: int, seed: int = 0) -> tuple[ProcessRow, ...]:
    """Fill the rings as after ``history`` samples; return the rows a sample message carries."""
    rng = np.random.default_rng(seed)
    a = segment.arrays
    p = GPUS * PER_GPU
    count = history
    a.timestamps[:] = START + np.arange(history) + rng.uniform(-0.05, 0.05, history)
    a.process[:, :] = _curves(np.arange(history, dtype=np.float64), rng)
    a.slot_pid[:] = 10_000 + np.arange(p)
    a.slot_start_time[:] = START - 1000.0
    a.slot_gpu[:] = np.arange(p) // PER_GPU
    a.slot_first[:] = 0
    a.slot_last[:] = count - 1
    a.slot_generation[:] = 1
    a.gpu[:, :, :] = np.nan
    a.gpu[:, :, FIELD_INDEX["total"]] = 8 * 1024 * GIB
    a.gpu[:, :, FIELD_INDEX["temperature"]] = 65.0
    _gpu_used(a, slice(None))
    a.count[0] = count
    a.seq[0] = 2 * count
    return tuple(
        ProcessRow(ProcessIdentity(10_000 + i, START - 1000.0), i // PER_GPU, i, "u", "c", True)
        for i in range(p)
    )


def _curves(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every process's used bytes at sample numbers ``t`` (always the same mix per process)."""
    p = GPUS * PER_GPU
    shape = np.random.default_rng(1)  # per-process constants, identical at every call
    kind = np.arange(p) % 4
    base = shape.uniform(0.2, 4.0, p)[:, None] * GIB
    rate = shape.uniform(1, 50, p)[:, None] * MIB
    leak = (kind == 1)[:, None] * rate * t[None, :]
    saw = (kind == 2)[:, None] * 0.5 * GIB * ((t[None, :] % 12) / 12)
    spike = (kind == 3)[:, None] * np.where((t % 40) < 3, 1.0 * GIB, 0.0)[None, :]
    used = base + leak + saw + spike + rng.normal(0, 2 * MIB, (p, t.size))
    used[rng.random((p, t.size)) < 0.01] = np.nan
    return used


def _gpu_used(a: object, where: object) -> None:
    """Each GPU's used and free memory from its processes' samples at ring index ``where``."""
    used = np.nansum(a.process[:, where].reshape(GPUS, PER_GPU, -1), axis=1)  # type: ignore[attr-defined]
    a.gpu[:, where, FIELD_INDEX["used"]] = used  # type: ignore[attr-defined]
    a.gpu[:, where, FIELD_INDEX["free"]] = 8 * 1024 * GIB - used  # type: ignore[attr-defined]


def _advance(segment: ShmSegment, rng: np.random.Generator) -> int:
    """Write the next sample into every ring, as the sampler would; return the new count."""
    a = segment.arrays
    count = int(a.count[0])
    h = a.timestamps.size
    k = count % h
    a.seq[0] += 1
    a.timestamps[k] = START + count + rng.uniform(-0.05, 0.05)
    a.process[:, k] = _curves(np.asarray([float(count)]), rng)[:, 0]
    _gpu_used(a, slice(k, k + 1))
    a.slot_last[:] = count
    a.count[0] = count + 1
    a.seq[0] += 1
    return count + 1


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
        rng = np.random.default_rng(7)
        times = []
        for _ in range(ticks):
            count = _advance(segment, rng)
            message = SampleMessage(count, snapshot, rows)
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


def _baseline_rows(tree: Path, quick: bool) -> list[dict[str, object]]:
    """The same rows measured with the ``vramtop`` of ``tree``, in a process of its own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--json", "--root", str(tree)]
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        cmd + (["--quick"] if quick else []), env=env, capture_output=True, text=True, check=True
    )
    rows: list[dict[str, object]] = json.loads(out.stdout)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--baseline", type=Path, help="also measure the vramtop/ of this source tree, alternately"
    )
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(analyzer_rows(args.quick)))
        return 0
    if args.baseline is None:
        rows = analyzer_rows(args.quick)
        print("| GPUs x processes | history | window | CPU ms per tick | CPU % at 1 Hz |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['gpus']} x {r['processes'] // GPUS} | {r['history']} | "  # type: ignore[operator]
                f"{r['window']} | {r['ms_per_tick']} | {r['cpu_percent_at_1hz']} |"
            )
        return 0
    # Alternate the two versions, so that a noisy stretch of the machine hits both.
    base: list[list[dict[str, object]]] = []
    this: list[list[dict[str, object]]] = []
    for _ in range(2):
        base.append(_baseline_rows(args.baseline, args.quick))
        this.append(analyzer_rows(args.quick))
    print(f"| GPUs x processes | history | baseline ms per tick ({args.baseline}) "
          "| this tree ms per tick | speed-up |")  # fmt: skip
    print("|---|---|---|---|---|")
    for i, r in enumerate(this[0]):
        old = statistics.median(float(b[i]["ms_per_tick"]) for b in base)  # type: ignore[arg-type]
        new = statistics.median(float(t[i]["ms_per_tick"]) for t in this)  # type: ignore[arg-type]
        print(
            f"| {r['gpus']} x {r['processes'] // GPUS} | {r['history']} | "  # type: ignore[operator]
            f"{old:.1f} | {new:.1f} | {old / new:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
