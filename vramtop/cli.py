"""Command-line entry point: parses flags, loads the config and starts the right mode.

Modes: the live monitor (default; the supervisor and its actors), ``--once`` (one sample as a
table, or ``--json``; also used when stdout is not a terminal), ``--demo`` (either of them on
simulated GPUs), ``--json-stream`` (NDJSON per sample) and the subcommands ``record`` (headless
logging, ``record.py``) and ``replay`` (a recording as the backend, ``gpu/replay.py``). A
subcommand must come first; everything else is the monitor's parser, so ``vramtop --demo``
stays as it was. Every user error is one line on stderr and a non-zero exit, never a
traceback: 2 for bad input (flags, config, scenario, an output file that is not ours), 1 when
the GPUs (or the recording) cannot be read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from vramtop import __version__
from vramtop.config import Config, ConfigError, load_config
from vramtop.export.logfile import LogFileError
from vramtop.gpu.backend import BackendUnavailable
from vramtop.gpu.factory import BackendSpec, make_backend
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import ProcessRow
from vramtop.procinfo import ProcessTable
from vramtop.render.filters import ProcessFilter, add_filter_arguments

if TYPE_CHECKING:
    from vramtop.gpu.replay import ReplayBackend

EXIT_OK, EXIT_GPU, EXIT_USAGE = 0, 1, 2
ONCE_WARMUP_S = 60.0

DESCRIPTION = """\
The htop for GPU memory: which process holds how much VRAM, how it is moving, and whether the
card is about to run out.

usage:
  vramtop                         live monitor (quit with q)
  vramtop --once [--json]         print one sample and exit (default when stdout is not a tty)
  vramtop --demo [SCENARIO]       the same on simulated GPUs: no driver needed
  vramtop --demo --list           list the shipped scenarios
  vramtop --export-csv FILE       the live monitor, also appending every sample to FILE (CSV)
  vramtop --json-stream [FILE]    one JSON document per sample (NDJSON) on stdout, or to FILE
  vramtop record FILE [--format csv|ndjson] [--demo [SCENARIO]] [--speed N] [--count N]
                                  log every sample to FILE without a UI (nohup, systemd, tmux)
  vramtop replay FILE [--speed N|max] [--json]
                                  play a recording back in the monitor, or (--json) print each
                                  sample with vramtop's analysis of it as NDJSON
  vramtop record --help, vramtop replay --help    their options
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"vramtop: {message} (see vramtop --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="vramtop",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"vramtop {__version__}")
    p.add_argument("--once", action="store_true", help="print one sample and exit")
    p.add_argument("--json", action="store_true", help="with --once: one JSON document")
    p.add_argument(
        "--demo",
        nargs="?",
        const="default",
        metavar="SCENARIO",
        help="run on simulated GPUs: a shipped scenario name or a TOML file (default: default)",
    )
    p.add_argument("--list", action="store_true", help="with --demo: list shipped scenarios")
    p.add_argument(
        "--speed",
        type=float,
        metavar="N",
        help="with --demo: simulated seconds per real second (default: the scenario's)",
    )
    p.add_argument(
        "--refresh-rate", type=float, metavar="SEC", help="seconds between samples (0.5-10)"
    )
    p.add_argument("--no-kill", action="store_true", help="remove the kill feature entirely")
    p.add_argument(
        "--accessible",
        action="store_true",
        help="text labels instead of symbols, ASCII bars, no meaning carried by colour alone",
    )
    p.add_argument("--config", metavar="PATH", help="config file (default: "
                   "$XDG_CONFIG_HOME/vramtop/config.toml)")  # fmt: skip
    p.add_argument(
        "--export-csv",
        metavar="FILE",
        help="also append every sample to FILE as CSV (continues a vramtop CSV, refuses others)",
    )
    p.add_argument(
        "--json-stream",
        nargs="?",
        const="-",
        metavar="FILE",
        help="one JSON document per sample (the --once --json schema), on stdout without a "
        "UI, or appended to FILE while the monitor runs",
    )
    add_filter_arguments(p)
    return p


def _speed(text: str) -> float:
    if text == "max":
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or max (got {text!r})") from None
    if not 0 < value <= 1000 and not math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be in (0, 1000] or max (got {text!r})")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--refresh-rate", type=float, metavar="SEC", help="seconds between samples (0.5-10)"
    )
    p.add_argument("--config", metavar="PATH", help="config file")
    p.set_defaults(no_kill=False, accessible=False)


