"""The one writer of the history rings: the sampler turns each Snapshot into one shm sample.

Data flow: backend ``Snapshot`` -> :meth:`HistoryWriter.write` -> shm rings; the returned
{(pid, gpu): slot} map goes into the sampler's ``SampleMessage`` so readers know where each
process's history lives.

Seqlock: ``seq`` is made odd before the first store of a sample and even after the last, and
``count`` is advanced just before it goes even; readers copy between two reads of ``seq`` and keep
the copy only if both are the same even value. Numpy stores into the shared buffer are plain
stores issued in statement order; x86 makes them visible in that order, and on weakly ordered CPUs
we rely on the same (CPython offers no fence), so readers always re-validate.

Process slots. A process is ``(pid, start time, gpu)``. Each sample:

- a process seen in the previous sample keeps its slot;
- a slot whose process is missing from this sample is freed, but keeps its occupant's identity
  and history: readers may still show a just-exited process for a while;
- a process that reappears while its old slot is still free gets that slot back (same
  generation; the samples it missed read NaN), so a process the driver omits for one tick keeps
  one continuous history;
- any other new process takes the *least recently freed* slot (never-used slots first), which
  keeps recently exited histories readable for as long as possible; the slot's generation is
  bumped and ``slot_first`` marks where the new occupant's history starts;
- when no slot is free the process is not recorded (slot -1) until one frees up.

All of this state lives in the segment (``slot_*`` arrays, ``count``, ``seq``), so a new writer
attaching after the previous sampler died -- even mid-sample -- rebuilds it and carries on at the
stored sample count. Cost per sample is O(G + processes); no step touches every slot or sample.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from vramtop.gpu.snapshot import GpuSample, Snapshot
from vramtop.shm.layout import FIELD_INDEX, GPU_FIELDS, SegmentArrays
from vramtop.shm.segment import ShmSegment

_NAN = math.nan
_PROCESS_SUM = FIELD_INDEX["process_sum"]
_LOST = FIELD_INDEX["lost"]

Identity = tuple[int, float, int]  # (pid, start time, gpu index)


def _gpu_values(gpu: GpuSample) -> tuple[float, ...]:
    """The GPU_FIELDS of an OK GPU, except process_sum and lost (filled by the writer)."""
    return (
        float(gpu.memory_total),
        float(gpu.memory_used),
        float(gpu.memory_reserved),
        float(gpu.memory_free),
        float(gpu.util_gpu),
        float(gpu.util_memory),
        float(gpu.temperature_c),
        float(gpu.power_w),
        float(gpu.power_limit_w),
        float(gpu.clock_sm_mhz),
        float(gpu.clock_mem_mhz),
        float(gpu.fan_percent),
    )


assert len(GPU_FIELDS) == 14 and _PROCESS_SUM == 12 and _LOST == 13  # _gpu_values' order


class HistoryWriter:
    """Writes one sample per :meth:`write`; there must be only one per segment at a time."""

    def __init__(self, segment: ShmSegment) -> None:
        self._segment = segment
        self._a: SegmentArrays = segment.arrays
        self._h = segment.layout.history_length
        self._g = segment.layout.gpu_count
        self._p = segment.layout.process_slots
        self._count = 0
        self._seq = 0
        self._active: dict[Identity, int] = {}  # processes of the previous sample
        self._by_identity: dict[Identity, int] = {}  # every slot that has (had) an occupant
        self._free: OrderedDict[int, None] = OrderedDict()  # least recently freed first
        self._process_sum = np.zeros(self._g, dtype=np.float64)
        self._process_known = np.zeros(self._g, dtype=np.bool_)
        self._process_seen = np.zeros(self._g, dtype=np.bool_)
        self._recover()
        self._a.header["writer_pid"][0] = os.getpid()

    @property
    def count(self) -> int:
        """Samples written so far (by this writer and its predecessors)."""
        return self._count

    def _recover(self) -> None:
        """Rebuild the writer's state from the segment; repair a sample a dead writer left open."""
        a = self._a
        seq = int(a.seq[0])
        count = int(a.count[0])
        if seq & 1:
            # Killed mid-sample: the ring position being written may hold a mix of the sample
            # it was replacing and the new one. Readers never saw it (seq was odd); blank it.
            idx = count % self._h
            a.timestamps[idx] = _NAN
            a.gpu[:, idx, :] = _NAN
            a.process[:, idx] = _NAN
        # A slot touched by an unfinished sample must not claim that sample.
        np.minimum(a.slot_last, count - 1, out=a.slot_last)
        if seq & 1:
            a.seq[0] = seq + 1
            seq += 1
        self._count = count
        self._seq = seq

        latest = count - 1
        self._active.clear()
        self._by_identity.clear()
        self._free.clear()
        free_order: list[tuple[int, int]] = []
        for slot in range(self._p):
            pid = int(a.slot_pid[slot])
            last = int(a.slot_last[slot])
            if pid >= 0:
                key = (pid, float(a.slot_start_time[slot]), int(a.slot_gpu[slot]))
                self._by_identity[key] = slot
                if last == latest and last >= int(a.slot_first[slot]):
                    self._active[key] = slot
                    continue
            free_order.append((last, slot))
        free_order.sort()
        for _, slot in free_order:
            self._free[slot] = None

    def write(
        self, snapshot: Snapshot, start_times: Mapping[int, float]
    ) -> dict[tuple[int, int], int]:
        """Append one sample; return {(pid, gpu_index): slot} (slot -1: not recorded, slots full).

        ``start_times`` maps pid -> process start time (missing: 0.0, unknown).
        """
        a = self._a
        k = self._count
        idx = k % self._h
        g_count = self._g

        # Everything that can fail on odd input is done before the seqlock opens.
        rows: list[tuple[int, bool, tuple[float, ...]]] = []
        for gpu in snapshot.gpus:
            if 0 <= gpu.index < g_count:
                rows.append((gpu.index, gpu.lost, () if gpu.lost else _gpu_values(gpu)))
        procs: list[tuple[Identity, float]] = []
        for p in snapshot.processes:
            key = (int(p.pid), float(start_times.get(p.pid, 0.0)), int(p.gpu_index))
            procs.append((key, float(p.used_bytes)))
        timestamp = float(snapshot.timestamp)

        try:
            self._seq += 1
            a.seq[0] = self._seq
            result = self._write_locked(k, idx, timestamp, rows, procs)
            self._count = k + 1
            a.count[0] = self._count
            self._seq += 1
            a.seq[0] = self._seq
        except BaseException:
            self._recover()
            raise
        return result

    def _write_locked(
        self,
        k: int,
        idx: int,
        timestamp: float,
        rows: list[tuple[int, bool, tuple[float, ...]]],
        procs: list[tuple[Identity, float]],
    ) -> dict[tuple[int, int], int]:
        a = self._a
        a.timestamps[idx] = timestamp

        # Slots of processes that left are freed first, so newcomers can use them right away.
        present = {key for key, _ in procs}
        for key, slot in self._active.items():
            if key not in present:
                self._free[slot] = None  # appended: most recently freed

        sums = self._process_sum
        known = self._process_known
        seen = self._process_seen
        sums.fill(0.0)
        known.fill(False)
        seen.fill(False)
        g_count = self._g
        proc_ring = a.process
        slot_last = a.slot_last
        active: dict[Identity, int] = {}
        result: dict[tuple[int, int], int] = {}
        for key, used in procs:
            known_slot = active.get(key)  # a duplicate row within this sample
            if known_slot is None:
                known_slot = self._active.get(key)
                slot = self._acquire(key, k) if known_slot is None else known_slot
                if slot >= 0:
                    active[key] = slot
            else:
                slot = known_slot
            if slot >= 0:
                proc_ring[slot, idx] = used
                slot_last[slot] = k
            gpu = key[2]
            if 0 <= gpu < g_count:
                seen[gpu] = True
                if used == used:  # not NaN
                    sums[gpu] += used
                    known[gpu] = True
            result[(key[0], gpu)] = slot
        self._active = active

        gpu_ring = a.gpu
        gpu_ring[:, idx, :] = _NAN  # GPUs missing from the snapshot read n/a, not stale values
        for index, lost, values in rows:
            row = gpu_ring[index, idx]
            if lost:
                row[_LOST] = 1.0
                continue
            row[:_PROCESS_SUM] = values
            row[_LOST] = 0.0
            # Sum of the known per-process bytes; n/a when processes exist but none reports any.
            row[_PROCESS_SUM] = _NAN if seen[index] and not known[index] else sums[index]
        return result

    def _acquire(self, key: Identity, k: int) -> int:
        """A slot for a process not seen in the previous sample, or -1 when none is free."""
        a = self._a
        slot = self._by_identity.get(key)
        if slot is not None and slot in self._free:
            # Back after a gap: same occupant, same generation; blank the samples it missed.
            del self._free[slot]
            self._blank(slot, int(a.slot_last[slot]) + 1, k)
            return slot
        if not self._free:
            return -1
        slot, _ = self._free.popitem(last=False)
        if int(a.slot_pid[slot]) >= 0:
            old = (int(a.slot_pid[slot]), float(a.slot_start_time[slot]), int(a.slot_gpu[slot]))
            if self._by_identity.get(old) == slot:
                del self._by_identity[old]
        # The generation goes first: a reader that sees the new pid also sees the new generation.
        a.slot_generation[slot] += np.uint64(1)
        a.slot_pid[slot] = key[0]
        a.slot_start_time[slot] = key[1]
        a.slot_gpu[slot] = key[2]
        a.slot_first[slot] = k
        a.slot_last[slot] = k - 1
        self._by_identity[key] = slot
        return slot

    def _blank(self, slot: int, start: int, stop: int) -> None:
        """NaN for samples start..stop-1 of one slot (only those still in the ring)."""
        start = max(start, stop - self._h + 1)
        if start >= stop:
            return
        lo, hi = start % self._h, stop % self._h
        row = self._a.process[slot]
        if lo < hi:
            row[lo:hi] = _NAN
        else:
            row[lo:] = _NAN
            row[:hi] = _NAN
