"""Byte layout of the shared-memory history segment, and numpy views into it.

Data flow: the supervisor sizes a segment with :class:`ShmLayout` (history length H, GPU count G,
process-slot capacity P) and creates it; the sampler's :class:`~vramtop.shm.writer.HistoryWriter`
fills it; the analyzer and render processes read it through
:class:`~vramtop.shm.reader.HistoryReader`. Every array is a view into the one buffer, so nothing
is allocated or copied per sample.

Sections, each starting on a 64-byte boundary::

    header            HEADER_FIELDS, 8 bytes each (magic, version, creator, sizes, seq, count)
    timestamps        float64[H]          wall-clock seconds of each sample (NaN = none)
    gpu               float64[G, H, F]    F = len(GPU_FIELDS); NaN = n/a, lost = 1.0 / 0.0
    slot_pid          int64[P]            -1 = never used
    slot_start_time   float64[P]          the occupant's process start time (0.0 = unknown)
    slot_gpu          int32[P]
    slot_first        int64[P]            sample number of the occupant's first sample
    slot_last         int64[P]            sample number of the occupant's last sample (-1 = none)
    slot_generation   uint64[P]           bumped every time the slot gets a new occupant
    process           float64[P, H]       used bytes per slot and sample (NaN = n/a or absent)

Sample number ``k`` (0-based, counting every sample ever written) lives at ring index ``k % H``;
the header's ``count`` is the number of samples written so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

# Order is part of the layout: bump LAYOUT_VERSION when it changes.
GPU_FIELDS: Final[tuple[str, ...]] = (
    "total",
    "used",
    "reserved",
    "free",
    "util_gpu",
    "util_memory",
    "temperature",
    "power",
    "power_limit",
    "clock_sm",
    "clock_mem",
    "fan",
    "process_sum",
    "lost",
)
FIELD_INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(GPU_FIELDS)}

MAGIC: Final = int.from_bytes(b"VRAMTOP\x00", "little")
LAYOUT_VERSION: Final = 1

# (name, dtype) of every 8-byte header word, in order.
HEADER_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("magic", "u8"),
    ("version", "u8"),
    ("creator_pid", "i8"),
    ("creator_start", "f8"),  # psutil create_time() of the creator, to detect PID reuse
    ("created_at", "f8"),
    ("gpu_count", "i8"),
    ("history_length", "i8"),
    ("process_slots", "i8"),
    ("field_count", "i8"),
    ("seq", "u8"),  # seqlock: odd while a sample is being written
    ("count", "i8"),  # samples written so far
    ("writer_pid", "i8"),  # the sampler that last attached as writer (informational)
)
HEADER_SIZE: Final = 128  # room for a few more words without moving the rings
_ALIGN: Final = 64

# Sanity bounds for sizes read from a header someone else wrote.
MAX_HISTORY: Final = 10_000_000
MAX_GPUS: Final = 4096
MAX_SLOTS: Final = 1_000_000


class LayoutError(ValueError):
    """The buffer is not a vramtop history segment of a layout this version understands."""


def _align(offset: int) -> int:
    return (offset + _ALIGN - 1) // _ALIGN * _ALIGN


@dataclass(frozen=True, slots=True)
class HeaderInfo:
    """The identifying part of a header, as read by stale-segment cleanup."""

    creator_pid: int
    creator_start: float
    created_at: float
    history_length: int
    gpu_count: int
    process_slots: int


def parse_header(raw: bytes) -> HeaderInfo | None:
    """The header at the start of ``raw``; None when it is short, foreign or of another version."""
    if len(raw) < len(HEADER_FIELDS) * 8:
        return None
    words = np.frombuffer(raw, dtype=np.uint8, count=len(HEADER_FIELDS) * 8)
    values: dict[str, Any] = {
        name: words[i * 8 : i * 8 + 8].view(dtype)[0]
        for i, (name, dtype) in enumerate(HEADER_FIELDS)
    }
    if int(values["magic"]) != MAGIC or int(values["version"]) != LAYOUT_VERSION:
        return None
    return HeaderInfo(
        creator_pid=int(values["creator_pid"]),
        creator_start=float(values["creator_start"]),
        created_at=float(values["created_at"]),
        history_length=int(values["history_length"]),
        gpu_count=int(values["gpu_count"]),
        process_slots=int(values["process_slots"]),
    )


@dataclass(frozen=True, slots=True)
class SegmentArrays:
    """Numpy views of one segment. Header words are 1-element arrays (``a.seq[0]``)."""

    header: dict[str, npt.NDArray[Any]]
    seq: npt.NDArray[np.uint64]
    count: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.float64]
    gpu: npt.NDArray[np.float64]
    slot_pid: npt.NDArray[np.int64]
    slot_start_time: npt.NDArray[np.float64]
    slot_gpu: npt.NDArray[np.int32]
    slot_first: npt.NDArray[np.int64]
    slot_last: npt.NDArray[np.int64]
    slot_generation: npt.NDArray[np.uint64]
    process: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ShmLayout:
    """Offsets and sizes for history length H, GPU count G and P process slots."""

    history_length: int
    gpu_count: int
    process_slots: int

    def __post_init__(self) -> None:
        if not 1 <= self.history_length <= MAX_HISTORY:
            raise LayoutError(f"history_length must be 1..{MAX_HISTORY}, not {self.history_length}")
        if not 0 <= self.gpu_count <= MAX_GPUS:
            raise LayoutError(f"gpu_count must be 0..{MAX_GPUS}, not {self.gpu_count}")
        if not 0 <= self.process_slots <= MAX_SLOTS:
            raise LayoutError(f"process_slots must be 0..{MAX_SLOTS}, not {self.process_slots}")

    @property
    def field_count(self) -> int:
        return len(GPU_FIELDS)

    def sections(self) -> tuple[tuple[str, str, tuple[int, ...], int], ...]:
        """(name, dtype, shape, offset) of every array after the header."""
        h, g, p, f = self.history_length, self.gpu_count, self.process_slots, self.field_count
        shapes: tuple[tuple[str, str, tuple[int, ...]], ...] = (
            ("timestamps", "f8", (h,)),
            ("gpu", "f8", (g, h, f)),
            ("slot_pid", "i8", (p,)),
            ("slot_start_time", "f8", (p,)),
            ("slot_gpu", "i4", (p,)),
            ("slot_first", "i8", (p,)),
            ("slot_last", "i8", (p,)),
            ("slot_generation", "u8", (p,)),
            ("process", "f8", (p, h)),
        )
        out = []
        offset = HEADER_SIZE
        for name, dtype, shape in shapes:
            out.append((name, dtype, shape, offset))
            offset = _align(offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        return tuple(out)

    @property
    def size(self) -> int:
        """Bytes the segment needs."""
        _, dtype, shape, offset = self.sections()[-1]
        return offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize

    @classmethod
    def from_buffer(cls, buf: memoryview) -> ShmLayout:
        """The layout recorded in an existing segment's header."""
        info = parse_header(bytes(buf[: len(HEADER_FIELDS) * 8]))
        if info is None:
            raise LayoutError("not a vramtop history segment (bad magic or layout version)")
        layout = cls(info.history_length, info.gpu_count, info.process_slots)
        if layout.size > len(buf):
            raise LayoutError(f"segment is {len(buf)} bytes, its header needs {layout.size}")
        return layout

    def arrays(self, buf: memoryview) -> SegmentArrays:
        """Views of every section of ``buf`` (which must be at least :attr:`size` bytes)."""
        if len(buf) < self.size:
            raise LayoutError(f"buffer is {len(buf)} bytes, layout needs {self.size}")
        header: dict[str, np.ndarray[Any, Any]] = {
            name: np.ndarray((1,), dtype=dtype, buffer=buf, offset=i * 8)
            for i, (name, dtype) in enumerate(HEADER_FIELDS)
        }
        views: dict[str, np.ndarray[Any, Any]] = {
            name: np.ndarray(shape, dtype=dtype, buffer=buf, offset=offset)
            for name, dtype, shape, offset in self.sections()
        }
        return SegmentArrays(header=header, seq=header["seq"], count=header["count"], **views)

    def initialise(
        self, arrays: SegmentArrays, creator_pid: int, creator_start: float, created_at: float
    ) -> None:
        """Fill a fresh segment: empty rings, unused slots, and the header (magic written last)."""
        arrays.timestamps.fill(np.nan)
        arrays.gpu.fill(np.nan)
        arrays.process.fill(np.nan)
        arrays.slot_pid.fill(-1)
        arrays.slot_start_time.fill(0.0)
        arrays.slot_gpu.fill(-1)
        arrays.slot_first.fill(0)
        arrays.slot_last.fill(-1)
        arrays.slot_generation.fill(0)
        hdr = arrays.header
        hdr["version"][0] = LAYOUT_VERSION
        hdr["creator_pid"][0] = creator_pid
        hdr["creator_start"][0] = creator_start
        hdr["created_at"][0] = created_at
        hdr["gpu_count"][0] = self.gpu_count
        hdr["history_length"][0] = self.history_length
        hdr["process_slots"][0] = self.process_slots
        hdr["field_count"][0] = self.field_count
        hdr["seq"][0] = 0
        hdr["count"][0] = 0
        hdr["writer_pid"][0] = 0
        # Last, so a concurrent stale-segment scan never trusts a half-written header.
        hdr["magic"][0] = MAGIC
