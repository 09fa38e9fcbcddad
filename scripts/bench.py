#!/usr/bin/env python3
"""What vramtop costs beside nvitop: both whole programs on the same simulated NVML driver.

Where it sits: outside the data flow, as vramtop's first user. vramtop (every actor, on its real
nvidia-ml-py path) and nvitop (pip-installed into a throwaway venv under the temp dir, reused by
later runs) run unmodified against ``tests/simdriver`` (built here with the system ``cc``),
showing the same GPUs and the same real child processes (``sleep``, half of them busy), each
in a 160x45 pseudo-terminal (160x80 at 16 GPUs: ``rows_for``) at a 1 s refresh, nvitop in its
default (auto) layout, one after the other. ``bench_tty.measure`` runs each the same way: start
to first process row on screen (median of three starts), an idle window on constant values,
then a window with a quarter of the processes growing (CPU, PSS, NVML calls, bytes to the
terminal), then Down-arrow latency.

Printed per scale (GPUs x processes): the measure for nvitop, for vramtop, and their ratio (on a
noisy, shared machine a ratio within one run is the only figure worth comparing), then every
process of both monitors by title (CPU, PSS, USS), so a regression names its actor.

``--quick`` (CI) runs 1 x 16 with short windows and judges the ratios against the committed
``scripts/bench_baseline.json``: exit 1 only when a vramtop/nvitop ratio got more than 50%
worse, in the run and in one confirming re-run (noise), never on an absolute figure (a figure
under its noise floor, ``FLOORS``, is judged as the floor). Where nvitop cannot be installed it
says so and exits 0. ``--write-baseline`` records a run's ratios (or, with ``--from-json A B
C``, the worst of several runs').

Usage: ``.venv/bin/python scripts/bench.py [--quick] [--cases 8x256,...] [--markdown]
[--json FILE] [--from-json FILE...] [--write-baseline] [--against TREE] [--parts]``
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_table import markdown_table, progress  # noqa: E402
from bench_tty import COLS, ROWS, Figures, Plan, Proc, measure  # noqa: E402

GPU_NAME = "NVIDIA H100 80GB HBM3"
GPU_MIB = 81559
VENV = Path(tempfile.gettempdir()) / f"vramtop-bench-nvitop-{os.geteuid()}"
BASELINE = ROOT / "scripts" / "bench_baseline.json"
README = ROOT / "README.md"
BEGIN = "<!-- begin: scripts/bench.py --markdown -->"
END = "<!-- end: scripts/bench.py --markdown -->"
TOLERANCE = 0.5  # a ratio may get this much worse (0.5: 50%) before --quick fails
# Bytes to the terminal in --quick's short windows depend on whether a redraw of the timeline's
# axis or a re-sort of the table falls inside them: on one tree, 0.36x to 2.8x nvitop's from run
# to run. A regression that matters there (a whole frame rewritten every tick) is 20x or more.
TOLERANCES = {"bytes_per_s": 8.0, "idle_bytes_per_s": 8.0}
BYTES_NOTE = "bytes to the terminal: 9x"
FULL_CASES = ((1, 16), (8, 256), (8, 1024), (16, 4096))
QUICK_CASES = ((1, 16),)
FULL = Plan(settle_s=5.0, idle_s=5.0, window_s=20.0, key_presses=9, starts=3)
QUICK = Plan(settle_s=2.0, idle_s=3.0, window_s=8.0, key_presses=7, starts=3)
SLEEP_S = 3600
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# (key in Figures, the table's words, digits); every one is "lower is better".
METRICS = (
    ("cpu", "CPU (s per s)", 3),
    ("pss_mib", "PSS, all processes (MiB)", 1),
    ("bytes_per_s", "bytes to the terminal per s", 0),
    ("idle_bytes_per_s", "bytes per s, constant values", 0),
    ("first_process_ms", "start to first process on screen (ms)", 0),
    ("key_ms", "key to redraw (ms)", 1),
    ("nvml_calls_per_s", "NVML calls per s", 0),
)
# What a shared 2-core machine cannot tell apart from nothing (scheduling delays of a few ms,
# a few ms of CPU a second, one redrawn line, start-up jitter, the driver's once-a-second
# counters): --quick judges a figure below its floor as the floor, so that noise on a tiny
# figure is not a 50% regression. The table shows the figures as measured.
FLOORS = {
    "cpu": 0.005,
    "pss_mib": 1.0,
    "bytes_per_s": 50.0,
    "idle_bytes_per_s": 50.0,
    "first_process_ms": 100.0,
    "key_ms": 10.0,
    "nvml_calls_per_s": 1.0,
}


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


def scale(gpus: int, procs: int) -> str:
    return f"{gpus} × {procs}"


def rows_for(gpus: int) -> int:
    """The pty's height: 45 rows, except where the GPUs alone fill that (16 GPUs: neither
    monitor has room for a process row at 45, nvitop not even for its process panel)."""
    return ROWS if gpus <= 8 else 80


# -- what runs -------------------------------------------------------------------------------------


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


def _die_with_parent(parent: int) -> Callable[[], None]:
    """For a child, between fork and exec: the kernel kills it when this process dies, even by
    SIGKILL (PR_SET_PDEATHSIG), which no ``finally`` sees."""
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # died before the call
            os._exit(1)

    return arm


@contextlib.contextmanager
def sleepers(count: int) -> Iterator[list[int]]:
    """``count`` real processes for the simulated GPUs to list, killed and reaped on the way
    out (SIGTERM and SIGHUP raise SystemExit in ``main``, so this runs for them too; a SIGKILL
    of this script takes them along by PR_SET_PDEATHSIG)."""
    procs: list[subprocess.Popen[bytes]] = []
    arm = _die_with_parent(os.getpid())
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    ["sleep", str(SLEEP_S)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=arm,  # this script runs no threads: safe after fork
                )
            )
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(OSError):
                p.kill()
        for p in procs:
            p.wait()


def driver_scenario(gpus: int, pids: Sequence[int], moving: bool) -> str:
    """The simulated driver's view: ``gpus`` H100s, the processes spread over them, half busy,
    sized to fill at most 60% of a GPU; ``moving``: every fourth grows 2 MiB/s."""
    per_gpu = math.ceil(len(pids) / gpus)
    fit = min(1.0, 0.6 * GPU_MIB / (per_gpu * 514))  # 514 MiB: the mean of the sizes below
    lines = [f"gpus {gpus}"]
    for g in range(gpus):
        lines += [f"gpu {g} name {GPU_NAME}", f"gpu {g} memory 80G 512M", f"gpu {g} util 35 12"]
    for i, pid in enumerate(pids):
        size = max(1, int((64 + (i * 37) % 900) * fit))
        busy = " sm=20 mem=5" if i % 2 == 0 else ""
        grow = f" rate=2M max={size + 4096}M" if moving and i % 4 == 1 else ""
        lines.append(f"proc {i % gpus} {pid} compute {size}M{busy}{grow}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Tool:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None
    config: str = ""  # vramtop's config.toml in the run's fresh XDG_CONFIG_HOME


# The constant-values row asks whether a screen where nothing changes costs anything: vramtop
# hides its clock for that (nvitop's cannot be hidden), for the whole run, which saves the
# header's few bytes a second in the other rows too.
VRAMTOP_CONFIG = '[display]\nclock = "off"\n'


def tools(nvitop: list[str]) -> list[Tool]:
    """The reference first, then vramtop: the table's column order."""
    return [
        # auto: nvitop's default, what a user gets; "full" keeps its host panel at 8 GPUs in
        # 45 rows, with no room left for a process row.
        Tool("nvitop", [*nvitop, "--monitor", "auto", "--interval", "1"], {}),
        Tool(
            "vramtop",
            [sys.executable, "-m", "vramtop", "--refresh-rate", "1"],
            {},
            config=VRAMTOP_CONFIG,
        ),
    ]


