"""Scenario files: the shipped ones load, every curve gives the documented values, and a bad
file is refused with one line that names the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from vramtop.gpu.scenario import (
    CURVES,
    RESERVED_FRACTION,
    Curve,
    ScenarioError,
    list_scenarios,
    load_scenario,
    parse_scenario,
)

GPU = '[[gpu]]\nname = "NVIDIA A10"\nmemory_mib = 23028\n'


def one_curve(curve: str, gpu: str = GPU) -> str:
    """A one-GPU, one-process scenario whose memory is ``{ curve }``."""
    return f'{gpu}\n[[process]]\nname = "p"\ngpu = 0\nmemory = {{ {curve} }}\n'


def curve_of(curve: str) -> tuple[Curve, int]:
    s = parse_scenario(one_curve(curve), "t.toml")
    return s.processes[0].memory, s.gpus[0].total_mib


def test_shipped_scenarios_all_load() -> None:
    names = list_scenarios()
    assert {"default", "small", "lost", "leak", "stress"} <= set(names)
    for name in names:
        s = load_scenario(name)
        assert s.gpus and s.processes, name
        assert s.name == name


def test_none_loads_the_default() -> None:
    assert load_scenario(None) == load_scenario("default")


def test_default_scenario_shape() -> None:
    s = load_scenario("default")
    assert len(s.gpus) == 4
    assert 8 <= len(s.processes) <= 10
    assert len(s.real_processes) <= 10
    kinds = {p.memory.kind for p in s.processes}
    assert kinds == set(CURVES)
    assert any(len(p.gpus) == 2 for p in s.processes)
    assert any(p.start > 0 for p in s.processes)
    assert any(p.stop is not None for p in s.processes)
    vllm = next(p for p in s.processes if p.serve == "vllm")
    assert vllm.memory.kind == "preallocated"
    assert vllm.argv == ("VLLM::EngineCore",) and vllm.serve_argv[:2] == ("vllm", "serve")


def test_stress_scenario_expands_process_group() -> None:
    s = load_scenario("stress")
    assert len(s.gpus) == 8
    assert len(s.processes) == 1024
    assert len({p.name for p in s.processes}) == 1024
    per_gpu = [sum(1 for p in s.processes if p.gpus == (g,)) for g in range(8)]
    assert per_gpu == [128] * 8
    assert all(p.argv is None for p in s.processes)
    assert len({p.memory for p in s.processes}) > 100  # varied, not 1024 copies


def test_load_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(one_curve('curve = "constant", mib = 100'))
    s = load_scenario(str(path))
    assert s.name == "mine"
    assert s.processes[0].memory.value(0, 1) == 100


def test_gpu_defaults() -> None:
    s = parse_scenario(GPU + GPU, "t.toml")
    g0, g1 = s.gpus
    assert g0.reserved_mib == round(23028 * RESERVED_FRACTION)
    assert g0.uuid.startswith("GPU-") and len(g0.uuid) == 40
    assert g0.uuid != g1.uuid
    assert parse_scenario(GPU + GPU, "t.toml").gpus[0].uuid == g0.uuid  # stable across loads
    gib = parse_scenario('[[gpu]]\nname = "x"\nmemory_gib = 80\n', "t.toml")
    assert gib.gpus[0].total_mib == 80 * 1024


def test_constant_and_linear() -> None:
    c, total = curve_of('curve = "constant", mib = 1234')
    assert c.value(0, total) == c.value(500, total) == 1234
    c, total = curve_of('curve = "linear", base_mib = 1000, rate_mib_s = 25')
    assert c.value(10, total) == 1000 + 10 * 25
    assert c.value(0, total) == 1000


def test_noise_stays_within_amplitude_and_cap_holds() -> None:
    c, total = curve_of('curve = "linear", base_mib = 1000, rate_mib_s = 25, noise_mib = 8')
    values = [c.value(10, total, j / 10) for j in range(-10, 11)]
    assert all(abs(v - 1250) <= 8 for v in values)
    c, total = curve_of('curve = "linear", base_mib = 1000, rate_mib_s = 25, max_mib = 1100')
    assert c.value(2, total) == 1050
    assert c.value(100, total) == 1100


def test_staircase_steps_and_flat_top() -> None:
    c, total = curve_of('curve = "staircase", base_mib = 100, step_mib = 50, every_s = 10')
    assert [c.value(t, total) for t in (0, 9.9, 10, 25, 100)] == [100, 100, 150, 200, 600]
    c, total = curve_of(
        'curve = "staircase", base_mib = 100, step_mib = 50, every_s = 10, steps = 2'
    )
    assert c.value(25, total) == 200
    assert c.value(1000, total) == 200


def test_sawtooth_ramps_and_drops() -> None:
    c, total = curve_of('curve = "sawtooth", base_mib = 100, amplitude_mib = 40, period_s = 20')
    assert c.value(0, total) == 100
    assert c.value(10, total) == 120
    assert c.value(19.5, total) == pytest.approx(139)
    assert c.value(20, total) == 100


def test_spike_once_and_repeating() -> None:
    c, total = curve_of(
        'curve = "spike", base_mib = 100, height_mib = 900, at_s = 10, duration_s = 5'
    )
    assert [c.value(t, total) for t in (9, 10, 14.9, 15, 100)] == [100, 1000, 1000, 100, 100]
    c, total = curve_of(
        'curve = "spike", base_mib = 100, height_mib = 900, at_s = 10, duration_s = 5, '
        "repeat_every_s = 30"
    )
    assert c.value(41, total) == 1000
    assert c.value(46, total) == 100


def test_shrink() -> None:
    c, total = curve_of('curve = "shrink", from_mib = 1000, to_mib = 200, duration_s = 80')
    assert c.value(0, total) == 1000
    assert c.value(40, total) == 600
    assert c.value(500, total) == 200


def test_preallocated_takes_fraction_of_the_gpu() -> None:
    c, total = curve_of('curve = "preallocated", fraction = 0.9, ramp_s = 4')
    assert total == 23028
    assert 0 < c.value(2, total) < 0.9 * total
    assert c.value(4, total) == pytest.approx(0.9 * total)
    assert c.value(3600, total) == pytest.approx(0.9 * total)


def test_warmup_eases_into_plateau() -> None:
    c, total = curve_of('curve = "warmup", start_mib = 500, plateau_mib = 4500, warmup_s = 20')
    assert c.value(0, total) == 500
    mid = c.value(10, total)
    assert 2500 < mid < 4500  # eases out: past the halfway line at half time
    assert c.value(20, total) == 4500
    assert c.value(200, total) == 4500


BAD = [
    # (file body, key the message must name, words of the reason)
    ('curve = "leaky", base_mib = 1', "process[0].memory.curve", "unknown curve 'leaky'"),
    ('curve = "linear", base_mib = 1', "process[0].memory.rate_mib_s", "missing"),
    (
        'curve = "linear", base_mib = "a lot", rate_mib_s = 1',
        "memory.base_mib",
        "expected a number",
    ),
    ('curve = "constant", mib = 1, colour = "red"', "memory.colour", "unknown key"),
    ('curve = "sawtooth", base_mib = 1, amplitude_mib = 1, period_s = 0', "period_s", "> 0"),
    ('curve = "preallocated", fraction = 1.5', "memory.fraction", "(0, 1]"),
]


@pytest.mark.parametrize(("curve", "key", "reason"), BAD)
def test_bad_curves_give_one_line_errors(curve: str, key: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(one_curve(curve), "bad.toml")
    msg = str(err.value)
    assert "\n" not in msg
    assert "bad.toml" in msg and key in msg and reason in msg


BAD_FILES = [
    ('colour = "red"\n' + GPU, "colour", "unknown key"),
    ("speed = -2\n" + GPU, "speed", "> 0"),
    ("seed = 1.5\n" + GPU, "seed", "expected an integer"),
    ('name = "x"\n', "gpu", "missing"),
    ('[[gpu]]\nname = "x"\n', "gpu[0].memory_gib", "missing"),
    ('[[gpu]]\nname = "x"\nmemory_gib = "lots"\n', "gpu[0].memory_gib", "expected a number"),
    (GPU + 'na = ["smell"]\n', "gpu[0].na", "unknown field 'smell'"),
    (GPU + "recover_at = 3\n", "gpu[0].recover_at", "lost_at"),
    (
        GPU + '[[process]]\nname = "p"\ngpu = 3\nmemory = { curve = "constant", mib = 1 }\n',
        "process[0].gpu",
        "no GPU 3",
    ),
    (GPU + '[[process]]\nname = "p"\ngpu = 0\n', "process[0].memory", "missing"),
    (
        GPU + '[[process]]\nname = "p"\ngpu = 0\ntype = "quantum"\n'
        'memory = { curve = "constant", mib = 1 }\n',
        "process[0].type",
        "unknown type",
    ),
    (
        GPU + '[[process]]\nname = "p"\ngpu = 0\nargv = "python x.py"\n'
        'memory = { curve = "constant", mib = 1 }\n',
        "process[0].argv",
        "list of strings",
    ),
    (
        GPU + '[[process]]\nname = "p"\ngpu = 0\nstart = 5\nstop = 2\n'
        'memory = { curve = "constant", mib = 1 }\n',
        "process[0].stop",
        "later than start",
    ),
    (
        GPU + ('[[process]]\nname = "p"\ngpu = 0\nmemory = { curve = "constant", mib = 1 }\n') * 2,
        "process[1].name",
        "duplicate",
    ),
    (GPU + "[[process_group]]\ngpu = 0\n", "process_group[0].count", "missing"),
    ("[[gpu]\n", "invalid TOML", "line 1"),
]


@pytest.mark.parametrize(("body", "key", "reason"), BAD_FILES)
def test_bad_files_give_one_line_errors(tmp_path: Path, body: str, key: str, reason: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(body)
    with pytest.raises(ScenarioError) as err:
        load_scenario(str(path))
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg and key in msg and reason in msg, msg


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(ScenarioError, match=r"nowhere\.toml: file not found"):
        load_scenario("/nowhere.toml")
    with pytest.raises(ScenarioError) as err:
        load_scenario("no-such-scenario")
    assert "no-such-scenario" in str(err.value) and "default" in str(err.value)
