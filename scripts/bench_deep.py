#!/usr/bin/env python3
"""What deep mode costs the process that reports: CPU of ``vramtop.report()`` at 1 request/s.

Where it sits: outside the data flow, beside ``scripts/bench.py`` (which calls :func:`deep_rows`
and puts the rows in its report). Each case is a real child process running the same small
program — import the stand-in torch of ``tests/fixtures`` (CUDA "initialised", one device with
the full set of allocator statistics), optionally call ``vramtop.report()``, then wait — and this
script connects to its socket as a monitor would and reads one line per request. The child's own
CPU time (user + system, from /proc) over the window, minus that of the same program without
``report()``, is what deep mode costs it.

The stand-in's ``memory_stats()`` is cheaper than PyTorch's (which walks its allocator pools):
the figures are the reporter's own cost (thread wake-ups, socket, JSON); add PyTorch's
``memory_stats()`` as measured in ``scripts/gpu_check.sh`` on a real GPU. Compare rows with each
other; nothing is asserted.

Usage: ``.venv/bin/python scripts/bench_deep.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
FAKE_TORCH = ROOT / "tests" / "fixtures" / "fake_torch"
GiB = 1 << 30

PROGRAM = """
import os, sys
import torch
if sys.argv[1] == "report":
    import vramtop
    path = vramtop.report()
else:
    path = ""
print(path, flush=True)
sys.stdin.read()
"""


def _state(directory: Path) -> Path:
    stats = {
        f"{kind}.{pool}.{stat}": GiB
        for kind in ("allocated_bytes", "reserved_bytes", "active_bytes", "inactive_split_bytes",
                     "requested_bytes")
        for pool in ("all", "large_pool", "small_pool")
        for stat in ("current", "peak", "allocated", "freed")
    }  # fmt: skip
    stats.update(num_alloc_retries=3, num_ooms=0, num_device_alloc=120, num_device_free=80)
    path = directory / "torch.json"
    devices = [{"uuid": "bench-0000", "stats": stats, "free": 10 * GiB, "total": 80 * GiB}]
    path.write_text(json.dumps({"initialized": True, "devices": devices}))
    return path


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def measure(mode: str, rate_hz: float, window_s: float, directory: Path) -> dict[str, object]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FAKE_TORCH), str(ROOT)])
    env["FAKE_TORCH_STATE"] = str(_state(directory))
    env["FAKE_TORCH_FROZEN"] = "1"  # the stand-in reads its file once, not per call
    env["XDG_RUNTIME_DIR"] = str(directory)
    child = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, mode],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        path = child.stdout.readline().strip()
        time.sleep(0.5)  # start-up is not the steady cost
        before = _cpu(child.pid)
        start = time.monotonic()
        requests = 0
        next_at = start
        while time.monotonic() - start < window_s:
            if path and rate_hz > 0 and time.monotonic() >= next_at:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(2.0)
                    s.connect(path)
                    data = b""
                    while not data.endswith(b"\n"):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                requests += 1
                next_at += 1.0 / rate_hz
            time.sleep(max(0.0, min(0.05, next_at - time.monotonic())))
        wall = time.monotonic() - start
        cpu = _cpu(child.pid) - before
    finally:
        child.communicate("")
    return {"mode": mode, "requests": requests, "wall_s": wall, "cpu_s": cpu}


def deep_rows(quick: bool = False) -> list[dict[str, object]]:
    # /proc counts CPU in clock ticks (10 ms): a window of 60 requests resolves ~0.2 ms each.
    window = 2.0 if quick else 60.0
    cases = [
        ("no report() (baseline)", "plain", 0.0),
        ("report(), no monitor", "report", 0.0),
        ("report(), 1 request/s", "report", 1.0),
        ("report(), 4 requests/s (4 monitors)", "report", 4.0),
    ]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="vramtop-bench-deep-") as tmp:
        os.chmod(tmp, 0o700)
        base_rate = 0.0
        for label, mode, rate in cases:
            m = measure(mode, rate, window, Path(tmp))
            cpu_rate = float(m["cpu_s"]) / float(m["wall_s"])  # type: ignore[arg-type]
            if mode == "plain":
                base_rate = cpu_rate
            extra = max(0.0, cpu_rate - base_rate)
            requests = int(m["requests"])  # type: ignore[call-overload]
            rows.append(
                {
                    "case": label,
                    "window_s": round(float(m["wall_s"]), 1),  # type: ignore[arg-type]
                    "requests": requests,
                    "cpu_percent_of_core": round(100 * cpu_rate, 3),
                    "over_baseline_percent": round(100 * extra, 3),
                    "ms_per_request": round(1000 * extra * float(m["wall_s"]) / requests, 3)  # type: ignore[arg-type]
                    if requests
                    else "",
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s windows instead of 60 s")
    args = parser.parse_args()
    rows = deep_rows(args.quick)
    headers = list(rows[0])
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in headers) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
