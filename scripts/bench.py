#!/usr/bin/env python3
"""Measure what vramtop costs the machine it watches, on simulated GPUs.

Where it sits: outside the data flow, as its first user. It drives the sampler's functional core
in-process (``SamplerCore.tick`` over both backends) and the whole program in a real
pseudo-terminal (``python -m vramtop --demo SCENARIO``), for 1 and 8 GPUs with 16, 256 and 1024
processes each, and prints one report of two markdown tables sharing the same row labels:

* core costs: CPU milliseconds per sampler tick (median), on the simulated backend and on the
  NVML backend (nvidia-ml-py's ctypes code) against the simulated libnvidia-ml.so.1 of
  ``tests/simdriver``, compiled C answering in microseconds. The tick includes resolving
  identities, writing the shared-memory rings and pickling the sample for the three readers (a
  forked drainer process reads the mailboxes, so unpickling is not counted).
* whole-program costs: CPU seconds per wall second (shown as %, 100 = one core) and PSS of every
  vramtop process over a window after start-up, time to first frame (spawn to the GPU name on the
  terminal), key-to-redraw latency (Down/Up arrows, median) and bytes sent to the terminal per
  idle second.

The machine is noisy and small: compare the numbers as ratios within one run (1024 vs 16
processes, NVML vs simulated, sampler vs render), never as absolute times across runs. Nothing
here asserts a budget; ``tests/test_bench.py`` only checks that the script runs and reports.

A measurement that fails shows as n/a with its reason under the tables, and the exit status is 1.

* with ``--nvitop``: vramtop beside nvitop on the same simulated driver, as ratios
  (``scripts/bench_nvitop.py``; nvitop is pip-installed into a throwaway venv when installable).

Usage: ``.venv/bin/python scripts/bench.py [--quick] [--json FILE] [--nvitop]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import multiprocessing
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the simulated NVML driver lives with the tests

import pexpect  # noqa: E402
import psutil  # noqa: E402

from vramtop.actors.base import ActorContext  # noqa: E402
from vramtop.actors.mailbox import Mailbox, make_channels  # noqa: E402
from vramtop.actors.routes import STATE_ROUTES  # noqa: E402
from vramtop.actors.sampler import SamplerCore  # noqa: E402
from vramtop.actors.supervisor import channel_capacity  # noqa: E402
from vramtop.config import Config  # noqa: E402
from vramtop.gpu.factory import BackendSpec  # noqa: E402
from vramtop.gpu.scenario import load_scenario  # noqa: E402
from vramtop.gpu.simulated import SimulatedBackend  # noqa: E402
from vramtop.shm import ShmSegment  # noqa: E402

READERS = ("render", "analyzer", "enricher", "exporter")  # the monitor's, with a file export

GPU_NAME = "NVIDIA H100 80GB HBM3"
GPU_MIB = 81559
ROWS, COLS = 45, 160
REFRESH = "0.5"
ACTORS = ("supervisor", "sampler", "render", "scraper")
FULL_CASES = ((1, 16), (1, 256), (1, 1024), (8, 16), (8, 256), (8, 1024))
QUICK_CASES = ((1, 16), (8, 1024))
CURSOR_QUERY, CURSOR_REPLY = b"\x1b[6n", b"\x1b[1;1R"
_ESCAPE = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|.)")


@dataclass(frozen=True)
class Case:
    gpus: int
    procs: int

    @property
    def label(self) -> str:
        return f"{self.gpus} GPU{'s' if self.gpus > 1 else ''} / {self.procs} procs"


@dataclass(frozen=True)
class Plan:
    ticks: int  # measured sampler ticks per backend
    warmup_ticks: int
    settle_s: float  # whole program: after the first frame, before the window
    window_s: float  # whole program: the measured idle window
    key_presses: int


FULL = Plan(ticks=40, warmup_ticks=3, settle_s=2.0, window_s=6.0, key_presses=5)
QUICK = Plan(ticks=8, warmup_ticks=2, settle_s=1.0, window_s=3.0, key_presses=3)


@dataclass
class Result:
    case: Case
    core: dict[str, float] = field(default_factory=dict)  # backend -> CPU ms per tick
    cpu: dict[str, float] = field(default_factory=dict)  # actor -> CPU s per wall s
    pss_mib: dict[str, float] = field(default_factory=dict)  # actor -> MiB
    first_frame_s: float = math.nan
    key_ms: float = math.nan
    tty_bytes_per_s: float = math.nan
    notes: list[str] = field(default_factory=list)
    failed: bool = False


# -- scenarios -------------------------------------------------------------------------------------


def scenario_toml(case: Case) -> str:
    """``case.gpus`` H100s and ``case.procs`` synthetic processes, all present from t=0, sized
    so that no GPU runs out of memory (an OOM kill would change the process count mid-run)."""
    per_gpu = math.ceil(case.procs / case.gpus)
    high = min(256.0, 0.6 * GPU_MIB / per_gpu)
    gpu = f'[[gpu]]\nname = "{GPU_NAME}"\nmemory_mib = {GPU_MIB}\npower_limit_w = 700\n'
    return (
        f'name = "bench-{case.gpus}x{case.procs}"\nseed = 7\n\n'
        + "\n".join(gpu for _ in range(case.gpus))
        + "\n[[process_group]]\n"
        + f"count = {case.procs}\n"
        + 'name = "worker"\n'
        + f"gpu = {list(range(case.gpus))}\n"
        + "sm_util = 10\n"
        + f"size_mib = [{high / 8:.1f}, {high:.1f}]\n"
        + "noise_mib = 1\n"
    )


def write_scenario(case: Case, directory: Path) -> Path:
    path = directory / f"bench-{case.gpus}x{case.procs}.toml"
    path.write_text(scenario_toml(case))
    return path


# -- the sampler core, in-process ------------------------------------------------------------------


def _drain(boxes: list[Mailbox], ack: Any) -> None:
    """Forked reader: take the tick's message from every reader mailbox (through its state
    channel or its queue, as the actor shell would), then acknowledge the tick."""
    from multiprocessing import connection

    while True:
        for box in boxes:
            got: list[object] = []
            while not got:
                connection.wait([box.fileno()], 1.0)
                got = box.drain()
            if "stop" in got:
                return
        ack.send(1)


def nvml_scenario(case: Case, scenario_path: Path) -> str:
    """The simulated driver's scenario (tests/simdriver) showing the same GPUs and processes as
    the simulated backend's scenario, every process busy (so utilisation samples flow)."""
    snapshot = SimulatedBackend(load_scenario(str(scenario_path))).sample()
    lines = [f"gpus {case.gpus}"]
    for g in range(case.gpus):
        lines += [
            f"gpu {g} name {GPU_NAME}",
            f"gpu {g} memory {GPU_MIB}M 512M",
            f"gpu {g} util 30 10",
        ]
    for p in snapshot.processes:
        used = p.used_bytes if isinstance(p.used_bytes, int) else 64 << 20
        lines.append(f"proc {p.gpu_index} {p.pid} compute {used} sm=10 mem=4")
    return "\n".join(lines) + "\n"


