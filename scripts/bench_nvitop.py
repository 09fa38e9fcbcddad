#!/usr/bin/env python3
"""vramtop beside nvitop, both on the same simulated libnvidia-ml.so.1, in one invocation.

Where it sits: outside the data flow, beside ``scripts/bench.py`` (``--nvitop`` calls
:func:`peer_rows`). Both monitors run unmodified on their NVML code paths against
``tests/simdriver`` (built here with the system ``cc``), showing the same GPUs and the same
real child processes (``sleep``, so /proc has something true to say about each), each in a
160x45 pseudo-terminal at a 1 s refresh. Per monitor, over an idle window after settling:

* CPU seconds per wall second of all its processes (vramtop: supervisor and actors; nvitop:
  its one process), PSS of all of them, time from spawn to the first frame with the GPU name,
  bytes written to the terminal per second, and NVML calls per second (the simulated driver
  counts them per process, ``VRAMTOP_SIMDRIVER_STATS``).

Printed as vramtop / nvitop ratios: on a noisy, shared machine a ratio within one run is the
only figure worth comparing. nvitop comes from PyPI into a throwaway venv under the temp dir
(``pip install nvitop``), reused by later runs; where it cannot be installed the comparison is
skipped with the reason, and nothing else fails.

Usage: ``.venv/bin/python scripts/bench_nvitop.py [--quick] [--cases 8x1024,16x4096]``
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

import pexpect  # noqa: E402
import psutil  # noqa: E402
import pyte  # noqa: E402
from simdriver.build import STATS_ENV, build, env, write_scenario  # noqa: E402

GPU_NAME = "H100 80GB HBM3"  # nvitop drops the "NVIDIA " prefix
COLS, ROWS = 160, 45
VENV = Path(tempfile.gettempdir()) / f"vramtop-bench-nvitop-{os.geteuid()}"
FULL_CASES = ((1, 16), (8, 256), (8, 1024))
QUICK_CASES = ((1, 16),)


def parse_cases(text: str) -> list[tuple[int, int]]:
    """ "8x1024,1x16" -> [(8, 1024), (1, 16)] (at most 16 GPUs and 4096 processes: the
    simulated driver's limits)."""
    out = []
    for item in text.split(","):
        gpus, _, procs = item.strip().partition("x")
        try:
            case = (int(gpus), int(procs))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not GPUSxPROCESSES") from None
        if not (1 <= case[0] <= 16 and 1 <= case[1] <= 4096):
            raise argparse.ArgumentTypeError(f"{item!r}: 1-16 GPUs and 1-4096 processes")
        out.append(case)
    return out


class Unavailable(Exception):
    """nvitop cannot be had here; the comparison is skipped, with this reason."""


def nvitop_command() -> list[str]:
    """The nvitop entry point in the throwaway venv, installed there on first use."""
    exe = VENV / "bin" / "nvitop"
    if exe.exists():
        return [str(exe)]
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=120
        )
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", "nvitop"],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        lines = str(detail).strip().splitlines()
        raise Unavailable(f"pip install nvitop failed: {lines[-1] if lines else exc}") from None
    if not exe.exists():
        raise Unavailable("pip installed nvitop without an nvitop command")
    return [str(exe)]


