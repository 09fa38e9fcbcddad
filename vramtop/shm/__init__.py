"""Shared-memory GPU and process histories: one segment per run, one writer, many readers.

Data flow: the supervisor creates the segment (:meth:`ShmSegment.create`, after
:func:`cleanup_stale`) and unlinks it at the end; the sampler attaches a :class:`HistoryWriter`;
the analyzer and render processes attach :class:`HistoryReader` s. See ``layout`` for the bytes.
"""

from vramtop.shm.layout import FIELD_INDEX, GPU_FIELDS, LayoutError, ShmLayout
from vramtop.shm.reader import HistoryReader, RingViews, SlotTable, TornReadError, read_histories
from vramtop.shm.segment import ShmSegment, cleanup_stale, parse_segment_name, segment_name
from vramtop.shm.writer import HistoryWriter

__all__ = [
    "FIELD_INDEX",
    "GPU_FIELDS",
    "HistoryReader",
    "HistoryWriter",
    "LayoutError",
    "RingViews",
    "ShmLayout",
    "ShmSegment",
    "SlotTable",
    "TornReadError",
    "cleanup_stale",
    "parse_segment_name",
    "read_histories",
    "segment_name",
]
