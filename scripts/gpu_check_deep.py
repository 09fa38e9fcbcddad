#!/usr/bin/env python3
"""Deep mode on a real GPU, run by ``scripts/gpu_check.sh`` when torch sees CUDA: the reporter's
figures against ``torch.cuda.memory_stats()`` read in the same process, a real OOM caught by the
observer, one report's cost, and the monitor's reader on the socket (SO_PEERCRED: our own PID).
Exit 0 when every figure matches."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import vramtop
from vramtop.deep import protocol, reader
from vramtop.deep.reporter import serving

FIGURES = (
    ("allocated_bytes", "allocated_bytes.all.current"),
    ("reserved_bytes", "reserved_bytes.all.current"),
    ("active_bytes", "active_bytes.all.current"),
    ("segments", "segment.all.current"),
    ("num_alloc_retries", "num_alloc_retries"),
)


def main() -> int:
    path = vramtop.report()
    r = serving()
    assert r is not None, "report() started no reporter"
    print("socket", path)
    print("before CUDA:", protocol.decode(r.line()).state)
    keep = torch.empty(512 << 20, dtype=torch.uint8, device="cuda:0")
    freed = torch.empty(64 << 20, dtype=torch.uint8, device="cuda:0")
    del freed
    report = protocol.decode(r.line())
    stats = torch.cuda.memory_stats(0)
    d = report.devices[0]
    ok = True
    for name, key in FIGURES:
        same = getattr(d, name) == stats.get(key, 0)
        ok &= same
        verdict = "same" if same else "DIFFERENT"
        print(f"{name:20} reported {getattr(d, name):>14}  memory_stats {stats.get(key, 0):>14}  "
              f"{verdict}")  # fmt: skip
    print("uuid reported", d.gpu_uuid, " torch", torch.cuda.get_device_properties(0).uuid)
    free, total = torch.cuda.mem_get_info(0)
    print("mem_get_info", (free, total), "reported", d.device_free_bytes, d.device_total_bytes)
    with contextlib.suppress(torch.cuda.OutOfMemoryError):
        torch.empty(1 << 50, dtype=torch.uint8, device="cuda:0")
    report = protocol.decode(r.line())
    print("OOM moments:", report.ooms, " num_ooms", report.devices[0].num_ooms)
    n = 200
    started = time.perf_counter()
    for _ in range(n):
        r.line()
    per = (time.perf_counter() - started) / n * 1e3
    print(f"one report (memory_stats + mem_get_info + JSON): {per:.3f} ms")
    poll = reader.PollRound([(path, os.getpid())], time.monotonic(), 2.0)
    while not poll.finished:
        poll.step(0.05)
    print("monitor reader:", [(o.pid, o.problem or o.report.state) for o in poll.outcomes])
    print("deep figures match memory_stats:", ok)
    del keep
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
