"""The command line as a user meets it: help, version, --once, errors as one line."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from vramtop.export.document import schema_text

VRAMTOP = [sys.executable, "-m", "vramtop"]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(
        [*VRAMTOP, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full,
        stdin=subprocess.DEVNULL,
    )


def test_help_lists_every_command_and_flag() -> None:
    out = run("--help")
    assert out.returncode == 0
    for flag in (
        "--once",
        "--json",
        "--demo",
        "--refresh-rate",
        "--no-kill",
        "--accessible",
        "--config",
        "--version",
        "--speed",
        "--list",
    ):
        assert flag in out.stdout, flag


def test_help_says_which_config_keys_need_a_restart() -> None:
    text = " ".join(run("--help").stdout.split())
    assert "history_length and general.process_slots, which take effect at the next start" in text


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("vramtop ")


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("vramtop")
    assert exe.exists(), "pip install should put a vramtop command beside python"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "vramtop" in out.stdout


def test_once_without_driver_is_one_line_and_exit_1() -> None:
    # This machine has no NVIDIA driver: the real NVML path must say so in one line.
    out = run("--once")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "libnvidia-ml" in lines[0] and "vramtop --demo" in lines[0]
    assert "Traceback" not in out.stderr


def test_monitor_without_driver_is_one_line_and_exit_1() -> None:
    # Same check for the live monitor path: stdout is a pipe here, so it behaves as --once.
    out = run()
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1


def test_demo_once_json_matches_the_documented_schema() -> None:
    out = run("--demo", "--once", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    jsonschema.validate(doc, json.loads(schema_text()))
    assert doc["backend"] == "simulated"
    assert len(doc["gpus"]) >= 2
    names = [p["command"] for g in doc["gpus"] for p in g["processes"] if p["command"]]
    assert any("train.py" in n for n in names)
    for gpu in doc["gpus"]:
        if gpu["state"] != "ok":
            continue
        mem = gpu["memory"]
        # used, reserved and free as the driver reports them: they add up to the total.
        assert mem["used_bytes"] + mem["reserved_bytes"] + mem["free_bytes"] == mem["total_bytes"]


def test_json_reports_real_child_processes() -> None:
    out = run("--demo", "small", "--once", "--json")
    doc = json.loads(out.stdout)
    procs = doc["gpus"][0]["processes"]
    assert {p["command"] for p in procs} == {
        "python serve.py --port 8080",
        "python train_small.py --epochs 3",
    }
    # Real processes: a start time and our own user, and they are gone after the run.
    for p in procs:
        assert p["start_time"] and p["same_user"]
        assert not Path(f"/proc/{p['pid']}").exists()


def test_piped_stdout_behaves_as_once() -> None:
    out = run("--demo", "small")
    assert out.returncode == 0
    assert "NVIDIA A10" in out.stdout
    assert "\x1b[" not in out.stdout  # no escape sequences into a pipe


def test_demo_table_shows_gpus_and_processes() -> None:
    out = run("--demo", "small", "--once")
    assert out.returncode == 0
    assert "[0] NVIDIA A10" in out.stdout
    assert "python train_small.py --epochs 3" in out.stdout


def test_list_scenarios() -> None:
    out = run("--demo", "--list")
    assert out.returncode == 0
    assert {"default", "small", "lost", "leak", "stress"} <= set(out.stdout.split())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--refresh-rate", "20", "--demo", "--once"], "general.refresh_rate"),
        (["--refresh-rate", "abc"], "--refresh-rate"),
        (["--demo", "no-such-scenario", "--once"], "no-such-scenario"),
        (["--bogus"], "--bogus"),
        (["--config", "/nonexistent/vramtop.toml", "--demo", "--once"], "/nonexistent"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str) -> None:
    out = run(*args)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert needle in lines[0]
    assert "Traceback" not in out.stderr


def test_bad_config_file_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[display]\ntheme = 'neon'\n")
    out = run("--config", str(cfg), "--demo", "--once")
    assert out.returncode == 2
    assert "display.theme" in out.stderr and "neon" in out.stderr


def test_xdg_config_is_read(tmp_path: Path) -> None:
    (tmp_path / "vramtop").mkdir()
    (tmp_path / "vramtop" / "config.toml").write_text("[general]\nrefresh_rate = 99\n")
    out = run("--demo", "--once", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert out.returncode == 2
    assert "refresh_rate" in out.stderr


def test_bad_scenario_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[gpu]]\nname = 'x'\nmemory_mib = 'lots'\n")
    out = run("--demo", str(bad), "--once")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "memory_mib" in out.stderr


def test_readme_documents_every_csv_column_and_json_field() -> None:
    from vramtop.export.csvlog import COLUMNS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for column in COLUMNS:
        assert f"`{column}`" in readme, column
    schema = json.loads(schema_text())
    gpu_fields = schema["properties"]["gpus"]["items"]["required"]
    proc_fields = schema["properties"]["gpus"]["items"]["properties"]["processes"]["items"]
    for name in [*schema["required"], *gpu_fields, *proc_fields["required"]]:
        assert name in readme, name


def test_readme_documents_every_nested_json_field() -> None:
    """Down to the fields of the analysis, the container and the model files."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()

    def names(node: object) -> set[str]:
        if isinstance(node, list):
            return set().union(*(names(n) for n in node))
        if not isinstance(node, dict):
            return set()
        found = set(node.get("properties", {}))
        return found.union(*(names(v) for v in node.values()))

    found = names(json.loads(schema_text()))
    assert {"framework", "pod_uid", "size_bytes", "verdict", "eta_low_s", "temp_warning"} <= found
    for name in sorted(found):
        assert name in readme, name


