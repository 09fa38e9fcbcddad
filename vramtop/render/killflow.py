"""The kill dialog's controller: confirmation, countdown and outcome around ``vramtop.kill``.

Where it sits: ``k`` in ``controller.py`` -> :meth:`KillFlow.open` (a :class:`KillDialog` for the
selected row, or a refusal; a process that is not the user's own job -- PID 1, a kernel
thread, another user's while root, vramtop itself -- carries a ``risk`` and needs a second,
explicit ``Y``) -> ``y``/Enter -> :meth:`KillFlow.confirm` (``KillSession.start``:
identity re-check + SIGTERM) -> :meth:`KillFlow.poll` every frame (countdown, SIGKILL after the
grace period, outcome). When kill is disabled (``--no-kill`` / ``display.enable_kill = false``)
``vramtop.kill`` is never imported and no session exists: no code path here can signal.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from vramtop.fmt import size
from vramtop.identity import same_process
from vramtop.messages import ProcessIdentity
from vramtop.render.model import ProcView
from vramtop.render.state import KillDialog
from vramtop.render.widgets import duration

DISABLED = "kill is disabled (--no-kill or display.enable_kill = false)"


class KillFlow:
    def __init__(
        self,
        enabled: bool,
        my_uid: int | None = None,
        audit_path: Path | None = None,
        grace_s: float = 5.0,
    ) -> None:
        self.enabled = enabled
        self.my_uid = os.geteuid() if my_uid is None else my_uid
        self.audit_path = audit_path
        self.grace_s = grace_s
        self.dialog: KillDialog | None = None
        self._target: Any = None
        self._session: Any = None
        self.monitor: tuple[int, float] | None = None  # set by the render process

    def resume_pending(self, monitor: tuple[int, float]) -> bool:
        """At the render process's (re)start: take over a countdown its predecessor left
        running (the SIGKILL is still due). True when one was resumed."""
        self.monitor = monitor
        if not self.enabled:
            return False
        from vramtop import kill

        path = self.audit_path if self.audit_path is not None else kill.default_audit_path()
        pending = kill.pending_kill(path, monitor, self.grace_s)
        if pending is None:
            return False
        target = pending.target
        self._target = target
        self._session = kill.KillSession(
            target, self.my_uid, self.enabled, path, self.grace_s, monitor=monitor
        )
        self._session.resume(pending)
        self.dialog = KillDialog(
            pid=target.pid,
            user=target.user,
            command=target.command,
            vram="N/A",
            age="unknown",
            refusal="",
        )
        self.poll()
        return True

    def open(self, view: ProcView) -> KillDialog | None:
        """The dialog for ``view``; None when kill is disabled (say :data:`DISABLED`)."""
        if not self.enabled:
            return None
        if self.running:
            return self.dialog  # one kill at a time: show the one in progress
        from vramtop import kill  # only ever imported when kill is enabled

        row = view.row
        uid = self._uid_of(view)
        target = kill.KillTarget(
            pid=row.identity.pid,
            start_time=row.identity.start_time,
            uid=uid,
            user=view.user,
            command=view.command,
            vram_bytes=None if view.vram != view.vram else int(view.vram),
        )
        start = row.identity.start_time
        self.dialog = KillDialog(
            pid=row.identity.pid,
            user=view.user,
            command=view.command,
            vram="N/A" if view.vram != view.vram else size(view.vram),
            age=duration(time.time() - start) if start else "unknown",
            refusal=kill.refusal(target, self.my_uid, self.enabled) or "",
        )
        if not self.dialog.refusal:
            self.dialog.risk = kill.risk(target, self.my_uid) or ""
        self._target = target
        self._session = None
        return self.dialog

    def _uid_of(self, view: ProcView) -> int:
        e = view.enrichment
        if e is not None and e.uid >= 0:
            return e.uid
        # The sampler decided same_user from the process's real UID when it listed it.
        if view.row.same_user and self.my_uid != 0:
            return self.my_uid
        try:
            import psutil

            proc = psutil.Process(view.row.identity.pid)
            if same_process(view.row.identity, ProcessIdentity(proc.pid, proc.create_time())):
                return int(proc.uids().real)
        except Exception:
            pass
        return -1  # unknown: refused unless we are root

    def confirm(self) -> None:
        if not self.enabled or self.dialog is None or self._target is None:
            return
        if self.dialog.refusal or self._session is not None:
            return
        from vramtop import kill

        self._session = kill.KillSession(
            self._target,
            self.my_uid,
            self.enabled,
            self.audit_path,
            grace_s=self.grace_s,
            monitor=self.monitor,
        )
        reason = self._session.start()
        if reason is not None:
            self.dialog.phase = "refused"
            self.dialog.message = reason
            return
        self.poll()

    def poll(self) -> bool:
        """Advance the running kill; True while it still needs frames (countdown)."""
        if self._session is None or self.dialog is None:
            return False
        state = self._session.poll()
        self.dialog.phase = state.phase
        self.dialog.message = state.message
        self.dialog.seconds_left = state.seconds_left
        return bool(state.phase == "terminating")

    @property
    def running(self) -> bool:
        return self.dialog is not None and self.dialog.phase == "terminating"

    def close(self) -> None:
        """Esc: forget a finished or unconfirmed kill; a running one keeps going unseen."""
        if self.running:
            return
        self.dialog = None
        self._target = None
        self._session = None
