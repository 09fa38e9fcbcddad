#!/usr/bin/env python3
"""What the enricher costs per sample: CPU milliseconds per ``Enricher.update`` with 1024 processes.

Where it sits: outside the data flow, beside ``scripts/bench.py`` (which calls
:func:`enricher_rows` and puts the rows in its report). It drives the enricher's functional core
in-process, so the figures are the core's alone: no mailbox, no pickling.

The 1024 processes live in a fake proc root (a temporary directory laid out like /proc), because
this machine has no 1024 GPU processes to read. Each one looks like a CUDA server or trainer: a
~3,000-line maps file with libtorch and two mapped safetensors shards, a few open files (one a
weights file), a docker cgroup, a dist-info for the version lookup. Regular files are cheaper to
read than the kernel's generated /proc files, so one more row reads *real* /proc: a full read of
a handful of this machine's live processes, per process, to scale the first-sight figure by.

Cases (clock advanced one second per update, as the sampler's default refresh):

* first sight: one update in which all 1024 processes are new (start-up, or a restart);
* steady: the same 1024 processes after their revisit schedule is over — the everyday cost;
* 10% churn: 102 processes leave and 102 new ones arrive every update (new ones are read in
  full, young ones revisited within the budget).

Compare the rows with each other; absolute times depend on the machine. Nothing is asserted.

Usage: ``.venv/bin/python scripts/bench_enricher.py [--quick]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from vramtop.enrich.enricher import Enricher
from vramtop.enrich.procfs import ProcFS
from vramtop.messages import ProcessIdentity, ProcessRow

PROCESSES = 1024
CHURN = 0.10
BTIME = 1_700_000_000
PID_BASE = 100_000
CONTAINER = "3f2a9c1b" + "0" * 56


def _maps_text(fs_root: Path) -> bytes:
    """A CUDA/PyTorch-sized memory map: ~3,000 lines, the framework's libraries, two shards."""
    site = "/venv/lib/python3.11/site-packages"
    libs = [f"{site}/torch/lib/libtorch_cuda.so", f"{site}/torch/lib/libc10.so"]
    libs += [f"/usr/lib/x86_64-linux-gnu/lib{n:04d}.so" for n in range(600)]
    lines = []
    addr = 0x7F0000000000
    for i, lib in enumerate(libs):
        for perms in ("r--p", "r-xp", "r--p", "rw-p"):
            lines.append(f"{addr:x}-{addr + 0x1000:x} {perms} 00000000 fd:01 {5000 + i}    {lib}")
            addr += 0x1000
    for _ in range(600):
        lines.append(f"{addr:x}-{addr + 0x200000:x} rw-p 00000000 00:00 0 ")
        addr += 0x200000
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        lines.append(
            f"{addr:x}-{addr + 0x100000:x} r--s 00000000 fd:01 9{len(lines)}    /models/{shard}"
        )
        addr += 0x100000
    return ("\n".join(lines) + "\n").encode()