def test_once_honours_gpu_and_pid_filters() -> None:
    out = run("--demo", "--once", "--json", "--gpu", "1,2")
    doc = json.loads(out.stdout)
    assert [g["index"] for g in doc["gpus"]] == [1, 2]
    # The demo's PIDs differ every run (real child processes); PID 1 is never one of them.
    none = json.loads(run("--demo", "--once", "--json", "--pid", "1").stdout)
    assert all(g["processes"] == [] for g in none["gpus"])
    me = pwd.getpwuid(os.geteuid()).pw_name  # demo processes are ours
    mine = json.loads(run("--demo", "--once", "--json", "--user", me).stdout)
    theirs = json.loads(run("--demo", "--once", "--json", "--user", "nobody").stdout)
    assert sum(len(g["processes"]) for g in mine["gpus"]) > 0
    assert all(g["processes"] == [] for g in theirs["gpus"])
    visible = json.loads(
        run(
            "--demo", "--once", "--json", "--only-visible", env={"CUDA_VISIBLE_DEVICES": "3"}
        ).stdout
    )
    assert [g["index"] for g in visible["gpus"]] == [3]


def test_a_scenario_name_after_other_flags_is_the_scenario() -> None:
    leak = json.loads(run("--demo", "--once", "--json", "leak").stdout)
    direct = json.loads(run("--demo", "leak", "--once", "--json").stdout)
    assert [g["name"] for g in leak["gpus"]] == [g["name"] for g in direct["gpus"]]
    default = json.loads(run("--demo", "--once", "--json").stdout)
    assert len(leak["gpus"]) != len(default["gpus"]), "leak was run, not the default scenario"
    for args, needle in (
        (["--demo", "--once", "nonexistent"], "no such shipped scenario"),
        (["--once", "leak"], "scenario names go with --demo"),
        (["--demo", "small", "--once", "leak"], "two scenarios given"),
    ):
        out = run(*args)
        assert out.returncode == 2 and needle in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_config_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "config.toml"
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    else:
        path = Path("/dev/zero") if kind == "device" else tmp_path
    out = run("--config", str(path), "--demo", "--once", timeout=20)
    assert out.returncode == 2, out
    assert len(out.stderr.strip().splitlines()) == 1 and str(path) in out.stderr
    assert "regular file" in out.stderr or "directory" in out.stderr


def test_config_dev_null_means_defaults() -> None:
    out = run("--config", "/dev/null", "--demo", "--once", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["gpus"]


def test_a_gpu_that_does_not_exist_is_an_error() -> None:
    out = run("--demo", "--once", "--gpu", "1,99")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == "vramtop: no GPU 99 on this machine (it has GPUs 0-3)"


@pytest.mark.parametrize("pid", ["-1", "0", "99999999999999999999", "abc"])
def test_a_pid_that_cannot_exist_is_bad_input(pid: str) -> None:
    out = run("--demo", "--once", f"--pid={pid}")
    assert out.returncode == 2 and "expected a PID from 1 to 4194304" in out.stderr


def test_a_filter_that_matches_no_process_says_so() -> None:
    # The demo's PIDs are fresh child processes; PID 1 is never one of them.
    for flag, value, said in (
        ("--pid", "1", "no GPU process matches --pid 1"),
        ("--user", "nosuchuser", "no GPU process matches --user nosuchuser (no such user)"),
    ):
        for fmt in ([], ["--json"]):
            out = run("--demo", "--once", *fmt, flag, value)
            assert out.returncode == 0, out  # an answer, not an error
            assert out.stderr.strip() == f"vramtop: {said}"
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert run("--demo", "--once", "--user", me).stderr == ""
