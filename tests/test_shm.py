"""Shared-memory history: layout, writer/reader round trips, slots, restarts, lifetimes."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from vramtop.gpu.snapshot import GpuSample, GpuState, ProcessSample, Snapshot
from vramtop.na import NA
from vramtop.shm import (
    FIELD_INDEX,
    GPU_FIELDS,
    HistoryReader,
    HistoryWriter,
    LayoutError,
    ShmLayout,
    ShmSegment,
    TornReadError,
    cleanup_stale,
    segment_name,
)

FORK = mp.get_context("fork")
SHM = Path("/dev/shm")
GiB = 1 << 30


@pytest.fixture
def make_segment() -> Iterator[Callable[..., ShmSegment]]:
    made: list[ShmSegment] = []

    def make(history_length: int = 8, gpu_count: int = 2, process_slots: int = 4) -> ShmSegment:
        seg = ShmSegment.create(history_length, gpu_count, process_slots)
        made.append(seg)
        return seg

    yield make
    for seg in made:
        seg.close()
        seg.unlink()


def gpu(index: int, k: float = 0, **fields: object) -> GpuSample:
    values: dict[str, object] = {
        "memory_total": 80 * GiB,
        "memory_used": int(k) * 1000,
        "util_gpu": 50,
    }
    values.update(fields)
    return GpuSample(index=index, uuid=f"GPU-{index}", name="Sim", **values)  # type: ignore[arg-type]


def snap(k: float, procs: tuple[tuple[int, int, object], ...] = (), gpus: int = 2) -> Snapshot:
    """Sample k: timestamp k; procs are (pid, gpu, used_bytes)."""
    return Snapshot(
        timestamp=float(k),
        backend="simulated",
        gpus=tuple(gpu(i, k) for i in range(gpus)),
        processes=tuple(ProcessSample(pid=p, gpu_index=g, used_bytes=u) for p, g, u in procs),  # type: ignore[arg-type]
    )


def used_by_time(
    reader: HistoryReader, slot: int, generation: int | None = None
) -> dict[float, float]:
    ts, used = reader.process_history(slot, generation)
    return {float(t): float(u) for t, u in zip(ts, used, strict=True) if not math.isnan(u)}


# -- layout ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "g", "p"), [(1, 0, 0), (8, 2, 4), (300, 8, 1024), (7, 3, 5)])
def test_layout_sections_fit_align_and_do_not_overlap(h: int, g: int, p: int) -> None:
    layout = ShmLayout(h, g, p)
    buf = memoryview(bytearray(layout.size))
    arrays = layout.arrays(buf)
    views = [*arrays.header.values()] + [getattr(arrays, name) for name, *_ in layout.sections()]
    for i, a in enumerate(views):
        for b in views[i + 1 :]:
            assert not np.shares_memory(a, b)
    for _, _, _, offset in layout.sections():
        assert offset % 64 == 0
    assert arrays.gpu.shape == (g, h, len(GPU_FIELDS))
    assert arrays.process.shape == (p, h)
    assert arrays.slot_generation.shape == (p,)
    payload = sum(v.nbytes for v in views)
    # No wasted space beyond the header's spare words and alignment padding.
    assert payload <= layout.size <= payload + 128 + 64 * len(layout.sections())


def test_layout_grows_by_one_sample_per_history_step() -> None:
    a, b = ShmLayout(100, 3, 10), ShmLayout(108, 3, 10)
    per_sample = 8 + 3 * len(GPU_FIELDS) * 8 + 10 * 8
    assert b.size - a.size == pytest.approx(8 * per_sample, abs=64 * 3)


def test_layout_rejects_nonsense_sizes_and_foreign_buffers() -> None:
    with pytest.raises(LayoutError):
        ShmLayout(0, 1, 1)
    with pytest.raises(LayoutError):
        ShmLayout(10, -1, 1)
    with pytest.raises(LayoutError):
        ShmLayout.from_buffer(memoryview(bytearray(4096)))


def test_gpu_fields_order_is_the_documented_one() -> None:
    assert GPU_FIELDS[:4] == ("total", "used", "reserved", "free")
    assert GPU_FIELDS[-2:] == ("process_sum", "lost")
    assert [FIELD_INDEX[f] for f in GPU_FIELDS] == list(range(len(GPU_FIELDS)))


# -- round trip ------------------------------------------------------------------------------


def test_round_trip_of_a_real_snapshot(make_segment: Callable[..., ShmSegment]) -> None:
    seg = make_segment(history_length=4, gpu_count=3, process_slots=4)
    full = GpuSample(
        index=0,
        uuid="GPU-0",
        name="H100",
        memory_total=80 * GiB,
        memory_used=30 * GiB,
        memory_reserved=GiB // 2,
        memory_free=49 * GiB,
        util_gpu=97,
        util_memory=40,
        temperature_c=71,
        power_w=412.5,
        power_limit_w=700.0,
        clock_sm_mhz=1980,
        clock_mem_mhz=2619,
        fan_percent=NA,
    )
    lost = GpuSample(index=1, uuid="GPU-1", name="H100", state=GpuState.LOST, memory_total=80 * GiB)
    shy = GpuSample(index=2, uuid="GPU-2", name="T4", memory_total=16 * GiB)
    snapshot = Snapshot(
        timestamp=1700000000.25,
        backend="simulated",
        gpus=(full, lost, shy),
        processes=(
            ProcessSample(pid=100, gpu_index=0, used_bytes=10 * GiB),
            ProcessSample(pid=101, gpu_index=0, used_bytes=NA),
            ProcessSample(pid=102, gpu_index=0, used_bytes=5 * GiB),
            ProcessSample(pid=103, gpu_index=2, used_bytes=NA),
        ),
    )
    slots = HistoryWriter(seg).write(snapshot, {100: 1.0, 101: 2.0, 102: 3.0})
    reader = HistoryReader(seg)

    ts, rows = reader.gpu_history(0)
    assert ts.tolist() == [1700000000.25]
    row = dict(zip(GPU_FIELDS, rows[0].tolist(), strict=True))
    assert row["total"] == 80 * GiB and row["used"] == 30 * GiB
    assert row["reserved"] == GiB // 2 and row["free"] == 49 * GiB
    assert (row["util_gpu"], row["util_memory"], row["temperature"]) == (97, 40, 71)
    assert (row["power"], row["power_limit"]) == (412.5, 700.0)
    assert (row["clock_sm"], row["clock_mem"]) == (1980, 2619)
    assert math.isnan(row["fan"])  # NA -> NaN
    assert row["process_sum"] == 15 * GiB  # known processes only; never a stand-in for used
    assert row["lost"] == 0.0

    _, lost_rows = reader.gpu_history(1)
    assert lost_rows[0, FIELD_INDEX["lost"]] == 1.0
    assert np.isnan(np.delete(lost_rows[0], FIELD_INDEX["lost"])).all()

    # Processes exist on GPU 2 but none reports bytes: the sum is unknown, not 0.
    assert math.isnan(reader.gpu_field(2, "process_sum")[1][0])
    assert reader.gpu_field(2, "total")[1].tolist() == [16 * GiB]

    assert set(slots) == {(100, 0), (101, 0), (102, 0), (103, 2)}
    assert sorted(slots.values()) == [0, 1, 2, 3]
    assert reader.process_history(slots[(100, 0)])[1].tolist() == [10 * GiB]
    assert math.isnan(reader.process_history(slots[(101, 0)])[1][0])
    table = reader.slots()
    slot = slots[(102, 0)]
    assert (table.pid[slot], table.start_time[slot], table.gpu[slot]) == (102, 3.0, 0)
    assert table.find(102, 3.0, 0) == slot and table.find(102, 9.0, 0) == -1
    assert table.active.sum() == 4


def test_gpu_missing_from_a_snapshot_reads_na_not_stale(
    make_segment: Callable[..., ShmSegment],
) -> None:
    seg = make_segment(history_length=2, gpu_count=2)
    writer, reader = HistoryWriter(seg), HistoryReader(seg)
    writer.write(snap(1), {})
    writer.write(snap(2), {})
    writer.write(snap(3, gpus=1), {})  # overwrites the ring position of sample 1
    _, values = reader.gpu_field(1, "used")
    assert values[0] == 2000 and math.isnan(values[1])


def test_ring_wraps_and_keeps_time_order(make_segment: Callable[..., ShmSegment]) -> None:
    seg = make_segment(history_length=4)
    writer, reader = HistoryWriter(seg), HistoryReader(seg)
    assert reader.count == 0 and reader.latest_sample_index() == -1
    assert reader.gpu_history(0)[0].size == 0
    for k in range(2):
        writer.write(snap(k), {})
    assert reader.gpu_history(0)[0].tolist() == [0, 1]
    for k in range(2, 11):
        writer.write(snap(k), {})
    assert reader.count == 11 and reader.latest_sample_index() == 10
    ts, rows = reader.gpu_history(1)
    assert ts.tolist() == [7, 8, 9, 10]
    assert rows[:, FIELD_INDEX["used"]].tolist() == [7000, 8000, 9000, 10000]
    assert reader.gpu_field(0, "used", n=2)[1].tolist() == [9000, 10000]
    assert reader.gpu_history(0, n=99)[0].size == 4
    with pytest.raises(KeyError):
        reader.gpu_field(0, "nonsense")
    with pytest.raises(IndexError):
        reader.gpu_history(2)


# -- process slots ---------------------------------------------------------------------------


def test_exited_slot_is_recycled_with_new_generation(
    make_segment: Callable[..., ShmSegment],
) -> None:
    seg = make_segment(history_length=16, process_slots=2)
    writer, reader = HistoryWriter(seg), HistoryReader(seg)
    starts = {1: 1.0, 2: 2.0, 3: 3.0}
    for k in range(3):
        slots = writer.write(snap(k, ((1, 0, 100 + k), (2, 0, 200 + k))), starts)
    slot_a = slots[(1, 0)]
    gen_a = int(reader.slots().generation[slot_a])
    for k in range(3, 6):  # process 1 exits, process 3 starts: the only free slot is 1's
        slots = writer.write(snap(k, ((2, 0, 200 + k), (3, 0, 300 + k))), starts)
    assert slots[(3, 0)] == slot_a
    table = reader.slots()
    assert table.generation[slot_a] == gen_a + 1
    assert (table.pid[slot_a], table.first[slot_a]) == (3, 3)
    assert used_by_time(reader, slot_a) == {3.0: 303, 4.0: 304, 5.0: 305}
    # Asking for the old occupant (by its generation) gets nothing rather than someone else's.
    assert used_by_time(reader, slot_a, generation=gen_a) == {}
    assert used_by_time(reader, slot_a, generation=gen_a + 1) == {3.0: 303, 4.0: 304, 5.0: 305}


def test_reused_pid_is_a_new_process_with_its_own_history(
    make_segment: Callable[..., ShmSegment],
) -> None:
    seg = make_segment(history_length=16, process_slots=3)
    writer, reader = HistoryWriter(seg), HistoryReader(seg)
    for k in range(3):
        old = writer.write(snap(k, ((7, 0, 1000 + k),)), {7: 50.0})[(7, 0)]
    for k in range(3, 5):
        new = writer.write(snap(k, ((7, 0, 2000 + k),)), {7: 60.0})[(7, 0)]
    assert new != old
    assert used_by_time(reader, new) == {3.0: 2003, 4.0: 2004}
    # The exited process's history stays readable until its slot is needed.
    assert used_by_time(reader, old) == {0.0: 1000, 1.0: 1001, 2.0: 1002}


def test_reused_pid_in_a_recycled_slot_does_not_inherit_history(
    make_segment: Callable[..., ShmSegment],
) -> None:
    seg = make_segment(history_length=16, process_slots=1)
    writer, reader = HistoryWriter(seg), HistoryReader(seg)
    for k in range(3):
        writer.write(snap(k, ((7, 0, 1000 + k),)), {7: 50.0})
    for k in range(3, 5):
        slot = writer.write(snap(k, ((7, 0, 2000 + k),)), {7: 60.0})[(7, 0)]
    assert slot == 0
    assert reader.slots().generation[0] == 2
    assert used_by_time(reader, 0) == {3.0: 2003, 4.0: 2004}


def test_least_recently_freed_slot_is_reused_first(make_segment: Callable[..., ShmSegment]) -> None:
    seg = make_segment(history_length=16, process_slots=3)
    writer = HistoryWriter(seg)
    s = writer.write(snap(0, ((1, 0, 1), (2, 0, 2), (3, 0, 3))), {})
    writer.write(snap(1, ((2, 0, 2), (3, 0, 3))), {})  # 1 exits first
    writer.write(snap(2, ((3, 0, 3),)), {})  # then 2
    got = writer.write(snap(3, ((3, 0, 3), (4, 0, 4), (5, 0, 5))), {})
    assert got[(4, 0)] == s[(1, 0)] and got[(5, 0)] == s[(2, 0)]


def test_process_missing_for_a_sample_keeps_its_slot(
    make_segment: Callable[..., ShmSegment],
) -> None:
    seg = make_segment(history_length=16, process_slots=4)
    writer, reader = HistoryWriter(seg), HistoryReader(seg)
    slot = writer.write(snap(0, ((9, 1, 90),)), {9: 5.0})[(9, 1)]
    writer.write(snap(1, ((8, 0, 80),)), {8: 4.0})  # 9 omitted by the driver for one tick
    again = writer.write(snap(2, ((9, 1, 92), (8, 0, 80))), {9: 5.0, 8: 4.0})[(9, 1)]
    assert again == slot
    assert reader.slots().generation[slot] == 1
    ts, used = reader.process_history(slot)
    assert ts.tolist() == [0, 1, 2]
    assert used[0] == 90 and math.isnan(used[1]) and used[2] == 92


def test_full_slot_table_returns_minus_one_and_keeps_working(
    make_segment: Callable[..., ShmSegment],
) -> None:
    seg = make_segment(history_length=8, process_slots=2)
    writer, reader = HistoryWriter(seg), HistoryReader(seg)
    procs = ((1, 0, 10), (2, 0, 20), (3, 0, 30), (4, 1, 40))
    got = writer.write(snap(0, procs), {})
    assert sorted(got.values()) == [-1, -1, 0, 1]
    # Unrecorded processes still count towards the GPU's process sum.
    assert reader.gpu_field(0, "process_sum")[1].tolist() == [60]
    got = writer.write(snap(1, procs), {})
    assert sorted(got.values()) == [-1, -1, 0, 1]
    unrecorded = [key for key, slot in got.items() if slot == -1]
    leaving = next(key for key, slot in got.items() if slot >= 0)
    remaining = tuple(p for p in procs if (p[0], p[1]) != leaving)
    got = writer.write(snap(2, remaining), {})
    assert -1 in got.values() and sum(1 for s in got.values() if s >= 0) == 2
    newly = next(key for key in unrecorded if got[key] >= 0)
    assert used_by_time(reader, got[newly]) == {2.0: dict(((p, g), u) for p, g, u in procs)[newly]}


# -- processes and restarts ------------------------------------------------------------------


def _child_reads_then_writes(name: str, conn: object) -> None:
    seg = ShmSegment.attach(name)
    reader = HistoryReader(seg)
    ts, _ = reader.gpu_history(0)
    table = reader.slots()
    writer = HistoryWriter(seg)
    writer.write(snap(100, ((5, 0, 555),)), {5: 1.5})
    conn.send((ts.tolist(), table.pid.tolist(), reader.count))  # type: ignore[attr-defined]
    seg.close()


def test_forked_child_attaches_reads_and_writes(make_segment: Callable[..., ShmSegment]) -> None:
    seg = make_segment(history_length=8, process_slots=2)
    writer = HistoryWriter(seg)
    for k in range(3):
        writer.write(snap(k, ((5, 0, 500 + k),)), {5: 1.5})
    parent, child = FORK.Pipe()
    proc = FORK.Process(target=_child_reads_then_writes, args=(seg.name, child))
    proc.start()
    assert parent.poll(20)
    ts, pids, count = parent.recv()
    proc.join(20)
    assert proc.exitcode == 0
    assert ts == [0, 1, 2] and pids == [5, -1] and count == 4
    reader = HistoryReader(seg)
    assert used_by_time(reader, 0) == {0.0: 500, 1.0: 501, 2.0: 502, 100.0: 555}
    assert SHM.joinpath(seg.name).exists()  # the child's exit did not unlink it


def test_new_writer_continues_the_history(make_segment: Callable[..., ShmSegment]) -> None:
    seg = make_segment(history_length=32, process_slots=4)
    writer = HistoryWriter(seg)
    starts = {1: 1.0, 2: 2.0}
    for k in range(10):
        first = writer.write(snap(k, ((1, 0, k), (2, 1, 10 * k))), starts)
    del writer
    writer = HistoryWriter(ShmSegment.attach(seg.name))
    assert writer.count == 10
    again = writer.write(snap(10, ((1, 0, 10), (2, 1, 100))), starts)
    assert again == first
    reader = HistoryReader(seg)
    assert reader.count == 11
    assert reader.gpu_history(0)[0].tolist() == list(range(11))
    assert used_by_time(reader, first[(1, 0)]) == {float(k): k for k in range(11)}
    assert reader.slots().generation.tolist() == [1, 1, 0, 0]


def test_new_writer_repairs_a_sample_left_half_written(
    make_segment: Callable[..., ShmSegment],
) -> None:
    seg = make_segment(history_length=8, process_slots=3)
    writer = HistoryWriter(seg)
    for k in range(10):
        slots = writer.write(snap(k, ((1, 0, k),)), {1: 1.0})
    # What a sampler SIGKILLed inside write() leaves: seq odd, ring position 10 % 8 (sample 2,
    # still readable) half overwritten, a slot half recycled for a newcomer.
    a = seg.arrays
    a.seq[0] += 1
    a.timestamps[10 % 8] = 999.0
    a.gpu[0, 10 % 8, :3] = 999.0
    a.slot_generation[2] += 1
    a.slot_pid[2] = 42
    a.slot_first[2] = 10
    a.slot_last[2] = 10
    reader = HistoryReader(seg, max_attempts=5)
    with pytest.raises(TornReadError):
        reader.gpu_history(0)

    writer = HistoryWriter(ShmSegment.attach(seg.name))
    assert int(a.seq[0]) % 2 == 0 and writer.count == 10
    ts, rows = reader.gpu_history(0)
    assert 999.0 not in ts and 999.0 not in rows
    assert math.isnan(ts[0]) and ts[1:].tolist() == list(range(3, 10))
    assert writer.write(snap(10, ((1, 0, 10),)), {1: 1.0}) == slots
    assert reader.gpu_history(0)[0].tolist() == list(range(3, 11))
    assert used_by_time(reader, 2) == {}


def _write_forever(name: str, ready: object) -> None:
    seg = ShmSegment.attach(name)
    writer = HistoryWriter(seg)
    pids = (11, 12, 13)
    while True:
        k = writer.count
        live = pids[: 1 + k % 3]  # churn so that slots are taken and freed all the time
        writer.write(snap(k, tuple((p, 0, k * 100 + p) for p in live)), {p: 1.0 for p in live})
        if k == 200:
            ready.set()  # type: ignore[attr-defined]


def test_sigkilled_writer_is_replaced_without_torn_or_missing_samples(
    make_segment: Callable[..., ShmSegment],
) -> None:
    seg = make_segment(history_length=64, process_slots=4)
    ready = FORK.Event()
    proc = FORK.Process(target=_write_forever, args=(seg.name, ready))
    proc.start()
    assert ready.wait(20)
    time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    proc.join(10)

    writer = HistoryWriter(ShmSegment.attach(seg.name))
    stopped_at = writer.count
    assert stopped_at > 200
    for k in range(stopped_at, stopped_at + 5):
        writer.write(snap(k, ((11, 0, k * 100 + 11),)), {11: 1.0})
    reader = HistoryReader(seg)
    ts, rows = reader.gpu_history(0)
    known = ~np.isnan(ts)
    assert known.sum() >= 63
    # Every sample is whole: its values all come from the same k, and k follows k.
    assert (np.diff(ts[known]) == 1).all() and ts[-1] == stopped_at + 4
    assert (rows[known, FIELD_INDEX["used"]] == ts[known] * 1000).all()
    table = reader.slots()
    for slot in range(4):
        for t, u in used_by_time(reader, slot).items():
            assert u == t * 100 + table.pid[slot]


# -- readers ---------------------------------------------------------------------------------


def test_views_are_zero_copy_and_stable_tells_if_a_write_happened(
    make_segment: Callable[..., ShmSegment],
) -> None:
    seg = make_segment(history_length=4)
    writer, reader = HistoryWriter(seg), HistoryReader(seg)
    writer.write(snap(0), {})
    v = reader.views()
    assert v.count == 1 and np.shares_memory(v.gpu, seg.arrays.gpu)
    assert v.timestamps[0 % v.history_length] == 0.0
    assert reader.stable(v.seq)
    writer.write(snap(1), {})
    assert not reader.stable(v.seq)


def test_segment_pickles_as_an_attach(make_segment: Callable[..., ShmSegment]) -> None:
    seg = make_segment()
    HistoryWriter(seg).write(snap(3), {})
    other = pickle.loads(pickle.dumps(seg))
    assert not other.owner and other.name == seg.name
    assert HistoryReader(other).gpu_history(0)[0].tolist() == [3]
    with pytest.raises(PermissionError):
        other.unlink()
    other.close()


def test_write_cost_does_not_grow_with_history_times_slots(
    make_segment: Callable[..., ShmSegment],
) -> None:
    small = HistoryWriter(make_segment(history_length=8, gpu_count=2, process_slots=8))
    large = HistoryWriter(make_segment(history_length=1024, gpu_count=2, process_slots=1024))
    procs = tuple((p, p % 2, p * 10) for p in range(8))
    samples: dict[HistoryWriter, list[float]] = {small: [], large: []}
    for k in range(150):  # interleaved so machine noise hits both alike
        for w in (small, large):
            s = snap(k, procs)
            t0 = time.perf_counter()
            w.write(s, {})
            samples[w].append(time.perf_counter() - t0)
    ratio = statistics.median(samples[large]) / statistics.median(samples[small])
    assert ratio < 4, f"per-write cost grew {ratio:.1f}x with P*H 16384x larger"


# -- lifetimes -------------------------------------------------------------------------------


def test_unlink_leaves_nothing_in_dev_shm() -> None:
    seg = ShmSegment.create(16, 1, 4)
    path = SHM / seg.name
    assert path.exists() and path.stat().st_size >= seg.layout.size
    assert seg.name.startswith(f"vramtop_{os.getuid()}_{os.getpid()}_")
    seg.close()
    seg.unlink()
    seg.unlink()  # idempotent
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        ShmSegment.attach(seg.name)


def _create_and_hang(conn: object) -> None:
    seg = ShmSegment.create(8, 1, 2)
    conn.send(seg.name)  # type: ignore[attr-defined]
    time.sleep(60)


def test_cleanup_stale_removes_dead_runs_and_keeps_live_ones(
    make_segment: Callable[..., ShmSegment],
) -> None:
    live = make_segment()
    parent, child = FORK.Pipe()
    proc = FORK.Process(target=_create_and_hang, args=(child,))
    proc.start()
    assert parent.poll(20)
    dead_name = parent.recv()
    os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    proc.join(10)
    assert (SHM / dead_name).exists()

    # A live PID that now belongs to a process started after the segment's creator: reuse.
    reused = make_segment()
    reused.arrays.header["creator_start"][0] -= 3600
    # A segment name whose creator is gone and which has no readable header.
    junk = SHM / segment_name(pid=proc.pid)
    junk.write_bytes(b"\0" * 16)

    removed = cleanup_stale()
    assert dead_name in removed and reused.name in removed and junk.name in removed
    assert live.name not in removed and (SHM / live.name).exists()
    assert not (SHM / dead_name).exists() and not junk.exists()


def test_cleanup_stale_ignores_other_users_and_other_names() -> None:
    # 2**22 + 1 is above Linux's largest pid_max: certainly not a live creator.
    other = SHM / segment_name(uid=os.getuid() + 1, pid=2**22 + 1)
    stranger = SHM / f"notvramtop_{os.getuid()}_{2**22 + 1}_deadbeef"
    for path in (other, stranger):
        path.write_bytes(b"")
    try:
        removed = cleanup_stale()
        assert other.name not in removed and stranger.name not in removed
        assert other.exists() and stranger.exists()
    finally:
        other.unlink()
        stranger.unlink()


_ATTACH_SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp, sys
    from vramtop.shm import HistoryReader, HistoryWriter, ShmSegment

    def child(name):
        seg = ShmSegment.attach(name)
        assert HistoryReader(seg).count == 1
        seg.close()

    mode, name = sys.argv[1], sys.argv[2]
    if mode == "attach":
        seg = ShmSegment.attach(name)
        HistoryWriter(seg)
        seg.close()
    else:
        seg = ShmSegment.create(8, 1, 2)
        from vramtop.gpu.snapshot import Snapshot
        HistoryWriter(seg).write(Snapshot(timestamp=1.0, backend="simulated", gpus=()), {})
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=child, args=(seg.name,)) for _ in range(2)]
        for p in procs: p.start()
        for p in procs: p.join()
        assert all(p.exitcode == 0 for p in procs)
        print(seg.name)
        if mode == "owner":
            seg.close()
            seg.unlink()
        # mode "forgetful": exits without unlinking
    """
)


def _run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _ATTACH_SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_attaching_process_exits_without_tracker_warnings_or_unlinking(
    make_segment: Callable[..., ShmSegment],
) -> None:
    seg = make_segment()
    result = _run_script("attach", seg.name)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert (SHM / seg.name).exists()  # its exit did not take the segment with it


@pytest.mark.parametrize("mode", ["owner", "forgetful"])
def test_owner_with_forked_readers_exits_cleanly(mode: str) -> None:
    result = _run_script(mode, "-")
    assert result.returncode == 0, result.stderr
    assert "leaked" not in result.stderr and "resource_tracker" not in result.stderr
    assert result.stderr == ""
    name = result.stdout.strip()
    assert name.startswith("vramtop_")
    assert not (SHM / name).exists()