def run_case(gpus: int, procs: int, plan: Plan, which: Sequence[Tool]) -> dict[str, Figures]:
    """Every tool in turn on the same scenario and the same sleepers."""
    from simdriver.build import STATS_ENV, build, env, write_scenario

    libdir = build("current")
    out: dict[str, Figures] = {}
    with (
        tempfile.TemporaryDirectory(prefix="vramtop-bench-") as tmp,
        sleepers(procs) as pids,
    ):
        base = Path(tmp)
        path = base / "gpus.scenario"
        for tool in which:
            write_scenario(path, driver_scenario(gpus, pids, moving=False))
            stats = base / f"stats-{tool.name}"
            stats.mkdir()
            home = base / f"home-{tool.name}"
            (home / ".config" / "vramtop").mkdir(parents=True)
            if tool.config:
                (home / ".config" / "vramtop" / "config.toml").write_text(tool.config)
            run_env = env(libdir, path)
            for name in ("NO_COLOR", "VRAMTOP_FAULT", "PYTHONPATH"):
                run_env.pop(name, None)
            run_env.update(
                {
                    STATS_ENV: str(stats),
                    "TERM": "xterm-256color",
                    "HOME": str(home),  # the user's own config must not change the numbers
                    "XDG_CONFIG_HOME": str(home / ".config"),
                    "COLUMNS": str(COLS),
                    "LINES": str(rows_for(gpus)),
                    **tool.env,
                }
            )

            def animate() -> None:
                write_scenario(path, driver_scenario(gpus, pids, moving=True))

            with progress(f"{scale(gpus, procs)}: {tool.name}"):
                try:
                    out[tool.name] = measure(
                        tool.name,
                        tool.argv,
                        run_env,
                        stats,
                        pids,
                        animate,
                        plan,
                        tool.cwd,
                        rows_for(gpus),
                    )
                except Exception as exc:  # n/a with its reason; the other runs still run
                    out[tool.name] = Figures(failed=f"{type(exc).__name__}: {exc}")
    return out


