"""A crash loop through the whole program, in a real terminal: a leaking job is OOM-killed and
restarted with the same command line; before its second crash the screen says OOM risk, the
table counts the restart and the detail panel says how the first run ended."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui import Tui

SCENARIO = """
name = "crashloop-test"
speed = 3.0
seed = 5

[[gpu]]
name = "NVIDIA GeForce RTX 4090"
memory_mib = 24564

[[process]]
name = "train"
gpu = 0
argv = ["python", "train.py", "--config", "big.yaml"]
restarts = 2
restart_delay_s = 3.0
memory = { curve = "linear", base_mib = 4000, rate_mib_s = 400, noise_mib = 20 }

[[process]]
name = "steady"
gpu = 0
argv = ["python", "serve.py"]
memory = { curve = "constant", mib = 2000 }
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".config").mkdir()
    return tmp_path


def _train_row(screen: str) -> str:
    rows = [line for line in screen.splitlines() if "python train.py" in line]
    return rows[0] if rows else ""


def test_a_restarted_leaker_is_warned_with_its_lineage_before_it_crashes_again(
    home: Path,
) -> None:
    scenario = home / "crashloop.toml"
    scenario.write_text(SCENARIO)
    tui = Tui(["--demo", str(scenario), "--refresh-rate", "0.5"], home=home)
    try:
        first = _train_row(tui.wait_for("python train.py", timeout=20))
        first_pid = first.split()[1]
        tui.send("/")
        for ch in "train.py":
            tui.send(ch)
        tui.send("\r")
        # The first run fills the card (about 16 s at this speed) and is OOM-killed; its
        # restart is a new PID with the same command line, linked to it: RESTARTS 1x.
        second = _train_row(tui.wait_for(lambda s: " 1x " in _train_row(s), timeout=45))
        assert second.split()[1] != first_pid
        warned = tui.wait_for(lambda s: "OOM risk" in _train_row(s), timeout=20)
        assert " 1x " in _train_row(warned), "warned about the restarted run, not another"
        tui.send("d")
        detail = tui.wait_for("restarted once", timeout=5)
        # Both on screen at once: still the second run (a third would say "twice").
        assert "likely OOM" in detail and "OOM risk" in detail
        assert "died at" in detail or "GPU full in" in detail
    finally:
        tui.close()
