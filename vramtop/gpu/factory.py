"""Which backend to build, as a small picklable description made in the CLI/supervisor and
turned into a live backend in the process that samples (NVML must be initialised after fork)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vramtop.gpu.backend import GpuBackend


@dataclass(frozen=True)
class BackendSpec:
    kind: str  # "nvml" | "simulated" | "replay" | "fleet"
    scenario: str | None = None  # name or path, simulated only
    t0: float | None = None  # scenario start (wall clock); shared by restarted samplers
    # simulated: simulated seconds per real second, None = the scenario's;
    # replay: recorded seconds per real second, None = real time, math.inf = as fast as possible
    speed: float | None = None
    pids: dict[str, int] = field(default_factory=dict)  # scenario process name -> real child pid
    path: str | None = None  # replay only: the recording (t0 = wall time the replay began)
    once: bool = False  # one sample and exit: a lost GPU will not be retried, so say nothing of it
    # fleet only: a Prometheus server's URL, or the exporters' URLs; the GPUs the history holds
    prometheus: str | None = None
    urls: tuple[str, ...] = ()
    max_gpus: int = 0


def make_backend(spec: BackendSpec) -> GpuBackend:
    if spec.kind == "nvml":
        from vramtop.gpu.nvml import NvmlBackend

        return NvmlBackend(retries=not spec.once)
    if spec.kind == "simulated":
        from vramtop.gpu.scenario import load_scenario
        from vramtop.gpu.simulated import SimulatedBackend

        scenario = load_scenario(spec.scenario)
        if spec.speed is not None:
            scenario = scenario.with_speed(spec.speed)
        return SimulatedBackend(scenario, t0=spec.t0, pids=spec.pids or None)
    if spec.kind == "replay":
        from vramtop.gpu.replay import ReplayBackend

        assert spec.path is not None, "a replay needs the recording's path"
        return ReplayBackend(spec.path, 1.0 if spec.speed is None else spec.speed, t0=spec.t0)
    if spec.kind == "fleet":
        from vramtop.gpu.fleet import FleetBackend

        return FleetBackend(spec.prometheus, spec.urls, spec.max_gpus)
    raise ValueError(f"unknown backend {spec.kind!r}")
