"""The simulated backend: what a user of ``vramtop --demo`` sees, sample by sample, and the real
child processes that stand in for GPU processes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from vramtop.gpu.children import ChildPool, ChildSpec, process_alive
from vramtop.gpu.scenario import Scenario, load_scenario, parse_scenario
from vramtop.gpu.simulated import SYNTHETIC_PID_BASE, SimulatedBackend, Timeline
from vramtop.gpu.snapshot import GpuState, ProcessType, Snapshot
from vramtop.na import NA

MIB = 1 << 20
T0 = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Sim:
    """A backend on a hand-driven clock, read at simulated times."""

    def __init__(self, scenario: Scenario, real_children: bool = False) -> None:
        self.scenario = scenario
        self.clock = Clock()
        self.backend = SimulatedBackend(
            scenario, t0=T0, clock=self.clock, real_children=real_children
        )
        self.backend.open()

    def at(self, t: float) -> Snapshot:
        self.clock.now = T0 + t / self.scenario.speed
        return self.backend.sample()

    def names(self, snap: Snapshot) -> set[str]:
        by_pid = {SYNTHETIC_PID_BASE + p.index: p.name for p in self.scenario.processes}
        by_pid.update({pid: name for name, pid in self.backend.pids.items()})
        return {by_pid[p.pid] for p in snap.processes}


def sim(text: str) -> Sim:
    return Sim(parse_scenario(text, "test.toml"))


GPU = """
[[gpu]]
name = "NVIDIA A10"
memory_mib = 10000
reserved_mib = 100
base_used_mib = 400
"""


def proc(name: str, memory: str, extra: str = "", gpu: str = "0") -> str:
    return f'\n[[process]]\nname = "{name}"\ngpu = {gpu}\n{extra}\nmemory = {{ {memory} }}\n'


def test_processes_appear_at_start_and_leave_at_stop() -> None:
    s = sim(
        GPU
        + proc("always", 'curve = "constant", mib = 100')
        + proc("late", 'curve = "constant", mib = 200', "start = 10")
        + proc("brief", 'curve = "constant", mib = 300', "stop = 20")
    )
    assert s.names(s.at(0)) == {"always", "brief"}
    assert s.names(s.at(15)) == {"always", "late", "brief"}
    assert s.names(s.at(25)) == {"always", "late"}
    assert s.at(25).gpus[0].memory_used == (100 + 200 + 400) * MIB


def test_curve_time_starts_with_the_process() -> None:
    s = sim(GPU + proc("late", 'curve = "linear", base_mib = 1000, rate_mib_s = 10', "start = 30"))
    snap = s.at(40)
    assert snap.processes[0].used_bytes == (1000 + 10 * 10) * MIB


def test_memory_accounting_on_every_gpu_of_the_default_demo() -> None:
    s = Sim(load_scenario("default"))
    for t in (0, 37, 300, 901):
        snap = s.at(t)
        for g, spec in zip(snap.gpus, s.scenario.gpus, strict=True):
            procs = [p for p in s.scenario.processes if spec.index in p.gpus]
            visible = snap.processes_on(g.index)
            assert g.memory_total == spec.total_mib * MIB
            expected_used = sum(
                s.backend._timeline.memory_mib(p, spec.index, t)
                for p in procs
                if any(v.pid == SYNTHETIC_PID_BASE + p.index for v in visible)
            )
            assert g.memory_used == (expected_used + round(spec.base_used_mib)) * MIB
            assert g.memory_free == g.memory_total - g.memory_reserved - g.memory_used
            if "process_memory" not in spec.na:
                assert (
                    g.memory_used
                    == snap.process_memory_sum(g.index) + round(spec.base_used_mib) * MIB
                )


def test_oom_kills_the_leaking_process_when_the_gpu_is_full() -> None:
    base, rate, start, other = 1000, 50, 10, 2500
    s = sim(
        GPU
        + proc(
            "leak", f'curve = "linear", base_mib = {base}, rate_mib_s = {rate}', f"start = {start}"
        )
        + proc("steady", f'curve = "constant", mib = {other}')
    )
    gpu = s.scenario.gpus[0]
    capacity = gpu.total_mib - gpu.reserved_mib - gpu.base_used_mib
    expected = start + (capacity - other - base) / rate
    assert s.names(s.at(expected - 1)) == {"leak", "steady"}
    after = s.at(expected + 1)
    assert s.names(after) == {"steady"}
    assert after.gpus[0].memory_used == (other + gpu.base_used_mib) * MIB
    kill = s.backend._timeline.kill_time(s.scenario.processes[0])
    assert kill is not None and abs(kill - expected) < 0.05
    # Never more in use than the GPU has, on the way there.
    for t in range(0, int(expected) + 3):
        assert s.at(t).gpus[0].memory_free >= 0


def test_shipped_leak_and_demo_training_run_hit_oom() -> None:
    leak = Sim(load_scenario("leak"))
    assert "leaky" in leak.names(leak.at(10))
    assert leak.names(leak.at(60)) == {"steady"}

    demo = Sim(load_scenario("default"))
    train = next(p for p in demo.scenario.processes if p.name == "train")
    demo.at(20 * 60)
    kill = demo.backend._timeline.kill_time(train)
    assert kill is not None
    assert 10 * 60 <= kill / demo.scenario.speed <= 15 * 60  # real seconds
    assert "train" not in demo.names(demo.at(kill + 1))
    assert "batch-infer" in demo.names(demo.at(kill + 1))  # the leak is blamed, not its neighbour


def test_lost_gpu_and_recovery() -> None:
    s = Sim(load_scenario("lost"))
    before, during, after = s.at(3), s.at(10), s.at(25)
    assert [g.state for g in before.gpus] == [GpuState.OK, GpuState.OK]
    assert during.gpus[1].lost and during.gpus[1].memory_used is NA
    assert during.gpus[1].note
    assert not during.gpus[0].lost and isinstance(during.gpus[0].memory_used, int)
    assert during.processes_on(1) == ()
    assert during.processes_on(0)
    assert not after.gpus[1].lost and after.processes_on(1)


def test_na_fields_are_na_and_the_rest_is_reported() -> None:
    s = sim(
        GPU.replace("base_used_mib = 400", 'na = ["fan", "power", "process_memory", "mig_mode"]')
        + proc("p", 'curve = "constant", mib = 700', "sm_util = 50")
    )
    g = s.at(5).gpus[0]
    assert g.fan_percent is NA and g.power_w is NA and g.mig_mode is NA
    assert "fan" in g.note
    assert isinstance(g.temperature_c, int) and isinstance(g.util_gpu, int)
    p = s.at(5).processes[0]
    assert p.used_bytes is NA
    assert g.memory_used == 700 * MIB  # the GPU still knows its used memory


def test_reserved_na_behaves_like_nvml_v1() -> None:
    s = sim(
        GPU.replace("base_used_mib = 400", 'na = ["reserved"]')
        + proc("p", 'curve = "constant", mib = 700')
    )
    g = s.at(5).gpus[0]
    assert g.memory_reserved is NA
    assert g.memory_used == (700 + 100) * MIB
    assert g.memory_free == g.memory_total - g.memory_used


def test_gpu_numbers_are_plausible_and_slowly_varying() -> None:
    s = Sim(load_scenario("default"))
    temps = []
    for t in range(0, 120):
        snap = s.at(t)
        for g, spec in zip(snap.gpus, s.scenario.gpus, strict=True):
            assert 0 <= g.util_gpu <= 100
            assert spec.idle_temp_c - 1 <= g.temperature_c <= spec.max_temp_c + 1
            assert 0 < g.power_w <= g.power_limit_w
            assert g.pstate == 0  # every GPU has processes
        temps.append(snap.gpus[1].temperature_c)
    assert max(abs(a - b) for a, b in itertools.pairwise(temps)) <= 3
    idle = sim(GPU)
    quiet = idle.at(100).gpus[0]
    assert quiet.util_gpu == 0 and quiet.pstate == 8
    assert quiet.power_w < s.at(100).gpus[1].power_w


def test_process_types_pids_and_multi_gpu() -> None:
    s = Sim(load_scenario("default"))
    snap = s.at(60)
    by_name: dict[str, list[int]] = {}
    for p in snap.processes:
        by_name.setdefault(s.names(Snapshot(0, "", (), (p,))).pop(), []).append(p.gpu_index)
        assert p.pid >= SYNTHETIC_PID_BASE
    assert by_name["generate"] == [2, 3]
    types = {p.type_label for p in snap.processes}
    assert {"C", "G", "C+G"} <= types
    assert s.at(61).processes[0].types == (ProcessType.COMPUTE,)


def test_restart_continues_the_same_curves() -> None:
    """A sampler restarted with the same t0 reports what the first one would have."""
    scenario = load_scenario("default")
    first = Sim(scenario)
    history = [first.at(t) for t in range(0, 900, 7)]
    second = Sim(scenario)  # jumps straight to late times, OOM included
    for snap in reversed(history):
        again = second.at(snap.timestamp - T0)
        assert again.gpus == snap.gpus
        assert again.processes == snap.processes


def test_wall_clock_runs_at_scenario_speed() -> None:
    scenario = load_scenario("leak")
    assert scenario.speed == 2.0
    clock = Clock()
    backend = SimulatedBackend(scenario, t0=T0, clock=clock, real_children=False)
    clock.now = T0 + 10  # 10 real seconds = 20 simulated
    assert backend.time_at(clock.now) == 20.0
    snap = backend.sample()
    expected = Timeline(scenario).memory_mib(scenario.processes[0], 0, 20.0)
    assert snap.processes[0].used_bytes == expected * MIB
    assert snap.timestamp == clock.now


def test_stress_scenario_sample_is_cheap_enough_for_1hz() -> None:
    s = Sim(load_scenario("stress"))
    s.at(0)
    # CPU time of this process, not wall time: other jobs on a shared machine do not count.
    started = time.process_time()
    for t in range(60, 65):
        snap = s.at(t)
    per_sample = (time.process_time() - started) / 5
    print(f"stress: {per_sample * 1000:.1f} ms CPU per sample of 8 GPUs x 1024 processes")
    assert len(snap.gpus) == 8 and len(snap.processes) == 1024
    assert per_sample < 1.0  # the whole CPU budget of one 1 Hz tick


# -- real child processes --------------------------------------------------------------------


def wait_until(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.fixture
def pool() -> Iterator[ChildPool]:
    p = ChildPool()
    yield p
    p.close(grace=0.2)


ARGVS = {
    "vllm": ("vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--port", "8000"),
    "train": ("python", "train.py", "--optimizer", "adamw"),
    "eval": ("python", "eval.py", "--suite", "mmlu"),
    "ollama": ("ollama", "serve"),
}


def test_children_start_in_parallel_and_look_like_their_argv(pool: ChildPool) -> None:
    started = time.monotonic()
    pids = pool.start(ChildSpec(name, argv) for name, argv in ARGVS.items())
    elapsed = time.monotonic() - started
    assert set(pids) == set(ARGVS)
    created = []
    for name, pid in pids.items():
        p = psutil.Process(pid)
        assert p.cmdline() == list(ARGVS[name])
        assert p.name() == os.path.basename(ARGVS[name][0])
        assert p.ppid() == os.getpid()
        created.append(p.create_time())
    # Started one after another, the spread of start times would be most of the total.
    assert max(created) - min(created) < max(elapsed / 2, 0.035)


def test_children_die_on_terminate_and_sigterm_can_be_ignored(pool: ChildPool) -> None:
    pids = pool.start(
        [ChildSpec("polite", ("python", "a.py")), ChildSpec("stubborn", ("python", "b.py"), True)]
    )
    assert pool.terminate("polite") and pool.terminate("stubborn")
    assert wait_until(lambda: not pool.alive(pids["polite"]))
    time.sleep(0.2)
    assert pool.alive(pids["stubborn"])
    assert pool.terminate("stubborn", signal.SIGKILL)
    assert wait_until(lambda: not pool.alive(pids["stubborn"]))
    assert not pool.terminate("polite")  # nothing left to signal


def test_close_escalates_to_sigkill() -> None:
    pool = ChildPool()
    pids = pool.start([ChildSpec("stubborn", ("python", "b.py"), True)])
    pool.close(grace=0.2)
    assert not process_alive(pids["stubborn"])


def test_children_die_with_their_parent() -> None:
    code = (
        "import sys, time\n"
        "from vramtop.gpu.children import ChildPool, ChildSpec\n"
        "pids = ChildPool().start([ChildSpec('a', ('python', 'a.py')),"
        " ChildSpec('b', ('python', 'b.py'), True)])\n"
        "print(*pids.values(), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(x) for x in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(process_alive(pid) for pid in pids)
        parent.kill()  # SIGKILL: no chance to clean up
        parent.wait()
        assert wait_until(lambda: not any(process_alive(pid) for pid in pids))
    finally:
        parent.kill()
        parent.wait()


SMALL_REAL = (
    GPU
    + proc("server", 'curve = "constant", mib = 1000', 'argv = ["python", "server.py"]')
    + proc("job", 'curve = "constant", mib = 500', 'argv = ["python", "job.py"]\nstop = 30')
    + proc("ghost", 'curve = "constant", mib = 200')
)


def test_backend_with_real_children_reports_their_pids_and_notices_kills() -> None:
    s = Sim(parse_scenario(SMALL_REAL, "real.toml"), real_children=True)
    try:
        pids = s.backend.pids
        snap = s.at(1)
        assert {p.pid for p in snap.processes} == {
            pids["server"],
            pids["job"],
            SYNTHETIC_PID_BASE + 2,
        }
        assert psutil.Process(pids["server"]).cmdline() == ["python", "server.py"]
        os.kill(pids["server"], signal.SIGKILL)  # the user kills it from outside
        assert wait_until(lambda: s.names(s.at(2)) == {"job", "ghost"})
        assert s.at(3).gpus[0].memory_used == (500 + 200 + 400) * MIB
        # The scripted exit at t=30 ends the real child too.
        assert s.names(s.at(31)) == {"ghost"}
        assert wait_until(lambda: not process_alive(pids["job"]))
    finally:
        s.backend.close()
    assert not process_alive(pids["server"]) and not process_alive(pids["job"])


def test_backend_uses_children_owned_by_its_caller(pool: ChildPool) -> None:
    scenario = parse_scenario(SMALL_REAL, "real.toml")
    pids = pool.start([ChildSpec("server", ("python", "server.py"))])  # "job" is not running
    clock = Clock()
    backend = SimulatedBackend(scenario, t0=T0, pids=pids, clock=clock)
    backend.open()
    clock.now = T0 + 1
    snap = backend.sample()
    assert {p.pid for p in snap.processes} == {pids["server"], SYNTHETIC_PID_BASE + 2}
    backend.close()
    assert pool.alive(pids["server"])  # not the backend's to stop


def test_speed_override_runs_the_same_scenario_faster() -> None:
    scenario = load_scenario("small")
    fast = scenario.with_speed(10.0)
    assert fast.processes == scenario.processes
    clock = Clock()
    slow_b = SimulatedBackend(scenario, t0=T0, clock=clock, real_children=False)
    fast_b = SimulatedBackend(fast, t0=T0, clock=clock, real_children=False)
    clock.now = T0 + 3
    assert fast_b.time_at(clock.now) == 30.0
    clock.now = T0 + 30
    slow = slow_b.sample()
    clock.now = T0 + 3
    assert fast_b.sample().processes == slow.processes
    assert [c.argv for c in scenario.child_specs()] == [p.argv for p in scenario.processes]