# -- the document: what a run measured, as JSON ----------------------------------------------------


def figure(figures: dict[str, Any], key: str) -> float:
    value = figures.get("first_process_s" if key == "first_process_ms" else key)
    if value is None:
        return math.nan
    return 1000.0 * float(value) if key == "first_process_ms" else float(value)


def document(
    cases: dict[tuple[int, int], dict[str, Figures]], plan: Plan, names: Sequence[str]
) -> dict[str, Any]:
    def clean(value: object) -> object:
        if isinstance(value, float):
            return None if math.isnan(value) else round(value, 6)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return {
        "cpus": os.cpu_count(),
        "terminal": [COLS, ROWS],
        "refresh_s": 1.0,
        "plan": asdict(plan),
        "tools": list(names),
        "cases": [
            {
                "gpus": g,
                "procs": p,
                "figures": {name: clean(asdict(fig)) for name, fig in by_tool.items()},
            }
            for (g, p), by_tool in cases.items()
        ],
    }


def ratios(doc: dict[str, Any], judged: bool = False) -> dict[str, dict[str, float]]:
    """Subject / reference per scale ("1x16") and metric; NaN where the reference is 0 or a
    figure is missing (nothing to judge). ``judged``: a figure below its noise floor counts as
    the floor (the ratios the baseline holds and ``--quick`` compares)."""
    reference, subject = doc["tools"]
    out: dict[str, dict[str, float]] = {}
    for case in doc["cases"]:
        row = {}
        for key, _, _ in METRICS:
            ours = figure(case["figures"][subject], key)
            theirs = figure(case["figures"][reference], key)
            if judged:
                ours, theirs = max(ours, FLOORS[key]), max(theirs, FLOORS[key])
            row[key] = ours / theirs if theirs > 0 and not math.isnan(ours) else math.nan
        out[f"{case['gpus']}x{case['procs']}"] = row
    return out


