"""``vramtop record``, ``--json-stream`` and ``--export-csv`` as a user runs them: real
subprocesses on simulated GPUs, killed the hard way, files read back line by line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import psutil
import pytest
from tui import Tui

from vramtop.export.csvlog import COLUMNS, HEADER_LINE
from vramtop.export.document import schema_text

VRAMTOP = [sys.executable, "-m", "vramtop"]
FAST = ["--demo", "small", "--refresh-rate", "0.5", "--speed", "10"]
SCHEMA = json.loads(schema_text())


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VRAMTOP, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def csv_samples(path: Path) -> list[list[dict[str, str]]]:
    """The file parsed independently of vramtop's reader: every line must be a full record."""
    text = path.read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[0] == HEADER_LINE
    samples: dict[str, list[dict[str, str]]] = {}
    for line in lines[1:]:
        (fields,) = list(csv.reader([line]))
        assert len(fields) == len(COLUMNS), line
        row = dict(zip(COLUMNS, fields, strict=True))
        float(row["timestamp"])
        assert row["row"] in ("gpu", "process")
        samples.setdefault(row["timestamp"], []).append(row)
    return list(samples.values())


def ndjson_docs(path: Path) -> list[dict[str, object]]:
    text = path.read_text()
    assert text.endswith("\n")
    docs = [json.loads(line) for line in text.splitlines()]
    for doc in docs:
        jsonschema.validate(doc, SCHEMA)
    return docs


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def demo_children(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_sigkill_mid_run_leaves_only_complete_lines(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"night.{fmt}"
    proc = subprocess.Popen(
        [*VRAMTOP, "record", str(path), "--format", fmt, *FAST],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # 1 GPU + 2 processes = 3 CSV lines per sample (after the header); 1 NDJSON line.
        wanted = 1 + 3 * 4 if fmt == "csv" else 4
        wait_until(lambda: count_lines(path) >= wanted)
        children = demo_children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        assert proc.stderr is not None
        proc.stderr.close()
    if fmt == "csv":
        samples = csv_samples(path)
        assert len(samples) >= 4
        commands = {r["command"] for s in samples for r in s if r["row"] == "process"}
        assert commands == {"python serve.py --port 8080", "python train_small.py --epochs 3"}
        assert all(len(s) == 3 for s in samples), "every sample was written whole"
    else:
        docs = ndjson_docs(path)
        assert len(docs) >= 4
        assert all(len(d["gpus"][0]["processes"]) == 2 for d in docs)  # type: ignore[index]
    # The scenario's stand-in processes die with the recorder (no orphans left running).
    for pid in children:
        wait_until(lambda pid=pid: not psutil.pid_exists(pid) or _zombie(pid), timeout=10)


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_stops_cleanly_and_a_second_run_continues_the_file(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    proc = subprocess.Popen(
        [*VRAMTOP, "record", str(path), *FAST],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: count_lines(path) >= 1 + 3 * 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    first = csv_samples(path)
    assert f"{len(first)} samples written" in err
    out = run("record", str(path), *FAST, "--count", "2")
    assert out.returncode == 0, out.stderr
    lines = path.read_text().splitlines()
    assert lines.count(HEADER_LINE) == 1
    both = csv_samples(path)
    assert len(both) == len(first) + 2
    stamps = [float(s[0]["timestamp"]) for s in both]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(
    "args",
    [
        ["record", "{path}", "--demo", "small", "--count", "1"],
        ["record", "{path}", "--format", "ndjson", "--demo", "small", "--count", "1"],
        ["--demo", "small", "--export-csv", "{path}", "--once"],
    ],
)
def test_foreign_file_is_refused_in_one_line_and_unchanged(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "precious.csv"
    path.write_text("date,amount\n2024-01-01,100\n")
    out = run(*(a.replace("{path}", str(path)) for a in args))
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "refusing" in lines[0]
    assert "Traceback" not in out.stderr
    assert path.read_text() == "date,amount\n2024-01-01,100\n"


def test_json_stream_to_stdout_is_one_document_per_line(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*VRAMTOP, "--json-stream", *FAST],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    assert proc.returncode == 0
    docs = [json.loads(line) for line in lines]
    for doc in docs:
        jsonschema.validate(doc, SCHEMA)
    stamps = [d["timestamp"] for d in docs]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def test_help_lists_the_recording_commands_and_flags() -> None:
    out = run("--help")
    assert out.returncode == 0
    for word in ("record FILE", "replay FILE", "--export-csv", "--json-stream", "--format"):
        assert word in out.stdout, word
    for sub, words in (("record", ("--format", "--count", "--demo")), ("replay", ("--json",))):
        text = run(sub, "--help").stdout
        for word in (*words, "--speed", "--refresh-rate"):
            assert word in text, (sub, word)


def test_export_csv_while_the_ui_runs(tmp_path: Path) -> None:
    (tmp_path / ".config").mkdir()
    path = tmp_path / "ui.csv"
    tui = Tui([*FAST, "--export-csv", str(path)], home=tmp_path)
    try:
        tui.wait_for("python train_small.py")
        wait_until(lambda: count_lines(path) >= 1 + 3 * 3)
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()
    samples = csv_samples(path)
    assert len(samples) >= 3
    procs = [r for r in samples[-1] if r["row"] == "process"]
    assert {r["command"] for r in procs} == {
        "python serve.py --port 8080",
        "python train_small.py --epochs 3",
    }
    assert all(r["start_time"] and r["user"] for r in procs)
    assert os.path.getsize(path) > 0
