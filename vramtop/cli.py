"""Command-line entry point: parses flags, loads the config and starts the right mode.

This module holds argparse and the dispatch only; each mode lives in ``vramtop/modes/``: the
live monitor (default; ``modes/monitor.py``, the supervisor and its actors), ``--once`` (one
sample as a table, or ``--json``; also used when stdout is not a terminal; ``modes/once.py``),
``--demo`` (either of them on simulated GPUs), ``--json-stream`` (NDJSON per sample) and the
subcommands ``record`` (headless logging, ``modes/record.py``) and ``replay`` (a recording as
the backend, ``modes/replay.py``). A subcommand must come first; everything else is the
monitor's parser, so ``vramtop --demo`` stays as it was. Every user error is one line on stderr
and a non-zero exit, never a traceback: 2 for bad input (flags, config, scenario, an output
file that is not ours), 1 when the GPUs (or the recording) cannot be read (``modes/exits.py``).

The modes are imported when chosen, so ``--help`` stays quick; this module never imports an
actor (``tests/test_quality.py`` checks it).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence

from vramtop import __version__
from vramtop.config import Config, ConfigError, load_config
from vramtop.gpu.factory import BackendSpec
from vramtop.modes.exits import (
    EXIT_GPU,
    EXIT_OK,
    EXIT_USAGE,
    OutputError,
    UsageError,
    emit,
    fail,
    silence_stdout,
)
from vramtop.render.filters import ProcessFilter, add_filter_arguments

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
  vramtop exporter [--listen 127.0.0.1:9400] [--demo [SCENARIO]]
                                  serve vramtop's view as Prometheus metrics, without a UI
  vramtop --prometheus URL        the fleet view: every exporter's hosts, through Prometheus
  vramtop --remote URL,...        the fleet view straight from exporters (read-only)
  vramtop wrap -- CMD [ARGS...]   run CMD with deep mode on: its Python processes report their
                                  PyTorch allocator figures, as `vramtop.report()` does
  vramtop record --help, vramtop replay --help, vramtop exporter --help    their options

config: $XDG_CONFIG_HOME/vramtop/config.toml (or --config PATH); kill -HUP reloads it, except
  general.history_length and general.process_slots, which take effect at the next start.
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
    p.add_argument(
        "--prometheus",
        metavar="URL",
        help="the fleet view: every host's vramtop exporter, read through this Prometheus "
        "server (e.g. http://prometheus:9090); read-only",
    )
    p.add_argument(
        "--remote",
        metavar="URL,...",
        help="the fleet view straight from vramtop exporters (http://node:9400/metrics,...); "
        "read-only",
    )
    add_filter_arguments(p)
    # `vramtop --demo --once leak`: a scenario name after other flags is still the scenario.
    p.add_argument("late_scenario", nargs="?", metavar="SCENARIO", help=argparse.SUPPRESS)
    return p


def _late_scenario(args: argparse.Namespace) -> None:
    """Take a scenario name that came after other flags (``--demo --once leak``)."""
    name = getattr(args, "late_scenario", None)
    if name is None:
        return
    if args.demo is None:
        raise UsageError(f"unrecognized argument {name!r} (scenario names go with --demo)")
    if args.demo != "default":
        raise UsageError(f"two scenarios given: {args.demo!r} and {name!r}")
    args.demo = name


def _url(text: str, flag: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{flag} takes http:// or https:// URLs (got {text!r})")
    return text.strip()


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


def build_exporter_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="vramtop exporter",
        description="Run headless and serve vramtop's view (memory, processes, phases, OOM "
        "ETAs, verdicts, restarts) as Prometheus metrics at http://LISTEN/metrics. Binds "
        "loopback unless told otherwise.",
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:9400",
        metavar="HOST:PORT",
        help="where to serve /metrics (default 127.0.0.1:9400; 0.0.0.0:9400 for the network)",
    )
    p.add_argument(
        "--hostname", metavar="NAME", help="the hostname label (default: this machine's name)"
    )
    p.add_argument(
        "--demo",
        nargs="?",
        const="default",
        metavar="SCENARIO",
        help="export simulated GPUs (a shipped scenario name or a TOML file)",
    )
    p.add_argument(
        "--speed", type=float, metavar="N", help="with --demo: simulated seconds per real second"
    )
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
    if argv and argv[0] == "wrap":
        from vramtop.modes.wrap import run as run_wrap

        return run_wrap(argv[1:])
    if argv and argv[0] == "record":
        args, run = build_record_parser().parse_args(argv[1:]), _record
    elif argv and argv[0] == "replay":
        args, run = build_replay_parser().parse_args(argv[1:]), _replay
    elif argv and argv[0] == "exporter":
        args, run = build_exporter_parser().parse_args(argv[1:]), _exporter
    else:
        args = build_parser().parse_args(argv)
    from vramtop.export.logfile import LogWriteError

    try:
        return run(args)
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `vramtop --once | head`: the reader went away; not an error worth a traceback.
        silence_stdout()
        return EXIT_OK
    except (OutputError, LogWriteError) as exc:
        silence_stdout()
        return fail(str(exc), EXIT_GPU)


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
    prometheus, remote = getattr(args, "prometheus", None), getattr(args, "remote", None)
    if prometheus is not None or remote is not None:
        if args.demo is not None or (prometheus is not None and remote is not None):
            raise UsageError("--prometheus, --remote and --demo are three different sources")
        if prometheus is not None:
            return BackendSpec("fleet", prometheus=_url(prometheus, "--prometheus")), None
        urls = tuple(_url(u, "--remote") for u in str(remote).split(",") if u.strip())
        if not urls:
            raise UsageError("--remote takes one or more URLs, separated by commas")
        return BackendSpec("fleet", urls=urls), None
    if args.demo is None:
        return BackendSpec("nvml"), None
    try:
        scenario = load_scenario(args.demo)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    return BackendSpec("simulated", scenario=args.demo, speed=args.speed), len(scenario.gpus)


def _main(args: argparse.Namespace) -> int:
    from vramtop.gpu.scenario import list_scenarios
    from vramtop.modes.record import check_log, run_record

    _late_scenario(args)
    if args.list:
        if args.demo is None:
            return fail("--list goes with --demo", EXIT_USAGE)
        emit("\n".join(list_scenarios()))
        return EXIT_OK
    if args.json and not args.once and sys.stdout.isatty():
        return fail("--json goes with --once", EXIT_USAGE)
    if args.json_stream is not None and args.once:
        return fail("--json-stream streams every sample; --once --json prints one", EXIT_USAGE)
    spec, gpu_count = _source(args)
    overrides = overrides_from(args)
    if spec.kind == "fleet":
        # Other machines' processes: every one listed as their node listed it, none to kill.
        fleet = {"display.show_other_users": True, "display.enable_kill": False}
        overrides.update(fleet)
        config = _load_config(args, **fleet)
    else:
        config = _load_config(args)
    for path, fmt in ((args.export_csv, "csv"), (args.json_stream, "ndjson")):
        if path is not None and path != "-" and (problem := check_log(path, fmt)):
            return fail(problem, EXIT_USAGE)
    headless = not sys.stdout.isatty()
    if args.json_stream is not None and (args.json_stream == "-" or headless):
        # A stream with nothing to draw on: the headless recorder, in NDJSON.
        return run_record(spec, args.json_stream, "ndjson", config)
    if args.once or headless:
        from vramtop.modes.once import run_once

        return run_once(
            spec,
            as_json=args.json,
            export_csv=args.export_csv,
            config=config,
            filters=ProcessFilter.from_args(args),
        )
    from vramtop.modes.monitor import run_monitor

    return run_monitor(
        config,
        spec,
        gpu_count,
        args.config,
        overrides,
        export_csv=args.export_csv,
        export_ndjson=args.json_stream,
        filters=ProcessFilter.from_args(args),
    )


def _record(args: argparse.Namespace) -> int:
    from vramtop.modes.record import check_log, format_for, run_record

    if args.count is not None and args.count < 1:
        return fail("--count must be at least 1", EXIT_USAGE)
    spec, _ = _source(args)
    config = _load_config(args)
    fmt = format_for(args.file, args.format)
    if args.file != "-" and (problem := check_log(args.file, fmt)):
        return fail(problem, EXIT_USAGE)
    return run_record(spec, args.file, fmt, config, args.count)


def _exporter(args: argparse.Namespace) -> int:
    from vramtop.modes.exporter import run_exporter

    spec, gpu_count = _source(args)
    config = _load_config(args)
    return run_exporter(
        config, spec, gpu_count, args.listen, args.hostname, args.config, overrides_from(args)
    )


def _replay(args: argparse.Namespace) -> int:
    from vramtop.modes.replay import run_replay

    # A recording is history: every recorded process is shown (they are nobody's to act on
    # now), and the kill flow is off, whatever a PID in the file names today.
    replay_only = {"display.show_other_users": True, "display.enable_kill": False}
    config = _load_config(args, **replay_only)
    overrides = {**overrides_from(args), **replay_only}
    as_json = args.json or not sys.stdout.isatty()
    speed = args.speed if args.speed is not None else (math.inf if as_json else 1.0)
    return run_replay(args.file, speed, as_json, config, args.config, overrides)
