"""The guarded fetch against real HTTP servers on loopback, hostile ones included: each is
refused or cut off within the limits, with a one-line reason, and nothing raises.

Times: the budget is what is asserted against, with generous margins (the machine is shared);
a server that trickles one byte every 0.2 s would need about 3 minutes for its body.
"""

from __future__ import annotations

import socket
import time

import pytest
from scrape_helpers import VLLM_NEW, thread_server

from vramtop.scrape.fetch import MAX_BODY, fetch


def test_a_plain_answer() -> None:
    with thread_server({"/metrics": ("ok", 200, "text/plain", VLLM_NEW)}) as srv:
        r = fetch("127.0.0.1", srv.port, "/metrics", 2.0)
    assert r.ok and r.body.decode() == VLLM_NEW
    assert r.url == f"http://127.0.0.1:{srv.port}/metrics"


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv_cm = thread_server({"/metrics": ("ok", 200, "text/plain", "x 1\n")}, host="::1")
        srv = srv_cm.__enter__()
    except OSError:
        pytest.skip("::1 not configured")
    try:
        r = fetch("::1", srv.port, "/metrics", 2.0)
    finally:
        srv_cm.__exit__(None, None, None)
    assert r.ok and r.url == f"http://[::1]:{srv.port}/metrics"


@pytest.mark.parametrize("host", ["10.0.0.1", "localhost", "127.0.0.2", "example.com", "0.0.0.0"])
def test_only_loopback_addresses_are_contacted(host: str) -> None:
    r = fetch(host, 8000, "/metrics", 0.5)
    assert r.status == 0 and r.error.startswith("refused:")
    assert r.elapsed_s < 0.1  # refused before any socket: no waiting on a connect


def test_a_redirect_is_reported_not_followed() -> None:
    with thread_server({"/metrics": ("redirect", "http://example.com/steal")}) as srv:
        r = fetch("127.0.0.1", srv.port, "/metrics", 2.0)
        assert srv.requests == ["/metrics"]  # nothing else was asked, of anyone
    assert not r.ok and r.status == 302
    assert r.error == "redirect refused (302 to http://example.com/steal)"


def test_a_10_mb_body_is_cut_off_after_64_kib() -> None:
    with thread_server({"/metrics": ("endless",)}) as srv:
        r = fetch("127.0.0.1", srv.port, "/metrics", 5.0)
    assert not r.ok and r.truncated
    assert r.body == b""  # not one complete line in the first 64 KiB
    assert r.error == f"body over {MAX_BODY // 1024} KiB: connection dropped"


def test_a_big_page_keeps_its_first_complete_lines_only() -> None:
    lines = "".join(f'vllm:bucket{{le="{i}"}} {i}\n' for i in range(8000))  # ~190 KB
    assert len(lines) > 2 * MAX_BODY
    with thread_server({"/metrics": ("ok", 200, "text/plain", lines)}) as srv:
        r = fetch("127.0.0.1", srv.port, "/metrics", 2.0)
    assert r.truncated and r.error == "body over 64 KiB: connection dropped"
    assert 0 < len(r.body) <= MAX_BODY and r.body.endswith(b"\n")
    assert lines.encode().startswith(r.body)


def test_a_trickling_server_is_cut_off_at_the_whole_request_budget() -> None:
    with thread_server({"/metrics": ("trickle", 0.2)}) as srv:
        started = time.monotonic()
        r = fetch("127.0.0.1", srv.port, "/metrics", 0.6)
        took = time.monotonic() - started
    assert r.error == "timed out after 600 ms" and r.body == b""
    # Per-read timeouts would let it run for minutes; the budget holds (slack for a busy box).
    assert took < 3.0


def test_a_server_that_never_answers_is_cut_off() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts (in the kernel backlog), never reads or writes
    try:
        r = fetch("127.0.0.1", listener.getsockname()[1], "/metrics", 0.3)
    finally:
        listener.close()
    assert r.error == "timed out after 300 ms"


def test_nothing_listening() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = fetch("127.0.0.1", port, "/metrics", 0.5)
    assert r.error == "connection refused"


def test_http_errors_are_not_ok() -> None:
    with thread_server({}) as srv:
        r = fetch("127.0.0.1", srv.port, "/metrics", 2.0)
    assert r.status == 404 and not r.ok and r.error == ""
