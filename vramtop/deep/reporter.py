"""The reporter that ``vramtop.report()`` starts inside the user's process.

Data flow: a daemon thread listens on ``<pid>.sock`` in the private directory of ``paths.py``;
for every connection (a monitor asking, about once a second) it reads the PyTorch caching
allocator's figures (:func:`collect`), writes them as one ``protocol.py`` line and closes. Any
number of monitors may ask; the process does nothing between requests but wait in ``accept``,
waking once a second to attach the OOM observer as soon as CUDA is up.

What it must never do, since it lives in someone else's program:

- raise into the caller (every failure becomes a state in the report, or a one-line notice);
- import torch (a process that has not imported it is reported as "CUDA not initialised yet",
  or "torch not installed" when it is not there at all), or initialise CUDA: only devices the
  allocator has already used are read, and ``mem_get_info`` is asked only of those (asking of
  any other device would create a CUDA context there);
- leave its socket behind: it is removed at exit and on SIGTERM (when SIGTERM has its default
  action; a program's own handler is left alone and the exit hook still runs), and only if the
  file is still the one this process bound. Like any Python-level handler, ours runs when the
  main thread is back in Python: a main thread stuck in C (a hung NCCL collective) dies of
  SIGTERM only once it returns, and SIGKILL is the way out, as for every Python program with a
  SIGTERM handler. ``VRAMTOP_REPORT_SIGTERM=0`` keeps SIGTERM untouched (the monitor removes a
  dead process's socket anyway). A forked child does not inherit the reporter: it
  closes the listening socket it inherited and may call ``report()`` itself.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import importlib.util
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from vramtop.deep import paths, protocol

ACCEPT_WAKE_S = 1.0  # how often the idle thread looks whether CUDA came up (OOM observer)
SEND_TIMEOUT_S = 1.0

_lock = threading.Lock()
_reporter: _Reporter | None = None
_fork_hook = False


class _Reporter:
    def __init__(self, directory: str) -> None:
        self.pid = os.getpid()
        self.path = paths.socket_path(directory, self.pid)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by an earlier process that had our PID
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self.inode = os.stat(self.path).st_ino
        self.sock.listen(16)
        self.sock.settimeout(ACCEPT_WAKE_S)
        self.closed = False
        self.ooms: collections.deque[dict[str, Any]] = collections.deque(maxlen=protocol.MAX_OOMS)
        self.ooms_lock = threading.Lock()  # the observer runs in whichever thread allocated
        self.observer_attached = False
        self.torch_installed: bool | None = None
        self.requests = 0
        self.thread = threading.Thread(target=self._run, name="vramtop-report", daemon=True)

    # -- serving ------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                self._attach_observer()
                continue
            except OSError:
                if self.closed:
                    return
                time.sleep(0.1)  # e.g. EMFILE: the program is short of fds; try again later
                continue
            with contextlib.suppress(Exception), conn:
                conn.settimeout(SEND_TIMEOUT_S)
                conn.sendall(self.line())
                self.requests += 1

    def line(self) -> bytes:
        try:
            payload = self.collect()
        except Exception as exc:  # never into the caller; the monitor shows it
            payload = _empty(protocol.ERROR, f"{type(exc).__name__}: {exc}")
        return protocol.encode(payload)

    # -- what is reported ---------------------------------------------------------------------
    def collect(self) -> dict[str, Any]:
        torch = sys.modules.get("torch")
        if torch is None:
            if self.torch_installed is None:
                self.torch_installed = importlib.util.find_spec("torch") is not None
            state = protocol.CUDA_NOT_INITIALIZED if self.torch_installed else protocol.NO_TORCH
            return _empty(state)
        version = getattr(torch, "__version__", None)
        cuda: Any = getattr(torch, "cuda", None)
        try:
            initialized = bool(cuda is not None and cuda.is_initialized())
        except Exception:  # torch half-imported by the main thread right now
            initialized = False
        if not initialized:
            return _empty(protocol.CUDA_NOT_INITIALIZED, version=version)
        self._attach_observer()
        devices = []
        for index in range(int(cuda.device_count())):
            stats = cuda.memory_stats(index)
            if not _used(stats):
                continue  # never touched by the allocator: asking more could create a context
            devices.append(_device(cuda, index, stats))
        payload = _empty(protocol.OK, version=version)
        payload["devices"] = devices[: protocol.MAX_DEVICES]
        with self.ooms_lock:
            payload["ooms"] = list(self.ooms)
        return payload

    def _attach_observer(self) -> None:
        """Register the OOM observer once CUDA is initialised (the allocator keeps observers per
        device, so one attached earlier would be dropped). A private API: guarded throughout."""
        if self.observer_attached:
            return
        torch = sys.modules.get("torch")
        if torch is None:
            return
        try:
            if not torch.cuda.is_initialized():
                return
            attach = getattr(torch._C, "_cuda_attach_out_of_memory_observer", None)
            self.observer_attached = True  # one try: a failing private API is not retried
            if attach is not None:
                attach(self._on_oom)
        except Exception:
            self.observer_attached = True

    def _on_oom(self, *args: Any) -> None:
        """Called by the allocator in the failing thread: record, nothing else, never raise."""
        try:
            device, requested = int(args[0]), int(args[1])
            total = int(args[2]) if len(args) > 2 else None
            free = int(args[3]) if len(args) > 3 else None
            event = {
                "at": time.time(),
                "device": device,
                "requested_bytes": max(0, requested),
                "free_bytes": None if free is None else max(0, free),
                "total_bytes": None if total is None else max(0, total),
            }
            with self.ooms_lock:
                self.ooms.append(event)
        except Exception:
            pass

    # -- lifetime ------------------------------------------------------------------------------
    def close(self, unlink: bool = True) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
        if unlink and os.getpid() == self.pid:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self.inode:
                    os.unlink(self.path)


def _empty(state: str, error: str = "", version: object = None) -> dict[str, Any]:
    return {
        "v": protocol.VERSION,
        "state": state,
        "error": error[:200],
        "torch_version": version if isinstance(version, str) else None,
        "sent_at": time.time(),
        "devices": [],
        "ooms": [],
    }


def _stat(stats: Any, key: str) -> int:
    value = stats.get(key, 0)
    return int(value) if isinstance(value, (int, float)) and value >= 0 else 0


def _used(stats: Any) -> bool:
    return any(
        _stat(stats, k) > 0
        for k in ("reserved_bytes.all.peak", "allocation.all.peak", "num_device_alloc")
    )


def _device(cuda: Any, index: int, stats: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "gpu_uuid": _uuid(cuda, index),
        "allocated_bytes": _stat(stats, "allocated_bytes.all.current"),
        "allocated_peak_bytes": _stat(stats, "allocated_bytes.all.peak"),
        "reserved_bytes": _stat(stats, "reserved_bytes.all.current"),
        "reserved_peak_bytes": _stat(stats, "reserved_bytes.all.peak"),
        "active_bytes": _stat(stats, "active_bytes.all.current"),
        "inactive_split_bytes": _stat(stats, "inactive_split_bytes.all.current"),
        "allocations": _stat(stats, "allocation.all.current"),
        "segments": _stat(stats, "segment.all.current"),
        "num_alloc_retries": _stat(stats, "num_alloc_retries"),
        "num_ooms": _stat(stats, "num_ooms"),
        # Counted by newer PyTorch only: null, not 0, where the key is missing.
        "num_device_alloc": _stat(stats, "num_device_alloc")
        if "num_device_alloc" in stats
        else None,
        "num_device_free": _stat(stats, "num_device_free") if "num_device_free" in stats else None,
        "device_free_bytes": None,
        "device_total_bytes": None,
    }
    with contextlib.suppress(Exception):
        free, total = cuda.mem_get_info(index)
        out["device_free_bytes"], out["device_total_bytes"] = int(free), int(total)
    return out


def _uuid(cuda: Any, index: int) -> str:
    """NVML's spelling (``GPU-<uuid>``) of the device's UUID, "" when torch cannot tell."""
    try:
        raw = str(getattr(cuda.get_device_properties(index), "uuid", "") or "")
    except Exception:
        return ""
    raw = raw.strip()
    if not raw:
        return ""
    return raw if raw.upper().startswith(("GPU-", "MIG-")) else f"GPU-{raw}"


def _on_term(signo: int, _frame: object) -> None:
    _stop()
    # Die of the signal as the program would have without us (exit status 128+15).
    signal.signal(signo, signal.SIG_DFL)
    os.kill(os.getpid(), signo)


def _stop() -> None:
    # No lock: this also runs in a signal handler, which may interrupt report() holding it.
    global _reporter
    reporter, _reporter = _reporter, None
    if reporter is not None:
        reporter.close()


def _after_fork_in_child() -> None:
    global _reporter, _lock
    _lock = threading.Lock()  # the parent's lock may have been held by another thread
    if _reporter is not None:
        _reporter.close(unlink=False)  # the file is the parent's
        _reporter = None


def report() -> str | None:
    """Start reporting this process's PyTorch allocator figures to vramtop monitors.

    Idempotent and safe anywhere: returns the socket path, or None (with one line on stderr)
    when deep mode cannot start here. Never raises, never imports torch, never initialises CUDA.
    """
    global _reporter, _fork_hook
    try:
        with _lock:
            if _reporter is not None and _reporter.pid == os.getpid():
                return _reporter.path
            try:
                directory = paths.ensure_dir()
                reporter = _Reporter(directory)
            except (paths.UnsafeDirectory, OSError) as exc:
                print(f"vramtop: deep mode off: {exc}", file=sys.stderr)
                return None
            reporter.thread.start()
            _reporter = reporter
            if not _fork_hook:
                os.register_at_fork(after_in_child=_after_fork_in_child)
                atexit.register(_stop)
                _fork_hook = True
        with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread
            keep = os.environ.get("VRAMTOP_REPORT_SIGTERM", "1") != "0"
            if keep and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_term)
        return reporter.path
    except Exception as exc:
        with contextlib.suppress(Exception):
            print(f"vramtop: deep mode off: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def serving() -> _Reporter | None:
    """The running reporter of this process (``scripts/bench.py``, diagnostics)."""
    return _reporter