def measure_core(case: Case, kind: str, scenario_path: Path, plan: Plan) -> float:
    """Median CPU milliseconds (this process, all threads) per ``SamplerCore.tick``."""
    mp = multiprocessing.get_context("fork")
    config = Config()
    processes = max(config.general.process_slots, case.procs)
    channels = make_channels(STATE_ROUTES, channel_capacity(processes))
    outboxes = {name: Mailbox(mp, name, channels, name != "exporter") for name in READERS}
    inbox, supervisor = Mailbox(mp, "sampler"), Mailbox(mp, "supervisor")
    ack_r, ack_w = mp.Pipe(duplex=False)
    drainer = mp.Process(target=_drain, args=(list(outboxes.values()), ack_w), daemon=True)
    drainer.start()
    segment = ShmSegment.create(
        config.general.history_length, case.gpus, max(config.general.process_slots, case.procs)
    )
    spec = (
        BackendSpec("nvml")
        if kind == "nvml"
        else BackendSpec("simulated", scenario=str(scenario_path), t0=time.time())
    )
    costs: list[float] = []
    try:
        with contextlib.ExitStack() as stack:
            if kind == "nvml":
                from simdriver.build import write_scenario as write_driver_scenario
                from simdriver.harness import loaded

                driver_path = scenario_path.with_suffix(".scenario")
                write_driver_scenario(driver_path, nvml_scenario(case, scenario_path))
                stack.enter_context(loaded("current", driver_path))
            core = SamplerCore(spec)
            ctx = ActorContext(
                "sampler", config, inbox, supervisor, outboxes, segment.name, channels=channels
            )
            core.start(ctx)
            try:
                for i in range(plan.warmup_ticks + plan.ticks):
                    before = time.process_time()
                    ctx.deliver(core.tick(time.monotonic())[1])
                    ack_r.recv()  # blocks without CPU until the samples were pickled and read
                    if i >= plan.warmup_ticks:
                        costs.append(time.process_time() - before)
            finally:
                core.stop()
    finally:
        for box in outboxes.values():
            box.post("stop")
        drainer.join(5)
        if drainer.is_alive():
            drainer.kill()
            drainer.join(5)
        for box in (*outboxes.values(), inbox, supervisor):
            box.close()
        segment.close()
        segment.unlink()
    return 1000.0 * statistics.median(costs)