def regressions(
    current: dict[str, dict[str, float]],
    baseline: dict[str, dict[str, float]],
    tolerance: float = TOLERANCE,
    tolerances: dict[str, float] | None = None,
) -> list[str]:
    """The ratios more than ``tolerance`` worse than the baseline's (all are lower-is-better),
    one line each; scales or metrics missing on either side, and NaN, are not judged. A baseline
    of 0 (vramtop wrote nothing where nvitop did) allows nothing above 0. ``tolerances``:
    per-measure exceptions (default :data:`TOLERANCES`)."""
    words = {key: text for key, text, _ in METRICS}
    allowed = TOLERANCES if tolerances is None else tolerances
    out = []
    for case, row in current.items():
        for key, ratio in row.items():
            was = baseline.get(case, {}).get(key)
            if was is None or math.isnan(was) or math.isnan(ratio):
                continue
            if ratio > was * (1.0 + allowed.get(key, tolerance)):
                out.append(f"{case}: {words.get(key, key)}: ratio {ratio:.2f}, baseline {was:.2f}")
    return out


Ratios = dict[str, dict[str, float]]


def combine(runs: Sequence[Ratios], pick: Callable[..., float]) -> Ratios:
    """Several runs' ratios as one, metric by metric, by ``pick`` over the runs that have it:
    ``min`` for judging (a regression must show in every run), ``max`` for a baseline (the
    worst of its runs, so that one lucky run does not set the bar)."""
    out: Ratios = {}
    for run in runs:
        for case, row in run.items():
            for key, value in row.items():
                if math.isnan(value):
                    continue
                known = out.setdefault(case, {}).get(key)
                out[case][key] = value if known is None else pick(known, value)
    return out


def read_baseline(path: Path) -> dict[str, dict[str, float]]:
    data = json.loads(path.read_text())
    return {
        case: {k: math.nan if v is None else float(v) for k, v in row.items()}
        for case, row in data["ratios"].items()
    }


def write_baseline(path: Path, docs: Sequence[dict[str, Any]]) -> None:
    worst = combine([ratios(doc, judged=True) for doc in docs], max)
    rows = {case: {k: round(v, 4) for k, v in row.items()} for case, row in worst.items()}
    reference, subject = docs[0]["tools"]
    body = {
        "about": f"{subject} / {reference} ratios per scale (GPUsxprocesses), lower is better; "
        "scripts/bench.py --quick fails when one gets more than 50% worse. Written by "
        "scripts/bench.py --write-baseline.",
        "plan": docs[0]["plan"],
        "runs": len(docs),
        "ratios": rows,
    }
    path.write_text(json.dumps(body, indent=2) + "\n")


# -- the report ------------------------------------------------------------------------------------


def _num(value: float, digits: int) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}×"


def main_table(doc: dict[str, Any]) -> str:
    reference, subject = doc["tools"]
    all_ratios = ratios(doc)
    rows = []
    for case in doc["cases"]:
        label = scale(case["gpus"], case["procs"])
        for key, words, digits in METRICS:
            rows.append(
                [
                    label,
                    words,
                    _num(figure(case["figures"][reference], key), digits),
                    _num(figure(case["figures"][subject], key), digits),
                    _ratio(all_ratios[f"{case['gpus']}x{case['procs']}"][key]),
                ]
            )
    return markdown_table(("scale", "measure", reference, subject, "ratio"), rows, left=2)


def process_table(doc: dict[str, Any]) -> str:
    rows = []
    for case in doc["cases"]:
        label = scale(case["gpus"], case["procs"])
        for name in doc["tools"]:
            for proc in case["figures"][name]["procs"]:
                p = Proc(**proc)
                cells = [_num(p.cpu, 4), _num(p.pss_mib, 1), _num(p.uss_mib, 1)]
                rows.append([label, name, p.title, *cells])
    headers = ("scale", "monitor", "process", "CPU (s per s)", "PSS (MiB)", "USS (MiB)")
    return markdown_table(headers, rows, left=3)


