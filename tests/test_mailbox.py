"""Mailboxes: state is replaced (a stalled reader wakes to the newest, with nothing piled up),
commands are never dropped, a producer never blocks or takes the reader's lock, and neither a
dead reader nor a writer killed mid-write leaves the mailbox unusable."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from vramtop.actors.base import ActorContext
from vramtop.actors.mailbox import Mailbox, StateChannel, make_channels
from vramtop.config import Config
from vramtop.messages import ProcessRows, Selected, state_kind

CTX = mp.get_context("fork")


def _batch(box: Mailbox) -> list[object]:
    """What the actor shell does: wait until the mailbox is readable, then drain it. (A put
    reaches the pipe through the queue's feeder thread a moment later.)"""
    from multiprocessing import connection

    connection.wait([box.fileno()], 10)
    return box.drain()


def _rows(seq: int) -> ProcessRows:
    return ProcessRows(seq, float(seq), ())


def _context(
    outboxes: dict[str, Mailbox], channels: dict[str, StateChannel], name: str = "sampler"
) -> ActorContext:
    return ActorContext(
        name=name,
        config=Config(),
        inbox=Mailbox(CTX, name),
        supervisor=Mailbox(CTX, "supervisor"),
        outboxes=outboxes,
        shm_name="",
        channels=channels,
    )


def test_a_stalled_reader_wakes_to_the_newest_state_and_every_command() -> None:
    channels = make_channels({"rows": ("analyzer",)}, capacity=4096)
    box = Mailbox(CTX, "analyzer", channels)
    ctx = _context({"analyzer": box}, channels)
    for i in range(1, 501):  # the reader is not reading: 500 samples, a command every 50
        ctx.deliver([("analyzer", _rows(i))])
        if i % 50 == 0:
            ctx.deliver([("analyzer", Selected(None))])
    got = _batch(box)
    while sum(isinstance(m, Selected) for m in got) < 10:
        more = _batch(box)  # the queue's feeder thread may still be writing the commands
        assert more, "no command may be dropped"
        got += more
    assert [m.seq for m in got if isinstance(m, ProcessRows)] == [500]
    assert sum(isinstance(m, Selected) for m in got) == 10
    # Nothing piled up behind: the queue held one bell, not 500 samples.
    assert box.drain() == []
    ctx.deliver([("analyzer", _rows(501))])
    assert [m.seq for m in _batch(box) if isinstance(m, ProcessRows)] == [501]


def test_commands_are_never_dropped_and_keep_their_order() -> None:
    box = Mailbox(CTX, "render")
    for i in range(5000):
        assert box.post(("command", i))
    got: list[object] = []
    while len(got) < 5000:
        batch = _batch(box)
        assert batch, "commands went missing"
        got += batch
    assert got == [("command", i) for i in range(5000)]


def test_a_producer_never_takes_the_readers_lock() -> None:
    channels = make_channels({"rows": ("render",)}, capacity=4096)
    box = Mailbox(CTX, "render", channels)
    ctx = _context({"render": box}, channels)
    assert box._q._rlock.acquire(timeout=1)  # the reader is stuck holding its lock
    try:
        sender = threading.Thread(
            target=lambda: [
                ctx.deliver([("render", _rows(i)), ("render", Selected(None))]) for i in range(200)
            ]
        )
        sender.start()
        # Generous: 200 sends take milliseconds; a producer waiting for the lock never ends.
        sender.join(30)
        assert not sender.is_alive(), "the producer blocked on the reader's lock"
    finally:
        box._q._rlock.release()
    got: list[object] = []
    while sum(isinstance(m, Selected) for m in got) < 200:
        more = _batch(box)
        assert more, "commands went missing"
        got += more


class _Counted:
    pickled = 0

    def __getstate__(self) -> dict[str, int]:
        _Counted.pickled += 1
        return {}

    def __setstate__(self, state: dict[str, int]) -> None:
        pass


@dataclass(frozen=True)
class _CountedRows(ProcessRows):
    payload: _Counted = field(default_factory=_Counted)


def test_one_message_to_several_readers_is_pickled_once(monkeypatch: object) -> None:
    from vramtop import messages

    messages.STATE_KINDS[_CountedRows] = "rows"
    try:
        channels = make_channels({"rows": ("analyzer", "enricher")}, capacity=4096)
        boxes = {n: Mailbox(CTX, n, channels) for n in ("analyzer", "enricher")}
        boxes["exporter"] = Mailbox(CTX, "exporter", channels, coalesce=False)
        ctx = _context(boxes, channels)
        message = _CountedRows(7, 7.0, ())
        _Counted.pickled = 0
        ctx.deliver([(name, message) for name in ("analyzer", "enricher", "exporter", "nobody")])
        assert _Counted.pickled == 1
        for box in boxes.values():
            (got,) = _batch(box)
            assert isinstance(got, _CountedRows) and got.seq == 7
    finally:
        del messages.STATE_KINDS[_CountedRows]


def test_a_reader_that_needs_every_sample_gets_every_sample() -> None:
    channels = make_channels({"rows": ("analyzer",)}, capacity=4096)
    exporter = Mailbox(CTX, "exporter", channels, coalesce=False)
    ctx = _context({"exporter": exporter}, channels)
    for i in range(50):
        ctx.deliver([("exporter", _rows(i))])
    got: list[object] = []
    while len(got) < 50:
        got += _batch(exporter)
    assert [m.seq for m in got] == list(range(50))  # type: ignore[attr-defined]


def test_state_too_large_for_its_channel_still_arrives_newest_wins() -> None:
    channels = make_channels({"rows": ("render",)}, capacity=64)
    box = Mailbox(CTX, "render", channels)
    ctx = _context({"render": box}, channels)
    for i in range(3):
        # A 64-byte channel cannot hold a pickled ProcessRows: the queue carries them.
        ctx.deliver([("render", _rows(i))])
    got = _batch(box)
    while len(got) == 1 and got[0].seq < 2:  # type: ignore[attr-defined]
        got = _batch(box)
    assert [state_kind(m) for m in got] == ["rows"] and got[0].seq == 2  # type: ignore[attr-defined]


def test_a_value_torn_by_a_dead_writer_is_never_read_and_the_next_one_is() -> None:
    channels = make_channels({"rows": ("render",)}, capacity=4096)
    box = Mailbox(CTX, "render", channels)
    ctx = _context({"render": box}, channels)
    ctx.deliver([("render", _rows(1))])
    assert [m.seq for m in _batch(box)] == [1]  # type: ignore[attr-defined]
    channel = channels["rows"]

    def dies_mid_write() -> None:
        import struct

        mem = channel._mem
        seq = struct.unpack_from("=Q", mem, 0)[0]
        struct.pack_into("=Q", mem, 0, (seq + 1) | 1)  # begun...
        mem[64:80] = b"\xff" * 16  # ...half written...
        os.kill(os.getpid(), signal.SIGKILL)  # ...and gone

    writer = CTX.Process(target=dies_mid_write)
    writer.start()
    writer.join(10)
    assert writer.exitcode == -signal.SIGKILL
    assert channel.read() is None, "a torn value must not be read as whole"
    ctx.deliver([("render", _rows(2))])  # the restarted writer's first value
    assert [m.seq for m in _batch(box)] == [2]  # type: ignore[attr-defined]


def _takes_the_bell_and_dies(box: Mailbox) -> None:
    box.take(10)  # the bell, then killed before reading the channel
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_restarted_reader_starts_from_the_newest_state() -> None:
    channels = make_channels({"rows": ("render",)}, capacity=4096)
    box = Mailbox(CTX, "render", channels)
    ctx = _context({"render": box}, channels)
    ctx.deliver([("render", _rows(1))])
    reader = CTX.Process(target=_takes_the_bell_and_dies, args=(box,))
    reader.start()
    reader.join(10)
    ctx.deliver([("render", _rows(2))])  # its bell is unanswered: no new bell is queued
    box.repair()
    assert [m.seq for m in box.resync()] == [2]  # type: ignore[attr-defined]
    ctx.deliver([("render", _rows(3))])
    assert [m.seq for m in _batch(box)] == [3]  # type: ignore[attr-defined]


def _blocked_reader(box: Mailbox) -> None:
    box.take(60)  # waits for a message that never comes


def test_a_reader_killed_while_waiting_does_not_starve_its_successor() -> None:
    box = Mailbox(CTX, "t")
    reader = CTX.Process(target=_blocked_reader, args=(box,))
    reader.start()
    time.sleep(0.3)  # let it reach its wait (the test holds whatever happens meanwhile)
    os.kill(reader.pid or 0, signal.SIGKILL)
    reader.join()
    box.repair()
    box.post("after the crash")
    assert box.take(5) == "after the crash"
    box.close()


def _post_from_child(box: Mailbox) -> None:
    box.post(("hello", os.getpid()))
    box.flush()


def test_messages_cross_processes_and_outlive_their_sender() -> None:
    box = Mailbox(CTX, "t")
    proc = CTX.Process(target=_post_from_child, args=(box,))
    proc.start()
    proc.join(10)
    message = box.take(5)
    assert message == ("hello", proc.pid)
    box.close()
