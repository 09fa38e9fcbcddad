"""Sending SIGTERM, then SIGKILL, to a GPU process the user chose -- and nothing else.

Data flow: the render process shows a confirmation dialog for the selected row; when the user
confirms, it builds a :class:`KillTarget` from that row's identity (pid, start time) and runs a
:class:`KillSession`: ``start()`` once, then ``poll()`` every frame until a final phase. Nothing
else in vramtop sends signals to other processes (the supervisor only signals its own actors).
With ``--no-kill`` (``display.enable_kill = false``) the render process never constructs a
``KillSession``; ``enabled=False`` is still honoured here as a second lock: no signal, no log.

The security model (design.md, "Kill"):

* only processes of our own UID (root: any);
* identity (pid, start time) is re-checked right before *each* signal, so a PID that was reused
  since the user selected the row is never signalled; on Linux the signal goes through a pidfd
  opened before the check, which closes the gap between check and send;
* SIGTERM first, SIGKILL only if the same process is still alive ``grace_s`` (5 s) later;
* every signal sent, every refused attempt and every failed send is appended to a JSON-lines
  audit log (:func:`default_audit_path`). A log that cannot be written never blocks the kill;
  the failure is shown in :attr:`KillState.message`.

A kill outlives the render process that started it: each record names the monitor (the
supervisor's PID and start time), and a restarted render process finds, with
:func:`pending_kill`, a SIGTERM of its own monitor whose SIGKILL is still due, and resumes that
countdown (:meth:`KillSession.resume`, logged as "resumed") instead of forgetting it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

from vramtop.identity import same_process
from vramtop.messages import ProcessIdentity
from vramtop.sanitize import clean

# A process that survives SIGKILL this long is stuck in the kernel (uninterruptible I/O, a
# wedged driver); we stop waiting and say so rather than spin forever.
KILL_WAIT_S = 5.0

Phase = str  # "idle" | "terminating" | "killed" | "exited" | "refused" | "failed"
FINAL_PHASES = frozenset({"killed", "exited", "refused", "failed"})


@dataclass(frozen=True)
class KillTarget:
    """The process the user confirmed, as vramtop saw it when the row was selected."""

    pid: int
    start_time: float  # psutil.Process.create_time(); identity = (pid, start_time)
    uid: int
    user: str
    command: str
    vram_bytes: int | None

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.start_time)


@dataclass(frozen=True)
class KillState:
    phase: Phase
    seconds_left: float  # until SIGKILL while terminating; 0 otherwise
    message: str


def default_audit_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/vramtop/kill-audit.jsonl``, else ``~/.local/share/vramtop/...``."""
    env = os.environ if env is None else env
    data_home = env.get("XDG_DATA_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    if not data_home or not os.path.isabs(data_home):
        home = env.get("HOME") or str(Path.home())
        data_home = os.path.join(home, ".local", "share")
    return Path(data_home) / "vramtop" / "kill-audit.jsonl"


def _user_name(target: KillTarget, uid: int) -> str:
    if uid == target.uid and target.user:
        return clean(target.user, 32)
    try:
        return clean(pwd.getpwuid(uid).pw_name, 32)
    except KeyError:
        return f"UID {uid}"


def _not_own(target: KillTarget, uid: int) -> str:
    return (
        f"PID {target.pid} belongs to {_user_name(target, uid)}; "
        "you can only kill your own processes"
    )


def refusal(target: KillTarget, my_uid: int, enabled: bool) -> str | None:
    """Why ``target`` must not be signalled now, in one line; None when it may be.

    Looks at the live process, so call it right before each signal. Never raises: a process
    that vanishes or hides from us mid-check is an answer ("has exited", "cannot check"), and
    anything unexpected refuses, because not killing is always the safe side.
    """
    pid = target.pid
    if not enabled:
        return "kill is disabled (--no-kill)"
    # os.kill(0 or -1, ...) would signal a whole process group or every process we may reach.
    if pid <= 0:
        return f"PID {pid} is not a process vramtop can kill"
    if pid == os.getpid():
        return f"PID {pid} is vramtop itself; not killing it"
    if my_uid != 0 and target.uid != my_uid:
        return _not_own(target, target.uid)
    if target.start_time <= 0:
        return f"PID {pid} has an unknown start time; not killing it"
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            started = proc.create_time()
            if not same_process(ProcessIdentity(pid, started), target.identity):
                return f"PID {pid} was reused by another process; not killing it"
            if proc.status() == psutil.STATUS_ZOMBIE:
                return f"PID {pid} has exited"
            live_uid = proc.uids().real
    except psutil.NoSuchProcess:  # ZombieProcess is a subclass: it has exited as well
        return f"PID {pid} has exited"
    except psutil.AccessDenied:
        return f"PID {pid} cannot be checked (access denied); not killing it"
    except Exception as exc:
        return f"PID {pid} cannot be checked ({clean(str(exc), 80)}); not killing it"
    # The selected row may be stale: a process can change its UID after we listed it.
    if my_uid != 0 and live_uid != my_uid:
        return _not_own(target, live_uid)
    return None


def risk(target: KillTarget, my_uid: int) -> str | None:
    """Why killing ``target`` is not an everyday kill of one's own job, in one line; None when
    it is. The kill dialog then asks for a second, explicit confirmation that names it. Only
    reachable where :func:`refusal` lets the kill through (mostly as root)."""
    pid = target.pid
    if pid == 1:
        return "PID 1 is init: killing it takes down the whole system (or container)"
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            ppid = proc.ppid()
            cmdline = proc.cmdline()
            terminal = proc.terminal()
    except psutil.Error:
        return None  # gone or hidden: refusal() answers that right before the signal
    if pid == 2 or ppid == 2 or (not cmdline and ppid == 0):
        return f"PID {pid} is a kernel thread"
    # The supervisor and its actors (their titles start with "vramtop"); a demo's scripted
    # children share the parent but carry their own argv.
    ours = {os.getpid(), os.getppid()}
    if (pid in ours or ppid in ours) and cmdline and cmdline[0].startswith("vramtop"):
        return f"PID {pid} is part of this vramtop: killing it stops the monitor"
    if target.uid != my_uid:
        return f"PID {pid} belongs to {_user_name(target, target.uid)}, not to you"
    if ppid == 1 and terminal is None and target.uid < 1000:
        return f"PID {pid} is a system service (started by init, no terminal)"
    return None


def _open_pidfd(pid: int) -> int | None:
    """A handle on the process now holding ``pid`` (None where pidfds are unavailable)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None or pid <= 0:
        return None
    try:
        fd: int = opener(pid)
    except OSError:  # ESRCH is reported by the check that follows; ENOSYS: old kernel
        return None
    return fd


def _send(pid: int, pidfd: int | None, sig: signal.Signals) -> None:
    """Deliver ``sig``; through the pidfd when we have one, so a reused PID is unreachable."""
    sender = getattr(signal, "pidfd_send_signal", None)
    if pidfd is not None and sender is not None:
        sender(pidfd, sig)
    else:
        os.kill(pid, sig)


class KillSession:
    """One confirmed kill: SIGTERM, wait ``grace_s``, SIGKILL if the same process is alive.

    ``start()`` is called once when the user confirms; ``poll()`` is cheap and never blocks,
    so the render process calls it every frame and shows the countdown and the outcome.
    ``audit_path=None`` means :func:`default_audit_path`: a sent signal is always logged.
    """

    def __init__(
        self,
        target: KillTarget,
        my_uid: int,
        enabled: bool,
        audit_path: Path | None = None,
        grace_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        monitor: tuple[int, float] | None = None,
    ) -> None:
        """``monitor``: (pid, start time) of the vramtop that runs this kill, written into
        each record so that a restarted render process resumes its own kills only."""
        self._pidfd: int | None = None
        self.monitor = monitor
        self.target = target
        self.my_uid = my_uid
        self.enabled = enabled
        self.audit_path = default_audit_path() if audit_path is None else audit_path
        self.grace_s = grace_s
        self._clock = clock
        self._phase: Phase = "idle"
        self._message = ""
        self._term_at = 0.0
        self._term_sent = False
        self._kill_at: float | None = None
        self.audit_error: str | None = None

    # -- public -------------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    def start(self) -> str | None:
        """Re-check, then send SIGTERM. None when SIGTERM was sent; otherwise the one-line
        reason nothing was sent (phase "refused", or "failed" when the send itself failed).
        Calling it again after the first time sends nothing and returns the same answer."""
        if self._phase != "idle":
            return None if self._term_sent else self._message
        pid = self.target.pid
        # Open the handle before checking: if the check then passes, the handle is the
        # checked process, and a later exit + PID reuse makes the send fail, not misfire.
        self._pidfd = _open_pidfd(pid) if self.enabled else None
        reason = refusal(self.target, self.my_uid, self.enabled)
        if reason is not None:
            return self._refuse(reason, log=self.enabled)
        try:
            _send(pid, self._pidfd, signal.SIGTERM)
        except ProcessLookupError:
            return self._refuse(f"PID {pid} has exited", log=True)
        except OSError as exc:
            return self._fail(signal.SIGTERM, f"SIGTERM to PID {pid} failed: {_os_reason(exc)}")
        self._term_at = self._clock()
        self._term_sent = True
        self._phase = "terminating"
        self._message = f"sent SIGTERM to PID {pid}; waiting for it to exit"
        self._audit(signal.SIGTERM, "sent", "confirmed by user")
        return None

    def resume(self, pending: PendingKill) -> None:
        """Continue the countdown of a SIGTERM that an earlier render process of the same
        monitor sent (instead of ``start``): SIGKILL is due ``grace_s`` after that SIGTERM,
        not after the restart."""
        if self._phase != "idle":
            return
        if self.enabled:
            self._pidfd = _open_pidfd(self.target.pid)
        self._term_sent = True
        self._phase = "terminating"
        self._term_at = self._clock() - max(0.0, time.time() - pending.sent_at)
        self._message = f"sent SIGTERM to PID {self.target.pid}; waiting for it to exit"
        sigterm_at = datetime.fromtimestamp(pending.sent_at, timezone.utc)
        self._audit(
            None,
            "resumed",
            "countdown continued by a restarted render process",
            sigterm_at=sigterm_at.isoformat(timespec="milliseconds"),
        )

    def poll(self) -> KillState:
        """Where the kill stands now; may send the SIGKILL when the grace period is over."""
        if self._phase == "terminating":
            self._advance()
        return KillState(self._phase, self._seconds_left(), self.message)

    @property
    def message(self) -> str:
        """The one-line status; a failure to write the audit log stays visible to the end."""
        if self.audit_error is None:
            return self._message
        return f"{self._message} (audit log not written: {self.audit_error})"

    def close(self) -> None:
        """Release the pidfd (done automatically once the session reaches a final phase)."""
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None

    def __del__(self) -> None:
        if hasattr(self, "_pidfd"):
            self.close()

    # -- internals ----------------------------------------------------------------------------

    def _advance(self) -> None:
        pid = self.target.pid
        now = self._clock()
        elapsed = now - self._term_at
        if self._kill_at is not None:
            if not self._alive():
                self._finish("killed", self._message.removesuffix(_WAITING))
            elif now - self._kill_at >= KILL_WAIT_S:
                self._finish(
                    "failed",
                    f"PID {pid} is still alive {KILL_WAIT_S:g} s after SIGKILL "
                    "(stuck in the kernel?)",
                )
            return
        if elapsed < self.grace_s:
            if not self._alive():
                self._finish("exited", f"PID {pid} exited after SIGTERM ({elapsed:.1f} s)")
            return
        # The deadline: a full identity check decides. A PID that now belongs to someone else
        # is refused (and logged), not reported as a clean exit we did not see.
        reason = refusal(self.target, self.my_uid, self.enabled)
        if reason is not None:
            if reason.endswith("has exited"):
                self._finish("exited", f"PID {pid} exited after SIGTERM ({elapsed:.1f} s)")
            else:
                self._refuse(reason, log=True)
            return
        try:
            _send(pid, self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            self._finish("exited", f"PID {pid} exited after SIGTERM ({elapsed:.1f} s)")
            return
        except OSError as exc:
            self._fail(signal.SIGKILL, f"SIGKILL to PID {pid} failed: {_os_reason(exc)}")
            return
        self._kill_at = self._clock()
        sent = f"PID {pid} did not exit within {self.grace_s:g} s; sent SIGKILL"
        self._audit(signal.SIGKILL, "sent", f"still alive after {self.grace_s:g} s")
        self._message = sent + _WAITING

    def _alive(self) -> bool:
        """The *same* process still exists and is not a zombie."""
        try:
            proc = psutil.Process(self.target.pid)
            with proc.oneshot():
                live = ProcessIdentity(self.target.pid, proc.create_time())
                if not same_process(live, self.target.identity):
                    return False
                return bool(proc.status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:
            # Cannot tell (e.g. access denied): assume alive, the escalation re-checks anyway.
            return True

    def _seconds_left(self) -> float:
        if self._phase != "terminating" or self._kill_at is not None:
            return 0.0
        return max(0.0, self.grace_s - (self._clock() - self._term_at))

    def _refuse(self, reason: str, log: bool) -> str:
        if log:
            self._audit(None, "refused", reason)
        self._finish("refused", reason)
        return reason

    def _fail(self, sig: signal.Signals, reason: str) -> str:
        self._audit(sig, "failed", reason)
        self._finish("failed", reason)
        return reason

    def _finish(self, phase: Phase, message: str) -> None:
        self._phase = phase
        self._message = message
        self.close()

    def _audit(self, sig: signal.Signals | None, result: str, reason: str, **extra: object) -> None:
        """Append one record; a failure is kept in ``audit_error``, never raised."""
        t = self.target
        record = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "pid": t.pid,
            "start_time": t.start_time,
            "uid": t.uid,
            "user": clean(t.user, 64),
            "command": clean(t.command),
            "signal": sig.name if sig is not None else None,
            "result": result,
            "reason": reason,
            "by_uid": os.geteuid(),
        }
        record.update(extra)
        if self.monitor is not None:
            record["monitor_pid"], record["monitor_start"] = self.monitor
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            _append(self.audit_path, line)
        except OSError as exc:
            self.audit_error = f"{self.audit_path}: {_os_reason(exc)}"


_WAITING = "; waiting for it to go"
_AUDIT_TAIL = 64 * 1024  # the end of the log is where a pending kill can be


@dataclass(frozen=True)
class PendingKill:
    """A SIGTERM whose SIGKILL may still be due, read back from the audit log."""

    target: KillTarget
    sent_at: float  # wall time of the SIGTERM


def pending_kill(
    audit_path: Path, monitor: tuple[int, float], grace_s: float = 5.0
) -> PendingKill | None:
    """The newest SIGTERM sent by ``monitor`` within the last ``grace_s`` + a margin that no
    later record of the same process settles (SIGKILL sent, refused, failed); None if none.
    A log that cannot be read or parsed is no pending kill."""
    try:
        with open(audit_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _AUDIT_TAIL))
            tail = f.read(_AUDIT_TAIL)
    except OSError:
        return None
    newest: dict[tuple[int, float], dict[str, object]] = {}
    for line in tail.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if (record.get("monitor_pid"), record.get("monitor_start")) != monitor:
            continue
        key = (record.get("pid"), record.get("start_time"))
        if isinstance(key[0], int) and isinstance(key[1], int | float):
            newest[(key[0], float(key[1]))] = record
    now = time.time()
    for (pid, start), record in sorted(newest.items(), key=lambda kv: str(kv[1].get("time"))):
        if record.get("signal") == "SIGTERM" and record.get("result") == "sent":
            when = record.get("time")
        elif record.get("result") == "resumed":
            when = record.get("sigterm_at")
        else:
            continue  # settled: SIGKILL sent, refused or failed
        try:
            sent_at = datetime.fromisoformat(str(when)).timestamp()
        except ValueError:
            continue
        if not now - grace_s - KILL_WAIT_S <= sent_at <= now + 1.0:
            continue
        uid = record.get("uid")
        target = KillTarget(
            pid=pid,
            start_time=start,
            uid=uid if isinstance(uid, int) else -1,
            user=str(record.get("user", "")),
            command=str(record.get("command", "")),
            vram_bytes=None,
        )
        return PendingKill(target, sent_at)
    return None


def _append(path: Path, line: bytes) -> None:
    """One ``os.write`` on an O_APPEND fd, so concurrent vramtops never interleave lines."""
    directory = path.parent
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        # The log holds command lines: keep it private even if it was created loosely.
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write ({written} of {len(line)} bytes)")
    finally:
        os.close(fd)


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
