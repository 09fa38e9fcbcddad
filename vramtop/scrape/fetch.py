"""The guarded HTTP GET every scraper goes through: loopback only, no redirects, one deadline for
the whole request, a byte cap.

Where it sits: ``scrape/core.py`` picks a target (host, port, path) from the listening sockets of a
server tree (``scrape/discovery.py``) and calls :func:`fetch`; the body goes to the parsers in
``scrape/parsers.py``. Nothing else in vramtop opens a socket to an inference server.

The guards, each one a rule of the security model (design.md):

* the host must be ``127.0.0.1`` or ``::1`` (anything else is refused before a socket exists);
* one fresh urllib3 connection per request, no proxy, no retries; a 3xx answer is reported, never
  followed (a redirect could point anywhere);
* ``timeout_s`` bounds the whole request, not each read: a timer shuts the socket down when the
  time is up, so a server that trickles one byte a second is cut off on time;
* at most :data:`MAX_BODY` bytes are read; a longer body (whatever its ``Content-Length``
  says) drops the connection at once; its first complete lines are kept, marked ``truncated``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass

import urllib3
from urllib3.connection import HTTPConnection

from vramtop.sanitize import clean
from vramtop.scrape.model import url_of

MAX_BODY = 64 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})
_CHUNK = 8192
_HEADERS = {
    "Accept": "text/plain, application/json",
    "Accept-Encoding": "identity",
    "Connection": "close",
    "User-Agent": "vramtop",
}
# urllib3 2 reads the whole body inside getresponse() unless told not to; 1.26 (which requests
# still allows) never does and takes no such argument.
_URLLIB3_1 = str(getattr(urllib3, "__version__", "2")).startswith("1.")


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one GET gave. ``error`` is one sanitised line ("" = a complete answer)."""

    url: str
    status: int  # HTTP status, 0 when none was received
    body: bytes
    content_type: str = ""
    error: str = ""
    elapsed_s: float = 0.0
    # The body went past the cap: ``body`` holds its first complete lines within the cap (a
    # line-oriented format such as Prometheus text can still be read from them), ``error`` says
    # the connection was dropped.
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.error and self.status == 200


class _Deadline:
    """Shuts a socket down when the whole-request budget is spent (from a timer thread: a blocked
    recv returns at once, whatever the server does)."""

    def __init__(self) -> None:
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def arm(self, sock: socket.socket | None, seconds: float) -> None:
        with self._lock:
            self._sock = sock
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._sock = None


def fetch(
    host: str, port: int, path: str, timeout_s: float, max_bytes: int = MAX_BODY
) -> FetchResult:
    """GET ``http://host:port/path`` under the guards above; never raises for network trouble."""
    url = url_of(host, port, path)
    if host not in LOOPBACK_HOSTS:
        return FetchResult(url, 0, b"", error=f"refused: {clean(host, 60)} is not loopback")
    if not (0 < port < 65536) or not path.startswith("/"):
        return FetchResult(url, 0, b"", error="refused: bad port or path")
    started = time.monotonic()
    budget_ms = round(timeout_s * 1000)

    def done(
        status: int, body: bytes, ctype: str = "", error: str = "", cut: bool = False
    ) -> FetchResult:
        return FetchResult(url, status, body, ctype, error, time.monotonic() - started, cut)

    conn = HTTPConnection(host, port, timeout=max(timeout_s, 0.001))
    deadline = _Deadline()
    status = 0
    ctype = ""
    chunks: list[bytes] = []
    got = 0
    try:
        conn.connect()
        # The connect had its own timeout; what is left of the budget covers the rest.
        deadline.arm(conn.sock, timeout_s - (time.monotonic() - started))
        if _URLLIB3_1:
            conn.request("GET", path, headers=_HEADERS)
        else:
            conn.request("GET", path, headers=_HEADERS, preload_content=False, decode_content=False)
        resp = conn.getresponse()
        status = int(resp.status)
        ctype = clean(str(resp.headers.get("Content-Type", "")), 80)
        if 300 <= status < 400:
            where = clean(str(resp.headers.get("Location", "")), 80)
            return done(status, b"", ctype, f"redirect refused ({status} to {where or '?'})")
        while True:
            chunk = resp.read(min(_CHUNK, max_bytes + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            if got > max_bytes:
                head = b"".join(chunks)[:max_bytes]
                head = head[: head.rfind(b"\n") + 1]
                note = f"body over {max_bytes // 1024} KiB: connection dropped"
                return done(status, head, ctype, note, cut=status == 200)
            if deadline.fired:
                break
        if deadline.fired:
            return done(status, b"", ctype, f"timed out after {budget_ms} ms")
        return done(status, b"".join(chunks), ctype)
    except (OSError, urllib3.exceptions.HTTPError, ValueError) as exc:
        # Every failure of a hostile or broken server ends here; the budget is what most of
        # them run into.
        if deadline.fired or isinstance(exc, (TimeoutError, socket.timeout)):
            return done(status, b"", ctype, f"timed out after {budget_ms} ms")
        if _caused_by(exc, ConnectionRefusedError):
            return done(0, b"", "", "connection refused")
        return done(status, b"", ctype, clean(f"{type(exc).__name__}: {exc}", 120))
    finally:
        deadline.cancel()
        with contextlib.suppress(Exception):
            conn.close()


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