def notes(doc: dict[str, Any]) -> list[str]:
    out = []
    for case in doc["cases"]:
        label = scale(case["gpus"], case["procs"])
        for name in doc["tools"]:
            fig = case["figures"][name]
            if fig.get("failed"):
                out.append(f"{label}: {name}: failed: {fig['failed']}".splitlines()[0])
            out += [f"{label}: {n}" for n in fig["notes"]]
            changed = [" ".join(line.split()) for line in fig["idle_changed_lines"]]
            if changed:
                shown = "; ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
                out.append(
                    f"{label}: {name}: {len(changed)} screen lines changed on constant values: "
                    f"{shown}"
                )
    return out


def describe(doc: dict[str, Any]) -> str:
    plan = doc["plan"]
    return (
        f"Measured on a {doc['cpus']}-core machine, 1 Hz, {COLS}x{ROWS}: both monitors (nvitop "
        "in its default auto layout) on the same simulated libnvidia-ml.so.1 and real sleep "
        "processes (half busy); "
        f"{plan['window_s']:.0f} s window (a quarter of the processes growing) after "
        f"{plan['settle_s']:.0f} s settling and a {plan['idle_s']:.0f} s window on constant "
        f"values; start: median of {plan.get('starts', 1)}; key to redraw: Down, median of "
        f"{plan['key_presses']}; CPU and PSS: every "
        "process of each monitor."
        + (
            f" vramtop with {' '.join(VRAMTOP_CONFIG.split())} (nvitop's clock cannot be hidden)."
            if doc["tools"] == ["nvitop", "vramtop"]
            else ""
        )
        + (
            " 16 GPUs: a 160x80 pty (at 45 rows the GPUs leave no room for a process row)."
            if any(c["gpus"] > 8 for c in doc["cases"])
            else ""
        )
    )


def markdown(doc: dict[str, Any]) -> str:
    """The README's block, exactly: regenerate it with ``--from-json FILE --markdown``."""
    return "\n".join(
        [
            describe(doc),
            "",
            main_table(doc),
            "",
            "Per process:",
            "",
            process_table(doc),
        ]
    )


def update_readme(path: Path, block: str) -> None:
    """Replace what stands between the README's two markers with ``block``."""
    text = path.read_text()
    head, begun, rest = text.partition(BEGIN + "\n")
    _, ended, tail = rest.partition(END)
    if not begun or not ended:
        raise SystemExit(f"bench.py: {path} lacks the lines {BEGIN} and {END}")
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")


def report(doc: dict[str, Any]) -> str:
    lines = [describe(doc), "", main_table(doc), "", process_table(doc)]
    found = notes(doc)
    if found:
        lines += ["", "Notes:", *(f"- {n}" for n in found)]
    return "\n".join(lines)


# -- the command -----------------------------------------------------------------------------------


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so sleepers and monitors are stopped by their finally


def measure_all(
    chosen: Sequence[tuple[int, int]], plan: Plan, which: Sequence[Tool]
) -> dict[str, Any]:
    cases = {(g, p): run_case(g, p, plan, which) for g, p in chosen}
    return document(cases, plan, [t.name for t in which])