@contextlib.contextmanager
def sleepers(count: int) -> Iterator[list[int]]:
    """``count`` real processes for the simulated GPUs to list."""
    procs = [
        subprocess.Popen(
            ["sleep", "900"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def scenario(gpus: int, pids: Sequence[int]) -> str:
    lines = [f"gpus {gpus}"]
    for g in range(gpus):
        lines += [
            f"gpu {g} name NVIDIA {GPU_NAME}",
            f"gpu {g} memory 80G 512M",
            f"gpu {g} util 35 12",
        ]
    for i, pid in enumerate(pids):
        busy = " sm=20 mem=5" if i % 2 == 0 else ""  # half busy, half idle
        lines.append(f"proc {i % gpus} {pid} compute {64 + (i * 37) % 900}M{busy}")
    return "\n".join(lines) + "\n"


def _read(child: Any, seconds: float) -> bytes:
    from bench import _read as read

    data: bytes = read(child, seconds)
    return data


def _calls(stats: Path, pids: set[int]) -> int:
    """NVML calls so far by the given processes, from the driver's per-process counters."""
    total = 0
    for path in stats.glob("calls.*"):
        with contextlib.suppress(ValueError, OSError):
            if int(path.name.split(".")[1]) in pids:
                total += sum(int(line.split()[1]) for line in path.read_text().splitlines())
    return total


def _tree(pid: int) -> list[psutil.Process]:
    top = psutil.Process(pid)
    return [top, *top.children(recursive=True)]


def measure(
    tool: str, argv: Sequence[str], run_env: dict[str, str], settle: float, window: float
) -> dict[str, float]:
    from bench import _cpu_seconds, _pss_mib, _stop

    stats = Path(run_env[STATS_ENV])
    spawned = time.monotonic()
    child = pexpect.spawn(argv[0], list(argv[1:]), env=run_env, dimensions=(ROWS, COLS), timeout=5)
    out: dict[str, float] = {}
    known: list[psutil.Process] = []
    try:
        # A terminal emulator decides when the name is on screen: the two programs draw with
        # different cursor-movement strategies, which byte matching would judge unequally.
        screen = pyte.Screen(COLS, ROWS)
        stream = pyte.ByteStream(screen)
        while True:
            stream.feed(_read(child, 0.05))
            if any(GPU_NAME in line for line in screen.display):
                break
            if time.monotonic() - spawned > 60:
                raise RuntimeError(f"{tool}: no frame with {GPU_NAME!r} within 60 s")
        out["first frame s"] = time.monotonic() - spawned
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            _read(child, deadline - time.monotonic())
        known = _tree(child.pid)
        pids = {p.pid for p in known}
        cpu0 = sum(_cpu_seconds(p) for p in known)
        calls0 = _calls(stats, pids)
        start = time.monotonic()
        written = 0
        while (left := start + window - time.monotonic()) > 0:
            written += len(_read(child, left))
        wall = time.monotonic() - start
        out["CPU %"] = 100.0 * (sum(_cpu_seconds(p) for p in known) - cpu0) / wall
        out["PSS MiB"] = sum(_pss_mib(p) for p in known)
        out["tty B/s"] = written / wall
        # The driver rewrites its counters once a second: the rate is good to about 1/window.
        out["NVML calls/s"] = (_calls(stats, pids) - calls0) / wall
        out["processes"] = float(len(known))
    finally:
        _stop(child, known)
    return out


METRICS = ("CPU %", "PSS MiB", "first frame s", "tty B/s", "NVML calls/s", "processes")


def peer_rows(
    quick: bool, cases: Sequence[tuple[int, int]] | None = None
) -> list[dict[str, object]]:
    """One row per configuration (GPUs, processes) and metric: vramtop, nvitop, their ratio."""
    nvitop = nvitop_command()
    libdir = build("current")
    settle, window = (1.5, 4.0) if quick else (3.0, 10.0)
    rows: list[dict[str, object]] = []
    for gpus, procs in cases or (QUICK_CASES if quick else FULL_CASES):
        label = f"{gpus} GPU{'s' if gpus > 1 else ''} / {procs} procs"
        with (
            tempfile.TemporaryDirectory(prefix="vramtop-bench-peer-") as tmp,
            sleepers(procs) as pids,
        ):
            base = Path(tmp)
            path = base / "gpus.scenario"
            write_scenario(path, scenario(gpus, pids))
            figures: dict[str, dict[str, float]] = {}
            for tool, argv in (
                ("vramtop", [sys.executable, "-m", "vramtop", "--refresh-rate", "1"]),
                ("nvitop", [*nvitop, "--monitor", "full", "--interval", "1"]),
            ):
                stats = base / f"stats-{tool}"
                stats.mkdir()
                home = base / f"home-{tool}"
                (home / ".config").mkdir(parents=True)
                run_env = env(libdir, path)
                run_env.update(
                    {
                        STATS_ENV: str(stats),
                        "TERM": "xterm-256color",
                        "HOME": str(home),
                        "XDG_CONFIG_HOME": str(home / ".config"),
                        "COLUMNS": str(COLS),
                        "LINES": str(ROWS),
                    }
                )
                run_env.pop("NO_COLOR", None)
                figures[tool] = measure(tool, argv, run_env, settle, window)
        for metric in METRICS:
            ours, theirs = figures["vramtop"][metric], figures["nvitop"][metric]
            ratio = ours / theirs if theirs else math.nan
            rows.append(
                {
                    "configuration": label,
                    "metric": metric,
                    "vramtop": round(ours, 3),
                    "nvitop": round(theirs, 3),
                    "vramtop / nvitop": round(ratio, 3),
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    from bench import dict_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 GPU / 16 processes, short windows")
    parser.add_argument(
        "--cases", type=parse_cases, metavar="GxP,...", help="configurations, e.g. 8x1024,16x4096"
    )
    args = parser.parse_args(argv)
    try:
        rows = peer_rows(args.quick, args.cases)
    except Unavailable as exc:
        print(f"nvitop comparison skipped: {exc}")
        return 0
    print(dict_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
