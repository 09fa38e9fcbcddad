"""Mailboxes: a slow reader loses stale messages, a producer never blocks, a dead reader
leaves the mailbox usable."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

from vramtop.actors.mailbox import Mailbox

CTX = mp.get_context("fork")


def test_newest_wins_when_full() -> None:
    box = Mailbox(CTX, "t", maxsize=4)
    started = time.monotonic()
    for i in range(100):
        box.post(i)
    assert time.monotonic() - started < 5, "posting to a full mailbox must not block"
    time.sleep(0.2)  # let the feeder thread flush
    got = box.drain()
    assert got[-1] == 99
    assert len(got) <= 4
    assert got == sorted(got)
    box.close()


def _blocked_reader(box: Mailbox) -> None:
    box.take(60)  # waits for a message that never comes


def test_a_reader_killed_while_waiting_does_not_starve_its_successor() -> None:
    box = Mailbox(CTX, "t", maxsize=8)
    reader = CTX.Process(target=_blocked_reader, args=(box,))
    reader.start()
    time.sleep(0.3)
    os.kill(reader.pid or 0, signal.SIGKILL)
    reader.join()
    box.repair()
    box.post("after the crash")
    assert box.take(5) == "after the crash"
    box.close()


def _post_from_child(box: Mailbox) -> None:
    box.post(("hello", os.getpid()))
    box._q.close()
    box._q.join_thread()


def test_messages_cross_processes_and_outlive_their_sender() -> None:
    box = Mailbox(CTX, "t")
    proc = CTX.Process(target=_post_from_child, args=(box,))
    proc.start()
    proc.join(10)
    message = box.take(5)
    assert message == ("hello", proc.pid)
    box.close()


def test_broadcast_reaches_every_reader_pickled_once() -> None:
    from vramtop.actors.base import ActorContext
    from vramtop.config import load_config

    boxes = {name: Mailbox(CTX, name) for name in ("render", "analyzer", "enricher")}
    ctx = ActorContext(
        name="sampler",
        config=load_config(env={"XDG_CONFIG_HOME": "/nonexistent"}),
        inbox=Mailbox(CTX, "sampler"),
        supervisor=Mailbox(CTX, "supervisor"),
        outboxes=boxes,
        shm_name="",
    )
    message = {"sample": list(range(1000))}
    ctx.broadcast(["render", "analyzer", "enricher", "nobody"], message)
    for box in boxes.values():
        assert box.take(5) == message
        box.close()
