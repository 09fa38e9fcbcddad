"""The CSV and NDJSON recordings as files a user keeps: exact round trips, whole samples,
appending, refusing files that are not ours, surviving a cut-off last line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from vramtop.export.csvlog import HEADER_LINE, CsvLog, format_sample
from vramtop.export.document import to_document
from vramtop.export.logfile import LogFileError
from vramtop.export.ndjson import NdjsonLog
from vramtop.gpu.replay import RecordingError, ReplayBackend
from vramtop.gpu.simulated import SimulatedBackend
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow
from vramtop.na import NA


def simulated(scenario: str, n: int, step: float = 1.0) -> list[Snapshot]:
    """``n`` snapshots of a scenario at ``step`` simulated seconds apart, no real processes."""
    now = [1_700_000_000.125]
    backend = SimulatedBackend(scenario, t0=now[0], clock=lambda: now[0], real_children=False)
    backend.open()
    out = []
    for _ in range(n):
        out.append(backend.sample())
        now[0] += step
    backend.close()
    return out


def rows_for(snap: Snapshot) -> tuple[ProcessRow, ...]:
    return tuple(
        ProcessRow(
            ProcessIdentity(p.pid, 1_699_999_000.5 + p.pid % 7),
            p.gpu_index,
            -1,
            "alice",
            f'python "train {p.pid}".py --lr=1e-4, --name=x',  # quotes and commas
            True,
        )
        for p in snap.processes
    )


def comparable(doc: dict[str, object]) -> dict[str, object]:
    """What a recording promises to give back (backend and same_user are the replay's own)."""
    out = json.loads(json.dumps(doc))
    out.pop("backend")
    for gpu in out["gpus"]:
        for proc in gpu["processes"]:
            proc.pop("same_user")
    return out


def replayed(path: Path, warnings: list[str] | None = None) -> list[dict[str, object]]:
    backend = ReplayBackend(
        str(path), speed=None, warn=(warnings if warnings is not None else []).append
    )
    return [to_document(s, r) for s, r in backend.samples()]


@pytest.mark.parametrize("scenario", ["lost", "default"])
def test_csv_round_trip_gives_back_every_recorded_value(tmp_path: Path, scenario: str) -> None:
    snaps = simulated(scenario, 12, step=1.0)
    path = tmp_path / "run.csv"
    with CsvLog(str(path)) as log:
        for snap in snaps:
            log.write(snap, rows_for(snap))
    back = replayed(path)
    assert len(back) == len(snaps)
    for snap, doc in zip(snaps, back, strict=True):
        want = comparable(to_document(snap, rows_for(snap)))
        # The CSV carries no driver versions or snapshot-level notes (the NDJSON does).
        for key in ("driver_version", "cuda_version", "nvml_version"):
            want[key] = None
        want["notes"] = []
        assert comparable(doc) == want


def test_lost_gpu_and_na_fields_are_empty_cells(tmp_path: Path) -> None:
    snaps = simulated("lost", 12, step=1.0)
    lost = [g for s in snaps for g in s.gpus if g.lost]
    assert lost, "the lost scenario loses a GPU within 12 s"
    text = format_sample(snaps[-1]).decode()
    rows = list(csv.DictReader(io.StringIO(HEADER_LINE + "\n" + text)))
    lost_row = next(r for r in rows if r["row"] == "gpu" and r["gpu_state"] == "lost")
    assert lost_row["memory_used_bytes"] == "" and lost_row["note"]
    back = replayed_from_text(tmp_path, text)
    gpu = next(g for g in back[0].gpus if g.lost)
    assert gpu.memory_used is NA and gpu.note == lost_row["note"]


def replayed_from_text(tmp_path: Path, text: str) -> list[Snapshot]:
    path = tmp_path / "x.csv"
    path.write_text(HEADER_LINE + "\n" + text)
    return [s for s, _ in ReplayBackend(str(path), speed=None).samples()]


def test_extras_fill_their_columns_by_pid_gpu_or_identity() -> None:
    snap = simulated("small", 1)[0]
    rows = rows_for(snap)
    first, second = rows[0], rows[1]
    extras = {
        (first.identity.pid, first.gpu_index): {"framework": "pytorch", "oom_eta_s": 42.5},
        second.identity: {"phase": "growing", "rate_mib_s": -1.25, "verdict": "OOM risk"},
    }
    text = format_sample(snap, rows, extras, gpu_extras={0: {"verdict": "TIGHT"}}).decode()
    table = list(csv.DictReader(io.StringIO(HEADER_LINE + "\n" + text)))
    by_pid = {r["pid"]: r for r in table if r["row"] == "process"}
    assert by_pid[str(first.identity.pid)]["framework"] == "pytorch"
    assert by_pid[str(first.identity.pid)]["oom_eta_s"] == "42.5"
    assert by_pid[str(second.identity.pid)]["verdict"] == "OOM risk"
    assert by_pid[str(second.identity.pid)]["rate_mib_s"] == "-1.25"
    assert by_pid[str(second.identity.pid)]["framework"] == ""
    assert next(r for r in table if r["row"] == "gpu")["verdict"] == "TIGHT"


def test_append_continues_with_one_header(tmp_path: Path) -> None:
    snaps = simulated("small", 4)
    path = tmp_path / "run.csv"
    with CsvLog(str(path)) as log:
        for snap in snaps[:2]:
            log.write(snap, rows_for(snap))
    with CsvLog(str(path)) as log:
        for snap in snaps[2:]:
            log.write(snap, rows_for(snap))
    lines = path.read_text().splitlines()
    assert lines.count(HEADER_LINE) == 1 and lines[0] == HEADER_LINE
    assert [d["timestamp"] for d in replayed(path)] == [s.timestamp for s in snaps]


@pytest.mark.parametrize("log_class", [CsvLog, NdjsonLog])
@pytest.mark.parametrize(
    "content",
    [
        "name,value\nx,1\n",
        "time,timestamp,row,gpu_index\n1,2,gpu,0\n",  # an older/other vramtop header
        '{"some": "json"}\n',
    ],
)
def test_foreign_file_is_refused_and_left_untouched(
    tmp_path: Path, log_class: type[CsvLog] | type[NdjsonLog], content: str
) -> None:
    path = tmp_path / "mine.txt"
    path.write_text(content)
    with pytest.raises(LogFileError) as info:
        log_class(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "refusing" in message
    assert path.read_text() == content


def test_csv_and_ndjson_do_not_append_to_each_other(tmp_path: Path) -> None:
    snap = simulated("small", 1)[0]
    csv_path, nd_path = tmp_path / "a.csv", tmp_path / "a.ndjson"
    with CsvLog(str(csv_path)) as log:
        log.write(snap)
    with NdjsonLog(str(nd_path)) as nd:
        nd.write(snap)
    before = csv_path.read_bytes(), nd_path.read_bytes()
    with pytest.raises(LogFileError):
        NdjsonLog(str(csv_path))
    with pytest.raises(LogFileError):
        CsvLog(str(nd_path))
    assert (csv_path.read_bytes(), nd_path.read_bytes()) == before


@pytest.mark.parametrize("suffix", ["csv", "ndjson"])
def test_truncated_last_line_is_skipped_with_a_warning_then_cut_on_append(
    tmp_path: Path, suffix: str
) -> None:
    snaps = simulated("small", 4)
    path = tmp_path / f"run.{suffix}"
    log_class = CsvLog if suffix == "csv" else NdjsonLog
    with log_class(str(path)) as log:
        for snap in snaps[:3]:
            log.write(snap, rows_for(snap))
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # the recorder died inside the last sample's last line
    warnings: list[str] = []
    back = replayed(path, warnings)
    # The cut sample is dropped whole: a sample is never replayed with processes missing.
    assert [d["timestamp"] for d in back] == [s.timestamp for s in snaps[:2]]
    assert len(warnings) == 1 and "incomplete" in warnings[0] and str(path) in warnings[0]
    with log_class(str(path)) as log:
        log.write(snaps[3], rows_for(snaps[3]))
    assert path.read_bytes().endswith(b"\n")
    after = replayed(path)
    assert [d["timestamp"] for d in after][-1] == snaps[3].timestamp
    assert all(d["gpus"][0]["processes"] for d in after)


def test_ndjson_round_trip_is_exact(tmp_path: Path) -> None:
    snaps = simulated("default", 6)
    path = tmp_path / "run.ndjson"
    with NdjsonLog(str(path)) as log:
        for snap in snaps:
            log.write(snap, rows_for(snap))
    for line in path.read_text().splitlines():
        assert "analysis" not in json.loads(line)
    back = replayed(path)
    want = [comparable(to_document(s, rows_for(s))) for s in snaps]
    assert [comparable(d) for d in back] == want


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "empty"),
        ("hello,world\n1,2\n", "not a vramtop recording"),
        ("\x00\x01\x02binary", "not a vramtop recording"),
        (HEADER_LINE + "\n", "no complete sample"),
        ("time,timestamp,row,gpu_index,x\n", "other columns"),
    ],
)
def test_not_a_recording_is_one_line(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "f"
    path.write_text(content)
    with pytest.raises(RecordingError) as info:
        ReplayBackend(str(path)).open()
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_malformed_middle_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    snaps = simulated("small", 3)
    path = tmp_path / "run.csv"
    with CsvLog(str(path)) as log:
        for snap in snaps:
            log.write(snap)
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(4, "garbage,line\n")
    path.write_text("".join(lines))
    warnings: list[str] = []
    back = replayed(path, warnings)
    assert len(back) == 3
    assert len(warnings) == 1 and "line 5" in warnings[0]
