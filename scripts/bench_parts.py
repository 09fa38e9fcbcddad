"""What vramtop's parts cost, each measured alone: ``scripts/bench.py --parts``.

Where it sits: outside the data flow, beside ``scripts/bench.py`` (which measures the whole
program beside nvitop). It drives the sampler's functional core in-process
(``SamplerCore.tick`` over both backends), for 1 and 8 GPUs with 16, 256 and 1024 processes: CPU
milliseconds per sampler tick (median), on the simulated backend and on the NVML backend
(nvidia-ml-py's ctypes code) against the simulated libnvidia-ml.so.1 of ``tests/simdriver``,
compiled C answering in microseconds. The tick includes resolving identities, writing the
shared-memory rings and pickling the sample for the readers (a forked drainer process reads the
mailboxes, so unpickling is not counted). Then the per-actor scripts (``PARTS``: terminal,
analyzer, enricher, scraper, deep mode, replay, exporter), each with its own table.

Compare the numbers as ratios within one run, never as absolute times across runs.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import multiprocessing
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


from bench_table import dict_table, markdown_table, progress  # noqa: E402

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
FULL_CASES = ((1, 16), (1, 256), (1, 1024), (8, 16), (8, 256), (8, 1024))
QUICK_CASES = ((1, 16), (8, 1024))


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


FULL = Plan(ticks=40, warmup_ticks=3)
QUICK = Plan(ticks=8, warmup_ticks=2)


@dataclass
class Result:
    case: Case
    core: dict[str, float] = field(default_factory=dict)  # backend -> CPU ms per tick
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


# -- the report ------------------------------------------------------------------------------------

CORE_HEADERS = ("configuration", "simulated ms/tick", "nvml path ms/tick")


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def report(results: Sequence[Result], plan: Plan) -> str:
    core_rows = [
        [r.case.label, _num(r.core.get("simulated"), 2), _num(r.core.get("nvml"), 2)]
        for r in results
    ]
    lines = [
        f"Sampler core, CPU ms per tick (median of {plan.ticks}; tick = sample + identities + "
        "shm write + the rows for every reader and the snapshot for render/exporter, "
        "each pickled once):",
        "",
        markdown_table(CORE_HEADERS, core_rows),
    ]
    notes = [f"{r.case.label}: {n}" for r in results for n in r.notes]
    if notes:
        lines += ["", "Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(lines)


@contextlib.contextmanager
def _noted(result: Result) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        result.failed = True
        result.notes.append(f"failed: {type(exc).__name__}: {exc}".splitlines()[0])


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


def run_parts(quick: bool) -> dict[str, list[dict[str, object]]]:
    """Print the sampler core's table, then every part's; return the parts' rows by title.
    A part that fails is reported and the others still run; raises at the end if one did."""
    plan = QUICK if quick else FULL
    results = []
    with tempfile.TemporaryDirectory(prefix="vramtop-bench-") as tmp:
        for gpus, procs in QUICK_CASES if quick else FULL_CASES:
            result = Result(Case(gpus, procs))
            path = write_scenario(result.case, Path(tmp))
            for kind in ("simulated", "nvml"):
                with progress(f"{result.case.label}: sampler core, {kind}"), _noted(result):
                    result.core[kind] = measure_core(result.case, kind, path, plan)
            results.append(result)
    print(report(results, plan))
    failed = [r.case.label for r in results if r.failed]
    parts: dict[str, list[dict[str, object]]] = {}
    for title, module, function in PARTS:
        with progress(title):
            try:
                rows = getattr(importlib.import_module(module), function)(quick)
            except Exception as exc:  # one failed part must not hide the others
                failed.append(title)
                print(f"\n{title}: failed: {type(exc).__name__}: {exc}")
                continue
        parts[title] = rows
        print(f"\n{title}:\n")
        print(dict_table(rows))
    if failed:
        raise RuntimeError(f"failed: {', '.join(failed)}")
    return parts
