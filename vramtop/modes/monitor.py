"""The live monitor (``vramtop``, ``--demo``, ``replay FILE``): the supervisor and its actors.

Data flow: the backend spec (NVML, simulated GPUs with their child processes, or a recording)
-> the GPU count (probed in a short-lived child for NVML: never initialise NVML before fork)
-> :class:`vramtop.actors.supervisor.Supervisor`, which owns the shared-memory segment (sized
from ``history_length``, the GPU count and ``process_slots``; created before the first actor,
unlinked on every way out) and the state channels of ``actors/routes.py``, with the sampler,
render, analyzer, enricher, scraper and deep (none of these three for a replay: recorded PIDs
are not this machine's processes) and, when a file export is asked for, exporter actors. The
demo's child processes are stopped whatever way the supervisor returns.
"""

from __future__ import annotations

import time

from vramtop.actors.routes import STATE_ROUTES
from vramtop.actors.supervisor import ChildSpec, ShmShape, Supervisor, lazy
from vramtop.config import Config
from vramtop.gpu.children import ChildPool
from vramtop.gpu.factory import BackendSpec
from vramtop.gpu.probe import probe_gpu_count
from vramtop.gpu.scenario import load_scenario
from vramtop.modes.exits import EXIT_GPU, fail
from vramtop.render.filters import ProcessFilter


def prepare_backend(
    spec: BackendSpec, gpu_count: int | None
) -> tuple[BackendSpec, int, ChildPool | None] | str:
    """What the supervisor's sampler needs before any actor starts: the GPU count (probed in a
    short-lived child for NVML: never initialise NVML before fork) and, for a demo, its child
    processes (the caller closes the pool). A string says why the GPUs cannot be read."""
    pool: ChildPool | None = None
    if spec.kind == "nvml":
        found = probe_gpu_count(spec)
        if isinstance(found, str):
            return found
        gpu_count = found
    elif spec.kind == "simulated":
        scenario = load_scenario(spec.scenario)
        pool = ChildPool()
        pids = pool.start(scenario.child_specs())
        spec = BackendSpec("simulated", spec.scenario, time.time(), spec.speed, pids)
    elif spec.kind == "fleet":
        # Other machines' GPUs, read over HTTP here (no driver to keep out of this process);
        # room for a few that join later, since the history is sized once.
        from dataclasses import replace

        from vramtop.gpu.backend import BackendUnavailable
        from vramtop.gpu.factory import make_backend

        probe = make_backend(spec)
        try:
            probe.open()
            found = len(probe.sample().gpus)
        except BackendUnavailable as exc:
            return str(exc)
        finally:
            probe.close()
        gpu_count = found + 8
        spec = replace(spec, max_gpus=gpu_count)
    # A replay's recording is the whole world: no driver, no child processes.
    return spec, max(1, gpu_count or 0), pool


def local_process_children() -> list[ChildSpec]:
    """The actors that read this machine's processes (/proc, servers, deep-mode sockets): not
    for a replay or the fleet view, whose PIDs are not this machine's."""
    return [
        ChildSpec("enricher", lazy("vramtop.actors.enricher", "EnricherCore")),
        ChildSpec("scraper", lazy("vramtop.scrape.core", "ScraperCore")),
        ChildSpec("deep", lazy("vramtop.deep.core", "DeepCore")),
    ]


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
    prepared = prepare_backend(spec, gpu_count)
    if isinstance(prepared, str):
        return fail(prepared, EXIT_GPU)
    spec, gpu_count, pool = prepared
    general = config.general
    try:
        # Each actor imports its own modules after the fork (``lazy``); the supervisor holds
        # only what they share (numpy, the messages, the shared memory), frozen before forking.
        children = [
            ChildSpec("sampler", lazy("vramtop.actors.sampler", "SamplerCore", spec)),
            ChildSpec(
                "render",
                lazy("vramtop.actors.render", "RenderCore", filters=filters),
                essential=True,
                owns_terminal=True,
            ),
        ]
        if spec.kind != "fleet":  # the fleet view shows what each node judged itself
            children.append(ChildSpec("analyzer", lazy("vramtop.actors.analyzer", "AnalyzerCore")))
        if spec.kind not in ("replay", "fleet"):  # their PIDs are not this machine's processes
            children += local_process_children()
        if export_csv is not None or export_ndjson is not None:
            exporter = ChildSpec(
                "exporter",
                lazy("vramtop.actors.exporter", "ExporterCore", export_csv, export_ndjson),
                every_state=True,
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
