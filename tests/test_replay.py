"""``vramtop replay``: a recording played back through the same pipeline as live GPUs, as
NDJSON (``--json``) or in the monitor, with the recording's own identities and cadence."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tui import Tui

from vramtop.export.csvlog import COLUMNS, CsvLog
from vramtop.export.document import to_document
from vramtop.gpu.replay import END_NOTE, MAX_GAP_S, ReplayBackend
from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow

VRAMTOP = [sys.executable, "-m", "vramtop"]
FAST = ["--demo", "small", "--refresh-rate", "0.5", "--speed", "10"]
GIB = 1 << 30


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VRAMTOP, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same kind of simulated run, recorded once in each format by the real command."""
    base = tmp_path_factory.mktemp("rec")
    paths = {"csv": base / "run.csv", "ndjson": base / "run.ndjson"}
    procs = [
        subprocess.Popen(
            [*VRAMTOP, "record", str(path), "--format", fmt, *FAST, "--count", "5"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for fmt, path in paths.items()
    ]
    for proc in procs:  # both at once: half the waiting
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    return paths


def replay_json(path: Path, *extra: str) -> tuple[list[dict[str, object]], str]:
    out = run("replay", str(path), "--json", *extra)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()], out.stderr


def without_replay_marks(doc: dict[str, object]) -> dict[str, object]:
    out = dict(doc)
    out.pop("backend")
    out.pop("analysis", None)
    for gpu in out["gpus"]:  # type: ignore[attr-defined]
        for proc in gpu["processes"]:
            proc.pop("same_user")
    return out


def test_replay_json_of_ndjson_gives_back_the_same_samples(recorded: dict[str, Path]) -> None:
    original = [json.loads(line) for line in recorded["ndjson"].read_text().splitlines()]
    docs, _ = replay_json(recorded["ndjson"])
    assert len(docs) == len(original) == 5
    assert all("analysis" in d for d in docs)
    assert all(d["backend"] == "replay" for d in docs)
    # A replayed process is history: never ours to inspect or signal.
    assert all(not p["same_user"] for d in docs for g in d["gpus"] for p in g["processes"])  # type: ignore[attr-defined]
    assert [without_replay_marks(d) for d in docs] == [without_replay_marks(d) for d in original]


def test_replay_json_of_csv_gives_back_the_recorded_values(recorded: dict[str, Path]) -> None:
    with recorded["csv"].open(newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0].keys()) == list(COLUMNS)
    docs, _ = replay_json(recorded["csv"])
    stamps = sorted({float(r["timestamp"]) for r in table})
    assert [d["timestamp"] for d in docs] == stamps
    for doc in docs:
        rows = [r for r in table if float(r["timestamp"]) == doc["timestamp"]]
        gpu_row = next(r for r in rows if r["row"] == "gpu")
        gpu = doc["gpus"][0]  # type: ignore[index]
        assert gpu["uuid"] == gpu_row["gpu_uuid"]
        assert gpu["memory"]["used_bytes"] == int(gpu_row["memory_used_bytes"])
        assert gpu["power"]["draw_w"] == float(gpu_row["power_w"])
        want = {
            (int(r["pid"]), r["command"], int(r["process_used_bytes"]), float(r["start_time"]))
            for r in rows
            if r["row"] == "process"
        }
        got = {(p["pid"], p["command"], p["used_bytes"], p["start_time"]) for p in gpu["processes"]}
        assert got == want and len(want) == 2


def test_truncated_last_line_is_skipped_with_a_warning(
    recorded: dict[str, Path], tmp_path: Path
) -> None:
    cut = tmp_path / "cut.ndjson"
    cut.write_bytes(recorded["ndjson"].read_bytes()[:-20])
    docs, err = replay_json(cut)
    assert len(docs) == 4
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "incomplete" in lines[0] and "cut.ndjson" in lines[0]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"#!/bin/sh\necho hello\n", "not a vramtop recording"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not a vramtop recording"),
        (None, "No such file"),
    ],
)
def test_a_file_that_is_not_a_recording_is_one_line_exit_1(
    tmp_path: Path, content: bytes | None, needle: str
) -> None:
    path = tmp_path / "thing"
    if content is not None:
        path.write_bytes(content)
    for extra in ([], ["--json"]):
        out = run("replay", str(path), *extra)
        assert out.returncode == 1, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "thing" in lines[0]
        assert out.stdout == ""


@pytest.mark.parametrize("speed", ["0", "-1", "fast"])
def test_bad_speed_is_one_line_exit_2(recorded: dict[str, Path], speed: str) -> None:
    out = run("replay", str(recorded["csv"]), "--speed", speed, "--json")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "--speed" in out.stderr


def _synthetic(stamps: list[float]) -> list[tuple[Snapshot, tuple[ProcessRow, ...]]]:
    out = []
    for i, ts in enumerate(stamps):
        gpu = GpuSample(0, "GPU-x", "Test GPU", memory_total=64 * GIB, memory_used=(i + 1) * GIB)
        proc = ProcessSample(4_200_123, 0, used_bytes=(i + 1) * GIB)
        row = ProcessRow(ProcessIdentity(4_200_123, 1_000.0), 0, -1, "nobody", "job.py", False)
        out.append((Snapshot(ts, "nvml", (gpu,), (proc,)), (row,)))
    return out