def build_record_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="vramtop record",
        description="Log every sample to FILE without a UI: for nohup, systemd units and tmux. "
        "SIGINT/SIGTERM stop it after the sample being written; every sample is written whole, "
        "so a crash or kill -9 leaves only complete lines. An existing vramtop recording of "
        "the same format is continued; any other file is refused, never overwritten.",
    )
    p.add_argument("file", metavar="FILE", help="the recording; - for stdout")
    p.add_argument(
        "--format",
        choices=("csv", "ndjson"),
        help="csv (default) or ndjson; default by extension: .ndjson/.jsonl/.json -> ndjson",
    )
    p.add_argument(
        "--demo",
        nargs="?",
        const="default",
        metavar="SCENARIO",
        help="record simulated GPUs (a shipped scenario name or a TOML file)",
    )
    p.add_argument(
        "--speed", type=float, metavar="N", help="with --demo: simulated seconds per real second"
    )
    p.add_argument("--count", type=int, metavar="N", help="stop after N samples")
    _common(p)
    return p


def build_replay_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="vramtop replay",
        description="Play a recording (CSV or NDJSON, as written by vramtop record, "
        "--export-csv or --json-stream) through the same analysis and UI as live GPUs.",
    )
    p.add_argument("file", metavar="FILE", help="the recording")
    p.add_argument(
        "--speed",
        type=_speed,
        metavar="N|max",
        help="recorded seconds per real second; max: as fast as possible "
        "(default: 1, real time; with --json: max)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="no UI: print each sample and vramtop's analysis of it as NDJSON "
        "(also when stdout is not a terminal)",
    )
    _common(p)
    p.add_argument("--accessible", action="store_true", help="text labels, ASCII bars")
    return p


