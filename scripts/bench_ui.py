#!/usr/bin/env python3
"""What the terminal UI costs, measured in a real pseudo-terminal on ``vramtop --demo``.

Where it sits: outside the data flow, beside ``scripts/bench.py`` (which calls :func:`ui_rows`).
Three figures, each from one run of the whole program at 160x45:

* bytes written to the terminal per idle second (the diff writer's job: the clock, the samples);
* time from spawn to the first frame that shows a GPU;
* key-to-redraw latency: Down / Up alternately (100 presses, 20 with ``quick``), each timed from
  the write to the first byte of the redraw; median and p95.

The machine is noisy: compare within one run, never assert absolute times.

Usage: ``.venv/bin/python scripts/bench_ui.py [--quick]``
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect

COLS, ROWS = 160, 45
CURSOR_QUERY, CURSOR_REPLY = b"\x1b[6n", b"\x1b[1;1R"


def _spawn(home: Path) -> pexpect.spawn:
    """The demo at 160x45; ``delaybeforesend`` off, or every key would wait 50 ms in pexpect."""
    env = dict(os.environ)
    env.update({"TERM": "xterm-256color", "HOME": str(home), "XDG_CONFIG_HOME": str(home / "c")})
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(
        sys.executable, ["-m", "vramtop", "--demo", "--refresh-rate", "1"],
        env=env, dimensions=(ROWS, COLS), timeout=10,
    )  # fmt: skip
    child.delaybeforesend = None
    return child


def _read(child: pexpect.spawn, timeout: float) -> bytes:
    try:
        data: bytes = child.read_nonblocking(65536, timeout=timeout)
    except pexpect.TIMEOUT:
        return b""
    if CURSOR_QUERY in data:
        child.send(CURSOR_REPLY)
    return data


def _drain(child: pexpect.spawn, seconds: float) -> int:
    total, deadline = 0, time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        total += len(_read(child, left))
    return total


def ui_rows(quick: bool) -> list[dict[str, object]]:
    """One row per figure: {"metric": name, "value": number, "unit": unit}."""
    presses = 20 if quick else 100
    idle_s = 3.0 if quick else 10.0
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        t0 = time.monotonic()
        child = _spawn(home)
        seen = b""
        first = float("nan")
        while time.monotonic() - t0 < 20:
            seen += _read(child, 0.05)
            if b"NVIDIA" in seen:
                first = time.monotonic() - t0
                break
        _drain(child, 2.0)  # let start-up settle (first samples, sparklines)
        idle = _drain(child, idle_s) / idle_s
        lat = []
        for i in range(presses):
            _drain(child, 0.02)
            sent = time.monotonic()
            child.send("\x1b[B" if i % 2 == 0 else "\x1b[A")
            while time.monotonic() - sent < 2.0:
                if _read(child, 0.5):
                    lat.append((time.monotonic() - sent) * 1000)
                    break
        child.send("q")
        child.expect(pexpect.EOF, timeout=10)
        child.close()
    p95 = statistics.quantiles(lat, n=20)[-1] if len(lat) >= 2 else float("nan")
    return [
        {"metric": "terminal bytes per idle second", "value": round(idle), "unit": "B/s"},
        {"metric": "start to first frame", "value": round(first * 1000), "unit": "ms"},
        {
            "metric": "key-to-redraw median",
            "value": round(statistics.median(lat), 1) if lat else float("nan"),
            "unit": "ms",
        },
        {"metric": "key-to-redraw p95", "value": round(p95, 1), "unit": "ms"},
        {"metric": "keys answered", "value": len(lat), "unit": f"of {presses}"},
    ]


if __name__ == "__main__":
    for row in ui_rows("--quick" in sys.argv[1:]):
        print(f"{row['metric']:<32} {row['value']:>10} {row['unit']}")
