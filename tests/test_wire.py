"""Messages cross process boundaries as compact pickles (``vramtop/wire.py``)."""

from __future__ import annotations

import copyreg
import dataclasses
import pickle

import pytest

from vramtop import messages
from vramtop.gpu.snapshot import GpuSample, ProcessSample, ProcessType, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow, ProcessRows, SampleMessage
from vramtop.na import NA
from vramtop.wire import compact


def _sample() -> SampleMessage:
    gpu = GpuSample(index=0, uuid="GPU-1", name="NVIDIA H100", memory_total=80 << 30,
                    memory_used=NA, memory_reserved=NA, memory_free=NA)  # fmt: skip
    procs = tuple(
        ProcessSample(4000 + i, 0, (i + 1) << 20, (ProcessType.COMPUTE,), NA, 3) for i in range(3)
    )
    snap = Snapshot(timestamp=1.5, gpus=(gpu,), processes=procs, backend="nvml")
    rows = tuple(
        ProcessRow(ProcessIdentity(4000 + i, 99.25), 0, i, "alice", f"python r{i}.py", True)
        for i in range(3)
    )
    return SampleMessage(7, snap, rows)


def test_a_sample_comes_back_equal_with_its_n_a_fields() -> None:
    sample = _sample()
    back = pickle.loads(pickle.dumps(sample, pickle.HIGHEST_PROTOCOL))
    assert back == sample
    assert back.snapshot.gpus[0].memory_used is NA  # the singleton, not a copy


def test_every_message_class_is_registered() -> None:
    # A message class left out would still work, at the default pickle's cost on every reader.
    classes = [
        c for c in vars(messages).values()
        if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == messages.__name__
    ]  # fmt: skip
    assert classes
    assert [c.__name__ for c in classes if c not in copyreg.dispatch_table] == []


def test_rows_pickle_smaller_than_the_default() -> None:
    rows = _sample().rows * 500
    compact_size = len(pickle.dumps(ProcessRows(1, 1.0, rows), pickle.HIGHEST_PROTOCOL))
    saved = {c: copyreg.dispatch_table.pop(c) for c in (ProcessRow, ProcessIdentity, ProcessRows)}
    try:
        default_size = len(pickle.dumps(ProcessRows(1, 1.0, rows), pickle.HIGHEST_PROTOCOL))
    finally:
        copyreg.dispatch_table.update(saved)
    assert compact_size < default_size


def test_a_field_outside_init_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError, match="__init__"):
        compact(Derived)
