"""The scraper's figures on screen: the KV column (only while a server is reported), the detail
panel's server lines, and the notes that say why a server was not read."""

from __future__ import annotations

import time

from test_render import GiB, ui_with

from vramtop.messages import ProcessIdentity, ScrapeMessage
from vramtop.scrape.model import ServerMetrics


def _server(*pids: int, **kw: object) -> ServerMetrics:
    figures: dict[str, object] = dict(
        kind="vLLM",
        url="http://127.0.0.1:8000/metrics",
        processes=tuple(ProcessIdentity(p, 1000.0 + p - 100) for p in pids),
        server_pid=4242,
        model="meta-llama/Llama-3.1-8B-Instruct",
        kv_cache_usage=0.97,
        running=31,
        waiting=12,
        preemptions_per_s=0.25,
        tokens_total=32768,
        read_at=time.time() - 3,
    )
    figures.update(kw)
    return ServerMetrics(**figures)  # type: ignore[arg-type]


def _row(screen: str, needle: str) -> str:
    return next(ln for ln in screen.splitlines() if needle in ln)


def test_kv_column_appears_with_a_server_and_shows_the_queue() -> None:
    ui = ui_with([70 * GiB, 70 * GiB, GiB])
    before = "\n".join(ui.draw(160, 45).text())
    assert " KV " not in _row(before, "PID")
    ui.handle(ScrapeMessage((_server(100, 101), _server(102, kv_cache_usage=0.2, waiting=0))))
    screen = "\n".join(ui.draw(160, 45).text())
    header = _row(screen, "PID")
    assert "KV" in header.split()
    # Both TP ranks of one server show its figure; the other server its own.
    assert "97% q12" in _row(screen, "job0.py") and "97% q12" in _row(screen, "job1.py")
    assert (
        "20%" in _row(screen, "job2.py") and "q" not in _row(screen, "job2.py").split("20%")[1][:3]
    )


def test_kv_column_is_dropped_before_the_verdict_on_narrow_terminals() -> None:
    ui = ui_with([GiB])
    ui.handle(ScrapeMessage((_server(100),)))
    assert "KV" in _row("\n".join(ui.draw(160, 45).text()), "PID").split()
    narrow = _row("\n".join(ui.draw(90, 30).text()), "PID").split()
    assert "KV" not in narrow and "VERDICT" in narrow


def test_detail_panel_lists_the_servers_figures() -> None:
    ui = ui_with([70 * GiB, 70 * GiB])
    ui.handle(ScrapeMessage((_server(100, 101),)))
    ui.key("d")
    detail = "\n".join(ui.draw(160, 50).text())
    for text in (
        "vLLM   model meta-llama/Llama-3.1-8B-Instruct",
        "97% used of 32,768 tokens",
        "the server's figure, for its 2 GPU processes",
        "31 running, 12 waiting",
        "0.25/s",
        "http://127.0.0.1:8000/metrics",
        "(PID 4242)",
    ):
        assert text in detail, text
    assert "none found" not in detail


def test_detail_panel_says_why_a_server_was_not_read() -> None:
    ui = ui_with([GiB])
    note = "/metrics: redirect refused (302 to http://example.com/)"
    ui.handle(ScrapeMessage((_server(100, kv_cache_usage=None, waiting=None, read_at=0.0,
                                     note=note),)))  # fmt: skip
    ui.key("d")
    detail = "\n".join(ui.draw(160, 50).text())
    assert note in detail and "no figures" in detail
    ui.handle(ScrapeMessage((_server(100, url="", note="no listening socket on an allowed port"),)))
    detail = "\n".join(ui.draw(160, 50).text())
    assert "not read: no listening socket on an allowed port" in detail


def test_a_newer_scrape_replaces_the_older() -> None:
    ui = ui_with([GiB])
    ui.handle(ScrapeMessage((_server(100),)))
    ui.handle(ScrapeMessage(()))
    assert "KV" not in _row("\n".join(ui.draw(160, 45).text()), "PID").split()
