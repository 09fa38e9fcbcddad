"""Seqlock under load: a full-speed writer process and concurrent reader processes.

Sample k is written so that every value in it is a function of k: timestamp k, every GPU field k
(process_sum: the sum of that sample's processes, lost 0), and process p's bytes k * 100000 + p,
with processes coming and going so that slots are recycled all the time. A copy that mixes two
samples -- or a slot's history that mixes two occupants -- is torn.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from typing import Any

import numpy as np

from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.shm import (
    FIELD_INDEX,
    GPU_FIELDS,
    HistoryReader,
    HistoryWriter,
    ShmSegment,
    TornReadError,
)

FORK = mp.get_context("fork")
HISTORY, GPUS, SLOTS = 48, 2, 6
RUN_SECONDS = 2.0
READERS = 3
_PLAIN = [i for i, f in enumerate(GPU_FIELDS) if f not in ("process_sum", "lost")]


def processes_at(k: int) -> tuple[tuple[int, int], ...]:
    """(pid, gpu) present in sample k: four long-lived processes and two that keep changing."""
    steady = ((1, 0), (2, 0), (3, 1), (4, 1))
    return (*steady, (1000 + k // 20, 0), (50000 + k // 7, 1))


def used_bytes(k: float, pid: int) -> float:
    return k * 100000 + pid


def snapshot(k: int) -> Snapshot:
    gpus = tuple(
        GpuSample(
            index=i,
            uuid=f"GPU-{i}",
            name="Sim",
            memory_total=k,
            memory_used=k,
            memory_reserved=k,
            memory_free=k,
            util_gpu=k,
            util_memory=k,
            temperature_c=k,
            power_w=float(k),
            power_limit_w=float(k),
            clock_sm_mhz=k,
            clock_mem_mhz=k,
            fan_percent=k,
        )
        for i in range(GPUS)
    )
    procs = tuple(
        ProcessSample(pid=p, gpu_index=g, used_bytes=int(used_bytes(k, p)))
        for p, g in processes_at(k)
    )
    return Snapshot(timestamp=float(k), backend="simulated", gpus=gpus, processes=procs)


def write_until(name: str, stop: Any, report: Any) -> None:
    seg = ShmSegment.attach(name)
    writer = HistoryWriter(seg)
    while not stop.is_set():
        writer.write(snapshot(writer.count), {})
    report.put(("writer", writer.count))
    seg.close()


def gpu_copy_is_whole(ts: np.ndarray, rows: np.ndarray, gpu: int) -> bool:
    if ts.size == 0:
        return True
    if np.isnan(ts).any() or not (np.diff(ts) == 1).all():
        return False
    if not (rows[:, _PLAIN] == ts[:, None]).all() or not (rows[:, FIELD_INDEX["lost"]] == 0).all():
        return False
    expected = [
        sum(used_bytes(t, p) for p, g in processes_at(int(t)) if g == gpu) for t in ts.tolist()
    ]
    return bool((rows[:, FIELD_INDEX["process_sum"]] == expected).all())


def process_copy_is_whole(ts: np.ndarray, used: np.ndarray, pid: int, gpu: int) -> bool:
    if np.isnan(ts).any() or (ts.size and not (np.diff(ts) == 1).all()):
        return False
    for t, u in zip(ts.tolist(), used.tolist(), strict=True):
        if u != u:  # NaN: absent, fine
            continue
        if u != used_bytes(t, pid) or (pid, gpu) not in processes_at(int(t)):
            return False
    return True


def read_until(name: str, seed: int, stop: Any, report: Any) -> None:
    seg = ShmSegment.attach(name)
    reader = HistoryReader(seg)
    rng = random.Random(seed)
    reads = torn = busy = process_reads = 0
    while not stop.is_set():
        try:
            gpu = rng.randrange(GPUS)
            n = rng.choice((None, HISTORY // 2, 5))
            ts, rows = reader.gpu_history(gpu, n)
            reads += 1
            torn += not gpu_copy_is_whole(ts, rows, gpu)

            ts, values = reader.gpu_field(gpu, "used", n)
            reads += 1
            torn += not (np.diff(ts) == 1).all() or not (values == ts).all()

            table = reader.slots()
            reads += 1
            for slot in np.flatnonzero(table.active)[:3].tolist():
                pid, g, gen = (
                    int(table.pid[slot]),
                    int(table.gpu[slot]),
                    int(table.generation[slot]),
                )
                ts, used = reader.process_history(slot, gen)
                reads += 1
                process_reads += 1
                torn += not process_copy_is_whole(ts, used, pid, g)

            views = reader.views()
            if views.count:
                k = views.count - 1
                idx = k % views.history_length
                t = float(views.timestamps[idx])
                row = views.gpu[gpu, idx].copy()
                if reader.stable(views.seq):
                    reads += 1
                    torn += not (t == k and (row[_PLAIN] == k).all())
        except TornReadError:
            busy += 1
    report.put(("reader", reads, torn, busy, process_reads, reader.retries))
    seg.close()


def test_readers_never_see_a_torn_sample_from_a_full_speed_writer() -> None:
    seg = ShmSegment.create(HISTORY, GPUS, SLOTS)
    stop, report = FORK.Event(), FORK.Queue()
    procs = [FORK.Process(target=write_until, args=(seg.name, stop, report))]
    procs += [
        FORK.Process(target=read_until, args=(seg.name, seed, stop, report))
        for seed in range(READERS)
    ]
    try:
        for p in procs:
            p.start()
        time.sleep(RUN_SECONDS)
        stop.set()
        results = [report.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(10)
            assert p.exitcode == 0
    finally:
        stop.set()
        for p in procs:
            if p.is_alive():
                p.kill()
        seg.close()
        seg.unlink()

    written = next(r[1] for r in results if r[0] == "writer")
    readers = [r[1:] for r in results if r[0] == "reader"]
    summary = ", ".join(
        f"reader: {reads} reads ({preads} process), {torn} torn, {busy} gave up, {retries} retries"
        for reads, torn, busy, preads, retries in readers
    )
    print(f"\nshm stress: {written} samples written; {summary}")
    assert written > 10 * HISTORY, summary  # the ring wrapped many times, slots churned
    assert sum(r[1] for r in readers) == 0, summary
    for reads, _, busy, preads, _ in readers:
        assert reads >= 200 and preads >= 50, summary
        assert busy <= reads // 10, summary
