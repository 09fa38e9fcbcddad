#!/usr/bin/env python3
"""Make ``docs/timeline.svg``: the demo of ``docs/screenshot.toml`` at 160x45, screenshotted with
``s`` once the OOM prediction is live and the history fills half the chart.

Where it sits: outside the data flow, like the benchmarks: it runs the whole program in a real
pseudo-terminal (``tests/tui.py``) and keeps the SVG the program itself wrote, so the picture in
the README is exactly what the terminal showed. Takes about 75 s.

Usage: ``.venv/bin/python scripts/docs_screenshot.py [OUT.svg]``
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tui import Tui  # noqa: E402

SCENARIO = ROOT / "docs" / "screenshot.toml"
WAIT_S = 70.0  # history on half the chart, the leak ~35 s from the ceiling


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "docs" / "timeline.svg"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / ".config").mkdir()
        env = {"XDG_DATA_HOME": str(home / "data"), "COLORTERM": "truecolor"}
        tui = Tui(["--demo", str(SCENARIO), "--refresh-rate", "0.5"], cols=160, rows=45,
                  home=home, env=env)  # fmt: skip
        try:
            tui.wait_for("NVIDIA", timeout=30)
            started = time.monotonic()
            while time.monotonic() - started < WAIT_S:
                tui.pump(0.5)
            tui.wait_for(lambda s: "OOM ~" in s and "✕" in s, timeout=30)
            tui.send("s")
            tui.wait_for("screenshot saved:", timeout=10)
            shots = sorted((home / "data" / "vramtop" / "screenshots").glob("*.svg"))
            shutil.copyfile(shots[-1], out)
            tui.send("q")
            tui.wait_exit()
        finally:
            tui.close()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
