"""Mailboxes between vramtop processes: state replaced in place, commands never dropped.

Where it sits: the supervisor creates every mailbox and every state channel before it forks an
actor, so they outlive the actors that use them (a restarted actor gets the same mailbox and
nothing queued is lost). Actors send through :meth:`ActorContext.deliver` (``actors/base.py``).

Two kinds of message (``messages.STATE_KINDS``):

* **State** (a sample, a set of rows, an analysis): only the newest matters. Each kind has one
  :class:`StateChannel`, a block of anonymous shared memory written by its one producer under a
  sequence counter and read by any number of subscribers. Publishing replaces the previous
  value; a subscriber is told by a one-byte *bell* in the channel plus a tiny :class:`_Bell` in its
  queue, rung only when its previous bell was answered, so a stalled reader (Ctrl-S, a slow ssh
  link, SIGSTOP) accumulates nothing and reads the newest value when it wakes. A message too
  large for its channel travels through the queue instead, and :meth:`Mailbox.drain` keeps only
  the newest of each state kind in a batch.
* **Commands** (selection, config, health, kill, deltas, errors, stop) go through an unbounded
  ``multiprocessing.Queue``: never dropped, bounded by construction (a repeatable command carries
  the whole state, so a backlog of one kind is as small as its repetitions).

The producer never blocks and never takes the consumer's lock. ``take`` waits on the pipe's file
descriptor *before* taking the queue's reader lock, so that lock is held for the microseconds of
one read; :meth:`Mailbox.repair` releases a lock left held by a reader that was SIGKILLed.
"""

from __future__ import annotations

import contextlib
import mmap
import pickle
import queue
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.context import BaseContext
from typing import Any

from vramtop.messages import state_kind

