"""``vramtop exporter``: the actor system without a screen, publishing its frames to Prometheus.

Data flow: as the monitor (``modes/monitor.py``: the backend prepared, the supervisor owning the
shared memory) with the sampler, analyzer, enricher and deep actors, and the metrics actor
(``actors/metrics.py``) in place of the render process. It binds loopback unless told
otherwise, and says so in one line when it is told to bind elsewhere; the actors' log lines go
to stderr as they come (there is no screen to keep them off).
"""

from __future__ import annotations

import sys

from vramtop.actors.metrics import MetricsCore, is_loopback, parse_listen
from vramtop.actors.routes import STATE_ROUTES
from vramtop.actors.supervisor import ChildSpec, ShmShape, Supervisor, lazy
from vramtop.config import Config
from vramtop.gpu.factory import BackendSpec
from vramtop.modes.exits import EXIT_GPU, EXIT_USAGE, fail
from vramtop.modes.monitor import local_process_children, prepare_backend


def check_listen(listen: str) -> str:
    """'' when ``listen`` can be used; else the one-line reason (a port taken, a bad form)."""
    import socket

    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        return str(exc)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return f"cannot listen on {listen}: {exc.strerror or exc}"
    return ""


def run_exporter(
    config: Config,
    spec: BackendSpec,
    gpu_count: int | None,
    listen: str,
    hostname: str | None,
    config_path: str | None,
    overrides: dict[str, object],
) -> int:
    problem = check_listen(listen)
    if problem:
        return fail(problem, EXIT_USAGE)
    host, _ = parse_listen(listen)
    if not is_loopback(host):
        print(
            f"vramtop: exporter listening on {listen}, beyond this machine: anyone who can reach "
            "it reads process names and users",
            file=sys.stderr,
        )
    prepared = prepare_backend(spec, gpu_count)
    if isinstance(prepared, str):
        return fail(prepared, EXIT_GPU)
    spec, gpu_count, pool = prepared
    general = config.general
    print(f"vramtop: exporter on http://{listen}/metrics", file=sys.stderr, flush=True)
    try:
        backend_spec = spec
        children = [
            ChildSpec("sampler", lazy("vramtop.actors.sampler", "SamplerCore", backend_spec)),
            ChildSpec("analyzer", lazy("vramtop.actors.analyzer", "AnalyzerCore")),
            ChildSpec("metrics", lambda: MetricsCore(listen, hostname), essential=True),
        ]
        if spec.kind != "replay":
            children += local_process_children()
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
