#!/usr/bin/env python3
"""How fast a recording replays: ``vramtop replay FILE --speed max --json``, end to end.

Where it sits: outside the data flow, beside ``scripts/bench.py`` (which calls
:func:`replay_rows` and puts the rows in its report). It writes a one-hour recording at 1 Hz of
8 GPUs with 64 processes (8 per GPU: steady servers, sawtooth trainers, a slow leak) directly
with the recorders' own writers (``export/csvlog.py``, ``export/ndjson.py``) from synthetic
snapshots, so nobody waits an hour, then times the real command in a subprocess reading it:
parse, rebuild the snapshots, run the analyzer on every sample, print NDJSON (to /dev/null).
``--quick`` records ten minutes instead of an hour.

Figures: samples per second of the replay (wall clock of the whole command, start-up included)
and its CPU seconds, plus how fast the writer produced the file. Compare rows with each other;
absolute numbers depend on the machine. Nothing is asserted.

Usage: ``.venv/bin/python scripts/bench_replay.py [--quick]``
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vramtop.export.csvlog import CsvLog
from vramtop.export.ndjson import NdjsonLog
from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow

GPUS = 8
PER_GPU = 8
MIB = 1 << 20
TOTAL = 80 * 1024 * MIB
T0 = 1_700_000_000.0


def synthetic(i: int) -> tuple[Snapshot, tuple[ProcessRow, ...]]:
    """Sample ``i`` (seconds from the start) of the synthetic hour."""
    gpus, procs, rows = [], [], []
    for g in range(GPUS):
        used_total = 2048 * MIB
        for k in range(PER_GPU):
            pid = 100_000 + g * PER_GPU + k
            if k == 0:  # a slow leak
                mib = 4000 + 2.0 * i
            elif k % 2:  # a steady server with jitter
                mib = 6000 + 40 * math.sin(i / 7 + k)
            else:  # a sawtooth trainer
                mib = 3000 + 2000 * ((i + 37 * k) % 120) / 120
            used = int(mib) * MIB
            used_total += used
            procs.append(ProcessSample(pid, g, used_bytes=used, sm_util=(i * k) % 100))
            rows.append(
                ProcessRow(
                    ProcessIdentity(pid, T0 - 3600.0 + k),
                    g,
                    -1,
                    "trainer",
                    f"python train.py --rank {g * PER_GPU + k} --config configs/run.yaml",
                    True,
                )
            )
        gpus.append(
            GpuSample(
                index=g,
                uuid=f"GPU-{g:08x}-bench",
                name="NVIDIA H100 80GB HBM3",
                memory_total=TOTAL,
                memory_used=used_total,
                memory_reserved=512 * MIB,
                memory_free=TOTAL - used_total - 512 * MIB,
                util_gpu=(i + g) % 100,
                util_memory=(i * 3 + g) % 100,
                temperature_c=60 + g,
                power_w=350.0 + g,
                power_limit_w=700.0,
                clock_sm_mhz=1980,
                clock_mem_mhz=2619,
                fan_percent=40,
                pstate=0,
                mig_mode=False,
            )
        )
    snap = Snapshot(T0 + i, "nvml", tuple(gpus), tuple(procs), "550.54", "12.4", "12.550")
    return snap, tuple(rows)


def _write(path: Path, samples: int) -> float:
    log: CsvLog | NdjsonLog = CsvLog(str(path)) if path.suffix == ".csv" else NdjsonLog(str(path))
    t0 = time.perf_counter()
    with log:
        for i in range(samples):
            snap, rows = synthetic(i)
            log.write(snap, rows)
    return time.perf_counter() - t0


def _replay(path: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, lines printed) of ``vramtop replay --speed max --json``."""
    out_path = path.with_suffix(".out")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with out_path.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "vramtop", "replay", str(path), "--speed", "max", "--json"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
        )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace").strip()[-300:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with out_path.open("rb") as f:
        lines = sum(1 for _ in f)
    out_path.unlink()
    return wall, cpu, lines


def replay_rows(quick: bool) -> list[dict[str, object]]:
    """One dict per recording format: case, samples, gpus, processes, file_mib,
    write_samples_per_s, replay_s, replay_cpu_s, samples_per_s."""
    samples = 600 if quick else 3600
    out: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="vramtop-bench-replay-") as tmp:
        for suffix in ("csv", "ndjson"):
            path = Path(tmp) / f"hour.{suffix}"
            write_s = _write(path, samples)
            wall, cpu, lines = _replay(path)
            if lines != samples:
                raise RuntimeError(f"replay printed {lines} samples of {samples}")
            out.append(
                {
                    "case": f"replay --speed max --json, {suffix}",
                    "samples": samples,
                    "gpus": GPUS,
                    "processes": GPUS * PER_GPU,
                    "file_mib": round(os.path.getsize(path) / MIB, 1),
                    "write_samples_per_s": round(samples / write_s, 1),
                    "replay_s": round(wall, 2),
                    "replay_cpu_s": round(cpu, 2),
                    "samples_per_s": round(samples / wall, 1),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="ten minutes of recording, not an hour"
    )
    args = parser.parse_args(argv)
    rows = replay_rows(args.quick)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