# -- the whole program in a pseudo-terminal --------------------------------------------------------


def _compact(data: bytes) -> bytes:
    """Terminal output without escape sequences and whitespace: what a frame reads as, even when
    the writer skips unchanged blanks with cursor moves."""
    return re.sub(rb"\s+", b"", _ESCAPE.sub(b"", data))


def _read(child: Any, seconds: float) -> bytes:
    try:
        data: bytes = child.read_nonblocking(65536, timeout=max(0.0, seconds))
    except pexpect.TIMEOUT:
        return b""
    if CURSOR_QUERY in data:
        # Answer like every VT100-compatible terminal does; unanswered, blessed waits seconds
        # for it at start-up, which is the pty's fault here, not what a user sees.
        child.send(CURSOR_REPLY)
    return data


def _pump(child: Any, seconds: float) -> int:
    """Read (and discard) everything the program writes for ``seconds``; return the byte count."""
    total = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        total += len(_read(child, left))
    return total


def _role(proc: psutil.Process, supervisor: int) -> str | None:
    if proc.pid == supervisor:
        return "supervisor"
    title = " ".join(proc.cmdline())
    return title[len("vramtop: ") :].strip() if title.startswith("vramtop: ") else None


def vramtop_processes(supervisor: int) -> dict[str, psutil.Process]:
    """The supervisor and every child titled ``vramtop: NAME``, by role."""
    top = psutil.Process(supervisor)
    found: dict[str, psutil.Process] = {}
    for proc in [top, *top.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            role = _role(proc, supervisor)
            if role is not None:
                found[role] = proc
    return found


def _cpu_seconds(proc: psutil.Process) -> float:
    # schedstat counts nanoseconds on the CPU; cpu_times() moves in clock ticks (10 ms), too
    # coarse for an idle process over a few seconds.
    try:
        with open(f"/proc/{proc.pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        times = proc.cpu_times()
        return float(times.user + times.system)


def _pss_mib(proc: psutil.Process) -> float:
    try:
        return float(proc.memory_full_info().pss) / (1 << 20)
    except (AttributeError, psutil.AccessDenied):
        return float(proc.memory_info().rss) / (1 << 20)


def _key_latency(child: Any, presses: int) -> float:
    """Median seconds from an arrow key to the first byte of the redraw it causes."""
    latencies: list[float] = []
    for i in range(presses):
        # Press in a quiet moment, so a sample's redraw is not mistaken for the key's.
        quiet_since = time.monotonic()
        give_up = quiet_since + 1.5
        while time.monotonic() - quiet_since < 0.08 and time.monotonic() < give_up:
            if _read(child, 0.02):
                quiet_since = time.monotonic()
        child.send("\x1b[B" if i % 2 == 0 else "\x1b[A")
        sent = time.monotonic()
        while time.monotonic() - sent < 2.0:
            if _read(child, 0.5):
                latencies.append(time.monotonic() - sent)
                break
    return statistics.median(latencies) if latencies else math.nan


def _stop(child: Any, known: Sequence[psutil.Process]) -> list[str]:
    """Quit with q; whatever is still alive after that is killed. Returns what had to be forced."""
    notes = []
    with contextlib.suppress(OSError):
        child.send("q")
    deadline = time.monotonic() + 10
    while child.isalive() and time.monotonic() < deadline:
        with contextlib.suppress(pexpect.EOF, OSError):
            _read(child, 0.1)
    if child.isalive():
        notes.append("did not quit on q within 10 s; killed")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    child.close(force=True)
    _, alive = psutil.wait_procs(list(known), timeout=5)
    for proc in alive:
        notes.append(f"pid {proc.pid} outlived the supervisor; killed")
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return notes


def measure_program(
    case: Case, scenario_path: Path, plan: Plan, result: Result, tree: Path | None = None
) -> None:
    """``tree``: run the vramtop package of another source tree (a copy of an older commit)
    instead of this one, for a before/after comparison in the same run."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    for name in ("NO_COLOR", "VRAMTOP_FAULT"):
        env.pop(name, None)
    env.update({"TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)})
    with tempfile.TemporaryDirectory(prefix="vramtop-bench-home-") as home:
        env["XDG_CONFIG_HOME"] = home  # the user's own config must not change the numbers
        spawned = time.monotonic()
        child = pexpect.spawn(
            sys.executable,
            ["-m", "vramtop", "--demo", str(scenario_path), "--refresh-rate", REFRESH],
            env=env,
            dimensions=(ROWS, COLS),
            timeout=5,
            cwd=str(tree) if tree is not None else None,
        )
        known: list[psutil.Process] = []
        try:
            known = [psutil.Process(child.pid)]
            seen = bytearray()
            wanted = _compact(GPU_NAME.encode())
            while True:
                seen += _read(child, 0.05)
                if wanted in _compact(bytes(seen)):
                    result.first_frame_s = time.monotonic() - spawned
                    break
                if time.monotonic() - spawned > 60:
                    raise RuntimeError(f"{case.label}: no frame with {GPU_NAME!r} within 60 s")
            _pump(child, plan.settle_s)
            procs = vramtop_processes(child.pid)
            known = list(procs.values())
            before = {role: _cpu_seconds(p) for role, p in procs.items()}
            start = time.monotonic()
            written = _pump(child, plan.window_s)
            wall = time.monotonic() - start
            for role, proc in procs.items():
                try:
                    result.cpu[role] = (_cpu_seconds(proc) - before[role]) / wall
                    result.pss_mib[role] = _pss_mib(proc)
                except psutil.NoSuchProcess:
                    result.notes.append(f"{role} died during the window")
            if vramtop_processes(child.pid).keys() != procs.keys():
                result.notes.append("the set of vramtop processes changed during the window")
            result.cpu["total"] = sum(result.cpu.values())
            result.pss_mib["total"] = sum(result.pss_mib.values())
            result.tty_bytes_per_s = written / wall
            result.key_ms = 1000.0 * _key_latency(child, plan.key_presses)
        finally:
            result.notes.extend(_stop(child, known))


# -- the report ------------------------------------------------------------------------------------

CORE_HEADERS = ("configuration", "simulated ms/tick", "nvml path ms/tick")
PROGRAM_HEADERS = (
    "configuration",
    *(f"{a} CPU%" for a in ACTORS),
    "total CPU%",
    *(f"{a} PSS MiB" for a in ACTORS),
    "total PSS MiB",
    "first frame s",
    "key→redraw ms",
    "tty B/s",
)


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]])
    return "\n".join([line(headers), rule + "|", *(line(r) for r in rows)])


def report(results: Sequence[Result], plan: Plan) -> str:
    core_rows = [
        [r.case.label, _num(r.core.get("simulated"), 2), _num(r.core.get("nvml"), 2)]
        for r in results
    ]
    program_rows = []
    for r in results:
        program_rows.append(
            [
                r.case.label,
                *(_num(100.0 * r.cpu[a] if a in r.cpu else None, 2) for a in ACTORS),
                _num(100.0 * r.cpu["total"] if "total" in r.cpu else None, 2),
                *(_num(r.pss_mib.get(a), 1) for a in ACTORS),
                _num(r.pss_mib.get("total"), 1),
                _num(r.first_frame_s, 2),
                _num(r.key_ms, 0),
                _num(r.tty_bytes_per_s, 0),
            ]
        )
    lines = [
        f"vramtop bench: simulated H100s, refresh {REFRESH} s, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}.",
        "Compare as ratios within one run, never across runs or machines.",
        "",
        f"Sampler core, CPU ms per tick (median of {plan.ticks}; tick = sample + identities + "
        "shm write + the rows for every reader and the snapshot for render/exporter, "
        "each pickled once):",
        "",
        markdown_table(CORE_HEADERS, core_rows),
        "",
        f"Whole program (python -m vramtop --demo), {plan.window_s:.0f} s idle window after "
        f"{plan.settle_s:.0f} s settling, in a {COLS}x{ROWS} pty that answers cursor-position "
        "queries;",
        "CPU% = CPU s per wall s x 100 (100 = one core); total = every vramtop process:",
        "",
        markdown_table(PROGRAM_HEADERS, program_rows),
    ]
    notes = [f"{r.case.label}: {n}" for r in results for n in r.notes]
    if notes:
        lines += ["", "Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(lines)


def as_json(results: Sequence[Result], plan: Plan, seconds: float) -> dict[str, Any]:
    def clean(value: float) -> float | None:
        return None if math.isnan(value) else round(value, 6)

    return {
        "refresh_rate_s": float(REFRESH),
        "terminal": [COLS, ROWS],
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "plan": plan.__dict__,
        "runtime_s": round(seconds, 2),
        "rows": [
            {
                "label": r.case.label,
                "gpus": r.case.gpus,
                "processes": r.case.procs,
                "core_cpu_ms_per_tick": {k: clean(v) for k, v in r.core.items()},
                "cpu_s_per_wall_s": {k: clean(v) for k, v in r.cpu.items()},
                "pss_mib": {k: clean(v) for k, v in r.pss_mib.items()},
                "first_frame_s": clean(r.first_frame_s),
                "key_to_redraw_ms": clean(r.key_ms),
                "tty_bytes_per_idle_s": clean(r.tty_bytes_per_s),
                "notes": r.notes,
            }
            for r in results
        ],
    }


@contextlib.contextmanager
def _noted(result: Result) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        result.failed = True
        result.notes.append(f"failed: {type(exc).__name__}: {exc}".splitlines()[0])


@contextlib.contextmanager
def _progress(text: str) -> Iterator[None]:
    print(f"  {text} ...", end="", file=sys.stderr, flush=True)
    started = time.monotonic()
    yield
    print(f" {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 configurations")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    parser.add_argument(
        "--no-parts", action="store_true", help="skip the per-actor tables (enricher, replay, ...)"
    )
    parser.add_argument(
        "--against",
        metavar="TREE",
        type=Path,
        help="only compare the whole program with the vramtop of another source tree (e.g. "
        "`git worktree add /tmp/old COMMIT`), alternating runs, and print CPU and PSS per actor",
    )
    parser.add_argument(
        "--cases", metavar="GxP,...", help="configurations to run, e.g. 8x1024,1x16"
    )
    parser.add_argument("--repeat", type=int, default=2, help="with --against: runs per tree")
    parser.add_argument(
        "--nvitop",
        action="store_true",
        help="also run nvitop (pip-installed into a throwaway venv) on the same simulated driver",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.cases:
        chosen = [tuple(int(n) for n in c.split("x")) for c in args.cases.split(",")]
    else:
        chosen = list(QUICK_CASES if args.quick else FULL_CASES)
    if args.against is not None:
        return compare_trees(args.against, [Case(g, p) for g, p in chosen], plan, args.repeat)
    cases = [Case(g, p) for g, p in chosen]
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="vramtop-bench-") as tmp:
        for case in cases:
            result = Result(case)
            path = write_scenario(case, Path(tmp))
            # A failed measurement is reported as n/a with its reason; the others still run.
            for kind in ("simulated", "nvml"):
                with _progress(f"{case.label}: sampler core, {kind}"), _noted(result):
                    result.core[kind] = measure_core(case, kind, path, plan)
            with _progress(f"{case.label}: whole program"), _noted(result):
                measure_program(case, path, plan, result)
            results.append(result)
    print(report(results, plan))
    parts_ok = True
    parts: dict[str, list[dict[str, object]]] = {}
    parts_run = [] if args.no_parts else list(PARTS)
    if args.nvitop:
        parts_run.append(PEER)
    if parts_run:
        for title, module, function in parts_run:
            with _progress(title):
                try:
                    part = getattr(importlib.import_module(module), function)
                    if module == PEER[1] and args.cases:
                        rows = part(args.quick, chosen)  # the configurations asked for
                    else:
                        rows = part(args.quick)
                except Exception as exc:  # one failed part must not hide the others
                    if type(exc).__name__ == "Unavailable":  # nvitop not installable: a skip
                        print(f"\n{title}: skipped: {exc}")
                        continue
                    parts_ok = False
                    print(f"\n{title}: failed: {type(exc).__name__}: {exc}")
                    continue
            parts[title] = rows
            print(f"\n{title}:\n")
            print(dict_table(rows))
    if args.json:
        seconds = time.monotonic() - started
        doc = as_json(results, plan, seconds)
        doc["parts"] = parts
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 1 if any(r.failed for r in results) or not parts_ok else 0


def compare_trees(other: Path, cases: Sequence[Case], plan: Plan, repeat: int) -> int:
    """This tree against ``other``, alternating (A B A B ...) so drift hits both alike; the
    median per actor of each side, and their ratio."""
    rows = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="vramtop-bench-") as tmp:
        for case in cases:
            path = write_scenario(case, Path(tmp))
            runs: dict[str, list[Result]] = {"this": [], "other": []}
            for _ in range(repeat):
                for side, tree in (("this", None), ("other", other)):
                    result = Result(case)
                    with _progress(f"{case.label}: whole program ({side})"), _noted(result):
                        measure_program(case, path, plan, result, tree)
                    failed = failed or result.failed
                    runs[side].append(result)
            roles = sorted({r for res in runs["this"] + runs["other"] for r in res.cpu})
            for role in roles:
                this = [100.0 * r.cpu[role] for r in runs["this"] if role in r.cpu]
                that = [100.0 * r.cpu[role] for r in runs["other"] if role in r.cpu]
                a = statistics.median(this) if this else math.nan
                b = statistics.median(that) if that else math.nan
                pa = [r.pss_mib[role] for r in runs["this"] if role in r.pss_mib]
                pb = [r.pss_mib[role] for r in runs["other"] if role in r.pss_mib]
                rows.append(
                    [
                        case.label,
                        role,
                        _num(b, 2),
                        _num(a, 2),
                        _num(a / b if b else None, 2),
                        _num(statistics.median(pb) if pb else None, 1),
                        _num(statistics.median(pa) if pa else None, 1),
                    ]
                )
    headers = (
        "configuration",
        "process",
        f"{other.name} CPU%",
        "this tree CPU%",
        "ratio",
        f"{other.name} PSS MiB",
        "this tree PSS MiB",
    )
    print(
        f"Whole program, this tree against {other}: median of {repeat} alternating runs, "
        f"{plan.window_s:.0f} s window each; compare the ratio column."
    )
    print()
    print(markdown_table(headers, rows))
    return 1 if failed else 0


# Per-actor costs measured by their own scripts beside this one (each exposes NAME(quick)).
PARTS = (
    ("Terminal, 160x45 demo", "bench_ui", "ui_rows"),
    ("Analyzer, CPU per tick", "bench_analyzer", "analyzer_rows"),
    ("Enricher, CPU per update", "bench_enricher", "enricher_rows"),
    ("Scraper, CPU per wall second at the default rate limit", "bench_scraper", "scraper_rows"),
    ("Deep mode, report() in the reporting process", "bench_deep", "deep_rows"),
    ("Replay --speed max --json, one hour at 1 Hz, 8 GPUs x 64 processes", "bench_replay",
     "replay_rows"),
    ("Exporter scrape and fleet view, CPU per refresh", "bench_fleet", "fleet_rows"),
)  # fmt: skip


PEER = (
    "vramtop beside nvitop on the same simulated libnvidia-ml.so.1 (1 s refresh, 160x45)",
    "bench_nvitop",
    "peer_rows",
)


def dict_table(rows: Sequence[dict[str, object]]) -> str:
    if not rows:
        return "(no rows)"
    headers = list(rows[0])

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    return markdown_table(headers, [[cell(r.get(h, "")) for h in headers] for r in rows])


if __name__ == "__main__":
    sys.exit(main())
