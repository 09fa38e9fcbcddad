#!/usr/bin/env python3
"""What the scraper costs: CPU per wall second with 8 inference servers at the default rate limit.

Where it sits: outside the data flow, beside ``scripts/bench.py`` (which calls
:func:`scraper_rows` and puts the rows in its report). Eight real process trees shaped like vLLM
servers (``vllm serve`` answering /metrics on 127.0.0.1, its ``VLLM::EngineCore`` child as the
GPU process; ``vramtop.gpu.fakeserver``) are started, and the scraper's functional core runs
in-process: each scrape round reads the socket tables and the trees' fds, fetches each server
once, parses and attributes the figures. The core does one round per ``rate_limit_seconds`` and
sleeps in between, so its CPU per wall second is the CPU of one round divided by the rate limit
(the rounds run back to back here, on a clock advanced by the rate limit each time).

Rows: the 8 servers read; the same trees with their ports not allowed (discovery alone, no
socket opened). CPU is this process's (the fetch's timer threads included); the servers' own
CPU is not counted. Compare the rows with each other; nothing is asserted.

Usage: ``.venv/bin/python scripts/bench_scraper.py [--quick]``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil

from vramtop.config import Config, ScrapingConfig
from vramtop.gpu.fakeserver import demo_tree
from vramtop.messages import ProcessIdentity, ProcessRow, ProcessRows
from vramtop.scrape.core import ScraperCore

SERVERS = 8


@contextlib.contextmanager
def servers(n: int) -> Iterator[list[tuple[int, int]]]:
    """``n`` vLLM-shaped trees on free ports: [(GPU process pid, port)]."""
    procs = []
    found: list[tuple[int, int]] = []
    try:
        for i in range(n):
            spec = demo_tree(
                "vllm", f"engine{i}", ("VLLM::EngineCore",),
                ("vllm", "serve", f"bench/model-{i}", "--port", "{port}"), (0,),
            )  # fmt: skip
            spec["max_seconds"] = 600
            p = subprocess.Popen(
                [sys.executable, "-m", "vramtop.gpu.fakeserver", json.dumps(spec)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                env=dict(os.environ, VRAMTOP_FAKESERVER_PARENT=str(os.getpid())),
            )
            procs.append(p)
        for p in procs:
            assert p.stdout is not None
            lines = [json.loads(p.stdout.readline()) for _ in range(2)]
            api = next(x for x in lines if x["name"].endswith(":api"))
            gpu = next(x for x in lines if not x["name"].endswith(":api"))
            found.append((gpu["pid"], api["port"]))
        yield found
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                for child in psutil.Process(p.pid).children(recursive=True):
                    child.kill()
            p.kill()
            p.wait(timeout=10)
            if p.stdout is not None:
                p.stdout.close()


def _sample(pids: list[int]) -> ProcessRows:
    rows = tuple(
        ProcessRow(ProcessIdentity(pid, psutil.Process(pid).create_time()), i, i, "u", "", True)
        for i, pid in enumerate(pids)
    )
    return ProcessRows(1, time.time(), rows)


def _round_ms(core: ScraperCore, rounds: int) -> tuple[list[float], float]:
    rate = core.config.scraping.rate_limit_seconds
    ms = []
    before = core.fetches
    now = 0.0
    core.tick(now)  # the first round: targets found, nothing cached yet
    for _ in range(rounds):
        now += rate
        cpu = time.process_time()
        core.tick(now)
        ms.append((time.process_time() - cpu) * 1000.0)
    return ms, (core.fetches - before) / (rounds + 1)


def scraper_rows(quick: bool) -> list[dict[str, Any]]:
    rounds = 5 if quick else 30
    out: list[dict[str, Any]] = []
    with servers(SERVERS) as found:
        pids = [pid for pid, _ in found]
        ports = tuple(port for _, port in found)
        for label, allowed in (
            (f"{SERVERS} vLLM servers read", ports),
            (f"{SERVERS} vLLM trees, ports not allowed (discovery only)", (1,)),
        ):
            scraping = ScrapingConfig(allowed_ports=allowed)
            core = ScraperCore(dataclasses.replace(Config(), scraping=scraping))
            core.handle([_sample(pids)], 0.0)
            ms, fetches = _round_ms(core, rounds)
            median = statistics.median(ms)
            rate = scraping.rate_limit_seconds
            out.append(
                {
                    "case": label,
                    "rate_limit_s": rate,
                    "cpu_ms_per_round": median,
                    "fetches_per_round": fetches,
                    "cpu_percent": 100.0 * median / 1000.0 / rate,
                    "rounds": rounds,
                }
            )
            assert core.last is not None
            if allowed == ports:
                read = sum(1 for s in core.last.servers if s.read_at)
                if read != SERVERS:
                    raise RuntimeError(f"only {read} of {SERVERS} servers were read")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in scraper_rows(args.quick):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
