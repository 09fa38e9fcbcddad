"""The scraper in the running program: ``vramtop --demo`` in a real pseudo-terminal, whose vLLM
engine sits under a fake ``vllm serve`` answering real HTTP on 127.0.0.1. What a user sees: the
KV column on the engine's row, a figure that moves as the cache fills, and the detail panel's
server lines; the scraper runs as its own titled process."""

from __future__ import annotations

import re
from pathlib import Path

from tui import Tui

KV = re.compile(r"\s(\d{1,3})%(?: q\d+)?\s+vLLM\s")


def _kv(screen: str) -> int | None:
    row = next((ln for ln in screen.splitlines() if "VLLM::EngineCore" in ln), "")
    m = KV.search(row)
    return int(m[1]) if m else None


def test_demo_shows_the_fake_servers_kv_cache_and_its_detail(tmp_path: Path) -> None:
    config = tmp_path / ".config" / "vramtop"
    config.mkdir(parents=True)
    # A faster rate limit than the default 5 s, so the figure moves within the test.
    (config / "config.toml").write_text("[scraping]\nrate_limit_seconds = 1.0\n")
    tui = Tui(["--demo", "--refresh-rate", "0.5"], cols=200, rows=50, home=tmp_path)
    try:
        screen = tui.wait_for(lambda s: _kv(s) is not None, timeout=40)
        header = next(ln for ln in screen.splitlines() if "COMMAND" in ln)
        assert " KV " in header
        assert "vramtop: scraper" in tui.actors()
        first = _kv(screen)
        # The fake server's cache fills over two minutes: the next whole percent comes quickly.
        tui.wait_for(lambda s: (_kv(s) or 0) > (first or 0), timeout=40)
        tui.send("/")
        tui.send("EngineCore")
        tui.send("\r")
        tui.pump(0.5)
        tui.send("d")
        detail = tui.wait_for("read from", timeout=15)
        assert "vLLM   model meta-llama/Llama-3.1-8B-Instruct" in detail
        assert re.search(r"read from\s+http://127\.0\.0\.1:\d+/metrics\s+\d+s ago", detail)
        assert re.search(r"KV cache\s+\d+% used of 432,000 tokens", detail)
        assert re.search(r"requests\s+\d+ running, \d+ waiting", detail)
    finally:
        tui.close()
