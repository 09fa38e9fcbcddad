"""Bounded, lossy mailboxes between vramtop processes.

A mailbox wraps a ``multiprocessing.Queue`` created by the supervisor, so it outlives the actor
that reads it: a restarted actor gets the same mailbox and nothing queued is lost.

Two rules keep a slow or dead peer from hurting anyone:

* ``post`` never blocks: when the queue is full the oldest message is dropped (newest wins).
* ``take`` waits on the pipe's file descriptor *before* taking the queue's reader lock, so the
  lock is held only for the microseconds of one read. A reader SIGKILLed while waiting would
  otherwise leave the lock held forever and starve its own restarted successor;
  :meth:`Mailbox.repair` releases a lock left held by a dead reader.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.context import BaseContext
from typing import Any


@dataclass(frozen=True, slots=True)
class Packed:
    """A message pickled once for several mailboxes (the sampler's sample goes to every reader;
    pickling 1024 processes three times costs more than the rest of a tick)."""

    data: bytes

    @classmethod
    def of(cls, message: object) -> Packed:
        return cls(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def unpack(self) -> object:
        return pickle.loads(self.data)


class Mailbox:
    def __init__(self, ctx: BaseContext, name: str, maxsize: int = 64) -> None:
        self.name = name
        self._q: Any = ctx.Queue(maxsize=maxsize)

    def post(self, message: object) -> bool:
        """Queue ``message`` without blocking; drop the oldest one when full. False if dropped."""
        for _ in range(3):
            try:
                self._q.put_nowait(message)
                return True
            except queue.Full:
                # The oldest message may still sit in the feeder thread's buffer rather than
                # the pipe: wait a moment for it, bounded, so the newest is the one kept.
                with contextlib.suppress(queue.Empty, OSError):
                    self._q.get(timeout=0.02)
            except (OSError, ValueError):  # closed during shutdown
                return False
        return False

    def take(self, timeout: float) -> object | None:
        """The next message, or None after ``timeout`` seconds."""
        reader = self._q._reader
        try:
            if not connection.wait([reader], timeout):
                return None
            message: object = self._q.get(timeout=0.05)
        except (queue.Empty, EOFError, OSError):
            return None
        return message.unpack() if isinstance(message, Packed) else message

    def drain(self, limit: int = 1000) -> list[object]:
        """Every message available now (bounded), oldest first."""
        out: list[object] = []
        while len(out) < limit:
            message = self.take(0)
            if message is None:
                break
            out.append(message)
        return out

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
