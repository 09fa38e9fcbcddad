"""``vramtop --once`` as text, the form people paste into chats and tickets: fixed columns
whatever the GPU names, no trailing spaces, commands cut to a terminal's width (whole when
piped), colour on a terminal unless NO_COLOR, and a dash for what the driver does not give."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tui import Tui

VRAMTOP = [sys.executable, "-m", "vramtop"]
LONG_ARG = "--output-dir /very/long/path/to/a/checkpoint/directory/that/goes/on/and/on"

SCENARIO = f"""
name = "names"
description = "GPU names of every length"
seed = 3

[[gpu]]
name = "NVIDIA A10"
memory_mib = 23028

[[gpu]]
name = "NVIDIA GeForce RTX 3060 Laptop GPU"
memory_mib = 6144
na = ["power"]

[[gpu]]
name = "NVIDIA H100 80GB HBM3"
memory_gib = 80
lost_at = 0

[[process]]
name = "train"
gpu = 0
argv = ["python", "train.py", {", ".join(f'"{a}"' for a in LONG_ARG.split())}]
memory = {{ curve = "constant", mib = 9000 }}

[[process]]
name = "small"
gpu = 1
argv = ["python", "infer.py"]
memory = {{ curve = "constant", mib = 2000 }}
"""

GPU_LINE = re.compile(r"^\[\d\] ")
COLUMNS = (" / ", "reserved", "util", "°C", " W")


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "names.toml"
    path.write_text(SCENARIO)
    return path


def _piped(tmp_path: Path) -> str:
    out = subprocess.run(
        [*VRAMTOP, "--demo", str(_scenario(tmp_path)), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_every_gpu_row_has_its_columns_at_the_same_place(tmp_path: Path) -> None:
    lines = _piped(tmp_path).splitlines()
    gpus = [ln for ln in lines if GPU_LINE.match(ln) and "LOST" not in ln]
    assert len(gpus) == 2, lines
    for column in COLUMNS:
        starts = {ln.index(column) for ln in gpus}
        assert len(starts) == 1, (column, gpus)
    # Names are padded to the longest ("[1] NVIDIA GeForce RTX 3060 Laptop GPU" and two
    # spaces): the figures, and a lost GPU's status, start at column 40 on every line.
    lost = next(ln for ln in lines if "LOST" in ln)
    assert lost.index("LOST") == 40
    assert all(ln[38:40] == "  " and ln[40:46].strip().endswith("G") for ln in gpus), gpus


def test_process_rows_share_their_columns_and_no_line_ends_in_spaces(tmp_path: Path) -> None:
    text = _piped(tmp_path)
    lines = text.splitlines()
    assert all(ln == ln.rstrip() for ln in lines), [ln for ln in lines if ln != ln.rstrip()]
    procs = [ln for ln in lines if re.match(r"^ +\d+  ", ln)]
    header = next(ln for ln in lines if ln.strip().startswith("PID"))
    assert len(procs) == 2
    for ln in procs:
        assert ln.index("python") == header.index("COMMAND"), (header, ln)
    assert LONG_ARG in text, "piped: the command is whole"
    assert "\x1b[" not in text, "piped: no escape codes"


def test_what_the_driver_does_not_give_is_a_dash_and_a_lost_gpu_is_named(tmp_path: Path) -> None:
    lines = _piped(tmp_path).splitlines()
    laptop = next(ln for ln in lines if "3060 Laptop" in ln)
    assert laptop.endswith("  — / 300 W") and "N/A" not in laptop, laptop
    a10 = next(ln for ln in lines if "A10 " in ln)
    assert re.search(r"\d+ / \d+ W$", a10), a10
    lost = next(ln for ln in lines if "LOST" in ln)
    assert lost.startswith("[2] NVIDIA H100") and "retrying" not in lost, lost


def test_on_a_terminal_commands_fit_its_width_and_figures_are_coloured(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    for env, coloured in (({}, True), ({"NO_COLOR": "1"}, False)):
        tui = Tui(["--demo", str(scenario), "--once"], cols=90, rows=40, home=tmp_path, env=env)
        try:
            assert tui.wait_exit() == 0
            raw = bytes(tui.raw).decode("utf-8", "replace")
            screen = tui.text()
        finally:
            tui.close()
        assert ("\x1b[" in raw) is coloured, raw[:300]
        row = next(ln for ln in screen.splitlines() if "python train.py" in ln)
        assert row.rstrip().endswith("…") and len(row.rstrip()) <= 90, row
        assert LONG_ARG not in screen
