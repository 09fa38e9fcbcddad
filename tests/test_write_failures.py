"""Output that fails: a full disk, a device that refuses writes, stdout on /dev/full.

Every failure is one line on stderr and an exit code, never a traceback. A recording that runs
into a full disk keeps sampling, says it paused, resumes when space returns and keeps the file
whole. The "full disk" here is a real one for the process: a file-size limit (RLIMIT_FSIZE,
which makes ``write`` stop short and then fail, as a full disk does) that the test lifts from
outside with prlimit; and /dev/full, whose every write fails with ENOSPC.
"""

from __future__ import annotations

import resource
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from tui import Tui

from vramtop.export.csvlog import COLUMNS, HEADER_LINE
from vramtop.export.logfile import LogWriteError, PausedWrites
from vramtop.export.ndjson import NdjsonLog
from vramtop.gpu.snapshot import Snapshot

VRAMTOP = [sys.executable, "-m", "vramtop"]
LIMIT = 4096  # bytes: the header and a few samples of the small scenario


def _run(args: list[str], stdout: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VRAMTOP, *args],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=60,
    )


def _one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines, out
    return lines[-1]


@pytest.mark.parametrize("json", [False, True])
def test_once_to_dev_full_is_one_line_and_exit_1(json: bool) -> None:
    with open("/dev/full", "w") as full:
        out = _run(["--demo", "--once", *(["--json"] if json else [])], stdout=full.fileno())
    assert out.returncode == 1
    assert out.stderr.strip() == "vramtop: cannot write to stdout: No space left on device"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["record", "/dev/full", "--demo", "--count", "1"], "No space left on device"),
        (["--demo", "--once", "--export-csv", "/dev/full"], "No space left on device"),
        (["record", "/proc/self/mem", "--demo", "--count", "1"], "Input/output error"),
    ],
)
def test_an_output_file_that_cannot_be_written_is_refused_in_one_line(
    args: list[str], reason: str
) -> None:
    out = _run(args)
    assert out.returncode == 2
    assert _one_line(out).endswith(f": cannot write: {reason}")


def test_json_stream_to_a_file_that_fails_mid_run_stops_in_one_line() -> None:
    # NDJSON has no header: the first sample is the first write, and /proc/self/mem refuses it.
    out = _run(["--demo", "--json-stream", "/proc/self/mem"])
    assert out.returncode == 1
    assert _one_line(out) == (
        "vramtop: /proc/self/mem: cannot write: Input/output error; recording stopped"
    )


def test_a_full_disk_pauses_and_is_named() -> None:
    pause = PausedWrites("/dev/full")
    log = NdjsonLog("/dev/full")  # no header, so opening writes nothing
    snap = Snapshot(1.0, "simulated", ())
    try:
        said = pause.write(log.write, snap)
        assert said == (
            "/dev/full: recording paused: disk full (1 sample skipped); "
            "writing resumes when space returns"
        )
        assert pause.write(log.write, snap) == "", "said once per pause"
        assert pause.status() == "recording paused: disk full (2 samples skipped)"
    finally:
        log.close()
    with pytest.raises(LogWriteError) as err:
        NdjsonLog("/proc/self/mem").write(snap)
    assert not err.value.full, "an I/O error is not a pause"


def _limit_file_size() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, hard))


def _lift_limit(pid: int) -> None:
    hard = psutil.Process(pid).rlimit(resource.RLIMIT_FSIZE)[1]
    psutil.Process(pid).rlimit(resource.RLIMIT_FSIZE, (hard, hard))


def _assert_whole_csv(path: Path) -> list[str]:
    data = path.read_text()
    assert data.endswith("\n"), "no partial last line"
    lines = data.splitlines()
    assert lines[0] == HEADER_LINE and HEADER_LINE not in lines[1:]
    for line in lines[1:]:
        assert line.count(",") >= len(COLUMNS) - 1, line  # a cut line has fewer fields
    return lines


def test_record_pauses_on_a_full_disk_and_resumes_when_space_returns(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    proc = subprocess.Popen(
        [*VRAMTOP, "record", str(path), "--demo", "small", "--refresh-rate", "0.5"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_file_size,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)

    def wait_for(text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = proc.stderr.readline()  # type: ignore[union-attr]
                seen.append(line)
                if text in line:
                    return line
            assert proc.poll() is None, seen
        raise AssertionError(f"{text!r} not said; stderr: {seen}")

    try:
        paused = wait_for("recording paused")
        assert "file size limit reached (1 sample skipped)" in paused
        assert proc.poll() is None, "a full disk does not end the recording"
        size_when_full = path.stat().st_size
        assert size_when_full <= LIMIT
        _assert_whole_csv(path)
        _lift_limit(proc.pid)
        resumed = wait_for("recording resumed")
        assert resumed.rstrip().endswith("skipped: file size limit reached)"), resumed
        # Written again: wait until the file has grown past the old limit.
        deadline = time.monotonic() + 20
        while path.stat().st_size <= LIMIT and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=20)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in "".join(seen) + rest
    assert "skipped (no space)" in rest
    lines = _assert_whole_csv(path)
    assert path.stat().st_size > LIMIT and len(lines) > 2


def test_monitor_export_pauses_in_the_status_line_and_keeps_running(tmp_path: Path) -> None:
    (tmp_path / ".config").mkdir()
    path = tmp_path / "live.csv"
    tui = Tui(
        [],
        cols=200,
        home=tmp_path,
        shell=f"{{vramtop}} --demo small --refresh-rate 0.5 --export-csv {path}; "
        "echo EXIT=$?; sleep 5",
    )
    try:
        tui.wait_for("python train_small.py", timeout=30)
        exporter = tui.actors()["vramtop: exporter"]
        # The disk fills up under the exporter alone (the shared memory is not a file it
        # grows): its next sample no longer fits.
        hard = psutil.Process(exporter).rlimit(resource.RLIMIT_FSIZE)[1]
        full_at = path.stat().st_size + 100
        psutil.Process(exporter).rlimit(resource.RLIMIT_FSIZE, (full_at, hard))
        screen = tui.wait_for("recording paused: file size limit reached", timeout=30)
        assert "skipped)" in screen
        assert "python train_small.py" in screen, "the monitor goes on"
        assert path.stat().st_size < full_at, "the sample that did not fit was taken back"
        _assert_whole_csv(path)
        _lift_limit(exporter)
        tui.wait_for(lambda s: "recording paused" not in s, timeout=20)
        deadline = time.monotonic() + 20
        while path.stat().st_size <= full_at and time.monotonic() < deadline:
            tui.pump(0.2)
        tui.send("q")
        # The log lands where the last frame left the cursor (pyte keeps no alternate
        # screen) and may wrap: compare words.
        after = " ".join(tui.wait_for("EXIT=0", timeout=20).split())
    finally:
        tui.close()
    # Said on stderr too, once the terminal was the shell's again.
    assert "recording paused: file size limit reached" in after
    assert "recording resumed" in after
    _assert_whole_csv(path)
    assert path.stat().st_size > full_at


def test_a_reader_that_goes_away_ends_the_stream_quietly() -> None:
    # `vramtop --json-stream | head -c 50`: a closed pipe is the end of the stream.
    proc = subprocess.Popen(
        [*VRAMTOP, "--demo", "--json-stream"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.read(50)
    proc.stdout.close()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err