def judge(
    docs: Sequence[dict[str, Any]], baseline_path: Path, chosen: Sequence[tuple[int, int]],
    plan: Plan, which: Sequence[Tool] | None,
) -> int:  # fmt: skip
    """0 unless a ratio got more than 50% worse than the baseline's, in every run of ``docs``
    and in a confirming re-run (``which``; None: no re-run)."""
    try:
        baseline = read_baseline(baseline_path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"bench.py: no usable baseline in {baseline_path}: {exc}", file=sys.stderr)
        return 2
    judged = combine([ratios(doc, judged=True) for doc in docs], min)
    unjudged = [case for case in judged if case not in baseline]
    if unjudged:
        print(f"\nno baseline for {', '.join(unjudged)} in {baseline_path}: not judged")
    worse = regressions(judged, baseline)
    if worse and which is not None:
        print("\nworse than the baseline; measuring once more to rule out noise:")
        print("\n".join(f"- {w}" for w in worse))
        again = measure_all(chosen, plan, which)
        print("\n" + main_table(again))
        worse = regressions(combine([judged, ratios(again, judged=True)], min), baseline)
    if worse:
        print(f"\nratios more than {TOLERANCE:.0%} worse than {baseline_path.name} "
              f"({BYTES_NOTE}):")  # fmt: skip
        print("\n".join(f"- {w}" for w in worse))
        return 1
    print(f"\nevery ratio within {TOLERANCE:.0%} of {baseline_path.name} ({BYTES_NOTE})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="CI: 1 x 16, short windows, judged against --baseline"
    )
    parser.add_argument(
        "--cases", type=parse_cases, metavar="GxP,...", help="scales, e.g. 8x1024,16x4096"
    )
    parser.add_argument(
        "--window", type=float, metavar="SEC", help="the measured window (default: 20, quick: 8)"
    )
    parser.add_argument("--markdown", action="store_true", help="print the README's block only")
    parser.add_argument(
        "--readme", action="store_true", help="write that block into README.md, between its markers"
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures as JSON")
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        type=Path,
        nargs="+",
        help="measure nothing: report the first --json file; judge the best ratio of all, or "
        "with --write-baseline, write the worst",
    )
    parser.add_argument(
        "--baseline", metavar="FILE", type=Path, help=f"judge the ratios (default with --quick: "
        f"{BASELINE.relative_to(ROOT)})",
    )  # fmt: skip
    parser.add_argument(
        "--write-baseline", action="store_true", help="write this run's ratios as the baseline"
    )
    parser.add_argument(
        "--against",
        metavar="TREE",
        type=Path,
        help="instead of nvitop, the vramtop of another source tree (e.g. `git worktree add "
        "/tmp/old COMMIT`): its figures / this tree's",
    )
    parser.add_argument(
        "--parts", action="store_true", help="only the per-part tables (sampler core, actors)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    if args.parts:
        from bench_parts import run_parts

        try:
            run_parts(args.quick)
        except RuntimeError as exc:
            print(f"\n{exc}")
            return 1
        return 0
    plan = QUICK if args.quick else FULL
    if args.window is not None:
        if not 1 <= args.window <= 600:
            parser.error("--window: 1 to 600 seconds")
        plan = replace(plan, window_s=args.window, idle_s=min(plan.idle_s, args.window))
    chosen = args.cases or list(QUICK_CASES if args.quick else FULL_CASES)
    baseline = args.baseline or (BASELINE if args.quick and not args.against else None)
    which: list[Tool] | None = None
    if args.from_json is not None:
        docs = []
        for path in args.from_json:
            try:
                docs.append(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                print(f"bench.py: cannot read {path}: {exc}", file=sys.stderr)
                return 2
        doc = docs[0]
    else:
        if args.against is not None:
            tree = args.against.resolve()
            which = [
                Tool(tree.name, [sys.executable, "-m", "vramtop", "--refresh-rate", "1"],
                     {"PYTHONPATH": str(tree)}, tree),
                Tool("this tree", [sys.executable, "-m", "vramtop", "--refresh-rate", "1"], {}),
            ]  # fmt: skip
        else:
            try:
                which = tools(nvitop_command())
            except Unavailable as exc:
                print(f"nvitop comparison skipped: {exc}")
                return 0
        doc = measure_all(chosen, plan, which)
        docs = [doc]
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(markdown(doc) if args.markdown else report(doc))
    if args.readme:
        update_readme(README, markdown(doc))
        print(f"\nwritten into {README}")
    if any(f.get("failed") for d in docs for c in d["cases"] for f in c["figures"].values()):
        return 1  # said in the notes
    if args.write_baseline:
        write_baseline(args.baseline or BASELINE, docs)
        print(f"\nbaseline written: {args.baseline or BASELINE}")
        return 0
    if baseline is not None:
        return judge(docs, baseline, chosen, plan, which)
    return 0


if __name__ == "__main__":
    sys.exit(main())
