"""Command-line entry point: parses flags, loads the config and starts the right mode.

Modes: the live monitor (default; the supervisor and its actors), ``--once`` (one sample as a
table, or ``--json``; also used when stdout is not a terminal) and ``--demo`` (either of them on
simulated GPUs). Every user error is one line on stderr and a non-zero exit, never a traceback:
2 for bad input (flags, config, scenario), 1 when the GPUs cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from vramtop import __version__
from vramtop.config import Config, ConfigError, load_config
from vramtop.gpu.backend import BackendUnavailable
from vramtop.gpu.factory import BackendSpec, make_backend
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import ProcessRow
from vramtop.procinfo import ProcessTable

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
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `vramtop --once | head`: the reader went away; not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"vramtop: {message}", file=sys.stderr)
    return code


def _main(args: argparse.Namespace) -> int:
    from vramtop.gpu.scenario import ScenarioError, list_scenarios, load_scenario

    if args.list:
        if args.demo is None:
            return _fail("--list goes with --demo", EXIT_USAGE)
        print("\n".join(list_scenarios()))
        return EXIT_OK
    if args.json and not args.once and sys.stdout.isatty():
        return _fail("--json goes with --once", EXIT_USAGE)
    if args.speed is not None and (args.demo is None or not 0 < args.speed <= 1000):
        return _fail("--speed needs --demo and a value in (0, 1000]", EXIT_USAGE)
    try:
        config = load_config(args.config, overrides=overrides_from(args))
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)

    if args.demo is not None:
        try:
            scenario = load_scenario(args.demo)
        except ScenarioError as exc:
            return _fail(str(exc), EXIT_USAGE)
        spec = BackendSpec("simulated", scenario=args.demo, speed=args.speed)
        gpu_count: int | None = len(scenario.gpus)
    else:
        spec = BackendSpec("nvml")
        gpu_count = None

    if args.once or not sys.stdout.isatty():
        if spec.kind == "simulated":
            # One sample of a scenario is most telling once it has settled (servers loaded).
            spec = BackendSpec("simulated", args.demo, time.time() - ONCE_WARMUP_S, args.speed)
        return run_once(spec, as_json=args.json)
    return run_monitor(config, spec, gpu_count, args.config, overrides_from(args))


def run_once(spec: BackendSpec, as_json: bool) -> int:
    from vramtop.export.document import to_document, to_table

    backend = make_backend(spec)
    try:
        backend.open()
    except BackendUnavailable as exc:
        return _fail(str(exc), EXIT_GPU)
    try:
        snapshot = backend.sample()
        rows = _rows_for(snapshot, ProcessTable())
    finally:
        backend.close()
    if as_json:
        print(json.dumps(to_document(snapshot, rows), indent=2))
    else:
        print(to_table(snapshot, rows))
    return EXIT_OK


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
) -> int:
    from vramtop.actors.render import RenderCore
    from vramtop.actors.sampler import SamplerCore
    from vramtop.actors.supervisor import ChildSpec, Supervisor
    from vramtop.gpu.children import ChildPool
    from vramtop.gpu.probe import probe_gpu_count
    from vramtop.gpu.scenario import load_scenario
    from vramtop.shm import ShmSegment, cleanup_stale

    pool: ChildPool | None = None
    if spec.kind == "nvml":
        # NVML is initialised in a short-lived child, never in the supervisor (design trap).
        found = probe_gpu_count(spec)
        if isinstance(found, str):
            return _fail(found, EXIT_GPU)
        gpu_count = found
    else:
        scenario = load_scenario(spec.scenario)
        pool = ChildPool()
        pids = pool.start(scenario.child_specs())
        spec = BackendSpec("simulated", spec.scenario, time.time(), spec.speed, pids)
    assert gpu_count is not None
    cleanup_stale()
    segment = ShmSegment.create(
        config.general.history_length, max(1, gpu_count), config.general.process_slots
    )
    try:
        backend_spec = spec
        supervisor = Supervisor(
            config,
            [
                ChildSpec("sampler", lambda: SamplerCore(backend_spec)),
                ChildSpec("render", RenderCore, essential=True, owns_terminal=True),
            ],
            shm_name=segment.name,
            config_path=config_path,
            overrides=overrides,
            housekeeping=pool.reap if pool is not None else None,
        )
        return supervisor.run()
    finally:
        segment.close()
        segment.unlink()
        if pool is not None:
            pool.close()