_SEQ = struct.Struct("=Q")
_HEADER = 64  # seq (8) + length (8) + one bell byte per subscriber
_MAX_SUBSCRIBERS = _HEADER - 16
_READ_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class Packed:
    """A command pickled once for several mailboxes."""

    data: bytes

    @classmethod
    def of(cls, message: object) -> Packed:
        return cls(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def unpack(self) -> object:
        return pickle.loads(self.data)


@dataclass(frozen=True, slots=True)
class _Bell:
    """Queue item: the channel ``kind`` has a value this subscriber has not read yet."""

    kind: str


class StateChannel:
    """The newest message of one state kind: one writer, several subscribers, no locks.

    Layout: ``seq`` (odd while a write is in progress), ``length``, a bell byte per subscriber,
    then the pickled message. A writer killed mid-write leaves ``seq`` odd; its successor's first
    write moves it to the next odd number and then even, so a torn value is never read as whole.
    Anonymous shared memory (``mmap(-1)``) is inherited by forked actors and never appears in
    /dev/shm, so nothing is left behind whatever dies.
    """

    def __init__(self, kind: str, subscribers: Sequence[str], capacity: int) -> None:
        if len(subscribers) > _MAX_SUBSCRIBERS:
            raise ValueError(f"state channel {kind}: at most {_MAX_SUBSCRIBERS} subscribers")
        self.kind = kind
        self.subscribers = tuple(subscribers)
        self.capacity = capacity
        self._mem = mmap.mmap(-1, _HEADER + capacity)
        self._bell_at = {name: 16 + i for i, name in enumerate(self.subscribers)}

    # -- writer -----------------------------------------------------------------------------
    def publish(self, data: bytes) -> bool:
        """Replace the value; False (nothing written) when ``data`` does not fit."""
        if len(data) > self.capacity:
            return False
        mem = self._mem
        begin = (_SEQ.unpack_from(mem, 0)[0] + 1) | 1
        _SEQ.pack_into(mem, 0, begin)
        _SEQ.pack_into(mem, 8, len(data))
        mem[_HEADER : _HEADER + len(data)] = data
        _SEQ.pack_into(mem, 0, begin + 1)
        return True

    def ring(self, subscriber: str) -> bool:
        """Mark the value unread for ``subscriber``; True when it must be told (its last bell
        was answered), False when a bell is still pending and will find this value."""
        at = self._bell_at[subscriber]
        if self._mem[at]:
            return False
        self._mem[at] = 1
        return True

    # -- subscriber ---------------------------------------------------------------------------
    def answer(self, subscriber: str) -> None:
        """Clear the bell before reading, so a value published meanwhile rings again."""
        self._mem[self._bell_at[subscriber]] = 0

    def read(self) -> tuple[int, bytes] | None:
        """(seq, data) of a whole value; None when empty or being written (the writer rings
        again when it has finished)."""
        mem = self._mem
        for _ in range(_READ_ATTEMPTS):
            seq = _SEQ.unpack_from(mem, 0)[0]
            if seq == 0 or seq & 1:
                return None
            length = _SEQ.unpack_from(mem, 8)[0]
            if length > self.capacity:
                return None
            data = bytes(mem[_HEADER : _HEADER + length])
            if _SEQ.unpack_from(mem, 0)[0] == seq:
                return seq, data
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._mem.close()


def make_channels(routes: Mapping[str, Sequence[str]], capacity: int) -> dict[str, StateChannel]:
    """One channel per state kind with its subscribers (``{"sample": ("render",), ...}``)."""
    return {kind: StateChannel(kind, subs, capacity) for kind, subs in routes.items() if subs}


class Mailbox:
    def __init__(
        self,
        ctx: BaseContext,
        name: str,
        channels: Mapping[str, StateChannel] | None = None,
        coalesce: bool = True,
    ) -> None:
        """``coalesce=False``: a reader that must see every state message (the exporter writes
        every sample) subscribes to no channel and gets each one through the queue."""
        self.name = name
        self.coalesce = coalesce
        self._q: Any = ctx.Queue()
        # The channels this mailbox subscribes to, by kind.
        self.channels = {
            kind: ch for kind, ch in (channels or {}).items() if coalesce and name in ch.subscribers
        }
        self._last_seq: dict[str, int] = {}  # per channel, in the reading process

    # -- producer side ------------------------------------------------------------------------
    def post(self, message: object) -> bool:
        """Queue ``message`` without blocking. False only when the mailbox is closed."""
        try:
            self._q.put_nowait(message)
        except (OSError, ValueError, queue.Full):  # closed during shutdown
            return False
        return True

    def ring(self, channel: StateChannel) -> None:
        """Tell this subscriber that ``channel`` has a new value (at most one bell in flight)."""
        if channel.ring(self.name):
            self.post(_Bell(channel.kind))

    # -- consumer side ------------------------------------------------------------------------
    def take(self, timeout: float) -> object | None:
        """The next queued item (a command, a bell or a packed message), or None."""
        reader = self._q._reader
        try:
            if not connection.wait([reader], timeout):
                return None
            message: object = self._q.get(timeout=0.05)
        except (queue.Empty, EOFError, OSError):
            return None
        return message.unpack() if isinstance(message, Packed) else message

    def _read_channel(self, kind: str) -> object | None:
        channel = self.channels.get(kind)
        if channel is None:
            return None
        channel.answer(self.name)
        got = channel.read()
        if got is None:
            return None
        seq, data = got
        if self._last_seq.get(kind) == seq:
            return None  # already read (a bell for a value taken by an earlier read)
        self._last_seq[kind] = seq
        message: object = pickle.loads(data)
        return message

    def resync(self) -> list[object]:
        """At an actor's (re)start: the newest value of every subscribed channel, whatever
        bells a predecessor left unanswered."""
        out = []
        for kind in self.channels:
            message = self._read_channel(kind)
            if message is not None:
                out.append(message)
        return out

    def drain(self, limit: int = 10_000) -> list[object]:
        """Everything available now, oldest first, with only the newest of each state kind."""
        out: list[object] = []
        while len(out) < limit:
            item = self.take(0)
            if item is None:
                break
            if isinstance(item, _Bell):
                item = self._read_channel(item.kind)
                if item is None:
                    continue
            out.append(item)
        return newest_state(out) if self.coalesce else out

    def fileno(self) -> int:
        """The readable end, for ``select``/``connection.wait`` by the owner of this mailbox."""
        return int(self._q._reader.fileno())

    def repair(self) -> None:
        """Release the reader lock if a dead reader left it held (called before a restart)."""
        lock = self._q._rlock
        if lock.acquire(timeout=0.2):
            lock.release()
        else:
            with contextlib.suppress(ValueError):
                lock.release()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._q.cancel_join_thread()
            self._q.close()

    def flush(self) -> None:
        """Wait until this process's queued puts reached the pipe (before ``os._exit``)."""
        with contextlib.suppress(Exception):
            self._q.close()
            self._q.join_thread()


def newest_state(batch: Iterable[object]) -> list[object]:
    """``batch`` without the state messages that a later one of the same kind replaces."""
    items = list(batch)
    last: dict[str, int] = {}
    for i, message in enumerate(items):
        kind = state_kind(message)
        if kind is not None:
            last[kind] = i
    if len(last) == sum(state_kind(m) is not None for m in items):
        return items
    return [m for i, m in enumerate(items) if (k := state_kind(m)) is None or last[k] == i]