def test_pacing_follows_recorded_time_over_speed_and_caps_long_pauses(tmp_path: Path) -> None:
    stamps = [100.0, 101.0, 103.0, 103.5, 103.5 + 8 * 3600, 103.5 + 8 * 3600 + 1]
    path = tmp_path / "gaps.csv"
    with CsvLog(str(path)) as log:
        for snap, rows in _synthetic(stamps):
            log.write(snap, rows)
    now = [5000.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    backend = ReplayBackend(str(path), speed=2.0, clock=lambda: now[0], sleep=sleep)
    got = [s.timestamp for s, _ in backend.samples()]
    assert got == stamps
    # Recorded gaps 1, 2, 0.5, 8 h (played as MAX_GAP_S), 1 -- at twice real time.
    assert waits == pytest.approx([0.5, 1.0, 0.25, MAX_GAP_S / 2, 0.5])


def test_backend_protocol_rows_and_end_of_recording(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    with CsvLog(str(path)) as log:
        for snap, rows in _synthetic([10.0, 11.0]):
            log.write(snap, rows)
    backend = ReplayBackend(str(path), speed=None)
    backend.open()
    first = backend.sample()
    rows = backend.rows_for(first)
    assert rows is not None and rows[0].command == "job.py" and rows[0].user == "nobody"
    assert rows[0].identity == ProcessIdentity(4_200_123, 1_000.0)
    assert backend.next_due(50.0) == 50.0  # as fast as possible
    last = backend.sample()
    assert END_NOTE in last.notes and backend.finished
    again = backend.sample()
    assert again.timestamp == last.timestamp
    assert backend.next_due(50.0) > 50.0 + 60  # nothing more to sample for a long while
    assert backend.rows_for(Snapshot(0.0, "x", ())) is None
    backend.close()


def test_replay_in_the_monitor_shows_the_recorded_processes(tmp_path: Path) -> None:
    """The UI path: sampler, shared memory and render fed by the recording. The PID is one no
    live process can have, so the command on screen can only come from the file."""
    path = tmp_path / "night.csv"
    with CsvLog(str(path)) as log:
        for snap, rows in _synthetic([float(t) for t in range(1000, 1040)]):
            log.write(snap, rows)
    (tmp_path / ".config").mkdir()
    tui = Tui(["replay", str(path), "--speed", "20", "--refresh-rate", "0.5"], home=tmp_path)
    try:
        screen = tui.wait_for("job.py")
        assert "Test GPU" in screen and "4200123" in screen
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()


def test_replay_of_a_replay_recording_is_the_same(tmp_path: Path) -> None:
    """A recording re-recorded through its own replay (record's backend = a replay) keeps the
    samples: the formats are closed under the round trip."""
    path = tmp_path / "a.csv"
    with CsvLog(str(path)) as log:
        for snap, rows in _synthetic([1.0, 2.0, 3.0]):
            log.write(snap, rows)
    first = [to_document(s, r) for s, r in ReplayBackend(str(path), speed=None).samples()]
    again = tmp_path / "b.csv"
    with CsvLog(str(again)) as log:
        for snap, rows in ReplayBackend(str(path), speed=None).samples():
            log.write(snap, rows)
    second = [to_document(s, r) for s, r in ReplayBackend(str(again), speed=None).samples()]
    assert first == second and len(first) == 3


def test_replay_json_answers_when_vramtop_would_have_warned(tmp_path: Path) -> None:
    """A leak recorded at 1 Hz: the replayed analysis warns of the OOM before it happens, with
    an ETA close to the time that was really left, and names the leaking process."""
    total, start, rate = 16 * GIB, 4 * GIB, 50 << 20  # 50 MiB/s: full after ~246 s
    path = tmp_path / "leak.csv"
    with CsvLog(str(path)) as log:
        for i in range(240):
            used = start + rate * i
            gpu = GpuSample(
                0,
                "GPU-x",
                "Test GPU",
                memory_total=total,
                memory_used=used,
                memory_free=total - used,
            )
            leak = ProcessSample(4_200_001, 0, used_bytes=used - GIB)
            steady = ProcessSample(4_200_002, 0, used_bytes=GIB)
            rows = (
                ProcessRow(ProcessIdentity(4_200_001, 5.0), 0, -1, "u", "leak.py", False),
                ProcessRow(ProcessIdentity(4_200_002, 5.0), 0, -1, "u", "steady.py", False),
            )
            log.write(Snapshot(1000.0 + i, "nvml", (gpu,), (leak, steady)), rows)
    docs, _ = replay_json(path)
    assert len(docs) == 240
    warned = [d for d in docs if d["analysis"]["gpus"][0]["oom"]]  # type: ignore[index]
    assert warned, "no OOM warning during a steady leak to the limit"
    first = warned[0]
    oom = first["analysis"]["gpus"][0]["oom"]  # type: ignore[index]
    left = (total - (start + rate * (first["timestamp"] - 1000.0))) / rate  # type: ignore[operator]
    assert left > 0, "warned only after the GPU was full"
    assert 0.65 * left <= oom["eta_s"] <= 1.35 * left
    assert oom["driver"]["pid"] == 4_200_001
    procs = {p["identity"]["pid"]: p for p in docs[-1]["analysis"]["processes"]}  # type: ignore[index]
    assert procs[4_200_001]["trend"]["phase"] == "growing"
    assert procs[4_200_002]["trend"]["phase"] != "growing"