def overrides_from(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    if args.refresh_rate is not None:
        out["general.refresh_rate"] = args.refresh_rate
    if args.no_kill:
        out["display.enable_kill"] = False
    if args.accessible:
        out["display.accessible"] = True
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run: Callable[[argparse.Namespace], int] = _main
    if argv and argv[0] == "record":
        args, run = build_record_parser().parse_args(argv[1:]), _record
    elif argv and argv[0] == "replay":
        args, run = build_replay_parser().parse_args(argv[1:]), _replay
    else:
        args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `vramtop --once | head`: the reader went away; not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


class UsageError(Exception):
    """Bad input (a flag, the config file, a scenario): one line on stderr, exit 2."""


def _load_config(args: argparse.Namespace, **extra: object) -> Config:
    try:
        return load_config(args.config, overrides={**overrides_from(args), **extra})
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _source(args: argparse.Namespace) -> tuple[BackendSpec, int | None]:
    """The backend ``--demo``/``--speed`` ask for, and its GPU count when known up front."""
    from vramtop.gpu.scenario import ScenarioError, load_scenario

    if args.speed is not None and (args.demo is None or not 0 < args.speed <= 1000):
        raise UsageError("--speed needs --demo and a value in (0, 1000]")
    if args.demo is None:
        return BackendSpec("nvml"), None
    try:
        scenario = load_scenario(args.demo)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    return BackendSpec("simulated", scenario=args.demo, speed=args.speed), len(scenario.gpus)


def _fail(message: str, code: int) -> int:
    print(f"vramtop: {message}", file=sys.stderr)
    return code


def _main(args: argparse.Namespace) -> int:
    from vramtop.gpu.scenario import list_scenarios

    if args.list:
        if args.demo is None:
            return _fail("--list goes with --demo", EXIT_USAGE)
        print("\n".join(list_scenarios()))
        return EXIT_OK
    if args.json and not args.once and sys.stdout.isatty():
        return _fail("--json goes with --once", EXIT_USAGE)
    if args.json_stream is not None and args.once:
        return _fail("--json-stream streams every sample; --once --json prints one", EXIT_USAGE)
    spec, gpu_count = _source(args)
    config = _load_config(args)

    for path, fmt in ((args.export_csv, "csv"), (args.json_stream, "ndjson")):
        if path is not None and path != "-" and (problem := _check_log(path, fmt)):
            return _fail(problem, EXIT_USAGE)
    headless = not sys.stdout.isatty()
    if args.json_stream is not None and (args.json_stream == "-" or headless):
        # A stream with nothing to draw on: the headless recorder, in NDJSON.
        return run_record(spec, args.json_stream, "ndjson", config)
    if args.once or headless:
        if spec.kind == "simulated":
            # One sample of a scenario is most telling once it has settled (servers loaded).
            spec = BackendSpec("simulated", args.demo, time.time() - ONCE_WARMUP_S, args.speed)
        return run_once(
            spec,
            as_json=args.json,
            export_csv=args.export_csv,
            config=config,
            filters=ProcessFilter.from_args(args),
        )
    return run_monitor(
        config,
        spec,
        gpu_count,
        args.config,
        overrides_from(args),
        export_csv=args.export_csv,
        export_ndjson=args.json_stream,
        filters=ProcessFilter.from_args(args),
    )


def _check_log(path: str, fmt: str) -> str:
    """Refuse a file that is not ours before anything starts (it is then left untouched)."""
    from vramtop.record import open_log

    try:
        open_log(path, fmt).close()
    except LogFileError as exc:
        return str(exc)
    return ""


def _record(args: argparse.Namespace) -> int:
    from vramtop.record import format_for

    if args.count is not None and args.count < 1:
        return _fail("--count must be at least 1", EXIT_USAGE)
    spec, _ = _source(args)
    config = _load_config(args)
    fmt = format_for(args.file, args.format)
    if args.file != "-" and (problem := _check_log(args.file, fmt)):
        return _fail(problem, EXIT_USAGE)
    return run_record(spec, args.file, fmt, config, args.count)


def run_record(
    spec: BackendSpec, path: str, fmt: str, config: Config, count: int | None = None
) -> int:
    """The headless recorder (``record.py``): backend -> one whole sample per interval, with
    the enricher's and analyzer's results for it."""
    from vramtop.record import open_log, record

    backend = make_backend(spec)
    try:
        backend.open()
    except BackendUnavailable as exc:
        return _fail(str(exc), EXIT_GPU)
    try:
        try:
            log = open_log(path, fmt)
        except LogFileError as exc:
            return _fail(str(exc), EXIT_USAGE)
        where = "stdout" if path == "-" else path
        interval = config.general.refresh_rate
        print(
            f"vramtop: recording to {where} ({fmt}) every {interval:g} s; Ctrl-C or SIGTERM stops",
            file=sys.stderr,
            flush=True,
        )
        try:
            written = record(backend, log, interval, max_samples=count, config=config)
        finally:
            log.close()
    finally:
        backend.close()
    print(f"vramtop: {written} samples written to {where}", file=sys.stderr)
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from vramtop.gpu.replay import RecordingError, ReplayBackend

    # A recording is history: every recorded process is shown (they are nobody's to act on
    # now), and the kill flow is off, whatever a PID in the file names today.
    replay_only = {"display.show_other_users": True, "display.enable_kill": False}
    config = _load_config(args, **replay_only)
    overrides = {**overrides_from(args), **replay_only}
    path = os.path.abspath(args.file)
    as_json = args.json or not sys.stdout.isatty()
    speed = args.speed if args.speed is not None else (math.inf if as_json else 1.0)
    backend = ReplayBackend(args.file, speed)
    try:
        backend.open()
    except RecordingError as exc:
        return _fail(str(exc), EXIT_GPU)
    if as_json:
        return run_replay_json(backend, config)
    first = backend.sample()
    backend.close()
    gpu_count = max((g.index for g in first.gpus), default=0) + 1
    spec = BackendSpec("replay", t0=time.time(), speed=speed, path=path)
    return run_monitor(config, spec, gpu_count, args.config, overrides)


def run_replay_json(backend: ReplayBackend, config: Config) -> int:
    """``replay --json``: the recorded samples with their analysis, one line each."""
    from vramtop.export.ndjson import dump_line
    from vramtop.replay_analysis import analyze_stream

    out = sys.stdout.buffer
    try:
        for doc in analyze_stream(backend.samples(), config):
            out.write(dump_line(doc))
            out.flush()
    finally:
        backend.close()
    return EXIT_OK


def run_once(
    spec: BackendSpec,
    as_json: bool,
    export_csv: str | None = None,
    config: Config | None = None,
    filters: ProcessFilter | None = None,
) -> int:
    """One sample, with what /proc tells about its processes and the analysis of that single
    sample (no history: phases are "unknown", only the temperature warning can fire)."""
    from vramtop.enrich.enricher import Enricher
    from vramtop.enrich.users import aggregate_other_users, is_other_user
    from vramtop.export.csvlog import CsvLog
    from vramtop.export.document import to_document, to_table
    from vramtop.replay_analysis import StreamAnalyzer

    backend = make_backend(spec)
    try:
        backend.open()
    except BackendUnavailable as exc:
        return _fail(str(exc), EXIT_GPU)
    try:
        snapshot = backend.sample()
        rows = _rows_for(snapshot, ProcessTable())
        # Read /proc while the processes (a demo's children too) are still there.
        enricher = Enricher()
        enricher.update(rows)
        enrichments = enricher.known
    finally:
        backend.close()
    if filters is not None and filters.active:
        snapshot, rows = _filtered(snapshot, rows, filters)
    others = {}
    if config is not None and not config.display.show_other_users:
        # The security model: other users' processes are counted, not listed.
        others = aggregate_other_users(rows, enrichments, snapshot)
        shown = [r for r in rows if not is_other_user(r, enrichments)]
        snapshot = _keep_rows(snapshot, shown)
        rows = shown
    prealloc = {k: e.preallocates for k, e in enrichments.items()}
    analysis = StreamAnalyzer(config or Config(), window=1).step(snapshot, tuple(rows), prealloc)
    if export_csv is not None:
        try:
            with CsvLog(export_csv) as log:
                log.write(snapshot, rows, enrichments=enrichments, analysis=analysis)
        except LogFileError as exc:
            return _fail(str(exc), EXIT_USAGE)
    if as_json:
        print(json.dumps(to_document(snapshot, rows, enrichments, analysis, others), indent=2))
    else:
        print(to_table(snapshot, rows, others))
    return EXIT_OK


def _filtered(
    snapshot: Snapshot, rows: list[ProcessRow], filters: ProcessFilter
) -> tuple[Snapshot, list[ProcessRow]]:
    """``--gpu/--user/--pid/--only-visible`` applied to one sample, as the monitor applies them."""
    gpus = tuple(g for g in snapshot.gpus if filters.gpu_shown(g))
    shown = frozenset(g.index for g in gpus)
    kept = [r for r in rows if filters.row_shown(r, shown)]
    return _keep_rows(dataclasses.replace(snapshot, gpus=gpus), kept), kept


def _keep_rows(snapshot: Snapshot, rows: list[ProcessRow]) -> Snapshot:
    """The snapshot with only the processes of ``rows``."""
    keys = {(r.identity.pid, r.gpu_index) for r in rows}
    procs = tuple(p for p in snapshot.processes if (p.pid, p.gpu_index) in keys)
    return dataclasses.replace(snapshot, processes=procs)


def _rows_for(snapshot: Snapshot, table: ProcessTable) -> list[ProcessRow]:
    from vramtop.actors.sampler import build_rows

    facts = table.update(p.pid for p in snapshot.processes)
    return list(build_rows(snapshot, facts, {}))


def run_monitor(
    config: Config,
    spec: BackendSpec,
    gpu_count: int | None,
    config_path: str | None,
    overrides: dict[str, object],
    export_csv: str | None = None,
    export_ndjson: str | None = None,
    filters: ProcessFilter | None = None,
) -> int:
    from vramtop.actors.analyzer import AnalyzerCore
    from vramtop.actors.enricher import EnricherCore
    from vramtop.actors.exporter import ExporterCore
    from vramtop.actors.render import RenderCore
    from vramtop.actors.routes import STATE_ROUTES
    from vramtop.actors.sampler import SamplerCore
    from vramtop.actors.supervisor import ChildSpec, ShmShape, Supervisor
    from vramtop.gpu.children import ChildPool
    from vramtop.gpu.probe import probe_gpu_count
    from vramtop.gpu.scenario import load_scenario

    pool: ChildPool | None = None
    if spec.kind == "nvml":
        # NVML is initialised in a short-lived child, never in the supervisor (design trap).
        found = probe_gpu_count(spec)
        if isinstance(found, str):
            return _fail(found, EXIT_GPU)
        gpu_count = found
    elif spec.kind == "replay":
        pass  # the recording is the whole world: no driver, no child processes
    else:
        scenario = load_scenario(spec.scenario)
        pool = ChildPool()
        pids = pool.start(scenario.child_specs())
        spec = BackendSpec("simulated", spec.scenario, time.time(), spec.speed, pids)
    assert gpu_count is not None
    general = config.general
    try:
        backend_spec = spec
        children = [
            ChildSpec("sampler", lambda: SamplerCore(backend_spec)),
            ChildSpec(
                "render", lambda: RenderCore(filters=filters), essential=True, owns_terminal=True
            ),
            ChildSpec("analyzer", AnalyzerCore),
        ]
        if spec.kind != "replay":  # recorded PIDs are not this machine's processes
            children.append(ChildSpec("enricher", EnricherCore))
        if export_csv is not None or export_ndjson is not None:
            exporter = ChildSpec(
                "exporter", lambda: ExporterCore(export_csv, export_ndjson), every_state=True
            )
            children.append(exporter)
        supervisor = Supervisor(
            config,
            children,
            config_path=config_path,
            overrides=overrides,
            housekeeping=pool.reap if pool is not None else None,
            shm=ShmShape(general.history_length, gpu_count, general.process_slots),
            state_routes=STATE_ROUTES,
        )
        return supervisor.run()
    finally:
        if pool is not None:
            pool.close()