class FakeRoot:
    """A /proc-like tree with as many fake GPU processes as asked for."""

    def __init__(self, base: Path) -> None:
        self.proc = base / "proc"
        self.fs = base / "fs"  # what every fake process sees as its root
        self.proc.mkdir()
        (self.proc / "stat").write_text(f"btime {BTIME}\n")
        (self.proc / "self" / "ns").mkdir(parents=True)
        os.symlink("pid:[4026531836]", self.proc / "self" / "ns" / "pid")
        site = self.fs / "venv/lib/python3.11/site-packages"
        (site / "torch-2.3.1+cu121.dist-info").mkdir(parents=True)
        for n in range(200):
            (site / f"pkg{n}-1.0.dist-info").mkdir()
        (self.fs / "models").mkdir()
        for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
            with open(self.fs / "models" / shard, "wb") as f:
                f.truncate(2**30)
        self.maps = base / "maps.txt"
        self.maps.write_bytes(_maps_text(self.fs))
        self.clk = os.sysconf("SC_CLK_TCK")
        self.count = 0

    def add(self) -> ProcessRow:
        pid = PID_BASE + self.count
        ticks = 1000 + self.count
        self.count += 1
        d = self.proc / str(pid)
        d.mkdir()
        fields = ["S", "1"] + ["0"] * 17 + [str(ticks)] + ["0"] * 30
        (d / "stat").write_text(f"{pid} (python3) " + " ".join(fields) + "\n")
        (d / "status").write_text(f"Name:\tpython3\nPPid:\t1\nUid:\t0\t0\t0\t0\nNSpid:\t{pid}\t1\n")
        (d / "cgroup").write_text(f"0::/system.slice/docker-{CONTAINER}.scope\n")
        argv = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models"]
        (d / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
        (d / "comm").write_text("python3\n")
        os.link(self.maps, d / "maps")
        os.symlink(self.fs, d / "root")
        fd = d / "fd"
        fd.mkdir()
        for n in range(3):
            os.symlink("/dev/null", fd / str(n))
        os.symlink(self.fs / "models" / "model-00001-of-00002.safetensors", fd / "3")
        for n in range(4, 8):
            os.symlink(f"socket:[{n}]", fd / str(n))
        start = BTIME + ticks / self.clk
        return ProcessRow(ProcessIdentity(pid, start), 0, -1, "root", "python3", True)


def _cpu_ms(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) * 1000.0


def _row(case: str, ms: list[float], reads: float, procs: int = PROCESSES) -> dict[str, object]:
    return {
        "case": case,
        "processes": procs,
        "cpu_ms_per_update": round(statistics.median(ms), 3),
        "full_reads_per_update": round(reads, 1),
        "updates": len(ms),
    }


def _real_proc_row() -> dict[str, object]:
    """Full reads of live processes of this machine, through the real /proc."""
    me = os.geteuid()
    rows = []
    for proc in psutil.process_iter(["uids", "create_time"]):
        try:
            if proc.info["uids"].real == me or me == 0:
                rows.append(
                    ProcessRow(
                        ProcessIdentity(proc.pid, proc.info["create_time"]), 0, -1, "", "", True
                    )
                )
        except (psutil.Error, AttributeError):
            continue
        if len(rows) >= 32:
            break
    ms = []
    for _ in range(5):
        enricher = Enricher(ProcFS())
        ms.append(_cpu_ms(lambda e=enricher: e.update(rows)) / max(1, len(rows)))
    return _row("real /proc: first sight, per process", ms, 1.0, procs=len(rows))


def enricher_rows(quick: bool) -> list[dict[str, object]]:
    """One dict per case: case, processes, cpu_ms_per_update (median), full_reads_per_update,
    updates. Built on a fake proc root of 1024 processes (see the module docstring)."""
    updates = 5 if quick else 20
    churn = int(PROCESSES * CHURN)
    out = []
    with tempfile.TemporaryDirectory(prefix="vramtop-bench-enricher-") as tmp:
        fake = FakeRoot(Path(tmp))
        rows = [fake.add() for _ in range(PROCESSES)]
        spare = [fake.add() for _ in range(churn * updates)]
        now = [0.0]
        enricher = Enricher(ProcFS(str(fake.proc)), my_uid=0, clock=lambda: now[0])

        first = _cpu_ms(lambda: enricher.update(rows))
        out.append(_row("fake root: first sight (all new)", [first], float(enricher.reads)))

        # Let every revisit come due and be done, then measure the everyday cost.
        now[0] = 1000.0
        before = -1
        while before != enricher.reads:
            before = enricher.reads
            now[0] += 1.0
            enricher.update(rows)
        ms = []
        reads0 = enricher.reads
        for _ in range(updates):
            now[0] += 1.0
            ms.append(_cpu_ms(lambda: enricher.update(rows)))
        out.append(_row("fake root: steady", ms, (enricher.reads - reads0) / updates))

        ms = []
        reads0 = enricher.reads
        current = list(rows)
        for i in range(updates):
            now[0] += 1.0
            current = current[churn:] + spare[i * churn : (i + 1) * churn]
            ms.append(_cpu_ms(lambda c=current: enricher.update(c)))
        out.append(_row("fake root: 10% churn", ms, (enricher.reads - reads0) / updates))
    out.append(_real_proc_row())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer updates per case")
    args = parser.parse_args(argv)
    rows = enricher_rows(args.quick)
    headers = list(rows[0])
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
